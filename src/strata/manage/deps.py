"""Dependencies, conflicts and stacking order of enabled extensions. Pure: no file system.

An extension-release file may carry (space-separated names):

    STRATA_DEPENDS=   names (or capabilities) that must be enabled, and sit below this one
    STRATA_CONFLICTS= names (or capabilities) that must not be enabled with this one
    STRATA_PROVIDES=  capabilities this one stands in for (its own name always counts)

Order, bottom to top: a dependency sits below every extension that needs it; otherwise the
lower enable-time priority sits lower (a higher priority is higher in the stack, so it wins a
file both ship, like the highest name does in systemd); otherwise names ascend, as systemd
stacks them. An extension never conflicts with, or depends on, itself: "provides mta,
conflicts mta" reads "no other mta".
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Collection, Iterable, Mapping, Sequence

from strata.errors import ErrorKind, StrataError
from strata.record import record

DEPENDS_KEY = "STRATA_DEPENDS"
CONFLICTS_KEY = "STRATA_CONFLICTS"
PROVIDES_KEY = "STRATA_PROVIDES"

#: the priority of an extension enabled without --priority
DEFAULT_PRIORITY = 0


@record
class Node:
    """One extension as far as ordering is concerned."""

    name: str
    depends: tuple[str, ...] = ()
    conflicts: tuple[str, ...] = ()
    provides: tuple[str, ...] = ()
    priority: int = DEFAULT_PRIORITY

    @property
    def capabilities(self) -> tuple[str, ...]:
        return (self.name, *self.provides)


def split_names(value: str | None) -> tuple[str, ...]:
    """A space-separated list (any ASCII whitespace), duplicates dropped, order kept."""
    if not value:
        return ()
    return tuple(dict.fromkeys(p for p in re.split(r"[ \t\n\r]+", value) if p))


def node_from_release(name: str, releases: Iterable[Mapping[str, str]],
                      priority: int = DEFAULT_PRIORITY) -> Node:
    """A node from the release files of an extension (one per class it has; the lists of
    both are joined, so a sysext+confext image may put its keys in either)."""
    dep: list[str] = []
    con: list[str] = []
    pro: list[str] = []
    for fields in releases:
        dep += split_names(fields.get(DEPENDS_KEY))
        con += split_names(fields.get(CONFLICTS_KEY))
        pro += split_names(fields.get(PROVIDES_KEY))
    return Node(name=name, depends=tuple(dict.fromkeys(dep)),
                conflicts=tuple(dict.fromkeys(con)), provides=tuple(dict.fromkeys(pro)),
                priority=priority)


def _providers(nodes: Sequence[Node]) -> dict[str, list[str]]:
    """capability -> names of the nodes offering it, in node order."""
    out: dict[str, list[str]] = {}
    for n in nodes:
        for cap in n.capabilities:
            out.setdefault(cap, [])
            if n.name not in out[cap]:
                out[cap].append(n.name)
    return out


def missing(node: Node, nodes: Sequence[Node]) -> tuple[str, ...]:
    """The dependencies of `node` that no node of `nodes` (other than itself) provides."""
    prov = _providers(nodes)
    return tuple(d for d in node.depends
                 if d not in node.capabilities and not [p for p in prov.get(d, ())
                                                        if p != node.name])


def conflicts(nodes: Sequence[Node]) -> list[tuple[str, str, str]]:
    """(declaring node, other node, the name in its CONFLICTS= that matched), each unordered
    pair once, in node order."""
    prov = _providers(nodes)
    seen: set[frozenset[str]] = set()
    out: list[tuple[str, str, str]] = []
    for n in nodes:
        for c in n.conflicts:
            for other in prov.get(c, ()):
                pair = frozenset((n.name, other))
                if other == n.name or pair in seen:
                    continue
                seen.add(pair)
                out.append((n.name, other, c))
    return out


def _edges(nodes: Sequence[Node]) -> dict[str, list[str]]:
    """name -> the names that must sit below it (the providers of its dependencies)."""
    prov = _providers(nodes)
    below: dict[str, list[str]] = {}
    for n in nodes:
        deps: list[str] = []
        for d in n.depends:
            if d in n.capabilities:
                continue
            deps += [p for p in prov.get(d, ()) if p != n.name and p not in deps]
        below[n.name] = deps
    return below


def _sort_key(n: Node) -> tuple[int, bytes]:
    return (n.priority, n.name.encode("utf-8", "surrogateescape"))


def order(nodes: Sequence[Node]) -> tuple[str, ...]:
    """The stacking order, bottom to top (see the module docstring). Dependencies that no
    node provides are ignored here (see missing()); a cycle is a CONFIGURATION error naming
    it."""
    by_name = {n.name: n for n in nodes}
    below = _edges(nodes)
    waiting = {name: len(set(deps)) for name, deps in below.items()}
    above: dict[str, list[str]] = {name: [] for name in by_name}
    for name, deps in below.items():
        for d in set(deps):
            above[d].append(name)
    ready = [(_sort_key(by_name[n]), n) for n, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    out: list[str] = []
    while ready:
        _, name = heapq.heappop(ready)
        out.append(name)
        for up in above[name]:
            waiting[up] -= 1
            if waiting[up] == 0:
                heapq.heappush(ready, (_sort_key(by_name[up]), up))
    if len(out) != len(by_name):
        cycle = find_cycle({n: d for n, d in below.items() if n not in out})
        raise StrataError(f"Dependency cycle between extensions: {' -> '.join(cycle)}",
                          kind=ErrorKind.CONFIGURATION,
                          hint="remove one of the STRATA_DEPENDS= entries that close it")
    return tuple(out)


def find_cycle(below: Mapping[str, Sequence[str]]) -> list[str]:
    """One cycle in the graph (name -> names it depends on), as [a, b, ..., a], starting at
    its smallest name so that the message is stable; [] if there is none."""
    color: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(below):
        if color.get(start):
            continue
        path: list[str] = []
        stack: list[tuple[str, int]] = [(start, 0)]
        while stack:
            name, i = stack.pop()
            if i == 0:
                color[name] = 1
                path.append(name)
            deps = [d for d in below.get(name, ()) if d in below]
            if i < len(deps):
                stack.append((name, i + 1))
                nxt = deps[i]
                if color.get(nxt) == 1:
                    cyc = path[path.index(nxt):]
                    k = cyc.index(min(cyc))
                    cyc = cyc[k:] + cyc[:k]
                    return [*cyc, cyc[0]]
                if not color.get(nxt):
                    stack.append((nxt, 0))
            else:
                color[name] = 2
                path.pop()
    return []


def _config_error(message: str) -> StrataError:
    return StrataError(message, kind=ErrorKind.CONFIGURATION)


def check_enable(requested: Collection[str], nodes: Sequence[Node], *,
                 known: Collection[str] = ()) -> None:
    """Refuse an enabled set (`nodes`: what is enabled plus `requested`) in which a requested
    extension lacks a dependency, conflicts with another, or that has a dependency cycle.
    `known`: names found in the store, to tell "not enabled" from "not installed"."""
    for n in nodes:
        if n.name not in requested:
            continue
        lacking = missing(n, nodes)
        if lacking:
            what = ", ".join(f"'{d}' ({'not enabled' if d in known else 'not installed'})"
                             for d in lacking)
            raise _config_error(f"Cannot enable '{n.name}': it depends on {what}.")
    for a, b, cap in conflicts(nodes):
        if a in requested or b in requested:
            via = "" if cap == b else f" (which provides '{cap}')"
            raise _config_error(f"Cannot enable '{a}' together with '{b}': '{a}' conflicts "
                                f"with '{b}'{via}.")
    order(nodes)


def check_disable(removed: Collection[str], nodes: Sequence[Node]) -> None:
    """Refuse disabling extensions that the ones staying enabled depend on (`nodes`: the
    enabled set before the change)."""
    staying = [n for n in nodes if n.name not in removed]
    for n in staying:
        before = set(missing(n, nodes))
        for d in missing(n, staying):
            if d in before:
                continue  # already unsatisfied: not this change's doing
            gone = [p for p in _providers(nodes).get(d, ()) if p in removed]
            raise _config_error(f"Cannot disable '{gone[0]}': '{n.name}' depends on it "
                                f"(disable '{n.name}' too).")


def prune(nodes: Sequence[Node]) -> tuple[list[Node], list[tuple[str, str]]]:
    """Merge time: the nodes that can be merged together, and (name, why) for the others.
    Of two conflicting extensions the one that would sit higher (priority, then name) is
    left out; then, repeatedly, every extension whose dependency is not there."""
    keep = list(nodes)
    dropped: list[tuple[str, str]] = []
    by_name = {n.name: n for n in nodes}
    for a, b, cap in conflicts(keep):
        names = {n.name for n in keep}
        if a not in names or b not in names:
            continue
        lower, upper = sorted((by_name[a], by_name[b]), key=_sort_key)
        via = "" if cap in (a, b) else f" via '{cap}'"
        dropped.append((upper.name, f"Extension '{upper.name}' conflicts with "
                                    f"'{lower.name}'{via}, skipping it."))
        keep = [n for n in keep if n.name != upper.name]
    changed = True
    while changed:
        changed = False
        for n in keep:
            lacking = missing(n, keep)
            if lacking:
                dropped.append((n.name, f"Extension '{n.name}' depends on "
                                        + ", ".join(f"'{d}'" for d in lacking)
                                        + ", which is not available, skipping it."))
                keep = [k for k in keep if k.name != n.name]
                changed = True
                break
    return keep, dropped
