""".deb and .rpm extraction: real packages built in the test (dpkg-deb --build, rpmbuild -bb)
extracted exactly as dpkg-deb -x and rpm2archive | tar -x do; crafted packages (the
path-traversal corpus, truncated and corrupt archives) refused with one line naming the package
and the member, with nothing written outside the destination."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import os
import shutil
import stat
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from strata.build import packages
from strata.build.packages import (
    PackageInfo,
    depends_names,
    extract_package,
    package_info,
    package_kind,
    parse_control,
)
from strata.errors import ErrorKind, StrataError
from tests.unit.test_cpio import LNK, REG, build_rpm, link, needs_rpm, newc
from tests.unit.test_tarsafe import CORPUS, Entry, make_tar, resolve, snapshot

# -- helpers --------------------------------------------------------------------------------------


def ar(members: Sequence[tuple[str, bytes]]) -> bytes:
    """A plain `ar` archive (dpkg's flavour: no "/" after names)."""
    out = b"!<arch>\n"
    for name, data in members:
        header = f"{name:<16}{0:<12}{0:<6}{0:<6}{0o100644:<8o}{len(data):<10}`\n".encode()
        assert len(header) == 60
        out += header + data + (b"\n" if len(data) % 2 else b"")
    return out


CONTROL = ("Package: crafted\nVersion: 1:2.0-1\nArchitecture: amd64\nMaintainer: t <t@t>\n"
           "Description: crafted\n")


def control_tar(text: str = CONTROL) -> bytes:
    return make_tar([{"name": "./", "type": "d"},
                     {"name": "./control", "data": text.encode()}])


def zstd(data: bytes) -> bytes:
    import zstandard

    # with the content checksum, as dpkg-deb and the zstd tool write it
    return bytes(zstandard.ZstdCompressor(write_checksum=True).compress(data))


COMPRESS: dict[str, Callable[[bytes], bytes]] = {
    "": lambda b: b, ".gz": gzip.compress, ".xz": lzma.compress, ".bz2": bz2.compress,
    ".lzma": lambda b: lzma.compress(b, format=lzma.FORMAT_ALONE), ".zst": zstd}


def make_deb(path: Path, data_tar: bytes, suffix: str = ".gz", *, raw_data: bool = False,
             control: bytes | None = None) -> Path:
    """A hand-made .deb around `data_tar` (compressed with `suffix` unless `raw_data`)."""
    compress = COMPRESS[suffix]
    body = data_tar if raw_data else compress(data_tar)
    path.write_bytes(ar([("debian-binary", b"2.0\n"),
                         ("control.tar.gz", gzip.compress(control or control_tar())),
                         (f"data.tar{suffix}", body)]))
    return path


def tree(root: Path, *, mtime_of: Sequence[str] | None = None,
         no_mtime: Sequence[str] = ()) -> dict[str, tuple[Any, ...]]:
    """Everything below `root` (not root itself): kind, permission bits, content hash or link
    target, mtime (for all entries or those in `mtime_of`, not those in `no_mtime`), and the
    hardlink group (the smallest name sharing the inode)."""
    entries: dict[str, os.stat_result] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = Path(dirpath, n)
            entries[str(p.relative_to(root))] = os.lstat(p)
    by_inode: dict[int, str] = {}
    for rel in sorted(entries):
        by_inode.setdefault(entries[rel].st_ino, rel)
    out: dict[str, tuple[Any, ...]] = {}
    for rel, st in entries.items():
        if stat.S_ISREG(st.st_mode):
            body: Any = hashlib.sha256((root / rel).read_bytes()).hexdigest()
        elif stat.S_ISLNK(st.st_mode):
            body = os.readlink(root / rel)
        else:
            body = None
        keep = (mtime_of is None or rel in mtime_of) and rel not in no_mtime
        mtime = st.st_mtime_ns if keep else None
        out[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), body, mtime,
                    by_inode[st.st_ino] if stat.S_ISREG(st.st_mode) else None)
    return out


def staging(tmp_path: Path) -> Path:
    """A package tree with what images need: setuid/setgid, hardlinks, absolute and relative
    symlinks, empty and sticky directories, a name with spaces, a multi-chunk file."""
    s = tmp_path / "staging"
    for d in ("DEBIAN", "usr/bin", "usr/lib/pkg", "usr/share/pkg/empty", "usr/share/pkg/sticky",
              "usr/share/doc/pkg"):
        (s / d).mkdir(parents=True)
    (s / "DEBIAN" / "control").write_text(
        "Package: strata-pkg\nVersion: 1:1.2-3\nArchitecture: all\nMaintainer: t <t@t>\n"
        "Pre-Depends: dpkg (>= 1.19)\nDepends: libc6 (>= 2.36), libjq1 (= 1.6-2.1) | jq:any,\n"
        " libonig5 (>= 6)\nDescription: test\n")
    prog = s / "usr/bin/prog"
    prog.write_bytes(b"#!/bin/sh\necho prog\n")
    prog.chmod(0o4755)
    os.link(prog, s / "usr/bin/prog-hard")
    (s / "usr/bin/sg").write_bytes(b"sg")
    (s / "usr/bin/sg").chmod(0o2755)
    os.symlink("/etc/pkg.conf", s / "usr/lib/pkg/abs")
    os.symlink("../../bin/prog", s / "usr/lib/pkg/rel")
    os.utime(s / "usr/lib/pkg/rel", ns=(10**18, 10**18), follow_symlinks=False)
    (s / "usr/share/pkg/empty").chmod(0o700)
    (s / "usr/share/pkg/sticky").chmod(0o1777)
    (s / "usr/share/doc/pkg/file with spaces").write_text("spaces")
    (s / "usr/share/pkg/big").write_bytes(os.urandom(3 << 20))
    os.utime(s / "usr/share/pkg/big", ns=(10**18, 10**18))
    return s


#: GNU tar (so `dpkg-deb -x`) creates absolute and ".." symlinks last, after restoring the
#: directories' times, so their directory gets the time of extraction; we set the archive's
DELAYED_LINKS_DIR = "usr/lib/pkg"


def dpkg_build(tmp_path: Path, compression: str) -> Path:
    deb = tmp_path / f"pkg-{compression}.deb"
    subprocess.run(["dpkg-deb", f"-Z{compression}", "--root-owner-group", "--build",
                    str(staging(tmp_path)), str(deb)], check=True, capture_output=True)
    return deb


needs_dpkg = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb is needed")


@pytest.fixture
def work(tmp_path: Path) -> Path:
    w = tmp_path / "work"
    (w / "dest").mkdir(parents=True)
    (w / "outside").mkdir()
    (w / "outside" / "target").write_text("outside")
    return w


def refused(package: Path, work: Path, *reason: str, **kw: Any) -> str:
    """Extract `package` into work/dest expecting a one-line INVALID error containing
    `reason`s; nothing outside dest may change. Returns the message."""
    before = snapshot(work, work / "dest")
    with pytest.raises(StrataError) as e:
        extract_package(str(package), str(work / "dest"), **kw)
    msg = str(e.value)
    assert e.value.kind is ErrorKind.INVALID, msg
    assert "\n" not in msg
    assert msg.startswith(f"{package}: "), msg
    for r in reason:
        assert r in msg, msg
    assert snapshot(work, work / "dest") == before
    assert (work / "outside" / "target").read_text() == "outside"
    assert os.stat(work / "outside" / "target").st_nlink == 1
    return msg


# -- .deb: real packages --------------------------------------------------------------------------


@needs_dpkg
@pytest.mark.parametrize("compression", ["xz", "gzip", "zstd", "none"])
def test_deb_matches_dpkg_deb_x(tmp_path: Path, compression: str) -> None:
    deb = dpkg_build(tmp_path, compression)
    theirs, ours = tmp_path / "theirs", tmp_path / "ours"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(theirs)], check=True)
    ours.mkdir()
    info = extract_package(str(deb), str(ours))
    # symlink mtimes included: both set them
    assert tree(ours, no_mtime=[DELAYED_LINKS_DIR]) == tree(theirs, no_mtime=[DELAYED_LINKS_DIR])
    staged = os.stat(tmp_path / "staging" / DELAYED_LINKS_DIR).st_mtime_ns
    assert os.stat(ours / DELAYED_LINKS_DIR).st_mtime_ns == staged // 10**9 * 10**9
    expected = tree(theirs)
    assert expected["usr/bin/prog"][1] == 0o4755
    assert expected["usr/bin/prog-hard"][4] == "usr/bin/prog"
    assert expected["usr/lib/pkg/abs"][2] == "/etc/pkg.conf"
    assert expected["usr/lib/pkg/rel"][3] == 10**18
    assert expected["usr/share/pkg/sticky"][1] == 0o1777
    assert info == PackageInfo(name="strata-pkg", version="1:1.2-3", arch="all", kind="deb",
                               depends=("dpkg", "libc6", "libjq1 | jq", "libonig5"))
    assert package_info(str(deb)) == info


@needs_dpkg
@pytest.mark.parametrize("suffix", [".bz2", ".lzma", ".zst", ""])
def test_deb_other_compressions(tmp_path: Path, suffix: str) -> None:
    """dpkg-deb no longer writes bzip2/lzma, but reads them: re-wrap its data.tar."""
    import arpy

    deb = dpkg_build(tmp_path, "none")
    with arpy.Archive(str(deb)) as a:
        members = {h.name.decode(): a.open(h).read() for h in a.infolist()}
    rewrapped = tmp_path / "rewrapped.pkg"  # no suffix: told by magic
    rewrapped.write_bytes(ar([("debian-binary", members["debian-binary"]),
                              ("control.tar", members["control.tar"]),
                              ("_ignored", b"dpkg skips members named _*"),
                              (f"data.tar{suffix}", COMPRESS[suffix](
                                  members["data.tar"]))]))
    theirs, ours = tmp_path / "theirs", tmp_path / "ours"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(theirs)], check=True)
    ours.mkdir()
    extract_package(str(rewrapped), str(ours))
    assert tree(ours, no_mtime=[DELAYED_LINKS_DIR]) == tree(theirs, no_mtime=[DELAYED_LINKS_DIR])


@needs_dpkg
def test_two_packages_into_one_tree(tmp_path: Path) -> None:
    deb = dpkg_build(tmp_path, "xz")
    other = make_deb(tmp_path / "other.deb", make_tar([
        {"name": "./usr/", "type": "d"}, {"name": "./usr/bin/", "type": "d"},
        {"name": "./usr/bin/other", "data": b"other"},
        {"name": "./usr/bin/prog", "data": b"replaced"}]))
    dest = tmp_path / "dest"
    dest.mkdir()
    extract_package(str(deb), str(dest))
    extract_package(str(other), str(dest))
    assert (dest / "usr/bin/other").read_bytes() == b"other"
    assert (dest / "usr/bin/prog").read_bytes() == b"replaced"  # unlinked and written anew
    assert (dest / "usr/bin/prog-hard").read_bytes() == b"#!/bin/sh\necho prog\n"


@needs_dpkg
def test_kind_by_magic_not_suffix(tmp_path: Path) -> None:
    deb = dpkg_build(tmp_path, "gzip")
    disguised = tmp_path / "really-a-deb.rpm"
    shutil.copy(deb, disguised)
    assert package_kind(str(disguised)) == "deb"
    assert package_info(str(disguised)).name == "strata-pkg"
    text = tmp_path / "notes.deb"
    text.write_text("hello")
    with pytest.raises(StrataError, match=r"not a \.deb or \.rpm package") as e:
        package_info(str(text))
    assert e.value.kind is ErrorKind.INVALID
    with pytest.raises(StrataError) as e:
        package_info(str(tmp_path / "missing.deb"))
    assert e.value.kind is ErrorKind.NOT_FOUND


# -- .deb: metadata ------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "names"), [
    ("", ()),
    ("libc6 (>= 2.34), libjq1 (= 1.6-2.1)", ("libc6", "libjq1")),
    ("a | b:any (>= 1), c [amd64] <!nocheck>", ("a | b", "c")),
    ("python3:any,\n perl", ("python3", "perl")),
    ("a(>=1)|b", ("a | b",)),
    ("libc6, libc6 (>= 2)", ("libc6", "libc6")),  # de-duplicated by the caller
])
def test_depends_names(value: str, names: tuple[str, ...]) -> None:
    assert depends_names(value) == names


def test_parse_control() -> None:
    fields = parse_control("\nPackage: x\nDescription: short\n long\n .\n more\nDEPENDS: y\n\n"
                           "Package: second-paragraph\n")
    assert fields == {"package": "x", "description": "short\nlong\n.\nmore", "depends": "y"}


@pytest.mark.parametrize(("control", "what"), [
    ("Package: x\nVersion: 1\n", "control file lacks Architecture"),
    ("Description: nothing\n", "control file lacks Package, Version, Architecture"),
])
def test_control_missing_fields(tmp_path: Path, control: str, what: str) -> None:
    deb = make_deb(tmp_path / "c.deb", make_tar([{"name": "./x", "data": b"x"}]),
                   control=control_tar(control))
    with pytest.raises(StrataError, match=what):
        package_info(str(deb))


def test_crafted_deb_info(tmp_path: Path) -> None:
    deb = make_deb(tmp_path / "c.deb", make_tar([{"name": "./x", "data": b"x"}]))
    assert package_info(str(deb)) == PackageInfo("crafted", "1:2.0-1", "amd64", "deb")


# -- .deb: the corpus and bad archives ----------------------------------------------------------


@pytest.mark.parametrize(("entries", "reason"), [c[1:] for c in CORPUS],
                         ids=[c[0] for c in CORPUS])
@pytest.mark.parametrize("suffix", [".xz", ""])
def test_deb_corpus(work: Path, entries: list[Entry], reason: str, suffix: str) -> None:
    deb = make_deb(work / "evil.deb", make_tar(resolve(entries, work)), suffix)
    refused(deb, work, ": member ", reason)


def test_deb_special_members_through_callback(work: Path) -> None:
    deb = make_deb(work / "dev.deb", make_tar([
        {"name": "./dev/", "type": "d"}, {"name": "./dev/console", "type": "c"},
        {"name": "./dev/loop0", "type": "b"}, {"name": "./dev/initctl", "type": "p"},
        {"name": "./usr/bin/x", "data": b"x"}]))
    refused(deb, work, "member './dev/console': character devices are not allowed")
    dropped: list[tuple[str, str]] = []
    extract_package(str(deb), str(work / "dest"),
                    on_special=lambda p, k: dropped.append((p, k)))
    assert dropped == [("/dev/console", "character device"), ("/dev/loop0", "block device"),
                       ("/dev/initctl", "fifo")]
    assert os.listdir(work / "dest" / "dev") == []


def test_deb_absolute_names_stripped(work: Path) -> None:
    deb = make_deb(work / "abs.deb", make_tar([{"name": "/etc/strata-abs-test", "data": b"in"}]))
    before = snapshot(work, work / "dest")
    extract_package(str(deb), str(work / "dest"))
    assert (work / "dest/etc/strata-abs-test").read_bytes() == b"in"
    assert not os.path.exists("/etc/strata-abs-test")
    assert snapshot(work, work / "dest") == before


BIG = make_tar([{"name": "./", "type": "d"}, {"name": "./a", "data": b"a" * 100},
                {"name": "./big", "data": os.urandom(200_000)}])


@pytest.mark.parametrize(("suffix", "cut"), [
    (".gz", 0.5), (".xz", 0.5), (".zst", 0.5), (".bz2", 0.5), (".gz", 0.99), (".zst", 0.99),
])
def test_compressed_stream_cut_short(work: Path, suffix: str, cut: float) -> None:
    """A consistent ar whose data.tar.* stream stops early (the ar member is intact)."""
    compress = COMPRESS[suffix]
    body = compress(BIG)
    deb = make_deb(work / "cut.deb", body[: int(len(body) * cut)], suffix, raw_data=True)
    refused(deb, work, f": data.tar{suffix}: truncated")


@pytest.mark.parametrize("suffix", [".gz", ".xz", ".lzma", ".bz2", ".zst"])
def test_decoders_notice_a_cut_stream(suffix: str) -> None:
    """Each decoder itself raises EOFError on a stream cut short, rather than returning less
    (zstandard's own stream_reader would): tar's structure is not the only check."""
    compress = COMPRESS[suffix]
    whole = compress(BIG)
    assert packages._decompressed(io.BytesIO(whole), suffix).read() == BIG
    if suffix != ".lzma":  # concatenated streams (the legacy .lzma format has none)
        assert packages._decompressed(io.BytesIO(whole + whole), suffix).read() == BIG + BIG
    with pytest.raises(EOFError):
        packages._decompressed(io.BytesIO(whole[:-3]), suffix).read()


def test_member_longer_than_the_archive(work: Path) -> None:
    tar = BIG[: 512 * 4 + 1000]  # ./, ./a header+data, ./big's header, 1000 of its bytes
    deb = make_deb(work / "short.deb", tar, "")
    refused(deb, work, ": data.tar: truncated in member './big'")


def test_file_cut_short(work: Path) -> None:
    whole = make_deb(work / "whole.deb", BIG, ".xz").read_bytes()
    for n, what in ((len(whole) - 100, "truncated"), (150, "truncated"),
                    (8 + 30, "truncated ar header")):
        deb = work / f"cut{n}.deb"
        deb.write_bytes(whole[:n])
        refused(deb, work, what)


@pytest.mark.parametrize(("members", "what"), [
    ([("debian-binary", b"2.0\n"), ("control.tar.gz", gzip.compress(control_tar())),
      ("data.tar.lz4", b"d")],
     "member data.tar.lz4: unknown compression '.lz4'"),
    ([("control.tar.gz", b"c")], "first member is 'control.tar.gz', not debian-binary"),
    ([("debian-binary", b"3.0\n")], "unsupported package format version '3.0'"),
    ([("debian-binary", b"2.0\n"), ("data.tar", b"d")], "comes before the control member"),
    ([("debian-binary", b"2.0\n"), ("README", b"d")], "unknown member 'README'"),
    ([("debian-binary", b"2.0\n"), ("control.tar.gz", gzip.compress(control_tar()))],
     "no data.tar member"),
    ([("debian-binary", b"2.0\n"), ("control.tar.gz", b"not gzip"), ("data.tar", b"")],
     "control.tar.gz: corrupt"),
    ([("debian-binary", b"2.0\n"), ("control.tar", make_tar([{"name": "./md5sums"}])),
      ("data.tar", b"")], "control.tar has no control file"),
])
def test_malformed_debs(work: Path, members: list[tuple[str, bytes]], what: str) -> None:
    deb = work / "bad.deb"
    deb.write_bytes(ar(members))
    refused(deb, work, what)


@pytest.mark.parametrize(("suffix", "at"), [
    (".xz", 0.5), (".gz", 0.5), (".bz2", 0.5), (".zst", 0.5),
    (".gz", -8),  # the CRC: gzip's BadGzipFile is an OSError, not to be taken for a disk error
])
def test_corrupt_data(work: Path, suffix: str, at: float) -> None:
    body = bytearray(COMPRESS[suffix](BIG))
    body[int(len(body) * at) if at > 0 else int(at)] ^= 0xFF
    deb = make_deb(work / "corrupt.deb", bytes(body), suffix, raw_data=True)
    refused(deb, work, f": data.tar{suffix}: corrupt")


# -- .rpm ----------------------------------------------------------------------------------------

RPM_SPEC = """\
Name: strata-rpm
Version: 2.1
Release: 4
Epoch: 3
Summary: strata rpm test
License: MIT
BuildArch: noarch
Requires: bash, coreutils >= 8

%description
test

%install
mkdir -p %{buildroot}/usr/bin %{buildroot}/usr/lib/strata-rpm
mkdir -p %{buildroot}/usr/share/strata-rpm/empty
printf '#!/bin/sh\\necho hi\\n' > %{buildroot}/usr/bin/hello
ln %{buildroot}/usr/bin/hello %{buildroot}/usr/bin/hello-hard
ln -s /etc/strata-rpm.conf %{buildroot}/usr/lib/strata-rpm/abs
ln -s ../../bin/hello %{buildroot}/usr/lib/strata-rpm/rel
printf 'spaces' > '%{buildroot}/usr/share/strata-rpm/file with spaces'
head -c 3000000 /dev/urandom > %{buildroot}/usr/share/strata-rpm/big

%files
%attr(4755,root,root) /usr/bin/hello
%attr(4755,root,root) /usr/bin/hello-hard
%attr(2750,root,root) %dir /usr/lib/strata-rpm
/usr/lib/strata-rpm/abs
/usr/lib/strata-rpm/rel
%dir %attr(1777,root,root) /usr/share/strata-rpm/empty
"/usr/share/strata-rpm/file with spaces"
/usr/share/strata-rpm/big
"""


@pytest.fixture(scope="module")
def base_rpm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A gzip-payload rpm whose payload the corpus tests replace."""
    if not all(shutil.which(t) for t in ("rpmbuild", "rpm2cpio")):
        pytest.skip("rpmbuild and rpm2cpio are needed")
    return build_rpm(tmp_path_factory.mktemp("rpm"), RPM_SPEC, "strata-rpm", "w9.gzdio")


@needs_rpm
@pytest.mark.skipif(shutil.which("rpm2archive") is None, reason="rpm2archive is needed")
@pytest.mark.parametrize("payload", ["w2.xzdio", "w3.zstdio", "w9.gzdio", "w9.bzdio"])
def test_rpm_matches_rpm2archive(tmp_path: Path, payload: str) -> None:
    rpm = build_rpm(tmp_path, RPM_SPEC, "strata-rpm", payload)
    theirs, ours = tmp_path / "theirs", tmp_path / "ours"
    theirs.mkdir()
    ours.mkdir()
    with open(rpm, "rb") as f:
        archive = subprocess.run(["rpm2archive", "-"], stdin=f, check=True,
                                 capture_output=True).stdout
    subprocess.run(["tar", "-xz", "-C", str(theirs)], input=archive, check=True)
    listed = subprocess.run(["rpm", "-qlp", str(rpm)], check=True, capture_output=True,
                            text=True).stdout.splitlines()
    owned = [p.lstrip("/") for p in listed]  # implicit parents get the time of extraction
    info = extract_package(str(rpm), str(ours))
    assert tree(ours, mtime_of=owned) == tree(theirs, mtime_of=owned)
    got = tree(ours)
    assert got["usr/bin/hello"][1] == 0o4755
    assert got["usr/lib/strata-rpm"][1] == 0o2750
    assert got["usr/share/strata-rpm/empty"][1] == 0o1777
    assert got["usr/lib/strata-rpm/abs"][2] == "/etc/strata-rpm.conf"
    assert got["usr/bin/hello"][4] == got["usr/bin/hello-hard"][4]
    qf = subprocess.run(["rpm", "-qp", "--qf", "%{NAME}|%{EVR}|%{ARCH}|[%{REQUIRENAME},]",
                         str(rpm)], check=True, capture_output=True, text=True).stdout
    name, evr, arch, requires = qf.split("|")
    assert info == PackageInfo(name=name, version=evr, arch=arch, kind="rpm", depends=tuple(
        r for r in requires.split(",") if r and not r.startswith("rpmlib(")))
    assert info.version == "3:2.1-4"
    assert info.depends == ("bash", "coreutils")
    assert package_info(str(rpm)) == info


SIGTAG_PAYLOADSIZE = 1007  # the uncompressed payload's size: rpm2cpio's exit status checks it


def with_payload(base: Path, out: Path, payload: bytes) -> Path:
    """`base` with its (gzip) payload replaced, and the signature's PAYLOADSIZE to match:
    rpm2cpio checks neither the payload digest nor the signature header's own."""
    with open(base, "rb") as f:
        f.read(packages.LEAD_LEN)
        index, _ = packages.read_rpm_header(f, str(base), "signature")
        f.seek(-f.tell() % 8, os.SEEK_CUR)
        packages.read_rpm_header(f, str(base), "header")
        headers = f.tell()
    data = bytearray(base.read_bytes()[:headers])
    typ, offset, _count = index[SIGTAG_PAYLOADSIZE]
    assert typ == 4  # INT32
    at = packages.LEAD_LEN + 16 + 16 * len(index) + offset
    data[at: at + 4] = len(payload).to_bytes(4, "big")
    out.write_bytes(bytes(data) + gzip.compress(payload))
    return out


F = REG | 0o644
RPM_CORPUS: list[tuple[str, list[tuple[Any, ...]], str]] = [
    ("dotdot", [("./../x", F, b"e")], "member './../x': path climbs out"),
    ("dotdot-middle", [("./a/../../x", F, b"e")], "'..'"),
    ("absolute", [("/../x", F, b"e")], "'..'"),
    ("symlink-abs-then-write", [("./link", LNK | 0o777, b"@outside"), ("./link/f", F, b"e")],
     "member './link/f': parent link is a symlink"),
    ("symlink-rel-escape", [("./usr/l", LNK | 0o777, b"../../outside"), ("./usr/l/f", F, b"e")],
     "climbs out of the tree"),
    ("hardlink-group-escape",
     [("./a", F, b"", link(5, 2)), ("./../outside/x", F, b"d", link(5, 2))],
     "member './../outside/x'"),
    ("char-device", [("./dev/null", stat.S_IFCHR | 0o666)], "character devices"),
    ("block-device", [("./dev/sda", stat.S_IFBLK | 0o660)], "block devices"),
    ("fifo", [("./run/fifo", stat.S_IFIFO | 0o600)], "fifos"),
    ("socket", [("./run/sock", stat.S_IFSOCK | 0o600)], "sockets"),
]


@pytest.mark.parametrize(("items", "reason"), [c[1:] for c in RPM_CORPUS],
                         ids=[c[0] for c in RPM_CORPUS])
def test_rpm_corpus(work: Path, base_rpm: Path, items: list[tuple[Any, ...]],
                    reason: str) -> None:
    outside = str(work / "outside").encode()
    filled = [(name, mode, *[r.replace(b"@outside", outside) if isinstance(r, bytes) else r
                             for r in rest]) for name, mode, *rest in items]
    rpm = with_payload(base_rpm, work / "evil.rpm", newc(filled))
    refused(rpm, work, reason)


def test_rpm_special_members_through_callback(work: Path, base_rpm: Path) -> None:
    rpm = with_payload(base_rpm, work / "dev.rpm", newc([
        ("./dev/null", stat.S_IFCHR | 0o666), ("./run/sock", stat.S_IFSOCK | 0o600),
        ("./usr/bin/x", REG | 0o4755, b"x")]))
    dropped: list[tuple[str, str]] = []
    extract_package(str(rpm), str(work / "dest"), on_special=lambda p, k: dropped.append((p, k)))
    assert dropped == [("/dev/null", "character device"), ("/run/sock", "socket")]
    assert stat.S_IMODE(os.stat(work / "dest/usr/bin/x").st_mode) == 0o4755


@pytest.mark.parametrize(("payload", "what"), [
    (newc([("./ok", F, b"ok"), ("./big", F, b"x" * 5000)])[:400], "truncated in member './big'"),
    (newc([("./ok", F, b"ok")], trailer=False), "truncated after member './ok'"),
    (b"070707" + b"0" * 200, "corrupt: unsupported cpio format"),
])
def test_rpm_bad_payloads(work: Path, base_rpm: Path, payload: bytes, what: str) -> None:
    rpm = with_payload(base_rpm, work / "bad.rpm", payload)
    refused(rpm, work, ": payload: " + what)


def test_rpm_cut_short(work: Path, base_rpm: Path) -> None:
    whole = base_rpm.read_bytes()
    for n, what in ((len(whole) - 1000, ": payload: truncated"),
                    (50, "truncated: the file ends inside the lead"),
                    (200, "truncated: the file ends inside the signature header")):
        rpm = work / f"cut{n}.rpm"
        rpm.write_bytes(whole[:n])
        refused(rpm, work, what)


def test_rpm2cpio_missing(work: Path, base_rpm: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(work / "outside"))  # no rpm2cpio there
    assert package_info(str(base_rpm)).name == "strata-rpm"  # metadata needs no tool
    with pytest.raises(StrataError) as e:
        extract_package(str(base_rpm), str(work / "dest"))
    assert e.value.kind is ErrorKind.NOT_FOUND
    assert "rpm2cpio" in str(e.value)
    assert e.value.hint == "install the Debian package rpm2cpio"


@needs_rpm
def test_source_rpm_refused(tmp_path: Path, work: Path) -> None:
    top = tmp_path / "srpm"
    (top / "SPECS").mkdir(parents=True)
    (top / "SPECS" / "s.spec").write_text(RPM_SPEC)
    subprocess.run(["rpmbuild", "-bs", "--define", f"_topdir {top}",
                    str(top / "SPECS" / "s.spec")], check=True, capture_output=True)
    (srpm,) = (top / "SRPMS").glob("*.rpm")
    refused(srpm, work, "a source rpm, not a binary package")


def test_rpm_header_garbage(work: Path, base_rpm: Path) -> None:
    data = bytearray(base_rpm.read_bytes())
    data[96:100] = b"XXXX"  # the signature header's magic
    rpm = work / "garbage.rpm"
    rpm.write_bytes(bytes(data))
    refused(rpm, work, "bad signature header magic")


def test_extraction_into_missing_dest(tmp_path: Path) -> None:
    deb = make_deb(tmp_path / "x.deb", make_tar([{"name": "./x", "data": b"x"}]))
    with pytest.raises(StrataError) as e:
        extract_package(str(deb), str(tmp_path / "missing"))
    assert e.value.kind is ErrorKind.NOT_FOUND


def test_cpio_helper_sanity() -> None:
    """The corpus' archives parse as intended (so refusals come from the policy)."""
    from strata.build.cpio import members

    items = [m for m, _ in members(io.BytesIO(newc([("./a", LNK | 0o777, b"/x")])))]
    assert [(m.name, m.linkname) for m in items] == [("./a", "/x")]
