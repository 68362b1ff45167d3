from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from strata.parse import cescape, cunescape, parse_boolean, parse_devnum


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1", True), ("YES", True), ("y", True), ("true", True), ("t", True), ("on", True),
     ("0", False), ("no", False), ("N", False), ("false", False), ("f", False), ("off", False),
     ("", None), ("2", None), ("maybe", None), (" false", None)],
)
def test_parse_boolean(text: str, expected: bool | None) -> None:
    assert parse_boolean(text) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0:48\n", (0, 48)), ("259:3", (259, 3)), ("0:", None), ("a:b", None), ("1:2:3", None),
     ("", None)],
)
def test_parse_devnum(text: str, expected: tuple[int, int] | None) -> None:
    assert parse_devnum(text) == expected


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [("var/lib/extensions.mutable/.systemd-usr-workdir",
      "var/lib/extensions.mutable/.systemd-usr-workdir"),
     ("a\nb", "a\\nb"), ("tab\there", "tab\\there"), ("\x01", "\\x01"),
     ("back\\slash", "back\\\\slash")],
)
def test_cescape(raw: str, escaped: str) -> None:
    assert cescape(raw) == escaped
    assert cunescape(escaped) == raw


@given(st.text())
def test_cescape_roundtrip(s: str) -> None:
    assert cunescape(cescape(s)) == s
