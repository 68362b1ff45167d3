from __future__ import annotations

import pytest

from strata.engine.settings import parse_hierarchies, parse_mutable, resolve
from strata.errors import StrataError
from strata.model import ExtClass, MutableMode


@pytest.mark.parametrize(
    ("value", "cls", "expected"),
    [(None, ExtClass.SYSEXT, ("/usr", "/opt")), (None, ExtClass.CONFEXT, ("/etc",)),
     ("/usr", ExtClass.SYSEXT, ("/usr",)), ("/a/b:/c", ExtClass.CONFEXT, ("/a/b", "/c")),
     ("/usr/", ExtClass.SYSEXT, ("/usr/",))],
)
def test_hierarchies_ok(value: str | None, cls: ExtClass, expected: tuple[str, ...]) -> None:
    assert parse_hierarchies(value, cls) == expected


@pytest.mark.parametrize(
    ("value", "why"),
    [("usr", "not absolute"), ("/usr:", "not absolute"), ("", "not absolute"),
     ("/usr/../etc", "not normalized"), ("//usr", "not normalized"), ("/a/./b", "not normalized"),
     ("/", "root fs")],
)
def test_hierarchies_bad(value: str, why: str) -> None:
    with pytest.raises(StrataError) as e:
        parse_hierarchies(value, ExtClass.SYSEXT)
    assert why in str(e.value)
    assert "SYSTEMD_SYSEXT_HIERARCHIES" in str(e.value)


@pytest.mark.parametrize(
    ("value", "mode"),
    [("no", MutableMode.NO), ("yes", MutableMode.YES), ("auto", MutableMode.AUTO),
     ("import", MutableMode.IMPORT), ("ephemeral", MutableMode.EPHEMERAL),
     ("ephemeral-import", MutableMode.EPHEMERAL_IMPORT), ("true", MutableMode.YES),
     ("0", MutableMode.NO), ("bogus", None)],
)
def test_parse_mutable(value: str, mode: MutableMode | None) -> None:
    assert parse_mutable(value) is mode


def test_precedence_cli_over_env() -> None:
    env = {"SYSTEMD_SYSEXT_MUTABLE_MODE": "yes"}
    assert resolve(ExtClass.SYSEXT, env).mutable is MutableMode.YES
    assert resolve(ExtClass.SYSEXT, env, mutable="no").mutable is MutableMode.NO
    # an invalid env value is ignored, not fatal
    assert resolve(ExtClass.SYSEXT, {"SYSTEMD_SYSEXT_MUTABLE_MODE": "x"}).mutable is MutableMode.NO
    with pytest.raises(StrataError):
        resolve(ExtClass.SYSEXT, {}, mutable="x")


def test_root_implies_no_reload() -> None:
    s = resolve(ExtClass.CONFEXT, {}, root="/tmp/r/")
    assert s.root == "/tmp/r" and s.no_reload and s.discover_root == "/tmp/r"
    plain = resolve(ExtClass.CONFEXT, {})
    assert not plain.no_reload and plain.discover_root is None
    slash = resolve(ExtClass.CONFEXT, {}, root="/")
    assert slash.no_reload and slash.discover_root == "/"
