"""Read a squashfs 4.0 image without mounting it.

Layout (kernel fs/squashfs/squashfs_fs.h): a 96-byte little-endian superblock, then data blocks
and fragment blocks, then the inode table, directory table, fragment table, export table, id
table and xattr tables. Tables are chains of "metadata blocks" (2-byte header, at most 8 KiB
of payload each); inodes and directory entries are addressed as (block start relative to the
table, offset inside the decompressed block).

Everything is read with os.pread on demand; small metadata (metadata blocks, fragment blocks,
directory listings, the id table) is cached. Malformed structures raise a one-line
StrataError(kind=INVALID) naming the image and the path being read; a compressor we cannot
load (lzo without the `lzo` module) is StrataError(kind=UNSUPPORTED) at open time.
The export (NFS lookup) table is never needed and is ignored.
"""

from __future__ import annotations

import enum
import os
import stat as _stat
import struct
from collections.abc import Callable, Iterator

from strata.errors import ErrorKind, StrataError
from strata.images.filebacked import CorruptError, FileBackedFS, LruCache, one_line
from strata.record import record, replace

MAGIC = 0x73717368  # "hsqs"
SUPERBLOCK_SIZE = 96
METADATA_SIZE = 8192
NO_FRAGMENT = 0xFFFFFFFF
NO_XATTR = 0xFFFFFFFF
NO_TABLE = 0xFFFFFFFFFFFFFFFF
_META_UNCOMPRESSED = 0x8000
_BLOCK_UNCOMPRESSED = 1 << 24
_XATTR_VALUE_OOL = 0x100
_DIR_COUNT_MAX = 256  # a directory header covers at most 256 entries
_FLAG_COMP_OPT = 0x400

_XATTR_PREFIXES = {0: b"user.", 1: b"trusted.", 2: b"security."}


class Compression(enum.IntEnum):
    """Compressor ids from the superblock."""

    GZIP = 1
    LZMA = 2
    LZO = 3
    XZ = 4
    LZ4 = 5
    ZSTD = 6


class _InodeType(enum.IntEnum):
    DIR = 1
    REG = 2
    SYMLINK = 3
    BLKDEV = 4
    CHRDEV = 5
    FIFO = 6
    SOCKET = 7
    LDIR = 8
    LREG = 9
    LSYMLINK = 10
    LBLKDEV = 11
    LCHRDEV = 12
    LFIFO = 13
    LSOCKET = 14


# squashfs stores only the permission bits in the inode; the type comes from the inode type.
_TYPE_BITS = {
    _InodeType.DIR: _stat.S_IFDIR,
    _InodeType.REG: _stat.S_IFREG,
    _InodeType.SYMLINK: _stat.S_IFLNK,
    _InodeType.BLKDEV: _stat.S_IFBLK,
    _InodeType.CHRDEV: _stat.S_IFCHR,
    _InodeType.FIFO: _stat.S_IFIFO,
    _InodeType.SOCKET: _stat.S_IFSOCK,
}


@record
class SquashfsSuperblock:
    """The fields of the squashfs superblock this reader uses."""

    inodes: int
    mkfs_time: int
    block_size: int
    fragments: int
    compression: Compression
    flags: int
    no_ids: int
    root_inode: int
    bytes_used: int
    id_table_start: int
    xattr_id_table_start: int
    inode_table_start: int
    directory_table_start: int
    fragment_table_start: int


_SB = struct.Struct("<IIIIIHHHHHHQQQQQQQQ")


def parse_superblock(raw: bytes) -> SquashfsSuperblock:
    """Decode and sanity-check a superblock; raises ValueError with a short reason."""
    if len(raw) < SUPERBLOCK_SIZE:
        raise ValueError("too short for a squashfs superblock")
    (magic, inodes, mkfs_time, block_size, fragments, compression, block_log, flags, no_ids,
     major, minor, root_inode, bytes_used, id_start, xattr_start, inode_start, dir_start,
     frag_start, _lookup_start) = _SB.unpack_from(raw)
    if magic != MAGIC:
        raise ValueError(f"bad magic 0x{magic:08x}")
    if (major, minor) != (4, 0):
        raise ValueError(f"squashfs version {major}.{minor} is not supported (only 4.0)")
    if not 12 <= block_log <= 20 or block_size != 1 << block_log:
        raise ValueError(f"bad block size {block_size} (log {block_log})")
    try:
        comp = Compression(compression)
    except ValueError:
        raise ValueError(f"unknown compressor id {compression}") from None
    tables = {"inode": inode_start, "directory": dir_start, "id": id_start}
    for name, start in tables.items():
        if start >= bytes_used:
            raise ValueError(f"{name} table at {start} lies beyond the end ({bytes_used})")
    if not inode_start < dir_start:
        raise ValueError("directory table starts before the inode table")
    return SquashfsSuperblock(
        inodes=inodes, mkfs_time=mkfs_time, block_size=block_size, fragments=fragments,
        compression=comp, flags=flags, no_ids=no_ids, root_inode=root_inode,
        bytes_used=bytes_used, id_table_start=id_start, xattr_id_table_start=xattr_start,
        inode_table_start=inode_start, directory_table_start=dir_start,
        fragment_table_start=frag_start,
    )


def block_count(file_size: int, block_size: int, has_fragment: bool) -> int:
    """Number of entries in a file's block list: the tail lives in a fragment if it has one."""
    if has_fragment:
        return file_size // block_size
    return -(-file_size // block_size)


def xattr_name(type_field: int, name: bytes) -> bytes | None:
    """Full attribute name from an xattr entry's type and stored suffix (None: unknown prefix)."""
    prefix = _XATTR_PREFIXES.get(type_field & 0xFF)
    return None if prefix is None else prefix + name


@record
class _Inode:
    itype: _InodeType
    mode: int  # full st_mode
    uid: int
    gid: int
    mtime: int
    size: int
    xattr: int = NO_XATTR
    # directories
    dir_block: int = 0
    dir_offset: int = 0
    # regular files
    start_block: int = 0
    fragment: int = NO_FRAGMENT
    frag_offset: int = 0
    list_block: int = 0  # metadata position of the block list
    list_offset: int = 0
    # symlinks
    target: bytes = b""


# --- decompressors --------------------------------------------------------------------------
# Each takes the compressed bytes and the largest size the output may have, and raises
# CorruptError on bad input or output that would exceed that size (no decompression bombs).

Decompressor = Callable[[bytes, int], bytes]


def _zlib(data: bytes, limit: int) -> bytes:
    import zlib

    d = zlib.decompressobj()
    out = d.decompress(data, limit + 1)
    if len(out) > limit:
        raise CorruptError(f"block decompresses to more than {limit} bytes")
    if not d.eof:
        raise CorruptError("truncated gzip block")
    return out


def _lzma_with(fmt: int) -> Decompressor:
    def run(data: bytes, limit: int) -> bytes:
        import lzma

        d = lzma.LZMADecompressor(format=fmt)
        out = d.decompress(data, max_length=limit + 1)
        if len(out) > limit:
            raise CorruptError(f"block decompresses to more than {limit} bytes")
        if not d.eof:
            raise CorruptError("truncated xz/lzma block")
        return out

    return run


def _lz4(data: bytes, limit: int) -> bytes:
    import lz4.block

    # squashfs stores raw LZ4 blocks without a size prefix (not the lz4 frame format).
    out: bytes = lz4.block.decompress(data, uncompressed_size=limit)
    return out


def _zstd(data: bytes, limit: int) -> bytes:
    import zstandard

    # A frame that declares its size is decompressed to that size regardless of
    # max_output_size, so check the declaration first.
    declared = zstandard.frame_content_size(data)
    if declared > limit:
        raise CorruptError(f"block declares {declared} bytes, more than {limit}")
    out: bytes = zstandard.ZstdDecompressor().decompress(data, max_output_size=limit)
    if len(out) > limit:
        raise CorruptError(f"block decompresses to more than {limit} bytes")
    return out


def _lzo_or_none() -> Decompressor | None:
    try:
        import lzo  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return None

    def run(data: bytes, limit: int) -> bytes:
        out: bytes = lzo.decompress(data, False, limit)
        return out

    return run


def make_decompressor(comp: Compression, label: str) -> Decompressor:
    """The decompression function for `comp`, wrapped so any library error is CorruptError."""
    fn: Decompressor | None
    if comp is Compression.GZIP:
        fn = _zlib
    elif comp is Compression.XZ:
        import lzma

        fn = _lzma_with(lzma.FORMAT_XZ)
    elif comp is Compression.LZMA:
        import lzma

        fn = _lzma_with(lzma.FORMAT_ALONE)
    elif comp is Compression.LZ4:
        fn = _lz4
    elif comp is Compression.ZSTD:
        fn = _zstd
    else:
        fn = _lzo_or_none()
        if fn is None:
            raise StrataError(
                f"{label}: squashfs image uses lzo compression, but the Python 'lzo' module "
                "is not installed",
                hint="install python-lzo, or rebuild the image with -comp zstd, xz, lz4 or gzip",
                kind=ErrorKind.UNSUPPORTED,
            )
    name = comp.name.lower()
    inner = fn

    def guarded(data: bytes, limit: int) -> bytes:
        try:
            return inner(data, limit)
        except CorruptError:
            raise
        except Exception as e:  # zlib.error, LZMAError, LZ4BlockError, ZstdError, lzo.error
            raise CorruptError(f"{name} decompression failed: {one_line(e)}") from e

    return guarded


# --- the reader ------------------------------------------------------------------------------


class _Cursor:
    """A read position in a chain of metadata blocks: (absolute block start, offset)."""

    __slots__ = ("block", "fs", "offset")

    def __init__(self, fs: SquashfsFS, block: int, offset: int) -> None:
        self.fs = fs
        self.block = block
        self.offset = offset

    def read(self, n: int) -> bytes:
        parts: list[bytes] = []
        while n > 0:
            data, nxt = self.fs._meta_block(self.block)
            if self.offset >= len(data):
                if self.offset > len(data):
                    raise CorruptError(
                        f"offset {self.offset} beyond metadata block at {self.block}")
                self.block, self.offset = nxt, 0
                continue
            chunk = data[self.offset:self.offset + n]
            parts.append(chunk)
            self.offset += len(chunk)
            n -= len(chunk)
        return b"".join(parts)

    def unpack(self, fmt: struct.Struct) -> tuple[int, ...]:
        values: tuple[int, ...] = fmt.unpack(self.read(fmt.size))
        return values


_BASE = struct.Struct("<HHHHII")  # type, mode, uid idx, gid idx, mtime, inode number
_DIR = struct.Struct("<IIHHI")  # start_block, nlink, file_size, offset, parent
_LDIR = struct.Struct("<IIIIHHI")  # nlink, file_size, start_block, parent, i_count, offset, xattr
_REG = struct.Struct("<IIII")  # start_block, fragment, offset, file_size
_LREG = struct.Struct("<QQQIIII")  # start, size, sparse, nlink, fragment, offset, xattr
_SYMLINK = struct.Struct("<II")  # nlink, size
_DEV = struct.Struct("<II")  # nlink, rdev
_LDEV = struct.Struct("<III")  # nlink, rdev, xattr
_IPC = struct.Struct("<I")  # nlink
_LIPC = struct.Struct("<II")  # nlink, xattr
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_DIR_HEADER = struct.Struct("<III")  # count-1, start_block, inode number
_DIR_ENTRY = struct.Struct("<HhHH")  # offset, inode delta, type, name size-1
_FRAG_ENTRY = struct.Struct("<QII")  # start, size, unused
_XATTR_ID = struct.Struct("<QII")  # ref, count, size
_XATTR_ENTRY = struct.Struct("<HH")  # type, name size
_MAX_SYMLINK = 65535

_Entry = tuple[int, int]  # (inode ref, directory entry type)


class SquashfsFS(FileBackedFS[_Inode]):
    """A squashfs 4.0 filesystem in `path`, starting `offset` bytes in and `size` bytes long
    (default: to the end of the file). Compressors: gzip, xz, lzma, lz4, zstd, and lzo if the
    `lzo` module is importable."""

    FORMAT = "squashfs image"

    def __init__(self, path: str, offset: int = 0, size: int | None = None) -> None:
        self._meta_cache: LruCache[int, tuple[bytes, int]] = LruCache(512)
        self._frag_cache: LruCache[int, bytes] = LruCache(8)
        self._dir_cache: LruCache[int, dict[str, _Entry]] = LruCache(256)
        self._ids: tuple[int, ...] | None = None
        self._frag_index: tuple[int, ...] | None = None
        self._xattr_table: tuple[int, int, tuple[int, ...]] | None = None
        super().__init__(path, offset, size)

    def _load(self) -> None:
        self.superblock = sb = self._read_superblock(parse_superblock, 0, SUPERBLOCK_SIZE,
                                                     "squashfs 4.0 image")
        if sb.bytes_used > self._size:
            raise CorruptError(f"truncated: superblock says {sb.bytes_used} bytes, "
                                f"only {self._size} present")
        self._decompress = make_decompressor(sb.compression, self.label)
        if sb.compression is Compression.LZ4 and sb.flags & _FLAG_COMP_OPT:
            version, _ = struct.unpack("<II", _Cursor(self, SUPERBLOCK_SIZE, 0).read(8))
            if version != 1:
                raise CorruptError(f"unsupported lz4 format version {version}")
        self._root_inode = self._inode(sb.root_inode)
        if self._root_inode.itype not in (_InodeType.DIR, _InodeType.LDIR):
            raise CorruptError("root inode is not a directory")

    # -- tables --

    def _meta_block(self, pos: int) -> tuple[bytes, int]:
        """Decompressed metadata block at absolute `pos`, and where the next one starts."""
        hit = self._meta_cache.get(pos)
        if hit is not None:
            return hit
        if pos + 2 > self.superblock.bytes_used:
            raise CorruptError(f"metadata block at {pos} is beyond the end of the image")
        (header,) = struct.unpack("<H", self._pread(pos, 2))
        length = header & ~_META_UNCOMPRESSED & 0xFFFF
        if length == 0 or length > METADATA_SIZE or pos + 2 + length > self.superblock.bytes_used:
            raise CorruptError(f"bad metadata block header at {pos}")
        raw = self._pread(pos + 2, length)
        data = raw if header & _META_UNCOMPRESSED else self._decompress(raw, METADATA_SIZE)
        if not data:
            raise CorruptError(f"empty metadata block at {pos}")
        return self._meta_cache.put(pos, (data, pos + 2 + length))

    def _table(self, start: int, entries: int, entry_size: int) -> tuple[int, ...]:
        """The metadata block pointers of an indexed table (id, fragment, xattr id)."""
        count = -(-entries * entry_size // METADATA_SIZE)
        raw = self._pread(start, 8 * count)
        pointers = struct.unpack(f"<{count}Q", raw)
        for p in pointers:
            if p >= self.superblock.bytes_used:
                raise CorruptError(f"table pointer {p} is beyond the end of the image")
        return pointers

    def _table_entry(self, pointers: tuple[int, ...], index: int, fmt: struct.Struct) -> tuple[
            int, ...]:
        byte = index * fmt.size
        block, offset = divmod(byte, METADATA_SIZE)
        if block >= len(pointers):
            raise CorruptError(f"table index {index} out of range")
        return _Cursor(self, pointers[block], offset).unpack(fmt)

    def _id(self, index: int) -> int:
        if self._ids is None:
            sb = self.superblock
            if sb.no_ids == 0:
                raise CorruptError("id table is empty")
            pointers = self._table(sb.id_table_start, sb.no_ids, 4)
            ids: list[int] = []
            per_block = METADATA_SIZE // 4
            for i, pointer in enumerate(pointers):
                n = min(per_block, sb.no_ids - i * per_block)
                ids.extend(struct.unpack(f"<{n}I", _Cursor(self, pointer, 0).read(4 * n)))
            self._ids = tuple(ids)
        if index >= len(self._ids):
            raise CorruptError(f"uid/gid index {index} out of range ({len(self._ids)} ids)")
        return self._ids[index]

    # -- inodes --

    def _inode(self, ref: int) -> _Inode:
        sb = self.superblock
        block, offset = ref >> 16, ref & 0xFFFF
        if offset >= METADATA_SIZE:
            raise CorruptError(f"bad inode reference 0x{ref:x}")
        cur = _Cursor(self, sb.inode_table_start + block, offset)
        itype_raw, perm, uid_idx, gid_idx, mtime, _ino = cur.unpack(_BASE)
        try:
            itype = _InodeType(itype_raw)
        except ValueError:
            raise CorruptError(f"unknown inode type {itype_raw}") from None
        kind = itype if itype <= _InodeType.SOCKET else _InodeType(itype - 7)
        base = _Inode(itype=itype, mode=_TYPE_BITS[kind] | (perm & 0o7777),
                      uid=self._id(uid_idx), gid=self._id(gid_idx), mtime=mtime, size=0)
        if itype is _InodeType.DIR:
            start, _nlink, fsize, doff, _parent = cur.unpack(_DIR)
            return replace(base, size=fsize, dir_block=start, dir_offset=doff)
        if itype is _InodeType.LDIR:
            _nlink, fsize, start, _parent, _icount, doff, xattr = cur.unpack(_LDIR)
            return replace(base, size=fsize, dir_block=start, dir_offset=doff, xattr=xattr)
        if itype in (_InodeType.REG, _InodeType.LREG):
            if itype is _InodeType.REG:
                start, frag, foff, fsize = cur.unpack(_REG)
                xattr = NO_XATTR
            else:
                start, fsize, _sparse, _nlink, frag, foff, xattr = cur.unpack(_LREG)
            return replace(base, size=fsize, start_block=start, fragment=frag, frag_offset=foff,
                           list_block=cur.block, list_offset=cur.offset, xattr=xattr)
        if itype in (_InodeType.SYMLINK, _InodeType.LSYMLINK):
            _nlink, tsize = cur.unpack(_SYMLINK)
            if tsize > _MAX_SYMLINK:
                raise CorruptError(f"symlink target length {tsize} is implausible")
            target = cur.read(tsize)
            xattr = cur.unpack(_U32)[0] if itype is _InodeType.LSYMLINK else NO_XATTR
            return replace(base, size=tsize, target=target, xattr=xattr)
        if itype in (_InodeType.BLKDEV, _InodeType.CHRDEV):
            cur.unpack(_DEV)
            return base
        if itype in (_InodeType.LBLKDEV, _InodeType.LCHRDEV):
            return replace(base, xattr=cur.unpack(_LDEV)[2])
        if itype in (_InodeType.FIFO, _InodeType.SOCKET):
            cur.unpack(_IPC)
            return base
        return replace(base, xattr=cur.unpack(_LIPC)[1])

    # -- directories --

    def _entries(self, inode: _Inode) -> dict[str, _Entry]:
        key = (inode.dir_block << 16) | inode.dir_offset
        hit = self._dir_cache.get(key)
        if hit is not None:
            return hit
        entries: dict[str, _Entry] = {}
        # file_size counts 3 bytes for the implicit "." and ".." entries.
        remaining = inode.size - 3
        cur = _Cursor(self, self.superblock.directory_table_start + inode.dir_block,
                      inode.dir_offset)
        while remaining > 0:
            count, start_block, _ino = cur.unpack(_DIR_HEADER)
            remaining -= _DIR_HEADER.size
            if count >= _DIR_COUNT_MAX:
                raise CorruptError(f"directory header claims {count + 1} entries")
            for _ in range(count + 1):
                offset, _delta, etype, nsize = cur.unpack(_DIR_ENTRY)
                name = cur.read(nsize + 1)
                remaining -= _DIR_ENTRY.size + nsize + 1
                if b"/" in name or b"\0" in name or name in (b".", b".."):
                    raise CorruptError(f"invalid directory entry name {name!r}")
                entries[os.fsdecode(name)] = ((start_block << 16) | offset, etype)
        if remaining < 0:
            raise CorruptError("directory listing overruns its size")
        return self._dir_cache.put(key, entries)

    # -- file data --

    def _fragment(self, index: int) -> bytes:
        hit = self._frag_cache.get(index)
        if hit is not None:
            return hit
        sb = self.superblock
        if index >= sb.fragments:
            raise CorruptError(f"fragment {index} out of range ({sb.fragments} fragments)")
        if self._frag_index is None:
            self._frag_index = self._table(sb.fragment_table_start, sb.fragments,
                                           _FRAG_ENTRY.size)
        start, size, _ = self._table_entry(self._frag_index, index, _FRAG_ENTRY)
        return self._frag_cache.put(index, self._data_block(start, size, sb.block_size))

    def _data_block(self, start: int, size_field: int, limit: int) -> bytes:
        length = size_field & ~_BLOCK_UNCOMPRESSED
        if length > self.superblock.block_size:
            raise CorruptError(f"data block of {length} bytes exceeds the block size")
        if start + length > self.superblock.bytes_used:
            raise CorruptError(f"data block at {start} is beyond the end of the image")
        raw = self._pread(start, length)
        if size_field & _BLOCK_UNCOMPRESSED:
            return raw
        return self._decompress(raw, limit)

    def _read_file(self, inode: _Inode, limit: int | None) -> bytes:
        sb = self.superblock
        bs = sb.block_size
        size = inode.size
        want = size if limit is None else min(size, max(limit, 0))
        has_frag = inode.fragment != NO_FRAGMENT
        nblocks = block_count(size, bs, has_frag)
        needed = min(nblocks, -(-want // bs))
        out = bytearray()
        if needed:
            cur = _Cursor(self, inode.list_block, inode.list_offset)
            sizes = struct.unpack(f"<{needed}I", cur.read(4 * needed))
            pos = inode.start_block
            for i, field in enumerate(sizes):
                expected = min(bs, size - i * bs)
                if field & ~_BLOCK_UNCOMPRESSED == 0:  # sparse: a block of zeros, not stored
                    out += bytes(expected)
                    continue
                data = self._data_block(pos, field, expected)
                pos += field & ~_BLOCK_UNCOMPRESSED
                if len(data) != expected:
                    raise CorruptError(f"block {i} holds {len(data)} bytes, expected {expected}")
                out += data
        if len(out) < want and has_frag:
            tail = size - nblocks * bs
            frag = self._fragment(inode.fragment)
            if inode.frag_offset + tail > len(frag):
                raise CorruptError(f"fragment {inode.fragment} is too short for the file tail")
            out += frag[inode.frag_offset:inode.frag_offset + tail]
        if len(out) < want:
            raise CorruptError(f"file data ends after {len(out)} of {want} bytes")
        return bytes(out[:want])

    # -- xattrs --

    def _xattrs(self, index: int) -> Iterator[tuple[bytes, bytes]]:
        sb = self.superblock
        if self._xattr_table is None:
            if sb.xattr_id_table_start == NO_TABLE:
                raise CorruptError("inode has xattrs but the image has no xattr table")
            table_start, ids, _ = struct.unpack("<QII", self._pread(sb.xattr_id_table_start, 16))
            pointers = self._table(sb.xattr_id_table_start + 16, ids, _XATTR_ID.size)
            self._xattr_table = (table_start, ids, pointers)
        table_start, ids, pointers = self._xattr_table
        if index >= ids:
            raise CorruptError(f"xattr id {index} out of range ({ids} ids)")
        ref, count, _size = self._table_entry(pointers, index, _XATTR_ID)
        cur = _Cursor(self, table_start + (ref >> 16), ref & 0xFFFF)
        for _ in range(count):
            etype, nsize = cur.unpack(_XATTR_ENTRY)
            name = cur.read(nsize)
            (vsize,) = cur.unpack(_U32)
            if etype & _XATTR_VALUE_OOL:
                # The value is stored once elsewhere; here is an 8-byte reference to it.
                if vsize != 8:
                    raise CorruptError(f"out-of-line xattr reference of {vsize} bytes")
                (vref,) = cur.unpack(_U64)
                vcur = _Cursor(self, table_start + (vref >> 16), vref & 0xFFFF)
                (vsize,) = vcur.unpack(_U32)
                value = vcur.read(vsize)
            else:
                value = cur.read(vsize)
            full = xattr_name(etype, name)
            if full is not None:
                yield full, value

    # -- FileBackedFS --

    def _root(self) -> _Inode:
        return self._root_inode

    def _child(self, directory: _Inode, name: str) -> _Inode | None:
        entry = self._entries(directory).get(name)
        return None if entry is None else self._inode(entry[0])

    def _link_target(self, link: _Inode) -> str:
        return os.fsdecode(link.target)

    def _names(self, directory: _Inode) -> list[str]:
        return list(self._entries(directory))

    def _contents(self, regular: _Inode, limit: int | None) -> bytes:
        return self._read_file(regular, limit)

    def _xattr(self, node: _Inode, name: str) -> bytes | None:
        if node.xattr == NO_XATTR:
            return None
        wanted = os.fsencode(name)
        for full, value in self._xattrs(node.xattr):
            if full == wanted:
                return value
        return None
