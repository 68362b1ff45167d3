"""dm-verity protected disk images: finding the hash and signature partitions, the root hash,
and checking them without device-mapper.

A Discoverable Partitions Specification image protects a data partition (root or usr) with a
verity hash partition (a dm-verity hash tree behind a veritysetup superblock) and optionally a
signature partition holding JSON `{"rootHash": hex, "certificateFingerprint": hex,
"signature": base64 PKCS#7}`, NUL-padded, as systemd-repart writes it. systemd derives the
data partition's UUID from the first 128 bits of the root hash and the hash partition's from
the last 128 bits.

How a partition was found is systemd's notion of protection (dissect_image()): with a
signature partition it is *signed*, with only a hash partition *verity*, else *unprotected*.
Where the root hash comes from: the signature (signed), else the two partition UUIDs (a
hash-only image: that protects against corruption, not against someone who rewrites the image
and its UUIDs; authenticity needs a signature).

Trust is systemd's userspace check (validate_signature_userspace()): the PKCS#7 signature of
the root hash's hex string must verify with one of the `.crt` files in /etc/verity.d,
/run/verity.d, /usr/local/lib/verity.d, /usr/lib/verity.d (the first file of a name wins, an
empty one or a link to /dev/null masks it), with no chain validation and no certificate taken
from the signature itself (PKCS7_NOINTERN|PKCS7_NOVERIFY). `openssl smime -verify` does the
same. The hash tree is checked with `veritysetup verify`.

Parsing and argv builders are pure; `read_verity`, `trusted_certificates`, `verify_signature`
and `verify_hash_tree` do I/O.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import os
import stat
import struct
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

from strata.errors import ErrorKind, StrataError
from strata.images.gpt import Partition, PartitionRole
from strata.record import record

if TYPE_CHECKING:
    from strata.images.detect import ImageLayout

#: systemd refuses signature partitions above this size (dissected_image_load_verity_sig_partition)
MAX_SIGNATURE_PARTITION = 4 * 1024 * 1024

#: where trusted certificates are looked for, highest priority first (CONF_PATHS("verity.d"))
CERTIFICATE_DIRS = ("/etc/verity.d", "/run/verity.d", "/usr/local/lib/verity.d",
                    "/usr/lib/verity.d")

DM_CONTROL = "/dev/mapper/control"

VERITY_MAGIC = b"verity\0\0"
_SUPERBLOCK = struct.Struct("<8sII16s32sIIQH6s256s168x")  # 512 bytes, cryptsetup's verity_sb

_ROLES = {
    "root": (PartitionRole.ROOT, PartitionRole.ROOT_VERITY, PartitionRole.ROOT_VERITY_SIG),
    "usr": (PartitionRole.USR, PartitionRole.USR_VERITY, PartitionRole.USR_VERITY_SIG),
}


class Protection(enum.Enum):
    """How a data partition was found (dissect_image()'s found_flags for it)."""

    UNPROTECTED = "unprotected"
    VERITY = "verity"
    SIGNED = "signed"


@record
class VeritySignature:
    """The contents of a verity signature partition."""

    root_hash: bytes
    signature: bytes  # DER PKCS#7, detached, over the lowercase hex root hash
    certificate_fingerprint: str | None  # sha256 of the signer's DER certificate, hex


@record
class VeritySuperblock:
    """The veritysetup superblock at the start of a hash partition (the fields we use)."""

    uuid: uuid.UUID
    algorithm: str
    hash_type: int
    data_block_size: int
    hash_block_size: int
    data_blocks: int
    salt: bytes

    @property
    def data_size(self) -> int:
        return self.data_blocks * self.data_block_size


@record
class ImageVerity:
    """One data partition of an image with its verity partitions."""

    designator: str  # "root" or "usr"
    data: Partition
    hash: Partition
    superblock: VeritySuperblock
    signature_partition: Partition | None
    signature: VeritySignature | None
    #: what the hash tree must hash to: the signature's, else the partition UUIDs'
    root_hash: bytes

    @property
    def protection(self) -> Protection:
        return Protection.SIGNED if self.signature_partition is not None else Protection.VERITY

    @property
    def root_hash_hex(self) -> str:
        return self.root_hash.hex()


# --------------------------------------------------------------------------------------------
# Pure parsing


def parse_signature(blob: bytes, *, name: str) -> VeritySignature:
    """The JSON of a signature partition (all of its bytes), checked as systemd checks it:
    NUL padding after the JSON only, a hex `rootHash` and a base64 `signature`. Raises
    StrataError(INVALID) "<name>: ..."."""

    def bad(why: str) -> StrataError:
        return StrataError(f"{name}: verity signature partition: {why}", kind=ErrorKind.INVALID)

    nul = blob.find(b"\0")
    if nul >= 0:
        if blob[nul:].strip(b"\0"):
            raise bad("the data contains an embedded NUL byte")
        blob = blob[:nul]
    try:
        data = json.loads(blob.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise bad(f"not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise bad("not a JSON object")
    rh = data.get("rootHash")
    if not isinstance(rh, str):
        raise bad("the JSON object lacks a 'rootHash' string")
    try:
        root_hash = bytes.fromhex(rh)
    except ValueError:
        raise bad(f"rootHash '{rh}' is not hexadecimal") from None
    if len(root_hash) < 16:
        raise bad(f"rootHash '{rh}' is too short")
    sig = data.get("signature")
    if not isinstance(sig, str):
        raise bad("the JSON object lacks a 'signature' string")
    try:
        signature = base64.b64decode(sig, validate=True)
    except binascii.Error:
        raise bad("signature is not valid base64") from None
    fp = data.get("certificateFingerprint")
    return VeritySignature(root_hash=root_hash, signature=signature,
                           certificate_fingerprint=fp if isinstance(fp, str) else None)


def parse_superblock(block: bytes, *, name: str) -> VeritySuperblock:
    """The veritysetup (format 1) superblock at the start of a hash partition."""
    if len(block) < _SUPERBLOCK.size or block[:8] != VERITY_MAGIC:
        raise StrataError(f"{name}: no veritysetup superblock", kind=ErrorKind.INVALID)
    (_magic, version, hash_type, uuid_bytes, algorithm, data_bs, hash_bs, data_blocks,
     salt_size, _pad, salt) = _SUPERBLOCK.unpack_from(block)
    if version != 1 or salt_size > len(salt):
        raise StrataError(f"{name}: unsupported veritysetup superblock (version {version})",
                          kind=ErrorKind.INVALID)
    for bs in (data_bs, hash_bs):
        if bs < 512 or bs & (bs - 1):
            raise StrataError(f"{name}: bad verity block size {bs}", kind=ErrorKind.INVALID)
    return VeritySuperblock(uuid=uuid.UUID(bytes=uuid_bytes),
                            algorithm=algorithm.rstrip(b"\0").decode("ascii", "replace"),
                            hash_type=hash_type, data_block_size=data_bs,
                            hash_block_size=hash_bs, data_blocks=data_blocks,
                            salt=salt[:salt_size])


def root_hash_from_uuids(data: Partition, hash_part: Partition) -> bytes:
    """The root hash a hash-only image states through its partition UUIDs (first and last 128
    bits); only a sha256 root hash fits exactly."""
    return data.uuid.bytes + hash_part.uuid.bytes


def uuids_match(root_hash: bytes, data: Partition, hash_part: Partition) -> bool:
    """Whether the partition UUIDs are derived from `root_hash` as systemd-repart derives
    them (systemd itself uses that to pick partitions when it knows the root hash first)."""
    return (data.uuid.bytes == root_hash[:16] and hash_part.uuid.bytes == root_hash[-16:])


def _pick(parts: Sequence[Partition], role: PartitionRole, arch: str | None) -> Partition | None:
    """The partition of `role` for the data partition's architecture (no-auto ones skipped);
    of several, the one with the newest label, as dissect's per-designator choice."""
    from strata.versions import strverscmp_improved

    best: Partition | None = None
    for p in parts:
        if p.role is not role or p.no_auto or (arch is not None and p.arch != arch):
            continue
        if best is None or strverscmp_improved(p.label, best.label) > 0:
            best = p
    return best


# --------------------------------------------------------------------------------------------
# Reading an image


def read_verity(layout: ImageLayout) -> tuple[ImageVerity, ...]:
    """The verity setup of each data partition of a GPT image that has one (root and/or
    usr), reading the hash superblocks and the signature partitions. A broken one raises
    StrataError(INVALID) naming the image."""
    if layout.partition is None:
        return ()
    out: list[ImageVerity] = []
    for data in (layout.partition, layout.usr_partition):
        if data is None or data.role.value not in _ROLES:
            continue
        out_one = _read_one(layout.path, layout.partitions, data)
        if out_one is not None:
            out.append(out_one)
    return tuple(out)


def _read_one(path: str, parts: Sequence[Partition], data: Partition) -> ImageVerity | None:
    designator = data.role.value
    _data_role, hash_role, sig_role = _ROLES[designator]
    hash_part = _pick(parts, hash_role, data.arch)
    if hash_part is None:
        return None
    sig_part = _pick(parts, sig_role, data.arch)
    try:
        with open(path, "rb") as f:
            f.seek(hash_part.offset)
            sb = parse_superblock(f.read(_SUPERBLOCK.size),
                                  name=f"{path}: {hash_part.describe()}")
            sig = None
            if sig_part is not None:
                if sig_part.size > MAX_SIGNATURE_PARTITION:
                    raise StrataError(f"{path}: {sig_part.describe()} is larger than 4 MiB, "
                                      "refusing", kind=ErrorKind.INVALID)
                f.seek(sig_part.offset)
                blob = f.read(sig_part.size)
                if len(blob) != sig_part.size:
                    raise StrataError(f"{path}: {sig_part.describe()} is truncated",
                                      kind=ErrorKind.INVALID)
                sig = parse_signature(blob, name=path)
    except OSError as e:
        raise StrataError.from_os(e, path) from e
    if sb.data_size > data.size:
        raise StrataError(f"{path}: the verity hash tree covers {sb.data_size} bytes, "
                          f"{data.describe()} has only {data.size}", kind=ErrorKind.INVALID)
    root_hash = sig.root_hash if sig is not None else root_hash_from_uuids(data, hash_part)
    return ImageVerity(designator=designator, data=data, hash=hash_part, superblock=sb,
                       signature_partition=sig_part, signature=sig, root_hash=root_hash)


# --------------------------------------------------------------------------------------------
# Trust


def trusted_certificates(root: str = "/") -> list[str]:
    """conf_files_list(".crt", CONF_PATHS("verity.d")) below `root`: the `.crt` regular files,
    sorted by file name, the first directory holding a name winning; a masked name (empty
    file or symlink to /dev/null) is left out."""
    chosen: dict[str, str] = {}
    for d in CERTIFICATE_DIRS:
        full = os.path.join(root, d.lstrip("/"))
        try:
            names = os.listdir(full)
        except OSError:
            continue
        for n in names:
            if not n.endswith(".crt") or n.startswith(".") or n in chosen:
                continue
            chosen[n] = os.path.join(full, n)
    out = []
    for n in sorted(chosen):
        p = chosen[n]
        if os.path.islink(p) and os.readlink(p) == "/dev/null":
            continue  # masked
        try:
            st = os.stat(p)
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode) or st.st_size == 0:
            continue  # not a regular file, or masked by an empty one
        out.append(p)
    return out


def first_certificate_pem(text: str) -> str | None:
    """The first PEM certificate block of `text` (PEM_read_X509 reads one per file)."""
    begin = text.find("-----BEGIN CERTIFICATE-----")
    if begin < 0:
        return None
    end_marker = "-----END CERTIFICATE-----"
    end = text.find(end_marker, begin)
    if end < 0:
        return None
    return text[begin:end + len(end_marker)] + "\n"


def certificate_der(pem: str) -> bytes:
    """The DER bytes of a PEM certificate block."""
    body = "".join(line for line in pem.strip().splitlines() if not line.startswith("-----"))
    return base64.b64decode(body)


def smime_verify_argv(signature: str, content: str, certfile: str) -> list[str]:
    """openssl smime -verify of a detached DER PKCS#7 signature over `content`, accepting
    exactly the signers in `certfile`: PKCS7_verify(..., PKCS7_NOINTERN|PKCS7_NOVERIFY), as
    systemd's userspace check."""
    return ["openssl", "smime", "-verify", "-binary", "-inform", "DER", "-in", signature,
            "-content", content, "-certfile", certfile, "-nointern", "-noverify",
            "-out", os.devnull]


def openssl_reason(stderr: str) -> str:
    """The reason of openssl's last error line ("…:error:CODE:LIB:FUNC:REASON:FILE:LINE:"),
    or its last line."""
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    for line in reversed(lines):
        fields = line.split(":")
        if len(fields) >= 6 and fields[1] == "error":
            return fields[5]
    return lines[-1] if lines else ""


def no_certificates_message(root: str = "/") -> str:
    where = ", ".join(CERTIFICATE_DIRS)
    return ("no trusted certificate (*.crt) in " + where
            + (f" below {root}" if root.rstrip("/") else ""))


def verify_signature(sig: VeritySignature, certificates: Sequence[str]) -> str | None:
    """Why `sig` does not verify with any of `certificates` (paths), or None when it does."""
    import tempfile

    from strata.run import run

    pems = []
    for path in certificates:
        try:
            with open(path, encoding="ascii", errors="replace") as f:
                pem = first_certificate_pem(f.read())
        except OSError:
            continue
        if pem is not None:
            pems.append(pem)  # systemd ignores a file it cannot read as a certificate
    if not pems:
        return "no readable certificate in " + ", ".join(certificates)
    with tempfile.TemporaryDirectory(prefix="strata-verity-") as tmp:
        files = {"sig": sig.signature, "content": sig.root_hash.hex().encode(),
                 "certs": "".join(pems).encode()}
        for fname, blob in files.items():
            with open(os.path.join(tmp, fname), "wb") as f:
                f.write(blob)
        proc = run(smime_verify_argv(*(os.path.join(tmp, n) for n in ("sig", "content",
                                                                        "certs"))),
                   check=False)
    if proc.returncode == 0:
        return None
    reason = openssl_reason((proc.stderr or b"").decode(errors="replace"))
    return ("its signature does not verify with any trusted certificate ("
            + ", ".join(certificates) + ")" + (f": {reason}" if reason else ""))


# --------------------------------------------------------------------------------------------
# The hash tree, and device-mapper


def dm_available() -> bool:
    """Whether dm-verity devices can be opened here (the device-mapper control node)."""
    return os.path.exists(DM_CONTROL)


def dm_unavailable_message() -> str:
    return (f"dm-verity is not available ({DM_CONTROL} missing); "
            "use --verify=userspace")


def verify_argv(data: str, hash_device: str, root_hash: str, *, hash_offset: int = 0
                ) -> list[str]:
    """veritysetup verify: hash every data block and check the whole tree up to `root_hash`
    (the superblock at `hash_offset` of `hash_device` gives the parameters)."""
    argv = ["veritysetup", "verify"]
    if hash_offset:
        argv.append(f"--hash-offset={hash_offset}")
    return [*argv, data, hash_device, root_hash]


def open_argv(data: str, name: str, hash_device: str, root_hash: str, *,
              signature: str | None = None) -> list[str]:
    """veritysetup open (a dm-verity device /dev/mapper/NAME); with `signature` the kernel
    checks the root hash signature against its keyring."""
    argv = ["veritysetup", "open"]
    if signature is not None:
        argv.append(f"--root-hash-signature={signature}")
    return [*argv, data, name, hash_device, root_hash]


def close_argv(name: str, *, deferred: bool = True) -> list[str]:
    """veritysetup close; deferred: the device goes away when its last user (the mount)
    does, as systemd's deferred remove."""
    return ["veritysetup", "close", *(["--deferred"] if deferred else []), name]


def verify_hash_tree(data_device: str, image: str, v: ImageVerity) -> str | None:
    """Check the whole hash tree of `v` for the data read through `data_device` (the device
    that will be mounted), the hash partition read from `image`. Returns why it fails."""
    from strata.run import run

    proc = run(verify_argv(data_device, image, v.root_hash_hex, hash_offset=v.hash.offset),
               check=False)
    if proc.returncode == 0:
        return None
    err = (proc.stderr or b"").decode(errors="replace").strip().splitlines()
    return err[-1] if err else f"veritysetup exited with status {proc.returncode}"
