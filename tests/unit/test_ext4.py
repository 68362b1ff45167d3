"""Ext4FS against ext2/3/4 images built by `mkfs.ext* -d` from a tree made in tmp_path, some
then altered with e2fsck/debugfs/tune2fs (all on image files, no root needed)."""

from __future__ import annotations

import contextlib
import errno
import os
import random
import re
import shutil
import stat
import struct
from pathlib import Path

import pytest

from strata.errors import ErrorKind, StrataError
from strata.images.base import FileKind
from strata.images.ext4 import (
    COMPAT_SPARSE_SUPER2,
    INCOMPAT_64BIT,
    INCOMPAT_META_BG,
    RO_COMPAT_SPARSE_SUPER,
    Ext4FS,
    Ext4Superblock,
    coalesce,
    decode_rec_len,
    descriptor_position,
    group_has_super,
    parse_dirents,
    parse_superblock,
    parse_xattr_entries,
)
from strata.run import run
from tests.unit.imagetree import (
    LONG_TARGET,
    REL,
    RELEASE,
    assert_one_line,
    assert_readable_at_offset,
    assert_same_tree,
    build_tree,
    count_failures,
    damage,
    needs,
    open_fails,
)
from tests.unit.imagetree import mkfs_ext as mkfs

pytestmark = needs("mkfs.ext4", "debugfs", "e2fsck")

NOT_IN_SOURCE = frozenset({"lost+found"})


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tree(tmp_path_factory.mktemp("exttree") / "root")


def match(pattern: str, text: str) -> str:
    """The first group of `pattern` in `text` (which must match)."""
    found = re.search(pattern, text)
    assert found is not None, (pattern, text)
    return found[1]


def debugfs(image: Path, *commands: str, write: bool = False) -> str:
    script = image.with_suffix(".cmds")
    script.write_text("\n".join(commands) + "\n")
    out = run(["debugfs", *(["-w"] if write else []), "-f", str(script), str(image)])
    return out.stdout.decode(errors="replace")


VARIANTS = [
    ("ext4", ("-b", "4096"), "8M"),
    ("ext4", ("-b", "1024"), "8M"),
    ("ext4", ("-I", "128"), "8M"),  # no room in the inode: xattrs in an external block
    ("ext4", ("-O", "inline_data"), "8M"),
    ("ext4", ("-O", "^extent,^64bit"), "8M"),  # ext4 with block maps
    ("ext2", (), "8M"),
    ("ext2", ("-b", "1024", "-O", "^filetype"), "8M"),  # 16-bit name lengths
    ("ext3", ("-b", "2048"), "8M"),
    # 64-bit descriptors and meta_bg with more groups than one descriptor block holds
    ("ext4", ("-b", "1024", "-g", "1024", "-N", "768", "-O", "meta_bg,^resize_inode,64bit"),
     "32M"),
]


@pytest.mark.parametrize(("kind", "args", "size"), VARIANTS,
                         ids=[f"{k}{''.join(a)}" for k, a, _ in VARIANTS])
def test_tree_round_trip(tree: Path, tmp_path: Path, kind: str, args: tuple[str, ...],
                         size: str) -> None:
    image = mkfs(tree, tmp_path / "img.ext", *args, kind=kind, size=size)
    with Ext4FS(str(image)) as fs:
        assert assert_same_tree(fs, tree, ignore=NOT_IN_SOURCE) > 500
        assert fs.read(REL) == RELEASE
        assert fs.lstat("/usr/bin/tool").mode == stat.S_IFREG | 0o4755
        assert fs.getxattr(REL, "user.extension-release.strict") == b"1"
        assert fs.readlink("/usr/share/long-link") == LONG_TARGET
        if os.geteuid() == 0:
            assert (fs.lstat("/data/random").uid, fs.lstat("/data/random").gid) == (
                100_000, 200_000)


def test_meta_bg_reaches_later_descriptor_blocks(tree: Path, tmp_path: Path) -> None:
    image = mkfs(tree, tmp_path / "mb.ext", "-b", "1024", "-g", "1024", "-N", "768",
                 "-O", "meta_bg,^resize_inode,64bit", size="32M")
    with contextlib.closing(Ext4FS(str(image))) as fs:
        sb = fs.superblock
        per_block = sb.block_size // sb.desc_size
        assert sb.feature_incompat & INCOMPAT_META_BG and sb.groups > per_block
        ino = int(match(r"Inode: (\d+)", debugfs(image, "stat /many/entry-499")))
        assert (ino - 1) // sb.inodes_per_group >= per_block  # in the second meta group
        assert fs.read("/many/entry-497") == b"497\n"


@pytest.fixture(scope="module")
def image(tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return mkfs(tree, tmp_path_factory.mktemp("extimg") / "img.ext4")


@pytest.fixture
def fs(image: Path) -> Ext4FS:
    return Ext4FS(str(image))


def test_symlinks(fs: Ext4FS, image: Path) -> None:
    assert "Fast link dest" in debugfs(image, "stat /usr/lib/abs-link")
    assert "Fast link dest" not in debugfs(image, "stat /usr/share/long-link")
    assert fs.readlink("/usr/lib/abs-link") == "/usr/lib/extension-release.d"
    assert fs.readlink("/usr/share/long-link") == LONG_TARGET
    assert fs.lstat("/usr/share/rel-link").kind is FileKind.SYMLINK
    assert fs.read("/usr/lib/abs-link/extension-release.foo") == RELEASE
    assert fs.resolve("/usr/share/rel-link") == REL
    assert fs.read("/usr/lib/abs-link/../../bin/../lib/extension-release.d/"
                   "extension-release.foo") == RELEASE
    with pytest.raises(StrataError) as exc:
        fs.listdir("/usr/lib/abs-link")
    assert exc.value.errno == errno.ENOTDIR
    with pytest.raises(StrataError) as exc:
        fs.read("/loop/a/x")
    assert exc.value.errno == errno.ELOOP


@pytest.mark.parametrize("path", ["/nope", "/usr/nope/x", "/data/random/x", "/loop/zz"])
def test_missing_paths(fs: Ext4FS, path: str) -> None:
    with pytest.raises(StrataError) as exc:
        fs.getxattr(path, "user.x")
    assert exc.value.kind is ErrorKind.NOT_FOUND
    assert exc.value.errno == errno.ENOENT
    assert path in str(exc.value)
    assert not fs.exists(path)


def test_wrong_kinds_and_limits(fs: Ext4FS, tree: Path) -> None:
    with pytest.raises(StrataError) as exc:
        fs.read("/usr")
    assert exc.value.kind is ErrorKind.INVALID
    with pytest.raises(StrataError) as exc:
        fs.readlink(REL)
    assert exc.value.errno == errno.EINVAL
    text = (tree / "data/text").read_bytes()
    assert fs.read("/data/text", limit=5000) == text[:5000]
    assert fs.read("/data/text", limit=0) == b""
    assert fs.read("/data/sparse", limit=4) == b"head"
    assert fs.lstat("/data/sparse").size == 3 * 1024 * 1024 + 4
    assert stat.S_ISSOCK(fs.lstat("/sock").mode) == (tree / "sock").exists()
    assert stat.S_ISFIFO(fs.lstat("/fifo").mode)
    assert fs.getxattr("/data/text", "system.data") is None


def test_htree_directory(tree: Path, tmp_path: Path) -> None:
    image = mkfs(tree, tmp_path / "htree.ext4", "-b", "1024")
    run(["e2fsck", "-fyD", str(image)], check=False)  # -D builds hashed indexes
    flags = int(match(r"Flags: (0x[0-9a-f]+)", debugfs(image, "stat /many")), 16)
    assert flags & 0x1000  # EXT4_INDEX_FL: an htree directory
    with Ext4FS(str(image)) as fs:
        assert sorted(fs.listdir("/many")) == sorted(os.listdir(tree / "many"))
        assert fs.read("/many/entry-497") == b"497\n"
        assert fs.read("/many/entry-498") == b""


def test_deep_extent_tree(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    with open(src / "frag", "wb") as f:  # 400 data runs separated by holes: 400 extents
        for i in range(400):
            f.seek(i * 2048)
            f.write(bytes([i % 251 + 1]) * 1024)
    image = mkfs(src, tmp_path / "deep.ext4", "-b", "1024", size="4M")
    assert " 2/ 2 " in debugfs(image, "ex /frag")  # depth 2: root -> index -> leaves
    with Ext4FS(str(image)) as fs:
        assert fs.read("/frag") == (src / "frag").read_bytes()
        assert fs.read("/frag", limit=100_000) == (src / "frag").read_bytes()[:100_000]


def test_triple_indirect_block_map(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    with open(src / "far", "wb") as f:  # beyond 12 + 256 + 256**2 one-KiB blocks
        f.write(b"near")
        f.seek(70 * 1024 * 1024)
        f.write(b"far away")
    image = mkfs(src, tmp_path / "far.ext2", "-b", "1024", kind="ext2")
    assert "(TIND)" in debugfs(image, "stat /far")
    with Ext4FS(str(image)) as fs:
        data = fs.read("/far")
        assert data[:4] == b"near" and data[-8:] == b"far away"
        assert data == (src / "far").read_bytes()


def test_inline_data(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "dir").mkdir(parents=True)
    (src / "tiny").write_bytes(b"t" * 40)
    (src / "small").write_bytes(b"0123456789" * 10)  # past i_block, into system.data
    for name in ("a", "bb", "ccc"):  # libext2fs keeps a directory inline only within i_block
        (src / "dir" / name).write_bytes(name.encode())
    image = mkfs(src, tmp_path / "inline.ext4", "-O", "inline_data")
    assert "Size of inline data: 100" in debugfs(image, "stat /small")
    assert "Size of inline data" in debugfs(image, "stat /dir")
    with Ext4FS(str(image)) as fs:
        assert fs.read("/tiny") == b"t" * 40
        assert fs.read("/small") == (src / "small").read_bytes()
        assert fs.read("/small", limit=70) == (src / "small").read_bytes()[:70]
        assert sorted(fs.listdir("/dir")) == sorted(os.listdir(src / "dir"))
        for name in os.listdir(src / "dir"):
            assert fs.read(f"/dir/{name}") == name.encode()


def test_external_xattr_block_and_ea_inode(tree: Path, tmp_path: Path) -> None:
    image = mkfs(tree, tmp_path / "xattr.ext4", "-I", "128", "-b", "1024")
    assert not re.search(r"File ACL: 0\b", debugfs(image, f"stat {REL}"))
    run(["tune2fs", "-O", "ea_inode", str(image)])
    big = random.Random(3).randbytes(1024)  # debugfs ea_set -f stores at most 1 KiB
    (tmp_path / "big.val").write_bytes(big)
    debugfs(image, f"ea_set -f {tmp_path / 'big.val'} /data/empty user.big", write=True)
    with Ext4FS(str(image)) as fs:
        assert fs.getxattr(REL, "user.extension-release.strict") == b"1"
        assert fs.getxattr("/data/text", "user.empty") == b""
        assert fs.getxattr("/data/empty", "user.big") == big


def test_device_nodes(image: Path, tmp_path: Path) -> None:
    copy = tmp_path / "dev.ext4"
    shutil.copy(image, copy)
    debugfs(copy, "mkdir /dev", "cd /dev", "mknod null c 1 3", "mknod sda b 8 0", write=True)
    with Ext4FS(str(copy)) as fs:
        assert sorted(fs.listdir("/dev")) == ["null", "sda"]
        assert stat.S_ISCHR(fs.lstat("/dev/null").mode)
        assert stat.S_ISBLK(fs.lstat("/dev/sda").mode)


def test_encrypted_inode_is_unsupported(image: Path, tmp_path: Path) -> None:
    copy = tmp_path / "enc.ext4"
    shutil.copy(image, copy)
    debugfs(copy, "set_inode_field /data/random flags 0x80800", write=True)
    with Ext4FS(str(copy)) as fs:
        with pytest.raises(StrataError) as exc:
            fs.read("/data/random")
        assert exc.value.kind is ErrorKind.UNSUPPORTED
        assert "/data/random" in str(exc.value)


def test_at_offset(image: Path, tree: Path, tmp_path: Path) -> None:
    disk = tmp_path / "disk.raw"
    size = assert_readable_at_offset(Ext4FS, image, tree, disk, padding=8192)
    with pytest.raises(StrataError) as exc:
        Ext4FS(str(disk), offset=1 << 20, size=size - 4096)
    assert_one_line(exc.value, disk)
    assert "truncated" in str(exc.value)


def test_truncated(image: Path, tmp_path: Path) -> None:
    bad = tmp_path / "truncated.ext4"
    bad.write_bytes(image.read_bytes()[: image.stat().st_size // 2])
    assert "truncated" in str(open_fails(Ext4FS, bad))


def test_flipped_magic(image: Path, tmp_path: Path) -> None:
    raw = bytearray(image.read_bytes())
    raw[1024 + 0x38] ^= 0xFF
    bad = tmp_path / "magic.ext4"
    bad.write_bytes(raw)
    assert "magic" in str(open_fails(Ext4FS, bad))


def test_unknown_incompat_feature(image: Path, tmp_path: Path) -> None:
    raw = bytearray(image.read_bytes())
    (incompat,) = struct.unpack_from("<I", raw, 1024 + 0x60)
    struct.pack_into("<I", raw, 1024 + 0x60, incompat | 0x1000)  # dirdata
    bad = tmp_path / "dirdata.ext4"
    bad.write_bytes(raw)
    assert "0x1000" in str(open_fails(Ext4FS, bad, ErrorKind.UNSUPPORTED))


@pytest.mark.parametrize("content", [b"", bytes(2048), random.Random(1).randbytes(1 << 16)],
                         ids=["empty", "zeros", "garbage"])
def test_garbage(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "garbage.img"
    bad.write_bytes(content)
    open_fails(Ext4FS, bad)


def test_missing_image(tmp_path: Path) -> None:
    open_fails(Ext4FS, tmp_path / "nope.img", ErrorKind.NOT_FOUND)


@pytest.mark.parametrize("features", ["^inline_data", "inline_data"])
def test_corrupted_metadata_gives_only_strata_errors(tmp_path: Path, features: str) -> None:
    """Random damage to the inode table and directory blocks surfaces as one-line
    StrataErrors (or goes unnoticed), never as IndexError/struct.error/..."""
    src = tmp_path / "src"
    (src / "d/e").mkdir(parents=True)
    for i in range(30):
        (src / "d" / f"f{i}").write_bytes(b"x" * (i * 37))
    (src / "d/e/link").symlink_to("../f3")
    (src / "d/e/long").symlink_to("x" * 100)
    (src / "big").write_bytes(random.Random(5).randbytes(50_000))
    os.setxattr(src / "big", "user.x", b"y" * 40)
    image = mkfs(src, tmp_path / "small.ext4", "-b", "1024", "-N", "64", "-O", features,
                 size="1M")
    pristine = image.read_bytes()
    info = run(["dumpe2fs", str(image)]).stdout.decode()
    # the inodes in use, and the blocks after the inode table where mkfs put the directories
    first = int(match(r"Inode table at (\d+)-", info))
    last = int(match(r"Inode table at \d+-(\d+)", info))
    used_inodes = range(first * 1024, first * 1024 + 40 * 256)
    dir_blocks = range((last + 1) * 1024, (last + 12) * 1024)
    rng = random.Random(11)
    damaged = (damage(pristine, lambda r: r.choice(r.choice((used_inodes, dir_blocks))), rng, 6)
               for _ in range(200))
    failures = count_failures(Ext4FS, damaged, tmp_path / "bad.ext4", "user.x", frozenset(
        {ErrorKind.INVALID, ErrorKind.NOT_FOUND, ErrorKind.UNSUPPORTED}))
    assert failures > 10


def _populate_with_kernel(image: str, mnt: str, tree: str) -> None:
    run(["mount", "-o", "loop", image, mnt])
    try:
        run(["cp", "-a", f"{tree}/.", mnt])
        inline = Path(mnt) / "inline-dir"
        inline.mkdir()
        for i in range(6):  # more than fits in i_block: the kernel continues in system.data
            (inline / f"file-{i}").write_bytes(f"{i}".encode())
    finally:
        run(["umount", mnt])


@pytest.mark.privileged
def test_kernel_written_image(tree: Path, tmp_path: Path) -> None:
    """The kernel lays things out differently from libext2fs: it builds htree indexes as a
    directory grows, spills inline directories into system.data, allocates its own extents."""
    with open("/proc/filesystems") as f:
        if "ext4" not in f.read().split():
            pytest.skip("the kernel lacks ext4")
    from strata.kernel.ns import run_isolated

    image = tmp_path / "kernel.ext4"
    run(["mkfs.ext4", "-q", "-F", "-O", "inline_data", str(image), "16M"])
    (tmp_path / "mnt").mkdir()
    run_isolated(_populate_with_kernel, str(image), str(tmp_path / "mnt"), str(tree))
    flags = int(match(r"Flags: (0x[0-9a-f]+)", debugfs(image, "stat /many")), 16)
    assert flags & 0x1000  # htree
    assert "system.data" in debugfs(image, "stat /inline-dir")
    with Ext4FS(str(image)) as fs:
        assert assert_same_tree(fs, tree, ignore=NOT_IN_SOURCE | {"inline-dir"}) > 500
        assert sorted(fs.listdir("/inline-dir")) == [f"file-{i}" for i in range(6)]
        assert fs.read("/inline-dir/file-5") == b"5"


# --- pure functions -------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "bs", "expected"), [
    (12, 4096, 12),
    (4096, 4096, 4096),
    (65535, 65536, 65536),
    (0, 65536, 65536),
    (12, 65536, 12),
    (0xFFFC | 1, 65536, 0xFFFC | 0x10000),
])
def test_decode_rec_len(raw: int, bs: int, expected: int) -> None:
    assert decode_rec_len(raw, bs) == expected


def _dirent(ino: int, name: bytes, rec_len: int, ftype: int = 1) -> bytes:
    return struct.pack("<IHBB", ino, rec_len, len(name), ftype) + name.ljust(rec_len - 8, b"\0")


@pytest.mark.parametrize(("buf", "expected"), [
    (_dirent(2, b".", 12) + _dirent(2, b"..", 12) + _dirent(12, b"file", 40), [(b"file", 12)]),
    (_dirent(0, b"", 64), []),  # an htree node / empty block
    (_dirent(13, b"a", 12) + _dirent(0, b"gone", 16) + _dirent(14, b"b", 36),
     [(b"a", 13), (b"b", 14)]),
    (_dirent(13, b"a", 52) + struct.pack("<IHBB", 0, 12, 0, 0xDE) + bytes(4),  # csum tail
     [(b"a", 13)]),
])
def test_parse_dirents(buf: bytes, expected: list[tuple[bytes, int]]) -> None:
    assert parse_dirents(buf, 4096, True) == expected


@pytest.mark.parametrize("buf", [
    _dirent(12, b"file", 16)[:-8] + bytes(2),  # header runs past the end
    _dirent(12, b"file", 6) + bytes(10),  # rec_len below the minimum
    _dirent(12, b"file", 14) + bytes(2),  # rec_len not a multiple of 4
    _dirent(12, b"file", 40)[:20],  # rec_len past the end
    _dirent(12, b"a/b", 12),  # slash in name
    struct.pack("<IHBB", 12, 12, 9, 1) + b"abcd",  # name longer than the record
])
def test_parse_dirents_rejects(buf: bytes) -> None:
    with pytest.raises(ValueError):
        parse_dirents(buf, 4096, True)


def test_parse_dirents_without_filetype() -> None:
    # Without the filetype feature the name length is 16 bits: the "type" byte is its high part
    name = b"n" * 260
    buf = struct.pack("<IHBB", 5, 8 + 260, 260 & 0xFF, 260 >> 8) + name
    assert parse_dirents(buf, 4096, False) == [(name, 5)]


def _sb(**kw: int) -> Ext4Superblock:
    base: dict[str, object] = {
        "inodes_count": 1024, "blocks_count": 65536, "first_data_block": 1, "block_size": 1024,
        "cluster_size": 1024, "blocks_per_group": 1024, "inodes_per_group": 16,
        "inode_size": 256, "desc_size": 32, "feature_compat": 0, "feature_incompat": 0,
        "feature_ro_compat": RO_COMPAT_SPARSE_SUPER, "first_meta_bg": 0, "backup_bgs": (0, 0),
        "uuid": bytes(16), "volume_name": "",
    }
    base.update(kw)
    return Ext4Superblock(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(("group", "expected"), [
    (0, True), (1, True), (2, False), (3, True), (5, True), (7, True), (9, True), (25, True),
    (27, True), (49, True), (15, False), (21, False), (125, True), (343, True), (4, False),
])
def test_group_has_super_sparse(group: int, expected: bool) -> None:
    assert group_has_super(group, _sb()) is expected


def test_group_has_super_variants() -> None:
    dense = _sb(feature_ro_compat=0)
    assert all(group_has_super(g, dense) for g in range(10))
    sparse2 = _sb(feature_compat=COMPAT_SPARSE_SUPER2, backup_bgs=(1, 60))  # type: ignore[arg-type]
    assert [g for g in range(64) if group_has_super(g, sparse2)] == [0, 1, 60]


@pytest.mark.parametrize(("group", "kw", "block", "index"), [
    (0, {}, 2, 0),
    (31, {}, 2, 31),
    (32, {}, 3, 0),  # 32 descriptors of 32 bytes per 1 KiB block
    (5, {"block_size": 4096, "first_data_block": 0, "blocks_per_group": 32768}, 1, 5),
    # meta_bg from the first descriptor block on, 64-byte descriptors: 16 per block
    (16, {"feature_incompat": INCOMPAT_META_BG | INCOMPAT_64BIT, "desc_size": 64},
     1 + 16 * 1024, 0),
    (17, {"feature_incompat": INCOMPAT_META_BG | INCOMPAT_64BIT, "desc_size": 64},
     1 + 16 * 1024, 1),
    (48, {"feature_incompat": INCOMPAT_META_BG | INCOMPAT_64BIT, "desc_size": 64},
     1 + 48 * 1024, 0),  # group 48 holds no superblock backup
    (3, {"feature_incompat": INCOMPAT_META_BG | INCOMPAT_64BIT, "desc_size": 64,
         "first_meta_bg": 1}, 2, 3),  # before first_meta_bg: the classic table
])
def test_descriptor_position(group: int, kw: dict[str, int], block: int, index: int) -> None:
    sb = _sb(**kw)
    if group in (16, 17):  # group 16 is not 1 or a power of 3, 5, 7: no superblock backup
        assert not group_has_super(16, sb)
    assert descriptor_position(group, sb) == block * sb.block_size + index * sb.desc_size


@pytest.mark.parametrize(("pairs", "runs"), [
    ([], []),
    ([(0, 100)], [(0, 100, 1)]),
    ([(0, 100), (1, 101), (2, 102)], [(0, 100, 3)]),
    ([(0, 100), (1, 200), (2, 201)], [(0, 100, 1), (1, 200, 2)]),
    ([(0, 100), (2, 102)], [(0, 100, 1), (2, 102, 1)]),  # a hole breaks the run
])
def test_coalesce(pairs: list[tuple[int, int]], runs: list[tuple[int, int, int]]) -> None:
    assert coalesce(pairs) == runs


def _xentry(index: int, name: bytes, voff: int, vsize: int, vinum: int = 0) -> bytes:
    raw = struct.pack("<BBHIII", len(name), index, voff, vinum, vsize, 0) + name
    return raw.ljust((len(raw) + 3) & ~3, b"\0")


def test_parse_xattr_entries() -> None:
    buf = (_xentry(1, b"foo", 200, 3) + _xentry(6, b"selinux", 210, 20)
           + _xentry(7, b"data", 0, 0) + _xentry(2, b"", 230, 28) + _xentry(99, b"odd", 0, 1)
           + _xentry(1, b"big", 0, 9000, vinum=77) + bytes(4) + _xentry(1, b"after-end", 0, 1))
    entries = parse_xattr_entries(buf, 0)
    assert [e.name for e in entries] == [b"user.foo", b"security.selinux", b"system.data",
                                         b"system.posix_acl_access", b"user.big"]
    assert (entries[0].value_offset, entries[0].value_size) == (200, 3)
    assert entries[-1].value_inum == 77
    with pytest.raises(ValueError):
        parse_xattr_entries(_xentry(1, b"foo", 0, 1)[:10], 0)


def _raw_superblock(**fields: int) -> bytes:
    raw = bytearray(1024)
    values = {"inodes": 64, "blocks": 1024, "first": 1, "log": 0, "bpg": 8192, "ipg": 64,
              "magic": 0xEF53, "rev": 1, "isize": 256, "incompat": 0, "desc": 0}
    values.update(fields)
    struct.pack_into("<II", raw, 0, values["inodes"], values["blocks"])
    struct.pack_into("<III", raw, 0x14, values["first"], values["log"], values["log"])
    struct.pack_into("<I", raw, 0x20, values["bpg"])
    struct.pack_into("<I", raw, 0x28, values["ipg"])
    struct.pack_into("<H", raw, 0x38, values["magic"])
    struct.pack_into("<I", raw, 0x4C, values["rev"])
    struct.pack_into("<H", raw, 0x58, values["isize"])
    struct.pack_into("<I", raw, 0x60, values["incompat"])
    struct.pack_into("<H", raw, 0xFE, values["desc"])
    return bytes(raw)


@pytest.mark.parametrize(("fields", "reason"), [
    ({"magic": 0x1234}, "bad magic"),
    ({"log": 7}, "block size"),
    ({"isize": 100}, "inode size"),
    ({"isize": 384}, "inode size"),
    ({"isize": 2048}, "inode size"),
    ({"incompat": INCOMPAT_64BIT, "desc": 32}, "descriptor size"),
    ({"ipg": 0}, "per group"),
    ({"first": 5000}, "first data block"),
    ({"inodes": 1_000_000}, "do not fit"),
])
def test_parse_superblock_rejects(fields: dict[str, int], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_superblock(_raw_superblock(**fields))


def test_parse_superblock_accepts() -> None:
    sb = parse_superblock(_raw_superblock())
    assert (sb.block_size, sb.inode_size, sb.desc_size, sb.groups) == (1024, 256, 32, 1)
    old = parse_superblock(_raw_superblock(rev=0, isize=0))  # revision 0: 128-byte inodes
    assert old.inode_size == 128
    wide = parse_superblock(_raw_superblock(incompat=INCOMPAT_64BIT, desc=64, log=2))
    assert (wide.block_size, wide.desc_size) == (4096, 64)
