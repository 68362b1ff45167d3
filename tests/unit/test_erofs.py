"""ErofsFS against images made by the real mkfs.erofs: byte-exact contents, modes, symlinks,
directories, xattrs, for every layout mkfs.erofs 1.5 can write; and corrupt images."""

from __future__ import annotations

import errno
import os
import random
import shutil
import stat
from pathlib import Path

import pytest

from strata.errors import ErrorKind, StrataError
from strata.images.base import FileKind
from strata.images.erofs import (
    ErofsFS,
    crc32c_raw,
    lz4_decompress_partial,
)
from strata.images.filebacked import CorruptError, UnsupportedError
from tests.unit.erofstree import RELEASE, RELEASE_TEXT, make_tree, mkfs, needs_mkfs
from tests.unit.imagetree import assert_one_line, open_fails


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tree(tmp_path_factory.mktemp("tree"))


def _walk(root: Path) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            out.append("/" + os.path.relpath(os.path.join(dirpath, name), root))
    return out


LAYOUTS = [
    pytest.param((), id="plain"),
    pytest.param(("-Eforce-inode-compact",), id="compact-inodes"),
    pytest.param(("-Eforce-inode-extended",), id="extended-inodes"),
    pytest.param(("-zlz4",), id="lz4"),
    pytest.param(("-zlz4hc",), id="lz4hc"),
    pytest.param(("-zlz4hc", "-Eztailpacking"), id="lz4hc-ztailpacking"),
    pytest.param(("-zlz4hc", "-C65536"), id="lz4hc-bigpcluster"),
    pytest.param(("-zlz4hc", "-C16384", "-Eztailpacking"), id="bigpcluster-ztailpacking"),
    pytest.param(("-zlz4", "-Elegacy-compress"), id="lz4-legacy"),
    pytest.param(("--chunksize=8192",), id="chunked"),
    pytest.param(("-Enoinline_data",), id="noinline"),
]


@needs_mkfs
@pytest.mark.parametrize("options", LAYOUTS)
def test_tree_roundtrip(tree: Path, tmp_path: Path, options: tuple[str, ...]) -> None:
    image = mkfs(tree, tmp_path / "img.erofs", *options)
    with ErofsFS(str(image)) as fs:
        paths = _walk(tree)
        assert len(paths) > 300
        for p in paths:
            host = tree / p.lstrip("/")
            st = host.lstat()
            got = fs.lstat(p)
            assert got.mode == st.st_mode, p
            assert (got.uid, got.gid) == (st.st_uid, st.st_gid), p
            if stat.S_ISREG(st.st_mode):
                assert got.size == st.st_size
                assert fs.read(p) == host.read_bytes(), p
            elif stat.S_ISLNK(st.st_mode):
                assert got.kind is FileKind.SYMLINK
                assert fs.readlink(p) == os.readlink(host)
            elif stat.S_ISDIR(st.st_mode):
                assert set(fs.listdir(p)) == set(os.listdir(host)), p
            else:
                assert got.kind is FileKind.OTHER
        assert fs.lstat("/usr/bin/jq").mode & stat.S_ISUID
        assert fs.read(RELEASE) == RELEASE_TEXT
        assert len(fs.listdir("/big")) == 300
        assert set(fs.listdir("/")) == set(os.listdir(tree))
        if os.getxattr(tree / RELEASE, "user.extension-release.strict") == b"false":
            assert fs.getxattr(RELEASE, "user.extension-release.strict") == b"false"
            assert fs.getxattr(RELEASE, "user.other") is None
            assert fs.getxattr("/big/entry-with-a-fairly-long-name-0001", "user.shared") == b"v"
            assert fs.getxattr("/text", "trusted.strata") == b"t" * 100
            assert set(fs.listxattr("/text")) == {"trusted.strata"}


@needs_mkfs
def test_layouts_are_really_exercised(tree: Path, tmp_path: Path) -> None:
    """Guard against the tests above passing only because mkfs stored everything flat."""
    from strata.images import erofs as e

    with ErofsFS(str(mkfs(tree, tmp_path / "a", "-zlz4hc", "-C65536", "-Eztailpacking"))) as fs:
        ino = fs._lookup("/text")
        z = fs._zinfo_of(ino)
        assert ino.layout == e._COMPRESSED_COMPACT
        assert z.advise & e._ADV_BIG_PCLUSTER_1 and z.idata_size > 0
        mixed = fs._lookup("/mixed")
        types = {fs._lcluster(mixed, fs._zinfo_of(mixed), n).type
                 for n in range(-(-mixed.size // 4096))}
        assert {e._LT_PLAIN, e._LT_HEAD1, e._LT_NONHEAD} <= types
    with ErofsFS(str(mkfs(tree, tmp_path / "b", "-zlz4", "-Elegacy-compress"))) as fs:
        assert fs._lookup("/text").layout == e._COMPRESSED_FULL
        assert not fs.sb.has(e._INCOMPAT_LZ4_0PADDING)
    with ErofsFS(str(mkfs(tree, tmp_path / "c", "--chunksize=8192"))) as fs:
        assert fs._lookup("/random").layout == e._CHUNK_BASED
    with ErofsFS(str(mkfs(tree, tmp_path / "d", "-x1"))) as fs:
        ino = fs._lookup("/big/entry-with-a-fairly-long-name-0000")
        if ino.xattr_isize:
            body = fs._meta(ino.pos + ino.isize, ino.xattr_isize)
            assert body[4] >= 1  # the shared xattr area is used


@needs_mkfs
def test_paths_and_errors(tree: Path, tmp_path: Path) -> None:
    with ErofsFS(str(mkfs(tree, tmp_path / "img", "-zlz4hc"))) as fs:
        # intermediate symlinks are followed inside the image, the last one is not
        assert fs.read("/usr/lib/dirlink/extension-release.foo") == RELEASE_TEXT
        assert fs.lstat("/usr/lib/dirlink").kind is FileKind.SYMLINK
        assert fs.resolve("/usr/bin/abs") == "/usr/bin/jq"
        assert fs.resolve("/usr/lib/rel") == "/usr/bin/jq"
        assert fs.read("usr/bin/../lib/extension-release.d/extension-release.foo") == RELEASE_TEXT
        assert fs.read("/text", limit=10) == (tree / "text").read_bytes()[:10]
        assert fs.read("/empty") == b""
        assert fs.listdir("/emptydir") == []
        assert fs.exists("/usr/bin/jq") and not fs.exists("/nope")
        with pytest.raises(StrataError) as ei:
            fs.read("/usr/nope")
        assert ei.value.kind is ErrorKind.NOT_FOUND and ei.value.errno == errno.ENOENT
        assert str(ei.value) == f"{fs.label}:/usr/nope: No such file or directory"
        with pytest.raises(StrataError) as ei:
            fs.read("/text/x")
        assert ei.value.kind is ErrorKind.NOT_FOUND
        with pytest.raises(StrataError, match="not a regular file") as ei:
            fs.read("/usr")
        assert ei.value.kind is ErrorKind.INVALID
        with pytest.raises(StrataError, match="not a symbolic link"):
            fs.readlink("/text")
        with pytest.raises(StrataError, match="Not a directory"):
            fs.listdir("/text")


@needs_mkfs
def test_symlink_loop(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").symlink_to("b")
    (src / "b").symlink_to("a")
    with ErofsFS(str(mkfs(src, tmp_path / "img"))) as fs:
        assert fs.readlink("/a") == "b"
        with pytest.raises(StrataError) as ei:
            fs.read("/a/x")
        assert ei.value.errno == errno.ELOOP


# --------------------------------------------------------------------------- corruption

@pytest.fixture(scope="module")
def small_image(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    if shutil.which("mkfs.erofs") is None:
        pytest.skip("mkfs.erofs is not installed")
    d = tmp_path_factory.mktemp("small")
    tree = make_tree(d / "tree")
    return mkfs(tree, d / "img", "-zlz4hc", "-Eztailpacking").read_bytes()


@pytest.mark.parametrize(("name", "mutate", "message"), [
    ("zero-length", lambda b: b"", "superblock"),
    ("garbage", lambda b: random.Random(5).randbytes(64 * 1024), "bad magic"),
    ("flipped-magic", lambda b: b[:1024] + b"\0" + b[1025:], "bad magic"),
    ("bad-checksum", lambda b: b[:1024 + 40] + bytes([b[1064] ^ 0xFF]) + b[1065:],
     "checksum"),
    ("truncated-half", lambda b: b[:len(b) // 2], "truncated"),
    ("truncated-sb", lambda b: b[:1100], "superblock"),
    ("unknown-feature", lambda b: b[:1024 + 83] + b"\x80" + b[1024 + 84:], "unsupported"),
])
def test_corrupt_superblocks(small_image: bytes, tmp_path: Path, name: str,
                             mutate: object, message: str) -> None:
    image = tmp_path / f"{name}.raw"
    data = mutate(small_image)  # type: ignore[operator]
    if name == "unknown-feature":
        data = _fix_checksum(data)
    image.write_bytes(data)
    assert message in str(open_fails(ErofsFS, image))


def _fix_checksum(data: bytes) -> bytes:
    raw = bytearray(data[1024:4096])
    raw[4:8] = b"\0\0\0\0"
    crc = crc32c_raw(bytes(raw))
    return data[:1028] + crc.to_bytes(4, "little") + data[1032:]


def _release_inode_pos(image: Path) -> int:
    with ErofsFS(str(image)) as fs:
        return fs._lookup(RELEASE).pos


@needs_mkfs
def test_out_of_range_block_address(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "usr/lib/extension-release.d").mkdir(parents=True)
    (src / RELEASE).write_bytes(os.urandom(9000))  # two full blocks + an inline tail
    image = mkfs(src, tmp_path / "img", "-Eforce-inode-extended")
    pos = _release_inode_pos(image)
    data = bytearray(image.read_bytes())
    data[pos + 16:pos + 20] = (0x00FFFFF0).to_bytes(4, "little")  # i_u: start block
    image.write_bytes(_fix_checksum(bytes(data)))  # block 0 is covered by the checksum
    with ErofsFS(str(image)) as fs, pytest.raises(StrataError) as ei:
        fs.read(RELEASE)
    assert_one_line(ei.value, image)
    assert f":/{RELEASE}: corrupt EROFS image:" in str(ei.value)
    assert "outside the image" in str(ei.value)


@needs_mkfs
def test_bogus_inode_layout(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "usr/lib/extension-release.d").mkdir(parents=True)
    (src / RELEASE).write_bytes(RELEASE_TEXT)
    image = mkfs(src, tmp_path / "img")
    pos = _release_inode_pos(image)
    data = bytearray(image.read_bytes())
    data[pos] = (data[pos] & 1) | (6 << 1)  # data layout 6 does not exist
    image.write_bytes(_fix_checksum(bytes(data)))
    with ErofsFS(str(image)) as fs, pytest.raises(StrataError) as ei:
        fs.read(RELEASE)
    assert_one_line(ei.value, image)
    assert "data layout 6" in str(ei.value)


def test_random_damage_only_raises_strata_errors(small_image: bytes, tmp_path: Path) -> None:
    """Seeded fuzzing of the metadata area: whatever breaks, the reader raises StrataError."""
    rng = random.Random(42)
    image = tmp_path / "fuzz.raw"
    meta_end = min(len(small_image), 12 * 4096)
    for _ in range(40):
        data = bytearray(small_image)
        for _ in range(rng.choice([1, 4, 16])):
            data[rng.randrange(1024, meta_end)] = rng.randrange(256)
        image.write_bytes(bytes(data))
        try:
            fs = ErofsFS(str(image))
        except StrataError:
            continue
        with fs:
            for path in ["/", "/usr", "/usr/bin", "/usr/lib/extension-release.d", "/big"]:
                try:
                    names = fs.listdir(path)
                except StrataError:
                    continue
                for n in names[:50]:
                    p = path.rstrip("/") + "/" + n
                    for op in (fs.lstat, fs.read, fs.readlink, fs.listxattr):
                        try:
                            op(p)
                        except StrataError as e:
                            assert "\n" not in str(e)


def test_missing_image(tmp_path: Path) -> None:
    open_fails(ErofsFS, tmp_path / "nope.raw", ErrorKind.NOT_FOUND)


# --------------------------------------------------------------------------- pure helpers

@pytest.mark.parametrize("data", [
    b"",
    b"a",
    b"hello world " * 50,
    bytes(range(256)) * 20,
    b"abcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabcxyz" * 3,
    random.Random(7).randbytes(3000),
])
def test_lz4_partial_matches_lz4(data: bytes) -> None:
    import lz4.block

    block = lz4.block.compress(data, store_size=False)
    assert lz4_decompress_partial(block, len(data)) == data
    assert lz4_decompress_partial(block + bytes(100), len(data)) == data  # trailing zeros
    for n in {0, min(1, len(data)), len(data) // 3, len(data) // 2}:
        assert lz4_decompress_partial(block, n) == data[:n]


@pytest.mark.parametrize("block", [b"\xf0", b"\x10", b"\x00\x05\x00", b"\x1fa\x09\x00"])
def test_lz4_partial_rejects_garbage(block: bytes) -> None:
    with pytest.raises(CorruptError):
        lz4_decompress_partial(block, 100)


def test_crc32c() -> None:
    # standard check value 0xE3069283 is the final-inverted CRC of "123456789"
    assert crc32c_raw(b"123456789") ^ 0xFFFFFFFF == 0xE3069283
    assert crc32c_raw(b"") == 0xFFFFFFFF


@needs_mkfs
def test_decoders_mkfs_cannot_produce(tmp_path: Path) -> None:
    """DEFLATE, Zstandard and the interlaced/shifted plain pclusters come from newer
    erofs-utils; feed the extent decoder pclusters placed after the file system's end."""
    import zlib

    import zstandard

    from strata.images import erofs as e

    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"x")
    image = mkfs(src, tmp_path / "img")
    payload = b"".join(b"record %d\n" % i for i in range(900))[:4096]
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
    deflated = deflater.compress(payload) + deflater.flush()
    zstd = zstandard.ZstdCompressor().compress(payload)
    rotated = payload[1000:] + payload[:1000]  # interlaced: the block starts at offset 1000
    blocks = [deflated.rjust(4096, b"\0"), zstd.rjust(4096, b"\0"), payload, rotated]
    base = image.stat().st_size
    with image.open("ab") as f:
        for b in blocks:
            f.write(b)
    with ErofsFS(str(image)) as fs:
        ino = fs._lookup("/f")
        z = fs._zinfo.get(ino.nid)

        def decode(i: int, alg: int, la: int = 0, n: int = len(payload)) -> bytes:
            ext = e._Extent(la, n, "blocks", base + i * 4096, 4096, alg, False)
            return fs._decode_extent(ino, z, ext)  # type: ignore[arg-type]

        assert decode(0, e._ALG_DEFLATE) == payload
        assert decode(1, e._ALG_ZSTD) == payload
        assert decode(2, e._ALG_SHIFTED, n=100) == payload[:100]
        assert decode(3, e._ALG_INTERLACED, la=3 * 4096 + 3096) == payload
        with pytest.raises(UnsupportedError, match="lzma"):
            decode(0, e._ALG_LZMA)
        with pytest.raises(CorruptError):
            decode(2, e._ALG_DEFLATE)  # not a deflate stream
