"""`strata publish`: a TUF repository of extension images, kept with python-tuf's Metadata API.

Layout of the repository directory (serve it as is from any static web host or CDN):

    metadata/1.root.json 2.root.json ...   every root version (devices walk the chain)
    metadata/root.json                     the newest root, to give devices as trust anchor
    metadata/<N>.targets.json              targets: every image, with length, sha256 and
                                           Strata's custom metadata (offers.py)
    metadata/<N>.snapshot.json             snapshot: the targets version in force
    metadata/timestamp.json                timestamp: the snapshot version in force (short-lived)
    targets/<sha256>.<file>                the images, named by content
    targets/<file>                         the same file (a hard link), for sysupdate
    targets/SHA256SUMS                     sysupdate's checksum list
    sysupdate.d/<name>.transfer            systemd-sysupdate transfers
    .strata-publish.json                   the repository's public URL (for the transfers)

Consistent snapshots are on: every file but timestamp.json is written once under a name that
says its version or its content and never changed, so a device reading the repository while a
publish is under way sees either the old state or the new one, never a mix, and a CDN may cache
everything but timestamp.json forever. Files are written in dependency order (images, targets,
snapshot, timestamp last), each atomically; old versions stay (a device mid-update may still
ask for them).

Keys: keys.py. Expiry: expiry.py.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from strata import log
from strata.errors import ErrorKind, StrataError
from strata.fsutil import flocked
from strata.model import ExtClass
from strata.record import record
from strata.update import expiry, keys
from strata.update.offers import Offer, custom_for, offer_from

if TYPE_CHECKING:
    from securesystemslib.signer import CryptoSigner
    from tuf.api.metadata import Metadata, Root, Snapshot, Targets, Timestamp

METADATA_DIR = "metadata"
TARGETS_DIR = "targets"
SYSUPDATE_DIR = "sysupdate.d"
SETTINGS_FILE = ".strata-publish.json"
ROLES = keys.ROLES

_VERSIONED = re.compile(r"^([1-9][0-9]*)\.(root|targets|snapshot)\.json$")


@record
class Published:
    """One image as the repository offers it."""

    name: str
    version: str
    target: str  # the target path (file name)
    sha256: str
    length: int
    added: bool  # False: it was already there, identical


@record
class Report:
    repo: str
    published: tuple[Published, ...] = ()
    #: role -> (version, expiry as ISO 8601) after the operation
    roles: Mapping[str, tuple[int, str]] = {}
    created_keys: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()  # roles signed anew


def default_keys_dir(repo: str) -> str:
    """`<repo>.keys` next to the repository: outside the tree a web server serves."""
    return os.path.abspath(repo).rstrip("/") + ".keys"


# --- file writing ----------------------------------------------------------------------------


def _write_atomic(path: str, data: bytes) -> None:
    from strata.manage import fsio

    fsio.replace_file(os.path.dirname(path), os.path.basename(path), data)


def _write_once(path: str, data: bytes) -> None:
    """A versioned or content-addressed file: written once, never replaced with other bytes."""
    try:
        with open(path, "rb") as f:
            if f.read() == data:
                return
        raise StrataError(f"'{path}' already exists with other content; the repository is "
                          "inconsistent (was it changed by hand?).", kind=ErrorKind.INVALID)
    except FileNotFoundError:
        pass
    _write_atomic(path, data)


def _serialize(md: Metadata[Any]) -> bytes:
    from tuf.api.serialization.json import JSONSerializer

    return md.to_bytes(JSONSerializer(compact=False)) + b"\n"


def _digest_file(path: str) -> tuple[str, int]:
    from strata.check.inspect import sha256_file

    return sha256_file(path)


# --- the repository --------------------------------------------------------------------------


class Repository:
    """The repository's current metadata and signers; `save_*` write new versions."""

    def __init__(self, repo: str, keys_dir: str | None, *, create: bool,
                 expires: Mapping[str, dt.timedelta] | None = None,
                 now: dt.datetime | None = None) -> None:
        self.repo = os.path.abspath(repo)
        self.keys_dir = os.path.abspath(keys_dir or default_keys_dir(repo))
        self.meta_dir = os.path.join(self.repo, METADATA_DIR)
        self.targets_dir = os.path.join(self.repo, TARGETS_DIR)
        self.expires = dict(expiry.DEFAULTS if expires is None else expires)
        self.now = now or expiry.utcnow()
        self.created_keys: list[str] = []
        self.changed: list[str] = []
        existing = os.path.exists(os.path.join(self.meta_dir, "1.root.json"))
        if not existing and not create:
            raise StrataError(f"'{self.repo}' is not a Strata/TUF repository (no "
                              f"{METADATA_DIR}/1.root.json).", kind=ErrorKind.NOT_FOUND,
                              hint="create it by publishing an image: strata publish IMAGE "
                                   f"--repo {repo}")
        if existing:
            self._load()
        else:
            self._create()

    # loading

    def _versions(self, role: str) -> list[int]:
        try:
            names = os.listdir(self.meta_dir)
        except OSError as e:
            raise StrataError.from_os(e, f"Failed to read '{self.meta_dir}'") from e
        found = [int(m.group(1)) for m in map(_VERSIONED.match, names)
                 if m is not None and m.group(2) == role]
        return sorted(found)

    def _read(self, name: str) -> Metadata[Any]:
        from tuf.api.metadata import Metadata

        path = os.path.join(self.meta_dir, name)
        try:
            return Metadata.from_file(path)
        except OSError as e:
            raise StrataError.from_os(e, f"Failed to read '{path}'") from e
        except Exception as e:  # tuf's DeserializationError and friends
            raise StrataError(f"'{path}': not valid TUF metadata ({e})",
                              kind=ErrorKind.INVALID) from e

    def _load(self) -> None:
        latest: dict[str, Metadata[Any]] = {}
        for role in ("root", "targets", "snapshot"):
            versions = self._versions(role)
            if not versions:
                raise StrataError(f"'{self.meta_dir}' has no {role} metadata.",
                                  kind=ErrorKind.INVALID)
            latest[role] = self._read(f"{versions[-1]}.{role}.json")
        latest["timestamp"] = self._read("timestamp.json")
        self.root_md: Metadata[Root] = latest["root"]
        self.targets_md: Metadata[Targets] = latest["targets"]
        self.snapshot_md: Metadata[Snapshot] = latest["snapshot"]
        self.timestamp_md: Metadata[Timestamp] = latest["timestamp"]
        self.signers: dict[str, CryptoSigner] = {}
        for role in ROLES:
            self.signers[role] = self._signer_for(role)

    def _signer_for(self, role: str) -> CryptoSigner:
        """The key file for the role the root names; a key from an unfinished rotation
        (<role>.key.new whose key the root already names) is taken and put in place."""
        expected = set(self.root_md.signed.roles[role].keyids)
        signer = keys.load(self.keys_dir, role)
        if signer is not None and signer.public_key.keyid in expected:
            return signer
        pending = keys.load_pending(self.keys_dir, role)
        if pending is not None and pending.public_key.keyid in expected:
            keys.finish_rotation(self.keys_dir, role, signer)
            return pending
        if signer is None:
            raise StrataError(
                f"No {role} key in '{self.keys_dir}' ({keys.key_path(self.keys_dir, role)} is "
                f"missing): the repository was made with other keys.",
                kind=ErrorKind.NOT_FOUND, hint="pass the repository's key directory: --keys DIR")
        raise StrataError(
            f"{keys.key_path(self.keys_dir, role)} is not the repository's {role} key "
            f"(keyid {signer.public_key.keyid[:16]}, the root expects "
            f"{', '.join(k[:16] for k in sorted(expected))}).", kind=ErrorKind.INVALID,
            hint="pass the repository's key directory: --keys DIR")

    def _create(self) -> None:
        from tuf.api.metadata import Metadata, Root, Snapshot, Targets, Timestamp

        self.signers = {}
        for role in ROLES:
            signer = keys.load(self.keys_dir, role)
            if signer is None:
                signer = keys.generate(self.keys_dir, role)
                self.created_keys.append(keys.key_path(self.keys_dir, role))
            self.signers[role] = signer
        root = Root(expires=self._expiry("root"), consistent_snapshot=True)
        for role in ROLES:
            root.add_key(self.signers[role].public_key, role)
        self.root_md = Metadata(root)
        self.targets_md = Metadata(Targets(expires=self._expiry("targets")))
        self.snapshot_md = Metadata(Snapshot(expires=self._expiry("snapshot")))
        self.timestamp_md = Metadata(Timestamp(expires=self._expiry("timestamp")))
        for d in (self.meta_dir, self.targets_dir):
            os.makedirs(d, 0o755, exist_ok=True)
        self._write_root()
        self._write_targets()
        self._write_snapshot()
        self._write_timestamp()
        log.info(f"Created TUF repository '{self.repo}' (keys in '{self.keys_dir}': keep "
                 "that directory off the web server, and the root key offline).")

    def _expiry(self, role: str) -> dt.datetime:
        return self.now + self.expires[role]

    # writing: each bumps nothing itself; callers bump and then write in dependency order

    def _sign(self, role: str, md: Metadata[Any], *extra: CryptoSigner) -> bytes:
        md.signatures.clear()
        md.sign(self.signers[role])
        for other in extra:
            md.sign(other, append=True)
        if role not in self.changed:
            self.changed.append(role)
        return _serialize(md)

    def _write_root(self, *old_signers: CryptoSigner) -> None:
        data = self._sign("root", self.root_md, *old_signers)
        _write_once(os.path.join(self.meta_dir, f"{self.root_md.signed.version}.root.json"),
                    data)
        _write_atomic(os.path.join(self.meta_dir, "root.json"), data)

    def _write_targets(self) -> None:
        from tuf.api.metadata import MetaFile

        data = self._sign("targets", self.targets_md)
        version = self.targets_md.signed.version
        _write_once(os.path.join(self.meta_dir, f"{version}.targets.json"), data)
        self.snapshot_md.signed.meta["targets.json"] = MetaFile(
            version=version, length=len(data),
            hashes={"sha256": hashlib.sha256(data).hexdigest()})

    def _write_snapshot(self) -> None:
        from tuf.api.metadata import MetaFile

        data = self._sign("snapshot", self.snapshot_md)
        version = self.snapshot_md.signed.version
        _write_once(os.path.join(self.meta_dir, f"{version}.snapshot.json"), data)
        self.timestamp_md.signed.snapshot_meta = MetaFile(
            version=version, length=len(data),
            hashes={"sha256": hashlib.sha256(data).hexdigest()})

    def _write_timestamp(self) -> None:
        data = self._sign("timestamp", self.timestamp_md)
        _write_atomic(os.path.join(self.meta_dir, "timestamp.json"), data)

    def bump(self, role: str) -> None:
        roles: dict[str, Metadata[Any]] = {
            "root": self.root_md, "targets": self.targets_md, "snapshot": self.snapshot_md,
            "timestamp": self.timestamp_md}
        md = roles[role]
        md.signed.version += 1
        md.signed.expires = self._expiry(role)

    def commit_targets(self) -> None:
        """New targets, snapshot and timestamp versions (after a change to the targets)."""
        for role in ("targets", "snapshot", "timestamp"):
            self.bump(role)
        self._write_targets()
        self._write_snapshot()
        self._write_timestamp()

    def commit_snapshot(self) -> None:
        for role in ("snapshot", "timestamp"):
            self.bump(role)
        self._write_snapshot()
        self._write_timestamp()

    def commit_timestamp(self) -> None:
        self.bump("timestamp")
        self._write_timestamp()

    # reading the offers

    def offers(self) -> list[Offer]:
        out = []
        for path, t in sorted(self.targets_md.signed.targets.items()):
            o = offer_from(path, t.length, t.hashes, t.custom)
            if isinstance(o, Offer):
                out.append(o)
        return out

    def report(self, published: Sequence[Published] = ()) -> Report:
        roles = {}
        for role, md in (("root", self.root_md), ("targets", self.targets_md),
                         ("snapshot", self.snapshot_md), ("timestamp", self.timestamp_md)):
            roles[role] = (md.signed.version, md.signed.expires.isoformat())
        return Report(repo=self.repo, published=tuple(published), roles=roles,
                      created_keys=tuple(self.created_keys), changed=tuple(self.changed))

    def warn_expiring(self) -> None:
        """A role that expires before the next timestamp refresh would is a fleet outage in
        the making: say which, and how to renew it."""
        horizon = self.now + 2 * self.expires["timestamp"]
        for role, md in (("root", self.root_md), ("targets", self.targets_md)):
            when = md.signed.expires
            if when <= horizon:
                how = ("strata publish --rotate-key root (or --resign)" if role == "root"
                       else "strata publish --resign")
                log.warning(f"The {role} metadata of '{self.repo}' expires {when.isoformat()}: "
                            f"renew it with '{how}'.")


@contextlib.contextmanager
def _locked(repo: str) -> Iterator[None]:
    """One publisher at a time: an flock on the repository directory (nothing is created)."""
    os.makedirs(repo, 0o755, exist_ok=True)
    with flocked(repo, f"Waiting for another publish to '{repo}' to finish...",
                 what="repository"):
        yield


# --- reading an image ------------------------------------------------------------------------


@record
class ImageInfo:
    path: str
    name: str
    version: str
    target: str  # the file name it is published under
    release: Mapping[ExtClass, Mapping[str, str]]


def describe_image(path: str) -> ImageInfo:
    """Name, version, classes and release fields of an image file, and the name it is
    published under: its own file name when that carries the version (`app_1.2.raw`,
    `app-1.2-x86-64.raw`), else `<name>_<version>.raw`. Either way the device, which names
    and looks up images exactly as `strata ext` does, finds the same release file."""
    from strata.manage import store
    from strata.record import replace

    path = os.path.abspath(path)
    directory, fname = os.path.split(path)
    if os.path.isdir(path):
        raise StrataError(f"'{path}' is a directory: publish image files (.raw).",
                          kind=ErrorKind.INVALID)
    if not os.path.isfile(path):
        raise StrataError(f"'{path}': No such file", kind=ErrorKind.NOT_FOUND)
    entry = store.entry_at("/", directory, directory, fname, origin="publish")
    if entry is None:
        raise StrataError(f"'{path}' is not an image Strata can offer: the file name must "
                          "end in .raw and be a valid image name.", kind=ErrorKind.INVALID)
    probe = store.probe(entry)
    if not probe.is_extension:
        raise StrataError(probe.problem or f"'{path}' carries no extension-release file for "
                          f"'{entry.image_name}' (usr/lib/extension-release.d/ or "
                          "etc/extension-release.d/).", kind=ErrorKind.INVALID)
    version = probe.version(entry.file_version)
    if not version:
        raise StrataError(f"'{path}': no version: set SYSEXT_VERSION_ID= (CONFEXT_VERSION_ID=) "
                          f"in its release file, or name it {entry.name}_VERSION.raw.",
                          kind=ErrorKind.INVALID)
    target = fname
    if entry.file_version is None:
        target = f"{entry.name}_{version}.raw"
        renamed = replace(entry, image_name=target[:-4], file_version=version)
        again = store.probe(renamed)
        if {r.cls for r in again.releases} != {r.cls for r in probe.releases}:
            raise StrataError(
                f"'{path}' would be published as {target}, under which name its release "
                f"file (extension-release.{probe.releases[0].lookup_name}) is not found.",
                kind=ErrorKind.INVALID,
                hint=f"name the file {entry.name}_{version}.raw, or its release file "
                     f"extension-release.{entry.name}")
    from strata.update.offers import target_path_problem

    why = target_path_problem(target)
    if why is not None:
        raise StrataError(f"'{path}': cannot publish as '{target}': {why}",
                          kind=ErrorKind.INVALID)
    release = {r.cls: dict(r.fields) for r in probe.releases}
    return ImageInfo(path=path, name=entry.name, version=version, target=target,
                     release=release)


# --- the verbs -------------------------------------------------------------------------------


def _add_image(repo: Repository, info: ImageInfo) -> Published:
    from tuf.api.metadata import TargetFile

    digest, length = _digest_file(info.path)
    targets = repo.targets_md.signed.targets
    existing = targets.get(info.target)
    if existing is not None:
        if existing.hashes.get("sha256") == digest:
            log.info(f"{info.target} is already published (same content).")
            return Published(info.name, info.version, info.target, digest, length, False)
        raise StrataError(f"{info.target} is already published with other content: publish a "
                          "new version instead (devices never take the same version twice).",
                          kind=ErrorKind.BUSY)
    for other in repo.offers():
        if other.name == info.name and other.version == info.version:
            raise StrataError(f"Version {info.version} of '{info.name}' is already published "
                              f"as {other.path}.", kind=ErrorKind.BUSY)
    content_name = os.path.join(repo.targets_dir, f"{digest}.{info.target}")
    plain_name = os.path.join(repo.targets_dir, info.target)
    _copy_into(info.path, content_name, digest)
    _link_plain(content_name, plain_name)
    targets[info.target] = TargetFile(
        length=length, hashes={"sha256": digest}, path=info.target,
        unrecognized_fields={"custom": custom_for(info.name, info.version, info.release,
                                                  digest)})
    return Published(info.name, info.version, info.target, digest, length, True)


def _copy_into(src: str, dest: str, digest: str) -> None:
    import shutil

    from strata.manage import fsio

    if os.path.exists(dest) and _digest_file(dest)[0] == digest:
        return
    tmp = f"{dest}.tmp{os.getpid()}"
    try:
        shutil.copyfile(src, tmp)
        os.chmod(tmp, 0o644)
        fd = os.open(tmp, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        if _digest_file(tmp)[0] != digest:
            raise StrataError(f"'{src}' changed while it was being published.",
                              kind=ErrorKind.BUSY)
        os.rename(tmp, dest)
        fsio.fsync_dir(os.path.dirname(dest))
    except OSError as e:
        raise StrataError.from_os(e, f"Failed to copy '{src}' to '{dest}'") from e
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _link_plain(content_name: str, plain_name: str) -> None:
    """targets/<file> for sysupdate: a hard link to the content-addressed copy."""
    tmp = f"{plain_name}.tmp{os.getpid()}"
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        try:
            os.link(content_name, tmp)
        except OSError:
            import shutil

            shutil.copyfile(content_name, tmp)  # a file system without hard links
        os.rename(tmp, plain_name)
    except OSError as e:
        raise StrataError.from_os(e, f"Failed to write '{plain_name}'") from e


def _load_settings(repo: str) -> dict[str, Any]:
    try:
        with open(os.path.join(repo, SETTINGS_FILE), "rb") as f:
            data = json.loads(f.read())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_sysupdate(repo: Repository, url: str | None) -> None:
    from strata.update import sysupdate

    settings = _load_settings(repo.repo)
    if url is not None and settings.get("url") != url:
        settings["url"] = url
        _write_atomic(os.path.join(repo.repo, SETTINGS_FILE),
                      (json.dumps(settings, indent=2) + "\n").encode())
    offers = repo.offers()
    _write_atomic(os.path.join(repo.targets_dir, "SHA256SUMS"),
                  sysupdate.sha256sums(offers).encode())
    base = settings.get("url")
    if not isinstance(base, str) or not base:
        if offers:
            log.info("No --url given: systemd-sysupdate transfer files are not written "
                     "(they must name where the repository is served).")
        return
    out_dir = os.path.join(repo.repo, SYSUPDATE_DIR)
    os.makedirs(out_dir, 0o755, exist_ok=True)
    for name, text in sysupdate.transfers(offers, base).items():
        _write_atomic(os.path.join(out_dir, name), text.encode())


def publish(repo: str, images: Sequence[str], *, keys_dir: str | None = None,
            expires: Mapping[str, dt.timedelta] | None = None, url: str | None = None,
            now: dt.datetime | None = None) -> Report:
    """Add images to the repository (created, with new keys, if it does not exist) and sign
    new targets, snapshot and timestamp metadata. Every image is read and checked before the
    repository changes; an image already published with the same content is left as is."""
    infos = [describe_image(p) for p in images]
    seen: dict[str, str] = {}
    for info in infos:
        if info.target in seen and seen[info.target] != info.path:
            raise StrataError(f"'{info.path}' and '{seen[info.target]}' would both be "
                              f"published as {info.target}.", kind=ErrorKind.USAGE)
        seen[info.target] = info.path
    with _locked(repo):
        r = Repository(repo, keys_dir, create=True, expires=expires, now=now)
        published = [_add_image(r, info) for info in infos]
        if any(p.added for p in published):
            r.commit_targets()
        _write_sysupdate(r, url)
        r.warn_expiring()
        for p in published:
            if p.added:
                log.info(f"Published {p.name} {p.version} as {p.target} ({p.length} bytes, "
                         f"sha256 {p.sha256[:16]}...).")
        return r.report(published)


def refresh_timestamp(repo: str, *, keys_dir: str | None = None,
                      expires: Mapping[str, dt.timedelta] | None = None,
                      now: dt.datetime | None = None) -> Report:
    """Sign a new timestamp (run it from cron well within the timestamp's lifetime); the
    snapshot too when it would expire before the new timestamp does."""
    with _locked(repo):
        r = Repository(repo, keys_dir, create=False, expires=expires, now=now)
        new_ts_expiry = r.now + r.expires["timestamp"]
        if r.snapshot_md.signed.expires <= new_ts_expiry:
            r.commit_snapshot()
        else:
            r.commit_timestamp()
        r.warn_expiring()
        return r.report()


def resign(repo: str, *, keys_dir: str | None = None,
           expires: Mapping[str, dt.timedelta] | None = None,
           now: dt.datetime | None = None) -> Report:
    """New targets, snapshot and timestamp versions with fresh expiry dates (the root too
    when it expires within the targets' lifetime)."""
    with _locked(repo):
        r = Repository(repo, keys_dir, create=False, expires=expires, now=now)
        if r.root_md.signed.expires <= r.now + r.expires["targets"]:
            r.bump("root")
            r._write_root()
        r.commit_targets()
        return r.report()


def rotate_key(repo: str, role: str, *, keys_dir: str | None = None,
               expires: Mapping[str, dt.timedelta] | None = None,
               now: dt.datetime | None = None) -> Report:
    """Replace the role's key: a new root version names the new key (signed by the root key,
    and for a root rotation by the old and the new root key, so devices can walk from one to
    the other), then the role's metadata is signed with the new key. The old key file moves
    to <keys>/retired/."""
    if role not in ROLES:
        raise StrataError(f"Unknown role '{role}'", kind=ErrorKind.USAGE,
                          hint="one of " + ", ".join(ROLES))
    with _locked(repo):
        r = Repository(repo, keys_dir, create=False, expires=expires, now=now)
        old = r.signers[role]
        new = keys.generate_pending(r.keys_dir, role)
        root = r.root_md.signed
        root.revoke_key(old.public_key.keyid, role)
        root.add_key(new.public_key, role)
        r.bump("root")
        r.signers[role] = new
        r._write_root(*((old,) if role == "root" else ()))
        keys.finish_rotation(r.keys_dir, role, old)
        log.info(f"Rotated the {role} key: {old.public_key.keyid[:16]} -> "
                 f"{new.public_key.keyid[:16]} (root version {root.version}).")
        if role == "targets":
            r.commit_targets()
        elif role == "snapshot":
            r.commit_snapshot()
        elif role == "timestamp":
            r.commit_timestamp()
        return r.report()
