"""A read-only EROFS reader in pure Python (no mount, no kernel module, no root).

Format reference: the kernel's fs/erofs/erofs_fs.h and erofs-utils (lib/zmap.c, lib/data.c,
lib/namei.c, lib/xattr.c). Supported: compact and extended inodes; flat plain, flat inline (tail
packing), chunk-based (block map and chunk indexes) and compressed layouts, the latter with full
and compact (2B/4B) lcluster indexes, big pclusters, ztailpacking, fragments (packed inode),
interlaced/shifted plain pclusters, and LZ4 (with and without 0padding), DEFLATE and Zstandard;
directories of any size, symlinks, device and other special inodes; inline and shared xattrs
with the short and the long (table) name prefixes.

Not supported, refused with an INVALID error naming the feature: multi-device images (extra
devices), the 48-bit layout, metabox (compressed metadata), extent-based compressed inodes
(erofs-utils >= 1.8 `-E...`) and MicroLZMA.

All reads go through os.pread on one descriptor; metadata blocks sit in a small LRU cache and
file data is read extent by extent, so nothing ever reads the whole image. Every structural
problem (bad magic or checksum, an address outside the image, a truncated image, an unknown
layout, a bogus index) becomes StrataError(kind=INVALID) "<image>:<path>: corrupt EROFS image:
<what>"; no IndexError or struct.error escapes.
"""

from __future__ import annotations

import errno
import os
import stat as _stat
import struct
import zlib
from typing import NamedTuple

from strata.errors import ErrorKind, StrataError
from strata.images.base import FileKind
from strata.images.filebacked import CorruptError, FileBackedFS, LruCache, UnsupportedError
from strata.record import record

MAGIC = 0xE0F5E1E2
SUPERBLOCK_OFFSET = 1024

# feature_compat
_COMPAT_SB_CHKSUM = 0x1
_COMPAT_PLAIN_XATTR_PFX = 0x10

# feature_incompat
_INCOMPAT_LZ4_0PADDING = 0x1
_INCOMPAT_BIG_PCLUSTER = 0x2  # also "COMPR_CFGS": u1 is the algorithm bitmap
_INCOMPAT_CHUNKED_FILE = 0x4
_INCOMPAT_DEVICE_TABLE = 0x8
_INCOMPAT_ZTAILPACKING = 0x10
_INCOMPAT_FRAGMENTS = 0x20  # also "DEDUPE"
_INCOMPAT_XATTR_PREFIXES = 0x40
_INCOMPAT_48BIT = 0x80
_INCOMPAT_METABOX = 0x100
_INCOMPAT_KNOWN = 0x1FF
_INCOMPAT_UNSUPPORTED = {_INCOMPAT_48BIT: "48-bit layout", _INCOMPAT_METABOX: "metabox"}

# data layouts (i_format bits 1..3)
_FLAT_PLAIN = 0
_COMPRESSED_FULL = 1
_FLAT_INLINE = 2
_COMPRESSED_COMPACT = 3
_CHUNK_BASED = 4

_NULL_ADDR = 0xFFFFFFFF

# chunk format
_CHUNK_BLKBITS_MASK = 0x1F
_CHUNK_INDEXES = 0x20
_CHUNK_48BIT = 0x40

# z_erofs_map_header.h_advise
_ADV_COMPACTED_2B = 0x1  # compact layout; for the full layout the same bit means "extents"
_ADV_BIG_PCLUSTER_1 = 0x2
_ADV_BIG_PCLUSTER_2 = 0x4
_ADV_INLINE_PCLUSTER = 0x8
_ADV_INTERLACED_PCLUSTER = 0x10
_ADV_FRAGMENT_PCLUSTER = 0x20

# lcluster types
_LT_PLAIN = 0
_LT_HEAD1 = 1
_LT_NONHEAD = 2
_LT_HEAD2 = 3
_D0_CBLKCNT = 1 << 11
_PARTIAL_REF = 1 << 15

# algorithms (on disk) and the two "plain" pseudo-algorithms
_ALG_LZ4 = 0
_ALG_LZMA = 1
_ALG_DEFLATE = 2
_ALG_ZSTD = 3
_ALG_SHIFTED = 16
_ALG_INTERLACED = 17
_ALG_NAMES = {_ALG_LZ4: "lz4", _ALG_LZMA: "lzma", _ALG_DEFLATE: "deflate", _ALG_ZSTD: "zstd"}

_PCLUSTER_MAX_SIZE = 1 << 20
_PCLUSTER_MAX_DSIZE = 12 << 20

_XATTR_PREFIXES = {
    1: "user.",
    2: "system.posix_acl_access",
    3: "system.posix_acl_default",
    4: "trusted.",
    5: "lustre.",
    6: "security.",
}

_META_CACHE_BLOCKS = 512
_INODE_CACHE = 4096
_DIR_CACHE = 256
_MAX_SYMLINK = 1 << 16


# --------------------------------------------------------------------------- helpers

def _shown(path: str) -> str:
    """An image path as messages show it: absolute."""
    return path if path.startswith("/") else "/" + path


def _round_up(x: int, a: int) -> int:
    return (x + a - 1) // a * a


def _crc32c_table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return tuple(table)


_CRC32C: tuple[int, ...] | None = None


def crc32c_raw(data: bytes, crc: int = 0xFFFFFFFF) -> int:
    """Castagnoli CRC without the final inversion, as the kernel's crc32c(~0, ...) computes
    it for the EROFS superblock checksum."""
    global _CRC32C  # noqa: PLW0603 - built once, on first use (start-up time)
    table = _CRC32C
    if table is None:
        table = _CRC32C = _crc32c_table()
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc


def _lz4_length(src: bytes, i: int, length: int) -> tuple[int, int]:
    """A length whose 4-bit field in the token was 15: bytes at src[i:] add to it up to and
    including the first one below 255. Returns the length and where the data continues."""
    while True:
        if i >= len(src):
            raise CorruptError("LZ4 data ends early")
        b = src[i]
        i += 1
        length += b
        if b != 255:
            return length, i


def lz4_decompress_partial(src: bytes, out_len: int) -> bytes:
    """Decode the first `out_len` bytes of an LZ4 block, ignoring what follows (the kernel's
    LZ4_decompress_safe_partial). Needed where the stream is not exactly delimited: pclusters
    written without 0padding (trailing zeros) and partially referenced pclusters."""
    out = bytearray()
    i, n = 0, len(src)
    while len(out) < out_len:
        if i >= n:
            raise CorruptError("LZ4 data ends early")
        token = src[i]
        i += 1
        lit = token >> 4
        if lit == 15:
            lit, i = _lz4_length(src, i, lit)
        if i + lit > n:
            raise CorruptError("LZ4 literal run beyond the end of the input")
        out += src[i:i + lit]
        i += lit
        if len(out) >= out_len:
            break
        if i + 2 > n:
            raise CorruptError("LZ4 data ends early")
        off = src[i] | (src[i + 1] << 8)
        i += 2
        if off == 0 or off > len(out):
            raise CorruptError("LZ4 match offset out of range")
        ml = token & 15
        if ml == 15:
            ml, i = _lz4_length(src, i, ml)
        ml = min(ml + 4, out_len - len(out))
        start = len(out) - off
        if off >= ml:
            out += out[start:start + ml]
        else:  # overlapping copy: the last `off` bytes repeat
            pattern = bytes(out[start:])
            out += (pattern * (ml // off + 1))[:ml]
    return bytes(out[:out_len])


# --------------------------------------------------------------------------- on-disk records

@record
class Superblock:
    blkszbits: int
    root_nid: int
    meta_blkaddr: int
    xattr_blkaddr: int
    blocks: int
    feature_compat: int
    feature_incompat: int
    epoch: int
    available_algs: int  # bitmap of _ALG_*
    dirblkbits: int
    xattr_prefix_count: int
    xattr_prefix_start: int
    packed_nid: int

    @property
    def block_size(self) -> int:
        return 1 << self.blkszbits

    def has(self, feature: int) -> bool:
        return bool(self.feature_incompat & feature)


def parse_superblock(block: bytes, image_size: int) -> Superblock:
    """Validate and decode the superblock. `block` holds the image from byte 1024 on (at least
    the rest of the first block). Pure; raises CorruptError/UnsupportedError."""
    if len(block) < 128:
        raise CorruptError("image too small for an EROFS superblock")
    (magic, checksum, fcompat, blkszbits, _extslots, root_nid, _inos, epoch, _nsec, blocks,
     meta_blkaddr, xattr_blkaddr) = struct.unpack_from("<IIIBBHQQIIII", block, 0)
    if magic != MAGIC:
        raise CorruptError(f"bad magic {magic:#010x}")
    if not 9 <= blkszbits <= 16:
        raise CorruptError(f"unsupported block size 2^{blkszbits}")
    bs = 1 << blkszbits
    fincompat, u1, extra_devices = struct.unpack_from("<IHH", block, 80)
    dirblkbits, prefix_count, prefix_start, packed_nid = struct.unpack_from("<BBIQ", block, 90)
    if fcompat & _COMPAT_SB_CHKSUM:
        length = bs - SUPERBLOCK_OFFSET if bs > SUPERBLOCK_OFFSET else bs
        if len(block) < length:
            raise CorruptError("superblock is truncated")
        raw = bytearray(block[:length])
        raw[4:8] = b"\0\0\0\0"
        if crc32c_raw(bytes(raw)) != checksum:
            raise CorruptError("superblock checksum mismatch")
    unknown = fincompat & ~_INCOMPAT_KNOWN
    if unknown:
        raise UnsupportedError(f"unknown incompatible feature bits {unknown:#x}")
    for bit, what in _INCOMPAT_UNSUPPORTED.items():
        if fincompat & bit:
            raise UnsupportedError(f"the {what} feature is not supported")
    if fincompat & _INCOMPAT_DEVICE_TABLE and extra_devices:
        raise UnsupportedError(f"multi-device image ({extra_devices} extra devices)")
    if blocks == 0:
        raise CorruptError("superblock says the image has no blocks")
    if blocks * bs > image_size:
        raise CorruptError(f"image is truncated: the superblock says {blocks * bs} bytes, "
                            f"only {image_size} are there")
    algs = u1 if fincompat & _INCOMPAT_BIG_PCLUSTER else 1 << _ALG_LZ4
    return Superblock(blkszbits, root_nid, meta_blkaddr, xattr_blkaddr, blocks, fcompat,
                      fincompat, epoch, algs, dirblkbits, prefix_count, prefix_start, packed_nid)


@record
class Inode:
    nid: int
    pos: int  # byte offset of the on-disk inode
    layout: int
    isize: int  # 32 or 64
    xattr_isize: int
    mode: int
    size: int
    uid: int
    gid: int
    mtime: int
    i_u: int  # startblk / blocks / rdev / chunk format, by layout and type
    nb: int  # startblk_hi / nlink (unused without the 48-bit feature)

    @property
    def data_pos(self) -> int:
        """Where inline data, compression indexes and chunk indexes start."""
        return self.pos + self.isize + self.xattr_isize

    @property
    def kind(self) -> FileKind:
        return FileKind.from_mode(self.mode)


_INODE_TYPES = frozenset({_stat.S_IFDIR, _stat.S_IFREG, _stat.S_IFLNK, _stat.S_IFCHR,
                          _stat.S_IFBLK, _stat.S_IFIFO, _stat.S_IFSOCK})


def parse_inode(raw: bytes, *, nid: int, pos: int, epoch: int) -> Inode:
    """Decode a compact (32-byte) or extended (64-byte) inode; `raw` must hold 64 bytes for an
    extended one. Pure; raises CorruptError."""
    fmt, icount, mode, nb = struct.unpack_from("<HHHH", raw, 0)
    if fmt & ~0x1F:
        raise UnsupportedError(f"inode {nid} has unknown format bits {fmt:#x}")
    layout = (fmt >> 1) & 7
    if layout > _CHUNK_BASED:
        raise UnsupportedError(f"inode {nid} has unknown data layout {layout}")
    if fmt & 1:
        if len(raw) < 64:
            raise CorruptError(f"inode {nid} is truncated")
        size, i_u, _ino, uid, gid, mtime = struct.unpack_from("<QIIIIQ", raw, 8)
        isize = 64
    else:
        size, mtime_rel, i_u, _ino, uid, gid = struct.unpack_from("<IIIIHH", raw, 8)
        mtime = epoch + mtime_rel
        isize = 32
    if _stat.S_IFMT(mode) not in _INODE_TYPES:
        raise CorruptError(f"inode {nid} has bogus mode {mode:#o}")
    xattr_isize = 0 if icount == 0 else 12 + 4 * (icount - 1)
    return Inode(nid, pos, layout, isize, xattr_isize, mode, size, uid, gid, mtime, i_u, nb)


@record
class _ZInfo:
    """A compressed inode's map header, plus where its tail extent lives."""

    advise: int
    lclusterbits: int
    algs: tuple[int, int]
    idata_size: int  # ztailpacking: encoded size of the inline tail pcluster
    fragment: bool  # the tail (or everything) is in the packed inode
    fragmentoff: int
    whole_fragment: bool
    tail_headlcn: int  # head lcluster of the tail extent (-1: none)
    tail_pa: int  # ztailpacking: where the inline pcluster starts


class _Lcl(NamedTuple):
    lcn: int
    type: int
    clusterofs: int
    delta0: int
    delta1: int
    pblk: int
    cblks: int  # big pcluster: compressed block count stored on the first NONHEAD
    nextpackoff: int
    partialref: bool


class _Extent(NamedTuple):
    la: int
    llen: int
    kind: str  # "blocks", "inline" or "fragment"
    pa: int
    plen: int
    alg: int
    partial: bool


# --------------------------------------------------------------------------- the reader

class ErofsFS(FileBackedFS[Inode]):
    """An EROFS filesystem at `offset` (length `size`, default: to the end) in the file `path`."""

    FORMAT = "EROFS image"
    _OUTSIDE = "{what} at byte {pos} (+{n}) lies outside the image ({size} bytes)"
    _SHORT = "short read of {what} at byte {pos}: the image is truncated"

    def __init__(self, path: str, offset: int = 0, size: int | None = None) -> None:
        self.path = path
        self._blocks: LruCache[int, bytes] = LruCache(_META_CACHE_BLOCKS)
        self._inodes: LruCache[int, Inode] = LruCache(_INODE_CACHE)
        self._dirs: LruCache[int, dict[bytes, int]] = LruCache(_DIR_CACHE)
        self._zinfo: dict[int, _ZInfo] = {}
        self._long_prefixes: list[str] | None = None
        super().__init__(path, offset, size)

    def _load(self) -> None:
        head = self._pread(SUPERBLOCK_OFFSET, min(self._size - SUPERBLOCK_OFFSET, 1 << 16),
                           what="superblock") if self._size > SUPERBLOCK_OFFSET else b""
        self.sb = parse_superblock(head, self._size)
        self._bs = self.sb.block_size
        if not _stat.S_ISDIR(self._root().mode):
            raise CorruptError("the root inode is not a directory")

    # ------------------------------------------------------------------ messages
    # EROFS reports some things its own way; these keep its messages as they have always been.

    def _region(self, offset: int, size: int | None, end: int) -> int:
        """A region reaching past the end of the file is clipped to it, and then reported by
        the superblock's size check ("image is truncated")."""
        avail = max(0, end - offset)
        return avail if size is None else min(size, avail)

    def _where(self, path: str) -> str:
        return f"{self.label}:{_shown(path)}"

    def _not_a_directory(self, path: str, *, listing: bool) -> StrataError:
        return StrataError(f"{self._where(path)}: Not a directory", kind=ErrorKind.NOT_FOUND,
                           errno=errno.ENOTDIR)

    def _unsupported(self, where: str, exc: UnsupportedError) -> StrataError:
        return StrataError(f"{where}: unsupported EROFS image: {exc}", kind=ErrorKind.INVALID)

    def _describe(self, exc: BaseException) -> str:
        return f"{type(exc).__name__}: {exc}"

    # ------------------------------------------------------------------ blocks

    def _block(self, blkno: int) -> bytes:
        blk = self._blocks.get(blkno)
        if blk is not None:
            return blk
        start = blkno * self._bs
        if start >= self._size:
            raise CorruptError(f"metadata block {blkno} lies outside the image")
        return self._blocks.put(blkno, self._pread(start, min(self._bs, self._size - start),
                                                   what="metadata"))

    def _meta(self, pos: int, n: int) -> bytes:
        """Metadata bytes via the block cache (may span blocks)."""
        if pos < 0 or n < 0 or pos + n > self._size:
            raise CorruptError(f"metadata at byte {pos} (+{n}) lies outside the image")
        bs = self._bs
        first, last = pos // bs, (pos + n - 1) // bs if n else pos // bs
        if first == last:
            off = pos - first * bs
            out = self._block(first)[off:off + n]
        else:
            joined = b"".join(self._block(b) for b in range(first, last + 1))
            off = pos - first * bs
            out = joined[off:off + n]
        if len(out) != n:
            raise CorruptError(f"metadata at byte {pos} is truncated")
        return out

    # ------------------------------------------------------------------ inodes

    def _inode(self, nid: int) -> Inode:
        ino = self._inodes.get(nid)
        if ino is not None:
            return ino
        pos = self.sb.meta_blkaddr * self._bs + nid * 32
        raw = self._meta(pos, 32)
        if raw[0] & 1:
            raw = self._meta(pos, 64)
        ino = parse_inode(raw, nid=nid, pos=pos, epoch=self.sb.epoch)
        if ino.layout == _CHUNK_BASED and not self.sb.has(_INCOMPAT_CHUNKED_FILE):
            raise CorruptError(f"inode {nid} is chunk-based but the image lacks that feature")
        return self._inodes.put(nid, ino)

    def _packed_inode(self) -> Inode:
        if not self.sb.packed_nid:
            raise CorruptError("a fragment is referenced but the image has no packed inode")
        return self._inode(self.sb.packed_nid)

    # ------------------------------------------------------------------ file data

    def _read_range(self, ino: Inode, offset: int, length: int) -> bytes:
        """Bytes [offset, offset+length) of an inode's data, clipped at its size."""
        end = min(ino.size, offset + length)
        if offset >= end:
            return b""
        if ino.layout in (_FLAT_PLAIN, _FLAT_INLINE):
            return self._read_flat(ino, offset, end)
        if ino.layout == _CHUNK_BASED:
            return self._read_chunked(ino, offset, end)
        return self._read_compressed(ino, offset, end)

    def _read_flat(self, ino: Inode, offset: int, end: int) -> bytes:
        bs = self._bs
        inline = ino.layout == _FLAT_INLINE
        nblocks = -(-ino.size // bs)
        boundary = (nblocks - inline) * bs  # bytes stored in blocks; the rest is inline
        parts: list[bytes] = []
        if offset < boundary:
            stop = min(end, boundary)
            startblk = ino.i_u
            if not inline and startblk == _NULL_ADDR:
                parts.append(bytes(stop - offset))  # a hole
            else:
                if (startblk + nblocks - inline) * bs > self._size:
                    raise CorruptError(f"inode {ino.nid}'s blocks {startblk}+{nblocks} lie "
                                        f"outside the image")
                parts.append(self._pread(startblk * bs + offset, stop - offset))
        if end > boundary:
            tail_pos = ino.data_pos
            if tail_pos % bs + (ino.size - boundary) > bs:
                raise CorruptError(f"inode {ino.nid}'s inline data crosses a block boundary")
            start = max(offset, boundary)
            parts.append(self._pread(tail_pos + start - boundary, end - start, what="inline data"))
        return b"".join(parts)

    def _read_chunked(self, ino: Inode, offset: int, end: int) -> bytes:
        bs = self._bs
        fmt = ino.i_u & 0xFFFF
        if fmt & ~(_CHUNK_BLKBITS_MASK | _CHUNK_INDEXES | _CHUNK_48BIT):
            raise UnsupportedError(f"inode {ino.nid} has unknown chunk format {fmt:#x}")
        if fmt & _CHUNK_48BIT:
            raise UnsupportedError("48-bit chunk indexes")
        chunkbits = self.sb.blkszbits + (fmt & _CHUNK_BLKBITS_MASK)
        if chunkbits > 48:
            raise CorruptError(f"inode {ino.nid} has chunks of 2^{chunkbits} bytes")
        unit = 8 if fmt & _CHUNK_INDEXES else 4
        base = _round_up(ino.data_pos, unit)
        first, last = offset >> chunkbits, (end - 1) >> chunkbits
        table = self._meta(base + first * unit, (last - first + 1) * unit)
        csize = 1 << chunkbits
        parts: list[bytes] = []
        pos = offset
        for i, c in enumerate(range(first, last + 1)):
            if unit == 8:
                blk = struct.unpack_from("<I", table, i * 8 + 4)[0]
            else:
                blk = struct.unpack_from("<I", table, i * 4)[0]
            cend = min(end, (c + 1) * csize)
            if blk == _NULL_ADDR:
                parts.append(bytes(cend - pos))
            else:
                parts.append(self._pread(blk * bs + (pos - c * csize), cend - pos))
            pos = cend
        return b"".join(parts)

    # ------------------------------------------------------------------ compressed data

    def _zinfo_of(self, ino: Inode) -> _ZInfo:
        z = self._zinfo.get(ino.nid)
        if z is not None:
            return z
        sb = self.sb
        h = self._meta(_round_up(ino.data_pos, 8), 8)
        if h[7] & 0x80:
            if not sb.has(_INCOMPAT_FRAGMENTS):
                raise CorruptError(f"inode {ino.nid} is a fragment but the image lacks fragments")
            off = int.from_bytes(h, "little") & ~(1 << 63)
            z = _ZInfo(_ADV_FRAGMENT_PCLUSTER, sb.blkszbits, (0, 0), 0, True, off, True, 0, 0)
            self._zinfo[ino.nid] = z
            return z
        advise = int.from_bytes(h[4:6], "little")
        if ino.layout == _COMPRESSED_FULL and advise & _ADV_COMPACTED_2B:
            raise UnsupportedError("extent-based compressed files")
        lclusterbits = sb.blkszbits + (h[7] & 15)
        if lclusterbits > 16:
            raise CorruptError(f"inode {ino.nid} has logical clusters of 2^{lclusterbits} bytes")
        if advise & (_ADV_BIG_PCLUSTER_1 | _ADV_BIG_PCLUSTER_2) and not sb.has(
                _INCOMPAT_BIG_PCLUSTER):
            raise CorruptError(f"inode {ino.nid} uses big pclusters without the feature")
        if ino.layout == _COMPRESSED_COMPACT and (
                bool(advise & _ADV_BIG_PCLUSTER_1) != bool(advise & _ADV_BIG_PCLUSTER_2)):
            raise CorruptError(f"inode {ino.nid} has inconsistent big pcluster flags")
        fragment = bool(advise & _ADV_FRAGMENT_PCLUSTER)
        fragmentoff = idata = 0
        if fragment:
            if not sb.has(_INCOMPAT_FRAGMENTS):
                raise CorruptError(f"inode {ino.nid} uses fragments without the feature")
            fragmentoff = int.from_bytes(h[0:4], "little")
        elif advise & _ADV_INLINE_PCLUSTER:
            if not sb.has(_INCOMPAT_ZTAILPACKING):
                raise CorruptError(f"inode {ino.nid} is tail-packed without the feature")
            idata = int.from_bytes(h[2:4], "little")
        z = _ZInfo(advise, lclusterbits, (h[6] & 15, h[6] >> 4), idata, fragment, fragmentoff,
                   False, -1, 0)
        if (idata or fragment) and ino.size:
            # Find the tail extent: its head lcluster, and where the inline pcluster starts
            # (right after the index pack of the last lcluster).
            last = self._lcluster(ino, z, (ino.size - 1) >> lclusterbits)
            head = self._find_head(ino, z, ino.size - 1, last)
            if fragment and ino.layout == _COMPRESSED_FULL:
                fragmentoff |= head.pblk << 32
            z = _ZInfo(advise, lclusterbits, z.algs, idata, fragment, fragmentoff, False,
                       head.lcn, last.nextpackoff)
        self._zinfo[ino.nid] = z
        return z

    def _lcluster(self, ino: Inode, z: _ZInfo, lcn: int) -> _Lcl:
        if ino.layout == _COMPRESSED_COMPACT:
            m = self._lcluster_compact(ino, z, lcn)
        else:
            m = self._lcluster_full(ino, z, lcn)
        if m.type != _LT_NONHEAD and m.clusterofs >= 1 << z.lclusterbits:
            raise CorruptError(f"inode {ino.nid}: cluster offset {m.clusterofs} out of range")
        return m

    def _lcluster_full(self, ino: Inode, z: _ZInfo, lcn: int) -> _Lcl:
        pos = _round_up(ino.data_pos, 8) + 16 + lcn * 8
        advise, clusterofs, u = struct.unpack("<HHI", self._meta(pos, 8))
        ltype = advise & 3
        if ltype == _LT_NONHEAD:
            d0, d1, cblks = u & 0xFFFF, u >> 16, 0
            if d0 & _D0_CBLKCNT:
                if not z.advise & (_ADV_BIG_PCLUSTER_1 | _ADV_BIG_PCLUSTER_2):
                    raise CorruptError(f"inode {ino.nid}: compressed block count without big "
                                        f"pclusters")
                cblks, d0 = d0 & ~_D0_CBLKCNT, 1
            return _Lcl(lcn, ltype, 1 << z.lclusterbits, d0, d1, 0, cblks, pos + 8, False)
        return _Lcl(lcn, ltype, clusterofs, 0, 0, u, 0, pos + 8, bool(advise & _PARTIAL_REF))

    def _lcluster_compact(self, ino: Inode, z: _ZInfo, lcn: int) -> _Lcl:
        lb = z.lclusterbits
        ebase = _round_up(ino.data_pos, 8) + 8
        totalidx = -(-ino.size // self._bs)
        if lb > 14:
            raise UnsupportedError(f"inode {ino.nid}: compact indexes with 2^{lb}-byte "
                                    f"logical clusters")
        if lcn >= totalidx:
            raise CorruptError(f"inode {ino.nid}: logical cluster {lcn} out of range")
        initial_4b = ((32 - ebase % 32) // 4) & 7
        compacted_2b = 0
        if z.advise & _ADV_COMPACTED_2B and initial_4b < totalidx:
            compacted_2b = (totalidx - initial_4b) // 16 * 16
        pos, shift, i = ebase, 2, lcn
        if i >= initial_4b:
            pos += initial_4b * 4
            i -= initial_4b
            if i < compacted_2b:
                shift = 1
            else:
                pos += compacted_2b * 2
                i -= compacted_2b
        pos += i << shift
        if shift == 2:
            vcnt = 2
        elif lb <= 12:
            vcnt = 16
        else:
            raise UnsupportedError(f"inode {ino.nid}: 2-byte indexes with 2^{lb}-byte clusters")
        packsize = vcnt << shift
        packstart = pos - pos % packsize
        pack = self._meta(packstart, packsize)
        bits = int.from_bytes(pack[:packsize - 4], "little")
        lobits = max(lb, 12)
        encodebits = (packsize - 4) * 8 // vcnt
        lomask = (1 << lobits) - 1
        big = bool(z.advise & _ADV_BIG_PCLUSTER_1)

        def decode(idx: int) -> tuple[int, int]:
            v = bits >> (encodebits * idx)
            return v & lomask, (v >> lobits) & 3

        i = (pos - packstart) >> shift
        nextpack = packstart + packsize
        lo, ltype = decode(i)
        if ltype == _LT_NONHEAD:
            # delta1: the distance to the next head, counted through this pack (the last
            # entry of a pack stores delta1 instead of delta0).
            d1, j, lo_j = 0, i, lo
            while j < vcnt:
                lo_j, t = decode(j)
                if t != _LT_NONHEAD:
                    break
                d1 += 1
                j += 1
            else:
                if not lo_j & _D0_CBLKCNT:
                    d1 += lo_j - 1
            if lo & _D0_CBLKCNT:
                if not big:
                    raise CorruptError(f"inode {ino.nid}: compressed block count without big "
                                        f"pclusters")
                return _Lcl(lcn, ltype, 1 << lb, 1, d1, 0, lo & ~_D0_CBLKCNT, nextpack, False)
            if i + 1 != vcnt:
                return _Lcl(lcn, ltype, 1 << lb, lo, d1, 0, 0, nextpack, False)
            plo, pt = decode(i - 1) if i else (0, _LT_PLAIN)
            if pt != _LT_NONHEAD:
                plo = 0
            elif plo & _D0_CBLKCNT:
                plo = 1
            return _Lcl(lcn, ltype, 1 << lb, plo + 1, d1, 0, 0, nextpack, False)
        # A head: its block is the pack's base address plus the pclusters before it.
        nblk = 0
        if not big:
            nblk = 1
            while i > 0:
                i -= 1
                lo_i, t = decode(i)
                if t == _LT_NONHEAD:
                    i -= lo_i
                if i >= 0:
                    nblk += 1
        else:
            while i > 0:
                i -= 1
                lo_i, t = decode(i)
                if t == _LT_NONHEAD:
                    if lo_i & _D0_CBLKCNT:
                        i -= 1
                        nblk += lo_i & ~_D0_CBLKCNT
                        continue
                    if lo_i <= 1:
                        raise CorruptError(f"inode {ino.nid}: bogus big pcluster index")
                    i -= lo_i - 2
                    continue
                nblk += 1
        base_blk = int.from_bytes(pack[packsize - 4:], "little")
        return _Lcl(lcn, ltype, lo, 0, 0, base_blk + nblk, 0, nextpack, False)

    def _lookback(self, ino: Inode, z: _ZInfo, lcn: int, distance: int) -> _Lcl:
        while distance and lcn >= distance:
            lcn -= distance
            m = self._lcluster(ino, z, lcn)
            if m.type != _LT_NONHEAD:
                return m
            distance = m.delta0
        raise CorruptError(f"inode {ino.nid}: bogus lookback distance at logical cluster {lcn}")

    def _find_head(self, ino: Inode, z: _ZInfo, ofs: int, m: _Lcl) -> _Lcl:
        """The head lcluster of the extent holding byte `ofs`, given ofs's own lcluster m."""
        if m.type == _LT_NONHEAD:
            return self._lookback(ino, z, m.lcn, m.delta0)
        if ofs & ((1 << z.lclusterbits) - 1) >= m.clusterofs:
            return m
        if m.lcn == 0:
            raise CorruptError(f"inode {ino.nid}: invalid logical cluster 0")
        return self._lookback(ino, z, m.lcn, 1)

    def _zmap(self, ino: Inode, z: _ZInfo, ofs: int) -> _Extent:
        """The whole extent holding byte `ofs` (erofs-utils' map_blocks with FIEMAP)."""
        if z.whole_fragment or (z.fragment and z.tail_headlcn == 0):
            return _Extent(0, ino.size, "fragment", 0, 0, 0, False)
        lb = z.lclusterbits
        head = self._find_head(ino, z, ofs, self._lcluster(ino, z, ofs >> lb))
        la = (head.lcn << lb) | head.clusterofs
        # Decoded length: up to the next head lcluster (or EOF).
        lcn = head.lcn + 1
        while True:
            if lcn << lb >= ino.size:
                llen = ino.size - la
                break
            if (lcn << lb) - la > _PCLUSTER_MAX_DSIZE:
                raise CorruptError(f"inode {ino.nid}: extent at {la} decodes to too much data")
            m = self._lcluster(ino, z, lcn)
            if m.type == _LT_NONHEAD:
                lcn += m.delta1 or 1  # pre-1.0 mkfs wrote delta1 == 0
                continue
            llen = (lcn << lb) + m.clusterofs - la
            break
        if llen <= 0 or llen > _PCLUSTER_MAX_DSIZE:
            raise CorruptError(f"inode {ino.nid}: bogus extent length {llen} at {la}")
        if head.type == _LT_PLAIN:
            alg = _ALG_INTERLACED if z.advise & _ADV_INTERLACED_PCLUSTER else _ALG_SHIFTED
        else:
            alg = z.algs[1] if head.type == _LT_HEAD2 else z.algs[0]
            if not self.sb.available_algs & (1 << alg):
                raise CorruptError(f"inode {ino.nid} uses compression algorithm {alg}, which the "
                                    f"superblock does not list")
        if z.idata_size and head.lcn == z.tail_headlcn:
            pa, plen = z.tail_pa, z.idata_size
            if pa % self._bs + plen > self._bs:
                raise CorruptError(f"inode {ino.nid}: tail-packed pcluster crosses a block")
            kind = "inline"
        elif z.fragment and head.lcn == z.tail_headlcn:
            return _Extent(la, llen, "fragment", 0, 0, 0, False)
        else:
            pa, plen, kind = head.pblk * self._bs, self._pcluster_blocks(ino, z, head) * self._bs, \
                "blocks"
        if plen > _PCLUSTER_MAX_SIZE:
            raise CorruptError(f"inode {ino.nid}: pcluster of {plen} bytes")
        if head.type == _LT_PLAIN and llen > plen:
            raise CorruptError(f"inode {ino.nid}: uncompressed extent larger than its pcluster")
        return _Extent(la, llen, kind, pa, plen, alg, head.partialref)

    def _pcluster_blocks(self, ino: Inode, z: _ZInfo, head: _Lcl) -> int:
        lb = z.lclusterbits
        nxt = head.lcn + 1
        if ((head.type == _LT_HEAD1 and not z.advise & _ADV_BIG_PCLUSTER_1)
                or (head.type != _LT_HEAD1 and not z.advise & _ADV_BIG_PCLUSTER_2)
                or nxt << lb >= ino.size):
            return 1
        m = self._lcluster(ino, z, nxt)
        if m.type != _LT_NONHEAD:
            return 1
        if m.delta0 != 1 or not m.cblks:
            raise CorruptError(f"inode {ino.nid}: missing compressed block count at {nxt}")
        return m.cblks

    def _decode_extent(self, ino: Inode, z: _ZInfo, ext: _Extent) -> bytes:
        if ext.kind == "fragment":
            if ino.nid == self.sb.packed_nid:
                raise CorruptError("the packed inode refers to a fragment of itself")
            data = self._read_range(self._packed_inode(), z.fragmentoff, ext.llen)
            if len(data) != ext.llen:
                raise CorruptError(f"inode {ino.nid}: fragment lies beyond the packed inode")
            return data
        raw = self._pread(ext.pa, ext.plen, what="compressed data")
        alg, n = ext.alg, ext.llen
        if alg == _ALG_SHIFTED:
            return raw[:n]
        if alg == _ALG_INTERLACED:
            skip = ext.la % self._bs
            right = min(self._bs - skip, n)
            return raw[skip:skip + right] + raw[:n - right]
        if alg == _ALG_LZ4:
            return self._lz4(raw, n, partial=ext.partial)
        margin = len(raw) - len(raw.lstrip(b"\0"))
        src = raw[margin:]
        if not src:
            raise CorruptError("empty compressed pcluster")
        if alg == _ALG_DEFLATE:
            try:
                out = zlib.decompressobj(-15).decompress(src, n)
            except zlib.error as e:
                raise CorruptError(f"deflate: {e}") from e
        elif alg == _ALG_ZSTD:
            import zstandard

            try:
                out = zstandard.ZstdDecompressor().decompressobj().decompress(src)[:n]
            except zstandard.ZstdError as e:
                raise CorruptError(f"zstd: {e}") from e
        else:
            raise UnsupportedError(f"{_ALG_NAMES.get(alg, str(alg))} compression")
        if len(out) != n:
            raise CorruptError(f"inode {ino.nid}: pcluster at {ext.pa} decodes to {len(out)} "
                                f"bytes, expected {n}")
        return out

    def _lz4(self, raw: bytes, n: int, *, partial: bool) -> bytes:
        if self.sb.has(_INCOMPAT_LZ4_0PADDING):
            # With 0padding the stream is right-aligned: leading zeros are padding and the
            # stream ends exactly at the end of the pcluster.
            src = raw.lstrip(b"\0")
            if not src:
                raise CorruptError("empty LZ4 pcluster")
            if not partial:
                import lz4.block

                try:
                    out: bytes = lz4.block.decompress(src, uncompressed_size=n)
                except lz4.block.LZ4BlockError:
                    out = b""
                if len(out) == n:
                    return out
            # Not exactly n bytes: a pcluster holding more than this extent (dedupe).
            return lz4_decompress_partial(src, n)
        # Legacy images: the stream starts at the beginning and trailing zeros follow it.
        return lz4_decompress_partial(raw, n)

    def _read_compressed(self, ino: Inode, offset: int, end: int) -> bytes:
        z = self._zinfo_of(ino)
        if z.whole_fragment:
            if ino.nid == self.sb.packed_nid:
                raise CorruptError("the packed inode is itself a fragment")
            data = self._read_range(self._packed_inode(), z.fragmentoff + offset, end - offset)
            if len(data) != end - offset:
                raise CorruptError(f"inode {ino.nid}: fragment lies beyond the packed inode")
            return data
        parts: list[bytes] = []
        pos = offset
        while pos < end:
            ext = self._zmap(ino, z, pos)
            if not ext.la <= pos < ext.la + ext.llen:
                raise CorruptError(f"inode {ino.nid}: extent map does not cover byte {pos}")
            data = self._decode_extent(ino, z, ext)
            stop = min(end, ext.la + ext.llen)
            parts.append(data[pos - ext.la:stop - ext.la])
            pos = stop
        return b"".join(parts)

    # ------------------------------------------------------------------ directories

    def _entries(self, ino: Inode) -> dict[bytes, int]:
        """name -> nid, in on-disk order, without "." and ".."."""
        cached = self._dirs.get(ino.nid)
        if cached is not None:
            return cached
        data = self._read_range(ino, 0, ino.size)
        if len(data) != ino.size:
            raise CorruptError(f"directory inode {ino.nid} is truncated")
        dbs = self._bs << self.sb.dirblkbits
        out: dict[bytes, int] = {}
        for start in range(0, len(data), dbs):
            blk = data[start:start + dbs]
            if len(blk) < 12:
                raise CorruptError(f"directory inode {ino.nid} has a truncated block")
            first_nameoff = struct.unpack_from("<H", blk, 8)[0]
            if first_nameoff < 12 or first_nameoff % 12 or first_nameoff > len(blk):
                raise CorruptError(f"directory inode {ino.nid} has a bogus dirent block")
            count = first_nameoff // 12
            ents = [struct.unpack_from("<QHB", blk, k * 12) for k in range(count)]
            for k, (nid, nameoff, _ftype) in enumerate(ents):
                nameend = ents[k + 1][1] if k + 1 < count else len(blk)
                if not first_nameoff <= nameoff < nameend <= len(blk):
                    raise CorruptError(f"directory inode {ino.nid} has a bogus name offset")
                name = blk[nameoff:nameend]
                if k + 1 == count:
                    name = name.split(b"\0", 1)[0]
                if not name or b"/" in name or b"\0" in name:
                    raise CorruptError(f"directory inode {ino.nid} has a bogus entry name")
                if name not in (b".", b".."):
                    out[name] = nid
        return self._dirs.put(ino.nid, out)

    def _symlink_target(self, ino: Inode) -> str:
        if ino.size > _MAX_SYMLINK:
            raise CorruptError(f"symlink inode {ino.nid} is {ino.size} bytes long")
        data = self._read_range(ino, 0, ino.size)
        if len(data) != ino.size or b"\0" in data:
            raise CorruptError(f"symlink inode {ino.nid} has a bogus target")
        return os.fsdecode(data)

    # ------------------------------------------------------------------ xattrs

    def _prefixes(self) -> list[str]:
        """The long xattr name prefix table (XATTR_PREFIXES feature)."""
        if self._long_prefixes is not None:
            return self._long_prefixes
        sb = self.sb
        table: list[str] = []
        if sb.xattr_prefix_count and sb.has(_INCOMPAT_XATTR_PREFIXES):
            pos = sb.xattr_prefix_start * 4
            packed = (self._packed_inode()
                      if sb.packed_nid and not sb.feature_compat & _COMPAT_PLAIN_XATTR_PFX
                      else None)

            def read(p: int, n: int) -> bytes:
                if packed is None:
                    return self._meta(p, n)
                out = self._read_range(packed, p, n)
                if len(out) != n:
                    raise CorruptError("xattr prefix table lies beyond the packed inode")
                return out

            for _ in range(sb.xattr_prefix_count):
                pos = _round_up(pos, 4)
                length = int.from_bytes(read(pos, 2), "little")
                if not 1 <= length <= 256:
                    raise CorruptError("bogus long xattr prefix")
                item = read(pos + 2, length)
                base = _XATTR_PREFIXES.get(item[0], "")
                table.append(base + os.fsdecode(item[1:]))
                pos += 2 + length
        self._long_prefixes = table
        return table

    def _xattr_entry(self, buf: bytes, at: int) -> tuple[str | None, bytes, int]:
        """(full name or None if its prefix is unknown, value, entry size) at buf[at:]."""
        name_len, index, value_size = struct.unpack_from("<BBH", buf, at)
        end = at + 4 + name_len + value_size
        if end > len(buf):
            raise CorruptError("xattr entry runs past its area")
        suffix = os.fsdecode(buf[at + 4:at + 4 + name_len])
        value = buf[at + 4 + name_len:end]
        if index & 0x80:
            table = self._prefixes()
            prefix = table[index & 0x7F] if (index & 0x7F) < len(table) else None
        else:
            prefix = _XATTR_PREFIXES.get(index)
        size = _round_up(4 + name_len + value_size, 4)
        return (None if prefix is None else prefix + suffix), value, size

    def _xattrs(self, ino: Inode) -> list[tuple[str, bytes]]:
        if not ino.xattr_isize:
            return []
        if ino.xattr_isize < 12:
            raise CorruptError(f"inode {ino.nid} has a bogus xattr area")
        body = self._meta(ino.pos + ino.isize, ino.xattr_isize)
        shared = body[4]
        at = 12 + 4 * shared
        if at > len(body):
            raise CorruptError(f"inode {ino.nid} has too many shared xattrs")
        out: list[tuple[str, bytes]] = []
        base = self.sb.xattr_blkaddr * self._bs
        for k in range(shared):
            xid = struct.unpack_from("<I", body, 12 + 4 * k)[0]
            pos = base + xid * 4
            hdr = self._meta(pos, 4)
            entry = self._meta(pos, 4 + hdr[0] + int.from_bytes(hdr[2:4], "little"))
            name, value, _ = self._xattr_entry(entry, 0)
            if name is not None:
                out.append((name, value))
        while at < len(body):
            if at + 4 > len(body):
                raise CorruptError(f"inode {ino.nid} has a truncated xattr entry")
            name, value, size = self._xattr_entry(body, at)
            if name is not None:
                out.append((name, value))
            at += size
        return out

    # ------------------------------------------------------------------ FileBackedFS

    def _root(self) -> Inode:
        return self._inode(self.sb.root_nid)

    def _child(self, directory: Inode, name: str) -> Inode | None:
        nid = self._entries(directory).get(os.fsencode(name))
        return None if nid is None else self._inode(nid)

    def _link_target(self, link: Inode) -> str:
        return self._symlink_target(link)

    def _names(self, directory: Inode) -> list[str]:
        return [os.fsdecode(n) for n in self._entries(directory)]

    def _contents(self, regular: Inode, limit: int | None) -> bytes:
        want = regular.size if limit is None else min(limit, regular.size)
        data = self._read_range(regular, 0, want)
        if len(data) != want:
            raise CorruptError(f"inode {regular.nid}: read {len(data)} of {want} bytes")
        return data

    def _xattr(self, node: Inode, name: str) -> bytes | None:
        for key, value in self._xattrs(node):
            if key == name:
                return value
        return None

    def listxattr(self, path: str) -> list[str]:
        """Names of the extended attributes of `path` (not following a final symlink)."""
        with self._guard(path):
            return [key for key, _ in self._xattrs(self._lookup(path))]
