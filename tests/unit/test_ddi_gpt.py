"""build.gptwrite: tables read back by Strata's own GPT reader and by sfdisk, and the layout."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from strata.build.gptwrite import NewPartition, gpt_writes, place
from strata.images.gpt import FLAG_READ_ONLY, PartitionRole, read_gpt, type_uuid_for

DISK = uuid.UUID("0caefcd6-9dd1-47b8-b868-79c0cc8c037d")


def parts() -> list[NewPartition]:
    offsets, _disk = place([8192, 4096, 16384])
    kinds = [(PartitionRole.ROOT, "root-x86-64", FLAG_READ_ONLY),
             (PartitionRole.ROOT_VERITY, "root-x86-64-verity", FLAG_READ_ONLY),
             (PartitionRole.ROOT_VERITY_SIG, "root-x86-64-verity-sig", 0)]
    sizes = [8192, 4096, 16384]
    return [NewPartition(type_uuid=type_uuid_for(role, "x86-64"),
                         uuid=uuid.UUID(int=i + 1), label=label, offset=off, size=size,
                         flags=flags)
            for i, ((role, label, flags), off, size) in enumerate(zip(kinds, offsets, sizes,
                                                                        strict=True))]


def image(tmp_path: Path) -> tuple[Path, int]:
    p = parts()
    _offsets, disk = place([x.size for x in p])
    img = bytearray(disk)
    for off, blob in gpt_writes(disk, DISK, p):
        img[off:off + len(blob)] = blob
    path = tmp_path / "disk.raw"
    path.write_bytes(bytes(img))
    return path, disk


@pytest.mark.parametrize(("sizes", "offsets", "disk"), [
    ([4096], [20480], 45056),
    ([4097], [20480], 49152),  # the next partition and the end stay 4 KiB aligned
    ([8192, 4096, 16384], [20480, 28672, 32768], 69632),
    ([1 << 20], [20480], 20480 + (1 << 20) + 20480),
])
def test_place(sizes: list[int], offsets: list[int], disk: int) -> None:
    assert place(sizes) == (offsets, disk)


def test_read_back(tmp_path: Path) -> None:
    path, disk = image(tmp_path)
    data = path.read_bytes()
    table = read_gpt(lambda off, n: data[off:off + n], disk, name="disk")
    assert table.disk_uuid == DISK and table.sector_size == 512 and not table.used_backup
    got = [(p.index, p.role, p.arch, p.uuid, p.label, p.offset, p.size, p.flags)
           for p in table.partitions]
    want = [(i + 1, r, "x86-64", x.uuid, x.label, x.offset, x.size, x.flags)
            for i, (x, r) in enumerate(zip(parts(), (PartitionRole.ROOT,
                                                     PartitionRole.ROOT_VERITY,
                                                     PartitionRole.ROOT_VERITY_SIG),
                                           strict=True))]
    assert got == want


def test_backup_table_is_complete(tmp_path: Path) -> None:
    path, disk = image(tmp_path)
    data = bytearray(path.read_bytes())
    data[512:1024] = bytes(512)  # wipe the primary header: readers fall back to the backup
    table = read_gpt(lambda off, n: bytes(data[off:off + n]), disk, name="disk")
    assert table.used_backup
    assert [p.label for p in table.partitions] == [x.label for x in parts()]


@pytest.mark.skipif(shutil.which("sfdisk") is None, reason="sfdisk is not installed")
def test_sfdisk_agrees(tmp_path: Path) -> None:
    path, _disk = image(tmp_path)
    out = subprocess.run(["sfdisk", "--json", str(path)], capture_output=True, text=True,
                         check=True)
    table = json.loads(out.stdout)["partitiontable"]
    assert table["label"] == "gpt" and table["id"] == str(DISK).upper()
    assert table["firstlba"] == 34
    rows = [(q["start"] * 512, q["size"] * 512, q["type"].lower(), q["uuid"].lower(),
             q["name"], q.get("attrs", "")) for q in table["partitions"]]
    assert rows == [(x.offset, x.size, str(x.type_uuid), str(x.uuid), x.label,
                     "GUID:60" if x.flags else "") for x in parts()]
    verify = subprocess.run(["sfdisk", "--verify", str(path)], capture_output=True, text=True,
                            check=False)
    assert verify.returncode == 0 and "No errors detected" in verify.stdout, verify.stdout


@pytest.mark.parametrize(("change", "message"), [
    ({"label": "x" * 37}, "longer than 36"),
    ({"offset": 20481}, "whole sectors"),
    ({"offset": 512}, "outside the usable area"),
    ({"size": 1 << 30}, "outside the usable area"),
])
def test_bad_partitions(change: dict[str, object], message: str) -> None:
    from strata.record import replace

    p = replace(parts()[0], **change)
    with pytest.raises(ValueError, match=message):
        gpt_writes(65536, DISK, [p])
