"""`strata ext install SOURCE... [--enable] [--now]`: bring images into the store, safely.

For each SOURCE (fetch.py: a file, an http(s) URL, or a name the configured repository
resolves), with the change lock held throughout:

1. **stage**: copy or download it into a fresh temporary directory *inside* the store
   directory (`.#install-XXXX/<file name>`: same file system, so the final step is a rename;
   a `.#` name no reader takes for an image), hashing it on the way, and fsync it;
2. **validate** it there (validate.py): an extension image, `strata check`'s errors, the
   engine's compatibility and image-policy verdicts;
3. **decide**: an image of the same name with the same content is already installed: a no-op
   that says so; the same version with other content: refused (a rebuilt image must carry a
   new version); else it goes in beside the versions already there, which stay for rollback
   (an unversioned file name already taken gets the systemd-style name `<name>_<version>.raw`);

Only when every SOURCE has passed (one bad SOURCE and nothing is installed):

4. **commit**: write its record (records.py: sha256, size, source), rename the copy into the
   store, fsync the directory;
5. `--enable`: enable the installed images for the running OS release (ext.enable; if that
   is refused, e.g. a dependency is not enabled, the images this call added are taken out
   again, so the store is as it was);
6. `--now` (implies --enable): refresh, so they are merged now (and their services started).

Crash safety: until the rename, the store holds nothing new (the temporary directory is
removed by the next install or remove: `clean_strays`); the record is written before the
rename, and a record without its image is ignored and later deleted. Every step after the
rename is idempotent, so running the same command again completes an interrupted one (the
image is then "already installed" and is enabled and merged as asked).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Mapping, Sequence

from strata import faults, log
from strata.errors import ErrorKind, StrataError
from strata.fsutil import chase
from strata.manage import fsio, records, store
from strata.manage.api import (
    InstallAction,
    Installed,
    InstallResult,
    Progress,
    Resolver,
    SourceKind,
)
from strata.manage.fetch import Fetched, Source
from strata.manage.store import StoreEntry
from strata.manage.validate import Validated
from strata.record import record

STAGE_PREFIX = ".#install-"
REMOVE_PREFIX = ".#remove-"


@record
class Staged:
    source: Source
    tmpdir: str
    fetched: Fetched
    validated: Validated
    action: InstallAction
    existing: str | None = None  # PRESENT: the image already installed

    @property
    def file_name(self) -> str:
        return os.path.basename(self.fetched.path)


def store_dir(root: str) -> str:
    return chase(store.STORE_DIR, root, nonexistent=True)


def clean_strays(root: str) -> list[str]:
    """Remove what an interrupted install or remove left behind: staging directories and
    half-removed images in the store, temporary files of atomic writes in the store, the
    metadata and the enabled-set directories, and records whose image is gone. Call it with
    the change lock held (nothing else is writing then)."""
    from strata.manage import enabled

    gone: list[str] = []
    directory = store_dir(root)
    try:
        names = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        names = []
    for name in names:
        if not name.startswith(".#"):
            continue
        path = os.path.join(directory, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        gone.append(path)
    releases = chase(enabled.OS_RELEASES_DIR, root, nonexistent=True)
    with contextlib.suppress(OSError):
        for version in os.listdir(releases):
            d = os.path.join(releases, version)
            with contextlib.suppress(OSError):
                for name in os.listdir(d):
                    if name.startswith(".#") and fsio.remove(d, name):
                        gone.append(os.path.join(d, name))
    gone += records.collect_garbage(root, directory)
    if gone:
        log.debug("Removed leftovers of an interrupted change: " + ", ".join(gone))
    return gone


def default_resolver() -> Resolver | None:
    """`strata update`'s repository client (strata.update.client.resolve_target(root, name)
    -> a local image file), when that module exists; else None."""
    import importlib

    try:
        module = importlib.import_module("strata.update.client")
    except ModuleNotFoundError as e:
        if e.name in ("strata.update", "strata.update.client"):
            return None
        raise
    resolver: Resolver | None = getattr(module, "resolve_target", None)
    return resolver


def _fetch(source: Source, root: str, tmpdir: str, resolver: Resolver | None) -> Fetched:
    from strata.manage import fetch

    if source.kind is SourceKind.URL:
        name = source.file_name
        if not name:
            raise StrataError(f"Cannot install '{source.text}': the URL names no file.",
                              kind=ErrorKind.USAGE)
        return fetch.download(source.location, os.path.join(tmpdir, name))
    if source.kind is SourceKind.FILE:
        return fetch.copy_file(source.location, os.path.join(tmpdir, source.file_name))
    if resolver is None:
        raise StrataError(
            f"Cannot install '{source.text}': no such file, and no extension repository is "
            "configured to look the name up in.",
            hint="give an image file or an http(s) URL; 'strata update' sets up a repository",
            kind=ErrorKind.NOT_FOUND, subject=source.text)
    log.info(f"Looking up '{source.text}' in the extension repository...")
    path = resolver(root, source.location)
    return fetch.copy_file(path, os.path.join(tmpdir, os.path.basename(path)))


def _digest(path: str) -> str | None:
    return store.sha256_prefix(path, length=64)


def _version_text(v: Validated) -> str:
    return f"{v.name} {v.version}" if v.version else v.name


def _decide(v: Validated, fetched: Fetched, text: str, *, entries: Sequence[StoreEntry],
            staged: Sequence[Staged], directory: str
            ) -> tuple[InstallAction, str | None, str | None]:
    """(action, the image already installed, a new file name) for a validated copy."""
    from strata.manage.ext import _version

    for s in staged:
        if s.fetched.sha256 == fetched.sha256:
            return InstallAction.PRESENT, os.path.join(directory, s.file_name), None
    same = [e for e in entries if e.name == v.name and not e.is_directory]
    probes = {e.path: store.probe(e) for e in same}
    for e in same:
        if _digest(e.real) == fetched.sha256:
            return InstallAction.PRESENT, e.path, None
    for e in same:
        version = _version(probes, e)
        if v.version is not None and version == v.version:
            raise StrataError(
                f"Cannot install '{text}': {_version_text(v)} is already installed as "
                f"{e.path}, with different content.",
                hint="a rebuilt image must carry a new version (SYSEXT_VERSION_ID= or the "
                     "file name); or remove the installed one first",
                kind=ErrorKind.INVALID)
    name = os.path.basename(fetched.path)
    taken = {os.path.basename(e.path) for e in entries if e.origin == store.STORE_ORIGIN}
    taken |= {s.file_name for s in staged}
    if name not in taken and not os.path.lexists(os.path.join(directory, name)):
        return InstallAction.INSTALLED, None, None
    if v.version is None:
        raise StrataError(f"Cannot install '{text}': another {name} is already installed, and "
                          "this image has no version to tell them apart.",
                          hint="name the file after its version, e.g. "
                               f"{v.name}_VERSION.raw", kind=ErrorKind.INVALID)
    renamed = f"{v.name}_{v.version}.raw"
    if renamed in taken or os.path.lexists(os.path.join(directory, renamed)):
        raise StrataError(f"Cannot install '{text}': {name} and {renamed} are both taken.",
                          kind=ErrorKind.INVALID)
    return InstallAction.INSTALLED, None, renamed


def _stage(text: str, root: str, *, directory: str, env: Mapping[str, str],
           image_policy: str | None, resolver: Resolver | None,
           entries: Sequence[StoreEntry], staged: Sequence[Staged]) -> Staged:
    import tempfile

    from strata.manage import fetch
    from strata.manage.validate import validate

    source = fetch.classify(text)
    tmpdir = tempfile.mkdtemp(prefix=STAGE_PREFIX, dir=directory)
    try:
        fetched = _fetch(source, root, tmpdir, resolver)
        faults.point("install-fetched")
        v = validate(fetched.path, text, root, env, image_policy=image_policy)
        action, existing, renamed = _decide(v, fetched, text, entries=entries, staged=staged,
                                            directory=directory)
        if renamed is not None:
            path = os.path.join(tmpdir, renamed)
            os.rename(fetched.path, path)
            log.info(f"{os.path.basename(fetched.path)} is taken in the store; installing "
                     f"{text} as {renamed}.")
            fetched = Fetched(path=path, sha256=fetched.sha256, size=fetched.size)
            v = validate(path, text, root, env, image_policy=image_policy)
        return Staged(source=source, tmpdir=tmpdir, fetched=fetched, validated=v,
                      action=action, existing=existing)
    except BaseException as e:
        shutil.rmtree(tmpdir, ignore_errors=True)
        if isinstance(e, StrataError) and e.subject is None:
            e.subject = text  # what was refused (the service's InvalidSource{source})
        raise


def _now() -> str:
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _commit(root: str, directory: str, s: Staged) -> str:
    """Record and rename one staged image into the store; returns its store path."""
    final = os.path.join(directory, s.file_name)
    records.save(root, records.ImageRecord(
        image=s.file_name, sha256=s.fetched.sha256, size=s.fetched.size, source=s.source.text,
        kind=s.source.kind, installed_at=_now()))
    faults.point("install-recorded")
    if os.path.lexists(final):  # taken since _decide: never replace an installed image
        raise StrataError(f"Cannot install '{s.source.text}': {final} appeared meanwhile.",
                          kind=ErrorKind.BUSY)
    try:
        os.rename(s.fetched.path, final)
    except OSError as e:
        raise StrataError.from_os(e, f"Failed to move the image into '{final}'") from e
    fsio.fsync_dir(directory)
    faults.point("install-stored")
    return final


def _uncommit(root: str, directory: str, paths: Sequence[str]) -> None:
    for path in paths:
        with contextlib.suppress(OSError, StrataError):
            fsio.remove(directory, os.path.basename(path))
            records.delete(root, os.path.basename(path))
    with contextlib.suppress(StrataError):
        fsio.fsync_dir(directory)


def install(root: str, sources: Sequence[str], *, enable: bool = False, now: bool = False,
            env: Mapping[str, str] | None = None, image_policy: str | None = None,
            resolver: Resolver | None = None, progress: Progress | None = None
            ) -> InstallResult:
    """Install `sources` into the store (see the module docstring). `image_policy` overrides
    [ext] image_policy; `resolver` looks names up in a repository (default: none; the CLI
    passes default_resolver()). Bad input raises StrataError and leaves the store as it was."""
    from strata.manage import config, ext

    root = ext._root(root)
    env = dict(os.environ if env is None else env)
    if not sources:
        raise StrataError("No image to install given.", kind=ErrorKind.USAGE)
    if image_policy is not None:
        from strata.policy import parse

        parse(image_policy)
    enable = enable or now
    with ext._streaming(progress), ext._lock(root):
        policy = image_policy if image_policy is not None else config.load(root).image_policy
        directory = store_dir(root)
        fsio.make_dirs(directory)
        clean_strays(root)
        entries = store.scan(root)
        staged: list[Staged] = []
        added: list[str] = []
        try:
            for text in dict.fromkeys(sources):
                staged.append(_stage(text, root, directory=directory, env=env,
                                     image_policy=policy, resolver=resolver, entries=entries,
                                     staged=staged))
            faults.point("install-validated")
            for s in staged:
                v = s.validated
                if s.action is InstallAction.PRESENT:
                    log.info(f"{_version_text(v)} is already installed ({s.existing}), "
                             "nothing to do.")
                    continue
                added.append(_commit(root, directory, s))
                older = [e for e in entries if e.name == v.name and e.origin == "store"]
                kept = f"; {len(older)} other version(s) kept for rollback" if older else ""
                log.info(f"Installed {_version_text(v)} as {added[-1]} (sha256 "
                         f"{s.fetched.sha256[:12]}){kept}.")
        except BaseException:
            _uncommit(root, directory, added)
            raise
        finally:
            for s in staged:
                shutil.rmtree(s.tmpdir, ignore_errors=True)

        results: list[Installed] = []
        for s in staged:
            path = (os.path.join(directory, s.file_name) if s.action is InstallAction.INSTALLED
                    else s.existing or "")
            results.append(Installed(
                name=s.validated.name, version=s.validated.version, path=path,
                sha256=s.fetched.sha256, size=s.fetched.size, source=s.source.text,
                kind=s.source.kind, action=s.action, enabled=enable))
        if enable:
            wanted = list(dict.fromkeys(
                store.image_stem(os.path.basename(r.path), is_dir=False) or r.name
                for r in results))
            try:
                ext.enable(root, wanted)
            except BaseException:
                if added:
                    log.info("Taking the images just installed out again.")
                    _uncommit(root, directory, added)
                raise
            faults.point("install-enabled")
        outcome = ext.refresh(root, env) if now else None
        return InstallResult(installed=tuple(results), outcome=outcome)
