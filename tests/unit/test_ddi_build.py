"""DDI building blocks: repart's derivations (checked against systemd-repart itself), the
veritysetup and openssl argv builders, the signature JSON, signing with real keys, the layout,
and the `output:` keys of a spec."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from strata.build.ddi import SIGNATURE_PARTITION_SIZE, layout_partitions
from strata.build.sign import (
    certificate_fingerprint,
    read_certificate,
    sign_root_hash,
    signature_json,
    smime_sign_argv,
)
from strata.build.spec import OutputFormat, Verity, parse_spec
from strata.build.verity import (
    VerityParams,
    derive_salt,
    derive_uuid,
    format_argv,
    make_v4,
    partition_uuid,
    seed_from_digest,
)
from strata.errors import StrataError
from strata.images.gpt import FLAG_READ_ONLY, PartitionRole, type_uuid_for
from strata.images.verity import VeritySignature, verify_signature

SEED = bytes.fromhex("0123456789abcdef0123456789abcdef")

# What systemd-repart 252 gives for --seed=0123456789abcdef0123456789abcdef (see
# test_derivations_match_systemd_repart, which recomputes them when repart is installed)
REPART_DISK = "6913f4b6-6690-4a57-a202-f1b53c56dbdf"
REPART_ROOT = "9e90c9c3-c7e8-44f2-bf19-9ae2689de795"
REPART_SIG = "ca977224-9a98-40c9-bef7-eae884d35446"


def make_keys(base: Path, cn: str = "strata test") -> tuple[Path, Path]:
    """A throwaway RSA key and self-signed certificate (PEM)."""
    base.mkdir(parents=True, exist_ok=True)
    key, cert = base / f"{cn.replace(' ', '-')}.key", base / f"{cn.replace(' ', '-')}.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(key), "-out", str(cert), "-days", "3650", "-subj", f"/CN={cn}"],
                   capture_output=True, check=True)
    return key, cert


def test_make_v4() -> None:
    u = make_v4(bytes(range(32)))
    assert u.version == 4 and u.variant == uuid.RFC_4122
    assert u.bytes[:6] == bytes(range(6)) and u.bytes[9:] == bytes(range(9, 16))
    assert make_v4(b"\xff" * 16) == uuid.UUID("ffffffff-ffff-4fff-bfff-ffffffffffff")


def test_derivations_are_repart_s() -> None:
    assert str(derive_uuid(SEED, "disk-uuid")) == REPART_DISK
    assert str(partition_uuid(SEED, type_uuid_for(PartitionRole.ROOT, "x86-64"))) == REPART_ROOT
    assert str(partition_uuid(SEED, type_uuid_for(PartitionRole.ROOT_VERITY_SIG, "x86-64"))
               ) == REPART_SIG
    assert derive_salt(SEED) == hmac.new(SEED, b"verity-salt", hashlib.sha256).digest()
    p = VerityParams.from_seed(SEED)
    assert p.salt == derive_salt(SEED) and p.uuid == derive_uuid(SEED, "verity-uuid")


@pytest.mark.skipif(shutil.which("systemd-repart") is None, reason="systemd-repart missing")
def test_derivations_match_systemd_repart(tmp_path: Path) -> None:
    defs = tmp_path / "defs"
    defs.mkdir()
    (defs / "10-root.conf").write_text("[Partition]\nType=root-x86-64\nSizeMinBytes=1M\n")
    (defs / "30-sig.conf").write_text("[Partition]\nType=root-x86-64-verity-sig\n"
                                      "SizeMinBytes=16K\nSizeMaxBytes=16K\n")
    img = tmp_path / "img.raw"
    subprocess.run(["systemd-repart", "--empty=create", "--size=auto", f"--seed={SEED.hex()}",
                    f"--definitions={defs}", "--dry-run=no", str(img)], capture_output=True,
                   check=True)
    dump = json.loads(subprocess.run(["sfdisk", "--json", str(img)], capture_output=True,
                                     text=True, check=True).stdout)["partitiontable"]
    assert dump["id"].lower() == REPART_DISK
    assert [q["uuid"].lower() for q in dump["partitions"]] == [REPART_ROOT, REPART_SIG]


def test_seed_depends_on_the_content_only() -> None:
    a, b = seed_from_digest(b"\1" * 32), seed_from_digest(b"\2" * 32)
    assert a == seed_from_digest(b"\1" * 32) and a != b and len(a) == 16


def test_format_argv() -> None:
    p = VerityParams(salt=b"\xab" * 32, uuid=uuid.UUID(int=5))
    assert format_argv("fs.img", "hash.img", p, "rh") == [
        "veritysetup", "format", "--hash=sha256", "--format=1", "--data-block-size=4096",
        "--hash-block-size=4096", "--salt=" + "ab" * 32,
        "--uuid=00000000-0000-0000-0000-000000000005", "--root-hash-file=rh", "fs.img",
        "hash.img"]


def test_smime_sign_argv() -> None:
    assert smime_sign_argv("in", "k.pem", "c.pem", "out") == [
        "openssl", "smime", "-sign", "-binary", "-noattr", "-outform", "DER", "-in", "in",
        "-signer", "c.pem", "-inkey", "k.pem", "-out", "out"]


def test_signature_json_is_repart_s() -> None:
    blob = signature_json(bytes(range(32)), "ab" * 32, b"\xff\xfe/+")
    assert blob == (b'{"rootHash":"' + bytes(range(32)).hex().encode()
                    + b'","certificateFingerprint":"' + b"ab" * 32
                    + b'","signature":"//4vKw=="}')


@pytest.mark.parametrize(("verity", "roles"), [
    (Verity.SIGNED, ["root", "root-verity", "root-verity-sig"]),
    (Verity.HASH, ["root", "root-verity"]),
    (Verity.NONE, ["root"]),
])
def test_layout_partitions(verity: Verity, roles: list[str]) -> None:
    root_hash = bytes(range(32)) if verity is not Verity.NONE else None
    parts, disk = layout_partitions(architecture="arm64", verity=verity, seed=SEED,
                                    fs_size=8192, hash_size=4096, root_hash=root_hash)
    assert [p.label for p in parts] == [f"root-arm64{r[4:]}" for r in roles]
    assert [p.type_uuid for p in parts] == [
        type_uuid_for(PartitionRole(r), "arm64") for r in roles]
    assert [p.flags for p in parts] == [FLAG_READ_ONLY, FLAG_READ_ONLY, 0][:len(roles)]
    if root_hash is not None:
        assert parts[0].uuid.bytes == root_hash[:16] and parts[1].uuid.bytes == root_hash[16:]
    else:
        assert parts[0].uuid == partition_uuid(SEED, type_uuid_for(PartitionRole.ROOT,
                                                                    "arm64"))
    if verity is Verity.SIGNED:
        assert parts[2].size == SIGNATURE_PARTITION_SIZE
    end = parts[-1].offset + parts[-1].size
    assert disk % 4096 == 0 and 33 * 512 <= disk - end < 33 * 512 + 4096  # the backup table


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl missing")
def test_sign_and_verify_round_trip(tmp_path: Path) -> None:
    key, cert = make_keys(tmp_path / "a")
    _other_key, other = make_keys(tmp_path / "b", "someone else")
    work = tmp_path / "work"
    work.mkdir()
    root_hash = hashlib.sha256(b"data").digest()
    blob = sign_root_hash(root_hash, key=str(key), certificate=str(cert), workdir=str(work))
    data = json.loads(blob)
    assert list(data) == ["rootHash", "certificateFingerprint", "signature"]
    assert data["rootHash"] == root_hash.hex()
    der = subprocess.run(["openssl", "x509", "-in", str(cert), "-outform", "DER"],
                         capture_output=True, check=True).stdout
    assert data["certificateFingerprint"] == hashlib.sha256(der).hexdigest()
    assert certificate_fingerprint(read_certificate(str(cert))) == hashlib.sha256(der).hexdigest()
    # reproducible with an RSA key: no signing time, deterministic padding
    again = sign_root_hash(root_hash, key=str(key), certificate=str(cert), workdir=str(work))
    assert again == blob
    sig = VeritySignature(root_hash=root_hash, signature=base64.b64decode(data["signature"]),
                          certificate_fingerprint=data["certificateFingerprint"])
    assert verify_signature(sig, [str(cert)]) is None
    assert verify_signature(sig, [str(other), str(cert)]) is None
    why = verify_signature(sig, [str(other)])
    assert why is not None and "does not verify" in why and "signer certificate not found" in why
    forged = VeritySignature(root_hash=hashlib.sha256(b"other").digest(),
                             signature=sig.signature, certificate_fingerprint=None)
    assert "does not verify" in (verify_signature(forged, [str(cert)]) or "")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl missing")
def test_sign_with_a_key_that_is_not_the_certificate_s(tmp_path: Path) -> None:
    key, _cert = make_keys(tmp_path / "a")
    _key, cert = make_keys(tmp_path / "b", "other")
    with pytest.raises(StrataError, match=r"signing the root hash .* failed"):
        sign_root_hash(b"\1" * 32, key=str(key), certificate=str(cert), workdir=str(tmp_path))
    (tmp_path / "x.crt").write_text("not a certificate\n")
    with pytest.raises(StrataError, match="not a PEM certificate"):
        read_certificate(str(tmp_path / "x.crt"))


SPEC = """\
name: app
version: "1"
output:
{output}"""


def spec_output(tmp_path: Path, output: str) -> object:
    path = tmp_path / "app.yaml"
    text = SPEC.format(output="".join(f"  {line}\n" for line in output.splitlines()))
    return parse_spec(text, path).output


@pytest.mark.parametrize(("output", "fs", "verity", "keyed"), [
    ("format: ddi", OutputFormat.EROFS, Verity.HASH, False),
    ("format: ddi\nfilesystem: squashfs\ncompression: xz", OutputFormat.SQUASHFS, Verity.HASH,
     False),
    ("format: ddi\nkey: k.pem\ncertificate: c.pem", OutputFormat.EROFS, Verity.SIGNED, True),
    ("format: ddi\nverity: signed\nkey: /abs/k.pem\ncertificate: c.pem", OutputFormat.EROFS,
     Verity.SIGNED, True),
    ("format: ddi\nverity: none", OutputFormat.EROFS, Verity.NONE, False),
    ("format: erofs", OutputFormat.EROFS, Verity.NONE, False),
])
def test_spec_ddi(tmp_path: Path, output: str, fs: OutputFormat, verity: Verity,
                  keyed: bool) -> None:
    o = spec_output(tmp_path, output)
    assert o.fs_format is fs and o.verity is verity  # type: ignore[attr-defined]
    if keyed:
        assert o.certificate == tmp_path / "c.pem"  # type: ignore[attr-defined]
        assert o.key in (tmp_path / "k.pem", Path("/abs/k.pem"))  # type: ignore[attr-defined]


@pytest.mark.parametrize(("output", "message"), [
    ("format: erofs\nverity: hash", "output.verity: is an option of format: ddi"),
    ("format: squashfs\nkey: k.pem", "output.key: is an option of format: ddi"),
    ("format: ddi\nfilesystem: directory", "holds erofs or squashfs, not directory"),
    ("format: ddi\nverity: signed\nkey: k.pem", "output.certificate: missing"),
    ("format: ddi\nverity: hash\nkey: k.pem\ncertificate: c.pem", "only used with verity: "
     "signed"),
    ("format: ddi\nverity: maybe", "expected one of signed, hash, none"),
    ("format: ddi\ncompression: xz", "'xz' is not available for erofs"),
    ("format: ddi\nfilesystem: squashfs\ncluster_size: 65536", "is an erofs option"),
])
def test_spec_ddi_errors(tmp_path: Path, output: str, message: str) -> None:
    with pytest.raises(StrataError) as e:
        spec_output(tmp_path, output)
    assert message in str(e.value)
