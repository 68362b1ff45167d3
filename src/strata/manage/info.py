"""`strata ext info NAME [--json]`: everything known about one extension.

NAME is an extension name or an image name. The images listed are every image of that
extension (the store and the systemd extension directories), each with its size, its sha256
(computed now) and what install recorded about it. The release data, services, hooks and
dependencies described are those of one image: the one NAME names if it is an image name,
else the one enabled for the running OS release, else the newest.

Reverse dependencies: the extensions (any image found) whose STRATA_DEPENDS= this one meets,
by name or by a capability it provides; and which of those are enabled now. "Merged into":
the hierarchies whose merge marker lists it. Nothing is mounted; no privileges are needed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from strata.errors import ErrorKind, StrataError
from strata.manage import deps, records, store
from strata.manage.api import ExtensionDetails, ImageDetails
from strata.manage.store import Probe, StoreEntry

#: release keys that make hooks run (hooks.py) or name units (services.py)
HOOK_KEYS = ("AVOCADO_ON_MERGE", "AVOCADO_ON_UNMERGE", "AVOCADO_MODPROBE",
             "EXTENSION_RELOAD_MANAGER", "EXTENSION_RESTART_UNITS",
             "EXTENSION_RELOAD_OR_RESTART_UNITS")


def _size(e: StoreEntry) -> int:
    if not e.is_directory:
        try:
            return os.stat(e.real).st_size
        except OSError:
            return 0
    total = 0
    for dirpath, _dirs, files in os.walk(e.real):
        for f in files:
            try:
                st = os.lstat(os.path.join(dirpath, f))
            except OSError:
                continue
            total += st.st_size
    return total


def _pairs(p: Probe) -> list[tuple[str, str]]:
    """Every release line of every class the image has, in file order."""
    return [kv for r in p.releases for kv in (r.pairs or tuple(r.fields.items()))]


def merged_into(root: str, p: Probe, image_name: str, env: Mapping[str, str]) -> list[str]:
    """The hierarchies whose merge lists the image (by the name it is merged as)."""
    from strata.engine import marker
    from strata.engine.query import resolved
    from strata.manage.ext import _hierarchies

    out: list[str] = []
    for r in p.releases:
        for h in _hierarchies(r.cls, env):
            try:
                target = resolved(h, root)
                state = marker.read_merged(r.cls, target, root) if target else None
            except StrataError:
                continue
            if state is not None and {r.lookup_name, image_name} & set(state.extensions):
                out.append(h)
    return out


def image_details(root: str, e: StoreEntry, p: Probe, *, enabled_now: bool) -> ImageDetails:
    rec = records.load(root, os.path.basename(e.path)) if e.origin == store.STORE_ORIGIN \
        else None
    return ImageDetails(
        path=e.path, image_name=e.image_name, version=p.version(e.file_version),
        origin=e.origin, is_directory=e.is_directory, size=_size(e),
        sha256=None if e.is_directory else store.sha256_prefix(e.real, length=64),
        recorded_sha256=rec.sha256 if rec else None, source=rec.source if rec else None,
        source_kind=rec.kind.value if rec else None,
        installed_at=rec.installed_at if rec else None, enabled=enabled_now)


def reverse_dependencies(node: deps.Node, others: Sequence[deps.Node]) -> list[str]:
    """The names among `others` whose dependencies `node` meets (pure)."""
    return [o.name for o in others
            if o.name != node.name and any(d in node.capabilities for d in o.depends)]


def info(root: str, name: str, *, env: Mapping[str, str] | None = None) -> ExtensionDetails:
    from strata.manage import services
    from strata.manage.enabled import host_version_id
    from strata.manage.ext import _enabled, _not_found, _root, _scan, _version, resolve_name

    root = _root(root)
    env = os.environ if env is None else env
    entries, probes = _scan(root)
    version_now = host_version_id(root)
    enabled_links = [(link, e) for link, e in _enabled(root, version_now, entries)
                     if e is not None]
    enabled_reals = {e.real for _link, e in enabled_links}
    exact = next((e for e in entries if e.image_name == name), None)
    ext_name = exact.name if exact is not None else name
    mine = [e for e in entries if e.name == ext_name]
    if not mine:
        raise _not_found(name)
    chosen = exact or next((e for e in mine if e.real in enabled_reals), None) \
        or resolve_name(mine, probes, ext_name)
    assert chosen is not None
    p = probes[chosen.path]
    if not p.is_extension and p.problem:
        raise StrataError(p.problem, kind=ErrorKind.INVALID)
    pairs = _pairs(p)
    node = deps.node_from_release(ext_name, [r.fields for r in p.releases])
    by_name: dict[str, deps.Node] = {}
    for e in entries:
        if e.name == ext_name or e.name in by_name:
            continue
        best = resolve_name([o for o in entries if o.name == e.name], probes, e.name)
        if best is not None:
            by_name[e.name] = deps.node_from_release(
                e.name, [r.fields for r in probes[best.path].releases])
    others = list(by_name.values())
    required_by = reverse_dependencies(node, others)
    enabled_names = {e.name for _link, e in enabled_links}
    images = [image_details(root, e, probes[e.path], enabled_now=e.real in enabled_reals)
              for e in sorted(mine, key=lambda e: e.path)]
    chosen_rec = next((i for i in images if i.path == chosen.path), None)
    return ExtensionDetails(
        name=ext_name, version=_version(probes, chosen), image=chosen.path,
        classes=tuple(r.cls.value for r in p.releases),
        release={r.cls.value: tuple(r.pairs or tuple(r.fields.items())) for r in p.releases},
        images=tuple(images),
        services=services.declared(pairs, source=ext_name),
        hooks=tuple((k, v) for k, v in pairs if k in HOOK_KEYS),
        depends=node.depends, conflicts=node.conflicts, provides=node.provides,
        required_by=tuple(required_by),
        required_by_enabled=tuple(n for n in required_by if n in enabled_names),
        enabled=chosen.real in enabled_reals,
        merged_into=tuple(merged_into(root, p, chosen.image_name, env)),
        origin=(chosen_rec.source if chosen_rec and chosen_rec.source else chosen.origin))

