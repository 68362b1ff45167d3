"""What a merge of the enabled set will hand to the engine, decided from what was read (pure).

Each enabled extension becomes one part per class it has (an image carrying both release
files is merged as a sysext and as a confext). Left out, with the reason: a link whose image
is gone, an unreadable image, one that is no extension, a second image of the same name,
and (deps.prune) the upper one of two conflicting extensions and every extension whose
dependency is not there. A dependency cycle fails the plan (CONFIGURATION).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from strata.manage import deps
from strata.manage.store import Probe, ReleaseInfo, StoreEntry
from strata.model import ExtClass
from strata.record import record


@record
class Item:
    """One enabled extension, as read from the enabled set and its image."""

    name: str
    link: str  # the link's path inside the root (for messages)
    entry: StoreEntry | None  # None: the link leads nowhere
    probe: Probe | None = None
    priority: int = deps.DEFAULT_PRIORITY


@record
class Part:
    """One class of one extension, to be merged."""

    name: str
    cls: ExtClass
    entry: StoreEntry
    release: ReleaseInfo

    @property
    def link_name(self) -> str:
        """Its name in /run/extensions or /run/confexts: what the release file is found
        under, so that systemd's strict lookup finds it too."""
        return self.release.lookup_name + ("" if self.entry.is_directory else ".raw")


@record
class MergePlan:
    order: tuple[str, ...]  # extension names, bottom to top
    parts: tuple[Part, ...]  # in that order
    nodes: tuple[deps.Node, ...]
    skipped: tuple[tuple[str, str], ...] = ()
    usable: tuple[Item, ...] = ()  # the items that made it into the plan

    def for_class(self, cls: ExtClass) -> tuple[Part, ...]:
        return tuple(p for p in self.parts if p.cls is cls)


def _unusable(item: Item) -> str | None:
    if item.entry is None:
        return (f"Extension '{item.name}' is enabled, but {item.link} leads to no image, "
                "skipping it.")
    if item.probe is None or item.probe.problem is not None:
        why = item.probe.problem if item.probe is not None else "not read"
        return f"{why}, skipping it."
    if not item.probe.is_extension:
        return (f"Image {item.entry.path} carries no extension-release file for "
                f"'{item.entry.image_name}', skipping it.")
    return None


def plan(items: Sequence[Item]) -> MergePlan:
    skipped: list[tuple[str, str]] = []
    usable: dict[str, Item] = {}
    for item in items:
        why = _unusable(item)
        if why is None and item.name in usable:
            first = usable[item.name].entry
            why = (f"Extension '{item.name}' is enabled twice; using "
                   f"{first.path if first else '?'}, skipping {item.link}.")
        if why is not None:
            skipped.append((item.name, why))
            continue
        usable[item.name] = item
    nodes = [deps.node_from_release(i.name, [r.fields for r in _releases(i)], i.priority)
             for i in usable.values()]
    return _finish(usable, nodes, skipped)


def _releases(item: Item) -> tuple[ReleaseInfo, ...]:
    return item.probe.releases if item.probe is not None else ()


def _finish(usable: Mapping[str, Item], nodes: Sequence[deps.Node],
            skipped: list[tuple[str, str]],
            dropped_parts: Mapping[tuple[str, ExtClass], str] | None = None) -> MergePlan:
    kept, dropped = deps.prune(nodes)
    skipped += dropped
    order = deps.order(kept)
    parts: list[Part] = []
    for name in order:
        item = usable[name]
        assert item.entry is not None
        for r in _releases(item):
            if dropped_parts and (name, r.cls) in dropped_parts:
                continue
            parts.append(Part(name=name, cls=r.cls, entry=item.entry, release=r))
    return MergePlan(order=order, parts=tuple(parts), nodes=tuple(kept),
                     skipped=tuple(skipped), usable=tuple(usable[n] for n in order))


def without(p: MergePlan, rejected: Mapping[tuple[str, ExtClass], str]) -> MergePlan:
    """The plan after the engine's own checks refused some parts (name, class) -> why: an
    extension with no part left is gone, and so is everything that depends on it."""
    skipped = list(p.skipped)
    for (name, _cls), why in rejected.items():
        skipped.append((name, why))
    remaining = {part.name for part in p.parts if (part.name, part.cls) not in rejected}
    usable = {i.name: i for i in p.usable if i.name in remaining}
    nodes = [n for n in p.nodes if n.name in remaining]
    return _finish(usable, nodes, skipped, rejected)
