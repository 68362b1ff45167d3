"""Format detection, probing (naked file systems and GPT disk images) and open_fs."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from strata.errors import ErrorKind, StrataError
from strata.images.base import DirectoryFS, FileKind
from strata.images.detect import (
    ImageFormat,
    MountView,
    detect,
    detect_bytes,
    fs_size_problem,
    open_fs,
    probe,
)
from strata.images.erofs import ErofsFS
from strata.images.gpt import PartitionRole, type_uuid_for
from tests.unit.erofstree import RELEASE, RELEASE_TEXT, make_tree, mkfs, needs_mkfs
from tests.unit.gptdisk import GENERIC, ROOT_X86_64, Part, build_gpt, sfdisk
from tests.unit.imagetree import mkfs_ext, mksquashfs, needs

needs_sfdisk = needs("sfdisk")
USR_X86_64 = type_uuid_for(PartitionRole.USR, "x86-64")


def _head(**at: bytes) -> bytes:
    buf = bytearray(68 * 1024)
    for off, data in at.items():
        o = int(off[1:])
        buf[o:o + len(data)] = data
    return bytes(buf)


def _pmbr() -> bytes:
    mbr = bytearray(512)
    mbr[446 + 4] = 0xEE
    mbr[510:512] = b"\x55\xaa"
    return bytes(mbr)


@pytest.mark.parametrize(("head", "fmt"), [
    (_head(o1024=bytes.fromhex("e2e1f5e0")), ImageFormat.EROFS),
    (_head(o0=b"hsqs"), ImageFormat.SQUASHFS),
    (_head(o1080=b"\x53\xef"), ImageFormat.EXT4),
    (_head(o65600=b"_BHRfS_M"), ImageFormat.BTRFS),
    (_head(o512=b"EFI PART"), ImageFormat.GPT),
    (_head(o4096=b"EFI PART"), ImageFormat.GPT),
    (_head(o0=_pmbr()), ImageFormat.GPT),  # primary header gone, backup may remain
    (_head(o0=b"\x7fELF"), ImageFormat.UNKNOWN),
    (bytes(68 * 1024), ImageFormat.UNKNOWN),
    (b"", ImageFormat.UNKNOWN),
    (b"hsq", ImageFormat.UNKNOWN),
    (_head(o1024=bytes.fromhex("e2e1f5e0"), o512=b"EFI PART"), ImageFormat.EROFS),
    (_head(o0=b"hsqs", o1024=bytes.fromhex("e2e1f5e0")), ImageFormat.SQUASHFS),
])
def test_detect_bytes(head: bytes, fmt: ImageFormat) -> None:
    assert detect_bytes(head) is fmt


def test_detect_paths(tmp_path: Path) -> None:
    assert detect(str(tmp_path)) is ImageFormat.DIRECTORY
    (tmp_path / "x.raw").write_bytes(_head(o0=b"hsqs"))
    assert detect(str(tmp_path / "x.raw")) is ImageFormat.SQUASHFS
    with pytest.raises(StrataError) as ei:
        detect(str(tmp_path / "missing.raw"))
    assert ei.value.kind is ErrorKind.NOT_FOUND


def _erofs_head(blocks: int, bits: int = 12) -> bytes:
    return _head(o1024=bytes.fromhex("e2e1f5e0"), o1036=bytes([bits]),
                 o1060=blocks.to_bytes(4, "little"))


@pytest.mark.parametrize(("head", "fmt", "size", "bad"), [
    (_erofs_head(10), ImageFormat.EROFS, 40960, False),
    (_erofs_head(10), ImageFormat.EROFS, 40959, True),
    (_head(o0=b"hsqs", o40=(5000).to_bytes(8, "little")), ImageFormat.SQUASHFS, 4096, True),
    (_head(o0=b"hsqs", o40=(5000).to_bytes(8, "little")), ImageFormat.SQUASHFS, 8192, False),
    (_head(o1080=b"\x53\xef", o1028=(100).to_bytes(4, "little"), o1048=(2).to_bytes(4, "little")),
     ImageFormat.EXT4, 409600, False),
    (_head(o1080=b"\x53\xef", o1028=(100).to_bytes(4, "little"), o1048=(2).to_bytes(4, "little")),
     ImageFormat.EXT4, 409599, True),
    (_head(o65600=b"_BHRfS_M"), ImageFormat.BTRFS, 1, False),
])
def test_fs_size_problem(head: bytes, fmt: ImageFormat, size: int, bad: bool) -> None:
    problem = fs_size_problem(head, fmt, size)
    assert (problem is not None) == bad
    if problem:
        assert "truncated" in problem


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """erofs images of the reference tree ("root"), of its usr/ alone ("usr") and of a small
    root without usr/ content ("etc")."""
    if shutil.which("mkfs.erofs") is None:
        pytest.skip("mkfs.erofs is not installed")
    d = tmp_path_factory.mktemp("imgs")
    tree = make_tree(d / "tree")
    etc = d / "etc"
    (etc / "etc").mkdir(parents=True)
    (etc / "usr").mkdir()
    (etc / "etc/hello").write_bytes(b"hi\n")
    return {
        "root": mkfs(tree, d / "root.erofs", "-zlz4hc"),
        "usr": mkfs(tree / "usr", d / "usr.erofs"),
        "etc": mkfs(etc, d / "etc.erofs"),
    }


def _disk(path: Path, parts: list[tuple[uuid.UUID, Path | None]], *, sector_size: int = 512,
          label: str = "") -> Path:
    """A GPT disk image holding each file system in its own 1 MiB-aligned partition."""
    lba = (1 << 20) // sector_size
    placed: list[tuple[Part, Path | None]] = []
    for type_uuid, fs in parts:
        size = fs.stat().st_size if fs else 65536
        n = -(-size // sector_size)
        placed.append((Part(type_uuid, lba, lba + n - 1, label), fs))
        lba += -(-n // 2048) * 2048 + 2048
    total = lba + 2048
    img = build_gpt([p for p, _ in placed], total, sector_size=sector_size)
    for p, fs in placed:
        if fs is not None:
            data = fs.read_bytes()
            img[p.first_lba * sector_size:p.first_lba * sector_size + len(data)] = data
    path.write_bytes(bytes(img))
    return path


@needs_mkfs
def test_probe_naked_erofs(images: dict[str, Path]) -> None:
    layout = probe(str(images["root"]), arch="x86-64")
    assert (layout.container, layout.fs_format) == (ImageFormat.EROFS, ImageFormat.EROFS)
    assert (layout.offset, layout.size) == (0, images["root"].stat().st_size)
    assert layout.partition is None and layout.partitions == () and layout.mount_point == "/"
    with open_fs(str(images["root"])) as fs:
        assert isinstance(fs, ErofsFS)
        assert fs.read(RELEASE) == RELEASE_TEXT


@needs_mkfs
@needs_sfdisk
def test_sfdisk_gpt_image(images: dict[str, Path], tmp_path: Path) -> None:
    script = f"label: gpt\nstart=2048, size=8192, type={ROOT_X86_64}, name=\"foo_1.0\"\n"
    disk = sfdisk(tmp_path / "foo.raw", 8 << 20, script)
    subprocess.run(["dd", f"if={images['root']}", f"of={disk}", "bs=512", "seek=2048",
                    "conv=notrunc", "status=none"], check=True)
    layout = probe(str(disk), arch="x86-64")
    assert layout.container is ImageFormat.GPT and layout.fs_format is ImageFormat.EROFS
    assert layout.partition is not None and layout.partition.index == 1
    assert layout.partition.role is PartitionRole.ROOT and layout.partition.label == "foo_1.0"
    assert (layout.offset, layout.size) == (1 << 20, 8192 * 512)
    assert len(layout.partitions) == 1 and not layout.gpt_used_backup
    with open_fs(str(disk), arch="x86-64") as fs:
        assert fs.read(RELEASE) == RELEASE_TEXT
        assert fs.lstat("/usr/bin/jq").mode & 0o4000
        assert fs.getxattr(RELEASE, "user.extension-release.strict") in (b"false", None)


@needs_mkfs
@pytest.mark.parametrize("sector_size", [512, 4096])
def test_gpt_sector_sizes(images: dict[str, Path], tmp_path: Path, sector_size: int) -> None:
    disk = _disk(tmp_path / "d.raw", [(GENERIC, None), (ROOT_X86_64, images["root"])],
                 sector_size=sector_size)
    layout = probe(str(disk), arch="x86-64")
    assert layout.partition is not None and layout.partition.index == 2
    assert layout.offset % sector_size == 0 and layout.offset >= 1 << 20
    with open_fs(str(disk), arch="x86-64") as fs:
        assert fs.read(RELEASE) == RELEASE_TEXT


@needs_mkfs
def test_usr_only_image_is_mounted_at_usr(images: dict[str, Path], tmp_path: Path) -> None:
    disk = _disk(tmp_path / "u.raw", [(USR_X86_64, images["usr"])])
    layout = probe(str(disk), arch="x86-64")
    assert layout.mount_point == "/usr"
    with open_fs(str(disk), arch="x86-64") as fs:
        assert isinstance(fs, MountView)
        assert fs.listdir("/") == ["usr"]
        assert fs.lstat("/").kind is FileKind.DIRECTORY
        assert fs.read(RELEASE) == RELEASE_TEXT
        assert fs.readlink("/usr/bin/abs") == "/usr/bin/jq"
        assert fs.resolve("/usr/lib/rel") == "/usr/bin/jq"
        assert fs.read("/usr/lib/dirlink/extension-release.foo") == RELEASE_TEXT
        assert not fs.exists("/etc")
        assert set(fs.listdir("/usr")) == {"bin", "lib"}


@needs_mkfs
def test_root_and_usr_partitions(images: dict[str, Path], tmp_path: Path) -> None:
    disk = _disk(tmp_path / "ru.raw", [(ROOT_X86_64, images["etc"]), (USR_X86_64, images["usr"])])
    layout = probe(str(disk), arch="x86-64")
    assert layout.partition is not None and layout.partition.role is PartitionRole.ROOT
    assert layout.usr_partition is not None and layout.usr_fs_format is ImageFormat.EROFS
    with open_fs(str(disk), arch="x86-64") as fs:
        assert sorted(fs.listdir("/")) == ["etc", "usr"]
        assert fs.read("/etc/hello") == b"hi\n"
        assert fs.read(RELEASE) == RELEASE_TEXT


@needs_mkfs
def test_lone_generic_partition(images: dict[str, Path], tmp_path: Path) -> None:
    disk = _disk(tmp_path / "g.raw", [(GENERIC, images["root"])])
    layout = probe(str(disk), arch="arm64")
    assert layout.partition is not None and layout.partition.role is PartitionRole.LINUX_GENERIC
    with open_fs(str(disk), arch="arm64") as fs:
        assert fs.read(RELEASE) == RELEASE_TEXT


def test_open_fs_directory(tmp_path: Path) -> None:
    make_tree(tmp_path / "d")
    layout = probe(str(tmp_path / "d"), arch="x86-64")
    assert layout.container is ImageFormat.DIRECTORY
    with open_fs(str(tmp_path / "d")) as fs:
        assert isinstance(fs, DirectoryFS)
        assert fs.read(RELEASE) == RELEASE_TEXT


def test_btrfs_is_detected_but_not_readable(tmp_path: Path) -> None:
    img = tmp_path / "b.raw"
    img.write_bytes(_head(o65600=b"_BHRfS_M"))
    assert probe(str(img), arch="x86-64").fs_format is ImageFormat.BTRFS
    with pytest.raises(StrataError) as ei:
        open_fs(str(img))
    assert ei.value.kind is ErrorKind.UNSUPPORTED


# --------------------------------------------------------------------------- bad images

def _assert_invalid(path: Path, *fragments: str) -> None:
    with pytest.raises(StrataError) as ei:
        probe(str(path), arch="x86-64")
    msg = str(ei.value)
    assert ei.value.kind is ErrorKind.INVALID, msg
    assert msg.startswith(f"{path}: ") and "\n" not in msg, msg
    for f in fragments:
        assert f in msg, msg


def test_zero_length(tmp_path: Path) -> None:
    (tmp_path / "empty.raw").write_bytes(b"")
    _assert_invalid(tmp_path / "empty.raw", "empty file")


def test_garbage(tmp_path: Path) -> None:
    (tmp_path / "junk.raw").write_bytes(os.urandom(100_000))
    _assert_invalid(tmp_path / "junk.raw", "not a file system or disk image")


def test_tiny_file(tmp_path: Path) -> None:
    (tmp_path / "tiny.raw").write_bytes(b"hsq")
    _assert_invalid(tmp_path / "tiny.raw", "not a file system or disk image")


def test_fifo_is_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "p.raw")
    _assert_invalid(tmp_path / "p.raw", "not a regular file")


def test_missing(tmp_path: Path) -> None:
    with pytest.raises(StrataError) as ei:
        probe(str(tmp_path / "nope.raw"), arch="x86-64")
    assert ei.value.kind is ErrorKind.NOT_FOUND


@needs_mkfs
def test_truncated_erofs(images: dict[str, Path], tmp_path: Path) -> None:
    data = images["root"].read_bytes()
    (tmp_path / "t.raw").write_bytes(data[:len(data) // 2])
    _assert_invalid(tmp_path / "t.raw", "erofs file system is truncated")


@needs_mkfs
def test_truncated_disk(images: dict[str, Path], tmp_path: Path) -> None:
    disk = _disk(tmp_path / "d.raw", [(ROOT_X86_64, images["root"])])
    data = disk.read_bytes()
    disk.write_bytes(data[:(1 << 20) + 8192])  # the backup GPT and most of the fs are gone
    _assert_invalid(disk, "corrupt GPT", "beyond the end of the image (truncated?)")


@needs_mkfs
def test_partition_smaller_than_its_filesystem(images: dict[str, Path], tmp_path: Path) -> None:
    img = build_gpt([Part(ROOT_X86_64, 2048, 2048 + 127)], 8192)  # a 64 KiB partition
    data = images["root"].read_bytes()
    img[2048 * 512:2048 * 512 + 65536] = data[:65536]
    (tmp_path / "p.raw").write_bytes(bytes(img))
    _assert_invalid(tmp_path / "p.raw", "partition 1 (root-x86-64): erofs file system is "
                    "truncated")


def test_gpt_with_bad_crcs(tmp_path: Path) -> None:
    img = build_gpt([Part(ROOT_X86_64, 2048, 4095)], 8192)
    img[512 + 16] ^= 0x55
    img[8191 * 512 + 16] ^= 0x55
    (tmp_path / "crc.raw").write_bytes(bytes(img))
    _assert_invalid(tmp_path / "crc.raw", "corrupt GPT", "CRC32 mismatch")


def test_gpt_primary_crc_falls_back(tmp_path: Path) -> None:
    img = build_gpt([Part(ROOT_X86_64, 2048, 4095)], 8192)
    img[2048 * 512:2048 * 512 + 4] = b"hsqs"
    img[2048 * 512 + 40:2048 * 512 + 48] = (4096).to_bytes(8, "little")
    img[512 + 16] ^= 0x55
    (tmp_path / "b.raw").write_bytes(bytes(img))
    layout = probe(str(tmp_path / "b.raw"), arch="x86-64")
    assert layout.gpt_used_backup and layout.fs_format is ImageFormat.SQUASHFS


def test_gpt_partition_without_filesystem(tmp_path: Path) -> None:
    (tmp_path / "nofs.raw").write_bytes(bytes(build_gpt([Part(ROOT_X86_64, 2048, 4095)], 8192)))
    _assert_invalid(tmp_path / "nofs.raw", "partition 1 (root-x86-64) holds no known file system")


def test_gpt_without_usable_partition(tmp_path: Path) -> None:
    esp = uuid.UUID("c12a7328-f81f-11d2-ba4b-00a0c93ec93b")
    (tmp_path / "esp.raw").write_bytes(bytes(build_gpt([Part(esp, 2048, 4095)], 8192)))
    _assert_invalid(tmp_path / "esp.raw", "no root, usr or generic Linux partition")


@pytest.mark.parametrize("fmt", [ImageFormat.SQUASHFS, ImageFormat.EXT4])
def test_other_filesystems_in_a_gpt(tmp_path: Path, fmt: ImageFormat) -> None:
    """probe/open_fs hand squashfs and ext4 partitions to their readers at the right offset."""
    tree = tmp_path / "tree"
    (tree / "usr/lib/extension-release.d").mkdir(parents=True)
    (tree / RELEASE).write_bytes(RELEASE_TEXT)
    fs_img = tmp_path / "fs.img"
    tool = "mksquashfs" if fmt is ImageFormat.SQUASHFS else "mkfs.ext4"
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed")
    if fmt is ImageFormat.SQUASHFS:
        mksquashfs(tree, fs_img)
    else:
        mkfs_ext(tree, fs_img, size="4M")
    naked = probe(str(fs_img), arch="x86-64")
    assert naked.fs_format is fmt and naked.offset == 0
    disk = _disk(tmp_path / "d.raw", [(GENERIC, None), (ROOT_X86_64, fs_img)])
    layout = probe(str(disk), arch="x86-64")
    assert layout.fs_format is fmt and layout.partition is not None
    with open_fs(str(disk), arch="x86-64") as fs:
        assert fs.read(RELEASE) == RELEASE_TEXT
