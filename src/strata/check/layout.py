"""Layout rules: where the files are, and the release data that decides whether systemd merges
the image at all. Each rule is a function (ImageView, Context) -> findings."""

from __future__ import annotations

import posixpath
import stat as _stat

from strata.check.context import Context
from strata.check.findings import Finding, Rule, Severity
from strata.check.tree import under
from strata.check.view import ImageView
from strata.errors import StrataError
from strata.images.base import FileKind
from strata.model import ExtClass

ERROR, WARNING, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO

#: top-level directories that merged-/usr systems have as symlinks into /usr
ROOT_DIRS = ("bin", "sbin", "lib", "lib64", "lib32", "libx32")

_SCOPES = ("system", "initrd", "portable")


def _hierarchy_list(cls: ExtClass) -> str:
    return " and ".join(cls.default_hierarchies)


def image_name(view: ImageView, ctx: Context) -> list[Finding]:
    """systemd discovers image files only by the ".raw" suffix, and derives the name that the
    release file must match from the file name."""
    from strata.release import image_name_is_valid

    out = []
    if not image_name_is_valid(view.name):
        out.append(Finding(Rule.IMAGE_NAME, ERROR, "/", f"'{view.name}' is not a valid image name",
                           "name the image with printable characters, not starting with '.#'"))
    if view.layout is not None and not view.path.endswith(".raw"):
        base = posixpath.basename(view.path)
        out.append(Finding(Rule.IMAGE_NAME, WARNING, "/",
                           f"image file '{base}' does not end in .raw: systemd-sysext and "
                           "systemd-confext do not pick it up",
                           f"rename it to {view.name}.raw"))
    return out


def outside_hierarchy(view: ImageView, ctx: Context) -> list[Finding]:
    """Top-level content that no hierarchy of the image's class covers is never merged. The
    other class's release directory is allowed (an image may carry both release files)."""
    tops = {h.split("/")[1] for h in view.hierarchies}
    release_dirs = ["/" + c.release_dir for c in ExtClass]
    out = []
    for e in view.tree:
        if e.path.count("/") != 1:
            continue
        top = e.path[1:]
        if top in tops or top in ROOT_DIRS:
            continue
        below = [b for b in view.tree.below(e.path) if b.kind is not FileKind.DIRECTORY
                 and not any(under(b.path, d) for d in release_dirs)]
        if e.kind is FileKind.DIRECTORY and not below:
            continue  # empty, or only a release directory: harmless
        count = len(below) if e.kind is FileKind.DIRECTORY else 1
        classes = " and ".join(f"systemd-{c.value} merges only {_hierarchy_list(c)}"
                               for c in view.classes)
        if top == "etc" and ExtClass.CONFEXT not in view.classes:
            hint = "ship /etc in a configuration extension (confext)"
        elif top in ("usr", "opt") and ExtClass.SYSEXT not in view.classes:
            hint = "ship /usr and /opt in a system extension (sysext)"
        else:
            hint = "remove it from the image"
        out.append(Finding(Rule.OUTSIDE_HIERARCHY, WARNING, e.path,
                           f"never merged ({count} file{'s' if count != 1 else ''}): "
                           f"{classes}", hint))
    return out


def root_directories(view: ImageView, ctx: Context) -> list[Finding]:
    """/bin, /sbin, /lib, /lib64 (what a Debian package may still ship) at the image's top
    level: on merged-/usr hosts they are symlinks into /usr, and no extension is merged there,
    so these files are silently missing at run time."""
    out = []
    for top in ROOT_DIRS:
        e = view.tree.get("/" + top)
        if e is None or e.kind is FileKind.SYMLINK:
            continue
        files = [b for b in view.tree.below(e.path) if b.kind is not FileKind.DIRECTORY]
        if e.kind is FileKind.DIRECTORY and not files:
            continue
        out.append(Finding(Rule.ROOT_DIRECTORY, ERROR, e.path,
                           f"/{top} at the top level is never merged ({len(files)} files): "
                           f"extensions only reach /usr, /opt and /etc",
                           f"move its content to /usr/{top}"))
    return out


def release_file(view: ImageView, ctx: Context) -> list[Finding]:
    """The extension-release file as systemd looks for it (find_extension_release, strict
    name matching): missing, named for another image, or malformed."""
    from strata.release import image_name_from_path

    out = []
    for cls in view.classes:
        rel_dir = "/" + cls.release_dir
        expected = f"{rel_dir}/extension-release.{view.name}"
        lookup = view.releases[cls]
        error = view.release_errors.get(cls)
        if error is not None:
            out.append(Finding(Rule.RELEASE_FIELDS, ERROR, expected,
                               f"malformed release file, systemd ignores the image: {error}",
                               "write it as KEY=VALUE lines in UTF-8"))
            continue
        if lookup.found:
            assert lookup.path is not None
            try:
                base = image_name_from_path(view.name)
            except StrataError:  # the image-name rule says why
                base = view.name
            named = posixpath.basename(lookup.path)
            if view.tree.get(expected) is None and named != f"extension-release.{base}":
                out.append(Finding(Rule.RELEASE_NAME, INFO, lookup.path,
                                   f"named for another image than '{view.name}', accepted "
                                   "only because it is marked "
                                   "user.extension-release.strict=false"))
            continue
        names = [e.path for e in view.tree.below(rel_dir)
                 if posixpath.dirname(e.path) == rel_dir
                 and posixpath.basename(e.path).startswith("extension-release.")]
        hint_fields = "ID= (the host's, or _any) and VERSION_ID= or " + cls.level_key + "="
        if not names:
            out.append(Finding(Rule.RELEASE_MISSING, ERROR, expected,
                               f"no release file: {cls.program} ignores the image",
                               f"add {expected} with {hint_fields}"))
        elif view.tree.get(expected) is not None:
            out.append(Finding(Rule.RELEASE_NAME, ERROR, expected,
                               f"unusable release file, {cls.program} ignores the image: "
                               f"{lookup.problem}", "make it a regular file"))
        else:
            others = ", ".join(posixpath.basename(n) for n in names)
            kind = "the image file" if view.layout is not None else "the directory"
            out.append(Finding(Rule.RELEASE_NAME, ERROR, names[0],
                               f"{others} does not match the image name '{view.name}': "
                               f"{cls.program} ignores the image",
                               f"rename it to extension-release.{view.name}, or rename "
                               f"{kind} to match"))
    return out


def release_fields(view: ImageView, ctx: Context) -> list[Finding]:
    """Fields systemd rejects or that make the image match hosts it should not."""
    from strata import arch

    out = []
    for cls in view.classes:
        lookup = view.releases[cls]
        if lookup.fields is None or lookup.path is None:
            continue
        f, path = lookup.fields, lookup.path
        ext_id = f.get("ID", "")
        if not ext_id:
            out.append(Finding(Rule.RELEASE_FIELDS, ERROR, path,
                               f"no ID=: {cls.program} ignores the image",
                               "set ID= to the host's ID, or ID=_any"))
        a = f.get("ARCHITECTURE", "")
        if a and a != "_any" and not arch.is_valid(a):
            out.append(Finding(Rule.RELEASE_FIELDS, ERROR, path,
                               f"ARCHITECTURE={a} is no architecture systemd knows: the image "
                               "is never merged",
                               "use systemd's names: " + ", ".join(arch.ALL[:10]) + ", ..."))
        scope = f.get(cls.scope_key)
        if scope is not None:
            words = scope.split()
            if not words:
                out.append(Finding(Rule.RELEASE_FIELDS, ERROR, path,
                                   f"{cls.scope_key}= is empty: no scope accepts the image",
                                   f"remove it, or list {', '.join(_SCOPES)}"))
            unknown = [w for w in words if w not in _SCOPES]
            if unknown:
                out.append(Finding(Rule.RELEASE_FIELDS, WARNING, path,
                                   f"{cls.scope_key}= has unknown values: {' '.join(unknown)}",
                                   f"use {', '.join(_SCOPES)}"))
        if ext_id and ext_id != "_any" and not f.get("VERSION_ID") and not f.get(cls.level_key):
            out.append(Finding(Rule.RELEASE_FIELDS, WARNING, path,
                               f"ID={ext_id} without VERSION_ID= or {cls.level_key}=: "
                               "accepted only by hosts that have neither",
                               f"add VERSION_ID= or {cls.level_key}= matching the host"))
    return out


def host_compatibility(view: ImageView, ctx: Context) -> list[Finding]:
    """systemd's own decision (check_compatibility) against the host's os-release."""
    from strata.release import check_compatibility

    host = ctx.host
    if host is None:
        return []
    release = host.release
    if isinstance(release, Exception):
        return [Finding(Rule.HOST_COMPATIBILITY, WARNING, "/",
                        f"cannot check compatibility with the host: {release}")]
    out = []
    for cls in view.classes:
        lookup = view.releases[cls]
        if lookup.fields is None or lookup.path is None:
            continue  # RELEASE_MISSING/RELEASE_NAME say why
        verdict = check_compatibility(release, lookup.fields, name=view.name, cls=cls,
                                      scope=host.scope, arch=host.arch)
        if not verdict.accepted:
            out.append(Finding(Rule.HOST_COMPATIBILITY, ERROR, lookup.path,
                               f"{cls.program} on the host would not merge it: "
                               f"{verdict.reason}",
                               f"match the host's {release.path}"))
    return out


def os_release(view: ImageView, ctx: Context) -> list[Finding]:
    """An extension must not ship /usr/lib/os-release (systemd refuses it; a directory image
    fails the whole merge). A confext's /etc/os-release would replace the host's."""
    out = []
    try:
        usr = view.tree.chase("/usr/lib/os-release")
    except StrataError:  # a symlink loop there is no os-release either
        usr = None
    if usr is not None:
        out.append(Finding(Rule.OS_RELEASE, ERROR, "/usr/lib/os-release",
                           "extensions must not ship /usr/lib/os-release: systemd refuses the "
                           "image (a directory image fails the whole merge)",
                           "remove it; release data goes into the extension-release file"))
    e = view.tree.get("/etc/os-release")
    if e is not None and ExtClass.CONFEXT in view.classes:
        out.append(Finding(Rule.OS_RELEASE, WARNING, "/etc/os-release",
                           "replaces the host's /etc/os-release while merged",
                           "remove it; release data goes into the extension-release file"))
    return out


def usr_sbin(view: ImageView, ctx: Context) -> list[Finding]:
    """A real /usr/sbin directory over a merged-bin host (/usr/sbin -> bin: Fedora 42+, Arch)
    takes the host's symlink's place: every host program reached as /usr/sbin/... is gone
    (systemd#42746, sysext-bakery#131)."""
    if ExtClass.SYSEXT not in view.classes:
        return []
    e = view.tree.get("/usr/sbin")
    if e is None or e.kind is not FileKind.DIRECTORY:
        return []
    hint = "move its files to /usr/bin (strata build does this for merged-bin targets)"
    host = ctx.host
    if host is None:
        return [Finding(Rule.USR_SBIN, WARNING, "/usr/sbin",
                        "a real /usr/sbin directory: on a merged-bin host (/usr/sbin -> bin) "
                        "it hides the host's symlink and every program behind it", hint)]
    mode = host.direct_mode("/usr/sbin")
    if mode is None or not _stat.S_ISLNK(mode):
        return []
    target = host.readlink("/usr/sbin")
    return [Finding(Rule.USR_SBIN, ERROR, "/usr/sbin",
                    f"a real /usr/sbin directory hides the host's symlink /usr/sbin -> "
                    f"{target}: host programs run as /usr/sbin/... disappear while merged",
                    hint)]


def no_content(view: ImageView, ctx: Context) -> list[Finding]:
    """Nothing but the release file: merging it changes nothing."""
    releases = view.release_paths()
    if any(view.merged(e.path) and e.kind is not FileKind.DIRECTORY
           and e.path not in releases and "/extension-release.d/" not in e.path
           for e in view.tree):
        return []
    where = ", ".join(view.hierarchies)
    return [Finding(Rule.NO_CONTENT, WARNING, "/", f"nothing to merge into {where} besides the "
                    "release file")]


RULES = (image_name, outside_hierarchy, root_directories, release_file, release_fields,
         host_compatibility, os_release, usr_sbin, no_content)
