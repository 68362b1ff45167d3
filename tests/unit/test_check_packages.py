"""strata.check.packages: Debian package names for libraries (pure parts)."""

from __future__ import annotations

import pytest

from strata.check.packages import hint, parse_apt_policy, parse_dpkg_search, policy_name


@pytest.mark.parametrize(("soname", "package"), [
    ("libonig.so.5", "libonig5"),
    ("libjq.so.1", "libjq1"),
    ("libc.so.6", "libc6"),
    ("libstdc++.so.6", "libstdc++6"),
    ("libgtk-3.so.0", "libgtk-3-0"),  # name ends in a digit: a hyphen
    ("libfoo.so.1.2", "libfoo1.2"),
    ("libFOO_bar.so.2", "libfoo-bar2"),
    ("libnover.so", "libnover"),
    ("ld-linux-x86-64.so.2", None),
    ("notalib", None),
])
def test_policy_name(soname: str, package: str | None) -> None:
    assert policy_name(soname) == package


def test_parse_dpkg_search() -> None:
    out = ("libonig5:amd64: /usr/lib/x86_64-linux-gnu/libonig.so.5.3.0\n"
           "libonig5:amd64: /usr/lib/x86_64-linux-gnu/libonig.so.5\n"
           "diversion by foo from: /usr/lib/libjq.so.1\n"
           "libjq1, libjq-dev: /usr/lib/x86_64-linux-gnu/libjq.so.1\n"
           "dpkg-query: no path found matching pattern */libnope.so.1\n")
    assert parse_dpkg_search(out, ["libonig.so.5", "libjq.so.1", "libnope.so.1"]) == {
        "libonig.so.5": "libonig5", "libjq.so.1": "libjq1"}


def test_parse_apt_policy() -> None:
    out = ("libonig5:\n  Installed: 6.9.8-1\n  Candidate: 6.9.8-1\n  Version table:\n"
           " *** 6.9.8-1 500\n        500 http://deb.debian.org/debian bookworm/main amd64 "
           "Packages\nlibgone1:\n  Installed: (none)\n  Candidate: (none)\n"
           "  Version table:\n")
    assert parse_apt_policy(out) == {"libonig5"}


def test_hint() -> None:
    assert hint(["libonig.so.5"], {"libonig.so.5": "libonig5"}) == \
        "add the package libonig5 to the image or to the host"
    assert hint(["a.so.1", "b.so.2"], {"a.so.1": "liba1", "b.so.2": "libb2"}) == \
        "add the packages liba1, libb2 to the image or to the host"
    assert hint(["a.so.1", "x.so.9"], {"a.so.1": "liba1"}) == \
        "add the package liba1; add a package providing x.so.9 to the image or to the host"
