"""GUID partition tables and the Discoverable Partitions Specification (DPS).

Parsing is pure (bytes in, frozen values out); `read_gpt` is the only function that does I/O.

Broken tables: like libblkid (which systemd-dissect uses), a primary header or entry array that
fails its checks (signature, revision, sizes, CRC32) is not fatal by itself: we fall back to the
backup header in the last sector of the image and record that in `GptTable.used_backup`. Only when
both copies are unusable is the image rejected, with one INVALID message naming the image and what
was wrong with the primary copy. Like libblkid without BLKID_PARTS_FORCE_GPT (systemd never sets
it), a GPT needs a protective (or hybrid) MBR with a 0xEE entry; without one systemd would not see
the table at all, so we reject it with a message that says so.
"""

from __future__ import annotations

import enum
import functools
import struct
import uuid
import zlib
from collections.abc import Callable, Iterable

from strata.errors import ErrorKind, StrataError
from strata.record import record
from strata.versions import strverscmp_improved

#: GPT headers are looked for in the second sector for each of these sector sizes, like
#: systemd's probe_sector_size() (src/shared/dissect-image.c).
SECTOR_SIZES = (512, 1024, 2048, 4096)

_SIGNATURE = b"EFI PART"
_REVISION_1_0 = 0x00010000
_HEADER = struct.Struct("<8sIIIIQQQQ16sQIII")  # 92 bytes, UEFI 2.x §5.3.2
_ENTRY = struct.Struct("<16s16sQQQ72s")  # 128 bytes
_MAX_ENTRY_ARRAY = 16 << 20  # refuse absurd entry arrays rather than allocate them

#: GPT attribute bits defined by the DPS (and the UEFI "required" bit 0).
FLAG_NO_AUTO = 1 << 63
FLAG_READ_ONLY = 1 << 60
FLAG_GROWFS = 1 << 59


class PartitionRole(enum.Enum):
    """What a partition type UUID designates (systemd's PartitionDesignator, plus generic)."""

    ROOT = "root"
    USR = "usr"
    ROOT_VERITY = "root-verity"
    USR_VERITY = "usr-verity"
    ROOT_VERITY_SIG = "root-verity-sig"
    USR_VERITY_SIG = "usr-verity-sig"
    ESP = "esp"
    XBOOTLDR = "xbootldr"
    SWAP = "swap"
    HOME = "home"
    SRV = "srv"
    VAR = "var"
    TMP = "tmp"
    USER_HOME = "user-home"
    LINUX_GENERIC = "linux-generic"
    OTHER = "other"

    @property
    def versioned(self) -> bool:
        """systemd's partition_designator_is_versioned(): newest label wins among equals."""
        return self in _VERSIONED_ROLES


_VERSIONED_ROLES = frozenset({
    PartitionRole.ROOT, PartitionRole.USR, PartitionRole.ROOT_VERITY, PartitionRole.USR_VERITY,
    PartitionRole.ROOT_VERITY_SIG, PartitionRole.USR_VERITY_SIG,
})


@record
class PartitionType:
    role: PartitionRole
    arch: str | None  # systemd architecture name ("x86-64"), None if not arch-specific


# Per architecture (systemd's names): root, usr, root-verity, usr-verity, root-verity-sig,
# usr-verity-sig. From the Discoverable Partitions Specification's table.
_ARCH_TYPES: dict[str, tuple[str, str, str, str, str, str]] = {
    "alpha": ("6523f8ae-3eb1-4e2a-a05a-18b695ae656f", "e18cf08c-33ec-4c0d-8246-c6c6fb3da024",
              "fc56d9e9-e6e5-4c06-be32-e74407ce09a5", "8cce0d25-c0d0-4a44-bd87-46331bf1df67",
              "d46495b7-a053-414f-80f7-700c99921ef8", "5c6e1c76-076a-457a-a0fe-f3b4cd21ce6e"),
    "arc": ("d27f46ed-2919-4cb8-bd25-9531f3c16534", "7978a683-6316-4922-bbee-38bff5a2fecc",
            "24b2d975-0f97-4521-afa1-cd531e421b8d", "fca0598c-d880-4591-8c16-4eda05c7347c",
            "143a70ba-cbd3-4f06-919f-6c05683a78bc", "94f9a9a1-9971-427a-a400-50cb297f0f35"),
    "arm": ("69dad710-2ce4-4e3c-b16c-21a1d49abed3", "7d0359a3-02b3-4f0a-865c-654403e70625",
            "7386cdf2-203c-47a9-a498-f2ecce45a2d6", "c215d751-7bcd-4649-be90-6627490a4c05",
            "42b0455f-eb11-491d-98d3-56145ba9d037", "d7ff812f-37d1-4902-a810-d76ba57b975a"),
    "arm64": ("b921b045-1df0-41c3-af44-4c6f280d3fae", "b0e01050-ee5f-4390-949a-9101b17104e9",
              "df3300ce-d69f-4c92-978c-9bfb0f38d820", "6e11a4e7-fbca-4ded-b9e9-e1a512bb664e",
              "6db69de6-29f4-4758-a7a5-962190f00ce3", "c23ce4ff-44bd-4b00-b2d4-b41b3419e02a"),
    "ia64": ("993d8d3d-f80e-4225-855a-9daf8ed7ea97", "4301d2a6-4e3b-4b2a-bb94-9e0b2c4225ea",
             "86ed10d5-b607-45bb-8957-d350f23d0571", "6a491e03-3be7-4545-8e38-83320e0ea880",
             "e98b36ee-32ba-4882-9b12-0ce14655f46a", "8de58bc2-2a43-460d-b14e-a76e4a17b47f"),
    "loongarch64": ("77055800-792c-4f94-b39a-98c91b762bb6", "e611c702-575c-4cbe-9a46-434fa0bf7e3f",
                    "f3393b22-e9af-4613-a948-9d3bfbd0c535", "f46b2c26-59ae-48f0-9106-c50ed47f673d",
                    "5afb67eb-ecc8-4f85-ae8e-ac1e7c50e7d0", "b024f315-d330-444c-8461-44bbde524e99"),
    "mips": ("e9434544-6e2c-47cc-bae2-12d6deafb44c", "773b2abc-2a99-4398-8bf5-03baac40d02b",
             "7a430799-f711-4c7e-8e5b-1d685bd48607", "6e5a1bc8-d223-49b7-bca8-37a5fcceb996",
             "bba210a2-9c5d-45ee-9e87-ff2ccbd002d0", "97ae158d-f216-497b-8057-f7f905770f54"),
    "mips64": ("d113af76-80ef-41b4-bdb6-0cff4d3d4a25", "57e13958-7331-4365-8e6e-35eeee17c61b",
               "579536f8-6a33-4055-a95a-df2d5e2c42a8", "81cf9d90-7458-4df4-8dcf-c8a3a404f09b",
               "43ce94d4-0f3d-4999-8250-b9deafd98e6e", "05816ce2-dd40-4ac6-a61d-37d32dc1ba7d"),
    "mips-le": ("37c58c8a-d913-4156-a25f-48b1b64e07f0", "0f4868e9-9952-4706-979f-3ed3a473e947",
                "d7d150d2-2a04-4a33-8f12-16651205ff7b", "46b98d8d-b55c-4e8f-aab3-37fca7f80752",
                "c919cc1f-4456-4eff-918c-f75e94525ca5", "3e23ca0b-a4bc-4b4e-8087-5ab6a26aa8a9"),
    "mips64-le": ("700bda43-7a34-4507-b179-eeb93d7a7ca3", "c97c1f32-ba06-40b4-9f22-236061b08aa8",
                  "16b417f8-3e06-4f57-8dd2-9b5232f41aa6", "3c3d61fe-b5f3-414d-bb71-8739a694a4ef",
                  "904e58ef-5c65-4a31-9c57-6af5fc7c5de7", "f2c2c7ee-adcc-4351-b5c6-ee9816b66e16"),
    "parisc": ("1aacdb3b-5444-4138-bd9e-e5c2239b2346", "dc4a4480-6917-4262-a4ec-db9384949f25",
               "d212a430-fbc5-49f9-a983-a7feef2b8d0e", "5843d618-ec37-48d7-9f12-cea8e08768b2",
               "15de6170-65d3-431c-916e-b0dcd8393f25", "450dd7d1-3224-45ec-9cf2-a43a346d71ee"),
    "ppc": ("1de3f1ef-fa98-47b5-8dcd-4a860a654d78", "7d14fec5-cc71-415d-9d6c-06bf0b3c3eaf",
            "98cfe649-1588-46dc-b2f0-add147424925", "df765d00-270e-49e5-bc75-f47bb2118b09",
            "1b31b5aa-add9-463a-b2ed-bd467fc857e7", "7007891d-d371-4a80-86a4-5cb875b9302e"),
    "ppc64": ("912ade1d-a839-4913-8964-a10eee08fbd2", "2c9739e2-f068-46b3-9fd0-01c5a9afbcca",
              "9225a9a3-3c19-4d89-b4f6-eeff88f17631", "bdb528a5-a259-475f-a87d-da53fa736a07",
              "f5e2c20c-45b2-4ffa-bce9-2a60737e1aaf", "0b888863-d7f8-4d9e-9766-239fce4d58af"),
    "ppc64-le": ("c31c45e6-3f39-412e-80fb-4809c4980599", "15bb03af-77e7-4d4a-b12b-c0d084f7491c",
                 "906bd944-4589-4aae-a4e4-dd983917446a", "ee2b9983-21e8-4153-86d9-b6901a54d1ce",
                 "d4a236e7-e873-4c07-bf1d-bf6cf7f1c3c6", "c8bfbd1e-268e-4521-8bba-bf314c399557"),
    "riscv32": ("60d5a7fe-8e7d-435c-b714-3dd8162144e1", "b933fb22-5c3f-4f91-af90-e2bb0fa50702",
                "ae0253be-1167-4007-ac68-43926c14c5de", "cb1ee4e3-8cd0-4136-a0a4-aa61a32e8730",
                "3a112a75-8729-4380-b4cf-764d79934448", "c3836a13-3137-45ba-b583-b16c50fe5eb4"),
    "riscv64": ("72ec70a6-cf74-40e6-bd49-4bda08e8f224", "beaec34b-8442-439b-a40b-984381ed097d",
                "b6ed5582-440b-4209-b8da-5ff7c419ea3d", "8f1056be-9b05-47c4-81d6-be53128e5b54",
                "efe0f087-ea8d-4469-821a-4c2a96a8386a", "d2f9000a-7a18-453f-b5cd-4d32f77a7b32"),
    "s390": ("08a7acea-624c-4a20-91e8-6e0fa67d23f9", "cd0f869b-d0fb-4ca0-b141-9ea87cc78d66",
             "7ac63b47-b25c-463b-8df8-b4a94e6c90e1", "b663c618-e7bc-4d6d-90aa-11b756bb1797",
             "3482388e-4254-435a-a241-766a065f9960", "17440e4f-a8d0-467f-a46e-3912ae6ef2c5"),
    "s390x": ("5eead9a9-fe09-4a1e-a1d7-520d00531306", "8a4f5770-50aa-4ed3-874a-99b710db6fea",
              "b325bfbe-c7be-4ab8-8357-139e652d2f6b", "31741cc4-1a2a-4111-a581-e00b447d2d06",
              "c80187a5-73a3-491a-901a-017c3fa953e9", "3f324816-667b-46ae-86ee-9b0c0c6c11b4"),
    "tilegx": ("c50cdd70-3862-4cc3-90e1-809a8c93ee2c", "55497029-c7c1-44cc-aa39-815ed1558630",
               "966061ec-28e4-4b2e-b4a5-1f0a825a1d84", "2fb4bf56-07fa-42da-8132-6b139f2026ae",
               "b3671439-97b0-4a53-90f7-2d5a8f3ad47b", "4ede75e2-6ccc-4cc8-b9c7-70334b087510"),
    "x86": ("44479540-f297-41b2-9af7-d131d5f0458a", "75250d76-8cc6-458e-bd66-bd47cc81a812",
            "d13c5d3b-b5d1-422a-b29f-9454fdc89d76", "8f461b0d-14ee-4e81-9aa9-049b6fb97abd",
            "5996fc05-109c-48de-808b-23fa0830b676", "974a71c0-de41-43c3-be5d-5c5ccd1ad2c0"),
    "x86-64": ("4f68bce3-e8cd-4db1-96e7-fbcaf984b709", "8484680c-9521-48c6-9c11-b0720656f69e",
               "2c7357ed-ebd2-46d9-aec1-23d437ec2bf5", "77ff5f63-e7b6-4633-acf4-1565b864c0e6",
               "41092b05-9fc8-4523-994f-2def0408b176", "e7bb33fb-06cf-4e81-8273-e543b413e2e2"),
}

_ARCH_ROLES = (PartitionRole.ROOT, PartitionRole.USR, PartitionRole.ROOT_VERITY,
               PartitionRole.USR_VERITY, PartitionRole.ROOT_VERITY_SIG,
               PartitionRole.USR_VERITY_SIG)

_GENERIC_TYPES = {
    "c12a7328-f81f-11d2-ba4b-00a0c93ec93b": PartitionRole.ESP,
    "bc13c2ff-59e6-4262-a352-b275fd6f7172": PartitionRole.XBOOTLDR,
    "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f": PartitionRole.SWAP,
    "933ac7e1-2eb4-4f13-b844-0e14e2aef915": PartitionRole.HOME,
    "3b8f8425-20e0-4f3b-907f-1a25a76f98e8": PartitionRole.SRV,
    "4d21b016-b534-45c2-a9fb-5c16e091fd2d": PartitionRole.VAR,
    "7ec6f557-3bc5-4aca-b293-16ef5df639d1": PartitionRole.TMP,
    "773f91ef-66d4-49b5-bd83-d683bf40ad16": PartitionRole.USER_HOME,
    "0fc63daf-8483-4772-8e79-3d69d8477de4": PartitionRole.LINUX_GENERIC,
}


@functools.cache
def partition_types() -> dict[uuid.UUID, PartitionType]:
    """Every partition type UUID we know -> its role and architecture (built on first use)."""
    table = {uuid.UUID(u): PartitionType(role, None) for u, role in _GENERIC_TYPES.items()}
    for arch, uuids in _ARCH_TYPES.items():
        for role, u in zip(_ARCH_ROLES, uuids, strict=True):
            table[uuid.UUID(u)] = PartitionType(role, arch)
    return table


def partition_type(type_uuid: uuid.UUID) -> PartitionType:
    """Role and architecture of a partition type UUID (OTHER for unknown types)."""
    return partition_types().get(type_uuid, _OTHER)


_OTHER = PartitionType(PartitionRole.OTHER, None)

#: systemd's ARCHITECTURE_SECONDARY for each native architecture that has one
#: (src/basic/architecture.h): the 32-bit sibling a 64-bit machine also runs.
SECONDARY_ARCH: dict[str, str] = {
    "x86-64": "x86",
    "arm64": "arm",
    "arm64-be": "arm-be",
    "ppc64": "ppc",
    "ppc64-le": "ppc-le",
    "s390x": "s390",
    "sparc64": "sparc",
    "mips64": "mips",
    "mips64-le": "mips-le",
    "parisc64": "parisc",
}


def type_uuid_for(role: PartitionRole, arch: str | None = None) -> uuid.UUID:
    """The partition type UUID for `role` (and `arch`, for the per-architecture roles)."""
    for u, t in partition_types().items():
        if t.role is role and t.arch == arch:
            return u
    raise KeyError(f"no partition type for {role.value} on {arch}")


@record
class Partition:
    """One used entry of a GPT."""

    index: int  # 1-based partition number (the N of /dev/loop0pN), as libblkid counts
    type_uuid: uuid.UUID
    uuid: uuid.UUID
    label: str
    offset: int  # bytes from the start of the image
    size: int  # bytes
    flags: int  # GPT attribute bits
    role: PartitionRole
    arch: str | None

    @property
    def no_auto(self) -> bool:
        return bool(self.flags & FLAG_NO_AUTO)

    @property
    def read_only(self) -> bool:
        return bool(self.flags & FLAG_READ_ONLY)

    @property
    def growfs(self) -> bool:
        return bool(self.flags & FLAG_GROWFS)

    def describe(self) -> str:
        """e.g. "partition 1 (root-x86-64)"; used in messages."""
        kind = self.role.value + (f"-{self.arch}" if self.arch else "")
        return f"partition {self.index} ({kind})"


@record
class GptTable:
    sector_size: int
    disk_uuid: uuid.UUID
    partitions: tuple[Partition, ...]
    used_backup: bool  # the primary header or its entries were broken


@record
class GptHeader:
    """The fields of a GPT header we use, validated except for the entry array CRC."""

    my_lba: int
    alternate_lba: int
    first_usable_lba: int
    last_usable_lba: int
    disk_uuid: uuid.UUID
    entries_lba: int
    entry_count: int
    entry_size: int
    entries_crc: int

    @property
    def entries_bytes(self) -> int:
        return self.entry_count * self.entry_size


class GptError(ValueError):
    """Why one copy of the table is unusable (internal; turned into a StrataError)."""


# --------------------------------------------------------------------------- pure parsing

def find_sector_size(head: bytes) -> int | None:
    """The sector size whose second sector holds a plausible GPT header, as systemd's
    probe_sector_size() decides it: signature, revision 1.0, 92 <= header size <= 4096 and
    my_lba == 1. None if there is none. Several matches raise GptError (systemd refuses)."""
    found: int | None = None
    for sz in SECTOR_SIZES:
        if len(head) < sz + _HEADER.size:
            continue
        sig, rev, hsize, _crc, _res, my_lba = struct.unpack_from("<8sIIIIQ", head, sz)
        if sig != _SIGNATURE or rev != _REVISION_1_0 or not 92 <= hsize <= 4096 or my_lba != 1:
            continue
        if found is not None:
            raise GptError(f"GPT headers found for both {found} and {sz} byte sectors")
        found = sz
    return found


def has_protective_mbr(sector0: bytes) -> bool:
    """True if LBA 0 is an MBR with a 0xEE (GPT protective) entry, as libblkid requires."""
    if len(sector0) < 512 or sector0[510:512] != b"\x55\xaa":
        return False
    return any(sector0[446 + 16 * i + 4] == 0xEE for i in range(4))


def parse_header(sector: bytes, *, lba: int, sector_size: int, total_sectors: int) -> GptHeader:
    """Validate and decode the GPT header found in `sector` (read from `lba`)."""
    if len(sector) < _HEADER.size:
        raise GptError("header sector is truncated")
    (sig, rev, hsize, crc, _res, my_lba, alt_lba, first, last, disk, entries_lba, count, esize,
     ecrc) = _HEADER.unpack_from(sector, 0)
    if sig != _SIGNATURE:
        raise GptError("no GPT signature")
    if rev != _REVISION_1_0:
        raise GptError(f"unknown GPT revision {rev:#x}")
    if not _HEADER.size <= hsize <= min(sector_size, len(sector)):
        raise GptError(f"bad header size {hsize}")
    raw = bytearray(sector[:hsize])
    raw[16:20] = b"\0\0\0\0"
    if zlib.crc32(raw) != crc:
        raise GptError("header CRC32 mismatch")
    if my_lba != lba:
        raise GptError(f"header claims to be at LBA {my_lba}, found at LBA {lba}")
    if first > last:
        raise GptError(f"bad usable LBA range {first}..{last}")
    if last >= total_sectors:
        raise GptError(f"usable LBA range {first}..{last} extends beyond the end of the image "
                       f"(truncated?)")
    if esize < _ENTRY.size or esize % 8:
        raise GptError(f"bad partition entry size {esize}")
    if count * esize > _MAX_ENTRY_ARRAY:
        raise GptError(f"partition entry array of {count} x {esize} bytes is too large")
    if entries_lba < 2 and lba == 1:
        raise GptError(f"partition entries at LBA {entries_lba} overlap the header")
    end = entries_lba * sector_size + count * esize
    if entries_lba >= total_sectors or end > total_sectors * sector_size:
        raise GptError("partition entry array lies beyond the end of the image")
    return GptHeader(my_lba, alt_lba, first, last, uuid.UUID(bytes_le=disk), entries_lba,
                     count, esize, ecrc)


def parse_entries(blob: bytes, header: GptHeader, *, sector_size: int) -> tuple[Partition, ...]:
    """Decode the entry array (CRC-checked). Unused entries are skipped but still counted, so
    `Partition.index` matches the kernel's and libblkid's partition numbers. Entries outside the
    usable LBA range are ignored, as libblkid does."""
    if len(blob) < header.entries_bytes:
        raise GptError("partition entry array is truncated")
    if zlib.crc32(blob[:header.entries_bytes]) != header.entries_crc:
        raise GptError("partition entry array CRC32 mismatch")
    parts: list[Partition] = []
    for i in range(header.entry_count):
        tguid, pguid, first, last, attrs, name = _ENTRY.unpack_from(blob, i * header.entry_size)
        if tguid == bytes(16):
            continue
        if first > last or first < header.first_usable_lba or last > header.last_usable_lba:
            continue
        type_uuid = uuid.UUID(bytes_le=tguid)
        ptype = partition_type(type_uuid)
        label = name.decode("utf-16-le", errors="replace").split("\0", 1)[0]
        parts.append(Partition(
            index=i + 1, type_uuid=type_uuid, uuid=uuid.UUID(bytes_le=pguid), label=label,
            offset=first * sector_size, size=(last - first + 1) * sector_size, flags=attrs,
            role=ptype.role, arch=ptype.arch,
        ))
    return tuple(parts)


# --------------------------------------------------------------------------- I/O

ReadAt = Callable[[int, int], bytes]  # (offset, length) -> bytes, short at EOF


def read_gpt(read: ReadAt, image_size: int, *, name: str) -> GptTable:
    """Read the GPT of an image through `read`. Raises StrataError(INVALID) "<name>: ..." if
    there is no usable table (see the module docstring for the fallback rules)."""

    def invalid(why: str) -> StrataError:
        return StrataError(f"{name}: {why}", kind=ErrorKind.INVALID)

    head = read(0, 2 * max(SECTOR_SIZES))
    try:
        sector_size = find_sector_size(head)
    except GptError as e:
        raise invalid(f"ambiguous GPT: {e}") from None
    if sector_size is None:
        # A damaged primary may still leave a signature to pick the sector size by; without
        # one, systemd assumes 512-byte sectors and libblkid goes on to the backup header.
        sector_size = next((s for s in SECTOR_SIZES if head[s:s + 8] == _SIGNATURE), 512)
    if not has_protective_mbr(head[:512]):
        raise invalid("GPT without a protective MBR (systemd's libblkid ignores such tables)")
    total = image_size // sector_size
    if total < 3:
        raise invalid("image is too small to hold a GPT")

    def load(lba: int) -> GptTable:
        header = parse_header(read(lba * sector_size, sector_size), lba=lba,
                              sector_size=sector_size, total_sectors=total)
        blob = read(header.entries_lba * sector_size, header.entries_bytes)
        parts = parse_entries(blob, header, sector_size=sector_size)
        return GptTable(sector_size, header.disk_uuid, parts, used_backup=lba != 1)

    try:
        return load(1)
    except GptError as primary:
        try:
            return load(total - 1)
        except GptError:
            raise invalid(f"corrupt GPT: primary {primary}, and the backup is unusable too"
                          ) from None


# --------------------------------------------------------------------------- selection

def _arch_rank(part_arch: str | None, native: str) -> int:
    if part_arch == native:
        return 2
    if part_arch is not None and part_arch == SECONDARY_ARCH.get(native):
        return 1
    return 0


@record
class Selection:
    """What systemd-dissect would mount for an extension image: `root` at "/" and `usr` at
    "/usr". A usr-only image has root None; a lone generic Linux partition becomes `root`."""

    root: Partition | None
    usr: Partition | None

    @property
    def primary(self) -> Partition:
        found = self.root or self.usr
        assert found is not None
        return found


def select_partitions(parts: Iterable[Partition], *, arch: str, name: str) -> Selection:
    """Pick partitions as dissect_image() (src/shared/dissect-image.c, v257) does with the
    flags systemd-sysext passes (GENERIC_ROOT, REQUIRE_ROOT, USR_NO_ROOT):

    - entries flagged no-auto are skipped;
    - per designator (root, usr, their verity and signature partitions) the first entry wins,
      unless a later one has a better architecture (native > secondary > other), or the same
      architecture and a newer label by version comparison (A/B updates);
    - verity/signature partitions without their data partition, or root and usr of different
      architectures, are refused (EADDRNOTAVAIL there);
    - if neither root nor usr exists, a single generic Linux data partition is used as root;
      several of them are ambiguous (ENOTUNIQ there);
    - nothing usable at all is refused (ENXIO there).
    """
    best: dict[PartitionRole, Partition] = {}
    generic: list[Partition] = []
    for p in parts:
        if p.no_auto:
            continue
        if p.role is PartitionRole.LINUX_GENERIC:
            generic.append(p)
            continue
        if p.role not in _VERSIONED_ROLES:
            continue
        old = best.get(p.role)
        if old is not None:
            c = _arch_rank(p.arch, arch) - _arch_rank(old.arch, arch)
            if c < 0 or (c == 0 and strverscmp_improved(p.label, old.label) <= 0):
                continue
        best[p.role] = p

    def invalid(why: str) -> StrataError:
        return StrataError(f"{name}: {why}", kind=ErrorKind.INVALID)

    for data, verity, sig in ((PartitionRole.ROOT, PartitionRole.ROOT_VERITY,
                               PartitionRole.ROOT_VERITY_SIG),
                              (PartitionRole.USR, PartitionRole.USR_VERITY,
                               PartitionRole.USR_VERITY_SIG)):
        if data not in best and (verity in best or sig in best):
            raise invalid(f"{data.value} Verity partition without a {data.value} partition")
        if sig in best and verity not in best:
            raise invalid(f"{data.value} Verity signature partition without Verity data")
    root, usr = best.get(PartitionRole.ROOT), best.get(PartitionRole.USR)
    if root and usr and root.arch and usr.arch and root.arch != usr.arch:
        raise invalid(f"root ({root.arch}) and usr ({usr.arch}) partitions differ in architecture")
    if root is None and usr is None:
        if len(generic) > 1:
            raise invalid("several generic Linux partitions and no root or usr partition")
        if not generic:
            raise invalid("GPT has no root, usr or generic Linux partition")
        return Selection(generic[0], None)
    return Selection(root, usr)
