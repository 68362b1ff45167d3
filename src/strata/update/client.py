"""`strata update`: bring a device's extensions up to date from a TUF repository.

    check   refresh the metadata (remote.py), and for every extension enabled for the running
            OS release (and every one [update] extensions= names) choose the newest version the
            host can merge (offers.choose): the plan, nothing changed
    apply   the plan, step by step, each recorded in the journal (journal.py) first:
              planned     download each image into <root>/var/lib/strata/update/staging,
                          resuming earlier parts, verified against the signed length and
                          hashes (fetch.py); then checked as the engine will (its release
                          data, the image policy)
              downloaded  move the images into the store
              installed   enable them for the running OS release (strata ext enable)
              enabled     refresh (strata ext refresh: atomic)
              refreshed   health check (health.py)
              healthy     keep [update] keep old versions, delete the rest (gc.py); done
            a failed refresh or health check restores the enabled set as it was, refreshes
            back and forgets the new images (the device will not take them again:
            rejected.json; --retry-rejected does)

Bad metadata, a bad download or an image the device cannot merge stop the update before the
store or the enabled set change. A run that finds a journal first completes or rolls back
what it records (journal.recovery_for). Fault points (strata.faults): update-planned,
update-downloaded, update-installed, update-enabled, update-refreshed, update-healthy,
update-rolling-back, update-restored.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import secrets
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from strata import faults, log
from strata.errors import ErrorKind, StrataError
from strata.fsutil import join_root
from strata.record import record
from strata.update import journal
from strata.update.config import UpdateConfig
from strata.update.fetch import ProgressFn
from strata.update.health import Health
from strata.update.journal import Journal, Recovery, Step
from strata.update.offers import Offer

if TYPE_CHECKING:
    from strata.update.remote import Remote

LOCK_FILE = "/run/strata/update.lock"
STAGING_DIR = journal.STATE_DIR + "/staging"
REJECTED_FILE = "rejected.json"


@record
class Installed:
    """An extension enabled for the running OS release, as it is now."""

    name: str
    version: str | None
    path: str  # host path of the image the link leads to
    link: str  # the link's file name


@record
class Planned:
    name: str
    offer: Offer
    installed: Installed | None = None


@record
class Plan:
    url: str
    updates: tuple[Planned, ...] = ()
    current: tuple[tuple[str, str | None], ...] = ()  # (name, version): up to date
    not_offered: tuple[str, ...] = ()  # enabled, but not in the repository: left alone
    problems: tuple[str, ...] = ()  # wanted, but nothing the device can take
    pending: str | None = None  # the step of an interrupted update waiting in the journal


@record
class Result:
    plan: Plan
    updated: tuple[tuple[str, str | None, str], ...] = ()  # (name, old version, new)
    rolled_back: bool = False
    reason: str | None = None  # why it was rolled back
    health: Health | None = None
    removed: tuple[str, ...] = ()  # old versions deleted from the store
    recovered: str | None = None  # what became of a pending journal


# --- paths, lock, small state ----------------------------------------------------------------


def _root(root: str) -> str:
    from strata.engine.settings import normalize_root

    return normalize_root(root)


def _lock(root: str) -> contextlib.AbstractContextManager[None]:
    from strata.manage import fsio

    return fsio.locked(join_root(root, LOCK_FILE), "Waiting for another update to finish...")


def _ext_lock(root: str) -> contextlib.AbstractContextManager[None]:
    """`strata ext`'s change lock, held while the store or the enabled set changes."""
    from strata.manage import ext, fsio

    return fsio.locked(join_root(root, ext.LOCK_FILE))


def staging_dir(root: str) -> str:
    return join_root(root, STAGING_DIR)


def store_dir(root: str) -> str:
    from strata.fsutil import chase
    from strata.manage import store

    return chase(store.STORE_DIR, root, nonexistent=True)


def load_rejected(root: str) -> dict[str, str]:
    """sha256 -> why, for images this device rolled back."""
    try:
        with open(os.path.join(journal.state_dir(root), REJECTED_FILE), "rb") as f:
            data = json.loads(f.read())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    out = {}
    for digest, entry in data.items():
        if isinstance(entry, dict) and isinstance(entry.get("reason"), str):
            out[digest] = entry["reason"]
    return out


def _remember_rejected(root: str, items: Sequence[journal.Item], reason: str) -> None:
    from strata.manage import fsio

    path = os.path.join(journal.state_dir(root), REJECTED_FILE)
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read())
        if not isinstance(data, dict):
            data = {}
    except (OSError, ValueError):
        data = {}
    now = _now()
    for i in items:
        data[i.sha256] = {"name": i.name, "version": i.version, "file": i.file,
                          "reason": reason, "at": now}
    fsio.make_dirs(journal.state_dir(root))
    fsio.replace_file(journal.state_dir(root), REJECTED_FILE,
                      (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())


def _forget_rejected(root: str) -> None:
    from strata.manage import fsio

    fsio.remove(journal.state_dir(root), REJECTED_FILE)


def _now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


def repository_url(root: str, cfg: UpdateConfig, given: str | None) -> str:
    """--repo, else [update] repository, else the URL `--init` recorded."""
    from strata.update import remote

    url = given or cfg.repository or remote.stored_url(root)
    if not url:
        raise StrataError("No repository: pass --repo URL, set [update] repository in "
                          "/etc/strata/strata.toml, or run strata update --init.",
                          kind=ErrorKind.USAGE)
    return url


# --- what is installed -----------------------------------------------------------------------


def installed_extensions(root: str) -> dict[str, Installed]:
    """The extensions enabled for the running OS release, by name."""
    from strata.manage import enabled, store

    release = enabled.host_version_id(root)
    by_real = {e.real: e for e in store.scan(root)}
    out: dict[str, Installed] = {}
    for link in enabled.read_links(root, release):
        e = by_real.get(link.real) if link.real is not None else None
        if e is None or e.name in out:
            continue
        version = store.probe(e).version(e.file_version)
        out[e.name] = Installed(name=e.name, version=version, path=e.real, link=link.link)
    return out


# --- planning --------------------------------------------------------------------------------


def _host(root: str, env: Mapping[str, str]) -> tuple[object, object, str]:
    from strata.engine.query import in_initrd, native_arch
    from strata.model import Scope
    from strata.release import load_host_release

    host = load_host_release(root, env)
    scope = Scope.INITRD if in_initrd() else Scope.SYSTEM
    return host, scope, native_arch()


def _plan(root: str, cfg: UpdateConfig, url: str, env: Mapping[str, str], *,
          retry_rejected: bool) -> tuple[Plan, Remote]:
    from strata.model import Scope
    from strata.release import HostRelease
    from strata.update.offers import choose, is_newer
    from strata.update.remote import Remote

    host, scope, arch = _host(root, env)
    assert isinstance(host, HostRelease) and isinstance(scope, Scope)
    installed = installed_extensions(root)
    wanted = list(installed) + [n for n in cfg.extensions if n not in installed]
    remote = Remote(root, url)
    offers = remote.refresh()
    exclude = {} if retry_rejected else load_rejected(root)
    updates: list[Planned] = []
    current: list[tuple[str, str | None]] = []
    not_offered: list[str] = []
    problems: list[str] = []
    for name in wanted:
        inst = installed.get(name)
        if not any(o.name == name for o in offers):
            if inst is not None:
                not_offered.append(name)
            else:
                problems.append(f"'{name}' ([update] extensions) is not offered by the "
                                f"repository {url}.")
            continue
        choice = choose(name, offers, host, scope=scope, arch=arch, exclude=exclude)
        for version, why in choice.refused:
            log.debug(f"{name} {version} is not for this device: {why}")
        for version in choice.excluded:
            log.info(f"{name} {version} was rolled back on this device before: not taken "
                     "again (--retry-rejected takes it).")
        if choice.offer is None:
            if choice.problem is not None:
                problems.append(choice.problem)
            elif inst is not None:
                current.append((name, inst.version))
            continue
        if inst is not None and not is_newer(choice.offer.version, inst.version):
            current.append((name, inst.version))
            continue
        updates.append(Planned(name=name, offer=choice.offer, installed=inst))
    pending = journal.load(root)
    return Plan(url=url, updates=tuple(updates), current=tuple(current),
                not_offered=tuple(not_offered), problems=tuple(problems),
                pending=pending.step.value if pending is not None else None), remote


def check(root: str, *, url: str | None = None, env: Mapping[str, str] | None = None,
          retry_rejected: bool = False) -> Plan:
    """What `apply` would do; changes nothing but the verified metadata cache."""
    from strata.update import config

    root = _root(root)
    env = dict(os.environ if env is None else env)
    cfg = config.load(root)
    plan, _remote = _plan(root, cfg, repository_url(root, cfg, url), env,
                          retry_rejected=retry_rejected)
    return plan


def _raise_problems(problems: Sequence[str]) -> None:
    for p in problems[1:]:
        log.error(p)
    more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
    raise StrataError(problems[0] + more + " Nothing was changed.",
                      kind=ErrorKind.INCOMPATIBLE if "cannot take" in problems[0]
                      else ErrorKind.NOT_FOUND)


# --- the steps -------------------------------------------------------------------------------


def _links_snapshot(root: str, release: str) -> tuple[dict[str, str], dict[str, int]]:
    from strata.manage import enabled

    directory = enabled.release_dir(root, release)
    links: dict[str, str] = {}
    try:
        names = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        names = []
    for name in names:
        if name.startswith("."):
            continue
        with contextlib.suppress(OSError):
            links[name] = os.readlink(os.path.join(directory, name))
    return links, enabled.read_priorities(root, release)


def _restore_links(root: str, j: Journal) -> None:
    """The release's enabled set exactly as it was before the update."""
    from strata.manage import enabled, fsio

    with _ext_lock(root):
        now, prios = _links_snapshot(root, j.os_release)
        if now == dict(j.links_before) and prios == dict(j.priorities_before or {}):
            return
        directory = enabled.ensure_dir(root, j.os_release)
        for name in now:
            if name not in j.links_before:
                fsio.remove(directory, name)
        for name, target in j.links_before.items():
            if now.get(name) != target:
                fsio.replace_symlink(directory, name, target)
        if prios != dict(j.priorities_before or {}):
            enabled.write_priorities(directory, dict(j.priorities_before or {}))
        fsio.fsync_dir(directory)
        log.info(f"Restored the enabled set of OS release {j.os_release}.")


def _delete_new(root: str, j: Journal) -> None:
    """Forget the update's images that were not in the store before it."""
    from strata.manage import fsio

    directory = store_dir(root)
    for i in j.items:
        if i.existed:
            continue
        if fsio.remove(directory, i.file):
            log.info(f"Removed {i.file} from the store.")
        _delete_record(root, i.file)
    with contextlib.suppress(StrataError):
        fsio.fsync_dir(directory)


def _records() -> object | None:
    """strata ext's install records (manage/records.py), when present: images installed by
    an update are recorded like `strata ext install`'s, for `strata ext verify`."""
    import importlib

    try:
        return importlib.import_module("strata.manage.records")
    except ModuleNotFoundError:
        return None


def _delete_record(root: str, file: str) -> None:
    module = _records()
    if module is not None:
        with contextlib.suppress(StrataError, OSError):
            module.delete(root, file)  # type: ignore[attr-defined]


def _save_record(root: str, i: journal.Item, url: str) -> None:
    module = _records()
    if module is None:
        return
    from strata.manage.api import SourceKind  # type: ignore[attr-defined,unused-ignore]

    record_cls = module.ImageRecord  # type: ignore[attr-defined]
    module.save(root, record_cls(image=i.file, sha256=i.sha256, size=i.length,  # type: ignore[attr-defined]
                                 source=url, kind=SourceKind.REPOSITORY,
                                 installed_at=_now()))


def _step(root: str, j: Journal, step: Step, reason: str | None = None, *,
          reject: bool | None = None) -> Journal:
    j = j.at(step, reason, reject=reject)
    journal.save(root, j)
    return j


def _discard(root: str, j: Journal) -> None:
    """Undo an update that had not reached the refresh: the enabled set as before, the new
    store files gone. Staged downloads stay (the next run resumes or reuses them)."""
    _restore_links(root, j)
    _delete_new(root, j)
    journal.clear(root)


def _refresh(root: str, env: Mapping[str, str]) -> tuple[set[str], dict[str, str]]:
    """strata ext refresh: (names merged, name -> why skipped)."""
    from strata.manage import ext

    outcome = ext.refresh(root, env)
    return set(outcome.merged), dict(outcome.skipped)


def _roll_back(root: str, j: Journal, env: Mapping[str, str], reason: str, *,
               reject: bool) -> None:
    """Put back the enabled set and the merge as they were. Every step can be repeated, so a
    roll-back that is itself interrupted is finished by the next run. `reject`: the new
    versions failed (rather than being interrupted): remember not to take them again."""
    from strata.manage import ext
    from strata.update import health

    if j.step is not Step.ROLLING_BACK:
        j = _step(root, j, Step.ROLLING_BACK, reason, reject=reject)
    faults.point("update-rolling-back")
    log.warning(f"Rolling back: {reason}")
    _restore_links(root, j)
    faults.point("update-restored")
    try:
        if j.merged_before:
            _refresh(root, env)
        elif health.merged_names(root):
            ext.unmerge(root, env)
    except StrataError as e:
        raise StrataError(f"Rolling back failed: {e.message} (the journal is kept: the next "
                          "'strata update' tries again)", kind=e.kind) from e
    _delete_new(root, j)
    if j.reject:
        _remember_rejected(root, j.items, j.reason or reason)
    journal.clear(root)
    log.warning("Rolled back to " + ", ".join(
        f"{i.name} {i.old_version}" if i.old_version else f"no {i.name}" for i in j.items) + ".")


def _commit(root: str, j: Journal, cfg: UpdateConfig) -> tuple[str, ...]:
    from strata.update import gc

    removed = gc.collect(root, [i.name for i in j.items], cfg.keep)
    _clean_staging(root, keep=())
    journal.clear(root)
    return tuple(removed)


def _verify_and_commit(root: str, j: Journal, cfg: UpdateConfig, env: Mapping[str, str], *,
                       merged: set[str] | None = None,
                       skipped: Mapping[str, str] | None = None) -> tuple[Health, tuple[str, ...]]:
    """Health check; healthy: commit (returns what GC removed); else roll back."""
    from strata.update import health

    result = health.check(root, cfg, {i.name: i.version for i in j.items}, env=env,
                          merged=merged)
    if not result.ok:
        reason = f"health check failed: {result.reason}"
        skips = dict(skipped or {})
        why = [f"{n}: {skips[n]}" for n in sorted(skips) if any(i.name == n for i in j.items)]
        if why:
            reason += " (" + "; ".join(why) + ")"
        _roll_back(root, j, env, reason, reject=True)
        return result, ()
    j = _step(root, j, Step.HEALTHY)
    faults.point("update-healthy")
    return result, _commit(root, j, cfg)


def recover(root: str, cfg: UpdateConfig, env: Mapping[str, str]) -> str | None:
    """Complete or roll back an update a journal records; what became of it."""
    j = journal.load(root)
    if j is None:
        return None
    action = journal.recovery_for(j.step)
    log.info(f"Found an interrupted update (step '{j.step.value}', started {j.started}): "
             f"{action.value}.")
    if action is Recovery.DISCARD:
        _discard(root, j)
        return "discarded"
    if action is Recovery.ROLL_BACK:
        _roll_back(root, j, env, j.reason or "the update was interrupted before the new "
                   "versions were running", reject=j.reject)
        return "rolled back"
    if action is Recovery.RECHECK:
        result, _removed = _verify_and_commit(root, j, cfg, env)
        return "completed" if result.ok else "rolled back"
    _commit(root, j, cfg)
    return "completed"


def _clean_staging(root: str, keep: Sequence[str]) -> None:
    """Remove staged files that no planned update wants (keep: file names)."""
    import shutil

    directory = staging_dir(root)
    try:
        names = os.listdir(directory)
    except OSError:
        return
    wanted = set(keep) | {f"{k}.part" for k in keep}
    for name in names:
        if name in wanted:
            continue
        path = os.path.join(directory, name)
        with contextlib.suppress(OSError):
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)


def _download(root: str, remote: Remote, offer: Offer, cfg: UpdateConfig,
              progress: ProgressFn | None) -> str:
    from strata.manage import fsio
    from strata.update.fetch import Want, download

    info = remote.target(offer)
    directory = staging_dir(root)
    fsio.make_dirs(directory)
    dest = os.path.join(directory, offer.path)
    download(Want(url=remote.target_url(info), dest=dest, length=info.length,
                  hashes=dict(info.hashes), label=offer.path),
             progress=progress, timeout=cfg.timeout, retries=cfg.retries)
    return dest


def _image_policy(root: str, cfg: UpdateConfig) -> str | None:
    if cfg.image_policy is not None:
        return cfg.image_policy
    from strata.manage import config

    policy: str | None = getattr(config.load(root), "image_policy", None)
    return policy


def check_image(root: str, path: str, offer: Offer, env: Mapping[str, str],
                image_policy: str | None) -> None:
    """The downloaded image is what the signed metadata said (name, version, classes) and
    the engine would merge it here (release data against the host, image policy). INVALID,
    INCOMPATIBLE or PERMISSION naming the image, otherwise."""
    from strata.discover import Extension
    from strata.engine import ops
    from strata.engine.settings import resolve
    from strata.manage import store
    from strata.model import ImageType

    directory, fname = os.path.split(path)
    entry = store.entry_at("/", store.STORE_DIR, directory, fname, origin=store.STORE_ORIGIN)
    probe = store.probe(entry) if entry is not None else None
    if entry is None or probe is None or not probe.is_extension:
        why = probe.problem if probe is not None and probe.problem else "no extension-release"
        raise StrataError(f"{offer.path}: the downloaded image is not an extension ({why}).",
                          kind=ErrorKind.INVALID)
    version = probe.version(entry.file_version)
    classes = {r.cls for r in probe.releases}
    if entry.name != offer.name or version != offer.version or classes != set(offer.classes):
        raise StrataError(f"{offer.path}: the image is {entry.name} {version} "
                          f"({', '.join(sorted(c.value for c in classes))}), the signed "
                          f"metadata says {offer.name} {offer.version}.",
                          kind=ErrorKind.INVALID)
    check_dir = os.path.join(directory, ".check")
    os.makedirs(check_dir, 0o700, exist_ok=True)
    problems: list[tuple[str, bool]] = []
    for r in probe.releases:
        link = os.path.join(check_dir, f"{r.lookup_name}.raw")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(link)
        os.symlink(path, link)
        try:
            settings = resolve(r.cls, env, root=None if root == "/" else root,
                               image_policy=image_policy)
            image = Extension(name=r.lookup_name, path=link, type=ImageType.RAW,
                              ext_class=r.cls, read_only=True, mtime_us=0, crtime_us=0,
                              search_dir=check_dir)
            candidates, broken = ops.read_candidates(settings, [image], lenient=True)
            problems += [(why, False) for _n, why in broken]
            if candidates:
                selection = ops.choose(settings, env, candidates,
                                       images=ops.ImageSet((image,), lenient=True))
                problems += [(d.reason, "image policy" in d.reason)
                             for d in selection.decisions if not d.accepted]
        finally:
            with contextlib.suppress(OSError):
                os.unlink(link)
    if problems:
        why, policy = problems[0]
        why = why.replace(check_dir + "/", "")
        raise StrataError(f"{offer.path}: refused: {why}",
                          kind=ErrorKind.PERMISSION if policy else ErrorKind.INCOMPATIBLE,
                          hint="the image policy is [update] image_policy, else [ext] "
                               "image_policy, in /etc/strata/strata.toml" if policy else None)


def _install(root: str, staged: str, item: journal.Item, url: str) -> None:
    from strata.manage import fsio

    directory = store_dir(root)
    fsio.make_dirs(directory)
    dest = os.path.join(directory, item.file)
    if item.existed:
        return
    with _ext_lock(root):  # strata ext's stray cleanup must not see a record without its image
        _save_record(root, item, url)
        try:
            os.rename(staged, dest)
        except OSError as e:
            raise StrataError.from_os(e, f"Failed to move '{staged}' into the store") from e


def _existing_identical(root: str, offer: Offer) -> bool:
    """The store already holds the file with exactly this content."""
    from strata.update.fetch import Want, verify_file

    path = os.path.join(store_dir(root), offer.path)
    if not os.path.lexists(path):
        return False
    if os.path.islink(path) or not verify_file(
            Want(url="", dest=path, length=offer.length, hashes={"sha256": offer.sha256},
                 label=offer.path), path):
        raise StrataError(f"The store already has a different {offer.path}: remove it "
                          "(strata ext) before updating to that version.",
                          kind=ErrorKind.CONFIGURATION)
    return True


def apply(root: str, *, url: str | None = None, env: Mapping[str, str] | None = None,
          progress: ProgressFn | None = None, retry_rejected: bool = False) -> Result:
    """Finish a pending update if there is one, then update (see the module docstring)."""
    from strata.manage import enabled, ext
    from strata.update import config, health

    root = _root(root)
    env = dict(os.environ if env is None else env)
    cfg = config.load(root)
    with _lock(root):
        recovered = recover(root, cfg, env)
        if retry_rejected:
            _forget_rejected(root)
        plan, remote = _plan(root, cfg, repository_url(root, cfg, url), env,
                             retry_rejected=retry_rejected)
        if plan.problems:
            _raise_problems(plan.problems)
        if not plan.updates:
            log.info("Everything is up to date.")
            return Result(plan=plan, recovered=recovered)
        release = enabled.host_version_id(root)
        links, prios = _links_snapshot(root, release)
        items = tuple(journal.Item(
            name=p.name, file=p.offer.path, version=p.offer.version, sha256=p.offer.sha256,
            length=p.offer.length, old_version=p.installed.version if p.installed else None,
            old_path=p.installed.path if p.installed else None,
            existed=_existing_identical(root, p.offer)) for p in plan.updates)
        j = Journal(id=secrets.token_hex(8), started=_now(), os_release=release,
                    step=Step.PLANNED, merged_before=bool(health.merged_names(root)),
                    links_before=links, priorities_before=prios, items=items)
        journal.save(root, j)
        faults.point("update-planned")
        _clean_staging(root, keep=[i.file for i in items])
        staged: dict[str, str] = {}
        try:
            policy = _image_policy(root, cfg)
            for p, i in zip(plan.updates, items, strict=True):
                if i.existed:
                    continue
                staged[i.file] = _download(root, remote, p.offer, cfg, progress)
                check_image(root, staged[i.file], p.offer, env, policy)
            j = _step(root, j, Step.DOWNLOADED)
            faults.point("update-downloaded")
            for i in items:
                if not i.existed:
                    _install(root, staged[i.file], i, url=plan.url)
            from strata.manage import fsio

            fsio.fsync_dir(store_dir(root))
            j = _step(root, j, Step.INSTALLED)
            faults.point("update-installed")
            ext.enable(root, [i.file[:-len(".raw")] for i in items])
        except (StrataError, OSError) as e:
            _discard(root, j)
            if isinstance(e, OSError):
                raise StrataError.from_os(e, "Update failed") from e
            raise
        j = _step(root, j, Step.ENABLED)
        faults.point("update-enabled")
        try:
            merged, skipped = _refresh(root, env)
        except StrataError as e:
            reason = f"refresh failed: {e.message}"
            _roll_back(root, j, env, reason, reject=True)
            return Result(plan=plan, rolled_back=True, reason=reason, recovered=recovered)
        j = _step(root, j, Step.REFRESHED)
        faults.point("update-refreshed")
        result, removed = _verify_and_commit(root, j, cfg, env, merged=merged,
                                             skipped=skipped)
        updated = tuple((i.name, i.old_version, i.version) for i in items)
        if not result.ok:
            return Result(plan=plan, rolled_back=True, health=result, recovered=recovered,
                          reason=f"health check failed: {result.reason}")
        for name, old, new in updated:
            log.info(f"Updated {name}: {old or '(new)'} -> {new}.")
        return Result(plan=plan, updated=updated, health=result, removed=removed,
                      recovered=recovered)


def pending(root: str) -> Journal | None:
    return journal.load(_root(root))


# --- for `strata ext install NAME` -----------------------------------------------------------


def resolve_target(root: str, name: str) -> str:
    """The newest version of `name` this device can merge, downloaded and verified into the
    staging directory: its host path (manage.api.Resolver)."""
    from strata.model import Scope
    from strata.release import HostRelease
    from strata.update import config
    from strata.update.offers import choose
    from strata.update.remote import Remote

    root = _root(root)
    cfg = config.load(root)
    url = repository_url(root, cfg, None)
    with _lock(root):
        remote = Remote(root, url)
        offers = remote.refresh()
        host, scope, arch = _host(root, os.environ)
        assert isinstance(host, HostRelease) and isinstance(scope, Scope)
        choice = choose(name, offers, host, scope=scope, arch=arch)
        if choice.offer is None:
            raise StrataError(choice.problem or f"No version of '{name}' to install.",
                              kind=ErrorKind.INCOMPATIBLE if choice.refused
                              else ErrorKind.NOT_FOUND, subject=name)
        return _download(root, remote, choice.offer, cfg, None)
