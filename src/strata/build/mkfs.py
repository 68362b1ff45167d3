"""The image tools: pure argv builders (table-tested, in osbuild's style) and the check that a
tool is installed, naming the Debian package that provides it.

Reproducibility is in the argv, not in the environment: a fixed time for every inode and the
superblock, root ownership, no extended attributes from the staging file system (SELinux labels
and the like differ between build hosts), and for erofs a UUID derived from the content.
Both tools order directory entries themselves, so the staging tree's readdir order does not
matter (checked: the same tree created in different orders on ext4 and tmpfs gives one image).

erofs-utils 1.5 (Debian 12) knows only lz4/lz4hc, silently ignores unknown `-E` options
(so `-Efragments`, new in 1.6, is a no-op there) and warns that `-Eztailpacking` is
experimental; neither is used by default.
"""

from __future__ import annotations

import hashlib
import shutil
import uuid

from strata.build.spec import Compression, OutputFormat
from strata.errors import ErrorKind, StrataError
from strata.record import record

#: tool -> the Debian package that ships it
TOOL_PACKAGES = {
    "mkfs.erofs": "erofs-utils",
    "mksquashfs": "squashfs-tools",
    "apt-get": "apt",
    "rpm2cpio": "rpm2cpio",
}

TOOLS = {OutputFormat.EROFS: "mkfs.erofs", OutputFormat.SQUASHFS: "mksquashfs"}


def require_tool(tool: str, purpose: str) -> str:
    """The path of `tool`, or a NOT_FOUND error naming the package to install."""
    path = shutil.which(tool)
    if path is None:
        package = TOOL_PACKAGES.get(tool, tool)
        raise StrataError(f"{tool} not found: it is needed to {purpose}",
                          hint=f"install the Debian package {package} "
                               f"(apt-get install {package})",
                          kind=ErrorKind.NOT_FOUND)
    return path


@record
class MkfsOptions:
    """Everything about an image build that is not the tree or the output path."""

    format: OutputFormat
    compression: Compression
    epoch: int  # every inode's time and the file system's creation time
    level: int | None = None
    cluster_size: int | None = None  # erofs -C
    uuid: str | None = None  # erofs -U; None: "clear" is not in 1.5, so required for erofs
    xattrs: bool = False


def uuid_from_digest(digest: bytes) -> str:
    """A version-4-shaped UUID from a content digest (as systemd's id128_make_v4_uuid shapes
    hashes): stable for the same content, different for different content."""
    raw = bytearray(hashlib.sha256(b"strata-build-uuid\0" + digest).digest()[:16])
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    return str(uuid.UUID(bytes=bytes(raw)))


# --------------------------------------------------------------------------------------------
# The erofs UUID, written after the fact
#
# The UUID is derived from the digest of the staged tree, and reading every staged file for
# that digest costs as much as a tenth of mkfs.erofs's own time. So the image is made with a
# placeholder UUID while the tree is digested on the other core, and the real UUID is then put
# into the superblock, whose crc32c is updated. The result is byte-identical to running
# mkfs.erofs with -U <uuid> (tests compare the two): the UUID is stored nowhere else.

EROFS_SUPER_OFFSET = 1024
EROFS_MAGIC = 0xE0F5E1E2
_SB_CHECKSUM = 4  # le32 crc32c of the superblock block from EROFS_SUPER_OFFSET, itself zeroed
_SB_FEATURE_COMPAT = 8
_SB_BLKSZBITS = 12
_SB_UUID = 48
_FEATURE_COMPAT_SB_CHKSUM = 0x1
PLACEHOLDER_UUID = "00000000-0000-0000-0000-000000000000"

_CRC32C_TABLE: list[int] = []


def crc32c(crc: int, data: bytes) -> int:
    """CRC-32C (Castagnoli, reflected) as erofs computes it: no final inversion."""
    if not _CRC32C_TABLE:
        for i in range(256):
            c = i
            for _ in range(8):
                c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
            _CRC32C_TABLE.append(c)
    table = _CRC32C_TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc


def erofs_superblock_with_uuid(block: bytes, new_uuid: str) -> bytes:
    """The first block of an erofs image (superblock at 1024) with its UUID replaced and the
    superblock checksum updated. Pure; ValueError if `block` is not an erofs superblock."""
    import struct

    sb = bytearray(block)
    if len(sb) < EROFS_SUPER_OFFSET + 128 or struct.unpack_from(
            "<I", sb, EROFS_SUPER_OFFSET)[0] != EROFS_MAGIC:
        raise ValueError("not an erofs superblock")
    base = EROFS_SUPER_OFFSET
    sb[base + _SB_UUID: base + _SB_UUID + 16] = uuid.UUID(new_uuid).bytes
    (compat,) = struct.unpack_from("<I", sb, base + _SB_FEATURE_COMPAT)
    if compat & _FEATURE_COMPAT_SB_CHKSUM:
        blksz = 1 << sb[base + _SB_BLKSZBITS]
        if len(sb) < blksz:
            raise ValueError("erofs superblock block is cut short")
        struct.pack_into("<I", sb, base + _SB_CHECKSUM, 0)
        crc = crc32c(0xFFFFFFFF, bytes(sb[base:blksz]))
        struct.pack_into("<I", sb, base + _SB_CHECKSUM, crc)
    return bytes(sb)


def set_erofs_uuid(path: str, new_uuid: str) -> None:
    """Rewrite the UUID of the erofs image at `path` (see above)."""
    with open(path, "r+b") as f:
        head = f.read(64 * 1024)
        blksz = 1 << head[EROFS_SUPER_OFFSET + _SB_BLKSZBITS] if len(head) > 1036 else 4096
        patched = erofs_superblock_with_uuid(head[:blksz], new_uuid)
        f.seek(0)
        f.write(patched)


def erofs_argv(tree: str, out: str, o: MkfsOptions) -> list[str]:
    """mkfs.erofs [-zALG[,LEVEL]] [-C SIZE] -T EPOCH -U UUID --all-root [-x-1] --quiet OUT TREE"""
    if o.uuid is None:
        raise ValueError("an erofs build needs a UUID (reproducibility)")
    argv = ["mkfs.erofs"]
    if o.compression is not Compression.NONE:
        argv.append(f"-z{o.compression.value}" + (f",{o.level}" if o.level is not None else ""))
    if o.cluster_size is not None:
        argv.append(f"-C{o.cluster_size}")
    argv += [f"-T{o.epoch}", "-U", o.uuid, "--all-root"]
    if not o.xattrs:
        argv.append("-x-1")
    argv += ["--quiet", out, tree]
    return argv


def squashfs_argv(tree: str, out: str, o: MkfsOptions) -> list[str]:
    """mksquashfs TREE OUT -noappend -all-root -mkfs-time E -all-time E (-comp C
    [-Xcompression-level N] | -noI -noD -noF -noX) [-no-xattrs] -no-progress -quiet"""
    argv = ["mksquashfs", tree, out, "-noappend", "-all-root",
            "-mkfs-time", str(o.epoch), "-all-time", str(o.epoch)]
    if o.compression is Compression.NONE:
        argv += ["-noI", "-noD", "-noF", "-noX"]
    else:
        argv += ["-comp", o.compression.value]
        if o.level is not None:
            argv += ["-Xcompression-level", str(o.level)]
    if not o.xattrs:
        argv.append("-no-xattrs")
    argv += ["-no-progress", "-quiet"]
    return argv


def mkfs_argv(tree: str, out: str, o: MkfsOptions) -> list[str]:
    if o.format is OutputFormat.EROFS:
        return erofs_argv(tree, out, o)
    if o.format is OutputFormat.SQUASHFS:
        return squashfs_argv(tree, out, o)
    raise ValueError(f"{o.format.value} is not an image format")


def apt_download_argv(names: list[str], *, as_root: bool) -> list[str]:
    """apt-get download, quiet; as root, without apt's `_apt` sandbox (it could not write to
    our private temporary directory anyway, and says so in a warning)."""
    argv = ["apt-get", "download", "-q"]
    if as_root:
        argv += ["-o", "APT::Sandbox::User=root"]
    return [*argv, *names]
