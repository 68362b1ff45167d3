"""A GPT disk image writer for the tests (test_gpt, test_images_detect): tables built by hand,
so that every field can be set and broken."""

from __future__ import annotations

import subprocess
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT_X86_64 = uuid.UUID("4f68bce3-e8cd-4db1-96e7-fbcaf984b709")
GENERIC = uuid.UUID("0fc63daf-8483-4772-8e79-3d69d8477de4")


@dataclass
class Part:
    type_uuid: uuid.UUID
    first_lba: int
    last_lba: int
    name: str = ""
    attrs: int = 0
    part_uuid: uuid.UUID = field(default_factory=uuid.uuid4)
    slot: int | None = None  # entry index; default: next free


def build_gpt(parts: Sequence[Part], total_sectors: int, *, sector_size: int = 512,
              entries: int = 128, pmbr: bool = True) -> bytearray:
    """A complete disk image (all zeros but the tables): protective MBR, primary header at
    LBA 1 with its entries at LBA 2, and the backup entries and header at the end."""
    img = bytearray(total_sectors * sector_size)
    if pmbr:
        img[446 + 4] = 0xEE
        img[446 + 8:446 + 12] = (1).to_bytes(4, "little")
        img[446 + 12:446 + 16] = min(total_sectors - 1, 0xFFFFFFFF).to_bytes(4, "little")
        img[510:512] = b"\x55\xaa"
    array = bytearray(entries * 128)
    slot = 0
    for p in parts:
        slot = p.slot if p.slot is not None else slot
        name = p.name.encode("utf-16-le").ljust(72, b"\0")
        array[slot * 128:(slot + 1) * 128] = (
            p.type_uuid.bytes_le + p.part_uuid.bytes_le + p.first_lba.to_bytes(8, "little")
            + p.last_lba.to_bytes(8, "little") + p.attrs.to_bytes(8, "little") + name)
        slot += 1
    array_sectors = -(-len(array) // sector_size)
    first_usable = 2 + array_sectors
    last_usable = total_sectors - 2 - array_sectors
    disk = uuid.UUID("12345678-1234-5678-1234-567812345678")

    def header(my_lba: int, alt_lba: int, entries_lba: int) -> bytes:
        fields = (b"EFI PART" + (0x00010000).to_bytes(4, "little") + (92).to_bytes(4, "little"))
        rest = (bytes(4) + my_lba.to_bytes(8, "little") + alt_lba.to_bytes(8, "little")
                + first_usable.to_bytes(8, "little") + last_usable.to_bytes(8, "little")
                + disk.bytes_le + entries_lba.to_bytes(8, "little")
                + entries.to_bytes(4, "little") + (128).to_bytes(4, "little")
                + zlib.crc32(array).to_bytes(4, "little"))
        crc = zlib.crc32(fields + bytes(4) + rest)
        return fields + crc.to_bytes(4, "little") + rest

    last = total_sectors - 1
    backup_entries = last - array_sectors
    img[sector_size:sector_size + 92] = header(1, last, 2)
    img[2 * sector_size:2 * sector_size + len(array)] = array
    img[backup_entries * sector_size:backup_entries * sector_size + len(array)] = array
    img[last * sector_size:last * sector_size + 92] = header(last, 1, backup_entries)
    return img


def sfdisk(disk: Path, size: int, script: str) -> Path:
    """A sparse `size`-byte `disk` partitioned by the real sfdisk from `script`."""
    with disk.open("wb") as f:
        f.truncate(size)
    subprocess.run(["sfdisk", "-q", str(disk)], input=script.encode(), check=True,
                   capture_output=True)
    return disk
