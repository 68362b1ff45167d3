"""Finding extension images like systemd v257's image_discover() (src/shared/discover-image.c).

For each directory of the search path (resolved inside `--root`), every entry in readdir order:

* `.` and `..` are skipped;
* it is stat()ed *following* symlinks when no `--root` was given, and *not* following them when one
  was (even `--root=/`): under a root a symlink is "neither regular file, directory nor block
  device" and is skipped. A dangling symlink (ENOENT) is skipped silently; any other stat error
  (e.g. ELOOP from a symlink loop) fails the whole discovery, as in systemd;
* regular file: must end in `.raw`; the name is the file name without `.raw` and then without an
  optional `.sysext`/`.confext` (the class's own suffix only);
* directory ending in `.v`: vpick chooses the newest `<name>_<version>...` entry (`foo.raw.v` and
  `foo.sysext.raw.v` hold regular files or block devices, any other `foo.v` directories);
* other directory: its name without the optional class suffix; block device: its name unchanged;
* anything else (fifo, socket, character device such as a `/dev/null` symlink) is skipped;
* the name must be a valid file name without control characters, valid UTF-8, not `.#...`;
* the first directory (then the first readdir entry) to offer a name wins; later ones are shadowed.
  An empty directory therefore masks an image of the same name further down the path.

Differences in later systemd, for reference: v259+ follows symlinks under `--root` too, resolving
them inside the root (PR systemd/systemd#39843); v262's initrd search path adds
`/.extra/global_sysext` and `/.extra/global_confext`; v262 skips `.sysupdate.*` entries and reports
a subvolume's ctime as its mtime.
"""

from __future__ import annotations

import enum
import errno as _errno
import os
import stat as _stat
import sys
from collections.abc import Sequence

from strata import vpick
from strata.errors import StrataError
from strata.model import ExtClass, ImageType
from strata.record import record

_NAME_MAX = 255
_CHASE_MAX = 32  # symlinks followed before ELOOP, as systemd's chase()
_UINT64_MAX = 2**64 - 1

_AT_EACCESS = 0x200
_AT_FDCWD = -100
_AT_SYMLINK_NOFOLLOW = 0x100
_AT_STATX_DONT_SYNC = 0x4000
_STATX_BTIME = 0x800
_FS_IOC_GETFLAGS = 0x80086601
_FS_IMMUTABLE_FL = 0x00000010
_BLKROGET = 0x125E
_BLKGETSIZE64 = 0x80081272
_BTRFS_SUPER_MAGIC = 0x9123683E
_BTRFS_IOC_SUBVOL_GETFLAGS = 0x80089419
_BTRFS_SUBVOL_RDONLY = 1 << 1


def search_path(cls: ExtClass, *, initrd: bool = False) -> tuple[str, ...]:
    """systemd v257's image search path (image_search_path / image_search_path_initrd).

    NOTE: ExtClass.search_dirs(initrd=True) in model.py disagrees with v257 (it lacks
    /.extra/sysext and /.extra/confext); this function follows the v257 source.
    """
    if cls is ExtClass.SYSEXT:
        base = ("/etc/extensions", "/run/extensions", "/var/lib/extensions")
        return (*base, "/.extra/sysext") if initrd else base
    base = ("/run/confexts", "/var/lib/confexts", "/usr/local/lib/confexts")
    return (*base, "/.extra/confext") if initrd else (*base, "/usr/lib/confexts")


@record
class Extension:
    """One discovered image, as `systemd-sysext list` shows it."""

    name: str
    path: str  # absolute, including the --root prefix; the entry's path, symlinks not resolved
    type: ImageType
    ext_class: ExtClass
    read_only: bool
    mtime_us: int  # raw images only; 0 for directories, subvolumes and block devices
    crtime_us: int  # 0 when unknown
    search_dir: str  # the search path entry it was found in, e.g. "/etc/extensions" (no root)
    usage_bytes: int | None = None  # raw: allocated bytes; block: device size
    limit_bytes: int | None = None  # raw: file size; block: device size

    @property
    def time_us(self) -> int:
        """The TIME column of `list`: mtime, or crtime when mtime is 0 (directories)."""
        return self.mtime_us if self.mtime_us != 0 else self.crtime_us


class SkipReason(enum.Enum):
    """Why a directory entry did not become an image."""

    NOT_AN_IMAGE = "not-an-image"  # a regular file without .raw, ".", ".."
    INVALID_NAME = "invalid-name"  # looks like an image, but its name is not a valid image name
    UNSUPPORTED_TYPE = "unsupported-type"  # fifo, socket, character device (/dev/null link)
    SYMLINK_NOT_FOLLOWED = "symlink-not-followed"  # a symlink under --root (v257 does not follow)
    DANGLING = "dangling"  # vanished or a dangling symlink
    NO_MATCHING_VERSION = "no-matching-version"  # .v directory without a usable entry
    PICK_FAILED = "pick-failed"  # .v directory: unreadable, or the winner has the wrong type
    SHADOWED = "shadowed"  # an image of the same name was found first


@record
class Skipped:
    """A directory entry that was ignored, with systemd's debug message for it."""

    path: str
    reason: SkipReason
    message: str
    name: str | None = None  # the image name, when it got that far


@record
class DiscoveryResult:
    extensions: tuple[Extension, ...]  # sorted by name (strcmp), like `list`
    skipped: tuple[Skipped, ...]  # in discovery order

    def by_name(self) -> dict[str, Extension]:
        return {e.name: e for e in self.extensions}


# ---------------------------------------------------------------------------------------------
# Pure helpers


def image_name_is_valid(name: str) -> bool:
    """systemd image_name_is_valid(): file name, no control chars, valid UTF-8, not `.#*`.

    `name` may carry undecodable bytes as surrogate escapes (os.fsdecode); those are invalid.
    """
    raw = name.encode("utf-8", "surrogateescape")
    if not raw or raw in (b".", b"..") or b"/" in raw or len(raw) > _NAME_MAX:
        return False
    if any(c < 0x20 or c == 0x7F for c in raw):  # char_is_cc(), bytewise
        return False
    if not utf8_is_valid(raw):
        return False
    return not raw.startswith(b".#")


def name_problem(name: str) -> str | None:
    """Why an otherwise image-like entry's name is unusable, when that is worth telling the
    user: control characters or invalid UTF-8. Temporary ".#" files and the like are skipped
    quietly (None), as are valid names."""
    raw = name.encode("utf-8", "surrogateescape")
    if any(c < 0x20 or c == 0x7F for c in raw):
        return "it contains control characters"
    if not utf8_is_valid(raw):
        return "it is not valid UTF-8"
    return None


def utf8_is_valid(raw: bytes) -> bool:
    """systemd utf8_is_valid(): strict UTF-8 that additionally rejects the non-characters
    U+FDD0..U+FDEF and U+xxFFFE/U+xxFFFF (Python's codec accepts those)."""
    if b"\0" in raw:
        return False
    try:
        text = raw.decode("utf-8", "strict")
    except UnicodeDecodeError:
        return False
    return not any(0xFDD0 <= ord(ch) <= 0xFDEF or (ord(ch) & 0xFFFE) == 0xFFFE for ch in text)


def extract_image_basename(
    fname: str, class_suffix: str | None, format_suffixes: Sequence[str] | None
) -> tuple[str, str] | None:
    """extract_image_basename(): (name, stripped suffix) or None if not a valid image name.

    A format suffix (first match in order) is required when `format_suffixes` is given; the class
    suffix (".sysext"/".confext") is optional and stripped after it.
    """
    name, suffix = fname, ""
    if format_suffixes is not None:
        for fs in format_suffixes:
            if name.endswith(fs):
                name, suffix = name[: len(name) - len(fs)], fs
                break
        else:
            return None
    if class_suffix and name.endswith(class_suffix):
        name, suffix = name[: len(name) - len(class_suffix)], class_suffix + suffix
    return (name, suffix) if image_name_is_valid(name) else None


def path_startswith(path: str, prefix: str) -> bool:
    """systemd path_startswith() as a predicate: component-wise, ignoring duplicate slashes."""
    p = [c for c in path.split("/") if c]
    q = [c for c in prefix.split("/") if c]
    return path.startswith("/") == prefix.startswith("/") and p[: len(q)] == q


def path_simplify(path: str) -> str:
    """systemd path_simplify(): drop duplicate slashes, `.` components and trailing slashes
    (`..` is kept: it is not resolved lexically)."""
    absolute = path.startswith("/")
    parts = [c for c in path.split("/") if c and c != "."]
    out = "/".join(parts)
    if absolute:
        return "/" + out
    return out or "."


# ---------------------------------------------------------------------------------------------
# Filesystem helpers


def chase(path: str, root: str) -> str:
    """Resolve `path` inside `root` like systemd chase(CHASE_PREFIX_ROOT): absolute symlinks and
    `..` stay inside the root. Returns the resolved path with the root prefix. Raises OSError
    (ENOENT, ENOTDIR, ELOOP, ...)."""
    root = path_simplify(root)
    todo = [c for c in path.split("/") if c]
    done: list[str] = []
    follows = 0

    def host(parts: list[str]) -> str:
        return os.path.join(root, *parts) if parts else root

    while todo:
        c = todo.pop(0)
        if c == ".":
            continue
        if c == "..":
            if done:
                done.pop()
            continue
        candidate = host([*done, c])
        st = os.lstat(candidate)
        if _stat.S_ISLNK(st.st_mode):
            follows += 1
            if follows > _CHASE_MAX:
                raise OSError(_errno.ELOOP, os.strerror(_errno.ELOOP), candidate)
            target = os.readlink(candidate)
            if target.startswith("/"):
                done = []
            todo = [p for p in target.split("/") if p] + todo
            continue
        if todo and not _stat.S_ISDIR(st.st_mode):
            raise OSError(_errno.ENOTDIR, os.strerror(_errno.ENOTDIR), candidate)
        done.append(c)
    return host(done)


def _faccessat_erofs(dfd: int, name: str) -> bool:
    """faccessat(dfd, name, W_OK, AT_EACCESS) failing with EROFS (read-only file system)."""
    import ctypes

    from strata.kernel import libc

    try:
        libc.call("faccessat", ctypes.c_int(dfd), os.fsencode(name), ctypes.c_int(os.W_OK),
                  ctypes.c_int(_AT_EACCESS))
    except OSError as e:
        return e.errno == _errno.EROFS
    return False


def _ioctl_int(fd: int, request: int, size: int = 4) -> int | None:
    import fcntl

    buf = bytearray(size)
    try:
        fcntl.ioctl(fd, request, buf, True)
    except OSError:
        return None
    return int.from_bytes(buf, sys.byteorder)


def _statfs_type(fd: int) -> int:
    """fstatfs(fd).f_type (Python's os.fstatvfs lacks it)."""
    import ctypes

    from strata.kernel import libc

    buf = ctypes.create_string_buffer(256)  # struct statfs is 120 bytes on 64-bit
    libc.call("fstatfs", ctypes.c_int(fd), buf)
    return ctypes.c_long.from_buffer(buf).value & 0xFFFFFFFF


def _btime_us(path: str, *, follow: bool) -> int | None:
    """statx(STATX_BTIME) birth time in µs, or None when the file system does not report one."""
    from strata.kernel import libc

    flags = _AT_STATX_DONT_SYNC | (0 if follow else _AT_SYMLINK_NOFOLLOW)
    try:
        raw = libc.statx(_AT_FDCWD, path, flags, _STATX_BTIME)
    except OSError:
        return None
    mask = int.from_bytes(raw[0:4], sys.byteorder)
    sec = int.from_bytes(raw[80:88], sys.byteorder, signed=True)  # stx_btime.tv_sec
    nsec = int.from_bytes(raw[88:92], sys.byteorder)
    if not mask & _STATX_BTIME or sec == 0:
        return None
    return sec * 1_000_000 + nsec // 1000


def crtime_us(path: str, *, follow: bool = True) -> int:
    """fd_getcrtime_at(): the older of statx btime and xattr `user.crtime_usec`; 0 if neither."""
    a = _btime_us(path, follow=follow)
    b: int | None = None
    try:
        raw = os.getxattr(path, "user.crtime_usec", follow_symlinks=follow)
    except OSError:
        raw = None
    if raw is not None and len(raw) == 8:
        v = int.from_bytes(raw, "little")
        if v not in (0, _UINT64_MAX):
            b = v
    if a is not None and b is not None:
        return min(a, b)
    if a is not None:
        return a
    return b if b is not None else 0


# ---------------------------------------------------------------------------------------------
# Discovery


@record
class _Classified:
    name: str
    fname: str  # relative to the search directory; "x.v/x_1.raw" for vpick choices
    st: os.stat_result


def _skip(path: str, reason: SkipReason, message: str, name: str | None = None) -> Skipped:
    return Skipped(path=path, reason=reason, message=message, name=name)


def _classify(
    cls: ExtClass, dfd: int, resolved: str, fname: str, *, follow: bool, arch: str
) -> _Classified | Skipped:
    """The part of image_discover()'s loop before the shadowing check."""
    path = os.path.join(resolved, fname)
    try:
        st = os.stat(fname, dir_fd=dfd, follow_symlinks=follow)
    except FileNotFoundError:
        return _skip(path, SkipReason.DANGLING,
                     f"Skipping directory entry '{fname}', which does not exist "
                     "(dangling symlink?).")
    except OSError as e:
        raise _error(e, path) from e

    not_image = f"Skipping directory entry '{fname}', which doesn't look like an image."

    def unusable(stem: str) -> Skipped:
        why = name_problem(stem)
        if why is None:
            return _skip(path, SkipReason.NOT_AN_IMAGE, not_image)
        shown = stem.encode("utf-8", "surrogateescape").decode("ascii", "backslashreplace")
        return _skip(path, SkipReason.INVALID_NAME,
                     f"Ignoring {ascii(path)[1:-1]}: '{shown}' is not a valid image name "
                     f"({why}).")

    mode = st.st_mode
    if _stat.S_ISREG(mode):
        got = extract_image_basename(fname, cls.raw_suffix, (".raw",))
        if got is None:
            return unusable(fname[:-4]) if fname.endswith(".raw") else \
                _skip(path, SkipReason.NOT_AN_IMAGE, not_image)
        return _Classified(got[0], fname, st)

    if _stat.S_ISDIR(mode):
        if not fname.endswith(".v"):
            got = extract_image_basename(fname, cls.raw_suffix, None)
            if got is None:
                return unusable(fname)
            return _Classified(got[0], fname, st)

        got = extract_image_basename(fname[:-2], cls.raw_suffix, (".raw", ""))
        if got is None:
            return _skip(path, SkipReason.NOT_AN_IMAGE,
                         f"Skipping directory entry '{fname}', which doesn't look like a "
                         "versioned image.")
        name, suffix = got
        mask = (frozenset({_stat.S_IFREG, _stat.S_IFBLK}) if suffix.endswith(".raw")
                else frozenset({_stat.S_IFDIR}))
        # v257 hands vpick the host path: entries inside the .v directory are opened relative to
        # the host's "/", even under --root.
        try:
            result = vpick.pick_path(path, basename=name, suffix=suffix, arch=arch,
                                     type_mask=mask)
        except OSError as e:
            return _skip(path, SkipReason.PICK_FAILED,
                         f"Failed to pick versioned image on '{path}', skipping: "
                         f"{e.strerror or e}", name)
        if result is None:
            return _skip(path, SkipReason.NO_MATCHING_VERSION,
                         f"Found versioned directory '{path}', without matching entry, "
                         "skipping.", name)
        return _Classified(name, os.path.join(fname, result.choice.filename), result.st)

    if _stat.S_ISBLK(mode):
        got = extract_image_basename(fname, None, None)
        if got is None:
            return _skip(path, SkipReason.NOT_AN_IMAGE, not_image)
        return _Classified(got[0], fname, st)

    # systemd logs the same line for both; a symlink only gets here under --root.
    reason = SkipReason.SYMLINK_NOT_FOLLOWED if _stat.S_ISLNK(mode) else SkipReason.UNSUPPORTED_TYPE
    return _skip(path, reason,
                 f"Skipping directory entry '{fname}', which is neither regular file, directory "
                 "nor block device.")


def _make(
    cls: ExtClass, dfd: int, resolved: str, search_dir: str, item: _Classified
) -> Extension | None:
    """image_make() for an entry already classified; None for its ENOENT/EMEDIUMTYPE cases."""
    path = path_simplify(os.path.join(resolved, item.fname))
    st = item.st
    read_only = path_startswith(resolved, "/usr") or _faccessat_erofs(dfd, item.fname)

    def common(t: ImageType, *, ro: bool, crtime: int, mtime: int,
               usage: int | None = None, limit: int | None = None) -> Extension:
        return Extension(name=item.name, path=path, type=t, ext_class=cls, read_only=ro,
                         mtime_us=mtime, crtime_us=crtime, search_dir=search_dir,
                         usage_bytes=usage, limit_bytes=limit)

    if _stat.S_ISDIR(st.st_mode):
        try:
            fd = os.open(item.fname, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOCTTY,
                         dir_fd=dfd)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise _error(e, path) from e
        try:
            if st.st_ino == 256 and _statfs_type(fd) == _BTRFS_SUPER_MAGIC:
                # A btrfs subvolume. systemd reads flags and otime with BTRFS_IOC_TREE_SEARCH
                # (privileged); the SUBVOL_GETFLAGS ioctl and the inode birth time give the same
                # read-only bit and creation time without privileges.
                flags = _ioctl_int(fd, _BTRFS_IOC_SUBVOL_GETFLAGS, 8) or 0
                ro = bool(flags & _BTRFS_SUBVOL_RDONLY) or read_only
                return common(ImageType.SUBVOLUME, ro=ro, crtime=crtime_us(path), mtime=0)
            attrs = _ioctl_int(fd, _FS_IOC_GETFLAGS) or 0
        finally:
            os.close(fd)
        # mtime stays 0: the top directory's mtime says nothing about the tree.
        return common(ImageType.DIRECTORY, ro=read_only or bool(attrs & _FS_IMMUTABLE_FL),
                      crtime=crtime_us(path), mtime=0)

    if _stat.S_ISREG(st.st_mode) and item.fname.endswith(".raw"):
        return common(ImageType.RAW, ro=not (st.st_mode & 0o222) or read_only,
                      crtime=crtime_us(path), mtime=st.st_mtime_ns // 1000,
                      usage=st.st_blocks * 512, limit=st.st_size)

    if _stat.S_ISBLK(st.st_mode):
        size: int | None = None
        try:
            fd = os.open(item.fname, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY,
                         dir_fd=dfd)
        except OSError:
            fd = -1  # systemd logs and carries on without the device's own data
        if fd >= 0:
            try:
                st = os.fstat(fd)
                if not _stat.S_ISBLK(st.st_mode):
                    raise _error(OSError(_errno.ENOTTY, os.strerror(_errno.ENOTTY)), path)
                if not read_only and _ioctl_int(fd, _BLKROGET):
                    read_only = True
                size = _ioctl_int(fd, _BLKGETSIZE64, 8)
            finally:
                os.close(fd)
        if size == 0:
            size = None
        return common(ImageType.BLOCK, ro=not (st.st_mode & 0o222) or read_only, crtime=0,
                      mtime=0, usage=size, limit=size)

    return None  # EMEDIUMTYPE


def discover(
    cls: ExtClass,
    *,
    root: str | None = None,
    initrd: bool = False,
    search_dirs: Sequence[str] | None = None,
    arch: str,
) -> DiscoveryResult:
    """Discover the images of `cls` like systemd v257's image_discover().

    `root` is `--root=`: None (or "") when not given. Any other value, even "/", makes symlinks in
    the search directories unfollowed, exactly as systemd (which keeps `--root=/` as "/").
    `initrd` selects the initrd search path (systemd asks in_initrd() of the running system, not
    of the root). `search_dirs` overrides the search path (paths inside the root). `arch` is the
    native architecture in systemd's naming (e.g. "x86-64"), for vpick.

    Raises StrataError for the errors that make systemd fail with "Failed to discover images".
    """
    rooted = bool(root)
    root_path = path_simplify(os.path.join(os.getcwd(), root)) if root else "/"
    dirs = tuple(search_dirs) if search_dirs is not None else search_path(cls, initrd=initrd)

    found: dict[str, Extension] = {}
    skipped: list[Skipped] = []
    for search_dir in dirs:
        try:
            resolved = chase(search_dir, root_path)
            dfd = os.open(resolved, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            continue
        except OSError as e:
            raise _error(e, os.path.join(root_path, search_dir.lstrip("/"))) from e
        try:
            try:
                names = os.listdir(dfd)
            except OSError as e:
                raise _error(e, resolved) from e
            for fname in names:
                item = _classify(cls, dfd, resolved, fname, follow=not rooted, arch=arch)
                if isinstance(item, Skipped):
                    skipped.append(item)
                    continue
                first = found.get(item.name)
                if first is not None:
                    skipped.append(_skip(
                        os.path.join(resolved, fname), SkipReason.SHADOWED,
                        f"Skipping '{os.path.join(resolved, fname)}', image '{item.name}' "
                        f"was already found at '{first.path}'.", item.name))
                    continue
                ext = _make(cls, dfd, resolved, search_dir, item)
                if ext is None:
                    skipped.append(_skip(os.path.join(resolved, item.fname), SkipReason.DANGLING,
                                         f"Skipping '{item.fname}', which vanished.", item.name))
                    continue
                found[ext.name] = ext
        finally:
            os.close(dfd)

    extensions = tuple(sorted(found.values(), key=lambda e: e.name.encode("utf-8")))
    return DiscoveryResult(extensions=extensions, skipped=tuple(skipped))


def _error(exc: OSError, path: str) -> StrataError:
    """systemd's "Failed to discover images: %m", naming the path that failed."""
    return StrataError.from_os(exc, f"Failed to discover images: {path}")
