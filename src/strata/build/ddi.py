"""Discoverable Disk Images: a file system image wrapped in a GPT with dm-verity, as
systemd-repart --make-ddi and mkosi make extension images.

Layout (mkosi's sysext.repart.d: root, root-verity, root-verity-sig):

| # | type | label | contents | GPT flags |
|---|---|---|---|---|
| 1 | root-ARCH | root-ARCH | the erofs/squashfs image, padded to 4 KiB | read-only |
| 2 | root-ARCH-verity | root-ARCH-verity | veritysetup hash tree with its superblock | read-only |
| 3 | root-ARCH-verity-sig | root-ARCH-verity-sig | signature JSON, NUL-padded to 16 KiB | |

`verity: hash` leaves out partition 3, `verity: none` partitions 2 and 3. Partition and disk
UUIDs, the verity salt and the superblock UUID are derived as repart derives them from its seed
(build/verity.py), the seed itself from the file system image's sha256: the same content and key
give the same image.
"""

from __future__ import annotations

import os
import shutil
import uuid

from strata.build.gptwrite import NewPartition, align, gpt_writes, place
from strata.build.spec import Verity
from strata.build.verity import (
    BLOCK_SIZE,
    VerityParams,
    derive_uuid,
    format_hash_tree,
    partition_uuid,
    seed_from_digest,
)
from strata.errors import ErrorKind, StrataError
from strata.images.gpt import FLAG_READ_ONLY, PartitionRole, type_uuid_for
from strata.record import record

#: repart's VERITY_SIG_SIZE: a signature partition is 16 KiB
SIGNATURE_PARTITION_SIZE = 16 * 1024

#: tool -> Debian package
TOOL_PACKAGES = {"veritysetup": "cryptsetup-bin", "openssl": "openssl"}


def tools(verity: Verity) -> tuple[str, ...]:
    if verity is Verity.SIGNED:
        return ("veritysetup", "openssl")
    return ("veritysetup",) if verity is Verity.HASH else ()


@record
class DdiPartition:
    role: str  # "root", "root-verity", "root-verity-sig"
    label: str
    uuid: str
    offset: int
    size: int


@record
class DdiInfo:
    """What make_ddi wrote: for the build report and the tests."""

    architecture: str
    verity: Verity
    root_hash: str | None
    disk_uuid: str
    partitions: tuple[DdiPartition, ...]
    certificate_fingerprint: str | None = None


def require_tools(verity: Verity) -> None:
    for tool in tools(verity):
        if shutil.which(tool) is None:
            package = TOOL_PACKAGES[tool]
            raise StrataError(f"{tool} not found: it is needed to build {verity.value} disk "
                              "images", hint=f"install the Debian package {package} "
                              f"(apt-get install {package})", kind=ErrorKind.NOT_FOUND)


def _sha256(path: str) -> bytes:
    import hashlib

    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").digest()


def _pad(path: str, to: int = BLOCK_SIZE) -> int:
    """Extend a file with zeros to a multiple of `to`; its new size."""
    size = os.path.getsize(path)
    padded = align(size, to)
    if padded != size:
        os.truncate(path, padded)
    return padded


def _copy_into(dst_fd: int, src: str, offset: int) -> None:
    with open(src, "rb") as f:
        pos = offset
        while chunk := f.read(1 << 20):
            os.pwrite(dst_fd, chunk, pos)
            pos += len(chunk)


def layout_partitions(*, architecture: str, verity: Verity, seed: bytes, fs_size: int,
                      hash_size: int, root_hash: bytes | None) -> tuple[list[NewPartition], int]:
    """The partitions of the image and the disk size. Pure."""
    root_type = type_uuid_for(PartitionRole.ROOT, architecture)
    kinds: list[tuple[PartitionRole, str, int]] = [(PartitionRole.ROOT, "", fs_size)]
    if verity is not Verity.NONE:
        kinds.append((PartitionRole.ROOT_VERITY, "-verity", hash_size))
    if verity is Verity.SIGNED:
        kinds.append((PartitionRole.ROOT_VERITY_SIG, "-verity-sig", SIGNATURE_PARTITION_SIZE))
    offsets, disk = place([size for _r, _s, size in kinds])
    parts = []
    for (role, suffix, size), offset in zip(kinds, offsets, strict=True):
        type_uuid = type_uuid_for(role, architecture)
        if role is PartitionRole.ROOT and root_hash is not None:
            puuid = uuid.UUID(bytes=root_hash[:16])
        elif role is PartitionRole.ROOT_VERITY and root_hash is not None:
            puuid = uuid.UUID(bytes=root_hash[-16:])
        else:
            puuid = partition_uuid(seed, type_uuid)
        flags = FLAG_READ_ONLY if role is not PartitionRole.ROOT_VERITY_SIG else 0
        parts.append(NewPartition(type_uuid=type_uuid, uuid=puuid,
                                  label=f"root-{architecture}{suffix}", offset=offset,
                                  size=align(size), flags=flags))
    assert root_type == parts[0].type_uuid
    return parts, disk


def make_ddi(fs_image: str, out: str, *, architecture: str, verity: Verity,
             key: str | None = None, certificate: str | None = None) -> DdiInfo:
    """Write a DDI to `out` (created or replaced) holding the file system image `fs_image`
    (padded in place to 4 KiB). Temporary files go next to `out`."""
    import tempfile

    if verity is Verity.SIGNED and (key is None or certificate is None):
        raise StrataError("a signed disk image needs a key and a certificate",
                          kind=ErrorKind.USAGE)
    require_tools(verity)
    fs_size = _pad(fs_image)
    seed = seed_from_digest(_sha256(fs_image))
    work = tempfile.mkdtemp(prefix=".ddi-", dir=os.path.dirname(os.path.abspath(out)))
    try:
        root_hash = None
        hash_file = os.path.join(work, "hash.img")
        hash_size = 0
        sig_json = None
        fingerprint = None
        if verity is not Verity.NONE:
            root_hash = format_hash_tree(fs_image, hash_file, VerityParams.from_seed(seed))
            hash_size = _pad(hash_file)
        if verity is Verity.SIGNED:
            from strata.build.sign import sign_root_hash

            assert root_hash is not None and key is not None and certificate is not None
            sig_json = sign_root_hash(root_hash, key=key, certificate=certificate,
                                      workdir=work)
            if len(sig_json) + 1 > SIGNATURE_PARTITION_SIZE:
                raise StrataError(f"the verity signature ({len(sig_json)} bytes) does not fit "
                                  f"in {SIGNATURE_PARTITION_SIZE} bytes",
                                  hint="use a smaller key or a certificate without extras",
                                  kind=ErrorKind.INVALID)
            import json

            fingerprint = json.loads(sig_json)["certificateFingerprint"]
        parts, disk = layout_partitions(architecture=architecture, verity=verity, seed=seed,
                                        fs_size=fs_size, hash_size=hash_size,
                                        root_hash=root_hash)
        disk_uuid = derive_uuid(seed, "disk-uuid")
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            os.ftruncate(fd, disk)
            _copy_into(fd, fs_image, parts[0].offset)
            if root_hash is not None:
                _copy_into(fd, hash_file, parts[1].offset)
            if sig_json is not None:
                os.pwrite(fd, sig_json.ljust(SIGNATURE_PARTITION_SIZE, b"\0"), parts[2].offset)
            for offset, blob in gpt_writes(disk, disk_uuid, parts):
                os.pwrite(fd, blob, offset)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as e:
        raise StrataError.from_os(e, f"writing the disk image {out}") from e
    finally:
        shutil.rmtree(work, ignore_errors=True)
    roles = ("root", "root-verity", "root-verity-sig")
    return DdiInfo(architecture=architecture, verity=verity,
                   root_hash=root_hash.hex() if root_hash is not None else None,
                   disk_uuid=str(disk_uuid),
                   partitions=tuple(DdiPartition(role=r, label=p.label, uuid=str(p.uuid),
                                                 offset=p.offset, size=p.size)
                                    for r, p in zip(roles, parts, strict=False)),
                   certificate_fingerprint=fingerprint)
