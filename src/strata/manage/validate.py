"""Is an image fit to enter the store? Three questions, asked of the copy before it is renamed
into the store, each answered by code that already makes the decision elsewhere:

1. **Is it an extension image at all?** The store's own reading (store.probe): a readable
   image whose extension-release file is found under its image name or its name.
2. **`strata check`'s errors.** Every rule, against the root as the host (its os-release, its
   libraries, its /usr as it is now), with the image under the name Strata merges it as (the
   name its release file is found under, as in /run/extensions). Not counted:
   - `shadows-host`: the root's /usr shows what is merged now, the version this one
     replaces included; replacing those files is the point of an update;
   - `overlap`: images are checked one at a time (app-1 and app-2 installed together
     are not merged together);
   - `host-compatibility`: question 3 decides it, with the engine's own reason;
   - `elf-needed` for an image that declares STRATA_DEPENDS=: the libraries may come from
     what it depends on, which need not be merged yet (`strata ext health` checks the
     libraries on the merged system). It is reported as a warning.
3. **Would the engine merge it?** engine.ops.read_candidates + choose, per class, exactly
   as `strata ext merge` asks them: release data against the host (ID, VERSION_ID or
   SYSEXT_LEVEL, ARCHITECTURE, scope), and the image policy (pick_image_policy: the
   --image-policy given, else [ext] image_policy of strata.toml, else systemd's default for
   the class). An image that the policy refuses (e.g. an unsigned one under
   `root=signed+absent:usr=signed+absent`) is refused here too, with the engine's reason.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from strata import log
from strata.errors import ErrorKind, StrataError
from strata.manage import store
from strata.manage.store import Probe, ReleaseInfo, StoreEntry
from strata.record import record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from strata.check.findings import Finding


@record
class Validated:
    entry: StoreEntry  # the copy, described as the store will see it
    probe: Probe
    version: str | None
    warnings: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def depends(self) -> tuple[str, ...]:
        from strata.manage.deps import node_from_release

        return node_from_release(self.name, [r.fields for r in self.probe.releases]).depends


def describe(path: str) -> StoreEntry:
    """The store entry the file at `path` will be once it is in the store under its file
    name; a file name the store would not take is INVALID."""
    file_name = os.path.basename(path)
    if not file_name.endswith(".raw"):
        raise StrataError(
            f"Cannot install '{file_name}': image file names must end in .raw (systemd finds "
            "images by that suffix).", hint=f"rename it to {file_name}.raw",
            kind=ErrorKind.INVALID)
    entry = store.entry_at("/", store.STORE_DIR, os.path.dirname(path), file_name,
                           origin=store.STORE_ORIGIN)
    if entry is None:
        raise StrataError(f"Cannot install '{file_name}': not a valid image name.",
                          kind=ErrorKind.INVALID)
    return entry


def _primary(probe: Probe) -> ReleaseInfo:
    r = probe.sysext or probe.confext
    assert r is not None
    return r


def _check_path(entry: StoreEntry, lookup: str) -> str:
    """The copy under the name Strata merges it as (a hard link beside it when that differs
    from its file name), so that the name rules see what systemd will see."""
    if lookup == entry.image_name:
        return entry.real
    link = os.path.join(os.path.dirname(entry.real), lookup + ".raw")
    try:
        if not os.path.exists(link):
            os.link(entry.real, link)
    except OSError as e:
        raise StrataError.from_os(e, f"Failed to create '{link}'") from e
    return link


def _counted(f: Finding, depends: Sequence[str]) -> tuple[bool, bool]:
    """(refuses, warns) for an ERROR finding: some rules do not refuse an installation (see
    the module docstring)."""
    from strata.check.findings import Rule

    if f.rule in (Rule.SHADOWS_HOST, Rule.OVERLAP, Rule.HOST_COMPATIBILITY):
        return False, False
    if f.rule is Rule.ELF_NEEDED and depends:
        return False, True
    return True, False


def check_rules(path: str, root: str, depends: Sequence[str]) -> tuple[list[str], list[str]]:
    """(errors, warnings) of `strata check` for the image at `path` with `root` as the host."""
    from strata.check.context import no_packages
    from strata.check.findings import Severity
    from strata.check.runner import check_images

    report = check_images([path], host=root, packages=no_packages)[0]
    errors: list[str] = []
    warnings: list[str] = []
    for f in report.findings:
        if f.severity is not Severity.ERROR:
            continue
        refuses, warns = _counted(f, depends)
        where = "" if f.path == "/" else f"{f.path}: "
        line = f"{f.rule.value}: {where}{f.message}"
        if refuses:
            errors.append(line)
        elif warns:
            warnings.append(f"{line} (it depends on {', '.join(depends)}, which may provide "
                            "them)")
    return errors, warnings


def engine_verdicts(path: str, probe: Probe, root: str, env: Mapping[str, str],
                    image_policy: str | None) -> list[str]:
    """Why the engine would not merge the image at `path`, per class it has ([] if it
    would)."""
    from strata.discover import Extension
    from strata.engine import ops
    from strata.engine.settings import resolve
    from strata.model import ImageType

    out: list[str] = []
    for r in probe.releases:
        settings = resolve(r.cls, env, root=None if root == "/" else root,
                           image_policy=image_policy)
        image = Extension(name=r.lookup_name, path=path, type=ImageType.RAW,
                          ext_class=r.cls, read_only=True, mtime_us=0, crtime_us=0,
                          search_dir=os.path.dirname(path))
        candidates, broken = ops.read_candidates(settings, [image], lenient=True)
        out += [why for _name, why in broken]
        if not candidates:
            continue
        selection = ops.choose(settings, env, candidates,
                               images=ops.ImageSet((image,), lenient=True))
        out += [f"{r.cls.program}: {d.reason}" for d in selection.decisions if not d.accepted]
    return out


def validate(path: str, source: str, root: str, env: Mapping[str, str], *,
             image_policy: str | None) -> Validated:
    """Validate the copy at `path`, named as it will be in the store of `root`. Every
    refusal is INVALID (INCOMPATIBLE or PERMISSION for the engine's verdicts), naming
    `source` and the first reason; all reasons are logged."""
    entry = describe(path)
    probe = store.probe(entry)

    def plain(message: str) -> str:
        """Without the staging directory: name the file as the store will have it."""
        return message.replace(os.path.dirname(path) + "/", "")

    if probe.problem is not None:
        raise StrataError(f"Cannot install '{source}': not a usable image: "
                          f"{plain(probe.problem)}", kind=ErrorKind.INVALID)
    if not probe.is_extension:
        errors, _ = check_rules(path, root, ())
        why = errors[0] if errors else "no extension-release file"
        raise StrataError(
            f"Cannot install '{source}': not an extension image ({why})",
            hint=f"an extension carries usr/lib/extension-release.d/extension-release."
                 f"{entry.image_name} (or etc/extension-release.d/...)",
            kind=ErrorKind.INVALID)
    version = probe.version(entry.file_version)
    depends = Validated(entry=entry, probe=probe, version=version).depends
    check_path = _check_path(entry, _primary(probe).lookup_name)
    errors, warnings = check_rules(check_path, root, depends)
    errors, warnings = [plain(e) for e in errors], [plain(w) for w in warnings]
    if errors:
        for line in errors if len(errors) > 1 else ():  # one is the error itself
            log.error(f"{source}: {line}")
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise StrataError(f"Cannot install '{source}': {errors[0]}{more}",
                          hint=f"'strata check --host {root} IMAGE' shows every finding",
                          kind=ErrorKind.INVALID)
    verdicts = [plain(v) for v in engine_verdicts(check_path, probe, root, env, image_policy)]
    if verdicts:
        for line in verdicts if len(verdicts) > 1 else ():
            log.error(f"{source}: {line}")
        policy = any("image policy" in v for v in verdicts)
        raise StrataError(
            f"Cannot install '{source}': {verdicts[0]}",
            hint=("the image policy comes from --image-policy= or [ext] image_policy in "
                  "/etc/strata/strata.toml") if policy else None,
            kind=ErrorKind.PERMISSION if policy else ErrorKind.INCOMPATIBLE)
    for line in warnings:
        log.warning(f"{source}: {line}")
    return Validated(entry=entry, probe=probe, version=version, warnings=tuple(warnings))

