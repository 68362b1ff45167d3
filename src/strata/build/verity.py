"""dm-verity hash trees for disk images: reproducible parameters and the veritysetup argv.

systemd-repart derives everything random from a 128-bit seed (--seed=) with HMAC-SHA256:
the verity salt is HMAC(seed, "verity-salt"), the superblock UUID HMAC(seed, "verity-uuid")
shaped as a v4 UUID, the disk GUID HMAC(seed, "disk-uuid"), and other partitions' UUIDs
HMAC(seed, type UUID). Strata does the same with a seed derived from the file system image's
sha256, so the same content gives the same disk image, byte for byte; after formatting, the data
and hash partition UUIDs come from the root hash (first and last 128 bits), as repart does.

Pure functions; `format_hash_tree` runs veritysetup.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid

from strata.record import record

#: dm-verity data and hash block size: repart's default (the file system sector size, 4096)
BLOCK_SIZE = 4096


def make_v4(raw: bytes) -> uuid.UUID:
    """systemd's id128_make_v4_uuid(): 16 bytes shaped as a version 4, variant 1 UUID."""
    b = bytearray(raw[:16])
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    return uuid.UUID(bytes=bytes(b))


def seed_from_digest(digest: bytes) -> bytes:
    """The 128-bit seed for an image whose file system has sha256 `digest`."""
    return make_v4(hashlib.sha256(b"strata-ddi-seed\0" + digest).digest()).bytes


def derive_uuid(seed: bytes, token: str | bytes) -> uuid.UUID:
    """repart's derive_uuid(): HMAC-SHA256 of `token` keyed by the seed, first half, as v4."""
    msg = token.encode() if isinstance(token, str) else token
    return make_v4(hmac.new(seed, msg, hashlib.sha256).digest())


def derive_salt(seed: bytes, token: str = "verity-salt") -> bytes:
    """repart's derive_salt(): the full 32-byte HMAC-SHA256."""
    return hmac.new(seed, token.encode(), hashlib.sha256).digest()


def partition_uuid(seed: bytes, type_uuid: uuid.UUID) -> uuid.UUID:
    """repart's partition_acquire_uuid() for the first partition of a type: HMAC(seed, the
    type UUID's 16 bytes as sd_id128_t holds them, i.e. big-endian)."""
    return derive_uuid(seed, type_uuid.bytes)


@record
class VerityParams:
    """The veritysetup format parameters (format 1, sha256, with a superblock)."""

    salt: bytes
    uuid: uuid.UUID
    data_block_size: int = BLOCK_SIZE
    hash_block_size: int = BLOCK_SIZE

    @classmethod
    def from_seed(cls, seed: bytes) -> VerityParams:
        return cls(salt=derive_salt(seed), uuid=derive_uuid(seed, "verity-uuid"))


def format_argv(data: str, hash_file: str, params: VerityParams, root_hash_file: str
                ) -> list[str]:
    """veritysetup format DATA HASH: write the hash tree (superblock first) to HASH and the
    root hash, 64 hex digits without newline, to `root_hash_file`."""
    return ["veritysetup", "format", "--hash=sha256", "--format=1",
            f"--data-block-size={params.data_block_size}",
            f"--hash-block-size={params.hash_block_size}",
            f"--salt={params.salt.hex()}", f"--uuid={params.uuid}",
            f"--root-hash-file={root_hash_file}", data, hash_file]


def format_hash_tree(data: str, hash_file: str, params: VerityParams) -> bytes:
    """Run veritysetup format; the root hash."""
    import os
    import tempfile

    from strata.errors import ErrorKind, StrataError
    from strata.run import run

    fd, rh = tempfile.mkstemp(prefix=".roothash-", dir=os.path.dirname(hash_file) or ".")
    os.close(fd)
    try:
        run(format_argv(data, hash_file, params, rh))
        with open(rh, encoding="ascii") as f:
            text = f.read().strip()
    finally:
        os.unlink(rh)
    try:
        root_hash = bytes.fromhex(text)
    except ValueError:
        root_hash = b""
    if len(root_hash) != 32:
        raise StrataError(f"veritysetup gave an unexpected root hash '{text}'",
                          kind=ErrorKind.SYSTEM)
    return root_hash
