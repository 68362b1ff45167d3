"""ctypes access to libc, with errno turned into OSError."""

from __future__ import annotations

import ctypes
import os
from typing import Any


def _load() -> ctypes.CDLL:
    # The interpreter already has libc mapped: CDLL(None) finds its symbols without
    # ctypes.util.find_library(), which imports subprocess and may even run ldconfig.
    lib = ctypes.CDLL(None, use_errno=True)
    if hasattr(lib, "mount") and hasattr(lib, "syscall"):
        return lib
    from ctypes import util

    return ctypes.CDLL(util.find_library("c") or "libc.so.6", use_errno=True)


_libc = _load()


def call(name: str, *args: Any) -> int:
    """Call libc function `name`; a -1 return raises OSError with errno."""
    fn = getattr(_libc, name)
    ret = int(fn(*args))
    if ret == -1:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret


def syscall(number: int, *args: Any) -> int:
    """Raw syscall(2); a -1 return raises OSError with errno."""
    ret = int(_libc.syscall(ctypes.c_long(number), *args))
    if ret == -1:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret


CLONE_NEWNS = 0x00020000


def unshare(flags: int) -> None:
    call("unshare", ctypes.c_int(flags))


def setns(fd: int, nstype: int) -> None:
    call("setns", ctypes.c_int(fd), ctypes.c_int(nstype))


def mount(source: str | None, target: str, fstype: str | None, flags: int,
          data: str | None = None) -> None:
    call("mount", _b(source), _b(target), _b(fstype), ctypes.c_ulong(flags), _b(data))


def umount2(target: str, flags: int = 0) -> None:
    call("umount2", _b(target), ctypes.c_int(flags))


STATX_BUFSIZE = 256  # sizeof(struct statx) in every kernel ABI so far


def statx(dirfd: int, path: str | bytes, flags: int, mask: int) -> bytes:
    """statx(2) through glibc (>= 2.28); returns the raw struct statx for the caller to decode,
    so only the fields a caller needs get named (see mountapi.mount_id)."""
    buf = ctypes.create_string_buffer(STATX_BUFSIZE)
    raw = path if isinstance(path, bytes) else os.fsencode(path)
    call("statx", ctypes.c_int(dirfd), raw, ctypes.c_int(flags), ctypes.c_uint(mask), buf)
    return buf.raw


def _b(s: str | None) -> bytes | None:
    return None if s is None else os.fsencode(s)


# mount(2) flags
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_NOSYMFOLLOW = 256
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24

# umount2(2) flags
MNT_FORCE = 1
MNT_DETACH = 2
UMOUNT_NOFOLLOW = 8
