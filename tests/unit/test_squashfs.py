"""SquashfsFS against images built by mksquashfs from a tree made in tmp_path (no root needed;
as root the tree also gets distinct owners so uid/gid mapping is checked)."""

from __future__ import annotations

import errno
import os
import random
import shutil
import stat
import struct
import sys
from pathlib import Path

import pytest

from strata.errors import ErrorKind, StrataError
from strata.images.base import FileKind
from strata.images.squashfs import (
    Compression,
    SquashfsFS,
    block_count,
    parse_superblock,
    xattr_name,
)
from tests.unit.imagetree import (
    LONG_TARGET,
    REL,
    RELEASE,
    SHARED_VALUE,
    assert_readable_at_offset,
    assert_same_tree,
    build_tree,
    count_failures,
    damage,
    mksquashfs,
    needs,
    open_fails,
)

pytestmark = needs("mksquashfs")

@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tree(tmp_path_factory.mktemp("sqtree") / "root")


def lzo_available() -> bool:
    try:
        import lzo  # type: ignore[import-not-found, unused-ignore]  # noqa: F401
    except ImportError:
        return False
    return True


VARIANTS = [
    ("gzip", ()),
    ("gzip", ("-no-fragments",)),
    ("gzip", ("-always-use-fragments", "-b", "4096")),
    ("gzip", ("-Xwindow-size", "9")),
    ("xz", ()),
    ("xz", ("-always-use-fragments",)),
    ("lzma", ()),
    ("lz4", ()),
    ("lz4", ("-Xhc", "-no-fragments")),
    ("zstd", ()),
    ("zstd", ("-always-use-fragments", "-b", "1M")),
    ("gzip", ("-noI", "-noD", "-noF", "-noX")),  # every block stored uncompressed
    ("lzo", ()),
]


@pytest.mark.parametrize(("comp", "extra"), VARIANTS,
                         ids=[f"{c}{''.join(e)}" for c, e in VARIANTS])
def test_tree_round_trip(tree: Path, tmp_path: Path, comp: str, extra: tuple[str, ...]) -> None:
    image = mksquashfs(tree, tmp_path / "img.squashfs", "-comp", comp, *extra)
    if comp == "lzo" and not lzo_available():
        assert "lzo" in str(open_fails(SquashfsFS, image, ErrorKind.UNSUPPORTED))
        return
    with SquashfsFS(str(image)) as fs:
        assert isinstance(fs, SquashfsFS)
        assert fs.superblock.compression is Compression[comp.upper()]
        assert assert_same_tree(fs, tree) > 500


@pytest.fixture(scope="module")
def image(tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("sqimg")
    return mksquashfs(tree, d / "img.squashfs", "-comp", "zstd")


@pytest.fixture
def fs(image: Path) -> SquashfsFS:
    return SquashfsFS(str(image))


def test_specific_entries(fs: SquashfsFS, tree: Path) -> None:
    assert fs.read(REL) == RELEASE
    assert fs.getxattr(REL, "user.extension-release.strict") == b"1"
    assert fs.getxattr("/usr/lib/extension-release.d", "user.dir-attr") == b"on a directory"
    assert fs.getxattr("/data/random", "user.shared") == SHARED_VALUE
    assert fs.getxattr("/data/text", "user.shared") == SHARED_VALUE  # out-of-line copy
    assert fs.getxattr("/data/text", "user.empty") == b""
    assert fs.lstat("/usr/bin/tool").mode == stat.S_IFREG | 0o4755
    assert fs.readlink("/usr/lib/abs-link") == "/usr/lib/extension-release.d"
    assert fs.readlink("/usr/share/long-link") == LONG_TARGET
    assert stat.S_ISFIFO(fs.lstat("/fifo").mode)
    assert fs.read("/data/empty") == b""
    assert fs.read("/data/sparse") == (tree / "data/sparse").read_bytes()
    assert fs.read("/data/hardlink") == fs.read("/data/random")
    assert len(fs.listdir("/many")) == 500
    if os.geteuid() == 0:
        assert (fs.lstat("/data/random").uid, fs.lstat("/data/random").gid) == (100_000, 200_000)
        assert (fs.lstat("/usr/share/rel-link").uid, fs.lstat("/usr/share/rel-link").gid) == (7, 8)


def test_symlinks_followed_only_in_the_middle(fs: SquashfsFS) -> None:
    assert fs.lstat("/usr/lib/abs-link").kind is FileKind.SYMLINK
    assert fs.read("/usr/lib/abs-link/extension-release.foo") == RELEASE  # absolute, mid-path
    assert fs.listdir("/usr/lib/abs-link/../extension-release.d") == ["extension-release.foo"]
    with pytest.raises(StrataError) as exc:
        fs.listdir("/usr/lib/abs-link")  # last component is not followed
    assert exc.value.errno == errno.ENOTDIR
    assert fs.lstat("/usr/share/rel-link").kind is FileKind.SYMLINK
    assert fs.resolve("/usr/share/rel-link") == REL
    assert fs.read("/usr/share/../lib/./extension-release.d/extension-release.foo") == RELEASE
    assert fs.read("/usr/lib/abs-link/../../../usr/bin/tool")[:4] == b"\x7fELF"
    with pytest.raises(StrataError) as exc:
        fs.read("/usr/share/rel-link")  # last component is not followed
    assert exc.value.kind is ErrorKind.INVALID
    with pytest.raises(StrataError) as exc:
        fs.lstat("/loop/a/x")
    assert exc.value.errno == errno.ELOOP


@pytest.mark.parametrize("path",
                         ["/nope", "/usr/nope/x", "/data/random/x", "/usr/share/long-link/x"])
def test_missing_paths(fs: SquashfsFS, path: str) -> None:
    with pytest.raises(StrataError) as exc:
        fs.lstat(path)
    assert exc.value.kind is ErrorKind.NOT_FOUND
    assert exc.value.errno == errno.ENOENT
    assert path in str(exc.value)
    assert not fs.exists(path)
    assert fs.exists("/usr")


def test_wrong_kinds(fs: SquashfsFS) -> None:
    with pytest.raises(StrataError) as exc:
        fs.read("/usr")
    assert exc.value.kind is ErrorKind.INVALID
    with pytest.raises(StrataError) as exc:
        fs.listdir("/data/random")
    assert exc.value.errno == errno.ENOTDIR
    with pytest.raises(StrataError) as exc:
        fs.readlink("/data/random")
    assert exc.value.errno == errno.EINVAL


def test_read_limit(fs: SquashfsFS, tree: Path) -> None:
    text = (tree / "data/text").read_bytes()
    assert fs.read("/data/text", limit=10) == text[:10]
    assert fs.read("/data/text", limit=300_000) == text[:300_000]
    assert fs.read("/data/text", limit=0) == b""
    assert fs.read("/data/text", limit=10**9) == text
    assert fs.read(REL, limit=3) == RELEASE[:3]


def test_out_of_line_xattr_value(tmp_path: Path) -> None:
    """Two files share a value but not their whole xattr list, so mksquashfs stores the value
    once and points at it from the second list."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("a", "b"):
        (src / name).write_bytes(name.encode())
        os.setxattr(src / name, "user.shared", SHARED_VALUE)
    os.setxattr(src / "b", "user.other", b"x")
    image = mksquashfs(src, tmp_path / "ool.squashfs", "-noX")  # xattr table uncompressed
    assert image.read_bytes().count(SHARED_VALUE) == 1  # really stored once
    with SquashfsFS(str(image)) as fs:
        assert fs.getxattr("/a", "user.shared") == SHARED_VALUE
        assert fs.getxattr("/b", "user.shared") == SHARED_VALUE
        assert fs.getxattr("/b", "user.other") == b"x"
        assert fs.getxattr("/a", "user.other") is None


def test_devices_from_pseudo_definitions(tree: Path, tmp_path: Path) -> None:
    image = mksquashfs(tree, tmp_path / "dev.squashfs", "-p", "dev d 755 0 0",
                       "-p", "dev/null c 666 0 0 1 3", "-p", "dev/sda b 660 0 6 8 0")
    with SquashfsFS(str(image)) as fs:
        assert fs.lstat("/dev/null").mode == stat.S_IFCHR | 0o666
        assert fs.lstat("/dev/sda").mode == stat.S_IFBLK | 0o660
        assert fs.lstat("/dev/sda").gid == 6
        assert sorted(fs.listdir("/dev")) == ["null", "sda"]


def test_at_offset(image: Path, tree: Path, tmp_path: Path) -> None:
    disk = tmp_path / "disk.raw"
    size = assert_readable_at_offset(SquashfsFS, image, tree, disk, padding=4096)
    with pytest.raises(StrataError) as exc:  # the partition is too small for the filesystem
        SquashfsFS(str(disk), offset=1 << 20, size=size // 2)
    assert exc.value.kind is ErrorKind.INVALID
    with pytest.raises(StrataError) as exc:
        SquashfsFS(str(disk), offset=size * 10)
    assert exc.value.kind is ErrorKind.INVALID


def test_truncated(image: Path, tmp_path: Path) -> None:
    bad = tmp_path / "truncated.squashfs"
    bad.write_bytes(image.read_bytes()[: image.stat().st_size // 2])
    assert "truncated" in str(open_fails(SquashfsFS, bad))


def test_flipped_magic(image: Path, tmp_path: Path) -> None:
    bad = tmp_path / "magic.squashfs"
    raw = bytearray(image.read_bytes())
    raw[0] ^= 0xFF
    bad.write_bytes(raw)
    assert "magic" in str(open_fails(SquashfsFS, bad))


@pytest.mark.parametrize("content", [b"", b"hsqs", random.Random(1).randbytes(65536)],
                         ids=["empty", "short", "garbage"])
def test_garbage(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "garbage.img"
    bad.write_bytes(content)
    open_fails(SquashfsFS, bad)


def test_missing_image(tmp_path: Path) -> None:
    open_fails(SquashfsFS, tmp_path / "nope.img", ErrorKind.NOT_FOUND)


def test_corrupted_metadata_gives_only_strata_errors(tree: Path, tmp_path: Path) -> None:
    """Random byte damage anywhere in the tables must surface as one-line StrataErrors (or, by
    luck, go unnoticed), never as IndexError/struct.error/zlib.error."""
    small = tmp_path / "small"
    shutil.copytree(tree / "usr", small / "usr", symlinks=True)
    (small / "many").mkdir()
    for i in range(40):
        (small / "many" / f"f{i}").write_bytes(b"x" * i)
    image = mksquashfs(small, tmp_path / "small.squashfs", "-comp", "gzip")
    pristine = image.read_bytes()
    sb = parse_superblock(pristine)
    rng = random.Random(7)
    damaged = (damage(pristine, lambda r: r.randrange(sb.inode_table_start, sb.bytes_used),
                      rng, 4) for _ in range(150))
    failures = count_failures(SquashfsFS, damaged, tmp_path / "bad.squashfs", "user.shared",
                              frozenset({ErrorKind.INVALID, ErrorKind.NOT_FOUND}))
    assert failures > 10  # the damage was actually noticed


def test_lzo_module_missing_is_a_clear_error(tree: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    image = mksquashfs(tree, tmp_path / "lzo.squashfs", "-comp", "lzo")
    monkeypatch.setitem(sys.modules, "lzo", None)  # makes "import lzo" raise ImportError
    assert "lzo" in str(open_fails(SquashfsFS, image, ErrorKind.UNSUPPORTED))


# --- pure functions -------------------------------------------------------------------------


@pytest.mark.parametrize(("size", "bs", "frag", "expected"), [
    (0, 4096, False, 0),
    (1, 4096, False, 1),
    (1, 4096, True, 0),
    (4096, 4096, False, 1),
    (4096, 4096, True, 1),
    (4097, 4096, False, 2),
    (4097, 4096, True, 1),
    (131072 * 3 + 5, 131072, True, 3),
])
def test_block_count(size: int, bs: int, frag: bool, expected: int) -> None:
    assert block_count(size, bs, frag) == expected


@pytest.mark.parametrize(("type_field", "name", "expected"), [
    (0, b"foo", b"user.foo"),
    (1, b"overlay.opaque", b"trusted.overlay.opaque"),
    (2, b"selinux", b"security.selinux"),
    (0x100, b"foo", b"user.foo"),  # out-of-line flag does not change the prefix
    (0x102, b"ima", b"security.ima"),
    (3, b"foo", None),
])
def test_xattr_name(type_field: int, name: bytes, expected: bytes | None) -> None:
    assert xattr_name(type_field, name) == expected


def _superblock(**overrides: int) -> bytes:
    fields = {
        "magic": 0x73717368, "inodes": 5, "mkfs_time": 0, "block_size": 131072, "fragments": 1,
        "compression": 1, "block_log": 17, "flags": 0, "no_ids": 1, "major": 4, "minor": 0,
        "root": 0, "bytes_used": 4096, "id": 4000, "xattr": 2**64 - 1, "inode": 1000,
        "dir": 2000, "frag": 3000, "lookup": 2**64 - 1,
    }
    fields.update(overrides)
    return struct.pack("<IIIIIHHHHHHQQQQQQQQ", *fields.values())


@pytest.mark.parametrize(("overrides", "reason"), [
    ({"magic": 0x68737173}, "bad magic"),
    ({"major": 3}, "version 3.0"),
    ({"block_size": 65536}, "bad block size"),
    ({"block_log": 21, "block_size": 1 << 21}, "bad block size"),
    ({"compression": 9}, "unknown compressor id 9"),
    ({"inode": 5000}, "inode table"),
    ({"dir": 900}, "directory table starts before"),
])
def test_parse_superblock_rejects(overrides: dict[str, int], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_superblock(_superblock(**overrides))


def test_parse_superblock_accepts() -> None:
    sb = parse_superblock(_superblock(compression=6))
    assert sb.compression is Compression.ZSTD
    assert (sb.block_size, sb.inode_table_start, sb.bytes_used) == (131072, 1000, 4096)
    with pytest.raises(ValueError, match="too short"):
        parse_superblock(_superblock()[:50])
