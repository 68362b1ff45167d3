"""The device's view of a TUF repository, through python-tuf's ngclient.

State in <root>/var/lib/strata/tuf/ (ngclient's metadata directory):

    root.json -> root_history/<N>.root.json   the newest root this device has verified,
                                              starting from the one `--init` installed
    timestamp.json snapshot.json targets.json the newest verified metadata: what makes a
                                              rolled-back, frozen or mixed repository detectable
    repository.json                           {"url": ...} from `strata update --init`

ngclient does the TUF client workflow: the root chain (key rotations), then timestamp,
snapshot and targets, each signed by the keys the root names, not expired, not older than
what the device has seen, and consistent with each other. Its errors become StrataErrors
that say what the attack or the fault looks like.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from strata.errors import ErrorKind, StrataError
from strata.fsutil import join_root
from strata.update.offers import Offer, offer_from

if TYPE_CHECKING:
    from tuf.api.metadata import TargetFile
    from tuf.ngclient import Updater

TUF_DIR = "/var/lib/strata/tuf"
REPOSITORY_FILE = "repository.json"


def tuf_dir(root: str) -> str:
    return join_root(root, TUF_DIR)


def _bases(url: str) -> tuple[str, str]:
    base = url.rstrip("/")
    return f"{base}/metadata/", f"{base}/targets/"


def check_url(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https", "file") or (parts.scheme != "file"
                                                         and not parts.netloc):
        raise StrataError(f"Invalid repository URL '{url}'", kind=ErrorKind.USAGE,
                          hint="an http:// or https:// URL (the directory strata publish "
                               "wrote, as served)")
    return url


def stored_url(root: str) -> str | None:
    try:
        with open(os.path.join(tuf_dir(root), REPOSITORY_FILE), "rb") as f:
            data = json.loads(f.read())
    except (OSError, ValueError):
        return None
    url = data.get("url") if isinstance(data, dict) else None
    return url if isinstance(url, str) and url else None


def init(root: str, url: str, root_file: str, *, force: bool = False) -> int:
    """Install the trust anchor: `root_file` (the repository's root.json, obtained out of
    band) must be valid root metadata signed by its own keys. Replacing a different anchor
    needs `force` (and drops the cached metadata: the device trusts anew). Returns the root
    version."""
    from strata.manage import fsio

    check_url(url)
    try:
        with open(root_file, "rb") as f:
            data = f.read()
    except OSError as e:
        raise StrataError.from_os(e, f"Failed to read '{root_file}'") from e
    version = _check_root(data, source=root_file)
    directory = tuf_dir(root)
    current = os.path.join(directory, "root.json")
    if os.path.exists(current):
        try:
            with open(current, "rb") as f:
                same = f.read() == data
        except OSError:
            same = False
        if not same and not force:
            raise StrataError(f"A trust anchor is already installed in '{directory}'.",
                              kind=ErrorKind.BUSY,
                              hint="--force replaces it (the device forgets the metadata "
                                   "it has verified)")
        if not same:
            import shutil

            shutil.rmtree(directory)
    fsio.make_dirs(directory)
    meta, targets = _bases(url)
    from tuf.ngclient import Updater

    Updater(directory, meta, target_base_url=targets, bootstrap=data)  # persists the root
    fsio.replace_file(directory, REPOSITORY_FILE,
                      (json.dumps({"url": url}, indent=2) + "\n").encode())
    fsio.fsync_dir(directory)
    return version


def _check_root(data: bytes, *, source: str) -> int:
    from tuf.api.metadata import Metadata, Root

    try:
        md = Metadata[Root].from_bytes(data)
        if not isinstance(md.signed, Root):
            raise ValueError(f"it is {md.signed.type} metadata")
        md.verify_delegate(Root.type, md)
    except Exception as e:  # DeserializationError, UnsignedMetadataError, ValueError
        raise StrataError(f"{source}: not TUF root metadata signed by its own keys ({e})",
                          kind=ErrorKind.INVALID) from e
    return md.signed.version


class Remote:
    """One refresh of the repository's metadata, and what it offers."""

    def __init__(self, root: str, url: str) -> None:
        self.root = root
        self.url = check_url(url)
        self.directory = tuf_dir(root)
        anchor = os.path.join(self.directory, "root.json")
        try:
            with open(anchor, "rb") as f:
                trusted = f.read()
        except FileNotFoundError as e:
            raise StrataError(f"No trust anchor in '{self.directory}'.",
                              kind=ErrorKind.NOT_FOUND,
                              hint="install the repository's root.json first: strata update "
                                   "--init --repo URL --root-file root.json") from e
        except OSError as e:
            raise StrataError.from_os(e, f"Failed to read '{anchor}'") from e
        meta, targets = _bases(url)
        import logging

        # urllib3 logs each retry as a warning; the error that follows says what matters
        logging.getLogger("urllib3").setLevel(logging.ERROR)
        from tuf.ngclient import Updater, UpdaterConfig

        try:
            # bootstrap: the newest root this device verified (the chain from --init's)
            self.updater: Updater = Updater(self.directory, meta, target_base_url=targets,
                                            config=UpdaterConfig(app_user_agent="strata"),
                                            bootstrap=trusted)
        except Exception as e:
            raise translate(e, url) from e

    def refresh(self) -> list[Offer]:
        """Verified top-level metadata, then every Strata target it lists."""
        try:
            self.updater.refresh()
        except Exception as e:
            raise translate(e, self.url) from e
        from tuf.api.metadata import Metadata, Targets

        # The targets the refresh just verified (ngclient keeps them in its directory;
        # delegated roles are not walked: strata publish does not delegate).
        md = Metadata[Targets].from_file(os.path.join(self.directory, "targets.json"))
        offers: list[Offer] = []
        for path, t in md.signed.targets.items():
            o = offer_from(path, t.length, t.hashes, t.custom)
            if isinstance(o, Offer):
                offers.append(o)
        return offers

    def target(self, offer: Offer) -> TargetFile:
        """The verified TargetFile for an offer (must say what the listing said)."""
        try:
            info = self.updater.get_targetinfo(offer.path)
        except Exception as e:
            raise translate(e, self.url) from e
        again = None if info is None else offer_from(info.path, info.length, info.hashes,
                                                      info.custom)
        if again != offer or info is None:
            raise StrataError(f"Target {offer.path} changed while it was read.",
                              kind=ErrorKind.BUSY)
        return info

    def target_url(self, info: TargetFile) -> str:
        """Where the target is: prefixed with its hash under consistent snapshots, as ngclient
        asks for it."""
        from tuf.api.metadata import Metadata, Root

        root_md = Metadata[Root].from_file(os.path.join(self.directory, "root.json"))
        path = info.path
        if root_md.signed.consistent_snapshot:
            first = next(iter(info.hashes.values()))
            head, sep, base = path.rpartition("/")
            path = f"{head}{sep}{first}.{base}"
        return _bases(self.url)[1] + path


def translate(exc: BaseException, url: str) -> StrataError:
    """ngclient's exceptions as one-line errors saying what they mean for the device."""
    from tuf.api import exceptions as tx

    what = str(exc) or exc.__class__.__name__
    if isinstance(exc, StrataError):
        return exc
    if isinstance(exc, tx.ExpiredMetadataError):
        return StrataError(f"Repository {url}: {what}: its metadata has expired (a frozen or "
                           "stale mirror, or the publisher stopped re-signing).",
                           kind=ErrorKind.INVALID,
                           hint="the publisher runs: strata publish --refresh-timestamp")
    if isinstance(exc, tx.EqualVersionNumberError | tx.BadVersionNumberError):
        return StrataError(f"Repository {url}: {what}: older metadata than this device has "
                           "already seen, or versions that do not belong together (a "
                           "rollback or mix-and-match attack, or a broken mirror).",
                           kind=ErrorKind.INVALID)
    if isinstance(exc, tx.UnsignedMetadataError):
        return StrataError(f"Repository {url}: {what}: not signed by the keys this device "
                           "trusts (an unknown signing key).", kind=ErrorKind.INVALID)
    if isinstance(exc, tx.LengthOrHashMismatchError):
        return StrataError(f"Repository {url}: {what}: metadata that does not match what the "
                           "signed snapshot and timestamp say (tampered with, or a mix of "
                           "versions).", kind=ErrorKind.INVALID)
    if isinstance(exc, tx.DownloadHTTPError):
        return StrataError(f"Repository {url}: HTTP {exc.status_code} while fetching "
                           "metadata.", kind=ErrorKind.NOT_FOUND if exc.status_code == 404
                           else ErrorKind.SYSTEM)
    if isinstance(exc, tx.DownloadLengthMismatchError):
        return StrataError(f"Repository {url}: {what}: metadata longer than allowed "
                           "(tampered with?).", kind=ErrorKind.INVALID)
    if isinstance(exc, tx.DownloadError):
        cause = exc.__cause__
        reason = getattr(cause, "reason", None) or cause or what
        return StrataError(f"Cannot reach repository {url}: {reason}", kind=ErrorKind.SYSTEM)
    if isinstance(exc, tx.RepositoryError):
        return StrataError(f"Repository {url}: {what}", kind=ErrorKind.INVALID)
    if isinstance(exc, OSError):
        return StrataError.from_os(exc, f"Repository {url}")
    name = exc.__class__.__module__
    if name.startswith("urllib3"):
        why: Any = getattr(exc, "reason", None) or what
        return StrataError(f"Cannot reach repository {url}: {why}", kind=ErrorKind.SYSTEM)
    return StrataError(f"Repository {url}: {exc.__class__.__name__}: {what}",
                       kind=ErrorKind.SYSTEM)
