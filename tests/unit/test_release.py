"""Release files and compatibility, against systemd v257's env-file.c, os-util.c and
extension-util.c behaviour."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from strata.errors import ErrorKind, StrataError
from strata.images.base import DirectoryFS
from strata.model import ExtClass, Scope
from strata.release import (
    HostRelease,
    check_compatibility,
    find_extension_release,
    format_env,
    image_name_from_path,
    image_name_is_valid,
    load_host_release,
    parse_env,
    quote_env_value,
    read_env_file,
    scope_of_root,
)

# --------------------------------------------------------------------------- parse_env

PARSE_CASES: list[tuple[str, bytes | str, dict[str, str]]] = [
    ("plain", "ID=debian\nVERSION_ID=12\n", {"ID": "debian", "VERSION_ID": "12"}),
    ("no final newline", "ID=debian", {"ID": "debian"}),
    ("comments", "# c\n; c\n  # indented\nA=1\n", {"A": "1"}),
    ("hash inside a value is literal", "A=1 # c\n", {"A": "1 # c"}),
    ("whitespace around key and value", "  A  =  b c  \n", {"A": "b c"}),
    ("tabs are whitespace", "\tA\t=\tb\t\n", {"A": "b"}),
    ("keys are not validated", "A B=c\nx-y.z=1\n", {"A B": "c", "x-y.z": "1"}),
    ("a line without = is dropped", "JUNK\nA=1\nTRAILING", {"A": "1"}),
    ("empty value", "A=\nB=", {"A": "", "B": ""}),
    ("single quotes keep everything", "A='x \"y\" \\n $z'\n", {"A": 'x "y" \\n $z'}),
    ("double quote escapes", 'A="a\\"b\\\\c\\`d\\$e"\n', {"A": 'a"b\\c`d$e'}),
    ("other escapes in double quotes keep the backslash", 'A="x\\ny\\tz"\n',
     {"A": "x\\ny\\tz"}),
    ("quoted parts concatenate", "A='x'\"y\"z\n", {"A": "xyz"}),
    ("whitespace between quoted parts is dropped", "A='x'  \"y\"\n", {"A": "xy"}),
    ("quotes inside a bare value are literal", 'A=foo"bar" \'x\'\n', {"A": "foo\"bar\" 'x'"}),
    ("bare escapes", "A=a\\ b\\\\c\\\"\n", {"A": 'a b\\c"'}),
    ("escaped trailing space is kept", "A=foo\\ \n", {"A": "foo "}),
    ("trailing whitespace after an escape is trimmed", "A=foo\\x  \n", {"A": "foox"}),
    ("quoted whitespace is kept", 'A="  x  "\n', {"A": "  x  "}),
    ("bare continuation line", "A=foo\\\nbar\nB=2\n", {"A": "foobar", "B": "2"}),
    ("double-quoted continuation line", 'A="foo\\\nbar"\n', {"A": "foobar"}),
    ("newline inside quotes is kept", 'A="foo\nbar"\nB=\'x\ny\'\n',
     {"A": "foo\nbar", "B": "x\ny"}),
    ("escape-newline at value start", "A=\\\nB=c\n", {"A": "B=c"}),
    ("unterminated quote runs to the end", 'A="foo\nB=1\n', {"A": "foo\nB=1\n"}),
    ("unterminated single quote", "A='x", {"A": "x"}),
    ("comment backslash does not continue (v254+)", "# c \\\nA=1\n", {"A": "1"}),
    ("comment double backslash", "# c \\\\\nA=1\n", {"A": "1"}),
    ("last assignment wins", "A=1\nB=x\nA=2\n", {"A": "2", "B": "x"}),
    ("CRLF line ends", "A=1\r\nB=2\r\n", {"A": "1", "B": "2"}),
    ("lone CR ends a line", "A=1\rB=2", {"A": "1", "B": "2"}),
    ("reading stops at NUL", b"A=1\nB=2\0\nC=3\n", {"A": "1", "B": "2"}),
    ("= as the first key character", "=x\n==y\n", {"=": "y"}),
    ("non-ASCII whitespace is ordinary", "A=x\u00a0\n", {"A": "x\u00a0"}),
    ("a BOM is part of the key", "\ufeffID=x\n", {"\ufeffID": "x"}),
    ("bad UTF-8 in a comment is harmless", b"# \xff\nA=1\n", {"A": "1"}),
    ("bad UTF-8 in a dropped line is harmless", b"\xff\nA=\xc3\xa9\n", {"A": "\u00e9"}),
    ("str input", "ID=caf\u00e9", {"ID": "caf\u00e9"}),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in PARSE_CASES],
                         ids=[c[0] for c in PARSE_CASES])
def test_parse_env(text: bytes | str, expected: dict[str, str]) -> None:
    assert parse_env(text, source="t") == expected


BAD_CASES: list[tuple[str, bytes | str, str]] = [
    ("bad byte in a value", b"A=1\nB=\xff\n", "t:2: invalid UTF-8 value for key B: '\ufffd'"),
    ("bad byte in a key", b"\xffA=1\n", "t:1: invalid UTF-8 in key '\ufffdA'"),
    ("overlong encoding", b"A=\xc0\xaf", "t:1: invalid UTF-8 value for key A"),
    ("encoded surrogate", b"A=\xed\xa0\x80", "t:1: invalid UTF-8 value for key A"),
    ("truncated sequence at EOF", b"A=\xe2\x82", "t:1: invalid UTF-8 value for key A"),
    ("noncharacter U+FDD0", "A=\ufdd0", "t:1: invalid UTF-8 value for key A"),
    ("noncharacter U+10FFFF", "A=\U0010ffff", "t:1: invalid UTF-8 value for key A"),
    ("lone surrogate in str input", "A=\udc80", "t:1: invalid UTF-8 value for key A"),
    ("line of a multi-line value is where it starts", b'A=1\nB="x\ny\xff"\n',
     "t:2: invalid UTF-8 value for key B"),
]


@pytest.mark.parametrize(("text", "message"), [c[1:] for c in BAD_CASES],
                         ids=[c[0] for c in BAD_CASES])
def test_parse_env_rejects_invalid_utf8(text: bytes | str, message: str) -> None:
    with pytest.raises(StrataError) as ei:
        parse_env(text, source="t")
    assert ei.value.kind is ErrorKind.INVALID
    assert str(ei.value).startswith(message)


@pytest.mark.parametrize(
    ("value", "written"),
    [("debian", "debian"), ("", ""), ("a b", '"a b"'), ('say "hi"', '"say \\"hi\\""'),
     ("$HOME", '"\\$HOME"'), ("back\\slash", '"back\\\\slash"'), ("it's", "\"it's\""),
     ("a;b", '"a;b"'), ("x\ny", '"x\ny"'), ("#1", "#1"), ("k=v", "k=v")],
)
def test_quote_env_value(value: str, written: str) -> None:
    assert quote_env_value(value) == written
    assert parse_env(f"K={written}\n", source="t") == {"K": value}


def test_format_env_round_trips() -> None:
    fields = {"ID": "_any", "SYSEXT_SCOPE": "system initrd", "NOTE": 'a "b" \\ $c'}
    assert parse_env(format_env(fields), source="t") == fields


def test_read_env_file(tmp_path: Path) -> None:
    p = tmp_path / "os-release"
    p.write_bytes(b'NAME="Debian GNU/Linux"\nID=debian\n')
    assert read_env_file(str(p)) == {"NAME": "Debian GNU/Linux", "ID": "debian"}


def test_read_env_file_missing(tmp_path: Path) -> None:
    p = tmp_path / "nope"
    with pytest.raises(StrataError) as ei:
        read_env_file(str(p))
    assert ei.value.kind is ErrorKind.NOT_FOUND
    assert str(p) in str(ei.value)


def test_read_env_file_bad_utf8_names_the_file(tmp_path: Path) -> None:
    p = tmp_path / "os-release"
    p.write_bytes(b"ID=\xff\n")
    with pytest.raises(StrataError, match=f"^{p}:1: invalid UTF-8") as ei:
        read_env_file(str(p))
    assert ei.value.kind is ErrorKind.INVALID


# --------------------------------------------------------------------------- host os-release


def _write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def test_host_release_prefers_etc(tmp_path: Path) -> None:
    _write(tmp_path / "etc/os-release", "ID=frometc\n")
    _write(tmp_path / "usr/lib/os-release", "ID=fromusr\n")
    host = load_host_release(str(tmp_path), {})
    assert host.id == "frometc"
    assert host.path == str(tmp_path / "etc/os-release")


def test_host_release_falls_back_to_usr_lib(tmp_path: Path) -> None:
    _write(tmp_path / "usr/lib/os-release",
           'ID=fromusr\nID_LIKE="rhel  fedora"\nVERSION_ID=9\nSYSEXT_LEVEL=1.2\n')
    host = load_host_release(str(tmp_path), {})
    assert host.path == str(tmp_path / "usr/lib/os-release")
    assert (host.id, host.id_like, host.version_id) == ("fromusr", ("rhel", "fedora"), "9")
    assert host.level(ExtClass.SYSEXT) == "1.2"
    assert host.level(ExtClass.CONFEXT) == ""


@pytest.mark.parametrize("target", ["/usr/lib/os-release", "../usr/lib/os-release"])
def test_host_release_symlink_resolved_inside_root(tmp_path: Path, target: str) -> None:
    # An absolute link must not escape to this machine's own /usr/lib/os-release.
    _write(tmp_path / "usr/lib/os-release", "ID=inroot\n")
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/os-release").symlink_to(target)
    host = load_host_release(str(tmp_path), {})
    assert host.id == "inroot"
    assert host.path == str(tmp_path / "usr/lib/os-release")


def test_host_release_env_override(tmp_path: Path) -> None:
    _write(tmp_path / "etc/os-release", "ID=frometc\n")
    _write(tmp_path / "srv/my-release", "ID=override\n")
    host = load_host_release(str(tmp_path), {"SYSTEMD_OS_RELEASE": "/srv/my-release"})
    assert host.id == "override"
    assert host.path == str(tmp_path / "srv/my-release")


def test_host_release_env_override_missing_does_not_fall_back(tmp_path: Path) -> None:
    _write(tmp_path / "etc/os-release", "ID=frometc\n")
    with pytest.raises(StrataError) as ei:
        load_host_release(str(tmp_path), {"SYSTEMD_OS_RELEASE": "/srv/none"})
    assert ei.value.kind is ErrorKind.NOT_FOUND
    assert str(tmp_path / "srv/none") in str(ei.value)
    assert "SYSTEMD_OS_RELEASE" in str(ei.value)


def test_host_release_missing_names_root_and_paths(tmp_path: Path) -> None:
    with pytest.raises(StrataError) as ei:
        load_host_release(str(tmp_path), {})
    msg = str(ei.value)
    assert ei.value.kind is ErrorKind.NOT_FOUND
    assert f"OS tree '{tmp_path}'" in msg
    assert str(tmp_path / "etc/os-release") in msg
    assert str(tmp_path / "usr/lib/os-release") in msg


def test_host_release_missing_root(tmp_path: Path) -> None:
    with pytest.raises(StrataError) as ei:
        load_host_release(str(tmp_path / "absent"), {})
    assert ei.value.kind is ErrorKind.NOT_FOUND
    assert str(tmp_path / "absent") in str(ei.value)


@pytest.mark.parametrize("text", ["NAME=x\n", "ID=\n", "ID=''\n", "ID=x\nID=\n"])
def test_host_release_empty_id_is_fatal(tmp_path: Path, text: str) -> None:
    _write(tmp_path / "etc/os-release", text)
    with pytest.raises(StrataError) as ei:
        load_host_release(str(tmp_path), {})
    assert ei.value.kind is ErrorKind.INVALID
    assert "'ID' field not found or empty in 'os-release' data of OS tree" in str(ei.value)


def test_host_release_malformed(tmp_path: Path) -> None:
    _write(tmp_path / "etc/os-release", b"ID=\xff\n")
    with pytest.raises(StrataError, match="os-release:1: invalid UTF-8"):
        load_host_release(str(tmp_path), {})


def test_scope_of_root(tmp_path: Path) -> None:
    assert scope_of_root(str(tmp_path)) is Scope.SYSTEM
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/initrd-release").symlink_to("/nowhere")  # dangling: not there
    assert scope_of_root(str(tmp_path)) is Scope.SYSTEM
    _write(tmp_path / "nowhere", "ID=x\n")  # absolute link now resolves inside root
    assert scope_of_root(str(tmp_path)) is Scope.INITRD


# --------------------------------------------------------------------------- image names


@pytest.mark.parametrize(
    ("path", "name"),
    [("foo", "foo"), ("foo.raw", "foo"), ("foo.sysext.raw", "foo"), ("foo.confext.raw", "foo"),
     ("foo_1.2.raw", "foo"), ("foo+3-2.raw", "foo"), ("foo_1.2+3-0.sysext.raw", "foo"),
     ("/var/lib/extensions/foo_1+2.raw", "foo"), ("foo.raw.raw", "foo.raw"),
     ("foo.sysext.raw.raw", "foo.sysext.raw"), ("dir/foo.sysext", "foo.sysext"),
     ("foo/", "foo"), ("foo.raw/", "foo.raw"), ("foo.raw/.", "foo.raw"), ("a/./b/.", "b"),
     ("a.b_c", "a.b"), ("x.RAW", "x.RAW"), (".hidden.raw", ".hidden")],
)
def test_image_name_from_path(path: str, name: str) -> None:
    assert image_name_from_path(path) == name


@pytest.mark.parametrize("path", ["", "/", ".", "..", "foo/..", "_1.raw", "+x", ".raw",
                                  ".#foo.raw", "a\x01b", "x" * 256])
def test_image_name_from_path_invalid(path: str) -> None:
    with pytest.raises(StrataError) as ei:
        image_name_from_path(path)
    assert ei.value.kind is ErrorKind.INVALID


@pytest.mark.parametrize(("name", "valid"),
                         [("foo", True), (".hidden", True), ("a b", True), ("", False),
                          (".", False), ("..", False), ("a/b", False), (".#tmp", False),
                          ("tab\t", False), ("del\x7f", False), ("x" * 255, True),
                          ("x" * 256, False), ("\u00e9" * 128, False)])
def test_image_name_is_valid(name: str, valid: bool) -> None:
    assert image_name_is_valid(name) is valid


# --------------------------------------------------------------------------- release lookup

SYSEXT_DIR = "usr/lib/extension-release.d"


def _release(root: Path, fname: str, text: str | bytes = "ID=_any\n", *,
             strict: bytes | None = None, sub: str = SYSEXT_DIR) -> Path:
    p = _write(root / sub / fname, text)
    if strict is not None:
        try:
            os.setxattr(p, "user.extension-release.strict", strict)
        except OSError as e:  # pragma: no cover - depends on the test machine's /tmp
            if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
                pytest.skip(f"{root} does not support user xattrs")
            raise
    return p


def test_lookup_exact(tmp_path: Path) -> None:
    _release(tmp_path, "extension-release.foo", "ID=debian\n")
    _release(tmp_path, "extension-release.other", "ID=other\n", strict=b"0")
    r = find_extension_release(DirectoryFS(str(tmp_path)), ExtClass.SYSEXT, "foo")
    assert r.found
    assert r.path == f"/{SYSEXT_DIR}/extension-release.foo"
    assert r.fields == {"ID": "debian"}
    assert r.problem is None


def test_lookup_exact_symlink_resolved_in_image(tmp_path: Path) -> None:
    _write(tmp_path / "usr/lib/real", "ID=linked\n")
    (tmp_path / SYSEXT_DIR).mkdir(parents=True)
    (tmp_path / SYSEXT_DIR / "extension-release.foo").symlink_to("/usr/lib/real")
    r = find_extension_release(DirectoryFS(str(tmp_path)), ExtClass.SYSEXT, "foo")
    assert r.path == "/usr/lib/real"
    assert r.fields == {"ID": "linked"}


def test_lookup_confext_uses_etc(tmp_path: Path) -> None:
    _release(tmp_path, "extension-release.foo", "ID=sys\n")
    _release(tmp_path, "extension-release.foo", "ID=conf\n", sub="etc/extension-release.d")
    fs = DirectoryFS(str(tmp_path))
    assert find_extension_release(fs, ExtClass.CONFEXT, "foo").fields == {"ID": "conf"}
    assert find_extension_release(fs, ExtClass.SYSEXT, "foo").fields == {"ID": "sys"}


def test_lookup_no_directory(tmp_path: Path) -> None:
    r = find_extension_release(DirectoryFS(str(tmp_path)), ExtClass.SYSEXT, "foo")
    assert not r.found
    assert r.path is None and r.fields is None
    assert r.problem is not None and "Cannot open /usr/lib/extension-release.d/" in r.problem


def test_lookup_strict_base_name_match(tmp_path: Path) -> None:
    # The image "foo_1.2" (from foo_1.2.raw) may carry extension-release.foo, no xattr needed.
    _release(tmp_path, "extension-release.foo", "ID=base\n")
    r = find_extension_release(DirectoryFS(str(tmp_path)), ExtClass.SYSEXT, "foo_1.2")
    assert r.fields == {"ID": "base"}
    assert r.path == f"/{SYSEXT_DIR}/extension-release.foo"


@pytest.mark.parametrize(
    ("xattr", "accepted"),
    [(None, False), (b"1", False), (b"true", False), (b"yes", False), (b"bogus", False),
     (b"", False), (b"false\0", False), (b" false", False), (b"0", True), (b"false", True),
     (b"FALSE", True), (b"no", True), (b"n", True), (b"f", True), (b"off", True)],
)
def test_lookup_strict_xattr(tmp_path: Path, xattr: bytes | None, accepted: bool) -> None:
    _release(tmp_path, "extension-release.renamed", "ID=x\n", strict=xattr)
    r = find_extension_release(DirectoryFS(str(tmp_path)), ExtClass.SYSEXT, "foo")
    assert r.found is accepted
    if accepted:
        assert r.path == f"/{SYSEXT_DIR}/extension-release.renamed"
    else:
        assert r.problem is not None and "user.extension-release.strict=false" in r.problem


def test_lookup_not_unique(tmp_path: Path) -> None:
    _release(tmp_path, "extension-release.a", strict=b"false")
    _release(tmp_path, "extension-release.b", strict=b"0")
    _release(tmp_path, "extension-release.c", strict=b"1")  # not a candidate
    r = find_extension_release(DirectoryFS(str(tmp_path)), ExtClass.SYSEXT, "foo")
    assert not r.found
    assert r.problem is not None and "Name not unique" in r.problem
    assert "extension-release.a" in r.problem and "extension-release.b" in r.problem


def test_lookup_base_match_plus_false_xattr_is_not_unique(tmp_path: Path) -> None:
    _release(tmp_path, "extension-release.foo")
    _release(tmp_path, "extension-release.bar", strict=b"0")
    r = find_extension_release(DirectoryFS(str(tmp_path)), ExtClass.SYSEXT, "foo_2")
    assert r.problem is not None and "Name not unique" in r.problem


def test_lookup_relaxed_takes_any_single_file(tmp_path: Path) -> None:
    _release(tmp_path, "extension-release.whatever", "ID=r\n")
    fs = DirectoryFS(str(tmp_path))
    assert not find_extension_release(fs, ExtClass.SYSEXT, "foo").found
    r = find_extension_release(fs, ExtClass.SYSEXT, "foo", relaxed=True)
    assert r.fields == {"ID": "r"}


def test_lookup_relaxed_two_files_not_unique(tmp_path: Path) -> None:
    _release(tmp_path, "extension-release.a")
    _release(tmp_path, "extension-release.b")
    r = find_extension_release(DirectoryFS(str(tmp_path)), ExtClass.SYSEXT, "foo", relaxed=True)
    assert r.problem is not None and "Name not unique" in r.problem


def test_lookup_scan_skips_non_regular_and_bad_names(tmp_path: Path) -> None:
    target = _release(tmp_path, "elsewhere", strict=b"0", sub="usr/lib")
    d = tmp_path / SYSEXT_DIR
    d.mkdir(parents=True)
    (d / "extension-release.link").symlink_to(target)  # a symlink is not a regular file
    (d / "extension-release.dir").mkdir()
    _release(tmp_path, "extension-release.", strict=b"0")  # empty image name: invalid
    _release(tmp_path, "extension-release..#tmp", strict=b"0")  # temp-file name: invalid
    _release(tmp_path, "other-name", strict=b"0")  # wrong prefix
    fs = DirectoryFS(str(tmp_path))
    assert not find_extension_release(fs, ExtClass.SYSEXT, "foo").found
    assert not find_extension_release(fs, ExtClass.SYSEXT, "foo", relaxed=True).found


def test_lookup_exact_directory_is_no_data(tmp_path: Path) -> None:
    (tmp_path / SYSEXT_DIR / "extension-release.foo").mkdir(parents=True)
    r = find_extension_release(DirectoryFS(str(tmp_path)), ExtClass.SYSEXT, "foo")
    assert not r.found
    assert r.problem is not None and "not a regular file" in r.problem


def test_lookup_invalid_name(tmp_path: Path) -> None:
    _release(tmp_path, "extension-release.x", strict=b"0")
    r = find_extension_release(DirectoryFS(str(tmp_path)), ExtClass.SYSEXT, ".#foo")
    assert not r.found
    assert r.problem == "The extension name .#foo is invalid."


def test_lookup_malformed_release_names_image_and_file(tmp_path: Path) -> None:
    _release(tmp_path, "extension-release.foo", b"ID=\xff\n")
    with pytest.raises(StrataError) as ei:
        find_extension_release(DirectoryFS(str(tmp_path)), ExtClass.SYSEXT, "foo")
    assert ei.value.kind is ErrorKind.INVALID
    assert str(ei.value).startswith(
        f"{tmp_path}:/{SYSEXT_DIR}/extension-release.foo:1: invalid UTF-8")


# --------------------------------------------------------------------------- compatibility

DEBIAN = HostRelease("/etc/os-release", {"ID": "debian", "VERSION_ID": "12"})
ROLLING = HostRelease("/etc/os-release", {"ID": "arch", "ID_LIKE": "archlinux  other"})
LEVELED = HostRelease("/etc/os-release",
                      {"ID": "fedora", "ID_LIKE": "rhel", "VERSION_ID": "40",
                       "SYSEXT_LEVEL": "1.0", "CONFEXT_LEVEL": "c1"})
LEVEL_ONLY = HostRelease("/etc/os-release", {"ID": "flatcar", "SYSEXT_LEVEL": "1.0"})

X86 = "x86-64"

# (id, host, ext, cls, scope, accepted, reason)
COMPAT_CASES: list[tuple[str, HostRelease, dict[str, str] | None, ExtClass, Scope, bool, str]] = [
    # 1. no data
    ("no data", DEBIAN, None, ExtClass.SYSEXT, Scope.SYSTEM, False,
     "Extension 'img' carries no release data, ignoring."),
    ("empty data", DEBIAN, {}, ExtClass.SYSEXT, Scope.SYSTEM, False,
     "Extension 'img' carries no release data, ignoring."),
    # 2. scope
    ("scope default has system", DEBIAN, {"ID": "_any"}, ExtClass.SYSEXT, Scope.SYSTEM, True,
     "Extension 'img' matches '_any' OS."),
    ("scope default has portable", DEBIAN, {"ID": "_any"}, ExtClass.SYSEXT, Scope.PORTABLE, True,
     "Extension 'img' matches '_any' OS."),
    ("scope default lacks initrd", DEBIAN, {"ID": "_any"}, ExtClass.SYSEXT, Scope.INITRD, False,
     "Extension 'img' is not suitable for scope initrd, ignoring."),
    ("scope initrd only", DEBIAN, {"ID": "_any", "SYSEXT_SCOPE": "initrd"}, ExtClass.SYSEXT,
     Scope.SYSTEM, False, "Extension 'img' is not suitable for scope system, ignoring."),
    ("scope list", DEBIAN, {"ID": "_any", "SYSEXT_SCOPE": " system \t initrd "},
     ExtClass.SYSEXT, Scope.INITRD, True, "Extension 'img' matches '_any' OS."),
    ("empty scope rejects", DEBIAN, {"ID": "_any", "SYSEXT_SCOPE": ""}, ExtClass.SYSEXT,
     Scope.SYSTEM, False, "Extension 'img' is not suitable for scope system, ignoring."),
    ("confext reads CONFEXT_SCOPE", DEBIAN,
     {"ID": "_any", "SYSEXT_SCOPE": "initrd", "CONFEXT_SCOPE": "system"}, ExtClass.CONFEXT,
     Scope.SYSTEM, True, "Extension 'img' matches '_any' OS."),
    ("confext ignores SYSEXT_SCOPE", DEBIAN, {"ID": "_any", "SYSEXT_SCOPE": "system"},
     ExtClass.CONFEXT, Scope.INITRD, False,
     "Extension 'img' is not suitable for scope initrd, ignoring."),
    # 3. architecture
    ("other arch", DEBIAN, {"ID": "_any", "ARCHITECTURE": "arm64"}, ExtClass.SYSEXT,
     Scope.SYSTEM, False,
     "Extension 'img' is for architecture 'arm64', but deployed on top of 'x86-64'."),
    ("uname spelling is not systemd's", DEBIAN, {"ID": "_any", "ARCHITECTURE": "x86_64"},
     ExtClass.SYSEXT, Scope.SYSTEM, False,
     "Extension 'img' is for architecture 'x86_64', but deployed on top of 'x86-64'."),
    ("same arch", DEBIAN, {"ID": "_any", "ARCHITECTURE": "x86-64"}, ExtClass.SYSEXT,
     Scope.SYSTEM, True, "Extension 'img' matches '_any' OS."),
    ("any arch", DEBIAN, {"ID": "_any", "ARCHITECTURE": "_any"}, ExtClass.SYSEXT,
     Scope.SYSTEM, True, "Extension 'img' matches '_any' OS."),
    ("empty arch", DEBIAN, {"ID": "_any", "ARCHITECTURE": ""}, ExtClass.SYSEXT,
     Scope.SYSTEM, True, "Extension 'img' matches '_any' OS."),
    ("scope is checked before arch", DEBIAN,
     {"ID": "_any", "ARCHITECTURE": "arm64", "SYSEXT_SCOPE": "portable"}, ExtClass.SYSEXT,
     Scope.SYSTEM, False, "Extension 'img' is not suitable for scope system, ignoring."),
    # 4. ID present
    ("no ID", DEBIAN, {"VERSION_ID": "12"}, ExtClass.SYSEXT, Scope.SYSTEM, False,
     "Extension 'img' does not contain ID in release file but requested to match 'debian' "
     "or be '_any'"),
    ("empty ID", DEBIAN, {"ID": ""}, ExtClass.SYSEXT, Scope.SYSTEM, False,
     "Extension 'img' does not contain ID in release file but requested to match 'debian' "
     "or be '_any'"),
    # 5. _any
    ("_any skips versions", DEBIAN, {"ID": "_any", "VERSION_ID": "1"}, ExtClass.SYSEXT,
     Scope.SYSTEM, True, "Extension 'img' matches '_any' OS."),
    # 6. ID / ID_LIKE
    ("other ID", DEBIAN, {"ID": "fedora"}, ExtClass.SYSEXT, Scope.SYSTEM, False,
     "Extension 'img' is for OS 'fedora', but deployed on top of 'debian'."),
    ("other ID, host has ID_LIKE", LEVELED, {"ID": "debian"}, ExtClass.SYSEXT, Scope.SYSTEM,
     False, "Extension 'img' is for OS 'debian', but deployed on top of 'fedora' (like 'rhel')."),
    ("ID in ID_LIKE", ROLLING, {"ID": "other"}, ExtClass.SYSEXT, Scope.SYSTEM, True,
     "No version info on the host (rolling release?), but ID in img matched."),
    ("ID_LIKE words only, not substrings", ROLLING, {"ID": "arch linux"}, ExtClass.SYSEXT,
     Scope.SYSTEM, False, "Extension 'img' is for OS 'arch linux', but deployed on top of "
     "'arch' (like 'archlinux  other')."),
    # 7. rolling host
    ("rolling host", ROLLING, {"ID": "arch", "VERSION_ID": "x"}, ExtClass.SYSEXT, Scope.SYSTEM,
     True, "No version info on the host (rolling release?), but ID in img matched."),
    # 8. levels
    ("same level, other VERSION_ID", LEVELED,
     {"ID": "fedora", "SYSEXT_LEVEL": "1.0", "VERSION_ID": "39"}, ExtClass.SYSEXT,
     Scope.SYSTEM, True, "Version info of extension 'img' matches host."),
    ("other level", LEVELED, {"ID": "fedora", "SYSEXT_LEVEL": "1.1", "VERSION_ID": "40"},
     ExtClass.SYSEXT, Scope.SYSTEM, False,
     "Extension 'img' is for API level '1.1', but running on API level '1.0'"),
    ("level is string-compared", LEVELED, {"ID": "fedora", "SYSEXT_LEVEL": "1"},
     ExtClass.SYSEXT, Scope.SYSTEM, False,
     "Extension 'img' is for API level '1', but running on API level '1.0'"),
    ("confext compares CONFEXT_LEVEL", LEVELED,
     {"ID": "fedora", "CONFEXT_LEVEL": "c1", "SYSEXT_LEVEL": "nope"}, ExtClass.CONFEXT,
     Scope.SYSTEM, True, "Version info of extension 'img' matches host."),
    # 9. VERSION_ID
    ("same VERSION_ID", DEBIAN, {"ID": "debian", "VERSION_ID": "12"}, ExtClass.SYSEXT,
     Scope.SYSTEM, True, "Version info of extension 'img' matches host."),
    ("other VERSION_ID", DEBIAN, {"ID": "debian", "VERSION_ID": "11"}, ExtClass.SYSEXT,
     Scope.SYSTEM, False, "Extension 'img' is for OS '11', but deployed on top of '12'."),
    ("missing VERSION_ID", DEBIAN, {"ID": "debian"}, ExtClass.SYSEXT, Scope.SYSTEM, False,
     "Extension 'img' does not contain VERSION_ID in release file but requested to match '12'"),
    ("ext level, host no level: VERSION_ID decides", DEBIAN,
     {"ID": "debian", "SYSEXT_LEVEL": "9", "VERSION_ID": "12"}, ExtClass.SYSEXT, Scope.SYSTEM,
     True, "Version info of extension 'img' matches host."),
    ("host level, ext no level: VERSION_ID decides", LEVELED,
     {"ID": "fedora", "VERSION_ID": "39"}, ExtClass.SYSEXT, Scope.SYSTEM, False,
     "Extension 'img' is for OS '39', but deployed on top of '40'."),
    # 10. host has only a level
    ("host level only, ext nothing", LEVEL_ONLY, {"ID": "flatcar"}, ExtClass.SYSEXT,
     Scope.SYSTEM, True, "Version info of extension 'img' matches host."),
    ("host level only, ext other VERSION_ID", LEVEL_ONLY, {"ID": "flatcar", "VERSION_ID": "1"},
     ExtClass.SYSEXT, Scope.SYSTEM, True, "Version info of extension 'img' matches host."),
    ("host level only, confext has none", LEVEL_ONLY, {"ID": "flatcar"}, ExtClass.CONFEXT,
     Scope.SYSTEM, True,
     "No version info on the host (rolling release?), but ID in img matched."),
]


@pytest.mark.parametrize("case", COMPAT_CASES, ids=[c[0] for c in COMPAT_CASES])
def test_check_compatibility(
        case: tuple[str, HostRelease, dict[str, str] | None, ExtClass, Scope, bool, str]) -> None:
    _, host, ext, cls, scope, accepted, reason = case
    verdict = check_compatibility(host, ext, name="img", cls=cls, scope=scope, arch=X86)
    assert verdict.accepted is accepted
    assert verdict.reason == reason
