"""cpio.py: the newc/crc reader, on hand-made archives (every header field, hardlink groups,
truncation, corruption) and on real rpm payloads (rpmbuild, then rpm2cpio), checked against
`rpm -qp --dump`."""

from __future__ import annotations

import io
import shutil
import stat
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from strata.build.cpio import CpioEntry, CpioError, entries, members, parse_header
from strata.build.tarsafe import Member, MemberKind


def newc_entry(name: str, mode: int, data: bytes = b"", *, ino: int = 1, nlink: int = 1,
               uid: int = 0, gid: int = 0, mtime: int = 1_700_000_000,
               dev: tuple[int, int] = (8, 1), rdev: tuple[int, int] = (0, 0),
               crc: bool = False, check: int | None = None) -> bytes:
    """One newc (or crc) entry: header, name, padding, data, padding."""
    raw = name.encode("utf-8", "surrogateescape") + b"\0"
    if check is None:
        check = sum(data) & 0xFFFFFFFF if crc else 0
    fields = (ino, mode, uid, gid, nlink, mtime, len(data), *dev, *rdev, len(raw), check)
    out = (b"070702" if crc else b"070701") + b"".join(b"%08X" % v for v in fields) + raw
    out += b"\0" * (-len(out) % 4) + data
    return out + b"\0" * (-len(out) % 4)


def newc(items: Sequence[tuple[Any, ...] | bytes], *, trailer: bool = True,
         crc: bool = False) -> bytes:
    """An archive from (name, mode, data, {options}) tuples (or raw entry bytes)."""
    out = b""
    for i, item in enumerate(items):
        if isinstance(item, bytes):
            out += item
            continue
        name, mode, *rest = item
        data = rest[0] if rest else b""
        opts = rest[1] if len(rest) > 1 else {}
        out += newc_entry(name, mode, data, **{"ino": 100 + i, "crc": crc, **opts})
    if trailer:
        out += newc_entry("TRAILER!!!", 0, ino=0, crc=crc)
    return out


REG, DIR, LNK = stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK


def read_all(data: bytes) -> list[tuple[CpioEntry, bytes]]:
    return [(e, d.read()) for e, d in entries(io.BytesIO(data))]


def test_header_fields_and_data() -> None:
    data = newc([
        ("./usr/bin/su", REG | 0o4755, b"binary", {"uid": 0, "gid": 5, "mtime": 123}),
        ("./usr", DIR | 0o755),
        ("./var/tmp", DIR | 0o1777),
        ("./usr/lib/os-release", LNK | 0o777, b"/etc/os-release"),
        ("./dev/null", stat.S_IFCHR | 0o666, b"", {"rdev": (1, 3)}),
        ("./with space/caf\udce9", REG | 0o644, b"x" * 5, {"uid": 1000, "gid": 1000}),
    ])
    got = read_all(data)
    assert [e.name for e, _ in got] == ["./usr/bin/su", "./usr", "./var/tmp",
                                        "./usr/lib/os-release", "./dev/null",
                                        "./with space/caf\udce9"]
    su, su_data = got[0]
    assert su.mode == REG | 0o4755
    assert (su.uid, su.gid, su.mtime, su.size, su_data) == (0, 5, 123, 6, b"binary")
    assert stat.S_IMODE(got[2][0].mode) == 0o1777
    assert got[3][1] == b"/etc/os-release"
    assert got[4][0].rdev == (1, 3)
    assert got[5][0].uid == 1000
    assert got[5][1] == b"xxxxx"


def test_unread_data_is_skipped() -> None:
    data = newc([("a", REG | 0o644, b"a" * 1001), ("b", REG | 0o644, b"bb")])
    names = [e.name for e, _ in entries(io.BytesIO(data))]  # never reading any data
    assert names == ["a", "b"]


def test_crc_checksum() -> None:
    good = newc([("a", REG | 0o644, b"hello")], crc=True)
    assert read_all(good)[0][1] == b"hello"
    bad = newc([newc_entry("a", REG | 0o644, b"hello", crc=True, check=1)], crc=True)
    with pytest.raises(CpioError, match="checksum mismatch"):
        read_all(bad)


def test_members_kinds_and_modes() -> None:
    data = newc([
        ("./usr/bin/su", REG | 0o4755, b"su", {"mtime": 42}),
        ("./d", DIR | 0o2755),
        ("./l", LNK | 0o777, b"../x"),
        ("./c", stat.S_IFCHR | 0o600), ("./b", stat.S_IFBLK | 0o600),
        ("./p", stat.S_IFIFO | 0o600), ("./s", stat.S_IFSOCK | 0o600),
        ("./w", 0o160000 | 0o644),  # a whiteout/unknown type
    ])
    got = [(mem, d.read() if d is not None else None) for mem, d in members(io.BytesIO(data))]
    assert got == [
        (Member("./usr/bin/su", MemberKind.FILE, 0o4755, 2, 42), b"su"),
        (Member("./d", MemberKind.DIRECTORY, 0o2755, 0, 1_700_000_000), None),
        (Member("./l", MemberKind.SYMLINK, 0o777, 0, 1_700_000_000, "../x"), None),
        (Member("./c", MemberKind.CHAR_DEVICE, 0o600, 0, 1_700_000_000), None),
        (Member("./b", MemberKind.BLOCK_DEVICE, 0o600, 0, 1_700_000_000), None),
        (Member("./p", MemberKind.FIFO, 0o600, 0, 1_700_000_000), None),
        (Member("./s", MemberKind.SOCKET, 0o600, 0, 1_700_000_000), None),
        (Member("./w", MemberKind.UNKNOWN, 0o644, 0, 1_700_000_000), None),
    ]


def link(ino: int, nlink: int, dev: tuple[int, int] = (8, 1)) -> dict[str, Any]:
    return {"ino": ino, "nlink": nlink, "dev": dev}


def test_hardlink_groups() -> None:
    data = newc([
        ("./a1", REG | 0o4755, b"", link(7, 3)),  # data comes with the group's last name
        ("./other", REG | 0o644, b"o"),
        ("./a2", REG | 0o4755, b"", link(7, 3)),
        ("./a3", REG | 0o4755, b"AAA", link(7, 3)),
        ("./z1", REG | 0o644, b"", link(9, 2)),  # all empty: an empty file and a link
        ("./z2", REG | 0o644, b"", link(9, 2)),
        ("./x", REG | 0o644, b"X", link(7, 2, dev=(8, 2))),  # same ino, other device: no link
    ])
    got = [(mem.name, mem.kind, mem.linkname, d.read() if d is not None else None)
           for mem, d in members(io.BytesIO(data))]
    f, h = MemberKind.FILE, MemberKind.HARDLINK
    assert got == [
        ("./other", f, "", b"o"),
        ("./a3", f, "", b"AAA"),
        ("./a1", h, "./a3", None),
        ("./a2", h, "./a3", None),
        ("./x", f, "", b"X"),
        ("./z1", f, "", None),
        ("./z2", h, "./z1", None),
    ]


@pytest.mark.parametrize(("cut", "what"), [
    (50, "inside a header"),
    (112, "inside a name"),
    (110 + 8 + 3, "inside the data of './file'"),
])
def test_truncated(cut: int, what: str) -> None:
    data = newc([("./file", REG | 0o644, b"0123456789")])
    with pytest.raises(CpioError) as e:
        read_all(data[:cut])
    assert e.value.truncated
    assert what in str(e.value)


def test_missing_trailer_is_truncated() -> None:
    with pytest.raises(CpioError) as e:
        read_all(newc([("./file", REG | 0o644, b"x")], trailer=False))
    assert e.value.truncated


@pytest.mark.parametrize(("raw", "what"), [
    (b"070707" + b"0" * 104, "unsupported cpio format (magic 070707"),  # old portable ASCII
    (b"\xc7\x71" + b"0" * 108, "not a newc cpio header"),  # old binary
    (b"070701" + b"zzzzzzzz" + b"0" * 96, "invalid ino field"),
])
def test_bad_headers(raw: bytes, what: str) -> None:
    with pytest.raises(CpioError, match=what.replace("(", r"\(")) as e:
        parse_header(raw)
    assert not e.value.truncated


def header(namesize: int) -> bytes:
    fields = (1, REG | 0o644, 0, 0, 1, 0, 0, 0, 0, 0, 0, namesize, 0)
    return b"070701" + b"".join(b"%08X" % v for v in fields)


@pytest.mark.parametrize(("entry", "what"), [
    (header(1) + b"\0\0", "invalid name size 1"),
    (header(5000) + b"x" * 5000, "invalid name size 5000"),
    (header(3) + b"abc" + b"\0", "not NUL-terminated"),
    (header(5) + b"a\0bc\0" + b"\0" * 3, "not NUL-terminated"),
])
def test_bad_names(entry: bytes, what: str) -> None:
    with pytest.raises(CpioError, match=what) as e:
        read_all(entry + newc([]))
    assert not e.value.truncated


def test_long_symlink_target_refused() -> None:
    data = newc([("./l", LNK | 0o777, b"a" * 5000)])
    with pytest.raises(CpioError, match="5000-byte target"):
        list(members(io.BytesIO(data)))


# -- real rpm payloads ------------------------------------------------------------------------

SPEC = """\
Name: cpiotest
Version: 1
Release: 1
Summary: cpio reader test
License: MIT
BuildArch: noarch

%description
test

%install
mkdir -p %{buildroot}/usr/bin %{buildroot}/usr/lib/cpiotest/empty
printf 'tool' > %{buildroot}/usr/bin/tool
ln %{buildroot}/usr/bin/tool %{buildroot}/usr/bin/tool-link
ln -s /etc/cpiotest.conf %{buildroot}/usr/lib/cpiotest/conf
printf 'data' > '%{buildroot}/usr/lib/cpiotest/with space'

%files
%attr(4755,root,root) /usr/bin/tool
%attr(4755,root,root) /usr/bin/tool-link
%attr(2750,root,root) %dir /usr/lib/cpiotest
%attr(1777,root,root) %dir /usr/lib/cpiotest/empty
/usr/lib/cpiotest/conf
"/usr/lib/cpiotest/with space"
"""

needs_rpm = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("rpmbuild", "rpm", "rpm2cpio")),
    reason="rpmbuild, rpm and rpm2cpio are needed (Debian: rpm, rpm2cpio)")


def build_rpm(tmp_path: Path, spec: str, name: str, payload: str = "w2.xzdio") -> Path:
    top = tmp_path / f"rpmbuild-{name}"
    (top / "SPECS").mkdir(parents=True)
    (top / "SPECS" / f"{name}.spec").write_text(spec)
    subprocess.run(["rpmbuild", "-bb", "--define", f"_topdir {top}",
                    "--define", f"_binary_payload {payload}",
                    "--define", "_build_id_links none", str(top / "SPECS" / f"{name}.spec")],
                   check=True, capture_output=True)
    (rpm,) = (top / "RPMS").rglob("*.rpm")
    return rpm


@needs_rpm
@pytest.mark.parametrize("payload", ["w2.xzdio", "w3.zstdio", "w9.gzdio"])
def test_rpm2cpio_payload_matches_rpm_dump(tmp_path: Path, payload: str) -> None:
    rpm = build_rpm(tmp_path, SPEC, "cpiotest", payload)
    dump = subprocess.run(["rpm", "-qp", "--dump", str(rpm)], check=True, capture_output=True,
                          text=True).stdout
    expected: dict[str, tuple[int, int, str]] = {}
    for line in dump.splitlines():
        # path size mtime digest mode owner group isconfig isdoc rdev symlink; the path may
        # contain spaces: parse from the right
        *path_words, size, mtime, _digest, mode, _o, _g, _c, _d, _r, target = line.split(" ")
        expected["." + " ".join(path_words)] = (int(mode, 8), int(mtime),
                                                "" if target == "X" else target)
        del size
    payload_bytes = subprocess.run(["rpm2cpio", str(rpm)], check=True,
                                   capture_output=True).stdout
    got: dict[str, tuple[int, int, str]] = {}
    datas: dict[str, bytes] = {}
    inodes: dict[str, tuple[tuple[int, int], int]] = {}
    for e, d in entries(io.BytesIO(payload_bytes)):
        body = d.read()
        got[e.name] = (e.mode, e.mtime, body.decode() if stat.S_ISLNK(e.mode) else "")
        datas[e.name] = body
        inodes[e.name] = (e.dev, e.ino)
        assert (e.uid, e.gid) == (0, 0)
    assert got == expected
    assert got["./usr/bin/tool"][0] == REG | 0o4755
    assert got["./usr/lib/cpiotest"][0] == DIR | 0o2750
    assert got["./usr/lib/cpiotest/empty"][0] == DIR | 0o1777
    assert inodes["./usr/bin/tool"] == inodes["./usr/bin/tool-link"]
    assert datas["./usr/bin/tool"] + datas["./usr/bin/tool-link"] == b"tool"  # stored once
    assert datas["./usr/lib/cpiotest/with space"] == b"data"
    # and as members: the name holding the data is the file, the other links to it
    holder, other = sorted(("./usr/bin/tool", "./usr/bin/tool-link"), key=lambda n: -len(datas[n]))
    in_bin = [(mem.name, mem.kind, mem.linkname) for mem, _ in members(io.BytesIO(payload_bytes))
              if mem.name.startswith("./usr/bin/")]
    assert in_bin == [(holder, MemberKind.FILE, ""), (other, MemberKind.HARDLINK, holder)]
