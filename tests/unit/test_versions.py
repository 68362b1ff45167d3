"""strverscmp_improved against systemd's own tables (src/test/test-string-util.c, v257)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from strata.versions import VersionKey, strverscmp_improved, version_key

# TEST(strverscmp_improved): each entry is newer than every one before it.
ORDERED = [
    "~1", "", "ab", "abb", "abc", "0001", "002", "12", "122", "122.9", "123~rc1", "123", "123-a",
    "123-a.1", "123-a1", "123-a1.1", "123-3", "123-3.1", "123^patch1", "123^1", "123.a-1",
    "123.1-1", "123a-1", "124",
]

OLDER_NEWER = [
    ("123.45-67.88", "123.45-67.89"),
    ("123.45-67.89", "123.45-67.89a"),
    ("123.45-67.ab", "123.45-67.89"),
    ("123.45-67.9", "123.45-67.89"),
    ("123.45-67", "123.45-67.89"),
    ("123.45-66.89", "123.45-67.89"),
    ("123.45-9.99", "123.45-67.89"),
    ("123.42-99.99", "123.45-67.89"),
    ("123-99.99", "123.45-67.89"),
    # '~': pre-releases
    ("123~rc1-99.99", "123.45-67.89"),
    ("123~rc1-99.99", "123-45.67.89"),
    ("123~rc1-99.99", "123~rc2-67.89"),
    ("123~rc1-99.99", "123^aa2-67.89"),
    ("123~rc1-99.99", "123aa2-67.89"),
    # '-': version/release separator
    ("123-99.99", "123.45-67.89"),
    ("123-99.99", "123^aa2-67.89"),
    ("123-99.99", "123aa2-67.89"),
    # '^': patch releases
    ("123^45-67.89", "123.45-67.89"),
    ("123^aa1-99.99", "123^aa2-67.89"),
    ("123^aa2-67.89", "123aa2-67.89"),
    # '.': point releases
    ("123.aa2-67.89", "123aa2-67.89"),
    ("123.aa2-67.89", "123.ab2-67.89"),
]

# (a, b, sign of result)
CORNER_CASES: list[tuple[str | None, str | None, int]] = [
    ("123_aa2-67.89", "123aa+2-67.89", 0),  # invalid characters are separators
    ("123.", "123", 1),
    ("12_3", "123", -1),
    ("12_3", "12", 1),
    ("12_3", "12.3", 1),
    ("123.0", "123", 1),
    ("123_0", "123", 1),
    ("123..0", "123.0", -1),
    ("", None, 0),
    (None, "", 0),
    ("0_", "0", 0),
    ("_0_", "0", 0),
    ("_0", "0", 0),
    ("0", "0___", 0),
    ("", "_", 0),
    ("_", "", 0),
    ("_", "_", 0),
    ("", "~", 1),
    ("~", "", -1),
    ("~", "~", 0),
    # non-ASCII digits are not digits (Arabic-Indic and Thai 0-9)
    ("1\u0660\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669", "1", 0),
    ("1\u0e50\u0e51\u0e52\u0e53\u0e54\u0e55\u0e56\u0e57\u0e58\u0e59", "1", 0),
]

_A, _B = "\u03b1", "\u03b2"  # Greek alpha and beta

# TEST(strverscmp_improved_rpm): rpm's rpmvercmp.at cases as systemd keeps them.
RPM: list[tuple[str | None, str | None, int]] = [
    ("1.0", "1.0", 0), ("1.0", "2.0", -1), ("2.0", "1.0", 1),
    ("2.0.1", "2.0.1", 0), ("2.0", "2.0.1", -1), ("2.0.1", "2.0", 1),
    ("2.0.1a", "2.0.1a", 0), ("2.0.1a", "2.0.1", 1), ("2.0.1", "2.0.1a", -1),
    ("5.5p1", "5.5p1", 0), ("5.5p1", "5.5p2", -1), ("5.5p2", "5.5p1", 1),
    ("5.5p10", "5.5p10", 0), ("5.5p1", "5.5p10", -1), ("5.5p10", "5.5p1", 1),
    ("10xyz", "10.1xyz", 1), ("10.1xyz", "10xyz", -1),  # reversed from rpm
    ("xyz10", "xyz10", 0), ("xyz10", "xyz10.1", -1), ("xyz10.1", "xyz10", 1),
    ("xyz.4", "xyz.4", 0), ("xyz.4", "8", -1), ("8", "xyz.4", 1),
    ("xyz.4", "2", -1), ("2", "xyz.4", 1),
    ("5.5p2", "5.6p1", -1), ("5.6p1", "5.5p2", 1),
    ("5.6p1", "6.5p1", -1), ("6.5p1", "5.6p1", 1),
    ("6.0.rc1", "6.0", 1), ("6.0", "6.0.rc1", -1),
    ("10b2", "10a1", 1), ("10a2", "10b2", -1),
    ("1.0aa", "1.0aa", 0), ("1.0a", "1.0aa", -1), ("1.0aa", "1.0a", 1),
    ("10.0001", "10.0001", 0), ("10.0001", "10.1", 0), ("10.1", "10.0001", 0),
    ("10.0001", "10.0039", -1), ("10.0039", "10.0001", 1),
    ("4.999.9", "5.0", -1), ("5.0", "4.999.9", 1),
    ("20101121", "20101121", 0), ("20101121", "20101122", -1), ("20101122", "20101121", 1),
    ("2_0", "2_0", 0), ("2.0", "2_0", -1), ("2_0", "2.0", 1),  # rpm: equal
    ("a", "a", 0), ("a+", "a+", 0), ("a+", "a_", 0), ("a_", "a+", 0),
    ("+a", "+a", 0), ("+a", "_a", 0), ("_a", "+a", 0),
    ("+_", "+_", 0), ("_+", "+_", 0), ("_+", "_+", 0), ("+", "_", 0), ("_", "+", 0),
    ("1.0~rc1", "1.0~rc1", 0), ("1.0~rc1", "1.0", -1), ("1.0", "1.0~rc1", 1),
    ("1.0~rc1", "1.0~rc2", -1), ("1.0~rc2", "1.0~rc1", 1),
    ("1.0~rc1~git123", "1.0~rc1~git123", 0), ("1.0~rc1~git123", "1.0~rc1", -1),
    ("1.0~rc1", "1.0~rc1~git123", 1),
    ("1.0^", "1.0^", 0), ("1.0^", "1.0", 1), ("1.0", "1.0^", -1),
    ("1.0^git1", "1.0^git1", 0), ("1.0^git1", "1.0", 1), ("1.0", "1.0^git1", -1),
    ("1.0^git1", "1.0^git2", -1), ("1.0^git2", "1.0^git1", 1),
    ("1.0^git1", "1.01", -1), ("1.01", "1.0^git1", 1),
    ("1.0^20160101", "1.0^20160101", 0), ("1.0^20160101", "1.0.1", -1),
    ("1.0.1", "1.0^20160101", 1),
    ("1.0^20160101^git1", "1.0^20160101^git1", 0),
    ("1.0^20160102", "1.0^20160101^git1", 1), ("1.0^20160101^git1", "1.0^20160102", -1),
    ("1.0~rc1^git1", "1.0~rc1^git1", 0), ("1.0~rc1^git1", "1.0~rc1", 1),
    ("1.0~rc1", "1.0~rc1^git1", -1),
    ("1.0^git1~pre", "1.0^git1~pre", 0), ("1.0^git1", "1.0^git1~pre", 1),
    ("1.0^git1~pre", "1.0^git1", -1),
    # rpm oddities systemd documents; non-ASCII letters (alpha, beta) all compare equal
    ("1b.fc17", "1b.fc17", 0), ("1b.fc17", "1.fc17", 1), ("1.fc17", "1b.fc17", -1),
    ("1g.fc17", "1g.fc17", 0), ("1g.fc17", "1.fc17", 1), ("1.fc17", "1g.fc17", -1),
    (f"1.1.{_A}", f"1.1.{_A}", 0), (f"1.1.{_A}", f"1.1.{_B}", 0), (f"1.1.{_B}", f"1.1.{_A}", 0),
    (f"1.1.{_A}{_A}", f"1.1.{_A}", 0), (f"1.1.{_A}", f"1.1.{_B}{_B}", 0),
    (f"1.1.{_B}{_B}", f"1.1.{_A}{_A}", 0),
]


@pytest.mark.parametrize(("older", "newer"), list(itertools.combinations(ORDERED, 2)))
def test_ordered_list(older: str, newer: str) -> None:
    assert strverscmp_improved(older, newer) == -1
    assert strverscmp_improved(newer, older) == 1
    assert strverscmp_improved(older, older) == 0
    assert strverscmp_improved(newer, newer) == 0


@pytest.mark.parametrize(("older", "newer"), OLDER_NEWER)
def test_older_newer(older: str, newer: str) -> None:
    assert strverscmp_improved(older, newer) == -1
    assert strverscmp_improved(newer, older) == 1
    assert strverscmp_improved(older, older) == 0


@pytest.mark.parametrize(("a", "b", "expected"), CORNER_CASES + RPM)
def test_table(a: str | None, b: str | None, expected: int) -> None:
    assert strverscmp_improved(a, b) == expected


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("1\0zzz", "1", 0),  # a C string ends at NUL
        ("1", "1\0", 0),
        # After '~' both sides step one byte; a high byte then compares as a signed char.
        ("~\u00e9", "~", -1),
        ("~", "~\u00e9", 1),
        ("~_", "~", 1),
        ("v10", "v9", 1),  # the layer-order case from the reference (v10 beats v9)
        ("renamed2", "v9", -1),
    ],
)
def test_c_string_edges(a: str, b: str, expected: int) -> None:
    assert strverscmp_improved(a, b) == expected


def test_undecodable_bytes_behave_like_other_invalid_bytes() -> None:
    # Skipped only where a segment starts: "1\xff.2" == "1.2" ...
    leading = b"1\xff.2".decode("utf-8", "surrogateescape")
    assert strverscmp_improved(leading, "1.2") == 0
    # ... but right after a '.' the byte makes an empty (older) numeric segment, as in C.
    after_dot = b"1.\xff2".decode("utf-8", "surrogateescape")
    assert strverscmp_improved(after_dot, "1.2") == -1
    assert strverscmp_improved("1._2", "1.2") == -1


def test_version_key_sorts_like_systemd_layer_order() -> None:
    names = ["v9", "a", "v10", "renamed2", "c"]
    # sysext stacks images in descending order: the first one here is the top layer.
    assert sorted(names, key=version_key, reverse=True) == ["v10", "v9", "renamed2", "c", "a"]
    assert sorted(reversed(ORDERED), key=version_key) == ORDERED


def test_version_key_equality_follows_the_comparison() -> None:
    assert VersionKey("1.0001") == VersionKey("1.1")
    assert VersionKey("1.0") != VersionKey("1.1")
    assert VersionKey("1.0") < VersionKey("1.1")
    assert max(["2.0", "10.0", "9.9"], key=version_key) == "10.0"


_VERSIONISH = "0123456789abzAZ~-^._+ \u00e9"


@given(st.text(alphabet=_VERSIONISH, max_size=10), st.text(alphabet=_VERSIONISH, max_size=10))
def test_antisymmetric(a: str, b: str) -> None:
    assert strverscmp_improved(a, b) == -strverscmp_improved(b, a)


@given(st.lists(st.text(alphabet=_VERSIONISH, max_size=8), max_size=8))
def test_sorted_is_monotonic(items: list[str]) -> None:
    ordered = sorted(items, key=version_key)
    assert all(strverscmp_improved(x, y) <= 0 for x, y in itertools.pairwise(ordered))
