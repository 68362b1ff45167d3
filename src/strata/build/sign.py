"""Signing a verity root hash the way systemd-repart does, with openssl and key files.

repart signs the lowercase hex string of the root hash with PKCS7_sign(certificate, key,
PKCS7_DETACHED|PKCS7_NOATTR|PKCS7_BINARY) and stores the DER signature, base64, in the signature
partition's JSON next to the root hash and the sha256 fingerprint of the DER certificate:
`{"rootHash":…,"certificateFingerprint":…,"signature":…}`, compact, NUL-padded to the partition
size. `openssl smime -sign -binary -noattr -outform DER` is that PKCS7_sign call (detached is
smime's default; -noattr leaves out the signing time, so an RSA signature is the same every
time and the image reproducible; ECDSA signatures are randomised by nature).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os

from strata.errors import ErrorKind, StrataError
from strata.images.verity import certificate_der, first_certificate_pem


def smime_sign_argv(content: str, key: str, certificate: str, out: str) -> list[str]:
    """openssl smime -sign: a detached DER PKCS#7 signature of `content`, no attributes."""
    return ["openssl", "smime", "-sign", "-binary", "-noattr", "-outform", "DER",
            "-in", content, "-signer", certificate, "-inkey", key, "-out", out]


def certificate_fingerprint(pem: str) -> str:
    """sha256 of the DER certificate, hex (repart's x509_fingerprint)."""
    return hashlib.sha256(certificate_der(pem)).hexdigest()


def signature_json(root_hash: bytes, fingerprint: str, signature: bytes) -> bytes:
    """The signature partition's JSON, as sd_json_variant_format(v, 0) writes it."""
    return json.dumps({"rootHash": root_hash.hex(), "certificateFingerprint": fingerprint,
                       "signature": base64.b64encode(signature).decode("ascii")},
                      separators=(",", ":")).encode("ascii")


def read_certificate(path: str) -> str:
    """The first PEM certificate in `path`; a clear error for a missing or wrong file."""
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            text = f.read()
    except OSError as e:
        raise StrataError.from_os(e, f"verity certificate {path}") from e
    pem = first_certificate_pem(text)
    if pem is None:
        raise StrataError(f"{path}: not a PEM certificate (no BEGIN CERTIFICATE block)",
                          kind=ErrorKind.INVALID)
    return pem


def sign_root_hash(root_hash: bytes, *, key: str, certificate: str, workdir: str) -> bytes:
    """The signature partition's JSON for `root_hash`, signed with the key and certificate
    files (PEM)."""
    from strata.run import run

    pem = read_certificate(certificate)
    if not os.path.isfile(key):
        raise StrataError(f"verity key {key}: No such file", kind=ErrorKind.NOT_FOUND)
    content = os.path.join(workdir, "roothash.txt")
    out = os.path.join(workdir, "roothash.p7s")
    with open(content, "w", encoding="ascii") as f:
        f.write(root_hash.hex())
    try:
        run(smime_sign_argv(content, key, certificate, out))
    except StrataError as e:
        raise StrataError(f"signing the root hash with {key} and {certificate} failed: "
                          f"{e.message}", hint="the key must be the certificate's private key, "
                          "in PEM without a passphrase", kind=ErrorKind.INVALID) from e
    with open(out, "rb") as f:
        signature = f.read()
    return signature_json(root_hash, certificate_fingerprint(pem), signature)
