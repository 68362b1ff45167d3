"""Read an ext2/ext3/ext4 filesystem image without mounting it.

Layout (kernel fs/ext4/ext4.h): a 1024-byte superblock at byte 1024, group descriptors after it
(or, with meta_bg, at the start of each meta group), per-group inode tables; inodes of 128 bytes
or more; file data mapped by extent trees (ext4) or direct/indirect block maps (ext2/3), or kept
inside the inode ("inline data"); directories as linear lists of entries. Hashed (htree)
directories are read linearly too: their index nodes are disguised as empty directory entries
(inode 0), which a linear reader skips naturally.

Deliberately not done: checksums (metadata_csum, group descriptor and directory checksums) are
not verified; the journal is not replayed, so an image that was not cleanly unmounted is read
as its main area stands; encrypted inodes are refused (UNSUPPORTED); casefolded directories are
matched byte-exactly.

Everything is read with os.pread on demand; small metadata (group descriptors, inodes,
directory listings, indirect/extent/xattr blocks) is cached. Malformed structures raise a
one-line StrataError(kind=INVALID) naming the image and the path being read.
"""

from __future__ import annotations

import os
import stat as _stat
import struct
from collections.abc import Iterator

from strata.errors import ErrorKind, StrataError
from strata.images.filebacked import CorruptError, FileBackedFS, LruCache, UnsupportedError
from strata.record import record

MAGIC = 0xEF53
SUPERBLOCK_OFFSET = 1024
ROOT_INO = 2
GOOD_OLD_INODE_SIZE = 128

COMPAT_SPARSE_SUPER2 = 0x200
RO_COMPAT_SPARSE_SUPER = 0x1
RO_COMPAT_HUGE_FILE = 0x8

INCOMPAT_COMPRESSION = 0x1
INCOMPAT_FILETYPE = 0x2
INCOMPAT_RECOVER = 0x4
INCOMPAT_JOURNAL_DEV = 0x8
INCOMPAT_META_BG = 0x10
INCOMPAT_EXTENTS = 0x40
INCOMPAT_64BIT = 0x80
INCOMPAT_MMP = 0x100
INCOMPAT_FLEX_BG = 0x200
INCOMPAT_EA_INODE = 0x400
INCOMPAT_DIRDATA = 0x1000
INCOMPAT_CSUM_SEED = 0x2000
INCOMPAT_LARGEDIR = 0x4000
INCOMPAT_INLINE_DATA = 0x8000
INCOMPAT_ENCRYPT = 0x10000
INCOMPAT_CASEFOLD = 0x20000
#: incompatible features whose on-disk format this reader understands
KNOWN_INCOMPAT = (
    INCOMPAT_FILETYPE | INCOMPAT_RECOVER | INCOMPAT_META_BG | INCOMPAT_EXTENTS | INCOMPAT_64BIT
    | INCOMPAT_MMP | INCOMPAT_FLEX_BG | INCOMPAT_EA_INODE | INCOMPAT_CSUM_SEED | INCOMPAT_LARGEDIR
    | INCOMPAT_INLINE_DATA | INCOMPAT_ENCRYPT | INCOMPAT_CASEFOLD
)

# inode flags
ENCRYPT_FL = 0x800
HUGE_FILE_FL = 0x40000
EXTENTS_FL = 0x80000
EA_INODE_FL = 0x200000
INLINE_DATA_FL = 0x10000000

EXTENT_MAGIC = 0xF30A
EXTENT_MAX_DEPTH = 5
XATTR_MAGIC = 0xEA020000
_N_BLOCKS = 15
_I_BLOCK_SIZE = 4 * _N_BLOCKS  # 60 bytes of block pointers / extent root / inline data
_EXT_INIT_MAX_LEN = 32768

_XATTR_PREFIXES = {
    0: b"",
    1: b"user.",
    2: b"system.posix_acl_access",
    3: b"system.posix_acl_default",
    4: b"trusted.",
    6: b"security.",
    7: b"system.",
    8: b"system.richacl",
}


@record
class Ext4Superblock:
    """The superblock fields this reader uses."""

    inodes_count: int
    blocks_count: int
    first_data_block: int
    block_size: int
    cluster_size: int
    blocks_per_group: int
    inodes_per_group: int
    inode_size: int
    desc_size: int
    feature_compat: int
    feature_incompat: int
    feature_ro_compat: int
    first_meta_bg: int
    backup_bgs: tuple[int, int]
    uuid: bytes
    volume_name: str

    @property
    def groups(self) -> int:
        return -(-(self.blocks_count - self.first_data_block) // self.blocks_per_group)


def parse_superblock(raw: bytes) -> Ext4Superblock:
    """Decode and sanity-check the 1024-byte superblock; raises ValueError with a reason."""
    if len(raw) < 1024:
        raise ValueError("too short for an ext superblock")
    (magic,) = struct.unpack_from("<H", raw, 0x38)
    if magic != MAGIC:
        raise ValueError(f"bad magic 0x{magic:04x}")
    (inodes_count, blocks_lo, _r, _fb, _fi, first_data_block, log_block, log_cluster,
     blocks_per_group, _cpg, inodes_per_group) = struct.unpack_from("<11I", raw, 0)
    (rev_level,) = struct.unpack_from("<I", raw, 0x4C)
    inode_size, _bgnr, compat, incompat, ro_compat = struct.unpack_from("<HHIII", raw, 0x58)
    (desc_size,) = struct.unpack_from("<H", raw, 0xFE)
    (first_meta_bg,) = struct.unpack_from("<I", raw, 0x104)
    (blocks_hi,) = struct.unpack_from("<I", raw, 0x150)
    backup_bgs = struct.unpack_from("<II", raw, 0x24C)
    if log_block > 6:
        raise ValueError(f"bad block size exponent {log_block}")
    block_size = 1024 << log_block
    cluster_size = 1024 << log_cluster if log_cluster <= 16 else 0
    if rev_level == 0:
        inode_size = GOOD_OLD_INODE_SIZE
    if (inode_size < GOOD_OLD_INODE_SIZE or inode_size > block_size
            or inode_size & (inode_size - 1)):
        raise ValueError(f"bad inode size {inode_size}")
    if incompat & INCOMPAT_64BIT:
        if desc_size < 64 or desc_size > block_size or desc_size & (desc_size - 1):
            raise ValueError(f"bad group descriptor size {desc_size}")
        blocks_count = blocks_lo | blocks_hi << 32
    else:
        desc_size = 32
        blocks_count = blocks_lo
    if blocks_per_group == 0 or inodes_per_group == 0:
        raise ValueError("zero blocks or inodes per group")
    if first_data_block >= blocks_count:
        raise ValueError(f"first data block {first_data_block} beyond {blocks_count} blocks")
    sb = Ext4Superblock(
        inodes_count=inodes_count, blocks_count=blocks_count,
        first_data_block=first_data_block, block_size=block_size,
        cluster_size=cluster_size or block_size, blocks_per_group=blocks_per_group,
        inodes_per_group=inodes_per_group, inode_size=inode_size, desc_size=desc_size,
        feature_compat=compat, feature_incompat=incompat, feature_ro_compat=ro_compat,
        first_meta_bg=first_meta_bg, backup_bgs=(backup_bgs[0], backup_bgs[1]),
        uuid=bytes(raw[0x68:0x78]),
        volume_name=raw[0x78:0x88].split(b"\0", 1)[0].decode("utf-8", "replace"),
    )
    if inodes_count > sb.groups * inodes_per_group:
        raise ValueError(f"{inodes_count} inodes do not fit in {sb.groups} groups")
    return sb


def group_has_super(group: int, sb: Ext4Superblock) -> bool:
    """Whether block group `group` starts with a superblock backup (kernel ext4_bg_has_super)."""
    if group == 0:
        return True
    if sb.feature_compat & COMPAT_SPARSE_SUPER2:
        return group in sb.backup_bgs
    if group <= 1 or not sb.feature_ro_compat & RO_COMPAT_SPARSE_SUPER:
        return True
    if not group & 1:
        return False
    for base in (3, 5, 7):
        n = group
        while n % base == 0:
            n //= base
        if n == 1:
            return True
    return False


def descriptor_position(group: int, sb: Ext4Superblock) -> int:
    """Byte offset of group `group`'s descriptor (kernel descriptor_loc)."""
    per_block = sb.block_size // sb.desc_size
    desc_block, index = divmod(group, per_block)
    if sb.feature_incompat & INCOMPAT_META_BG and desc_block >= sb.first_meta_bg:
        # meta_bg: each run of `per_block` groups keeps its one descriptor block in its first
        # group, right after that group's superblock backup if it has one.
        first = desc_block * per_block
        block = sb.first_data_block + first * sb.blocks_per_group
        block += 1 if group_has_super(first, sb) else 0
        if sb.block_size == 1024 and desc_block == 0 and sb.first_data_block == 0:
            block += 1
    else:
        block = sb.first_data_block + 1 + desc_block
    return block * sb.block_size + index * sb.desc_size


def decode_rec_len(raw: int, block_size: int) -> int:
    """A directory entry's record length; 64 KiB blocks encode lengths above 65535 specially."""
    if block_size < 65536:
        return raw
    if raw in (0, 65535):
        return block_size
    return (raw & 65532) | ((raw & 3) << 16)


def parse_dirents(buf: bytes, block_size: int, has_filetype: bool) -> list[tuple[bytes, int]]:
    """(name, inode) of the live entries in one directory block (or inline region), in order.
    Entries with inode 0 (deleted entries, htree index nodes, checksum tails) are skipped."""
    out: list[tuple[bytes, int]] = []
    pos = 0
    end = len(buf)
    while pos < end:
        if pos + 8 > end:
            raise ValueError(f"directory entry header at {pos} runs past the block")
        ino, raw_len, name_len, file_type = struct.unpack_from("<IHBB", buf, pos)
        rec_len = decode_rec_len(raw_len, block_size)
        if not has_filetype:
            name_len |= file_type << 8
        if rec_len < 8 or rec_len % 4 or pos + rec_len > end or 8 + name_len > rec_len:
            raise ValueError(f"bad directory entry at {pos} (rec_len {rec_len})")
        if ino:
            name = bytes(buf[pos + 8:pos + 8 + name_len])
            if not name or b"/" in name or b"\0" in name:
                raise ValueError(f"invalid name {name!r} in directory entry at {pos}")
            if name not in (b".", b".."):
                out.append((name, ino))
        pos += rec_len
    return out


@record
class XattrEntry:
    """One entry of an xattr list, before its value is fetched."""

    name: bytes  # full name with prefix
    value_offset: int
    value_inum: int
    value_size: int


def parse_xattr_entries(buf: bytes, start: int) -> list[XattrEntry]:
    """The entries from `start` to the 4-zero-byte terminator (or the end of `buf`). Entries
    whose name index this reader does not know are dropped."""
    out: list[XattrEntry] = []
    pos = start
    while pos + 4 <= len(buf) and buf[pos:pos + 4] != b"\0\0\0\0":
        if pos + 16 > len(buf):
            raise ValueError(f"xattr entry at {pos} runs past the end")
        name_len, index, voff, vinum, vsize, _hash = struct.unpack_from("<BBHIII", buf, pos)
        name = bytes(buf[pos + 16:pos + 16 + name_len])
        if len(name) != name_len:
            raise ValueError(f"xattr name at {pos} runs past the end")
        prefix = _XATTR_PREFIXES.get(index)
        if prefix is not None:
            out.append(XattrEntry(prefix + name, voff, vinum, vsize))
        pos += (16 + name_len + 3) & ~3
    return out


def coalesce(pairs: list[tuple[int, int]]) -> list[tuple[int, int, int]]:
    """(logical, physical) block pairs, sorted by logical -> (logical, physical, count) runs."""
    runs: list[tuple[int, int, int]] = []
    for lblk, pblk in pairs:
        if runs:
            rl, rp, rc = runs[-1]
            if rl + rc == lblk and rp + rc == pblk:
                runs[-1] = (rl, rp, rc + 1)
                continue
        runs.append((lblk, pblk, 1))
    return runs


@record
class _Inode:
    ino: int
    mode: int
    uid: int
    gid: int
    size: int
    mtime: int
    flags: int
    blocks512: int  # i_blocks in 512-byte units
    file_acl: int
    i_block: bytes
    ibody_xattrs: bytes  # in-inode xattr area after the magic, or b""


_EXTENT_HEADER = struct.Struct("<HHHHI")  # magic, entries, max, depth, generation
_EXTENT = struct.Struct("<IHHI")  # logical block, length, start hi, start lo
_EXTENT_INDEX = struct.Struct("<IIHH")  # logical block, leaf lo, leaf hi, unused
_MAX_SYMLINK = 65536

_Run = tuple[int, int, int, bool]  # logical block, physical block, count, uninitialized


class Ext4FS(FileBackedFS[_Inode]):
    """An ext2/ext3/ext4 filesystem in `path`, starting `offset` bytes in and `size` bytes long
    (default: to the end of the file)."""

    FORMAT = "ext filesystem"

    def __init__(self, path: str, offset: int = 0, size: int | None = None) -> None:
        self._inode_cache: LruCache[int, _Inode] = LruCache(1024)
        self._block_cache: LruCache[int, bytes] = LruCache(128)
        self._dir_cache: LruCache[int, dict[str, int]] = LruCache(256)
        self._itable: dict[int, int] = {}
        super().__init__(path, offset, size)

    def _load(self) -> None:
        self.superblock = sb = self._read_superblock(parse_superblock, SUPERBLOCK_OFFSET, 1024,
                                                     "ext2/3/4 filesystem")
        unknown = sb.feature_incompat & ~KNOWN_INCOMPAT
        if unknown:
            raise StrataError(
                f"{self.label}: ext filesystem uses incompatible features 0x{unknown:x} that "
                "this reader does not understand", kind=ErrorKind.UNSUPPORTED)
        if sb.blocks_count * sb.block_size > self._size:
            raise CorruptError(
                f"truncated: filesystem is {sb.blocks_count * sb.block_size} bytes, "
                f"only {self._size} present")
        self._bs = sb.block_size
        self._filetype = bool(sb.feature_incompat & INCOMPAT_FILETYPE)
        if not _stat.S_ISDIR(self._root().mode):
            raise CorruptError("root inode is not a directory")

    # -- blocks --

    def _check_blocks(self, block: int, count: int = 1) -> None:
        if block < self.superblock.first_data_block or block + count > \
                self.superblock.blocks_count:
            raise CorruptError(f"block {block} (+{count}) is outside the filesystem")

    def _block(self, block: int) -> bytes:
        """One metadata block (cached)."""
        hit = self._block_cache.get(block)
        if hit is not None:
            return hit
        self._check_blocks(block)
        return self._block_cache.put(block, self._pread(block * self._bs, self._bs))

    # -- inodes --

    def _inode_table(self, group: int) -> int:
        table = self._itable.get(group)
        if table is None:
            sb = self.superblock
            raw = self._pread(descriptor_position(group, sb), sb.desc_size)
            (table,) = struct.unpack_from("<I", raw, 8)
            if sb.desc_size >= 64:
                table |= struct.unpack_from("<I", raw, 0x28)[0] << 32
            itb = -(-sb.inodes_per_group * sb.inode_size // self._bs)
            self._check_blocks(table, itb)
            self._itable[group] = table
        return table

    def _inode(self, ino: int) -> _Inode:
        hit = self._inode_cache.get(ino)
        if hit is not None:
            return hit
        sb = self.superblock
        if not 1 <= ino <= sb.inodes_count:
            raise CorruptError(f"inode number {ino} out of range")
        group, index = divmod(ino - 1, sb.inodes_per_group)
        raw = self._pread(self._inode_table(group) * self._bs + index * sb.inode_size,
                          sb.inode_size)
        return self._inode_cache.put(ino, self._parse_inode(ino, raw))

    def _parse_inode(self, ino: int, raw: bytes) -> _Inode:
        sb = self.superblock
        mode, uid_lo, size_lo, _atime, _ctime, mtime, _dtime, gid_lo, _links, blocks_lo, \
            flags = struct.unpack_from("<HHIIIiIHHII", raw, 0)
        if mode == 0:
            raise CorruptError(f"inode {ino} is not in use")
        i_block = bytes(raw[0x28:0x28 + _I_BLOCK_SIZE])
        acl_lo, size_hi = struct.unpack_from("<I4xI", raw, 0x68)
        blocks_hi, acl_hi, uid_hi, gid_hi = struct.unpack_from("<HHHH", raw, 0x74)
        blocks512 = blocks_lo
        if sb.feature_ro_compat & RO_COMPAT_HUGE_FILE:
            blocks512 |= blocks_hi << 32
            if flags & HUGE_FILE_FL:
                blocks512 *= self._bs // 512
        ibody = b""
        if sb.inode_size > GOOD_OLD_INODE_SIZE:
            (extra,) = struct.unpack_from("<H", raw, 0x80)
            if GOOD_OLD_INODE_SIZE + extra > sb.inode_size or extra % 4:
                raise CorruptError(f"inode {ino} has bad extra size {extra}")
            if GOOD_OLD_INODE_SIZE + extra >= 0x8C:
                # i_mtime_extra: the low two bits extend the 32-bit seconds past 2038.
                (mtime_extra,) = struct.unpack_from("<I", raw, 0x88)
                mtime += (mtime_extra & 3) << 32
            magic_at = GOOD_OLD_INODE_SIZE + extra
            if magic_at + 4 <= sb.inode_size and \
                    struct.unpack_from("<I", raw, magic_at)[0] == XATTR_MAGIC:
                ibody = bytes(raw[magic_at + 4:])
        return _Inode(
            ino=ino, mode=mode, uid=uid_lo | uid_hi << 16, gid=gid_lo | gid_hi << 16,
            size=size_lo | size_hi << 32, mtime=mtime, flags=flags, blocks512=blocks512,
            file_acl=acl_lo | acl_hi << 32, i_block=i_block, ibody_xattrs=ibody,
        )

    # -- xattrs --

    def _xattrs(self, inode: _Inode) -> Iterator[tuple[bytes, bytes]]:
        if inode.ibody_xattrs:
            body = inode.ibody_xattrs
            # In-inode value offsets count from the first entry, just after the magic.
            for entry in parse_xattr_entries(body, 0):
                yield entry.name, self._xattr_value(entry, body, 0)
        if inode.file_acl:
            block = self._block(inode.file_acl)
            magic, _refs, nblocks = struct.unpack_from("<III", block, 0)
            if magic != XATTR_MAGIC or nblocks != 1:
                raise CorruptError(f"bad xattr block {inode.file_acl}")
            # Block value offsets count from the start of the block.
            for entry in parse_xattr_entries(block, 32):
                yield entry.name, self._xattr_value(entry, block, 0)

    def _xattr_value(self, entry: XattrEntry, buf: bytes, base: int) -> bytes:
        if entry.value_inum:
            # ea_inode: a large value kept as the contents of a dedicated inode.
            holder = self._inode(entry.value_inum)
            if not holder.flags & EA_INODE_FL or holder.size != entry.value_size:
                raise CorruptError(f"bad xattr value inode {entry.value_inum}")
            return self._read_data(holder, None)
        start = base + entry.value_offset
        if start + entry.value_size > len(buf):
            raise CorruptError(f"xattr {entry.name!r} value runs past its area")
        return bytes(buf[start:start + entry.value_size])

    # -- file data --

    def _inline_data(self, inode: _Inode) -> bytes:
        """Inline data: the 60 bytes of i_block, continued in the "system.data" xattr."""
        rest = b""
        for entry in parse_xattr_entries(inode.ibody_xattrs, 0):
            if entry.name == b"system.data":
                rest = self._xattr_value(entry, inode.ibody_xattrs, 0)
                break
        return inode.i_block + rest

    def _extent_runs(self, inode: _Inode, nblocks: int) -> list[_Run]:
        runs: list[_Run] = []
        seen: set[int] = set()

        def walk(node: bytes, depth_expected: int | None) -> None:
            magic, entries, max_entries, depth, _gen = _EXTENT_HEADER.unpack_from(node, 0)
            if magic != EXTENT_MAGIC:
                raise CorruptError(f"bad extent header magic 0x{magic:04x} in inode "
                                    f"{inode.ino}")
            if depth > EXTENT_MAX_DEPTH or (depth_expected is not None
                                            and depth != depth_expected):
                raise CorruptError(f"bad extent tree depth {depth} in inode {inode.ino}")
            if entries > max_entries or 12 + 12 * entries > len(node):
                raise CorruptError(f"bad extent count {entries} in inode {inode.ino}")
            for i in range(entries):
                at = 12 + 12 * i
                if depth == 0:
                    lblk, length, hi, lo = _EXTENT.unpack_from(node, at)
                    uninit = length > _EXT_INIT_MAX_LEN
                    if uninit:
                        length -= _EXT_INIT_MAX_LEN
                    if length and lblk < nblocks:
                        runs.append((lblk, hi << 32 | lo, length, uninit))
                else:
                    lblk, lo, hi, _ = _EXTENT_INDEX.unpack_from(node, at)
                    if lblk >= nblocks:
                        break
                    child = hi << 32 | lo
                    if child in seen:
                        raise CorruptError(f"extent tree of inode {inode.ino} has a loop")
                    seen.add(child)
                    walk(self._block(child), depth - 1)

        walk(inode.i_block, None)
        return runs

    def _blockmap_runs(self, inode: _Inode, nblocks: int) -> list[_Run]:
        pointers = struct.unpack("<15I", inode.i_block)
        per = self._bs // 4
        pairs: list[tuple[int, int]] = [(i, pointers[i]) for i in range(min(12, nblocks))
                                        if pointers[i]]
        seen: set[int] = set()

        def walk(block: int, level: int, base: int) -> None:
            if block in seen:
                raise CorruptError(f"block map of inode {inode.ino} has a loop")
            seen.add(block)
            span = per ** (level - 1)
            for i, ptr in enumerate(struct.unpack(f"<{per}I", self._block(block))):
                lblk = base + i * span
                if lblk >= nblocks:
                    break
                if not ptr:
                    continue
                if level == 1:
                    pairs.append((lblk, ptr))
                else:
                    walk(ptr, level - 1, lblk)

        base = 12
        for level in (1, 2, 3):  # indirect, double indirect, triple indirect
            if base >= nblocks:
                break
            if pointers[11 + level]:
                walk(pointers[11 + level], level, base)
            base += per ** level
        return [(lb, pb, n, False) for lb, pb, n in coalesce(pairs)]

    def _read_data(self, inode: _Inode, limit: int | None) -> bytes:
        if inode.flags & ENCRYPT_FL:
            raise UnsupportedError(f"inode {inode.ino} is encrypted")
        want = inode.size if limit is None else min(inode.size, max(limit, 0))
        if inode.flags & INLINE_DATA_FL:
            data = self._inline_data(inode)
            if len(data) < want:
                raise CorruptError(f"inline data of inode {inode.ino} is shorter than its size")
            return data[:want]
        bs = self._bs
        if inode.flags & EXTENTS_FL:
            max_blocks = 1 << 32
        else:
            per = bs // 4
            max_blocks = 12 + per + per**2 + per**3
        if inode.size > max_blocks * bs:
            raise CorruptError(f"inode {inode.ino} claims an impossible size {inode.size}")
        nblocks = -(-want // bs)
        if inode.flags & EXTENTS_FL:
            runs = self._extent_runs(inode, nblocks)
        else:
            runs = self._blockmap_runs(inode, nblocks)
        out = bytearray(want)  # holes and unwritten extents read as zeros
        for lblk, pblk, count, uninit in runs:
            if uninit:
                continue
            used = min(count, nblocks - lblk)
            self._check_blocks(pblk, used)
            start = lblk * bs
            n = min(used * bs, want - start)
            out[start:start + n] = self._pread(pblk * bs, n)
        return bytes(out)

    # -- directories and symlinks --

    def _entries(self, inode: _Inode) -> dict[str, int]:
        hit = self._dir_cache.get(inode.ino)
        if hit is not None:
            return hit
        if inode.flags & ENCRYPT_FL:
            raise UnsupportedError(f"directory inode {inode.ino} is encrypted")
        if inode.flags & INLINE_DATA_FL:
            # An inline directory: the parent's inode number, then entries filling the rest
            # of i_block, then more entries in the "system.data" xattr.
            data = self._inline_data(inode)
            regions = [data[4:_I_BLOCK_SIZE], data[_I_BLOCK_SIZE:]]
        else:
            data = self._read_data(inode, None)
            regions = [data[i:i + self._bs] for i in range(0, len(data), self._bs)]
        entries: dict[str, int] = {}
        for region in regions:
            for name, ino in parse_dirents(region, self._bs, self._filetype):
                entries[os.fsdecode(name)] = ino
        return self._dir_cache.put(inode.ino, entries)

    def _symlink_target(self, inode: _Inode) -> bytes:
        if inode.size > _MAX_SYMLINK:
            raise CorruptError(f"symlink inode {inode.ino} claims {inode.size} bytes")
        if inode.flags & INLINE_DATA_FL:
            return self._read_data(inode, None)
        ea_blocks = self.superblock.cluster_size // 512 if inode.file_acl else 0
        if not inode.flags & EA_INODE_FL and inode.blocks512 - ea_blocks == 0:
            # A "fast" symlink: the target is stored in i_block itself.
            if inode.size > _I_BLOCK_SIZE:
                raise CorruptError(f"fast symlink inode {inode.ino} claims {inode.size} bytes")
            return inode.i_block[:inode.size]
        return self._read_data(inode, None)

    # -- FileBackedFS --

    def _root(self) -> _Inode:
        return self._inode(ROOT_INO)

    def _child(self, directory: _Inode, name: str) -> _Inode | None:
        ino = self._entries(directory).get(name)
        return None if ino is None else self._inode(ino)

    def _link_target(self, link: _Inode) -> str:
        return os.fsdecode(self._symlink_target(link))

    def _names(self, directory: _Inode) -> list[str]:
        return list(self._entries(directory))

    def _contents(self, regular: _Inode, limit: int | None) -> bytes:
        return self._read_data(regular, limit)

    def _xattr(self, node: _Inode, name: str) -> bytes | None:
        wanted = os.fsencode(name)
        if wanted == b"system.data":  # inline-data storage, not an attribute (kernel hides it)
            return None
        for full, value in self._xattrs(node):
            if full == wanted:
                return value
        return None
