"""vpick's choice rules: systemd's test-vpick.c cases plus the rules of vpick.c's make_choice()."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from strata import vpick
from strata.vpick import Choice, choose, parse_tries, pick, pick_path, version_is_valid

# The "foo.v" directory of systemd's test-vpick.c (we are x86-64, so foo_100_sparc is present).
FOO_V = [
    "foo_5.5.raw", "foo_55.raw", "foo_5.raw", "foo_5_ia64.raw", "foo_7.raw",
    "foo_7_x86-64.raw", "foo_55_x86-64.raw", "foo_55_x86.raw", "foo_99_x86.raw",
    "foo_100_sparc.raw",
    "quux_1_s390.raw", "quux_2_s390+4-6.raw", "quux_3_s390+0-10.raw",
]


@pytest.mark.parametrize(
    ("entries", "kwargs", "expected"),
    [
        # native x86-64: secondary x86 still counts, and 99 is the newest version
        (FOO_V, {}, Choice("foo_99_x86.raw", "99", "x86", None, None)),
        (FOO_V, {"architecture": "x86-64"},
         Choice("foo_55_x86-64.raw", "55", "x86-64", None, None)),
        (FOO_V, {"architecture": "ia64"}, Choice("foo_5_ia64.raw", "5", "ia64", None, None)),
        (FOO_V, {"version": "5"}, Choice("foo_5.raw", "5", None, None, None)),
        (FOO_V, {"version": "5", "architecture": "ia64"},
         Choice("foo_5_ia64.raw", "5", "ia64", None, None)),
        (FOO_V, {"architecture": "cris"}, None),
        # without foo_99_x86: 55 exists as native, secondary and arch-less; native wins
        ([e for e in FOO_V if e != "foo_99_x86.raw"], {},
         Choice("foo_55_x86-64.raw", "55", "x86-64", None, None)),
        # tries counters: +0 loses to everything that still has tries
        (FOO_V, {"basename": "quux", "architecture": "s390"},
         Choice("quux_2_s390+4-6.raw", "2", "s390", 4, 6)),
    ],
)
def test_systemd_test_vpick_cases(
    entries: list[str], kwargs: dict[str, str], expected: Choice | None
) -> None:
    args: dict[str, str] = {"basename": "foo", **kwargs}
    basename = args.pop("basename")
    got = choose(entries, basename=basename, suffix=".raw", arch="x86-64",
                 architecture=args.get("architecture"), version=args.get("version"))
    assert got == expected


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        (["x_1.raw", "x_2.raw", "x_10.raw"], "x_10.raw"),  # versions, not strings
        (["x_1.raw", "x_2.raw"], "x_2.raw"),
        (["x_1.raw", "x_1.raw.bak", "x_2.txt"], "x_1.raw"),  # suffix required
        (["x.raw", "xy_3.raw", "x-3.raw", "X_3.raw"], None),  # need "<basename>_"
        (["x_.raw"], None),  # empty version
        (["x_1~rc1.raw"], None),  # '~' is not allowed in a vpick version
        (["x_1^p.raw"], None),
        (["x_1,2.raw", "x_1.raw"], "x_1,2.raw"),  # ',' is allowed; 1,2 > 1
        (["x_1.raw", "x_2+0.raw"], "x_1.raw"),  # no tries left: last resort only
        (["x_2+0.raw"], "x_2+0.raw"),
        (["x_2+0-3.raw", "x_2+0-1.raw"], "x_2+0-1.raw"),  # fewer tries done
        (["x_2+1.raw", "x_2+3.raw"], "x_2+3.raw"),  # more tries left
        (["x_2+3.raw", "x_2.raw"], "x_2.raw"),  # no counter = UINT_MAX tries left
        (["x_3+1.raw", "x_2.raw"], "x_3+1.raw"),  # version before tries left
        (["x_2+010.raw", "x_2+9.raw"], "x_2+9.raw"),  # C octal: +010 is 8
        (["x_2+011.raw", "x_2+8.raw"], "x_2+011.raw"),  # 9 > 8
        (["x_1_x86.raw", "x_1.raw"], "x_1_x86.raw"),  # secondary beats no architecture
        (["x_1_x86-64.raw", "x_1_x86.raw"], "x_1_x86-64.raw"),
        (["x_2.raw", "x_1_x86-64.raw"], "x_2.raw"),  # version before architecture
        (["x_9_arm64.raw", "x_1.raw"], "x_1.raw"),  # foreign architecture ignored
        (["x_1_foo.raw", "x_0.raw"], "x_1_foo.raw"),  # unknown word: chopped, "any"
        (["x_1_2.raw", "x_1_3.raw"], "x_1_3.raw"),  # both version "1": strcmp decides
        (["x_1.0.raw", "x_1.raw"], "x_1.0.raw"),
        (["x_1.0001.raw", "x_1.1.raw"], "x_1.1.raw"),  # equal versions: larger name
        (["x_x86-64.raw"], "x_x86-64.raw"),  # the word alone is a version here
        (["x_1_x86-64+2-1.raw", "x_1+5.raw"], "x_1_x86-64+2-1.raw"),  # arch before tries
    ],
)
def test_choice_rules(entries: list[str], expected: str | None) -> None:
    assert pick(entries, basename="x", suffix=".raw", arch="x86-64") == expected
    # readdir order never matters: the ranking is total
    assert pick(list(reversed(entries)), basename="x", suffix=".raw", arch="x86-64") == expected


def test_unknown_arch_word_is_chopped_from_version() -> None:
    got = choose(["x_1_2.raw"], basename="x", suffix=".raw", arch="x86-64")
    assert got == Choice("x_1_2.raw", "1", None, None, None)


def test_directory_suffix_and_class_suffix() -> None:
    entries = ["foo_1", "foo_2.sysext", "foo_3.sysext.raw", "foo_4.raw"]
    # foo.v: suffix "" matches everything; the version absorbs any dots
    assert pick(entries, basename="foo", suffix="", arch="x86-64") == "foo_4.raw"
    assert pick(entries, basename="foo", suffix=".sysext", arch="x86-64") == "foo_2.sysext"
    assert pick(entries, basename="foo", suffix=".sysext.raw", arch="x86-64") == \
        "foo_3.sysext.raw"


def test_first_matching_suffix_is_chopped() -> None:
    got = choose(["a_1.sysext.raw"], basename="a", suffix=(".raw", ".sysext.raw"), arch="x86-64")
    assert got is not None
    assert got.version == "1.sysext"


def test_other_native_architectures() -> None:
    entries = ["x_1_arm.raw", "x_1_arm64.raw", "x_2_x86.raw"]
    assert pick(entries, basename="x", suffix=".raw", arch="arm64") == "x_1_arm64.raw"
    assert pick(["x_1_arm.raw"], basename="x", suffix=".raw", arch="arm64") == "x_1_arm.raw"
    # riscv64 has no secondary architecture
    assert pick(entries, basename="x", suffix=".raw", arch="riscv64") is None
    with pytest.raises(ValueError, match="unknown architecture"):
        pick(entries, basename="x", suffix=".raw", arch="amd64")


def test_without_tries_flag_counter_is_part_of_version() -> None:
    got = choose(["x_2+0.raw", "x_1.raw"], basename="x", suffix=".raw", arch="x86-64",
                 tries=False)
    assert got is not None
    assert got.filename == "x_2+0.raw"
    assert got.version == "2+0"
    assert got.tries_left is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("+3", (3, 0)),
        ("+3-1", (3, 1)),
        ("+0-0", (0, 0)),
        ("+010", (8, 0)),
        ("+07-010", (7, 8)),
        ("+09", None),
        ("+3-09", None),
        ("+", None),
        ("+-1", None),
        ("+3-", None),
        ("+3-x", None),
        ("+3x", None),
        ("3", None),
        ("+4294967295", (4294967295, 0)),
        ("+4294967296", None),
        ("+1-4294967296", None),
    ],
)
def test_parse_tries(text: str, expected: tuple[int, int] | None) -> None:
    assert parse_tries(text) == expected


def test_unparsable_counter_stays_in_version() -> None:
    got = choose(["x_1+x.raw"], basename="x", suffix=".raw", arch="x86-64")
    assert got == Choice("x_1+x.raw", "1+x", None, None, None)


@pytest.mark.parametrize(
    ("version", "valid"),
    [("1", True), ("1.2-3_4+5,6", True), ("abcXYZ", True), ("", False), ("1~2", False),
     ("1^2", False), ("1 2", False), ("1/2", False), ("é", False), ("1" * 255, True),
     ("1" * 256, False)],
)
def test_version_is_valid(version: str, valid: bool) -> None:
    assert version_is_valid(version) is valid


def test_local_architectures() -> None:
    assert vpick.local_architectures("x86-64") == ("x86-64", "x86", None)
    assert vpick.local_architectures("s390x") == ("s390x", "s390", None)
    assert vpick.local_architectures("x86") == ("x86", None)


# --- pick_path: the filesystem part --------------------------------------------------------


def test_pick_path_follows_symlinks_and_keeps_entry_path(tmp_path: Path) -> None:
    target = tmp_path / "real.raw"
    target.write_bytes(b"x" * 10)
    vdir = tmp_path / "foo.raw.v"
    vdir.mkdir()
    (vdir / "foo_1.raw").write_bytes(b"")
    (vdir / "foo_2.raw").symlink_to("../real.raw")
    res = pick_path(str(vdir), basename="foo", suffix=".raw", arch="x86-64",
                    type_mask=frozenset({stat.S_IFREG, stat.S_IFBLK}))
    assert res is not None
    assert res.path == str(vdir / "foo_2.raw")
    assert res.st.st_size == 10
    assert res.choice.version == "2"


def test_pick_path_no_match_is_none(tmp_path: Path) -> None:
    (tmp_path / "bar_1.raw").write_bytes(b"")
    assert pick_path(str(tmp_path), basename="foo", suffix=".raw", arch="x86-64") is None


def test_pick_path_wrong_type_fails_without_fallback(tmp_path: Path) -> None:
    (tmp_path / "foo_1.raw").write_bytes(b"")
    (tmp_path / "foo_2.raw").mkdir()
    with pytest.raises(OSError) as exc:
        pick_path(str(tmp_path), basename="foo", suffix=".raw", arch="x86-64",
                  type_mask=frozenset({stat.S_IFREG, stat.S_IFBLK}))
    assert exc.value.errno == errno.EISDIR
    with pytest.raises(OSError) as exc:
        pick_path(str(tmp_path), basename="foo", suffix=".raw", arch="x86-64",
                  type_mask=frozenset({stat.S_IFBLK}))
    assert exc.value.errno == errno.ENOTBLK


def test_pick_path_dangling_winner_fails(tmp_path: Path) -> None:
    (tmp_path / "foo_1.raw").write_bytes(b"")
    (tmp_path / "foo_2.raw").symlink_to("nowhere")
    with pytest.raises(FileNotFoundError):
        pick_path(str(tmp_path), basename="foo", suffix=".raw", arch="x86-64")


def test_pick_path_directory_entries(tmp_path: Path) -> None:
    (tmp_path / "foo_1").mkdir()
    (tmp_path / "foo_3").write_bytes(b"")
    with pytest.raises(OSError) as exc:
        pick_path(str(tmp_path), basename="foo", suffix="", arch="x86-64",
                  type_mask=frozenset({stat.S_IFDIR}))
    assert exc.value.errno == errno.ENOTDIR
    os.unlink(tmp_path / "foo_3")
    res = pick_path(str(tmp_path), basename="foo", suffix="", arch="x86-64",
                    type_mask=frozenset({stat.S_IFDIR}))
    assert res is not None
    assert res.path == str(tmp_path / "foo_1")


def test_errno_from_mode() -> None:
    reg_blk = frozenset({stat.S_IFREG, stat.S_IFBLK})
    assert vpick.errno_from_mode(reg_blk, stat.S_IFDIR) == errno.EISDIR
    assert vpick.errno_from_mode(reg_blk, stat.S_IFLNK) == errno.ELOOP
    assert vpick.errno_from_mode(reg_blk, stat.S_IFIFO) == errno.EBADF
    assert vpick.errno_from_mode(frozenset({stat.S_IFDIR}), stat.S_IFREG) == errno.ENOTDIR
    assert vpick.errno_from_mode(frozenset({stat.S_IFSOCK}), stat.S_IFREG) == errno.ENOTSOCK
