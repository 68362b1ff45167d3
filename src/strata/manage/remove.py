"""`strata ext remove NAME... [--keep-files] [--force]`: take extensions off a device.

NAME is an extension name (every version of it goes) or an image name (that version only).
Everything is checked before anything changes: an unknown name is NOT_FOUND; an image outside
Strata's store (/var/lib/extensions, ...) is refused unless --keep-files, since Strata deletes
only what its store holds; and removing what an enabled extension depends on
(STRATA_DEPENDS=/STRATA_PROVIDES=), in any OS release it is enabled for, is CONFIGURATION,
naming that extension, unless --force (the dependent is then skipped at the next merge, with
the reason).

Then, with the change lock held, in this order:

1. stop the services it declares, if it is merged (services.py: live, or the recorded plan);
2. disable it: its links in every OS release directory go (a link to a deleted image would
   dangle), with its priority when no version of it stays enabled there;
3. refresh, if it was merged, so that it no longer is (its services are not stopped twice);
4. delete its images from the store (a directory image is first renamed to a `.#remove-`
   name, so it vanishes at once, then deleted), then their install records.

--keep-files stops after step 3: the images stay in the store and can be enabled again.
Each step is atomic and idempotent: after a crash, running the command again finishes it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Collection, Mapping, Sequence

from strata import faults, log
from strata.errors import ErrorKind, StrataError
from strata.manage import deps, enabled, fsio, records, store
from strata.manage.api import HookRun, MergedExtension, Outcome, Progress, RemoveResult
from strata.manage.store import Probe, StoreEntry
from strata.model import ExtClass
from strata.record import record


@record
class Unlink:
    """Links of one OS release to drop."""

    version: str
    links: tuple[str, ...]  # file names in the release directory
    names: tuple[str, ...]  # the extension names they enable


def dependents(removed: Collection[str], nodes: Sequence[deps.Node]
               ) -> list[tuple[str, str]]:
    """(extension staying enabled, removed extension it needs) for every dependency that the
    removal of `removed` from the enabled set `nodes` breaks (pure). A dependency already
    unmet is not this removal's doing."""
    staying = [n for n in nodes if n.name not in removed]
    out: list[tuple[str, str]] = []
    for n in staying:
        before = set(deps.missing(n, nodes))
        for d in deps.missing(n, staying):
            if d in before:
                continue
            gone = [p.name for p in nodes if p.name in removed and d in p.capabilities]
            out.append((n.name, gone[0] if gone else d))
    return out


def release_versions(root: str) -> list[str]:
    """Every OS release that has an enabled-set directory."""
    from strata.fsutil import chase

    try:
        return sorted(v for v in os.listdir(chase(enabled.OS_RELEASES_DIR, root))
                      if not v.startswith("."))
    except (OSError, StrataError):
        return []


def _targets(entries: Sequence[StoreEntry], names: Sequence[str], *, keep_files: bool
             ) -> dict[str, list[StoreEntry]]:
    from strata.manage.ext import _not_found

    out: dict[str, list[StoreEntry]] = {}
    for name in dict.fromkeys(names):
        hits = [e for e in entries if e.image_name == name] or \
               [e for e in entries if e.name == name]
        if not hits:
            raise _not_found(name)
        outside = [e for e in hits if e.origin != store.STORE_ORIGIN]
        if outside and not keep_files:
            where = outside[0].origin
            raise StrataError(
                f"Cannot remove '{name}': {outside[0].path} is not in Strata's store (it is in "
                f"{where}); Strata deletes only images in {store.STORE_DIR}.",
                hint="delete the file yourself, or use --keep-files to only disable and "
                     "unmerge it", kind=ErrorKind.USAGE)
        out[name] = hits
    return out


def _plan_unlinks(root: str, entries: Sequence[StoreEntry], probes: Mapping[str, Probe],
                  reals: Collection[str], merged_now: Sequence[MergedExtension]
                  ) -> tuple[list[Unlink], list[tuple[str, str, str]],
                             list[tuple[str, str]]]:
    """The links to drop in each OS release, (dependent, dependency, release) for every
    dependency that breaks, and (extension, release) for enabled extensions whose needs are
    unknown. An enabled image that cannot be read (damaged, say) counts with the release data
    of its merge when it is merged: what it needs is no less needed; when it is not merged,
    what it needs is unknown."""
    from strata.manage.enabled import host_version_id
    from strata.manage.ext import _enabled, _link_name, _node, _probe_of

    version_now = host_version_id(root)
    unlinks: list[Unlink] = []
    broken: list[tuple[str, str, str]] = []
    unknown: list[tuple[str, str]] = []
    for version in release_versions(root):
        current = _enabled(root, version, entries)
        drop = [(link, entry) for link, entry in current
                if entry is not None and entry.real in reals]
        if not drop:
            continue
        names = tuple(dict.fromkeys(_link_name(link, entry) for link, entry in drop))
        unlinks.append(Unlink(version=version, links=tuple(link.link for link, _ in drop),
                              names=names))
        prios = enabled.read_priorities(root, version)
        nodes: dict[str, deps.Node] = {}
        for link, entry in current:
            name = _link_name(link, entry)
            if name in nodes:
                continue
            prio = prios.get(name, deps.DEFAULT_PRIORITY)
            p = _probe_of(probes, entry)
            if p is not None and p.is_extension:
                nodes[name] = _node(name, p, prio)
            elif entry is not None and version == version_now:
                fields = [r.release for r in merged_now
                          if r.name in (entry.image_name, entry.name)]
                if fields:
                    nodes[name] = deps.node_from_release(name, fields, prio)
            if name not in nodes and name not in names and entry is not None:
                unknown.append((name, version))
        broken += [(a, b, version) for a, b in dependents(set(names), list(nodes.values()))]
    return unlinks, broken, unknown


def _unlink(root: str, u: Unlink) -> None:
    directory = enabled.release_dir(root, u.version)
    for link in u.links:
        fsio.remove(directory, link)
    left = {link.link for link in enabled.read_links(root, u.version)}
    prios = enabled.read_priorities(root, u.version)
    still = {n for n in u.names if any(store.split_version(
        store.image_stem(link, is_dir=not link.endswith(".raw")) or link)[0] == n
        for link in left)}
    kept = {k: v for k, v in prios.items() if k not in u.names or k in still}
    if kept != prios:
        enabled.write_priorities(directory, kept)
    fsio.fsync_dir(directory)
    for name in u.names:
        log.info(f"Disabled extension '{name}' for OS release {u.version}.")


def _merged(targets: Sequence[StoreEntry], entries: Sequence[StoreEntry],
            probes: Mapping[str, Probe], old: Sequence[MergedExtension],
            enabled_now: Collection[str]) -> list[MergedExtension]:
    """The merge records that are these images: merged under their lookup name (or image
    name), and either enabled now or with no other enabled image answering to that name
    (two versions may share the name their release file is found under)."""

    def probe(e: StoreEntry) -> Probe:
        return probes.get(e.path) or store.probe(e)

    removed = {e.real for e in targets}
    out: list[MergedExtension] = []
    for e in targets:
        for r in old:
            cls = ExtClass(r.cls)
            p = probe(e)
            release = p.release(cls)
            # a damaged image cannot say the name it is merged under: its own names do
            known = (release.lookup_name, e.image_name) if release is not None else \
                (e.image_name, e.name) if not p.is_extension else ()
            if r.name not in known:
                continue
            rivals = [o for o in entries if o.real in enabled_now and o.real not in removed
                      and (rel := probe(o).release(cls)) is not None
                      and r.name in (rel.lookup_name, o.image_name)]
            if (e.real in enabled_now or not rivals) and all(r is not o for o in out):
                out.append(r)
    return out


def _delete(root: str, directory: str, e: StoreEntry) -> None:
    if e.is_directory:
        import tempfile

        from strata.manage.install import REMOVE_PREFIX

        grave = tempfile.mkdtemp(prefix=REMOVE_PREFIX, dir=directory)
        try:
            os.rename(e.path, os.path.join(grave, "image"))
        except OSError as err:
            shutil.rmtree(grave, ignore_errors=True)
            raise StrataError.from_os(err, f"Failed to remove '{e.path}'") from err
        fsio.fsync_dir(directory)
        shutil.rmtree(grave, ignore_errors=True)
    else:
        fsio.remove(directory, os.path.basename(e.path))
        fsio.fsync_dir(directory)
    faults.point("remove-deleted")
    records.delete(root, os.path.basename(e.path))
    log.info(f"Deleted {e.path}.")


def remove(root: str, names: Sequence[str], *, keep_files: bool = False, force: bool = False,
           env: Mapping[str, str] | None = None, progress: Progress | None = None
           ) -> RemoveResult:
    """Remove `names` (see the module docstring)."""
    from strata.manage import ext, services
    from strata.manage.install import clean_strays, store_dir

    root = ext._root(root)
    env = dict(os.environ if env is None else env)
    if not names:
        raise StrataError("No extension to remove given.", kind=ErrorKind.USAGE)
    with ext._streaming(progress), ext._lock(root):
        clean_strays(root)
        entries, probes = ext._scan(root)
        targets = _targets(entries, names, keep_files=keep_files)
        images = list(dict.fromkeys(e for hits in targets.values() for e in hits))
        reals = {e.real for e in images}
        old, _names = ext._merged_records(root, entries, probes, env)
        unlinks, broken, unknown = _plan_unlinks(root, entries, probes, reals, old)
        if unknown and not force:
            name, version = unknown[0]
            raise StrataError(
                f"Cannot remove '{next(iter(targets))}': the extension '{name}' enabled for OS "
                f"release {version} cannot be read, so what it depends on is unknown.",
                hint=f"remove '{name}' too, or use --force", kind=ErrorKind.CONFIGURATION,
                subject=name)
        if broken and not force:
            dependent, dependency, version = broken[0]
            raise StrataError(
                f"Cannot remove '{dependency}': '{dependent}' depends on it (enabled for OS "
                f"release {version}).", hint=f"remove '{dependent}' too, or use --force",
                kind=ErrorKind.CONFIGURATION, subject=dependency)
        for dependent, dependency, version in broken:
            log.warning(f"Removing '{dependency}' although '{dependent}' depends on it (OS "
                        f"release {version}, --force): '{dependent}' will not be merged.")

        version_now = enabled.host_version_id(root)
        enabled_now = {e.real for link, e in ext._enabled(root, version_now, entries)
                       if e is not None}
        merged = _merged(images, entries, probes, old, enabled_now)
        units = services.units_of(merged)
        stopped: tuple[HookRun, ...] = ()
        if units:
            stopped = services.run(services.plan_stop(units), live=ext._live(root), root=root)
        faults.point("remove-stopped")

        for u in unlinks:
            _unlink(root, u)
        faults.point("remove-disabled")

        outcome: Outcome | None = None
        if merged:
            with services.handled(units):
                outcome = ext.refresh(root, env)
        faults.point("remove-refreshed")

        deleted: list[str] = []
        kept: list[str] = []
        directory = store_dir(root)
        for e in images:
            if keep_files:
                kept.append(e.path)
                continue
            _delete(root, directory, e)
            deleted.append(e.path)
        for name in targets:
            log.info(f"Removed extension '{name}'" + (" (its images are kept)."
                                                      if keep_files else "."))
        return RemoveResult(names=tuple(targets), deleted=tuple(deleted), kept=tuple(kept),
                            services=stopped, outcome=outcome,
                            forced=tuple(dict.fromkeys(d for d, _, _ in broken)))
