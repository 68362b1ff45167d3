"""images.verity: signature partitions, veritysetup superblocks, trusted certificates, the
argv builders, and reading the verity setup of disk images made by build.ddi."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from strata.errors import StrataError
from strata.images import probe
from strata.images.gpt import Partition, PartitionRole
from strata.images.verity import (
    ImageVerity,
    Protection,
    close_argv,
    first_certificate_pem,
    open_argv,
    openssl_reason,
    parse_signature,
    parse_superblock,
    read_verity,
    root_hash_from_uuids,
    smime_verify_argv,
    trusted_certificates,
    uuids_match,
    verify_argv,
)

RH = bytes(range(32))
SIG = base64.b64encode(b"\x30\x82sig").decode()


def blob(obj: object, pad: int = 4096) -> bytes:
    return json.dumps(obj).encode().ljust(pad, b"\0")


def test_parse_signature() -> None:
    s = parse_signature(blob({"rootHash": RH.hex(), "certificateFingerprint": "ab",
                              "signature": SIG}), name="img")
    assert (s.root_hash, s.signature, s.certificate_fingerprint) == (RH, b"\x30\x82sig", "ab")
    # without padding, and without a fingerprint (systemd does not need one)
    s = parse_signature(json.dumps({"rootHash": RH.hex(), "signature": SIG}).encode(),
                        name="img")
    assert s.certificate_fingerprint is None


@pytest.mark.parametrize(("data", "why"), [
    (blob({"rootHash": RH.hex(), "signature": SIG})[:-1] + b"x", "embedded NUL"),
    (b"{not json" + bytes(10), "not valid JSON"),
    (b"[1, 2]", "not a JSON object"),
    (blob({"signature": SIG}), "lacks a 'rootHash'"),
    (blob({"rootHash": "xyz", "signature": SIG}), "not hexadecimal"),
    (blob({"rootHash": "abcd", "signature": SIG}), "too short"),
    (blob({"rootHash": RH.hex()}), "lacks a 'signature'"),
    (blob({"rootHash": RH.hex(), "signature": "!!notbase64"}), "not valid base64"),
])
def test_parse_signature_errors(data: bytes, why: str) -> None:
    with pytest.raises(StrataError) as e:
        parse_signature(data, name="img.raw")
    assert str(e.value).startswith("img.raw: verity signature partition: ") and why in str(e.value)


def superblock(**kw: int) -> bytes:
    import struct

    f = {"version": 1, "hash_type": 1, "data_bs": 4096, "hash_bs": 4096, "blocks": 10,
         "salt_size": 32, **kw}
    return struct.pack("<8sII16s32sIIQH6s256s168x", b"verity\0\0", f["version"],
                       f["hash_type"], uuid.UUID(int=7).bytes, b"sha256", f["data_bs"],
                       f["hash_bs"], f["blocks"], f["salt_size"], bytes(6), b"\xaa" * 256)


def test_parse_superblock() -> None:
    sb = parse_superblock(superblock(), name="h")
    assert (sb.uuid, sb.algorithm, sb.hash_type, sb.data_block_size, sb.data_blocks) == (
        uuid.UUID(int=7), "sha256", 1, 4096, 10)
    assert sb.salt == b"\xaa" * 32 and sb.data_size == 40960


@pytest.mark.parametrize(("block", "why"), [
    (b"\0" * 512, "no veritysetup superblock"),
    (superblock()[:100], "no veritysetup superblock"),
    (superblock(version=2), "unsupported"),
    (superblock(data_bs=1000), "bad verity block size 1000"),
])
def test_parse_superblock_errors(block: bytes, why: str) -> None:
    with pytest.raises(StrataError, match=why):
        parse_superblock(block, name="h")


@pytest.mark.skipif(shutil.which("veritysetup") is None, reason="veritysetup missing")
def test_parse_superblock_of_veritysetup(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.write_bytes(os.urandom(3 * 4096))
    subprocess.run(["veritysetup", "format", "--salt=" + "11" * 32,
                    "--uuid=12345678-1234-4234-8234-123456789abc", str(data),
                    str(tmp_path / "hash")], capture_output=True, check=True)
    sb = parse_superblock((tmp_path / "hash").read_bytes()[:512], name="hash")
    assert sb.uuid == uuid.UUID("12345678-1234-4234-8234-123456789abc")
    assert (sb.algorithm, sb.data_blocks, sb.salt) == ("sha256", 3, b"\x11" * 32)


def part(index: int, role: PartitionRole, u: uuid.UUID, offset: int = 0, size: int = 4096
         ) -> Partition:
    return Partition(index=index, type_uuid=uuid.UUID(int=0), uuid=u, label="", offset=offset,
                     size=size, flags=0, role=role, arch="x86-64")


def test_root_hash_from_uuids() -> None:
    data = part(1, PartitionRole.ROOT, uuid.UUID(bytes=RH[:16]))
    h = part(2, PartitionRole.ROOT_VERITY, uuid.UUID(bytes=RH[16:]))
    assert root_hash_from_uuids(data, h) == RH
    assert uuids_match(RH, data, h) and not uuids_match(bytes(32), data, h)


def write(path: Path, text: str | bytes = "x") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)


def test_trusted_certificates(tmp_path: Path) -> None:
    r = tmp_path
    write(r / "usr/lib/verity.d/a.crt")
    write(r / "usr/lib/verity.d/b.crt")
    write(r / "usr/lib/verity.d/c.crt")
    write(r / "usr/lib/verity.d/d.crt")
    write(r / "usr/lib/verity.d/notes.txt")
    write(r / "usr/lib/verity.d/.hidden.crt")
    write(r / "etc/verity.d/b.crt")  # /etc wins over /usr/lib
    write(r / "run/verity.d/c.crt", "")  # an empty file masks c
    (r / "etc/verity.d/d.crt").symlink_to("/dev/null")  # so does a link to /dev/null
    write(r / "usr/local/lib/verity.d/e.crt")
    (r / "usr/local/lib/verity.d/f.crt").mkdir()  # not a regular file
    assert trusted_certificates(str(r)) == [str(r / "usr/lib/verity.d/a.crt"),
                                            str(r / "etc/verity.d/b.crt"),
                                            str(r / "usr/local/lib/verity.d/e.crt")]
    assert trusted_certificates(str(tmp_path / "nothing")) == []


PEM = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"


@pytest.mark.parametrize(("text", "pem"), [
    (PEM, PEM + "\n"),
    ("junk\n" + PEM + "\n" + PEM.replace("AAAA", "BBBB"), PEM + "\n"),  # the first only
    ("-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n" + PEM, PEM + "\n"),
    ("-----BEGIN CERTIFICATE-----\nAAAA\n", None),
    ("nothing", None),
])
def test_first_certificate_pem(text: str, pem: str | None) -> None:
    assert first_certificate_pem(text) == pem


@pytest.mark.parametrize(("stderr", "reason"), [
    ("Verification failure\n40C7:error:10800080:PKCS7 routines:PKCS7_get0_signers:signer "
     "certificate not found:../crypto/pkcs7/pk7_smime.c:425:\n", "signer certificate not found"),
    ("something odd\n", "something odd"),
    ("", ""),
])
def test_openssl_reason(stderr: str, reason: str) -> None:
    assert openssl_reason(stderr) == reason


def test_argv_builders() -> None:
    assert smime_verify_argv("s", "c", "certs") == [
        "openssl", "smime", "-verify", "-binary", "-inform", "DER", "-in", "s", "-content", "c",
        "-certfile", "certs", "-nointern", "-noverify", "-out", os.devnull]
    assert verify_argv("/dev/loop1", "img", "ab") == ["veritysetup", "verify", "/dev/loop1",
                                                      "img", "ab"]
    assert verify_argv("d", "img", "ab", hash_offset=8192) == [
        "veritysetup", "verify", "--hash-offset=8192", "d", "img", "ab"]
    assert open_argv("d", "n", "h", "ab") == ["veritysetup", "open", "d", "n", "h", "ab"]
    assert open_argv("d", "n", "h", "ab", signature="s.p7s") == [
        "veritysetup", "open", "--root-hash-signature=s.p7s", "d", "n", "h", "ab"]
    assert close_argv("n") == ["veritysetup", "close", "--deferred", "n"]
    assert close_argv("n", deferred=False) == ["veritysetup", "close", "n"]


needs_tools = pytest.mark.skipif(
    any(shutil.which(t) is None for t in ("veritysetup", "openssl", "mkfs.erofs")),
    reason="veritysetup, openssl or mkfs.erofs missing")


def ddi(tmp_path: Path, verity: str) -> tuple[Path, object]:
    from strata.build.ddi import make_ddi
    from strata.build.spec import Verity
    from tests.unit.test_ddi_build import make_keys

    tree = tmp_path / "tree"
    write(tree / "usr/lib/extension-release.d/extension-release.img", "ID=_any\n")
    write(tree / "usr/share/blob", os.urandom(20000))
    fs = tmp_path / "fs.img"
    subprocess.run(["mkfs.erofs", "-T0", "-U", str(uuid.UUID(int=1)), "--all-root", "--quiet",
                    str(fs), str(tree)], capture_output=True, check=True)
    key, cert = make_keys(tmp_path / "keys")
    img = tmp_path / "img.raw"
    info = make_ddi(str(fs), str(img), architecture="x86-64", verity=Verity(verity),
                    key=str(key), certificate=str(cert))
    return img, info


@needs_tools
@pytest.mark.parametrize("verity", ["signed", "hash", "none"])
def test_read_verity_of_built_images(tmp_path: Path, verity: str) -> None:
    img, info = ddi(tmp_path, verity)
    layout = probe(str(img), arch="x86-64")
    found = read_verity(layout)
    if verity == "none":
        assert found == ()
        return
    (v,) = found
    assert isinstance(v, ImageVerity) and v.designator == "root"
    assert v.root_hash_hex == info.root_hash  # type: ignore[attr-defined]
    assert uuids_match(v.root_hash, v.data, v.hash)
    assert v.protection is (Protection.SIGNED if verity == "signed" else Protection.VERITY)
    assert (v.signature is not None) is (verity == "signed")
    assert v.superblock.data_size <= v.data.size and v.superblock.data_block_size == 4096


@needs_tools
def test_read_verity_refuses_a_broken_signature_partition(tmp_path: Path) -> None:
    img, _info = ddi(tmp_path, "signed")
    layout = probe(str(img), arch="x86-64")
    sig = next(p for p in layout.partitions if p.role is PartitionRole.ROOT_VERITY_SIG)
    with open(img, "r+b") as f:
        f.seek(sig.offset)
        f.write(b"{garbage")
    with pytest.raises(StrataError, match="verity signature partition: not valid JSON"):
        read_verity(layout)
    hashp = next(p for p in layout.partitions if p.role is PartitionRole.ROOT_VERITY)
    with open(img, "r+b") as f:
        f.seek(hashp.offset)
        f.write(b"\0" * 8)
    with pytest.raises(StrataError, match="no veritysetup superblock"):
        read_verity(layout)


@needs_tools
def test_read_candidate_carries_the_verity_setup(tmp_path: Path) -> None:
    from strata.discover import Extension
    from strata.engine.inspect import read_candidate
    from strata.engine.plan import dissect
    from strata.model import ExtClass, ImageType
    from strata.policy import SYSEXT_DEFAULT

    img, info = ddi(tmp_path, "signed")
    ext = Extension(name="img", path=str(img), type=ImageType.RAW, ext_class=ExtClass.SYSEXT,
                    read_only=True, mtime_us=0, crtime_us=0, search_dir="/var/lib/extensions")
    c = read_candidate(ext, ExtClass.SYSEXT, ("/usr", "/opt"))
    (v,) = c.verity
    assert v.root_hash_hex == info.root_hash  # type: ignore[attr-defined]
    assert c.valid_extension_tree and "/usr" in c.content
    why, uses = dissect(c, SYSEXT_DEFAULT)
    assert why is None and [(u.signed, u.required) for u in uses] == [(True, False)]
