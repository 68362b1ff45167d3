"""overlay option building (pure): escaping, option lists, mount flags, method choice."""

from __future__ import annotations

import pytest

from strata.errors import ErrorKind, StrataError
from strata.kernel import libc
from strata.kernel import mountapi as m
from strata.kernel.overlay import (
    MountFlags,
    OverlayMethod,
    choose_method,
    escape_layer,
    ms_flags,
    option_string,
    overlay_options,
    split_mount_flags,
)


@pytest.mark.parametrize(
    ("path", "escaped"),
    [
        ("/usr", "/usr"),
        ("/a,b", "/a\\,b"),
        ("/a:b", "/a\\:b"),
        ("/a\\b", "/a\\\\b"),
        ("/x,:\\y", "/x\\,\\:\\\\y"),
        ("/with space", "/with space"),  # spaces need no escaping in overlay options
        ("/ünï", "/ünï"),
        ("/tab\there", "/tab\there"),  # control chars pass through (systemd C-escapes them,
        # which ovl_unescape cannot undo)
        ("", ""),
    ],
)
def test_escape_layer(path: str, escaped: str) -> None:
    assert escape_layer(path) == escaped


def test_escape_is_reversible_like_ovl_unescape() -> None:
    # ovl_unescape: a backslash makes the next character literal
    def unescape(s: str) -> str:
        out, i = [], 0
        while i < len(s):
            if s[i] == "\\" and i + 1 < len(s):
                i += 1
            out.append(s[i])
            i += 1
        return "".join(out)

    for p in ["/a,b:c\\d", "\\\\", ":,", "/plain"]:
        assert unescape(escape_layer(p)) == p


@pytest.mark.parametrize(
    ("lower", "upper", "work", "extra", "expected"),
    [
        (["/a"], None, None, [], [("lowerdir", "/a")]),
        (["/top", "/mid", "/usr"], None, None, [],
         [("lowerdir", "/top:/mid:/usr")]),
        (["/x:y", "/p,q"], None, None, [], [("lowerdir", "/x\\:y:/p\\,q")]),
        (["/l"], "/up,per", "/wo:rk", ["redirect_dir=on", "noatime", "metacopy=off"],
         [("lowerdir", "/l"), ("upperdir", "/up\\,per"), ("workdir", "/wo\\:rk"),
          ("redirect_dir", "on"), "noatime", ("metacopy", "off")]),
        (["/l"], None, None, ["index=off", "key=a=b"],
         [("lowerdir", "/l"), ("index", "off"), ("key", "a=b")]),
    ],
)
def test_overlay_options(lower: list[str], upper: str | None, work: str | None,
                         extra: list[str], expected: list[object]) -> None:
    assert overlay_options(lower, upper, work, extra) == expected


def test_overlay_options_needs_a_layer() -> None:
    with pytest.raises(StrataError) as exc:
        overlay_options([], None, None)
    assert exc.value.kind is ErrorKind.USAGE


def test_option_string() -> None:
    opts = overlay_options(["/a:b", "/c"], "/u", "/w", ["noatime", "index=off"])
    assert option_string(opts) == "lowerdir=/a\\:b:/c,upperdir=/u,workdir=/w,noatime,index=off"
    assert option_string([("lowerdir+", 5), "ro"]) == "lowerdir+=5,ro"


@pytest.mark.parametrize(
    ("options", "flags", "rest"),
    [
        ([], MountFlags(), []),
        (["redirect_dir=on", "metacopy=off"], MountFlags(), ["redirect_dir=on", "metacopy=off"]),
        (["noatime"], MountFlags(m.MOUNT_ATTR_NOATIME, m.MOUNT_ATTR__ATIME), []),
        (["nodev", "nosuid", "noexec"],
         MountFlags(m.MOUNT_ATTR_NODEV | m.MOUNT_ATTR_NOSUID | m.MOUNT_ATTR_NOEXEC, 0), []),
        (["exec"], MountFlags(0, m.MOUNT_ATTR_NOEXEC), []),
        (["noexec", "exec"], MountFlags(0, m.MOUNT_ATTR_NOEXEC), []),  # last one wins
        (["exec", "noexec"], MountFlags(m.MOUNT_ATTR_NOEXEC, m.MOUNT_ATTR_NOEXEC), []),
        (["ro", "index=off"], MountFlags(read_only=True), ["index=off"]),
        (["rw"], MountFlags(read_only=False), []),
        (["noatime", "strictatime"],
         MountFlags(m.MOUNT_ATTR_STRICTATIME, m.MOUNT_ATTR__ATIME), []),
    ],
)
def test_split_mount_flags(options: list[str], flags: MountFlags, rest: list[str]) -> None:
    assert split_mount_flags(options) == (flags, rest)


@pytest.mark.parametrize(
    ("attrs", "options", "result"),
    [
        (m.MOUNT_ATTR_NOEXEC, ["exec"], 0),
        (0, ["exec", "noexec"], m.MOUNT_ATTR_NOEXEC),
        (m.MOUNT_ATTR_NOEXEC, ["noexec"], m.MOUNT_ATTR_NOEXEC),
        (m.MOUNT_ATTR_STRICTATIME | m.MOUNT_ATTR_NODEV, ["noatime"],
         m.MOUNT_ATTR_NOATIME | m.MOUNT_ATTR_NODEV),
        (m.MOUNT_ATTR_NOATIME, ["relatime"], m.MOUNT_ATTR_RELATIME),
    ],
)
def test_mount_flags_apply(attrs: int, options: list[str], result: int) -> None:
    flags, _ = split_mount_flags(options)
    assert flags.apply(attrs) == result


@pytest.mark.parametrize(
    ("attrs", "read_only", "expected"),
    [
        (0, False, 0),
        (0, True, libc.MS_RDONLY),
        (m.MOUNT_ATTR_NODEV | m.MOUNT_ATTR_RDONLY, False, libc.MS_NODEV | libc.MS_RDONLY),
        (m.MOUNT_ATTR_NOSUID | m.MOUNT_ATTR_NOEXEC, False, libc.MS_NOSUID | libc.MS_NOEXEC),
        (m.MOUNT_ATTR_NOATIME, False, libc.MS_NOATIME),
        (m.MOUNT_ATTR_STRICTATIME, False, libc.MS_STRICTATIME),
        (m.MOUNT_ATTR_RELATIME, False, 0),
    ],
)
def test_ms_flags(attrs: int, read_only: bool, expected: int) -> None:
    assert ms_flags(attrs, read_only) == expected


LONG = "/" + "d" * 300  # longer than fsconfig's 255-byte string limit on its own
MID = "/" + "m" * 100  # fits alone, not three times


@pytest.mark.parametrize(
    ("lower", "upper", "extra", "kernel", "method"),
    [
        (["/a", "/b"], None, [], (True, True), OverlayMethod.LOWERDIR_PLUS),
        (["/a", "/b"], None, [], (False, False), OverlayMethod.LOWERDIR),
        ([MID, MID, MID], None, [], (True, False), OverlayMethod.LOWERDIR_PLUS),
        ([MID, MID, MID], None, [], (False, False), OverlayMethod.MOUNT),
        ([LONG], None, [], (True, False), OverlayMethod.MOUNT),  # a layer too long for a string
        ([LONG], None, [], (True, True), OverlayMethod.LOWERDIR_PLUS),  # ... but fine as an fd
        ([LONG], None, [], (False, True), OverlayMethod.MOUNT),
        ([3, 4], None, [], (False, False), OverlayMethod.LOWERDIR),  # fds as /proc/self/fd/N
        ([3, 4], None, [], (True, False), OverlayMethod.LOWERDIR_PLUS),
        (["/a"], LONG, [], (True, False), OverlayMethod.MOUNT),
        (["/a"], "/u", [], (True, False), OverlayMethod.LOWERDIR_PLUS),
        (["/a"], "/u", [f"x={LONG}"], (True, True), OverlayMethod.MOUNT),
        # escaping counts: 128 colons fit raw (lowerdir+) but not escaped (lowerdir)
        (["/" + ":" * 128], None, [], (False, False), OverlayMethod.MOUNT),
        (["/" + ":" * 128], None, [], (True, False), OverlayMethod.LOWERDIR_PLUS),
    ],
)
def test_choose_method(lower: list[str | int], upper: str | None, extra: list[str],
                       kernel: tuple[bool, bool], method: OverlayMethod) -> None:
    """kernel = (lowerdir+ supported, fd layers supported)"""
    work = None if upper is None else "/w"
    plus, fds = kernel
    assert choose_method(lower, upper, work, extra, lowerdir_plus=plus, fd_layers=fds) is method
