"""Writing a GUID partition table: pure, so a disk image is the same bytes for the same input.

What systemd-repart writes for a new image (through libfdisk), reduced to what an extension
image needs: a protective MBR, the primary header and a 128-entry array at LBA 1 and 2 (first
usable LBA 34), the partitions one after the other at 4 KiB boundaries (the first at 20 KiB, as
repart places it), the backup array and header in the last 33 sectors, the whole a multiple of
4 KiB. strata.images.gpt reads it back (the tests do).
"""

from __future__ import annotations

import struct
import uuid
import zlib
from collections.abc import Sequence

from strata.record import record

SECTOR = 512
ENTRIES = 128
ENTRY_SIZE = 128
ENTRY_SECTORS = ENTRIES * ENTRY_SIZE // SECTOR  # 32
FIRST_LBA = 2 + ENTRY_SECTORS  # first usable LBA: 34
ALIGN = 4096  # repart's grain

_HEADER = struct.Struct("<8sIIIIQQQQ16sQIII")
_ENTRY = struct.Struct("<16s16sQQQ72s")


@record
class NewPartition:
    type_uuid: uuid.UUID
    uuid: uuid.UUID
    label: str
    offset: int  # bytes, a multiple of SECTOR
    size: int  # bytes, a multiple of SECTOR
    flags: int = 0


def align(n: int, to: int = ALIGN) -> int:
    return -(-n // to) * to


def place(sizes: Sequence[int]) -> tuple[list[int], int]:
    """Offsets for partitions of `sizes` bytes laid out one after the other at 4 KiB
    boundaries after the primary table, and the size of the whole disk (room for the backup
    table included, rounded to 4 KiB)."""
    offsets = []
    pos = align(FIRST_LBA * SECTOR)
    for s in sizes:
        offsets.append(pos)
        pos = align(pos + s)
    disk = align(pos + (ENTRY_SECTORS + 1) * SECTOR)
    return offsets, disk


def _entries(parts: Sequence[NewPartition]) -> bytes:
    if len(parts) > ENTRIES:
        raise ValueError("too many partitions")
    blob = bytearray(ENTRIES * ENTRY_SIZE)
    for i, p in enumerate(parts):
        if p.offset % SECTOR or p.size % SECTOR or p.size <= 0:
            raise ValueError(f"partition {i + 1}: offset and size must be whole sectors")
        name = p.label.encode("utf-16-le")
        if len(name) > 72:
            raise ValueError(f"partition label '{p.label}' is longer than 36 characters")
        first = p.offset // SECTOR
        _ENTRY.pack_into(blob, i * ENTRY_SIZE, p.type_uuid.bytes_le, p.uuid.bytes_le, first,
                         first + p.size // SECTOR - 1, p.flags, name)
    return bytes(blob)


def _header(*, my_lba: int, alternate: int, last_usable: int, disk_uuid: uuid.UUID,
            entries_lba: int, entries_crc: int) -> bytes:
    fields = [b"EFI PART", 0x00010000, _HEADER.size, 0, 0, my_lba, alternate, FIRST_LBA,
              last_usable, disk_uuid.bytes_le, entries_lba, ENTRIES, ENTRY_SIZE, entries_crc]
    raw = _HEADER.pack(*fields)
    fields[3] = zlib.crc32(raw)
    return _HEADER.pack(*fields).ljust(SECTOR, b"\0")


def _protective_mbr(total_sectors: int) -> bytes:
    mbr = bytearray(SECTOR)
    size = min(total_sectors - 1, 0xFFFFFFFF)
    # status 0, CHS start 0/0/2, type 0xEE, CHS end "beyond", LBA 1, size
    struct.pack_into("<B3sB3sII", mbr, 446, 0, b"\x00\x02\x00", 0xEE, b"\xff\xff\xff", 1, size)
    mbr[510:512] = b"\x55\xaa"
    return bytes(mbr)


def gpt_writes(disk_size: int, disk_uuid: uuid.UUID, parts: Sequence[NewPartition]
               ) -> list[tuple[int, bytes]]:
    """(offset, bytes) to write into a zero-filled file of `disk_size` bytes for the table."""
    if disk_size % SECTOR:
        raise ValueError("the disk size must be whole sectors")
    total = disk_size // SECTOR
    last_usable = total - ENTRY_SECTORS - 2
    for p in parts:
        if p.offset < FIRST_LBA * SECTOR or (p.offset + p.size) // SECTOR - 1 > last_usable:
            raise ValueError(f"partition '{p.label}' lies outside the usable area")
    entries = _entries(parts)
    crc = zlib.crc32(entries)
    backup_entries = total - 1 - ENTRY_SECTORS
    primary = _header(my_lba=1, alternate=total - 1, last_usable=last_usable,
                      disk_uuid=disk_uuid, entries_lba=2, entries_crc=crc)
    backup = _header(my_lba=total - 1, alternate=1, last_usable=last_usable,
                     disk_uuid=disk_uuid, entries_lba=backup_entries, entries_crc=crc)
    return [(0, _protective_mbr(total)), (SECTOR, primary), (2 * SECTOR, entries),
            (backup_entries * SECTOR, entries), ((total - 1) * SECTOR, backup)]
