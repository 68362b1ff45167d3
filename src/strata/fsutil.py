"""Path helpers for the host filesystem: systemd's chase() with a root prefix."""

from __future__ import annotations

import errno
import os

from strata.errors import ErrorKind, StrataError
from strata.images.base import chase_path


def join_root(root: str, path: str) -> str:
    """<root><path> with exactly one slash between them; root "/" gives path itself."""
    rel = path.strip("/")
    if root in ("", "/"):
        return "/" + rel
    return root.rstrip("/") + ("/" + rel if rel else "")


def chase(path: str, root: str = "/", *, nonexistent: bool = False) -> str:
    """Resolve `path` below `root` following symlinks, with `root` acting as "/" for absolute
    link targets and ".." (systemd's chase() with CHASE_PREFIX_ROOT). Returns the host path.

    A missing component raises StrataError(NOT_FOUND) unless `nonexistent`, in which case the
    unresolved remainder is appended as is (CHASE_NONEXISTENT)."""

    def lstat_mode(cur: str) -> int | None:
        host = join_root(root, cur)
        try:
            return os.lstat(host).st_mode
        except FileNotFoundError:
            if nonexistent:
                return None
            raise StrataError(f"{host}: No such file or directory", kind=ErrorKind.NOT_FOUND,
                              errno=errno.ENOENT) from None
        except OSError as e:
            raise StrataError.from_os(e, host) from e

    def loop(link: str) -> StrataError:
        return StrataError(f"{join_root(root, link)}: Too many levels of symbolic links",
                           kind=ErrorKind.INVALID, errno=errno.ELOOP)

    resolved = chase_path(path, lstat_mode, lambda cur: os.readlink(join_root(root, cur)), loop)
    return join_root(root, resolved)


def dir_is_empty(path: str) -> bool:
    """True if the directory has no entries (hidden ones count, as in systemd)."""
    with os.scandir(path) as it:
        return next(it, None) is None
