"""Signing keys of a TUF repository, one file per role in a keys directory:

    <keys>/root.key  targets.key  snapshot.key  timestamp.key     PEM, PKCS#8, mode 0600
    <keys>/retired/<role>-<keyid:16>.key                           replaced by a rotation

Ed25519, generated on first use. A key file may be encrypted: its passphrase is read from
$STRATA_KEY_PASSPHRASE. Keys never live inside the repository directory (which is served as
is); the root key belongs offline once the repository is set up (see docs/fleet.md).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from strata import log
from strata.errors import ErrorKind, StrataError
from strata.fsutil import read_optional

if TYPE_CHECKING:
    from securesystemslib.signer import CryptoSigner

ROLES = ("root", "targets", "snapshot", "timestamp")
PASSPHRASE_ENV = "STRATA_KEY_PASSPHRASE"
RETIRED_DIR = "retired"


def key_path(keys_dir: str, role: str) -> str:
    return os.path.join(keys_dir, f"{role}.key")


def load(keys_dir: str, role: str) -> CryptoSigner | None:
    """The role's signer, None when it has no key file yet."""
    path = key_path(keys_dir, role)
    data = read_optional(path, "key ")
    return None if data is None else signer_from_pem(data, source=path)


def signer_from_pem(data: bytes, *, source: str) -> CryptoSigner:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    from securesystemslib.signer import CryptoSigner

    secret = os.environ.get(PASSPHRASE_ENV)
    try:
        private = load_pem_private_key(data, password=secret.encode() if secret else None)
        return CryptoSigner(private)
    except TypeError as e:
        raise StrataError(f"{source}: {e}", kind=ErrorKind.INVALID,
                          hint=f"an encrypted key needs its passphrase in ${PASSPHRASE_ENV}"
                          ) from e
    except ValueError as e:
        raise StrataError(f"{source}: not a usable private key ({e})",
                          kind=ErrorKind.INVALID) from e


def generate(keys_dir: str, role: str) -> CryptoSigner:
    """A new Ed25519 key for `role`, written to <keys>/<role>.key (which must not exist)."""
    from securesystemslib.signer import CryptoSigner

    signer = CryptoSigner.generate_ed25519()
    _write_new(key_path(keys_dir, role), signer.private_bytes)
    log.info(f"Generated a new {role} key: {key_path(keys_dir, role)} "
             f"(keyid {signer.public_key.keyid[:16]}).")
    return signer


def pending_path(keys_dir: str, role: str) -> str:
    return key_path(keys_dir, role) + ".new"


def load_pending(keys_dir: str, role: str) -> CryptoSigner | None:
    """The new key of a rotation that was interrupted after the root naming it was written."""
    path = pending_path(keys_dir, role)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    return signer_from_pem(data, source=path)


def generate_pending(keys_dir: str, role: str) -> CryptoSigner:
    """A rotation's new key, written as <role>.key.new before the root that names it, so that
    a crash in between loses nothing (a stale .new the root does not name is replaced)."""
    from securesystemslib.signer import CryptoSigner

    signer = CryptoSigner.generate_ed25519()
    path = pending_path(keys_dir, role)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        raise StrataError.from_os(e, f"Failed to remove '{path}'") from e
    _write_new(path, signer.private_bytes)
    return signer


def finish_rotation(keys_dir: str, role: str, old: CryptoSigner | None) -> None:
    """Retire the old key file to <keys>/retired/ and put <role>.key.new in its place."""
    final = key_path(keys_dir, role)
    if old is not None and os.path.exists(final):
        retired = os.path.join(keys_dir, RETIRED_DIR)
        _make_private_dir(retired)
        dest = os.path.join(retired, f"{role}-{old.public_key.keyid[:16]}.key")
        try:
            os.rename(final, dest)
        except OSError as e:
            raise StrataError.from_os(e, f"Failed to retire key '{final}'") from e
        log.info(f"The old {role} key is now {dest}.")
    try:
        os.rename(pending_path(keys_dir, role), final)
    except OSError as e:
        raise StrataError.from_os(e, f"Failed to install the new {role} key '{final}'") from e


def _make_private_dir(path: str) -> None:
    try:
        os.makedirs(path, 0o700, exist_ok=True)
    except OSError as e:
        raise StrataError.from_os(e, f"Failed to create key directory '{path}'") from e


def _write_new(path: str, data: bytes) -> None:
    _make_private_dir(os.path.dirname(path) or ".")
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(tmp, path)  # never replaces an existing key
    except FileExistsError as e:
        raise StrataError(f"Key file '{path}' already exists.", kind=ErrorKind.BUSY) from e
    except OSError as e:
        raise StrataError.from_os(e, f"Failed to write key '{path}'") from e
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass
