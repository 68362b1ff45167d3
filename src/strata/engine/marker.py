"""The marker directory (.systemd-sysext / .systemd-confext) systemd writes at the top of each
merged hierarchy, and the "is this merge ours?" test (is_our_mount_point in sysext.c).

Strata writes exactly what systemd v257 writes so that either tool can read and undo the
other's merges: `extensions` (or `confexts`) lists every merged image name, ascending by
strverscmp_improved, one per line; `dev` holds "MAJ:MIN" of the overlay; `work_dir` the
cescaped workdir relative to the root (persistent mutable modes only). Every file ends with a
newline (systemd's write_string_file()).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence

from strata.errors import ErrorKind, StrataError
from strata.model import ExtClass
from strata.parse import cescape, cunescape, parse_devnum
from strata.record import record


@record
class MergedState:
    """What the marker of a live merge says."""

    path: str  # the hierarchy's host path (root prefix included)
    extensions: tuple[str, ...]
    since_us: int  # mtime of the merged hierarchy root, in µs
    dev: tuple[int, int]
    work_dir: str | None  # absolute host path of the workdir, if any


def marker_files(cls: ExtClass, extensions: Sequence[str], work_dir_in_root: str | None
                 ) -> dict[str, str]:
    """Marker file name -> content, except `dev` (known only once the overlay exists)."""
    files = {cls.marker_list: "\n".join(extensions) + "\n"}
    if work_dir_in_root is not None:
        files["work_dir"] = cescape(work_dir_in_root) + "\n"
    return files


def format_dev(st_dev: int) -> str:
    return f"{os.major(st_dev)}:{os.minor(st_dev)}\n"


def _read_one_line(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            data = f.read(4096)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise StrataError.from_os(e, f"Failed to read '{path}'") from e
    return data.split(b"\n", 1)[0].decode(errors="surrogateescape")


def is_mount_point(path: str) -> bool:
    """True if `path` is the root of a mount. A device number different from the parent's
    settles it cheaply (always the case for an overlay); otherwise (bind mounts within one
    filesystem) mountinfo decides."""
    try:
        st = os.lstat(path)
        parent = os.lstat(os.path.join(path, ".."))
    except OSError:
        return False
    if st.st_dev != parent.st_dev or st.st_ino == parent.st_ino:
        return True
    child, up = _mnt_id(path), _mnt_id(os.path.join(path, ".."))
    if child is not None and up is not None:
        return child != up
    from strata.kernel import mountinfo

    real = os.path.realpath(path)
    return any(e.mountpoint == real for e in mountinfo.read())


def _mnt_id(path: str) -> int | None:
    """The mount ID of `path` from /proc/self/fdinfo (what systemd falls back to without
    statx): two small reads instead of parsing the whole mount table."""
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        with open(f"/proc/self/fdinfo/{fd}", "rb") as f:
            for line in f:
                if line.startswith(b"mnt_id:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)
    return None


def read_merged(cls: ExtClass, path: str, root: str) -> MergedState | None:
    """The merge state of hierarchy `path`, or None if it is not a live merge of this class
    (not a mount point, no marker, or a marker whose dev does not match: an offline copy)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise StrataError.from_os(e, f"Failed to stat {path}") from e
    if not is_mount_point(path):
        return None
    mdir = os.path.join(path, cls.marker_dir)
    line = _read_one_line(os.path.join(mdir, "dev"))
    if line is None:
        return None
    dev = parse_devnum(line)
    if dev is None:
        raise StrataError(f"Failed to parse device major/minor stored in '{cls.marker_dir}/dev' "
                          f"file on '{path}': Invalid argument", kind=ErrorKind.INVALID,
                          errno=errno.EINVAL)
    if (os.major(st.st_dev), os.minor(st.st_dev)) != dev:
        return None
    list_file = os.path.join(mdir, cls.marker_list)
    try:
        with open(list_file, "rb") as f:
            names = f.read().decode(errors="surrogateescape")
    except OSError as e:
        raise StrataError.from_os(e, f"Failed to open '{list_file}'") from e
    work_dir = None
    wd_line = _read_one_line(os.path.join(mdir, "work_dir"))
    if wd_line is not None:
        try:
            rel = cunescape(wd_line)
        except ValueError as e:
            raise StrataError(f"Failed to unescape work directory path in {mdir}/work_dir: {e}",
                              kind=ErrorKind.INVALID) from e
        work_dir = os.path.join(root, rel.lstrip("/")) if root != "/" else "/" + rel.lstrip("/")
    return MergedState(
        path=path,
        extensions=tuple(n for n in names.split("\n") if n),
        since_us=st.st_mtime_ns // 1000,
        dev=dev,
        work_dir=work_dir,
    )
