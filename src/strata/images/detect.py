"""What is this image, where is its file system, and a reader for it.

`detect_bytes` classifies by magic numbers (pure). `probe` adds the GPT logic: for a disk image
it picks the partition(s) systemd-dissect would mount for an extension image (see
`gpt.select_partitions`) and identifies the file system inside. `open_layout` returns a reader
for the file system `probe` found (DirectoryFS, or ErofsFS/SquashfsFS/Ext4FS at the partition
offset); `open_tree`/`open_fs` return the whole tree as systemd mounts it, with a usr partition
shown at /usr.
"""

from __future__ import annotations

import enum
import errno
import os
import posixpath
import stat as _stat

from strata.errors import ErrorKind, StrataError
from strata.images.base import DirectoryFS, FileKind, ImageFS, Stat, split
from strata.images.gpt import (
    SECTOR_SIZES,
    GptTable,
    Partition,
    PartitionRole,
    has_protective_mbr,
    read_gpt,
    select_partitions,
)
from strata.record import record

#: Enough of an image's start to see every signature we know (btrfs's is at 64 KiB + 64).
HEAD_SIZE = 68 * 1024


class ImageFormat(enum.Enum):
    DIRECTORY = "directory"
    EROFS = "erofs"
    SQUASHFS = "squashfs"
    EXT4 = "ext4"  # ext2/3/4: one superblock format
    BTRFS = "btrfs"
    GPT = "gpt"
    UNKNOWN = "unknown"

    @property
    def is_filesystem(self) -> bool:
        return self in (ImageFormat.EROFS, ImageFormat.SQUASHFS, ImageFormat.EXT4,
                        ImageFormat.BTRFS)


# squashfs first: its superblock is at 0 and its data follows right away, so its bytes at 1024
# are arbitrary, while EROFS and ext4 images keep their first 1 KiB zero.
_SIGNATURES: tuple[tuple[ImageFormat, int, bytes], ...] = (
    (ImageFormat.SQUASHFS, 0, b"hsqs"),
    (ImageFormat.EROFS, 1024, (0xE0F5E1E2).to_bytes(4, "little")),
    (ImageFormat.EXT4, 1080, (0xEF53).to_bytes(2, "little")),
    (ImageFormat.BTRFS, 65600, b"_BHRfS_M"),
)


def detect_bytes(head: bytes) -> ImageFormat:
    """Classify an image by the bytes at its start. File system superblocks are checked before
    a partition table, in the order systemd-dissect's single-file-system check implies."""
    for fmt, off, magic in _SIGNATURES:
        if head[off:off + len(magic)] == magic:
            return fmt
    for sz in SECTOR_SIZES:
        if head[sz:sz + 8] == b"EFI PART":
            return ImageFormat.GPT
    if has_protective_mbr(head[:512]):
        return ImageFormat.GPT  # primary header wiped: the backup may still be there
    return ImageFormat.UNKNOWN


def _invalid(msg: str) -> StrataError:
    return StrataError(msg, kind=ErrorKind.INVALID)


def detect(path: str) -> ImageFormat:
    """The format of the image at `path` (a directory counts as DIRECTORY)."""
    try:
        st = os.stat(path)
        if _stat.S_ISDIR(st.st_mode):
            return ImageFormat.DIRECTORY
        with open(path, "rb") as f:
            return detect_bytes(f.read(HEAD_SIZE))
    except OSError as e:
        raise StrataError.from_os(e, path) from e


def fs_size_problem(head: bytes, fmt: ImageFormat, available: int) -> str | None:
    """Why a file system whose first bytes are `head` cannot fit in `available` bytes (a
    truncated image), or None. Pure; only checks what the superblock states plainly."""
    need: int | None = None
    if fmt is ImageFormat.EROFS and len(head) >= 1064:
        bits = head[1024 + 12]
        if 9 <= bits <= 16:
            need = int.from_bytes(head[1060:1064], "little") << bits
    elif fmt is ImageFormat.SQUASHFS and len(head) >= 48:
        need = int.from_bytes(head[40:48], "little")  # bytes_used
    elif fmt is ImageFormat.EXT4 and len(head) >= 1024 + 0x154:
        count = int.from_bytes(head[1028:1032], "little")
        if int.from_bytes(head[1024 + 0x60:1024 + 0x64], "little") & 0x80:  # 64bit
            count |= int.from_bytes(head[1024 + 0x150:1024 + 0x154], "little") << 32
        log = int.from_bytes(head[1048:1052], "little")
        if log <= 6:
            need = count * (1024 << log)
    if need is not None and need > available:
        return (f"{fmt.value} file system is truncated: its superblock says {need} bytes, "
                f"only {available} are there")
    return None


@record
class ImageLayout:
    """Where an image's file system lives. For a naked file system the container and fs formats
    are the same and the offset is 0; for a GPT disk image `partition` is the partition used
    (root, usr or generic) and `partitions` the whole table."""

    path: str
    container: ImageFormat
    fs_format: ImageFormat
    offset: int
    size: int
    partition: Partition | None
    partitions: tuple[Partition, ...]
    #: a usr partition mounted at /usr on top of a root partition
    usr_partition: Partition | None = None
    usr_fs_format: ImageFormat | None = None
    gpt_used_backup: bool = False

    @property
    def mount_point(self) -> str:
        """Where systemd mounts `partition` in the image's tree: "/usr" for a usr-only DDI."""
        if self.partition is not None and self.partition.role is PartitionRole.USR:
            return "/usr"
        return "/"


def _fs_in_partition(fd: int, path: str, p: Partition, image_size: int) -> ImageFormat:
    if p.offset + p.size > image_size:
        raise _invalid(f"{path}: {p.describe()} extends beyond the end of the image "
                       f"(truncated?)")
    head = os.pread(fd, min(HEAD_SIZE, p.size), p.offset)
    fmt = detect_bytes(head)
    if not fmt.is_filesystem:
        raise _invalid(f"{path}: {p.describe()} holds no known file system")
    problem = fs_size_problem(head, fmt, p.size)
    if problem:
        raise _invalid(f"{path}: {p.describe()}: {problem}")
    return fmt


def probe(path: str, *, arch: str) -> ImageLayout:
    """Find the file system of the image at `path` (`arch`: systemd's name of the native
    architecture, e.g. "x86-64"). Unreadable, empty, truncated or unrecognised images raise
    StrataError(kind=INVALID) "<path>: ..."; a missing path raises NOT_FOUND."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise StrataError.from_os(e, path) from e
    if _stat.S_ISDIR(st.st_mode):
        return ImageLayout(path, ImageFormat.DIRECTORY, ImageFormat.DIRECTORY, 0, 0, None, ())
    if not (_stat.S_ISREG(st.st_mode) or _stat.S_ISBLK(st.st_mode)):
        raise _invalid(f"{path}: not a regular file, block device or directory")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise StrataError.from_os(e, path) from e
    try:
        size = os.lseek(fd, 0, os.SEEK_END)
        if size == 0:
            raise _invalid(f"{path}: empty file, not an image")
        head = os.pread(fd, HEAD_SIZE, 0)
        fmt = detect_bytes(head)
        if fmt.is_filesystem:
            problem = fs_size_problem(head, fmt, size)
            if problem:
                raise _invalid(f"{path}: {problem}")
            return ImageLayout(path, fmt, fmt, 0, size, None, ())
        if fmt is ImageFormat.GPT:
            return _probe_gpt(fd, path, size, arch)
        raise _invalid(f"{path}: not a file system or disk image (no EROFS, squashfs, ext4, "
                       f"btrfs or GPT signature found)")
    except OSError as e:
        raise StrataError.from_os(e, path) from e
    finally:
        os.close(fd)


def _probe_gpt(fd: int, path: str, size: int, arch: str) -> ImageLayout:
    table: GptTable = read_gpt(lambda off, n: os.pread(fd, n, off), size, name=path)
    sel = select_partitions(table.partitions, arch=arch, name=path)
    part = sel.primary
    fmt = _fs_in_partition(fd, path, part, size)
    usr = sel.usr if sel.root is not None else None
    usr_fmt = _fs_in_partition(fd, path, usr, size) if usr is not None else None
    return ImageLayout(path, ImageFormat.GPT, fmt, part.offset, part.size, part,
                       table.partitions, usr, usr_fmt, table.used_backup)


def _reader(fmt: ImageFormat, path: str, offset: int, size: int) -> ImageFS:
    if fmt is ImageFormat.EROFS:
        from strata.images.erofs import ErofsFS

        return ErofsFS(path, offset, size)
    if fmt is ImageFormat.SQUASHFS:
        from strata.images.squashfs import SquashfsFS

        return SquashfsFS(path, offset, size)
    if fmt is ImageFormat.EXT4:
        from strata.images.ext4 import Ext4FS

        return Ext4FS(path, offset, size)
    raise StrataError(f"{path}: reading {fmt.value} images without mounting is not supported",
                      kind=ErrorKind.UNSUPPORTED)


def open_layout(layout: ImageLayout) -> ImageFS:
    """A reader for the primary file system `probe` found (a directory, a naked file system,
    or `layout.partition`), without placing it anywhere: a usr-only DDI's partition comes back
    with its own root. See `open_tree` for the tree as systemd mounts it."""
    if layout.container is ImageFormat.DIRECTORY:
        return DirectoryFS(layout.path)
    return _reader(layout.fs_format, layout.path, layout.offset, layout.size)


def open_tree(layout: ImageLayout) -> ImageFS:
    """The image's tree as systemd mounts it: the root file system, with a usr partition at
    /usr (over an empty root for usr-only DDIs)."""
    main = open_layout(layout)
    if layout.mount_point == "/usr":
        return MountView(layout.path, None, main)
    if layout.usr_partition is not None and layout.usr_fs_format is not None:
        try:
            usr = _reader(layout.usr_fs_format, layout.path, layout.usr_partition.offset,
                          layout.usr_partition.size)
        except BaseException:
            main.close()
            raise
        return MountView(layout.path, main, usr)
    return main


def open_fs(path: str, *, arch: str | None = None) -> ImageFS:
    """`open_tree(probe(path))`; `arch` defaults to the running machine's (strata.arch)."""
    if arch is None:
        from strata.arch import native

        arch = native()
    return open_tree(probe(path, arch=arch))


class MountView(ImageFS):
    """A root file system (or an empty root, as systemd's tmpfs for usr-only images) with
    another file system mounted at /usr. Symlinks are chased across the two with the image
    root as "/"."""

    def __init__(self, label: str, root: ImageFS | None, usr: ImageFS) -> None:
        self.label = label
        self._root = root
        self._usr = usr

    def close(self) -> None:
        if self._root is not None:
            self._root.close()
        self._usr.close()

    def _route(self, path: str) -> tuple[ImageFS | None, str]:
        """The file system and its own path for `path` (intermediate symlinks resolved)."""
        parts = split(path)
        if not parts:
            full = "/"
        elif parts[-1] == "..":
            full = self.resolve(path)
        else:
            parent = self.resolve("/" + "/".join(parts[:-1])) if len(parts) > 1 else "/"
            full = posixpath.join(parent, parts[-1])
        if full == "/usr" or full.startswith("/usr/"):
            return self._usr, full[len("/usr"):] or "/"
        return self._root, full

    def _missing(self, path: str) -> StrataError:
        return StrataError(f"{self.label}:{path}: No such file or directory",
                           kind=ErrorKind.NOT_FOUND, errno=errno.ENOENT)

    def lstat(self, path: str) -> Stat:
        fs, inner = self._route(path)
        if fs is None:
            if inner == "/":
                return Stat(FileKind.DIRECTORY, _stat.S_IFDIR | 0o755, 0, 0, 0, 0)
            raise self._missing(path)
        return fs.lstat(inner)

    def listdir(self, path: str) -> list[str]:
        fs, inner = self._route(path)
        if inner == "/" and fs is not self._usr:
            names = fs.listdir("/") if fs is not None else []
            return names if "usr" in names else [*names, "usr"]
        if fs is None:
            raise self._missing(path)
        return fs.listdir(inner)

    def read(self, path: str, *, limit: int | None = None) -> bytes:
        fs, inner = self._route(path)
        if fs is None:
            raise self._missing(path)
        return fs.read(inner, limit=limit)

    def readlink(self, path: str) -> str:
        fs, inner = self._route(path)
        if fs is None:
            raise self._missing(path)
        return fs.readlink(inner)

    def getxattr(self, path: str, name: str) -> bytes | None:
        fs, inner = self._route(path)
        if fs is None:
            if inner == "/":
                return None
            raise self._missing(path)
        return fs.getxattr(inner, name)
