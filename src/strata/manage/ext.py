"""The management layer's verbs: api.py's contract, for `strata ext` and the varlink service.

merge/refresh, for the OS release the root runs (VERSION_ID of its os-release):

1. read the enabled set (enabled.py) and every enabled image's release files (store.py);
2. plan (plan.py, deps.py): leave out what cannot be merged, saying why; order the rest;
3. expose the plan as links in /run/extensions and /run/confexts (runlinks.py) and let the
   engine check every image as it would merge it (release data against the host, image
   policy, readable file systems), without mounting anything; a refused image is left out,
   with everything that depends on it, and the links are rewritten to match;
4. merge (or refresh) sysext, then confext, each with an explicit ImageSet in that order;
5. run the hooks (hooks.py) with what was merged.

A `merge` that fails half way takes the class it already merged down again, so the result is
all or nothing; a refresh cannot go back (the old overlays are gone) and reports the error.
Changes take <root>/run/strata/ext.lock, so two of them never interleave; reads do not.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from strata import log
from strata.errors import ErrorKind, StrataError
from strata.fsutil import join_root
from strata.manage import deps, enabled, fsio, plan, runlinks, store
from strata.manage.api import (
    CountResult,
    ExtensionInfo,
    ExtensionStatus,
    HookRun,
    MergedExtension,
    Outcome,
    Progress,
)
from strata.manage.store import Probe, StoreEntry
from strata.model import ExtClass

if TYPE_CHECKING:
    from strata.discover import Extension
    from strata.engine.ops import MergeOutcome
    from strata.engine.settings import Settings
    from strata.manage.config import ExtConfig

LOCK_FILE = "/run/strata/ext.lock"
#: sysext first, then confext, as avocadoctl merges them (unmerge: the same order)
CLASSES = (ExtClass.SYSEXT, ExtClass.CONFEXT)


def _root(root: str) -> str:
    from strata.engine.settings import normalize_root

    return normalize_root(root)


#: roots whose change lock this thread holds: a verb that calls another (install --now calls
#: enable and refresh) keeps the one lock instead of deadlocking on a second flock
_held = threading.local()


@contextlib.contextmanager
def _lock(root: str) -> Iterator[None]:
    held: set[str] = _held.__dict__.setdefault("roots", set())
    if root in held:
        yield
        return
    with fsio.locked(join_root(root, LOCK_FILE),
                     "Waiting for another extension change to finish..."):
        held.add(root)
        try:
            yield
        finally:
            held.discard(root)


@contextlib.contextmanager
def _streaming(progress: Progress | None) -> Iterator[None]:
    if progress is None:
        yield
        return

    me = threading.get_ident()

    def forward(_level: int, message: str) -> None:
        # only this operation's lines: a daemon answers reads on other threads meanwhile
        if threading.get_ident() == me:
            progress(message)

    with log.listen(forward):
        yield


# --- reading the store and the enabled set ---------------------------------------------------


def _scan(root: str) -> tuple[list[StoreEntry], dict[str, Probe]]:
    entries = store.scan(root)
    return entries, {e.path: store.probe(e) for e in entries}


def _version(probes: Mapping[str, Probe], e: StoreEntry) -> str | None:
    return probes[e.path].version(e.file_version) if e.path in probes else e.file_version


def resolve_name(entries: Sequence[StoreEntry], probes: Mapping[str, Probe], name: str
                 ) -> StoreEntry | None:
    """The image `name` means: the one with that image name, else the newest version
    (strverscmp_improved) of those with that name, the first found on a tie."""
    for e in entries:
        if e.image_name == name:
            return e
    same = [e for e in entries if e.name == name]
    if not same:
        return None
    import functools

    from strata.versions import strverscmp_improved

    key = functools.cmp_to_key(strverscmp_improved)
    return max(same, key=lambda e: key(_version(probes, e) or ""))


def _enabled(root: str, version: str, entries: Sequence[StoreEntry]
             ) -> list[tuple[enabled.EnabledLink, StoreEntry | None]]:
    """The release's links and the images they lead to (None: dangling). A link to an image
    outside the store and search directories still counts: the link is the decision."""
    by_real: dict[str, StoreEntry] = {}
    for e in entries:
        by_real.setdefault(e.real, e)
    out: list[tuple[enabled.EnabledLink, StoreEntry | None]] = []
    directory = enabled.release_dir(root, version)
    for link in enabled.read_links(root, version):
        entry = by_real.get(link.real) if link.real is not None else None
        if entry is None and link.real is not None:
            where = os.path.relpath(os.path.dirname(link.real), root)
            entry = store.entry_at(root, os.path.dirname(link.in_root), directory, link.link,
                                   origin="/" if where == "." else "/" + where)
        out.append((link, entry))
    return out


def _link_name(link: enabled.EnabledLink, entry: StoreEntry | None) -> str:
    if entry is not None:
        return entry.name
    stem = store.image_stem(link.link, is_dir=not link.link.endswith(".raw")) or link.link
    return store.split_version(stem)[0]


def _node(name: str, probe: Probe | None, priority: int) -> deps.Node:
    releases = [r.fields for r in probe.releases] if probe is not None else []
    return deps.node_from_release(name, releases, priority)


def _probe_of(probes: Mapping[str, Probe], entry: StoreEntry | None) -> Probe | None:
    if entry is None:
        return None
    hit = probes.get(entry.path)
    return hit if hit is not None else store.probe(entry)


# --- list and status -------------------------------------------------------------------------


def list_extensions(root: str) -> list[ExtensionInfo]:
    """Every image in the store and the search directories, by name."""
    root = _root(root)
    entries, probes = _scan(root)
    out = []
    for e in entries:
        p = probes[e.path]
        out.append(ExtensionInfo(name=e.name, version=p.version(e.file_version), path=e.path,
                                 is_sysext=p.sysext is not None,
                                 is_confext=p.confext is not None,
                                 is_directory=e.is_directory))
    out.sort(key=lambda i: (i.name, i.path))
    return out


def _hierarchies(cls: ExtClass, env: Mapping[str, str]) -> tuple[str, ...]:
    from strata.engine.settings import parse_hierarchies

    try:
        return parse_hierarchies(env.get(f"{cls.env_prefix}_HIERARCHIES"), cls)
    except StrataError:
        return cls.default_hierarchies


def merged_names(root: str, cls: ExtClass, env: Mapping[str, str] | None = None
                 ) -> tuple[str, ...]:
    """The names the markers of the class's merged hierarchies list (the first merged
    hierarchy's order, then any others')."""
    from strata.engine import marker
    from strata.engine.query import resolved

    names: dict[str, None] = {}
    for h in _hierarchies(cls, os.environ if env is None else env):
        try:
            target = resolved(h, root)
            state = marker.read_merged(cls, target, root) if target is not None else None
        except StrataError:
            continue
        if state is not None:
            names.update(dict.fromkeys(state.extensions))
    return tuple(names)


def _merged_as(e: StoreEntry, p: Probe, cls: ExtClass, merged: Sequence[str]) -> bool:
    r = p.release(cls)
    return r is not None and (r.lookup_name in merged or e.image_name in merged)


def status(root: str) -> list[ExtensionStatus]:
    """Every image (as list_extensions), whether it is enabled for the running OS release and
    merged; then every merged name no image accounts for (merged by someone else, or its
    image is gone)."""
    root = _root(root)
    entries, probes = _scan(root)
    version = enabled.host_version_id(root)
    on: set[str] = set()
    known = {e.path for e in entries}
    for _link, e in _enabled(root, version, entries):
        if e is None:
            continue
        on.add(e.path)
        if e.path not in known:  # enabled by a link to an image outside the store
            entries.append(e)
            probes[e.path] = store.probe(e)
            known.add(e.path)
    merged = {cls: merged_names(root, cls) for cls in CLASSES}
    ids = store.image_ids(root, entries)
    out: list[ExtensionStatus] = []
    accounted: set[tuple[ExtClass, str]] = set()
    for e in entries:
        p = probes[e.path]
        is_merged = False
        for cls in CLASSES:
            if _merged_as(e, p, cls, merged[cls]):
                is_merged = True
                r = p.release(cls)
                accounted.update({(cls, e.image_name), (cls, r.lookup_name if r else "")})
        out.append(ExtensionStatus(
            name=e.name, version=p.version(e.file_version), is_sysext=p.sysext is not None,
            is_confext=p.confext is not None, is_merged=is_merged, origin=e.origin,
            image_id=ids.get(e.path), enabled=e.path in on, path=e.path))
    out.sort(key=lambda s: (s.name, s.path or ""))
    foreign: dict[str, ExtensionStatus] = {}
    for cls in CLASSES:
        for name in merged[cls]:
            if (cls, name) in accounted:
                continue
            prev = foreign.get(name)
            foreign[name] = ExtensionStatus(
                name=name, version=None,
                is_sysext=cls is ExtClass.SYSEXT or (prev is not None and prev.is_sysext),
                is_confext=cls is ExtClass.CONFEXT or (prev is not None and prev.is_confext),
                is_merged=True, origin=None, image_id=None)
    return out + [foreign[n] for n in sorted(foreign)]


# --- enable and disable ----------------------------------------------------------------------


def _not_found(name: str) -> StrataError:
    return StrataError(
        f"Extension '{name}' not found in {store.STORE_DIR} or the extension directories.",
        kind=ErrorKind.NOT_FOUND, subject=name, errno=errno.ENOENT)


def _target_release(root: str, os_release: str | None) -> str:
    if os_release is not None:
        return enabled.check_release(os_release)
    return enabled.host_version_id(root)


def enable(root: str, names: Sequence[str], *, os_release: str | None = None,
           priority: int | None = None) -> CountResult:
    """Enable `names` for an OS release (default: the root's). Everything is checked before
    anything is written: an unknown name is NOT_FOUND (subject=name); an image that is no
    extension, a missing or disabled dependency, a conflict or a cycle is CONFIGURATION.
    Enabling a name already enabled in another version switches to the image chosen now;
    without --priority an extension keeps the priority it had."""
    root = _root(root)
    if not names:
        raise StrataError("No extension to enable given.", kind=ErrorKind.USAGE)
    version = _target_release(root, os_release)
    with _lock(root):
        entries, probes = _scan(root)
        chosen: dict[str, StoreEntry] = {}
        for name in dict.fromkeys(names):
            e = resolve_name(entries, probes, name)
            if e is None:
                raise _not_found(name)
            p = probes[e.path]
            if not p.is_extension:
                raise StrataError(
                    p.problem or f"Cannot enable '{name}': {e.path} carries no extension-release "
                    f"file for '{e.image_name}' (usr/lib/extension-release.d/ or "
                    "etc/extension-release.d/).", kind=ErrorKind.CONFIGURATION)
            chosen[e.name] = e
        current = _enabled(root, version, entries)
        prios = enabled.read_priorities(root, version)
        new_prios = dict(prios)
        if priority is not None:
            new_prios.update(dict.fromkeys(chosen, priority))
        nodes: dict[str, deps.Node] = {}
        for link, entry in current:
            name = _link_name(link, entry)
            if name in chosen or name in nodes or entry is None:
                continue
            found = _probe_of(probes, entry)
            if found is None or not found.is_extension:
                continue  # an enabled but unusable image provides nothing
            nodes[name] = _node(name, found, new_prios.get(name, deps.DEFAULT_PRIORITY))
        for name, e in chosen.items():
            nodes[name] = _node(name, probes[e.path], new_prios.get(name, deps.DEFAULT_PRIORITY))
        deps.check_enable(set(chosen), list(nodes.values()),
                          known={e.name for e in entries})

        directory = enabled.ensure_dir(root, version)
        for name, e in chosen.items():
            link_name = os.path.basename(e.in_root)
            fsio.replace_symlink(directory, link_name, enabled.link_target(e.path, directory))
            for link, entry in current:
                if link.link != link_name and _link_name(link, entry) == name:
                    fsio.remove(directory, link.link)  # the other version of this name
        if new_prios != prios:
            enabled.write_priorities(directory, new_prios)
        fsio.fsync_dir(directory)
        for name, e in chosen.items():
            log.info(f"Enabled extension '{name}' ({e.path}) for OS release {version}.")
    return CountResult(done=len(chosen), failed=0)


def disable(root: str, names: Sequence[str] | None = None, *, all: bool = False,
            os_release: str | None = None) -> CountResult:
    """Disable `names` (or, with `all`, everything) for an OS release (default: the root's).
    An unknown name is NOT_FOUND and nothing changes; a known name that is not enabled counts
    as failed (the others are still disabled); disabling what an extension staying enabled
    depends on is CONFIGURATION."""
    root = _root(root)
    if not all and not names:
        raise StrataError("No extension to disable given (name some, or use --all).",
                          kind=ErrorKind.USAGE)
    version = _target_release(root, os_release)
    with _lock(root):
        directory = enabled.release_dir(root, version)
        entries, probes = _scan(root)
        current = _enabled(root, version, entries)
        remove: dict[str, str] = {}  # link file -> extension name
        failed = 0
        if all:
            remove = {link.link: _link_name(link, entry) for link, entry in current}
        else:
            for name in dict.fromkeys(names or ()):
                hits = [(link, entry) for link, entry in current
                        if name in (_link_name(link, entry), link.link,
                                    entry.image_name if entry else None)]
                if hits:
                    remove.update({link.link: _link_name(link, entry) for link, entry in hits})
                elif resolve_name(entries, probes, name) is None:
                    raise _not_found(name)
                else:
                    log.warning(f"Extension '{name}' is not enabled for OS release {version}.")
                    failed += 1
            prios = enabled.read_priorities(root, version)
            nodes: dict[str, deps.Node] = {}
            for link, entry in current:
                name = _link_name(link, entry)
                p = _probe_of(probes, entry)
                if name not in nodes and p is not None and p.is_extension:
                    nodes[name] = _node(name, p, prios.get(name, deps.DEFAULT_PRIORITY))
            deps.check_disable(set(remove.values()), list(nodes.values()))
        if not remove:
            return CountResult(done=0, failed=failed)
        for link_file in remove:
            fsio.remove(directory, link_file)
        gone = set(remove.values())
        prios = enabled.read_priorities(root, version)
        kept = {k: v for k, v in prios.items() if k not in gone}
        if kept != prios:
            enabled.write_priorities(directory, kept)
        fsio.fsync_dir(directory)
        for name in dict.fromkeys(remove.values()):
            log.info(f"Disabled extension '{name}' for OS release {version}.")
    return CountResult(done=len(gone), failed=failed)


# --- merge, refresh, unmerge -----------------------------------------------------------------


def _hooks_module() -> Any:
    """manage/hooks.py when it is there (hooks are optional to the merge itself)."""
    import importlib

    try:
        return importlib.import_module("strata.manage.hooks")
    except ImportError:
        return None


def _live(root: str) -> bool:
    return root == "/" and os.path.isdir("/run/systemd/system")


def _run_hooks(which: str, root: str, merged: Sequence[MergedExtension]) -> tuple[HookRun, ...]:
    """A hook failure is reported, never undoes the merge."""
    module = _hooks_module()
    fn = getattr(module, which, None) if module is not None else None
    if fn is None or not merged:
        return ()
    try:
        return tuple(fn(root, merged, live=_live(root)))
    except (StrataError, OSError) as e:
        message = e.message if isinstance(e, StrataError) else str(e)
        log.error(f"Hooks ({which}) failed: {message}")
        return (HookRun(phase=which, argv=(), ran=False, error=message),)


def _run_services(which: str, root: str, merged: Sequence[MergedExtension],
                  hook_runs: Sequence[HookRun] = ()) -> tuple[HookRun, ...]:
    """Start (after_merge) or stop (before_unmerge) the services the extensions declare
    (services.py); like a hook, a failure is reported and undoes nothing."""
    from strata.manage import services

    if not merged:
        return ()
    try:
        if which == "after_merge":
            return services.after_merge(root, merged, live=_live(root), hook_runs=hook_runs)
        return services.before_unmerge(root, merged, live=_live(root))
    except (StrataError, OSError) as e:
        message = e.message if isinstance(e, StrataError) else str(e)
        log.error(f"Services ({which}) failed: {message}")
        return (HookRun(phase=which, argv=(), ran=False, error=message),)


def _settings(cls: ExtClass, env: Mapping[str, str], root: str, cfg: ExtConfig) -> Settings:
    from strata.engine.settings import resolve

    # With hooks.py present it reloads the service manager (EXTENSION_RELOAD_MANAGER=1)
    # after its own phases; the engine must not do it a second time.
    return resolve(cls, env, root=None if root == "/" else root,
                   mutable=cfg.mutable(cls).value, no_reload=_hooks_module() is not None,
                   image_policy=cfg.image_policy)


def _items(root: str, version: str, entries: Sequence[StoreEntry],
           probes: Mapping[str, Probe]) -> list[plan.Item]:
    prios = enabled.read_priorities(root, version)
    items = []
    for link, entry in _enabled(root, version, entries):
        name = _link_name(link, entry)
        items.append(plan.Item(name=name, link=link.in_root, entry=entry,
                               probe=_probe_of(probes, entry),
                               priority=prios.get(name, deps.DEFAULT_PRIORITY)))
    return items


def _engine_images(root: str, cls: ExtClass, parts: Sequence[plan.Part]
                   ) -> tuple[list[Extension], dict[tuple[str, ExtClass], str]]:
    """Link `parts` into the class's run directory, and describe them to the engine as
    systemd would find them there. Returns the images and the parts that could not be
    linked (a foreign entry holds the name)."""
    from strata.discover import Extension
    from strata.model import ImageType

    synced = runlinks.sync(root, cls, {p.link_name: p.entry.real for p in parts})
    images: list[Extension] = []
    refused: dict[tuple[str, ExtClass], str] = {}
    for p in parts:
        if p.link_name in synced.occupied:
            refused[(p.name, cls)] = (
                f"Cannot expose extension '{p.name}' as {store.RUN_DIRS[cls]}/{p.link_name}: "
                "something that is not Strata's link is there, skipping it.")
            continue
        is_dir = p.entry.is_directory
        images.append(Extension(
            name=p.release.lookup_name,
            # a raw image's name comes from its file name: use the link, named for the
            # release file, as systemd would; a directory is read where it is
            path=p.entry.real if is_dir else synced.links[p.link_name],
            type=ImageType.DIRECTORY if is_dir else ImageType.RAW, ext_class=cls,
            read_only=True, mtime_us=0, crtime_us=0, search_dir=store.RUN_DIRS[cls]))
    return images, refused


def _precheck(settings: Settings, env: Mapping[str, str], images: Sequence[Extension]
              ) -> dict[str, str]:
    """lookup name -> why the engine would leave the image out (unreadable, policy,
    incompatible with the host): its own decisions, made without mounting."""
    from strata.engine import ops

    if not images:
        return {}
    candidates, broken = ops.read_candidates(settings, list(images), lenient=True)
    selection = ops.choose(settings, env, candidates,
                           images=ops.ImageSet(tuple(images), lenient=True))
    out = dict(broken)
    out.update({d.name: d.reason for d in selection.decisions if not d.accepted})
    return out


def _record(part: plan.Part) -> MergedExtension:
    return MergedExtension(name=part.release.lookup_name, cls=part.cls.value,
                           path=part.entry.path, release=dict(part.release.fields),
                           release_pairs=part.release.pairs)


def _merged_records(root: str, entries: Sequence[StoreEntry], probes: Mapping[str, Probe],
                    env: Mapping[str, str]) -> tuple[list[MergedExtension], list[str]]:
    """What is merged now, as hook records (release data from the image in the store, else
    from the merged tree), and the extension names."""
    from strata.images.base import DirectoryFS
    from strata.release import MAX_RELEASE_SIZE, find_extension_release, parse_env_pairs

    records: list[MergedExtension] = []
    names: list[str] = []
    for cls in CLASSES:
        for merged_name in merged_names(root, cls, env):
            hit = next(((e, probes[e.path]) for e in entries
                        if _merged_as(e, probes[e.path], cls, (merged_name,))), None)
            release: Mapping[str, str] = {}
            pairs: tuple[tuple[str, str], ...] = ()
            path = ""
            if hit is not None:
                e, p = hit
                r = p.release(cls)
                path, name = e.path, e.name
                if r is not None:
                    release, pairs = r.fields, r.pairs
            else:
                name = store.split_version(merged_name)[0]
                try:
                    fs = DirectoryFS(root)
                    found = find_extension_release(fs, cls, merged_name)
                    if found.path is not None:
                        pairs = tuple(parse_env_pairs(
                            fs.read(found.path, limit=MAX_RELEASE_SIZE),
                            source=join_root(root, found.path)))
                        release = dict(pairs)
                except StrataError:
                    pass
            records.append(MergedExtension(name=merged_name, cls=cls.value, path=path,
                                           release=dict(release), release_pairs=pairs))
            if name not in names:
                names.append(name)
    return records, names


def _apply(root: str, env: Mapping[str, str], *, refresh: bool,
           progress: Progress | None) -> Outcome:
    from strata.engine import ops
    from strata.manage import config

    root = _root(root)
    with _streaming(progress), _lock(root):
        cfg = config.load(root)
        version = enabled.host_version_id(root)
        log.info(f"{'Refreshing' if refresh else 'Merging'} the extensions enabled for OS "
                 f"release {version}.")
        entries, probes = _scan(root)
        merge_plan = plan.plan(_items(root, version, entries, probes))
        settings = {cls: _settings(cls, env, root, cfg) for cls in CLASSES}
        if not refresh:
            for cls in CLASSES:
                which = ops.first_merged(settings[cls]) if merge_plan.for_class(cls) else None
                if which is not None:
                    raise StrataError(f"Hierarchy '{which}' is already merged.",
                                      kind=ErrorKind.BUSY, errno=errno.EBUSY,
                                      hint="use 'strata ext refresh'")
        old, old_names = (_merged_records(root, entries, probes, env) if refresh
                          else ([], []))

        # The engine's own checks, on the images as it will see them.
        rejected: dict[tuple[str, ExtClass], str] = {}
        for cls in CLASSES:
            parts = merge_plan.for_class(cls)
            images, refused = _engine_images(root, cls, parts)
            rejected.update(refused)
            name_of = {p.release.lookup_name: p.name for p in parts}
            for lookup, why in _precheck(settings[cls], env, images).items():
                rejected[(name_of.get(lookup, lookup), cls)] = why
        if rejected:
            merge_plan = plan.without(merge_plan, rejected)
        for _name, why in merge_plan.skipped:
            log.warning(why)

        hooks: list[HookRun] = []
        if refresh:
            staying: dict[str, set[str]] = {}
            for p in merge_plan.parts:
                staying.setdefault(p.cls.value, set()).add(p.release.lookup_name)
            hooks += _run_services("before_unmerge", root,
                                   [r for r in old if r.name not in staying.get(r.cls, ())])
            hooks += _run_hooks("before_unmerge", root, old)
        outcomes: dict[ExtClass, MergeOutcome] = {}
        done: list[ExtClass] = []
        try:
            for cls in CLASSES:
                parts = merge_plan.for_class(cls)
                images, _refused = _engine_images(root, cls, parts)
                image_set = ops.ImageSet(tuple(images),
                                         order=tuple(p.release.lookup_name for p in parts),
                                         lenient=True)
                if refresh and (images or ops.first_merged(settings[cls]) is not None):
                    outcomes[cls] = ops.refresh(settings[cls], env, images=image_set)
                elif images:
                    outcomes[cls] = ops.merge(settings[cls], env, images=image_set)
                    done.append(cls)
        except StrataError:
            for cls in done:  # all or nothing
                try:
                    ops.unmerge(settings[cls])
                except StrataError as e:
                    log.error(f"Failed to take the {cls.value} merge down again: {e.message}")
            raise

        merged_parts: list[plan.Part] = []
        skipped = list(merge_plan.skipped)
        for cls, outcome in outcomes.items():
            part_of = {p.release.lookup_name: p for p in merge_plan.for_class(cls)}
            merged_parts += [part_of[n] for n in outcome.merged if n in part_of]
            for lookup, why in outcome.skipped:
                part = part_of.get(lookup)
                skipped.append((part.name if part else lookup, why))
        names = [n for n in merge_plan.order if any(p.name == n for p in merged_parts)]
        ordered = sorted(merged_parts, key=lambda p: (CLASSES.index(p.cls),
                                                      merge_plan.order.index(p.name)))
        records = [_record(p) for p in ordered]
        after = _run_hooks("after_merge", root, records)
        hooks += after
        hooks += _run_services("after_merge", root, records, after)
        return Outcome(merged=tuple(names), skipped=tuple(dict.fromkeys(skipped)),
                       hooks=tuple(hooks),
                       unmerged=tuple(n for n in old_names if n not in names))


def merge(root: str, env: Mapping[str, str], *, progress: Progress | None = None) -> Outcome:
    """Merge the extensions enabled for the running OS release, sysext and confext. BUSY if
    a class with something to merge is already merged (use refresh)."""
    return _apply(root, env, refresh=False, progress=progress)


def refresh(root: str, env: Mapping[str, str], *, progress: Progress | None = None) -> Outcome:
    """Merge the enabled set again (atomically per hierarchy where the kernel allows); a
    class with nothing left to merge is unmerged."""
    return _apply(root, env, refresh=True, progress=progress)


def unmerge(root: str, env: Mapping[str, str], *, unmount: bool = False,
            progress: Progress | None = None) -> Outcome:
    """Unmerge both classes and remove the links in /run/extensions and /run/confexts.
    `unmount` is accepted for avocadoctl's sake: Strata's loop devices belong to the overlays
    and are released with them, so there is nothing else to unmount."""
    from strata.engine import ops
    from strata.manage import config

    root = _root(root)
    with _streaming(progress), _lock(root):
        cfg = config.ExtConfig()  # the mutable mode plays no part in unmerging
        entries, probes = _scan(root)
        old, old_names = _merged_records(root, entries, probes, env)
        hooks = list(_run_services("before_unmerge", root, old))
        hooks += _run_hooks("before_unmerge", root, old)
        failure: StrataError | None = None
        for cls in CLASSES:
            try:
                ops.unmerge(_settings(cls, env, root, cfg))
            except StrataError as e:
                failure = failure or e
        for cls in CLASSES:
            runlinks.clear(root, cls)
        if unmount:
            log.info("Loop devices are released together with the overlays; nothing else "
                     "to unmount.")
        if failure is not None:
            raise failure
        hooks += _run_hooks("after_unmerge", root, old)
        return Outcome(merged=(), skipped=(), hooks=tuple(hooks), unmerged=tuple(old_names))
