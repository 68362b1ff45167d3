"""The new mount API (fsopen/fsconfig/fsmount/move_mount/open_tree/mount_setattr) via syscall(2).

Why the new API: a filesystem can be created *detached* (an fd, not yet in any mount table),
fully configured, checked, and only then attached - or slid beneath an existing mount with
MOVE_MOUNT_BENEATH, so a hierarchy such as /usr never goes missing during a refresh.

Why syscall(2): glibc 2.36 (Debian 12) wraps some of these but not all, and the numbers are the
same on every architecture we care about (the syscall table was unified for numbers >= 403).

Failures become StrataError naming the operation and the path or filesystem. fsconfig errors
carry the kernel's own explanation, read from the fs-context fd's log ("e overlay: ...").

Feature probes are cached per process. For tests (and for debugging on odd kernels) a probe can
be forced off with STRATA_KERNEL_DISABLE, a comma-separated list of: new-mount-api,
move-mount-beneath, lowerdir+, overlay-fd-layers, loop-configure (used by kernel.loop). It is read
on every call, so a test can set it just for one operation.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import struct
from collections.abc import Sequence

from strata.errors import ErrorKind, StrataError
from strata.kernel import libc

# --- syscall numbers: identical on all architectures (asm-generic unified table, >= 5.1) ---
NR_OPEN_TREE = 428
NR_MOVE_MOUNT = 429
NR_FSOPEN = 430
NR_FSCONFIG = 431
NR_FSMOUNT = 432
NR_FSPICK = 433
NR_MOUNT_SETATTR = 442

AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
AT_NO_AUTOMOUNT = 0x800
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000

# fsopen(2)
FSOPEN_CLOEXEC = 0x1

# fspick(2)
FSPICK_CLOEXEC = 0x1
FSPICK_SYMLINK_NOFOLLOW = 0x2
FSPICK_NO_AUTOMOUNT = 0x4
FSPICK_EMPTY_PATH = 0x8

# fsconfig(2) commands
FSCONFIG_SET_FLAG = 0
FSCONFIG_SET_STRING = 1
FSCONFIG_SET_BINARY = 2
FSCONFIG_SET_PATH = 3
FSCONFIG_SET_PATH_EMPTY = 4
FSCONFIG_SET_FD = 5
FSCONFIG_CMD_CREATE = 6
FSCONFIG_CMD_RECONFIGURE = 7
FSCONFIG_CMD_CREATE_EXCL = 8

# The kernel copies an FSCONFIG_SET_STRING value with strndup_user(value, 256) (fs/fsopen.c),
# so a value may hold at most 255 bytes; longer ones fail with EINVAL.
FSCONFIG_STRING_MAX = 255

# fsmount(2)
FSMOUNT_CLOEXEC = 0x1

# mount attributes (fsmount attr_flags, mount_setattr)
MOUNT_ATTR_RDONLY = 0x00000001
MOUNT_ATTR_NOSUID = 0x00000002
MOUNT_ATTR_NODEV = 0x00000004
MOUNT_ATTR_NOEXEC = 0x00000008
MOUNT_ATTR__ATIME = 0x00000070
MOUNT_ATTR_RELATIME = 0x00000000
MOUNT_ATTR_NOATIME = 0x00000010
MOUNT_ATTR_STRICTATIME = 0x00000020
MOUNT_ATTR_NODIRATIME = 0x00000080
MOUNT_ATTR_IDMAP = 0x00100000
MOUNT_ATTR_NOSYMFOLLOW = 0x00200000

MOUNT_ATTR_SIZE_VER0 = 32  # sizeof(struct mount_attr)

# move_mount(2)
MOVE_MOUNT_F_SYMLINKS = 0x00000001
MOVE_MOUNT_F_AUTOMOUNTS = 0x00000002
MOVE_MOUNT_F_EMPTY_PATH = 0x00000004
MOVE_MOUNT_T_SYMLINKS = 0x00000010
MOVE_MOUNT_T_AUTOMOUNTS = 0x00000020
MOVE_MOUNT_T_EMPTY_PATH = 0x00000040
MOVE_MOUNT_SET_GROUP = 0x00000100
MOVE_MOUNT_BENEATH = 0x00000200  # kernel >= 6.5

# open_tree(2)
OPEN_TREE_CLONE = 0x1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC

# statx(2)
STATX_MNT_ID = 0x00001000
STATX_MNT_ID_UNIQUE = 0x00004000  # kernel >= 6.8: 64-bit, never reused
_STATX_MASK_OFFSET = 0x00
_STATX_MNT_ID_OFFSET = 0x90

DISABLE_ENV = "STRATA_KERNEL_DISABLE"

FsOption = str | tuple[str, str | int]
"""An fsconfig option: a bare flag ("ro"), a string value ("lowerdir+", "/x"), or an fd value."""


def disabled(feature: str) -> bool:
    """Whether STRATA_KERNEL_DISABLE forces `feature` off (see the module docstring)."""
    raw = os.environ.get(DISABLE_ENV, "")
    return feature in {part.strip() for part in raw.split(",")}


def _path_arg(path: str | None) -> bytes | None:
    return None if path is None else os.fsencode(path)


def _sys(number: int, *args: int | bytes | ctypes.c_void_p | None) -> int:
    """syscall(2) with every integer widened to a C long (syscall() is variadic, so ctypes'
    default C int would leave the upper half of the register undefined)."""
    conv = [ctypes.c_long(a) if isinstance(a, int) else a for a in args]
    return libc.syscall(number, *conv)


# --- thin wrappers: raise OSError, callers add context ---


def fsopen(fstype: str, flags: int = FSOPEN_CLOEXEC) -> int:
    """A new filesystem context fd for `fstype`."""
    try:
        return _sys(NR_FSOPEN, os.fsencode(fstype), flags)
    except OSError as e:
        hint = "is the filesystem module loaded?" if e.errno == errno.ENODEV else None
        raise StrataError.from_os(e, f"fsopen {fstype}", hint=hint) from e


def fspick(path: str, flags: int = FSPICK_CLOEXEC) -> int:
    """A reconfiguration context fd for the superblock mounted at `path`."""
    try:
        return _sys(NR_FSPICK, AT_FDCWD, os.fsencode(path), flags)
    except OSError as e:
        raise StrataError.from_os(e, f"fspick {path}") from e


def _fsconfig_raw(fs_fd: int, cmd: int, key: str | None, value: bytes | None, aux: int) -> None:
    _sys(NR_FSCONFIG, fs_fd, cmd, _path_arg(key), value, aux)


def read_log(fs_fd: int) -> list[str]:
    """Drain the fs-context log: lines such as "e overlay: failed to resolve '/x': -2".
    The kernel keeps the last eight messages; reading returns one per call, then ENODATA."""
    lines: list[str] = []
    for _ in range(64):
        try:
            data = os.read(fs_fd, 4096)
        except OSError:
            break
        if not data:
            break
        lines.append(data.decode("utf-8", "replace").rstrip("\n"))
    return lines


def _log_suffix(lines: Sequence[str]) -> str:
    """Kernel log lines as one clause; the severity letter ("e ", "w ", "i ") is dropped."""
    msgs = [ln[2:] if len(ln) > 2 and ln[1] == " " and ln[0] in "ewi" else ln for ln in lines]
    return f" (kernel: {'; '.join(msgs)})" if msgs else ""


def _fsconfig(fs_fd: int, cmd: int, key: str | None, value: bytes | None, aux: int, *,
              what: str) -> None:
    try:
        _fsconfig_raw(fs_fd, cmd, key, value, aux)
    except OSError as e:
        lines = read_log(fs_fd)
        # Some checks (overlayfs' upper/work rules, for one) still only printk their reason.
        hint = None if lines else "the kernel log (dmesg) may say why"
        err = StrataError.from_os(e, what, hint=hint)
        raise StrataError(err.message + _log_suffix(lines), hint=err.hint, kind=err.kind,
                          errno=err.errno) from e


def fsconfig_flag(fs_fd: int, key: str, *, fs: str = "") -> None:
    _fsconfig(fs_fd, FSCONFIG_SET_FLAG, key, None, 0,
              what=f"fsconfig {fs} {key}".replace("  ", " "))


def fsconfig_string(fs_fd: int, key: str, value: str, *, fs: str = "") -> None:
    raw = os.fsencode(value)
    what = f"fsconfig {fs} {key}={value}".replace("  ", " ")
    if len(raw) > FSCONFIG_STRING_MAX:
        raise StrataError(
            f"{what}: value is {len(raw)} bytes, the kernel accepts at most "
            f"{FSCONFIG_STRING_MAX}", kind=ErrorKind.UNSUPPORTED, errno=errno.EINVAL)
    _fsconfig(fs_fd, FSCONFIG_SET_STRING, key, raw, 0, what=what)


def fsconfig_fd(fs_fd: int, key: str, fd: int, *, fs: str = "") -> None:
    _fsconfig(fs_fd, FSCONFIG_SET_FD, key, None, fd,
              what=f"fsconfig {fs} {key}=<fd {fd}>".replace("  ", " "))


def fsconfig_create(fs_fd: int, *, fs: str = "", source: str = "") -> None:
    """FSCONFIG_CMD_CREATE: build the superblock. Most mount errors surface here."""
    what = f"creating {fs or 'filesystem'}"
    if source.startswith("/"):
        what += f" from {source}"
    elif source:
        what += f" (source {source})"
    _fsconfig(fs_fd, FSCONFIG_CMD_CREATE, None, None, 0, what=what)


def fsmount(fs_fd: int, attrs: int = 0, flags: int = FSMOUNT_CLOEXEC, *, fs: str = "") -> int:
    """A detached mount fd for the created superblock."""
    try:
        return _sys(NR_FSMOUNT, fs_fd, flags, attrs)
    except OSError as e:
        detail = _log_suffix(read_log(fs_fd))
        err = StrataError.from_os(e, f"fsmount {fs}".rstrip())
        raise StrataError(err.message + detail, kind=err.kind, errno=err.errno) from e


def move_mount(from_dirfd: int, from_path: str, to_dirfd: int, to_path: str, flags: int) -> None:
    try:
        _sys(NR_MOVE_MOUNT, from_dirfd, os.fsencode(from_path), to_dirfd,
             os.fsencode(to_path), flags)
    except OSError as e:
        src = from_path or f"<fd {from_dirfd}>"
        dst = to_path or f"<fd {to_dirfd}>"
        raise StrataError.from_os(e, f"move_mount {src} -> {dst}") from e


def open_tree(path: str, flags: int, dirfd: int = AT_FDCWD) -> int:
    try:
        return _sys(NR_OPEN_TREE, dirfd, os.fsencode(path), flags)
    except OSError as e:
        raise StrataError.from_os(e, f"open_tree {path or f'<fd {dirfd}>'}") from e


def mount_setattr(path: str, flags: int, *, attr_set: int = 0, attr_clr: int = 0,
                  propagation: int = 0, userns_fd: int = 0, dirfd: int = AT_FDCWD) -> None:
    attr = struct.pack("=QQQQ", attr_set, attr_clr, propagation, userns_fd)  # struct mount_attr
    try:
        _sys(NR_MOUNT_SETATTR, dirfd, os.fsencode(path), flags, attr, MOUNT_ATTR_SIZE_VER0)
    except OSError as e:
        raise StrataError.from_os(e, f"mount_setattr {path or f'<fd {dirfd}>'}") from e


def mount_id(path_or_fd: str | int, *, follow_symlinks: bool = False) -> int:
    """The mount ID (as in /proc/self/mountinfo) of the mount holding a path, or of an fd
    (a detached mount fd from fsmount/open_tree works too)."""
    if isinstance(path_or_fd, int):
        dirfd, path, flags = path_or_fd, "", AT_EMPTY_PATH
        what = f"<fd {path_or_fd}>"
    else:
        dirfd, path = AT_FDCWD, path_or_fd
        flags = 0 if follow_symlinks else AT_SYMLINK_NOFOLLOW
        what = path_or_fd
    try:
        raw = libc.statx(dirfd, path, flags, STATX_MNT_ID)
    except OSError as e:
        raise StrataError.from_os(e, f"statx {what}") from e
    (mask,) = struct.unpack_from("=I", raw, _STATX_MASK_OFFSET)
    if not mask & STATX_MNT_ID:
        raise StrataError(f"statx {what}: the kernel reports no mount ID (needs Linux >= 5.8)",
                          kind=ErrorKind.UNSUPPORTED)
    (mnt,) = struct.unpack_from("=Q", raw, _STATX_MNT_ID_OFFSET)
    return int(mnt)


# --- feature probes: each makes a call that cannot change anything ---


def kernel_version() -> tuple[int, int]:
    """(major, minor) of the running kernel, used only where a probe is impossible."""
    release = os.uname().release
    parts = release.split(".", 2)
    try:
        return int(parts[0]), int("".join(ch for ch in parts[1] if ch.isdigit()) or 0)
    except (IndexError, ValueError):
        return 0, 0


def _probe_errno(number: int, *args: int | bytes | ctypes.c_void_p | None) -> int:
    try:
        _sys(number, *args)
    except OSError as e:
        return e.errno or 0
    return 0


@functools.cache
def _probe_new_mount_api() -> bool:
    # Invalid fds: a kernel with the syscalls answers EBADF/EINVAL, one without ENOSYS; seccomp
    # sandboxes that deny them answer EPERM (or ENOSYS). mount_setattr (5.12) is the newest
    # one we rely on, so probe it too.
    if _probe_errno(NR_FSCONFIG, -1, FSCONFIG_CMD_CREATE, None, None, 0) in (
            errno.ENOSYS, errno.EPERM):
        return False
    return _probe_errno(NR_MOUNT_SETATTR, -1, b"", AT_EMPTY_PATH, None, 0) not in (
        errno.ENOSYS, errno.EPERM)


def has_new_mount_api() -> bool:
    """fsopen/fsconfig/fsmount/move_mount/open_tree (5.2) and mount_setattr (5.12)."""
    return not disabled("new-mount-api") and _probe_new_mount_api()


@functools.cache
def _probe_move_mount_beneath() -> bool:
    # move_mount rejects unknown flags with EINVAL before looking at anything else; with a
    # known flag set it goes on to resolve the (invalid) source fd and fails with EBADF.
    code = _probe_errno(NR_MOVE_MOUNT, -1, b"", -1, b"",
                        MOVE_MOUNT_BENEATH | MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH)
    return code not in (errno.EINVAL, errno.ENOSYS, errno.EPERM)


def has_move_mount_beneath() -> bool:
    """MOVE_MOUNT_BENEATH (kernel >= 6.5), probed without side effects."""
    return (has_new_mount_api() and not disabled("move-mount-beneath")
            and _probe_move_mount_beneath())


def _overlay_probe(key: str, value: str | None, fd: int | None) -> bool | None:
    """Configure one overlay parameter on a throw-away context: True accepted, False rejected,
    None when the probe itself cannot run (no CAP_SYS_ADMIN, no overlay)."""
    try:
        fs_fd = _sys(NR_FSOPEN, b"overlay", FSOPEN_CLOEXEC)
    except OSError:
        return None
    try:
        if fd is not None:
            _fsconfig_raw(fs_fd, FSCONFIG_SET_FD, key, None, fd)
        else:
            _fsconfig_raw(fs_fd, FSCONFIG_SET_STRING, key, _path_arg(value), 0)
    except OSError:
        return False
    finally:
        os.close(fs_fd)
    return True


@functools.cache
def _probe_lowerdir_plus() -> bool:
    if not _probe_new_mount_api():
        return False
    result = _overlay_probe("lowerdir+", "/", None)
    if result is None:
        return kernel_version() >= (6, 8)
    return result


def overlay_has_lowerdir_plus() -> bool:
    """overlayfs takes layers one at a time with "lowerdir+" (kernel >= 6.8), which lifts the
    255-byte fsconfig limit on the whole lowerdir= string and needs no escaping."""
    return not disabled("lowerdir+") and has_new_mount_api() and _probe_lowerdir_plus()


@functools.cache
def _probe_overlay_fd_layers() -> bool:
    if not _probe_lowerdir_plus():
        return False
    # Detached mounts and open_tree() fds are O_PATH files; overlay accepted layers as plain
    # fds from 6.13 and O_PATH ones only later. Probe with what we would pass: an O_PATH fd.
    try:
        fd = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return bool(_overlay_probe("lowerdir+", None, fd))
    finally:
        os.close(fd)


def overlay_has_fd_layers() -> bool:
    """overlayfs accepts "lowerdir+"/"upperdir"/"workdir" as O_PATH fds through FSCONFIG_SET_FD,
    so a layer can be a detached mount that never appears in any mount table."""
    return (overlay_has_lowerdir_plus() and not disabled("overlay-fd-layers")
            and _probe_overlay_fd_layers())


def _require_new_api(what: str) -> None:
    if not has_new_mount_api():
        raise StrataError(f"{what}: the kernel lacks the new mount API",
                          hint="Linux >= 5.12 is required", kind=ErrorKind.UNSUPPORTED)


# --- higher level ---


def mount_fs(source: str, fstype: str, *, options: Sequence[FsOption] = (),
             attrs: int = 0) -> int:
    """Create a filesystem and return a DETACHED mount fd (owned by the caller).

    options go to fsconfig in order: a str is a flag ("ro"), (key, str) a string value,
    (key, int) an fd. Give "ro" for a read-only block device (a read-only loop device), else
    filesystems like ext4 try to open it for writing; erofs and squashfs are read-only anyway.
    attrs are MOUNT_ATTR_* bits for the mount (not the superblock).
    """
    _require_new_api(f"mounting {source} ({fstype})")
    fs_fd = fsopen(fstype)
    try:
        if source:
            fsconfig_string(fs_fd, "source", source, fs=fstype)
        for opt in options:
            if isinstance(opt, str):
                fsconfig_flag(fs_fd, opt, fs=fstype)
            elif isinstance(opt[1], int):
                fsconfig_fd(fs_fd, opt[0], opt[1], fs=fstype)
            else:
                fsconfig_string(fs_fd, opt[0], opt[1], fs=fstype)
        fsconfig_create(fs_fd, fs=fstype, source=source)
        return fsmount(fs_fd, attrs, fs=fstype)
    finally:
        os.close(fs_fd)


def attach(mnt_fd: int, target: str, *, beneath: bool = False) -> None:
    """Attach a detached mount fd at `target` (a symlink at target is not followed).

    beneath=True slides the mount *under* the mount on top of `target` (MOVE_MOUNT_BENEATH,
    kernel >= 6.5): unmounting the top one then reveals it, with no moment where `target`
    shows the directory underneath.
    """
    flags = MOVE_MOUNT_F_EMPTY_PATH
    if beneath:
        if not has_move_mount_beneath():
            raise StrataError(f"mounting beneath {target}: the kernel lacks MOVE_MOUNT_BENEATH",
                              hint="Linux >= 6.5 is required", kind=ErrorKind.UNSUPPORTED)
        flags |= MOVE_MOUNT_BENEATH
    move_mount(mnt_fd, "", AT_FDCWD, target, flags)


def clone_tree(path: str, *, recursive: bool) -> int:
    """A detached copy of the mount (tree) at `path` (open_tree OPEN_TREE_CLONE). Without
    `recursive` the copy excludes submounts, so it shows what they cover."""
    _require_new_api(f"cloning {path}")
    flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (AT_RECURSIVE if recursive else 0)
    return open_tree(path, flags)


def set_attrs(path_or_fd: str | int, *, attr_set: int = 0, attr_clr: int = 0,
              recursive: bool = False) -> None:
    """Change mount attributes (e.g. MOUNT_ATTR_RDONLY) of a mount, or a whole tree."""
    _require_new_api("mount_setattr")
    flags = AT_RECURSIVE if recursive else 0
    if isinstance(path_or_fd, int):
        mount_setattr("", flags | AT_EMPTY_PATH, attr_set=attr_set, attr_clr=attr_clr,
                      dirfd=path_or_fd)
    else:
        mount_setattr(path_or_fd, flags | AT_SYMLINK_NOFOLLOW, attr_set=attr_set,
                      attr_clr=attr_clr)


def detach(path: str) -> None:
    """Lazily unmount the top mount at `path` (umount2 MNT_DETACH, symlinks not followed)."""
    try:
        libc.umount2(path, libc.MNT_DETACH | libc.UMOUNT_NOFOLLOW)
    except OSError as e:
        raise StrataError.from_os(e, f"unmounting {path}") from e


def unmount(path: str) -> None:
    """Unmount the top mount at `path`; EBUSY if it is in use."""
    try:
        libc.umount2(path, libc.UMOUNT_NOFOLLOW)
    except OSError as e:
        hint = "it is in use; unmount lazily instead" if e.errno == errno.EBUSY else None
        raise StrataError.from_os(e, f"unmounting {path}", hint=hint) from e
