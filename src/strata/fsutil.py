"""Path helpers for the host filesystem: systemd's chase() with a root prefix."""

from __future__ import annotations

import errno
import os
import stat

from strata.errors import ErrorKind, StrataError

_MAX_HOPS = 40


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
    todo = [p for p in path.split("/") if p and p != "."]
    done: list[str] = []
    hops = 0
    while todo:
        part = todo.pop(0)
        if part == "..":
            if done:
                done.pop()
            continue
        host = join_root(root, "/".join([*done, part]))
        try:
            st = os.lstat(host)
        except FileNotFoundError:
            if nonexistent:
                done.append(part)
                done.extend(p for p in todo if p != "..")
                break
            raise StrataError(f"{host}: No such file or directory", kind=ErrorKind.NOT_FOUND,
                              errno=errno.ENOENT) from None
        except OSError as e:
            raise StrataError.from_os(e, host) from e
        if stat.S_ISLNK(st.st_mode):
            hops += 1
            if hops > _MAX_HOPS:
                raise StrataError(f"{host}: Too many levels of symbolic links",
                                  kind=ErrorKind.INVALID, errno=errno.ELOOP)
            target = os.readlink(host)
            if target.startswith("/"):
                done = []
            todo = [p for p in target.split("/") if p and p != "."] + todo
            continue
        done.append(part)
    return join_root(root, "/".join(done))


def dir_is_empty(path: str) -> bool:
    """True if the directory has no entries (hidden ones count, as in systemd)."""
    with os.scandir(path) as it:
        return next(it, None) is None
