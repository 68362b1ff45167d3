"""mountinfo parsing (pure): fields, escapes, optional fields, malformed input, stack queries."""

from __future__ import annotations

import os

import pytest

from strata.errors import ErrorKind, StrataError
from strata.kernel import mountinfo
from strata.kernel.mountinfo import MountEntry, Propagation


@pytest.mark.parametrize(
    ("escaped", "plain"),
    [
        ("/plain", "/plain"),
        (r"/with\040space", "/with space"),
        (r"/tab\011here", "/tab\there"),
        (r"/new\012line", "/new\nline"),
        (r"/back\134slash", "/back\\slash"),
        (r"\040\040", "  "),
        (r"/not\08octal", r"/not\08octal"),  # 8 is not an octal digit: left alone
        ("/trailing\\", "/trailing\\"),
        (r"/short\04", r"/short\04"),
        (r"/utf8\303\244", "/utf8\u00e4"),  # octal bytes form UTF-8
        (r"/latin1\344", os.fsdecode(b"/latin1\xe4")),  # invalid UTF-8 round-trips
    ],
)
def test_unescape(escaped: str, plain: str) -> None:
    assert mountinfo.unescape(escaped) == plain


LINE = "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue"


def test_parse_line_fields() -> None:
    e = mountinfo.parse_line(LINE)
    assert e == MountEntry(
        mount_id=36, parent_id=35, major=98, minor=0, root="/mnt1", mountpoint="/mnt2",
        mount_options=("rw", "noatime"), optional_fields=("master:1",), fstype="ext3",
        source="/dev/root", super_options=("rw", "errors=continue"))
    assert not e.read_only
    assert e.super_option("errors") == "continue"
    assert e.super_option("rw") == ""
    assert e.super_option("missing") is None


@pytest.mark.parametrize(
    ("optional", "expected", "text"),
    [
        ("", Propagation(), "private"),
        ("shared:7", Propagation(shared=7), "shared:7"),
        ("master:3", Propagation(master=3), "master:3"),
        ("shared:7 master:3", Propagation(shared=7, master=3), "shared:7 master:3"),
        ("master:3 propagate_from:2", Propagation(master=3, propagate_from=2),
         "master:3 propagate_from:2"),
        ("unbindable", Propagation(unbindable=True), "unbindable"),
    ],
)
def test_optional_fields(optional: str, expected: Propagation, text: str) -> None:
    opt = f" {optional}" if optional else ""
    e = mountinfo.parse_line(f"1 0 0:1 / / ro{opt} - tmpfs tmpfs ro")
    assert e.optional_fields == tuple(optional.split())
    assert e.propagation == expected
    assert str(e.propagation) == text
    assert e.propagation.private == (optional == "")
    assert e.read_only


def test_escapes_in_paths_source_and_options() -> None:
    line = (r"50 20 0:45 /sub\040dir /run/my\040mnt\011x rw,relatime shared:9 - overlay "
            r"sys\040ext ro,lowerdir=/a\134\072b:/c,redirect_dir=on")
    e = mountinfo.parse_line(line)
    assert e.root == "/sub dir"
    assert e.mountpoint == "/run/my mnt\tx"
    assert e.source == "sys ext"
    # \072 is not something the kernel emits, but any 3-digit octal escape is decoded
    assert e.super_option("lowerdir") == "/a\\:b:/c"


def test_real_overlay_and_empty_super_options() -> None:
    text = (
        "22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw\n"
        "\n"
        "90 22 0:50 / /usr ro,nodev,relatime - overlay sysext "
        "ro,lowerdir=/run/systemd/sysext/meta/usr:/usr,redirect_dir=on\n"
        "91 90 0:51 / /usr/x rw - fuse.sshfs host:/x\n"
    )
    entries = mountinfo.parse(text)
    assert [e.mount_id for e in entries] == [22, 90, 91]
    assert entries[1].fstype == "overlay"
    assert entries[1].source == "sysext"
    assert entries[1].super_option("lowerdir") == "/run/systemd/sysext/meta/usr:/usr"
    assert entries[2].fstype == "fuse.sshfs"
    assert entries[2].super_options == ()


@pytest.mark.parametrize(
    "line",
    [
        "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 ext3 /dev/root rw",  # no separator
        "36 35 98:0 /mnt1 /mnt2 - ext3 /dev/root rw",  # separator too early
        "x 35 98:0 /mnt1 /mnt2 rw - ext3 /dev/root rw",  # bad id
        "36 35 98-0 /mnt1 /mnt2 rw - ext3 /dev/root rw",  # bad device
        "36 35 98:0 /mnt1 /mnt2 rw - ext3",  # source missing
        "36 35 98:0 /mnt1 /mnt2 rw - ext3 /dev/root rw extra",  # too many
        "garbage",
    ],
)
def test_malformed(line: str) -> None:
    with pytest.raises(StrataError) as exc:
        mountinfo.parse(f"1 0 0:1 / / rw - tmpfs tmpfs rw\n{line}\n")
    assert exc.value.kind is ErrorKind.INVALID
    assert "mountinfo line 2" in str(exc.value)


def _mk(mid: int, parent: int, mp: str) -> str:
    return f"{mid} {parent} 0:{mid} / {mp} rw - tmpfs t{mid} rw"


# The root (1) has /usr (10); /usr got overmounted twice (11 on 10, 12 on 11), 12 has a
# submount /usr/share (13) with a child /usr/share/x (14); /usr/local (15) sits on the
# covered 10; /opt (20) is unrelated.
STACK = "\n".join([
    _mk(1, 0, "/"),
    _mk(10, 1, "/usr"),
    _mk(15, 10, "/usr/local"),
    _mk(20, 1, "/opt"),
    _mk(11, 10, "/usr"),
    _mk(12, 11, "/usr"),
    _mk(13, 12, "/usr/share"),
    _mk(14, 13, "/usr/share/x"),
])


@pytest.mark.parametrize(
    ("path", "stack"),
    [
        ("/usr", [10, 11, 12]),
        ("/usr/", [10, 11, 12]),
        ("/usr/share", [13]),
        ("/", [1]),
        ("/nothing", []),
    ],
)
def test_stack_and_top(path: str, stack: list[int]) -> None:
    entries = mountinfo.parse(STACK)
    assert [e.mount_id for e in mountinfo.stack_at(entries, path)] == stack
    top = mountinfo.top_mount_at(entries, path)
    assert (top.mount_id if top else None) == (stack[-1] if stack else None)


def test_top_mount_after_move_beneath() -> None:
    # MOVE_MOUNT_BENEATH: new mount 30 goes on the old parent, old top 12 is re-parented onto 30
    # (it keeps its place in the file, so mountinfo order is not stacking order)
    text = "\n".join([_mk(1, 0, "/"), _mk(12, 30, "/usr"), _mk(30, 1, "/usr")])
    entries = mountinfo.parse(text)
    assert [e.mount_id for e in mountinfo.stack_at(entries, "/usr")] == [30, 12]
    top = mountinfo.top_mount_at(entries, "/usr")
    assert top is not None
    assert top.mount_id == 12


def test_same_mountpoint_in_covered_and_visible_parent() -> None:
    # /a (10) with /a/b (11); then /a overmounted by 20, which got its own /a/b (21, with 22
    # stacked on it). The /a/b stack on the covered /a is invisible, wherever it is listed.
    text = "\n".join([_mk(1, 0, "/"), _mk(10, 1, "/a"), _mk(20, 10, "/a"), _mk(21, 20, "/a/b"),
                      _mk(22, 21, "/a/b"), _mk(11, 10, "/a/b")])
    entries = mountinfo.parse(text)
    assert [e.mount_id for e in mountinfo.stack_at(entries, "/a/b")] == [21, 22]
    top = mountinfo.top_mount_at(entries, "/a/b")
    assert top is not None
    assert top.mount_id == 22
    assert [e.mount_id for e in mountinfo.stack_at(entries, "/a")] == [10, 20]


@pytest.mark.parametrize(
    ("mount_id", "expected"),
    [
        (12, [13, 14]),
        (10, [15, 11, 12, 13, 14]),  # everything stacked on /usr and below, in file order
        (13, [14]),
        (14, []),
        (1, [10, 15, 20, 11, 12, 13, 14]),
        (99, []),
    ],
)
def test_submounts(mount_id: int, expected: list[int]) -> None:
    entries = mountinfo.parse(STACK)
    assert [e.mount_id for e in mountinfo.submounts(entries, mount_id)] == expected


def test_submounts_tolerates_self_parent_loop() -> None:
    entries = mountinfo.parse("\n".join([_mk(1, 1, "/"), _mk(2, 1, "/a")]))
    assert [e.mount_id for e in mountinfo.submounts(entries, 1)] == [2]
    assert [e.mount_id for e in mountinfo.stack_at(entries, "/")] == [1]


def test_by_id() -> None:
    entries = mountinfo.parse(STACK)
    found = mountinfo.by_id(entries, 13)
    assert found is not None
    assert found.mountpoint == "/usr/share"
    assert mountinfo.by_id(entries, 99) is None


def test_read_self() -> None:
    entries = mountinfo.read()
    assert entries, "a process always sees at least its root mount"
    assert any(e.fstype == "proc" for e in entries)  # /proc is mounted, we just read it


def test_read_missing_pid() -> None:
    with pytest.raises(StrataError) as exc:
        mountinfo.read(2**22 + 12345)
    assert exc.value.kind is ErrorKind.NOT_FOUND
