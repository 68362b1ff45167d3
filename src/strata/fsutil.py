"""Path helpers for the host filesystem: systemd's chase() with a root prefix."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator

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


@contextlib.contextmanager
def flocked(path: str, waiting: str | None = None, *, what: str = "lock file",
            create: bool = False) -> Iterator[None]:
    """Hold an exclusive flock on `path` (a directory, or with `create` a lock file made if
    missing), saying `waiting` once if another process holds it. The lock goes with the last
    fd, so a crashed holder releases it."""
    import fcntl

    flags = os.O_CLOEXEC | (os.O_RDWR | os.O_CREAT if create else os.O_RDONLY | os.O_DIRECTORY)
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as e:
        raise StrataError.from_os(e, f"Failed to open {what} '{path}'") from e
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting:
                from strata import log

                log.info(waiting)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def read_optional(path: str, what: str = "") -> bytes | None:
    """The contents of the file `path`, None when it does not exist; any other failure is an
    error naming it (`what`: e.g. "key " in "Failed to read key '...'")."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise StrataError.from_os(e, f"Failed to read {what}'{path}'") from e


def dir_is_empty(path: str) -> bool:
    """True if the directory has no entries (hidden ones count, as in systemd)."""
    with os.scandir(path) as it:
        return next(it, None) is None
