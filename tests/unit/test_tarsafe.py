"""tarsafe: the member policy (a pure function, table-tested) and the extraction loop over
crafted tar archives: what image trees need is kept, every escape is refused, nothing is ever
written outside the destination."""

from __future__ import annotations

import io
import os
import re
import stat
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from strata.build import tarsafe
from strata.build.tarsafe import (
    Action,
    Decision,
    Extractor,
    Member,
    MemberKind,
    check_member,
    climbs_out,
    extract_tar,
    show,
    split_name,
)
from strata.errors import ErrorKind, StrataError
from strata.images.base import FileKind

D, F, L = FileKind.DIRECTORY, FileKind.REGULAR, FileKind.SYMLINK


class MapState:
    """A DestState from a table: path -> kind, and the files this extraction wrote."""

    def __init__(self, kinds: dict[str, FileKind] | None = None,
                 files: Sequence[str] = ()) -> None:
        self.kinds = kinds or {}
        self.files = set(files)

    def kind(self, path: str) -> FileKind | None:
        return self.kinds.get(path)

    def is_extracted_file(self, path: str) -> bool:
        return path in self.files


@pytest.mark.parametrize(("name", "parts"), [
    ("usr/bin/jq", ["usr", "bin", "jq"]),
    ("./usr/bin/jq", ["usr", "bin", "jq"]),
    ("/usr/bin/jq", ["usr", "bin", "jq"]),
    ("//./usr//./bin/", ["usr", "bin"]),
    ("./", []),
    (".", []),
    ("", []),
    ("../x", None),
    ("a/../../x", None),
    ("a/../b", None),  # any "..", even one that stays inside (dpkg refuses it too)
    ("/..", None),
    ("..foo/x", ["..foo", "x"]),
])
def test_split_name(name: str, parts: list[str] | None) -> None:
    assert split_name(name) == parts


@pytest.mark.parametrize(("link", "target", "out"), [
    ("usr/lib/x", "../bin/y", False),
    ("usr/lib/x", "../../etc/y", False),  # exactly the root
    ("usr/lib/x", "../../../etc/y", True),
    ("x", "../y", True),
    ("x", "y/../../z", True),
    ("usr/x", "./a/./../b", False),
    ("a/b/c", "d/../../../..", True),
])
def test_climbs_out(link: str, target: str, out: bool) -> None:
    assert climbs_out(link, target) is out


def m(name: str, kind: MemberKind = MemberKind.FILE, linkname: str = "",
      mode: int = 0o644) -> Member:
    return Member(name=name, kind=kind, mode=mode, linkname=linkname)


K = MemberKind
CASES: list[tuple[Member, dict[str, FileKind], tuple[str, ...], Action, str, str]] = [
    # member, dest kinds, extracted files, action, path, reason contains
    (m("./usr/bin/jq"), {}, (), Action.WRITE, "usr/bin/jq", ""),
    (m("/abs/path"), {}, (), Action.WRITE, "abs/path", ""),  # dpkg strips the "/"
    (m("./", K.DIRECTORY), {}, (), Action.SKIP_ROOT, "", ""),
    (m("./"), {}, (), Action.REFUSE, "", "empty name"),
    (m("../x"), {}, (), Action.REFUSE, "", "'..'"),
    (m("a/../../x"), {}, (), Action.REFUSE, "", "'..'"),
    (m("a\0b"), {}, (), Action.REFUSE, "", "NUL"),
    (m("dev/null", K.CHAR_DEVICE), {}, (), Action.SPECIAL, "dev/null", "character device"),
    (m("dev/sda", K.BLOCK_DEVICE), {}, (), Action.SPECIAL, "dev/sda", "block device"),
    (m("run/fifo", K.FIFO), {}, (), Action.SPECIAL, "run/fifo", "fifo"),
    (m("run/sock", K.SOCKET), {}, (), Action.SPECIAL, "run/sock", "socket"),
    (m("../dev/null", K.CHAR_DEVICE), {}, (), Action.REFUSE, "", "'..'"),  # path first
    (m("x", K.UNKNOWN), {}, (), Action.REFUSE, "x", "unsupported"),
    # parents
    (m("link/file"), {"link": L}, (), Action.REFUSE, "link/file", "parent link is a symlink"),
    (m("a/link/file"), {"a": D, "a/link": L}, (), Action.REFUSE, "a/link/file", "symlink"),
    (m("f/file"), {"f": F}, (), Action.REFUSE, "f/file", "not a directory"),
    (m("new/sub/file"), {}, (), Action.WRITE, "new/sub/file", ""),  # parents made
    (m("a/new/file"), {"a": D}, (), Action.WRITE, "a/new/file", ""),
    # what is already there
    (m("d", K.DIRECTORY), {"d": D}, (), Action.WRITE, "d", ""),
    (m("d", K.DIRECTORY), {"d": L}, (), Action.REFUSE, "d", "symlink is already there"),
    (m("d", K.DIRECTORY), {"d": F}, (), Action.REFUSE, "d", "non-directory"),
    (m("d"), {"d": D}, (), Action.REFUSE, "d", "directory is already there"),
    (m("d", K.SYMLINK, "x"), {"d": D}, (), Action.REFUSE, "d", "directory is already there"),
    (m("f"), {"f": F}, (), Action.WRITE, "f", ""),  # replaced: the last package wins
    (m("f"), {"f": L}, (), Action.WRITE, "f", ""),  # the link is replaced, not followed
    # symlinks
    (m("usr/lib/abs", K.SYMLINK, "/etc/os-release"), {}, (), Action.WRITE, "usr/lib/abs", ""),
    (m("etc", K.SYMLINK, "/etc"), {}, (), Action.WRITE, "etc", ""),
    (m("usr/lib/rel", K.SYMLINK, "../bin/x"), {}, (), Action.WRITE, "usr/lib/rel", ""),
    (m("usr/x", K.SYMLINK, "../../outside"), {}, (), Action.REFUSE, "usr/x", "climbs out"),
    (m("x", K.SYMLINK, ""), {}, (), Action.REFUSE, "x", "empty"),
    (m("x", K.SYMLINK, "a" * 5000), {}, (), Action.REFUSE, "x", "too long"),
    # hardlinks
    (m("usr/bin/b", K.HARDLINK, "./usr/bin/a"), {}, ("usr/bin/a",), Action.WRITE,
     "usr/bin/b", ""),
    (m("usr/bin/b", K.HARDLINK, "/usr/bin/a"), {}, ("usr/bin/a",), Action.WRITE,
     "usr/bin/b", ""),
    (m("b", K.HARDLINK, "../outside/target"), {}, (), Action.REFUSE, "b", "outside the tree"),
    (m("b", K.HARDLINK, "missing"), {}, (), Action.REFUSE, "b", "not a file extracted"),
    (m("b", K.HARDLINK, "pre"), {"pre": F}, (), Action.REFUSE, "b", "not a file extracted"),
    (m("b", K.HARDLINK, "./b"), {}, ("b",), Action.REFUSE, "b", "invalid target"),
    (m("b", K.HARDLINK, ""), {}, (), Action.REFUSE, "b", "invalid target"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0].kind.name}:{c[0].name[:20]}")
def test_check_member(
        case: tuple[Member, dict[str, FileKind], tuple[str, ...], Action, str, str]) -> None:
    member, kinds, files, action, path, reason = case
    decision = check_member(member, MapState(kinds, files))
    assert decision.action is action, decision
    assert decision.path == path
    assert reason in decision.reason
    if action in (Action.WRITE, Action.SKIP_ROOT):
        assert decision == Decision(action, path)


@pytest.mark.parametrize(("name", "shown"), [
    ("usr/bin/jq", "'usr/bin/jq'"),
    ("a\nb", "'a\\nb'"),
    ("it's", "'it\\'s'"),
    (os.fsdecode(b"caf\xe9"), "'caf\\xe9'"),  # not UTF-8: escaped, still one printable line
])
def test_show(name: str, shown: str) -> None:
    assert show(name) == shown


# -- crafted archives -----------------------------------------------------------------------------

Entry = dict[str, Any]


def make_tar(entries: Sequence[Entry], fmt: int = tarfile.GNU_FORMAT) -> bytes:
    """A tar archive from {name, type ("f" file, "d", "l" symlink, "h" hardlink, "c", "b",
    "p" fifo, or a raw tar type byte), data, link, mode, mtime} entries; names are not sanitised."""
    types = {"f": tarfile.REGTYPE, "d": tarfile.DIRTYPE, "l": tarfile.SYMTYPE,
             "h": tarfile.LNKTYPE, "c": tarfile.CHRTYPE, "b": tarfile.BLKTYPE,
             "p": tarfile.FIFOTYPE}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for e in entries:
            info = tarfile.TarInfo(e["name"])
            t = e.get("type", "f")
            info.type = types[t] if isinstance(t, str) else t
            info.mode = e.get("mode", 0o755 if t == "d" else 0o644)
            info.mtime = e.get("mtime", 1_700_000_000)
            info.linkname = e.get("link", "")
            data: bytes = e.get("data", b"")
            info.size = len(data) if info.type == tarfile.REGTYPE else 0
            info.uname = info.gname = "root"
            tf.addfile(info, io.BytesIO(data) if info.size else None)
    return buf.getvalue()


def snapshot(top: Path, skip: Path) -> set[str]:
    """Every path below `top` except those in `skip` (the destination)."""
    out = set()
    for dirpath, dirnames, filenames in os.walk(top):
        for n in dirnames + filenames:
            p = Path(dirpath, n)
            if p != skip and skip not in p.parents:
                out.add(str(p.relative_to(top)))
    return out


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """tmp/work/{dest, outside/target}: what extraction may touch, and what it must not."""
    w = tmp_path / "work"
    (w / "dest").mkdir(parents=True)
    (w / "outside").mkdir()
    (w / "outside" / "target").write_text("outside")
    return w


def run_tar(work: Path, entries: Sequence[Entry], **kw: Any) -> int:
    data = make_tar(entries)
    return extract_tar(io.BytesIO(data), str(work / "dest"), package="pkg.deb",
                       label="data.tar", **kw)


def outside_link(work: Path) -> str:
    return str(work / "outside")


# escapes: every one refused naming the package and the member; nothing outside dest
CORPUS: list[tuple[str, list[Entry], str]] = [
    ("dotdot", [{"name": "../x", "data": b"evil"}], "'..'"),
    ("dotdot-dir", [{"name": "../newdir", "type": "d"}], "'..'"),
    ("dotdot-middle", [{"name": "a/../../x", "data": b"evil"}], "'..'"),
    ("symlink-abs-then-write",
     [{"name": "link", "type": "l", "link": "@outside"}, {"name": "link/file", "data": b"e"}],
     "parent link is a symlink"),
    ("symlink-rel-escape", [{"name": "link", "type": "l", "link": "../../outside"}],
     "climbs out"),
    ("symlink-rel-escape-then-write",
     [{"name": "usr/link", "type": "l", "link": "../../outside"},
      {"name": "usr/link/target", "data": b"e"}], "climbs out"),
    ("symlink-inside-then-dir-through",
     [{"name": "d", "type": "d"}, {"name": "link", "type": "l", "link": "d"},
      {"name": "link/sub", "type": "d"}], "parent link is a symlink"),
    ("symlink-then-dir-over-it",
     [{"name": "link", "type": "l", "link": "@outside"}, {"name": "link", "type": "d"}],
     "symlink is already there"),
    ("hardlink-outside", [{"name": "h", "type": "h", "link": "../outside/target"}],
     "outside the tree"),
    ("hardlink-absolute-outside", [{"name": "h", "type": "h", "link": "@outside/target"}],
     "not a file extracted"),
    ("hardlink-missing", [{"name": "h", "type": "h", "link": "not/there"}],
     "not a file extracted"),
    ("hardlink-to-dir", [{"name": "d", "type": "d"}, {"name": "h", "type": "h", "link": "d"}],
     "not a file extracted"),
    ("hardlink-to-symlink",
     [{"name": "s", "type": "l", "link": "/etc/passwd"}, {"name": "h", "type": "h", "link": "s"}],
     "not a file extracted"),
    ("char-device", [{"name": "dev/null", "type": "c"}], "character devices are not allowed"),
    ("block-device", [{"name": "dev/sda", "type": "b"}], "block devices are not allowed"),
    ("fifo", [{"name": "run/fifo", "type": "p"}], "fifos are not allowed"),
    ("unknown-type", [{"name": "vol", "type": b"V"}], "unsupported member type"),
    ("file-over-dir", [{"name": "d", "type": "d"}, {"name": "d", "data": b"x"}],
     "directory is already there"),
]


def resolve(entries: list[Entry], work: Path) -> list[Entry]:
    return [{k: v.replace("@outside", outside_link(work)) if isinstance(v, str) else v
             for k, v in e.items()} for e in entries]


@pytest.mark.parametrize(("entries", "reason"), [c[1:] for c in CORPUS],
                         ids=[c[0] for c in CORPUS])
def test_corpus_refused(work: Path, entries: list[Entry], reason: str) -> None:
    before = snapshot(work, work / "dest")
    entries = resolve(entries, work)
    with pytest.raises(StrataError) as e:
        run_tar(work, entries)
    msg = str(e.value)
    assert e.value.kind is ErrorKind.INVALID
    assert "\n" not in msg
    assert msg.startswith("pkg.deb: member ")
    assert reason in msg
    assert snapshot(work, work / "dest") == before
    assert (work / "outside" / "target").read_text() == "outside"
    assert os.stat(work / "outside" / "target").st_nlink == 1
    assert list((work / "outside").iterdir()) == [work / "outside" / "target"]


def test_absolute_names_land_inside(work: Path) -> None:
    before = snapshot(work, work / "dest")
    run_tar(work, [{"name": "/abs/path", "data": b"in"}, {"name": "//./x", "data": b"x"}])
    assert (work / "dest" / "abs" / "path").read_bytes() == b"in"
    assert (work / "dest" / "x").read_bytes() == b"x"
    assert snapshot(work, work / "dest") == before


def test_special_members_dropped_through_callback(work: Path) -> None:
    seen: list[tuple[str, str]] = []
    n = run_tar(work, [{"name": "./dev", "type": "d"}, {"name": "./dev/null", "type": "c"},
                       {"name": "./dev/sda", "type": "b"}, {"name": "./run/fifo", "type": "p"},
                       {"name": "./usr/bin/x", "data": b"x"}],
                on_special=lambda path, kind: seen.append((path, kind)))
    assert seen == [("/dev/null", "character device"), ("/dev/sda", "block device"),
                    ("/run/fifo", "fifo")]
    assert n == 2
    assert sorted(os.listdir(work / "dest" / "dev")) == []
    assert not (work / "dest" / "run").exists()
    assert (work / "dest" / "usr" / "bin" / "x").read_bytes() == b"x"


def test_kept_what_images_need(work: Path) -> None:
    dest = work / "dest"
    run_tar(work, [
        {"name": "./", "type": "d", "mode": 0o700},
        {"name": "./usr/bin/su", "data": b"su", "mode": 0o4755, "mtime": 1_000_000_000},
        {"name": "./usr/bin/wall", "data": b"w", "mode": 0o2755},
        {"name": "./usr/bin/su2", "type": "h", "link": "./usr/bin/su"},
        {"name": "./usr/lib/os-release", "type": "l", "link": "/etc/os-release",
         "mtime": 1_100_000_000},
        {"name": "./usr/lib/rel", "type": "l", "link": "../bin/su"},
        {"name": "./var/tmp", "type": "d", "mode": 0o1777, "mtime": 1_200_000_000},
        {"name": "./ro", "type": "d", "mode": 0o555},
        {"name": "./ro/file", "data": b"r"},  # a read-only directory still gets its children
        {"name": "./usr/share/doc/with space", "data": b"s"},
    ])
    assert stat.S_IMODE(os.stat(dest).st_mode) != 0o700  # dest is the caller's
    su = os.lstat(dest / "usr/bin/su")
    assert stat.S_IMODE(su.st_mode) == 0o4755
    assert su.st_mtime == 1_000_000_000
    assert stat.S_IMODE(os.lstat(dest / "usr/bin/wall").st_mode) == 0o2755
    assert os.lstat(dest / "usr/bin/su2").st_ino == su.st_ino
    assert su.st_nlink == 2
    assert os.readlink(dest / "usr/lib/os-release") == "/etc/os-release"
    assert os.lstat(dest / "usr/lib/os-release").st_mtime == 1_100_000_000
    assert os.readlink(dest / "usr/lib/rel") == "../bin/su"
    tmp = os.lstat(dest / "var/tmp")
    assert stat.S_IMODE(tmp.st_mode) == 0o1777
    assert tmp.st_mtime == 1_200_000_000
    assert stat.S_IMODE(os.lstat(dest / "ro").st_mode) == 0o555
    assert (dest / "ro" / "file").read_bytes() == b"r"
    assert stat.S_IMODE(os.lstat(dest / "usr").st_mode) == 0o755  # made for its children
    assert (dest / "usr/share/doc/with space").read_bytes() == b"s"


def test_replaces_files_and_links_without_following(work: Path) -> None:
    dest = work / "dest"
    os.symlink(work / "outside" / "target", dest / "f")  # e.g. left by an earlier package
    (dest / "g").write_text("old")
    run_tar(work, [{"name": "f", "data": b"new"}, {"name": "g", "type": "l", "link": "f"}])
    assert (work / "outside" / "target").read_text() == "outside"
    assert not os.path.islink(dest / "f")
    assert (dest / "f").read_bytes() == b"new"
    assert os.readlink(dest / "g") == "f"


def test_existing_symlink_parent_in_dest_refused(work: Path) -> None:
    os.symlink(work / "outside", work / "dest" / "usr")  # from a previous package
    with pytest.raises(StrataError, match="parent usr is a symlink"):
        run_tar(work, [{"name": "./usr/evil", "data": b"e"}])
    assert sorted(os.listdir(work / "outside")) == ["target"]


def test_hardlink_target_replaced_is_no_longer_linkable(work: Path) -> None:
    with pytest.raises(StrataError, match="not a file extracted"):
        run_tar(work, [{"name": "a", "data": b"a"}, {"name": "a", "type": "l", "link": "x"},
                       {"name": "b", "type": "h", "link": "a"}])


def test_nofollow_writes_even_if_the_policy_were_fooled(
        work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Defence in depth: with a permissive policy, the *at() writes still refuse symlinks."""
    def yes(member: Member, state: Any) -> Decision:
        return Decision(Action.WRITE, "/".join(split_name(member.name) or []))

    monkeypatch.setattr(tarsafe, "check_member", yes)
    os.symlink(work / "outside", work / "dest" / "link")
    before = snapshot(work, work / "dest")
    for name in ("link/file", "link/sub/file"):
        with pytest.raises(StrataError, match="not a real directory"):
            run_tar(work, [{"name": name, "data": b"e"}])
    assert snapshot(work, work / "dest") == before


# -- truncation and corruption ----------------------------------------------------------------


def test_member_longer_than_the_archive(work: Path) -> None:
    data = make_tar([{"name": "./ok", "data": b"ok"}, {"name": "./big", "data": b"x" * 2000}])
    cut = data[: 1024 + 512 + 700]  # header of ./big, then 700 of its 2000 bytes
    with pytest.raises(StrataError) as e:
        extract_tar(io.BytesIO(cut), str(work / "dest"), package="p.deb", label="data.tar")
    msg = str(e.value)
    assert msg.startswith("p.deb: data.tar: truncated in member './big'")


@pytest.mark.parametrize(("cut", "what"), [
    (1024 + 100, "truncated after member './a'"),  # inside the second header
    (1024, "truncated after member './a'"),  # no end-of-archive blocks
])
def test_truncated_between_members(work: Path, cut: int, what: str) -> None:
    data = make_tar([{"name": "./a", "data": b"a"}, {"name": "./b", "data": b"b"}])
    with pytest.raises(StrataError) as e:
        extract_tar(io.BytesIO(data[:cut]), str(work / "dest"), package="p.deb",
                    label="data.tar")
    assert what in str(e.value)


def test_garbled_header_is_not_a_clean_end(work: Path) -> None:
    data = bytearray(make_tar([{"name": "./a", "data": b"a"}, {"name": "./b", "data": b"b"}]))
    data[1024:1034] = b"garbage!!!"  # ./b's header: bad checksum
    with pytest.raises(StrataError, match=re.escape("corrupt after member './a'")):
        extract_tar(io.BytesIO(bytes(data)), str(work / "dest"), package="p.deb",
                    label="data.tar")


@pytest.mark.parametrize("where", ["zeroed header", "trailing data"])
def test_nothing_but_zeros_after_the_end(work: Path, where: str) -> None:
    """tarfile stops at the first zero block: members after a zeroed header, or data after the
    end, would be silently ignored."""
    data = bytearray(make_tar([{"name": "./a", "data": b"a"}, {"name": "./b", "data": b"b"}]))
    last = "./a"
    if where == "zeroed header":
        data[1024:1536] = bytes(512)
    else:
        data += b"garbage" + bytes(505)
        last = "./b"
    with pytest.raises(StrataError,
                       match=re.escape(f"corrupt after member '{last}': data after the end")):
        extract_tar(io.BytesIO(bytes(data)), str(work / "dest"), package="p", label="data.tar")


def test_pax_and_long_names(work: Path) -> None:
    long = "./usr/share/" + "d" * 120 + "/" + "f" * 150
    data = make_tar([{"name": long, "data": b"x", "mode": 0o4711},
                     {"name": "./usr/lib/l", "type": "l", "link": "/" + "t" * 200}],
                    fmt=tarfile.PAX_FORMAT)
    extract_tar(io.BytesIO(data), str(work / "dest"), package="p", label="data.tar")
    path = work / "dest" / long[2:]
    assert path.read_bytes() == b"x"
    assert stat.S_IMODE(path.stat().st_mode) == 0o4711
    assert os.readlink(work / "dest/usr/lib/l") == "/" + "t" * 200


def test_dest_must_exist(tmp_path: Path) -> None:
    with pytest.raises(StrataError) as e:
        Extractor(str(tmp_path / "nope"), package="p")
    assert e.value.kind is ErrorKind.NOT_FOUND
