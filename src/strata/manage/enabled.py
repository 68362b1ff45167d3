"""The enabled set: which extensions are enabled for which OS release.

    <root>/var/lib/strata/os-releases/<VERSION_ID>/<image file name>  -> the image (symlink)
    <root>/var/lib/strata/os-releases/<VERSION_ID>/.priorities.json   {"version": 1,
                                                                       "priorities": {name: N}}

avocadoctl's older layout, under Strata's directory. A link is named like the image file
(`app-1.2.raw`, or `app` for a directory) and points at it with a relative path, so the
enabled set stays valid when the root is mounted elsewhere (a scratch root, an A/B slot).
Priorities (`enable --priority N`) sit next to the links, keyed by extension name; an
extension without an entry has priority 0. The file is hidden so that tools listing images in
that directory (avocadoctl scans it) never take it for one. Every change is atomic (see
fsio.py). The default OS release is VERSION_ID of the root's os-release, "unknown" when it has
none (as avocadoctl).
"""

from __future__ import annotations

import os
import posixpath
import stat as _stat

from strata.errors import ErrorKind, StrataError
from strata.fsutil import chase
from strata.record import record

OS_RELEASES_DIR = "/var/lib/strata/os-releases"
PRIORITIES_FILE = ".priorities.json"
UNKNOWN_RELEASE = "unknown"


def host_version_id(root: str) -> str:
    """VERSION_ID of <root>/etc/os-release (else <root>/usr/lib/os-release), or "unknown"
    when there is none or the file cannot be read."""
    from strata.release import load_host_release

    try:
        version = load_host_release(root, {}).version_id
    except StrataError:
        return UNKNOWN_RELEASE
    return version if release_problem(version) is None else UNKNOWN_RELEASE


def release_problem(version: str) -> str | None:
    """Why `version` cannot name an os-releases directory, or None."""
    if not version:
        return "it is empty"
    if "/" in version or version in (".", ".."):
        return "it is not a valid directory name"
    if version.startswith("."):
        return "it must not start with '.'"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in version):
        return "it contains control characters"
    return None


def check_release(version: str) -> str:
    why = release_problem(version)
    if why is not None:
        raise StrataError(f"Invalid OS release '{version}': {why}.", kind=ErrorKind.USAGE)
    return version


def release_dir(root: str, version: str) -> str:
    """The host path of the release's directory (which may not exist yet)."""
    return chase(f"{OS_RELEASES_DIR}/{version}", root, nonexistent=True)


@record
class EnabledLink:
    """One enabled image."""

    link: str  # file name in the release directory
    target: str  # the link's text
    real: str | None  # host path it leads to (inside the root), None when dangling
    in_root: str  # the link's own path inside the root


def read_links(root: str, version: str) -> list[EnabledLink]:
    """The links of a release, sorted by name; other entries are ignored."""
    directory = release_dir(root, version)
    try:
        names = sorted(os.listdir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as e:
        raise StrataError.from_os(e, f"Failed to read '{directory}'") from e
    out: list[EnabledLink] = []
    parents: dict[str, str | None] = {}  # in-root directory -> host path, resolved once
    rel = os.path.relpath(directory, root)
    rel_dir = "/" if rel == "." else "/" + rel  # the directory as seen inside the root
    prefix = f"{OS_RELEASES_DIR}/{version}/"
    for name in names:
        if name.startswith("."):
            continue
        try:
            target = os.readlink(directory + "/" + name)
        except OSError:
            continue  # not a symlink: not ours
        real = _follow(root, rel_dir, target, parents)
        out.append(EnabledLink(link=name, target=target, real=real, in_root=prefix + name))
    return out


def _follow(root: str, rel_dir: str, target: str, parents: dict[str, str | None]
            ) -> str | None:
    """The host path a link in `rel_dir` (a directory inside the root, symlinks resolved)
    with text `target` leads to, with `root` as "/"; None when it leads nowhere usable. The
    links of one release point into a few directories: those are resolved once, then one
    lstat per link."""
    in_root = posixpath.normpath(posixpath.join(rel_dir, target))
    if in_root.startswith("//"):
        in_root = in_root[1:]
    parent, _slash, base = in_root.rpartition("/")
    parent = parent or "/"
    if parent not in parents:
        try:
            parents[parent] = chase(parent, root)
        except StrataError:
            parents[parent] = None
    host_parent = parents[parent]
    if host_parent is None:
        return None
    real = os.path.join(host_parent, base)
    try:
        st = os.lstat(real)
        if _stat.S_ISLNK(st.st_mode):
            real = chase(in_root, root)
            st = os.stat(real)
    except (OSError, StrataError):
        return None
    return real if _stat.S_ISDIR(st.st_mode) or _stat.S_ISREG(st.st_mode) else None


def read_priorities(root: str, version: str) -> dict[str, int]:
    import json

    path = os.path.join(release_dir(root, version), PRIORITIES_FILE)
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise StrataError(f"Failed to read '{path}': {e}", kind=ErrorKind.CONFIGURATION
                          ) from e
    prios = data.get("priorities") if isinstance(data, dict) else None
    if not isinstance(prios, dict) or not all(
            isinstance(k, str) and type(v) is int for k, v in prios.items()):
        raise StrataError(f"Failed to read '{path}': expected "
                          '{"version": 1, "priorities": {"<name>": <integer>, ...}}',
                          kind=ErrorKind.CONFIGURATION)
    return dict(prios)


def write_priorities(directory: str, priorities: dict[str, int]) -> None:
    import json

    from strata.manage import fsio

    if not priorities:
        fsio.remove(directory, PRIORITIES_FILE)
        return
    body = {"version": 1, "priorities": dict(sorted(priorities.items()))}
    fsio.replace_file(directory, PRIORITIES_FILE,
                      (json.dumps(body, indent=2) + "\n").encode())


def link_target(image_path: str, directory: str) -> str:
    """What a link in `directory` says to reach `image_path` (both host paths with symlinks
    already resolved): a relative path, valid wherever the root is mounted."""
    return os.path.relpath(image_path, directory)


def ensure_dir(root: str, version: str) -> str:
    from strata.manage import fsio

    directory = release_dir(root, version)
    fsio.make_dirs(directory)
    return directory

