"""`strata ext health [NAME...]`: is each extension working as the enabled set says it should?
`strata update` calls `health(root, names)` after a refresh to decide whether to roll back.

Four aspects per extension (default: every extension enabled for the running OS release):

- **merged**: enabled and merged (each class it has is listed in its hierarchies' merge
  markers), or neither; an enabled one that is not merged, a disabled one that still is, or
  an older version still merged where a newer one is enabled, fails.
- **services**: the units it declares (services.py) are active, by `systemctl is-active`;
  only where systemd is PID 1 and the root is "/". Elsewhere: unknown, which is no failure.
- **files**: every entry of the image in the hierarchies it is merged into shows through the
  merged tree unchanged: same type, symlink target, and for regular files the same permission
  bits, size and *content*. Content, not size and mtime: images built reproducibly share
  one mtime, so another extension stacked on top (or a write into the writable layer of a
  mutable merge) can replace a file with one of the same size and time. The cost is reading
  the image and the merged files once. A file another extension hides fails this aspect: the
  overlay must hide nothing of it.
- **libraries**: `strata check`'s ELF rules (elf-needed, elf-glibc) for the image's programs
  and libraries, against the merged root itself as the host: every DT_NEEDED library and the
  interpreter resolve there, and the root's glibc is new enough.

Aspects that do not apply are skipped (not merged: no files to compare). An extension is
healthy when no aspect failed.
"""

from __future__ import annotations

import os
import stat as _stat
from collections.abc import Collection, Mapping, Sequence

from strata.errors import StrataError
from strata.manage.api import CheckState, HealthAspect, HealthCheck, HealthReport
from strata.manage.store import Probe, StoreEntry
from strata.model import ExtClass

TYPE_CHECKING = False
if TYPE_CHECKING:
    from strata.check.tree import Tree
    from strata.images.base import ImageFS

OK, FAILED, UNKNOWN, SKIPPED = (CheckState.OK, CheckState.FAILED, CheckState.UNKNOWN,
                                CheckState.SKIPPED)
#: mismatching paths named in a failed "files" aspect (the count gives the rest)
SHOW = 3


# --- merged ------------------------------------------------------------------------------------


def merged_check(name: str, entry: StoreEntry | None, probe: Probe | None, *, enabled: bool,
                 merged: Mapping[ExtClass, Sequence[str]], others: Sequence[str] = ()
                 ) -> HealthCheck:
    """(pure) `merged`: the markers' lists per class; `others`: the image names of the
    extension's other versions (to tell a stale merge)."""
    if entry is None:
        return HealthCheck(HealthAspect.MERGED, FAILED,
                           f"'{name}' is enabled, but its link leads to no image")
    if probe is None or not probe.is_extension:
        why = probe.problem if probe is not None and probe.problem else "no release file"
        return HealthCheck(HealthAspect.MERGED, FAILED, f"not an extension image: {why}")
    present = [r.cls for r in probe.releases
               if {r.lookup_name, entry.image_name} & set(merged.get(r.cls, ()))]
    if not enabled:
        if present:
            return HealthCheck(HealthAspect.MERGED, FAILED,
                               "merged, but not enabled: run 'strata ext refresh'")
        return HealthCheck(HealthAspect.MERGED, OK, "not enabled, not merged")
    missing = [r.cls.value for r in probe.releases if r.cls not in present]
    if not missing:
        return HealthCheck(HealthAspect.MERGED, OK,
                           "merged as " + "+".join(r.cls.value for r in probe.releases))
    stale = [o for o in others for cls in ExtClass if o in merged.get(cls, ())]
    if stale:
        return HealthCheck(HealthAspect.MERGED, FAILED,
                           f"{stale[0]} is merged, but {entry.image_name} is enabled: run "
                           "'strata ext refresh'")
    return HealthCheck(HealthAspect.MERGED, FAILED,
                       f"enabled, but not merged (as {', '.join(missing)})")


# --- services ----------------------------------------------------------------------------------


def services_check(units: Sequence[str], *, merged: bool, live: bool, root: str
                   ) -> HealthCheck:
    if not units:
        return HealthCheck(HealthAspect.SERVICES, SKIPPED, "declares no services")
    if not merged:
        return HealthCheck(HealthAspect.SERVICES, SKIPPED, "not merged")
    if not live:
        why = ("systemd not running" if root == "/"
               else "not the running system (--root)")
        return HealthCheck(HealthAspect.SERVICES, UNKNOWN, f"unknown: {why}")
    from strata.run import run

    proc = run(["systemctl", "is-active", *units], check=False)
    states = (proc.stdout or b"").decode(errors="replace").split()
    down = [f"{u} {s}" for u, s in zip(units, states, strict=False)
            if s not in ("active", "reloading")]
    if len(states) < len(units):
        down.append("systemctl is-active gave no answer for some units")
    if down:
        return HealthCheck(HealthAspect.SERVICES, FAILED, "not active: " + ", ".join(down))
    return HealthCheck(HealthAspect.SERVICES, OK, "active: " + ", ".join(units))


# --- files -------------------------------------------------------------------------------------


def _same_content(fs_read: bytes, path: str) -> bool:
    view = memoryview(fs_read)
    try:
        with open(path, "rb") as f:
            offset = 0
            while chunk := f.read(1 << 20):
                if view[offset:offset + len(chunk)] != chunk:
                    return False
                offset += len(chunk)
            return offset == len(view)
    except OSError:
        return False


def compare_tree(fs: ImageFS, tree: Tree, hierarchy: str, target: str) -> list[str]:
    """Differences between the image's entries below `hierarchy` and the merged tree at host
    path `target`: one line per path."""
    from strata.images.base import FileKind

    out: list[str] = []
    prefix = hierarchy.rstrip("/") + "/"
    for e in tree:
        if not e.path.startswith(prefix):
            continue
        host = target.rstrip("/") + "/" + e.path[len(prefix):]
        try:
            st = os.lstat(host)
        except OSError:
            out.append(f"{e.path}: missing")
            continue
        kind = FileKind.from_mode(st.st_mode)
        if kind is not e.kind:
            out.append(f"{e.path}: a {kind.value} where the image has a {e.kind.value}")
        elif kind is FileKind.SYMLINK:
            try:
                seen = os.readlink(host)
            except OSError:
                seen = "?"
            if seen != e.target:
                out.append(f"{e.path}: points to {seen}, the image's to {e.target}")
        elif kind is FileKind.REGULAR:
            if _stat.S_IMODE(st.st_mode) != _stat.S_IMODE(e.mode):
                out.append(f"{e.path}: mode {_stat.S_IMODE(st.st_mode):o}, the image's "
                           f"{_stat.S_IMODE(e.mode):o}")
            elif st.st_size != e.size:
                out.append(f"{e.path}: {st.st_size} bytes, the image's {e.size}")
            elif not _same_content(fs.read(e.path), host):
                out.append(f"{e.path}: content differs from the image's")
    return out


def files_check(entry: StoreEntry, probe: Probe, hierarchies: Mapping[ExtClass, Sequence[str]],
                root: str) -> HealthCheck:
    from strata.check.tree import scan
    from strata.check.view import open_image
    from strata.engine.query import resolved

    try:
        fs, _layout = open_image(entry.real)
    except StrataError as e:
        return HealthCheck(HealthAspect.FILES, FAILED, f"cannot read the image: {e.message}")
    try:
        tree = scan(fs)
        diffs: list[str] = []
        checked = 0
        for r in probe.releases:
            for h in hierarchies.get(r.cls, ()):
                if tree.get(h) is None:
                    continue
                target = resolved(h, root)
                if target is None:
                    diffs.append(f"{h}: missing on the root")
                    continue
                checked += sum(1 for e in tree if e.path.startswith(h.rstrip("/") + "/"))
                diffs += compare_tree(fs, tree, h, target)
    except StrataError as e:
        return HealthCheck(HealthAspect.FILES, FAILED, f"cannot read the image: {e.message}")
    finally:
        fs.close()
    if diffs:
        more = f" (and {len(diffs) - SHOW} more)" if len(diffs) > SHOW else ""
        return HealthCheck(HealthAspect.FILES, FAILED,
                           f"{len(diffs)} of {checked} entries do not match the image: "
                           + "; ".join(diffs[:SHOW]) + more)
    return HealthCheck(HealthAspect.FILES, OK, f"{checked} entries match the image")


# --- libraries ---------------------------------------------------------------------------------


def libraries_check(entry: StoreEntry, root: str) -> HealthCheck:
    from strata.check import elfrules
    from strata.check.context import Context
    from strata.check.findings import Severity
    from strata.check.host import HostView
    from strata.check.view import open_view

    try:
        view = open_view(entry.real)
    except StrataError as e:
        return HealthCheck(HealthAspect.LIBRARIES, FAILED, f"cannot read the image: {e.message}")
    try:
        if not view.elf:
            return HealthCheck(HealthAspect.LIBRARIES, SKIPPED, "no programs or libraries")
        ctx = Context(host=HostView(root))
        found = [f for rule in (elfrules.elf_needed, elfrules.elf_glibc)
                 for f in rule(view, ctx) if f.severity is Severity.ERROR]
    finally:
        view.close()
    if found:
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        return HealthCheck(HealthAspect.LIBRARIES, FAILED,
                           f"{found[0].path}: {found[0].message}{more}")
    return HealthCheck(HealthAspect.LIBRARIES, OK,
                       f"{len(view.elf)} programs and libraries resolve on the merged root")


# --- all together ------------------------------------------------------------------------------


def health(root: str, names: Sequence[str] = (), *, env: Mapping[str, str] | None = None,
           aspects: Collection[HealthAspect] | None = None) -> list[HealthReport]:
    """One report per extension: `names` (extension or image names; unknown: NOT_FOUND), or
    every extension enabled for the running OS release. `aspects` limits the costly checks
    (the files comparison reads every byte): those left out are reported as skipped."""
    from strata.manage import services
    from strata.manage.enabled import host_version_id
    from strata.manage.ext import (
        CLASSES,
        _enabled,
        _hierarchies,
        _link_name,
        _not_found,
        _probe_of,
        _root,
        _scan,
        merged_names,
        resolve_name,
    )
    from strata.manage.hooks import is_live

    root = _root(root)
    env = os.environ if env is None else env
    entries, probes = _scan(root)
    version = host_version_id(root)
    links = _enabled(root, version, entries)
    targets: list[tuple[str, StoreEntry | None, bool]] = []
    if names:
        for name in dict.fromkeys(names):
            hit = next(((e, True) for link, e in links if e is not None
                        and name in (e.name, e.image_name, link.link)), None)
            if hit is None:
                e = resolve_name(entries, probes, name)
                if e is None:
                    raise _not_found(name)
                hit = (e, False)
            targets.append((hit[0].name, hit[0], hit[1]))
    else:
        targets = [(_link_name(link, e), e, True) for link, e in links]
    merged = {cls: merged_names(root, cls, env) for cls in CLASSES}
    hierarchies = {cls: _hierarchies(cls, env) for cls in CLASSES}
    live = is_live(root)
    reports: list[HealthReport] = []
    for name, entry, is_enabled in targets:
        probe = _probe_of(probes, entry)
        others = [e.image_name for e in entries
                  if entry is not None and e.name == entry.name and e.path != entry.path]
        m = merged_check(name, entry, probe, enabled=is_enabled, merged=merged, others=others)
        checks = [m]
        is_merged = m.state is OK and is_enabled
        units: tuple[str, ...] = ()
        if probe is not None:
            pairs = [kv for r in probe.releases for kv in (r.pairs or tuple(r.fields.items()))]
            units = services.declared(pairs, source=name)
        checks.append(services_check(units, merged=is_merged, live=live, root=root))
        if is_merged and entry is not None and probe is not None:
            if aspects is None or HealthAspect.FILES in aspects:
                checks.append(files_check(entry, probe, hierarchies, root))
            else:
                checks.append(HealthCheck(HealthAspect.FILES, SKIPPED, "not requested"))
            if aspects is None or HealthAspect.LIBRARIES in aspects:
                checks.append(libraries_check(entry, root))
            else:
                checks.append(HealthCheck(HealthAspect.LIBRARIES, SKIPPED, "not requested"))
        else:
            why = "not merged"
            checks += [HealthCheck(HealthAspect.FILES, SKIPPED, why),
                       HealthCheck(HealthAspect.LIBRARIES, SKIPPED, why)]
        reports.append(HealthReport(name=name, checks=tuple(checks)))
    return reports
