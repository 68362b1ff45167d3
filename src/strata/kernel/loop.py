"""Loop devices through /dev/loop-control and the LOOP_CONFIGURE ioctl (no losetup).

LOOP_CONFIGURE (Linux >= 5.8) binds the backing file and sets offset, size limit, flags and
block size in one atomic call, so no other process ever sees a half-configured device. Older
kernels get LOOP_SET_FD + LOOP_SET_STATUS64 (+ LOOP_SET_DIRECT_IO / LOOP_SET_BLOCK_SIZE).

The autoclear trap: with LO_FLAGS_AUTOCLEAR the kernel unbinds the device when its *last* opener
goes away. Our fd is that opener until a filesystem is mounted from the device. Keep the
LoopDevice open until the mount exists (a detached fd from fsmount counts), then close it: from
then on the mount holds the device, and unmounting frees it. Close it before mounting and the
device is gone; never close it and the device outlives the mount.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import struct
import time
from types import TracebackType

from strata.errors import ErrorKind, StrataError
from strata.kernel import mountapi

# <linux/loop.h>
LOOP_SET_FD = 0x4C00
LOOP_CLR_FD = 0x4C01
LOOP_SET_STATUS64 = 0x4C04
LOOP_GET_STATUS64 = 0x4C05
LOOP_SET_DIRECT_IO = 0x4C08
LOOP_SET_BLOCK_SIZE = 0x4C09
LOOP_CONFIGURE = 0x4C0A
LOOP_CTL_ADD = 0x4C80
LOOP_CTL_REMOVE = 0x4C81
LOOP_CTL_GET_FREE = 0x4C82

LO_FLAGS_READ_ONLY = 1
LO_FLAGS_AUTOCLEAR = 4
LO_FLAGS_PARTSCAN = 8
LO_FLAGS_DIRECT_IO = 16

LO_NAME_SIZE = 64
LO_KEY_SIZE = 32
LOOP_MAJOR = 7

# struct loop_info64: lo_device, lo_inode, lo_rdevice, lo_offset, lo_sizelimit (u64),
# lo_number, lo_encrypt_type, lo_encrypt_key_size, lo_flags (u32), lo_file_name[64],
# lo_crypt_name[64], lo_encrypt_key[32], lo_init[2] (u64) = 232 bytes
_INFO64 = struct.Struct(f"=5Q4I{LO_NAME_SIZE}s{LO_NAME_SIZE}s{LO_KEY_SIZE}s2Q")
# struct loop_config: fd, block_size (u32), struct loop_info64 info, __reserved[8] (u64)
_CONFIG = struct.Struct(f"=2I{_INFO64.size}s64x")

_ATTEMPTS = 64
LOOP_CONTROL = "/dev/loop-control"


class LoopDevice:
    """An attached loop device and our open fd on it (see the module docstring on autoclear).

    Use as a context manager, or call close() once the filesystem is mounted."""

    __slots__ = ("_fd", "_number", "_path")

    def __init__(self, number: int, path: str, fd: int) -> None:
        self._number = number
        self._path = path
        self._fd = fd

    @property
    def number(self) -> int:
        return self._number

    @property
    def path(self) -> str:
        return self._path

    @property
    def fd(self) -> int:
        """Our fd on the device; -1 once closed."""
        return self._fd

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def close(self) -> None:
        """Drop our reference; with autoclear and no mount, this unbinds the device."""
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)

    def clear(self) -> None:
        """Unbind the backing file now (LOOP_CLR_FD); for devices without autoclear."""
        if self._fd < 0:
            raise StrataError(f"clearing {self._path}: device fd is closed", kind=ErrorKind.USAGE)
        try:
            fcntl.ioctl(self._fd, LOOP_CLR_FD, 0)
        except OSError as e:
            raise StrataError.from_os(e, f"clearing {self._path}") from e

    def __enter__(self) -> LoopDevice:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LoopDevice(number={self._number}, path={self._path!r}, fd={self._fd})"


def pack_info64(*, offset: int, size: int, flags: int, file_name: str) -> bytes:
    name = os.fsencode(file_name)[: LO_NAME_SIZE - 1]
    return _INFO64.pack(0, 0, 0, offset, size, 0, 0, 0, flags, name, b"", b"", 0, 0)


def pack_config(*, fd: int, block_size: int, info: bytes) -> bytes:
    return _CONFIG.pack(fd, block_size, info)


def attach(
    backing: str,
    *,
    offset: int = 0,
    size: int = 0,
    read_only: bool = True,
    autoclear: bool = True,
    direct_io: bool = False,
    block_size: int = 0,
    partscan: bool = False,
) -> LoopDevice:
    """Bind `backing` (a file, from byte `offset`, `size` bytes or 0 for the rest) to a free
    loop device and return it with our fd open. Mind the autoclear trap (module docstring)."""
    if offset < 0 or size < 0:
        raise StrataError(f"loop device for {backing}: negative offset or size",
                          kind=ErrorKind.USAGE)
    flags = (LO_FLAGS_READ_ONLY if read_only else 0) | (LO_FLAGS_AUTOCLEAR if autoclear else 0)
    flags |= (LO_FLAGS_PARTSCAN if partscan else 0) | (LO_FLAGS_DIRECT_IO if direct_io else 0)
    try:
        backing_fd = os.open(backing, (os.O_RDONLY if read_only else os.O_RDWR) | os.O_CLOEXEC)
    except OSError as e:
        raise StrataError.from_os(e, f"opening {backing}") from e
    try:
        ctl = _open_control()
        try:
            return _attach_free(ctl, backing_fd, backing, offset=offset, size=size, flags=flags,
                                block_size=block_size, read_only=read_only)
        finally:
            os.close(ctl)
    finally:
        os.close(backing_fd)  # the loop device holds its own reference now


def _open_control() -> int:
    try:
        return os.open(LOOP_CONTROL, os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        raise StrataError.from_os(e, f"opening {LOOP_CONTROL}",
                                  hint="is the loop module loaded?") from e


def _attach_free(ctl: int, backing_fd: int, backing: str, *, offset: int, size: int, flags: int,
                 block_size: int, read_only: bool) -> LoopDevice:
    """Take free devices until one binds: between LOOP_CTL_GET_FREE and our ioctl another
    process may take the same device, which shows as EBUSY (or ENXIO while it is removed)."""
    info = pack_info64(offset=offset, size=size, flags=flags, file_name=backing)
    for attempt in range(_ATTEMPTS):
        try:
            number = fcntl.ioctl(ctl, LOOP_CTL_GET_FREE, 0)
        except OSError as e:
            raise StrataError.from_os(e, "finding a free loop device") from e
        path = f"/dev/loop{number}"
        dev_fd = _open_device(number, path, read_only)
        if dev_fd is not None:
            try:
                bound = _configure(dev_fd, backing_fd, path, backing, info=info, flags=flags,
                                   block_size=block_size)
            except BaseException:
                os.close(dev_fd)
                raise
            if bound:
                return LoopDevice(number, path, dev_fd)
            os.close(dev_fd)
        time.sleep(0.0005 * attempt)
    raise StrataError(f"no free loop device for {backing}: lost the race {_ATTEMPTS} times",
                      kind=ErrorKind.BUSY)


def _configure(dev_fd: int, backing_fd: int, path: str, backing: str, *, info: bytes,
               flags: int, block_size: int) -> bool:
    """Bind and configure; False when another process won the device (EBUSY)."""
    if not mountapi.disabled("loop-configure"):
        try:
            fcntl.ioctl(dev_fd, LOOP_CONFIGURE,
                        pack_config(fd=backing_fd, block_size=block_size, info=info))
            return True
        except OSError as e:
            if e.errno == errno.EBUSY:
                return False
            # Before 5.8 the ioctl is unknown (EINVAL/ENOTTY); after, EINVAL is about our values.
            if e.errno not in (errno.EINVAL, errno.ENOTTY) or _configure_known():
                raise StrataError.from_os(e, f"configuring {path} for {backing}") from e
    return _legacy_configure(dev_fd, backing_fd, path, backing, info=info, flags=flags,
                             block_size=block_size)


def _configure_known() -> bool:
    """Whether the kernel certainly knows LOOP_CONFIGURE (5.8)."""
    return mountapi.kernel_version() >= (5, 8)


def _legacy_configure(dev_fd: int, backing_fd: int, path: str, backing: str, *, info: bytes,
                      flags: int, block_size: int) -> bool:
    """LOOP_SET_FD + LOOP_SET_STATUS64; False when another process won the device (EBUSY)."""
    try:
        fcntl.ioctl(dev_fd, LOOP_SET_FD, backing_fd)
    except OSError as e:
        if e.errno == errno.EBUSY:
            return False
        raise StrataError.from_os(e, f"binding {backing} to {path}") from e
    try:
        # READ_ONLY follows from the O_RDONLY backing fd; DIRECT_IO has its own ioctl.
        fcntl.ioctl(dev_fd, LOOP_SET_STATUS64, info)
        if flags & LO_FLAGS_DIRECT_IO:
            fcntl.ioctl(dev_fd, LOOP_SET_DIRECT_IO, 1)
        if block_size:
            fcntl.ioctl(dev_fd, LOOP_SET_BLOCK_SIZE, block_size)
    except OSError as e:
        try:
            fcntl.ioctl(dev_fd, LOOP_CLR_FD, 0)
        except OSError:
            pass
        raise StrataError.from_os(e, f"configuring {path} for {backing}") from e
    return True


def _open_device(number: int, path: str, read_only: bool) -> int | None:
    mode = (os.O_RDONLY if read_only else os.O_RDWR) | os.O_CLOEXEC
    for _ in range(2):
        try:
            return os.open(path, mode)
        except FileNotFoundError:
            _make_node(number, path)  # minimal containers: /dev without devtmpfs
        except OSError as e:
            if e.errno in (errno.ENXIO, errno.ENODEV):
                return None
            raise StrataError.from_os(e, f"opening {path}") from e
    return None


def _device_numbers(number: int) -> tuple[int, int]:
    """major:minor from sysfs (minors depend on loop's max_part), else the usual 7:N."""
    try:
        with open(f"/sys/devices/virtual/block/loop{number}/dev") as f:
            major, _, minor = f.read().strip().partition(":")
            return int(major), int(minor)
    except (OSError, ValueError):
        return LOOP_MAJOR, number


def _make_node(number: int, path: str) -> None:
    major, minor = _device_numbers(number)
    try:
        os.mknod(path, 0o660 | stat.S_IFBLK, os.makedev(major, minor))
    except FileExistsError:
        pass
    except OSError as e:
        raise StrataError.from_os(e, f"creating device node {path}") from e


def backing_file(number: int) -> str | None:
    """The backing file of /dev/loopN per sysfs, or None when the device is unbound."""
    try:
        with open(f"/sys/block/loop{number}/loop/backing_file", "rb") as f:
            return os.fsdecode(f.read().rstrip(b"\n"))
    except FileNotFoundError:
        return None
    except OSError as e:
        raise StrataError.from_os(e, f"reading loop{number}'s backing file") from e
