"""GPT parsing, the DPS type table and partition selection."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from strata.errors import ErrorKind, StrataError
from strata.images.gpt import (
    FLAG_NO_AUTO,
    FLAG_READ_ONLY,
    GptError,
    Partition,
    PartitionRole,
    find_sector_size,
    has_protective_mbr,
    partition_type,
    partition_types,
    read_gpt,
    select_partitions,
    type_uuid_for,
)
from tests.unit.gptdisk import GENERIC, ROOT_X86_64, Part, build_gpt, sfdisk
from tests.unit.imagetree import needs


def _reader(img: bytes | bytearray) -> Callable[[int, int], bytes]:
    return lambda off, n: bytes(img[off:off + n])


# --------------------------------------------------------------------------- type table

def test_type_table() -> None:
    assert len(partition_types()) == 21 * 6 + 9  # all distinct
    assert partition_type(ROOT_X86_64).role is PartitionRole.ROOT
    assert partition_type(ROOT_X86_64).arch == "x86-64"
    assert partition_type(GENERIC).role is PartitionRole.LINUX_GENERIC
    assert partition_type(uuid.uuid4()).role is PartitionRole.OTHER
    assert type_uuid_for(PartitionRole.USR, "arm64") == uuid.UUID(
        "b0e01050-ee5f-4390-949a-9101b17104e9")
    assert type_uuid_for(PartitionRole.ROOT_VERITY_SIG, "x86-64") == uuid.UUID(
        "41092b05-9fc8-4523-994f-2def0408b176")
    for arch in ("x86-64", "arm64", "x86", "arm", "riscv64", "ppc64-le", "s390x",
                 "loongarch64"):
        roles = {t.role for t in partition_types().values() if t.arch == arch}
        assert len(roles) == 6


# --------------------------------------------------------------------------- parsing

@pytest.mark.parametrize("sector_size", [512, 4096])
def test_read_gpt(sector_size: int) -> None:
    img = build_gpt([Part(ROOT_X86_64, 64, 127, "foo_1.2", FLAG_READ_ONLY),
                     Part(GENERIC, 128, 191, "data", slot=4)], 512, sector_size=sector_size)
    assert find_sector_size(bytes(img[:8192])) == sector_size
    table = read_gpt(_reader(img), len(img), name="disk.raw")
    assert table.sector_size == sector_size and not table.used_backup
    root, data = table.partitions
    assert (root.index, root.role, root.arch, root.label) == (1, PartitionRole.ROOT, "x86-64",
                                                            "foo_1.2")
    assert root.offset == 64 * sector_size and root.size == 64 * sector_size
    assert root.read_only and not root.no_auto
    assert (data.index, data.role, data.arch) == (5, PartitionRole.LINUX_GENERIC, None)
    assert root.describe() == "partition 1 (root-x86-64)"


def test_find_sector_size_none_and_ambiguous() -> None:
    assert find_sector_size(bytes(8192)) is None
    a = build_gpt([], 64, sector_size=512)
    b = build_gpt([], 64, sector_size=4096)
    both = bytearray(b[:8192])
    both[512:1024] = a[512:1024]
    with pytest.raises(GptError):
        find_sector_size(bytes(both))


@pytest.mark.parametrize("what", ["header", "entries"])
def test_broken_primary_falls_back_to_backup(what: str) -> None:
    img = build_gpt([Part(ROOT_X86_64, 64, 127)], 256)
    if what == "header":
        img[512 + 40] ^= 0xFF  # first usable LBA: header CRC no longer matches
    else:
        img[1024 + 40] ^= 0xFF  # inside entry 0: entry array CRC no longer matches
    table = read_gpt(_reader(img), len(img), name="x.raw")
    assert table.used_backup
    assert [p.type_uuid for p in table.partitions] == [ROOT_X86_64]


def test_both_copies_broken_is_invalid() -> None:
    img = build_gpt([Part(ROOT_X86_64, 64, 127)], 256)
    img[512 + 16] ^= 0xFF  # primary header CRC field
    img[255 * 512 + 16] ^= 0xFF  # backup header CRC field
    with pytest.raises(StrataError) as ei:
        read_gpt(_reader(img), len(img), name="/x/bad.raw")
    assert ei.value.kind is ErrorKind.INVALID
    assert str(ei.value) == ("/x/bad.raw: corrupt GPT: primary header CRC32 mismatch, and the "
                             "backup is unusable too")


def test_missing_protective_mbr_is_invalid() -> None:
    img = build_gpt([Part(ROOT_X86_64, 64, 127)], 256, pmbr=False)
    assert not has_protective_mbr(bytes(img[:512]))
    with pytest.raises(StrataError, match="protective MBR") as ei:
        read_gpt(_reader(img), len(img), name="x.raw")
    assert ei.value.kind is ErrorKind.INVALID


def test_entries_outside_usable_range_are_ignored() -> None:
    img = build_gpt([Part(ROOT_X86_64, 64, 127), Part(GENERIC, 200, 400)], 256)
    table = read_gpt(_reader(img), len(img), name="x.raw")
    assert [p.index for p in table.partitions] == [1]


def test_truncated_table_is_invalid() -> None:
    img = build_gpt([Part(ROOT_X86_64, 64, 127)], 256)
    short = img[:3 * 512]  # header survives, its entry array and the backup do not
    with pytest.raises(StrataError) as ei:
        read_gpt(_reader(short), len(short), name="t.raw")
    assert ei.value.kind is ErrorKind.INVALID and "\n" not in str(ei.value)


@needs("sfdisk")
def test_sfdisk_table(tmp_path: Path) -> None:
    script = (f"label: gpt\nstart=2048, size=4096, type={ROOT_X86_64}, name=\"foo_1\"\n"
              f"start=6144, size=1024, type={GENERIC}, attrs=\"GUID:63\"\n")
    disk = sfdisk(tmp_path / "disk.raw", 4 << 20, script)
    img = disk.read_bytes()
    table = read_gpt(_reader(img), len(img), name=str(disk))
    root, data = table.partitions
    assert (root.offset, root.size, root.label, root.arch) == (1 << 20, 2 << 20, "foo_1",
                                                               "x86-64")
    assert data.no_auto and data.flags == FLAG_NO_AUTO


# --------------------------------------------------------------------------- selection

def _p(index: int, role: PartitionRole, arch: str | None = None, label: str = "",
       flags: int = 0) -> Partition:
    return Partition(index, uuid.uuid4(), uuid.uuid4(), label, index << 20, 1 << 20, flags,
                     role, arch)


R, U, G = PartitionRole.ROOT, PartitionRole.USR, PartitionRole.LINUX_GENERIC
RV, RS = PartitionRole.ROOT_VERITY, PartitionRole.ROOT_VERITY_SIG


@pytest.mark.parametrize(("parts", "root", "usr"), [
    ([_p(1, R, "x86-64")], 1, None),
    ([_p(1, U, "x86-64")], None, 1),
    ([_p(1, R, "x86-64"), _p(2, U, "x86-64")], 1, 2),
    ([_p(1, R, "arm64"), _p(2, R, "x86-64")], 2, None),  # native beats foreign
    ([_p(1, R, "x86"), _p(2, R, "x86-64")], 2, None),  # native beats secondary
    ([_p(1, R, "arm64"), _p(2, R, "x86")], 2, None),  # secondary beats foreign
    ([_p(1, R, "x86-64"), _p(2, R, "x86")], 1, None),
    ([_p(1, R, "arm64")], 1, None),  # foreign but alone: used (release arch decides)
    ([_p(1, R, "x86-64", "os_1"), _p(2, R, "x86-64", "os_2")], 2, None),  # newest label
    ([_p(1, R, "x86-64", "os_10"), _p(2, R, "x86-64", "os_9")], 1, None),
    ([_p(1, R, "x86-64", "a"), _p(2, R, "x86-64", "a")], 1, None),  # tie: first wins
    ([_p(1, R, "x86-64", flags=FLAG_NO_AUTO), _p(2, G)], 2, None),  # no-auto skipped
    ([_p(1, G)], 1, None),  # a lone generic partition
    ([_p(1, G), _p(2, R, "x86-64")], 2, None),
    ([_p(1, G), _p(2, G), _p(3, U, "x86-64")], None, 3),
    ([_p(1, PartitionRole.ESP), _p(2, PartitionRole.SWAP), _p(3, G)], 3, None),
    ([_p(1, R, "x86-64"), _p(2, RV, "x86-64"), _p(3, RS, "x86-64")], 1, None),
])
def test_select_partitions(parts: list[Partition], root: int | None, usr: int | None) -> None:
    sel = select_partitions(parts, arch="x86-64", name="img.raw")
    assert (sel.root.index if sel.root else None) == root
    assert (sel.usr.index if sel.usr else None) == usr


@pytest.mark.parametrize(("parts", "message"), [
    ([], "no root, usr or generic Linux partition"),
    ([_p(1, PartitionRole.ESP)], "no root, usr or generic Linux partition"),
    ([_p(1, G), _p(2, G)], "several generic Linux partitions"),
    ([_p(1, RV, "x86-64")], "root Verity partition without a root partition"),
    ([_p(1, R, "x86-64"), _p(2, RS, "x86-64")], "signature partition without Verity data"),
    ([_p(1, R, "x86-64"), _p(2, U, "x86")], "differ in architecture"),
    ([_p(1, G, flags=FLAG_NO_AUTO)], "no root, usr or generic"),
])
def test_select_partitions_refusals(parts: list[Partition], message: str) -> None:
    with pytest.raises(StrataError) as ei:
        select_partitions(parts, arch="x86-64", name="img.raw")
    assert ei.value.kind is ErrorKind.INVALID
    assert str(ei.value).startswith("img.raw: ") and message in str(ei.value)
