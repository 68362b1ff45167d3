"""Dependencies, conflicts, cycles and stacking order (manage/deps.py): pure tables."""

from __future__ import annotations

import pytest

from strata.errors import ErrorKind, StrataError
from strata.manage.deps import (
    Node,
    check_disable,
    check_enable,
    conflicts,
    find_cycle,
    missing,
    node_from_release,
    order,
    prune,
    split_names,
)


def N(name: str, depends: str = "", conflicts: str = "", provides: str = "",  # noqa: N802
      priority: int = 0) -> Node:
    return Node(name, split_names(depends), split_names(conflicts), split_names(provides),
                priority)


@pytest.mark.parametrize(("value", "expected"), [
    (None, ()),
    ("", ()),
    ("a", ("a",)),
    ("  a\tb \n c  ", ("a", "b", "c")),
    ("a b a", ("a", "b")),
])
def test_split_names(value: str | None, expected: tuple[str, ...]) -> None:
    assert split_names(value) == expected


def test_node_from_release_joins_both_classes() -> None:
    n = node_from_release("app", [{"STRATA_DEPENDS": "base", "STRATA_PROVIDES": "web"},
                                  {"STRATA_DEPENDS": "base conf", "STRATA_CONFLICTS": "old"}],
                          priority=3)
    assert n == Node("app", ("base", "conf"), ("old",), ("web",), 3)


@pytest.mark.parametrize(("nodes", "expected"), [
    # no relations: by name, as systemd stacks them
    ([N("c"), N("a"), N("b")], ("a", "b", "c")),
    # a higher priority sits higher
    ([N("a", priority=10), N("b"), N("c")], ("b", "c", "a")),
    ([N("a", priority=-1), N("b")], ("a", "b")),
    # a dependency sits below what needs it, whatever the names
    ([N("a", depends="z"), N("z")], ("z", "a")),
    # ... and whatever its priority
    ([N("app", depends="base"), N("base", priority=100)], ("base", "app")),
    # chains
    ([N("a", depends="b"), N("b", depends="c"), N("c")], ("c", "b", "a")),
    # a capability: the provider goes below
    ([N("app", depends="mta"), N("zmail", provides="mta")], ("zmail", "app")),
    # two providers of one capability: both below
    ([N("app", depends="mta"), N("x", provides="mta"), N("y", provides="mta")],
     ("x", "y", "app")),
    # an unavailable dependency does not affect the order (missing() reports it)
    ([N("b", depends="nothere"), N("a")], ("a", "b")),
    # depending on itself (or what it provides) is no edge
    ([N("a", depends="a"), N("b", depends="cap", provides="cap")], ("a", "b")),
    # priorities order the independent ones, dependencies still win
    ([N("lib"), N("app", depends="lib", priority=-5), N("tool", priority=1)],
     ("lib", "app", "tool")),
])
def test_order(nodes: list[Node], expected: tuple[str, ...]) -> None:
    assert order(nodes) == expected


@pytest.mark.parametrize(("nodes", "cycle"), [
    ([N("a", depends="b"), N("b", depends="a")], "a -> b -> a"),
    ([N("c", depends="a"), N("a", depends="b"), N("b", depends="c"), N("d")],
     "a -> b -> c -> a"),
    ([N("x", depends="cap"), N("y", provides="cap", depends="x")], "x -> y -> x"),
])
def test_cycles_are_configuration_errors_naming_the_cycle(nodes: list[Node], cycle: str
                                                          ) -> None:
    with pytest.raises(StrataError) as e:
        order(nodes)
    assert e.value.kind is ErrorKind.CONFIGURATION
    assert cycle in e.value.message


def test_find_cycle_none() -> None:
    assert find_cycle({"a": ["b"], "b": []}) == []


@pytest.mark.parametrize(("node", "others", "expected"), [
    (N("a", depends="b"), [N("b")], ()),
    (N("a", depends="b c"), [N("b")], ("c",)),
    (N("a", depends="mta"), [N("m", provides="mta")], ()),
    (N("a", depends="a"), [], ()),
    (N("a", depends="x", provides="x"), [], ()),
])
def test_missing(node: Node, others: list[Node], expected: tuple[str, ...]) -> None:
    assert missing(node, [node, *others]) == expected


@pytest.mark.parametrize(("nodes", "expected"), [
    ([N("a", conflicts="b"), N("b")], [("a", "b", "b")]),
    ([N("a"), N("b", conflicts="a")], [("b", "a", "a")]),
    # both declaring it: one pair
    ([N("a", conflicts="b"), N("b", conflicts="a")], [("a", "b", "b")]),
    # through a capability
    ([N("a", conflicts="mta"), N("m", provides="mta")], [("a", "m", "mta")]),
    # "provides mta, conflicts mta": any other mta, never itself
    ([N("p", provides="mta", conflicts="mta"), N("q", provides="mta", conflicts="mta")],
     [("p", "q", "mta")]),
    ([N("p", provides="mta", conflicts="mta")], []),
    ([N("a", conflicts="nothere"), N("b")], []),
])
def test_conflicts(nodes: list[Node], expected: list[tuple[str, str, str]]) -> None:
    assert conflicts(nodes) == expected


@pytest.mark.parametrize(("requested", "nodes", "known", "message"), [
    ({"app"}, [N("app", depends="base")], {"app", "base"},
     "Cannot enable 'app': it depends on 'base' (not enabled)."),
    ({"app"}, [N("app", depends="base")], {"app"},
     "Cannot enable 'app': it depends on 'base' (not installed)."),
    ({"new"}, [N("new", conflicts="old"), N("old")], set(),
     "Cannot enable 'new' together with 'old': 'new' conflicts with 'old'."),
    ({"new"}, [N("new"), N("old", conflicts="new")], set(),
     "Cannot enable 'old' together with 'new': 'old' conflicts with 'new'."),
    ({"a"}, [N("a", conflicts="mta"), N("m", provides="mta")], set(),
     "'a' conflicts with 'm' (which provides 'mta')."),
    ({"a", "b"}, [N("a", depends="b"), N("b", depends="a")], set(),
     "Dependency cycle between extensions: a -> b -> a"),
])
def test_check_enable_refuses(requested: set[str], nodes: list[Node], known: set[str],
                              message: str) -> None:
    with pytest.raises(StrataError) as e:
        check_enable(requested, nodes, known=known)
    assert e.value.kind is ErrorKind.CONFIGURATION
    assert message in e.value.message


@pytest.mark.parametrize(("requested", "nodes"), [
    ({"app"}, [N("app", depends="base"), N("base")]),
    ({"app", "base"}, [N("app", depends="base"), N("base")]),
    ({"app"}, [N("app", depends="mta"), N("postfix", provides="mta")]),
    # an old problem between extensions not being enabled now is not this change's business
    ({"x"}, [N("x"), N("a", conflicts="b"), N("b"), N("c", depends="gone")]),
])
def test_check_enable_accepts(requested: set[str], nodes: list[Node]) -> None:
    check_enable(requested, nodes)


def test_check_disable() -> None:
    nodes = [N("app", depends="base"), N("base"), N("other")]
    with pytest.raises(StrataError) as e:
        check_disable({"base"}, nodes)
    assert e.value.kind is ErrorKind.CONFIGURATION
    assert "Cannot disable 'base': 'app' depends on it" in e.value.message
    check_disable({"base", "app"}, nodes)
    check_disable({"other"}, nodes)
    # another provider stays: fine
    check_disable({"a"}, [N("x", depends="mta"), N("a", provides="mta"),
                          N("b", provides="mta")])
    # already unsatisfied before: not refused
    check_disable({"other"}, [N("x", depends="gone"), N("other")])


@pytest.mark.parametrize(("nodes", "kept", "dropped"), [
    ([N("a"), N("b")], ["a", "b"], []),
    # the upper one of a conflicting pair goes (by priority, then name)
    ([N("a", conflicts="b"), N("b")], ["a"], ["b"]),
    ([N("a", conflicts="b", priority=5), N("b")], ["b"], ["a"]),
    # a missing dependency drops its dependents, transitively
    ([N("app", depends="lib"), N("tool", depends="app"), N("x")], ["x"], ["app", "tool"]),
    # a conflict that removes a dependency removes its dependents too
    ([N("a"), N("b", conflicts="a"), N("c", depends="b")], ["a"], ["b", "c"]),
])
def test_prune(nodes: list[Node], kept: list[str], dropped: list[str]) -> None:
    keep, gone = prune(nodes)
    assert [n.name for n in keep] == kept
    assert [name for name, _ in gone] == dropped
    assert all(name in why for name, why in gone)
