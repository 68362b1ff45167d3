"""strata check: each rule on a crafted directory image, without a host (layout, release file,
permissions, ELF architecture, overlaps between images). Host-dependent rules are in
test_check_host.py, image formats and the CLI in test_check_images.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from strata.check.elf import ET_REL
from strata.check.findings import (
    EXIT_CLEAN,
    EXIT_ERROR,
    EXIT_WARNING,
    Finding,
    ImageReport,
    Rule,
    Severity,
    exit_status,
)
from strata.model import ExtClass
from tests.unit.test_check_support import (
    ANY,
    by_rule,
    copy_into,
    fake_elf,
    findings,
    machine_lib,
    make_image,
    program,
    run_check,
)

E, W, I = Severity.ERROR, Severity.WARNING, Severity.INFO  # noqa: E741

SYSEXT_REL = "/usr/lib/extension-release.d"


def rules(found: list[Finding]) -> set[Rule]:
    return {f.rule for f in found}


# --- a clean image -------------------------------------------------------------------------


def test_clean_image_has_no_findings(tmp_path: Path) -> None:
    img = make_image(tmp_path, "clean", {
        "usr/share/clean/data": "x\n",
        "usr/share/clean/link": "->data",
        "usr/lib/clean/": 0o755,
        "opt/clean/tool": "#!/bin/sh\n",
    }, {"ID": "debian", "VERSION_ID": "12"})
    os.chmod(img / "opt/clean/tool", 0o755)
    reports = run_check([img])
    assert reports[0].findings == ()
    assert reports[0].name == "clean" and reports[0].description == "sysext, directory"
    assert exit_status(reports) == EXIT_CLEAN


# --- layout ----------------------------------------------------------------------------------


def test_outside_hierarchy(tmp_path: Path) -> None:
    img = make_image(tmp_path, "out", {
        "usr/share/x": "x", "etc/out.conf": "a=b\n", "var/lib/out/state": "s",
        "srv/": 0o755,  # empty: harmless
    })
    found = findings(img)
    assert by_rule(found, Rule.OUTSIDE_HIERARCHY) == [(W, "/etc"), (W, "/var")]
    etc = next(f for f in found if f.path == "/etc")
    assert "confext" in (etc.hint or "") and "1 file" in etc.message


def test_other_class_release_dir_is_not_outside(tmp_path: Path) -> None:
    """An image may carry both release files; the confext one alone in /etc is fine."""
    img = make_image(tmp_path, "both", {
        "usr/share/x": "x", "etc/extension-release.d/extension-release.both": "ID=_any\n"})
    found = findings(img, cls=ExtClass.SYSEXT)
    assert by_rule(found, Rule.OUTSIDE_HIERARCHY) == []


def test_confext_with_usr_is_outside(tmp_path: Path) -> None:
    img = make_image(tmp_path, "conf", {"etc/conf/a": "a", "usr/bin/tool": "t"}, confext=True)
    found = findings(img)
    assert by_rule(found, Rule.OUTSIDE_HIERARCHY) == [(W, "/usr")]
    assert "sysext" in (found[0].hint or "")


@pytest.mark.parametrize("top", ["bin", "sbin", "lib", "lib64"])
def test_root_directory(tmp_path: Path, top: str) -> None:
    img = make_image(tmp_path, "root", {f"{top}/thing": "x", "usr/share/x": "x"})
    found = findings(img)
    assert by_rule(found, Rule.ROOT_DIRECTORY) == [(E, f"/{top}")]
    assert by_rule(found, Rule.OUTSIDE_HIERARCHY) == []  # said once
    assert f"/usr/{top}" in (found[0].hint or "")


def test_root_directory_symlink_is_harmless(tmp_path: Path) -> None:
    img = make_image(tmp_path, "ok", {"lib": "->usr/lib", "bin/": 0o755, "usr/share/x": "x"})
    assert by_rule(findings(img), Rule.ROOT_DIRECTORY) == []


def test_release_missing(tmp_path: Path) -> None:
    img = make_image(tmp_path, "norel", {"usr/share/x": "x"}, release=None)
    found = findings(img)
    assert by_rule(found, Rule.RELEASE_MISSING) == [
        (E, f"{SYSEXT_REL}/extension-release.norel")]
    assert "ID=" in (found[0].hint or "")


def test_release_missing_for_confext_guessed_from_content(tmp_path: Path) -> None:
    img = make_image(tmp_path, "conf", {"etc/conf/a": "a"}, release=None)
    reports = run_check([img])
    assert reports[0].description == "confext, directory"
    assert by_rule(list(reports[0].findings), Rule.RELEASE_MISSING) == [
        (E, "/etc/extension-release.d/extension-release.conf")]


def test_release_named_for_another_image(tmp_path: Path) -> None:
    img = make_image(tmp_path, "app", {"usr/share/x": "x"}, release_name="other")
    found = findings(img)
    assert by_rule(found, Rule.RELEASE_NAME) == [(E, f"{SYSEXT_REL}/extension-release.other")]
    assert "extension-release.app" in (found[0].hint or "")


def test_release_name_with_version_suffix_matches(tmp_path: Path) -> None:
    """foo_1.2 matches extension-release.foo (systemd cuts at "_")."""
    img = make_image(tmp_path, "app_1.2", {"usr/share/x": "x"}, release_name="app")
    found = findings(img)
    assert rules(found) & {Rule.RELEASE_NAME, Rule.RELEASE_MISSING} == set()


def test_release_accepted_by_strict_xattr(tmp_path: Path) -> None:
    img = make_image(tmp_path, "app", {"usr/share/x": "x"}, release_name="other")
    rel = img / "usr/lib/extension-release.d/extension-release.other"
    try:
        os.setxattr(rel, "user.extension-release.strict", b"false")
    except OSError:
        pytest.skip("user xattrs are not supported here")
    assert by_rule(findings(img), Rule.RELEASE_NAME) == [(I, str(rel)[len(str(img)):])]


def test_release_not_a_regular_file(tmp_path: Path) -> None:
    img = make_image(tmp_path, "app", {"usr/share/x": "x",
                                       f"{SYSEXT_REL}/extension-release.app": "->missing"},
                     release=None)
    assert by_rule(findings(img), Rule.RELEASE_NAME) == [
        (E, f"{SYSEXT_REL}/extension-release.app")]


def test_release_malformed(tmp_path: Path) -> None:
    img = make_image(tmp_path, "bad", {"usr/share/x": "x",
                                       f"{SYSEXT_REL}/extension-release.bad": b"ID=\xff\xfe\n"},
                     release=None)
    found = findings(img)
    assert by_rule(found, Rule.RELEASE_FIELDS) == [(E, f"{SYSEXT_REL}/extension-release.bad")]
    assert "UTF-8" in found[0].message


@pytest.mark.parametrize(("release", "expected"), [
    ({"VERSION_ID": "12"}, [(E, "no ID=")]),
    ({"ID": "_any", "ARCHITECTURE": "amd64"}, [(E, "ARCHITECTURE=amd64")]),
    ({"ID": "_any", "SYSEXT_SCOPE": '""'}, [(E, "empty")]),
    ({"ID": "_any", "SYSEXT_SCOPE": '"system host"'}, [(W, "unknown values: host")]),
    ({"ID": "debian"}, [(W, "without VERSION_ID=")]),
    ({"ID": "debian", "SYSEXT_LEVEL": "1.0"}, []),
    ({"ID": "debian", "VERSION_ID": "12", "ARCHITECTURE": "x86-64"}, []),
    ({"ID": "_any", "ARCHITECTURE": "_any", "SYSEXT_SCOPE": "initrd"}, []),
])
def test_release_fields(tmp_path: Path, release: dict[str, str],
                        expected: list[tuple[Severity, str]]) -> None:
    img = make_image(tmp_path, "rel", {"usr/share/x": "x"}, release)
    got = [(f.severity, f.message) for f in findings(img) if f.rule is Rule.RELEASE_FIELDS]
    assert len(got) == len(expected), got
    for (sev, msg), (want_sev, want) in zip(got, expected, strict=True):
        assert sev is want_sev and want in msg


def test_os_release(tmp_path: Path) -> None:
    img = make_image(tmp_path, "osr", {"usr/lib/os-release": "ID=debian\n", "usr/share/x": "x"})
    assert by_rule(findings(img), Rule.OS_RELEASE) == [(E, "/usr/lib/os-release")]


def test_confext_os_release(tmp_path: Path) -> None:
    img = make_image(tmp_path, "c", {"etc/os-release": "ID=debian\n"}, confext=True)
    assert by_rule(findings(img), Rule.OS_RELEASE) == [(W, "/etc/os-release")]


def test_usr_sbin_without_host(tmp_path: Path) -> None:
    img = make_image(tmp_path, "sb", {"usr/sbin/daemon": "d"})
    found = findings(img)
    assert by_rule(found, Rule.USR_SBIN) == [(W, "/usr/sbin")]
    assert "/usr/bin" in (found[0].hint or "")
    link = make_image(tmp_path, "sl", {"usr/sbin": "->bin", "usr/bin/daemon": "d"})
    assert by_rule(findings(link), Rule.USR_SBIN) == []


def test_no_content(tmp_path: Path) -> None:
    img = make_image(tmp_path, "empty", {})
    assert by_rule(findings(img), Rule.NO_CONTENT) == [(W, "/")]


def test_image_name_suffix(tmp_path: Path) -> None:
    """Images are files; only *.raw is picked up. Checked with a real erofs image."""
    from tests.unit.imagetree import needs

    if needs("mkfs.erofs").args[0]:
        pytest.skip("mkfs.erofs is not installed")
    from tests.helpers import mkfs

    tree = make_image(tmp_path, "app", {"usr/share/x": "x"})
    img = mkfs(tree, tmp_path / "app.img")
    found = findings(img)
    assert by_rule(found, Rule.IMAGE_NAME) == [(W, "/")]
    assert found[0].hint == "rename it to app.raw"
    raw = mkfs(tree, tmp_path / "app.raw")
    assert findings(raw) == []


# --- permissions -----------------------------------------------------------------------------


def test_setuid_and_setgid(tmp_path: Path) -> None:
    img = make_image(tmp_path, "su", {"usr/bin/su": "x", "usr/bin/wall": "x", "usr/bin/ok": "x",
                                      "usr/lib/sgid-dir/": 0o2755})
    os.chmod(img / "usr/bin/su", 0o4755)
    os.chmod(img / "usr/bin/wall", 0o2755)
    found = findings(img)
    assert by_rule(found, Rule.SETUID) == [(W, "/usr/bin/su"), (W, "/usr/bin/wall")]
    su = next(f for f in found if f.path == "/usr/bin/su")
    assert su.message.startswith("setuid (owner 0:0, mode 4755)")


def test_setuid_in_confext_is_only_noted(tmp_path: Path) -> None:
    img = make_image(tmp_path, "c", {"etc/c/helper": "x"}, confext=True)
    os.chmod(img / "etc/c/helper", 0o4755)
    found = findings(img)
    assert by_rule(found, Rule.SETUID) == [(I, "/etc/c/helper")]
    assert "nosuid" in found[0].message


def test_world_writable(tmp_path: Path) -> None:
    img = make_image(tmp_path, "ww", {"usr/share/ww/file": "x", "usr/share/ww/dir/": 0o777,
                                      "usr/share/ww/tmp/": 0o1777, "usr/share/ww/ok": "y",
                                      "usr/share/ww/link": "->ok"})
    os.chmod(img / "usr/share/ww/file", 0o666)
    os.chmod(img / "usr/share/ww/dir", 0o777)  # umask may have taken bits
    os.chmod(img / "usr/share/ww/tmp", 0o1777)
    assert by_rule(findings(img), Rule.WORLD_WRITABLE) == [
        (W, "/usr/share/ww/dir"), (W, "/usr/share/ww/file")]


def test_special_files(tmp_path: Path) -> None:
    img = make_image(tmp_path, "sp", {"usr/share/sp/": 0o755})
    os.mkfifo(img / "usr/share/sp/fifo")
    expected = [(W, "/usr/share/sp/fifo")]
    if os.geteuid() == 0:
        os.mknod(img / "usr/share/sp/null", 0o666 | 0o020000, os.makedev(1, 3))
        expected.append((W, "/usr/share/sp/null"))
    found = findings(img)
    assert by_rule(found, Rule.SPECIAL_FILE) == expected
    if os.geteuid() == 0:
        assert any("nodev" in f.message for f in found if f.path.endswith("null"))


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_ownership_is_one_finding(tmp_path: Path) -> None:
    img = make_image(tmp_path, "own", {"usr/share/own/a": "a", "usr/share/own/b": "b"})
    for name in ("a", "b"):
        os.chown(img / "usr/share/own" / name, 1000, 1000)
    found = findings(img)
    assert by_rule(found, Rule.OWNERSHIP) == [(W, "/usr/share/own/a")]
    assert "1000:1000" in found[0].message and "1 more" in found[0].message


def test_dangling_symlinks_without_host(tmp_path: Path) -> None:
    img = make_image(tmp_path, "dl", {
        "usr/lib/dl/ok": "->target", "usr/lib/dl/target": "t",
        "usr/lib/dl/abs-ok": "/usr/lib/dl/target",
        "usr/lib/dl/up-ok": "->../dl/./target",
        "usr/lib/dl/escape-ok": "->../../../../usr/lib/dl/target",  # ".." stops at the root
        "usr/lib/dl/gone": "->missing",
        "usr/bin/alt": "->/etc/alternatives/alt",
        "usr/lib/dl/loop-a": "->loop-b", "usr/lib/dl/loop-b": "->loop-a",
    })
    found = findings(img)
    assert by_rule(found, Rule.DANGLING_SYMLINK) == [
        (W, "/usr/lib/dl/loop-a"), (W, "/usr/lib/dl/loop-b"), (I, "/usr/bin/alt"),
        (I, "/usr/lib/dl/gone")]
    loop = next(f for f in found if f.path == "/usr/lib/dl/loop-a")
    assert "too many levels" in loop.message


def test_symlink_into_unmerged_part_is_dangling(tmp_path: Path) -> None:
    """/usr/bin/x -> /lib/x: the image's /lib is never merged, so the link leads nowhere."""
    img = make_image(tmp_path, "ul", {"usr/bin/x": "->/lib/x", "lib/x": "x"})
    assert by_rule(findings(img), Rule.DANGLING_SYMLINK) == [(I, "/usr/bin/x")]


# --- ELF, without a host ---------------------------------------------------------------------


def test_elf_arch_mismatch(tmp_path: Path) -> None:
    img = make_image(tmp_path, "arch", {
        "usr/lib/a/libarm.so.1": fake_elf(183), "usr/lib/a/libarm.so.2": fake_elf(183),
        "usr/lib/a/lib32.so.1": fake_elf(3, bits=32),
        "usr/lib/a/module.ko": fake_elf(183, etype=ET_REL),  # not loadable: not checked
        "usr/lib/firmware/dsp.elf": fake_elf(183),  # firmware is for other processors
    }, {"ID": "_any", "ARCHITECTURE": "x86-64"})
    found = findings(img)
    got = by_rule(found, Rule.ELF_ARCH)
    assert got == [(E, "/usr/lib/a/libarm.so.1"), (I, "/usr/lib/a/lib32.so.1")]
    arm = next(f for f in found if f.severity is E)
    assert "arm64" in arm.message and "1 more file" in arm.message
    assert "ARCHITECTURE=x86-64" in arm.message


def test_elf_arch_not_declared(tmp_path: Path) -> None:
    img = make_image(tmp_path, "na", {"usr/lib/na/lib.so.1": fake_elf(183)})
    found = findings(img)
    assert by_rule(found, Rule.ELF_ARCH) == [(W, "/usr/lib/na/lib.so.1")]
    assert found[0].hint == "set ARCHITECTURE=arm64 in the release file"


def test_elf_arch_matches(tmp_path: Path) -> None:
    img = make_image(tmp_path, "ok", {"usr/lib/ok/lib.so.1": fake_elf(183)},
                     {"ID": "_any", "ARCHITECTURE": "arm64"})
    assert by_rule(findings(img), Rule.ELF_ARCH) == []


def test_elf_unreadable(tmp_path: Path) -> None:
    img = make_image(tmp_path, "bad", {
        "usr/lib/bad/broken.so": b"\x7fELF\x02\x01\x01" + bytes(9) + b"\x03\x00\x3e\x00"
        + b"\xff" * 200})
    found = findings(img)
    assert by_rule(found, Rule.ELF_UNREADABLE) == [(W, "/usr/lib/bad/broken.so")]


def test_elf_needs_without_host_are_one_note(tmp_path: Path) -> None:
    img = make_image(tmp_path, "prog", {"usr/bin/x": b""})
    copy_into(img, program(), "/usr/bin/x")
    copy_into(img, program(), "/usr/bin/y")
    found = findings(img)
    needed = [f for f in found if f.rule is Rule.ELF_NEEDED]
    assert [(f.severity, f.path) for f in needed] == [(I, "/")]
    assert "libc.so.6" in needed[0].message and "2 files" in needed[0].message
    glibc = [f for f in found if f.rule is Rule.ELF_GLIBC]
    assert len(glibc) == 1 and glibc[0].severity is I and "GLIBC_2." in glibc[0].message


def test_library_shipped_in_the_image_is_found(tmp_path: Path) -> None:
    """A DT_NEEDED library the image itself provides (libc here, copied from this machine to
    its own path) is not listed as expected from the host."""
    libc = machine_lib("libc.so.6")
    assert libc is not None
    img = make_image(tmp_path, "full", {}, {"ID": "_any"})
    copy_into(img, program(), "/opt/app/bin/prog")
    copy_into(img, libc, "/opt/app/lib/libc.so.6")
    copy_into(img, libc)
    found = findings(img)
    note = next((f for f in found if f.rule is Rule.ELF_NEEDED), None)
    if program().endswith("jq"):
        assert note is not None and "libjq.so.1" in note.message
        assert "libc.so.6" not in note.message
    else:
        assert note is None
    assert by_rule(found, Rule.SHIPS_GLIBC) == sorted([(W, "/opt/app/lib/libc.so.6"),
                                                       (W, libc)], key=lambda sp: sp[1])


def test_runpath_origin_and_compatibility(tmp_path: Path) -> None:
    """Layered.find_library follows RUNPATH with $ORIGIN, and takes only a library of the
    program's own machine and width."""
    from strata.check.elf import ET_DYN, ElfIdent, ElfInfo
    from strata.check.view import Layered, open_view

    img = make_image(tmp_path, "rp", {"opt/app/bin/": 0o755,
                                      "opt/app/lib/libx.so.1": fake_elf(62),
                                      "opt/app/lib/liby.so.1": fake_elf(183)})
    view = open_view(str(img))
    try:
        layered = Layered(view, None)
        ident = ElfIdent(62, 64, True, ET_DYN)
        info = ElfInfo(None, ("libx.so.1",), ("$ORIGIN/../lib",), (), None)
        prog = "/opt/app/bin/prog"
        assert layered.find_library("libx.so.1", prog, ident, info) == "/opt/app/lib/libx.so.1"
        assert layered.find_library("liby.so.1", prog, ident, info) is None  # arm64
        no_runpath = ElfInfo(None, ("libx.so.1",), (), (), None)
        assert layered.find_library("libx.so.1", prog, ident, no_runpath) is None
        assert layered.find_library("/opt/app/lib/libx.so.1", prog, ident, no_runpath) == \
            "/opt/app/lib/libx.so.1"
    finally:
        view.close()


# --- overlaps between images -------------------------------------------------------------------


def test_overlap_higher_name_wins(tmp_path: Path) -> None:
    a = make_image(tmp_path, "app-a", {"usr/share/x/conf": "a", "usr/share/x/same": "s",
                                      "usr/share/x/only-a": "a"})
    b = make_image(tmp_path, "app-b", {"usr/share/x/conf": "b", "usr/share/x/same": "s"})
    ra, rb = run_check([b, a])  # order on the command line does not matter
    assert ra.image == str(b)
    got_a = {f.path: f for f in rb.findings if f.rule is Rule.OVERLAP}
    got_b = {f.path: f for f in ra.findings if f.rule is Rule.OVERLAP}
    assert got_a["/usr/share/x/conf"].severity is W
    assert "hidden by" in got_a["/usr/share/x/conf"].message and str(b) in \
        got_a["/usr/share/x/conf"].message
    assert got_a["/usr/share/x/same"].severity is I
    assert got_b["/usr/share/x/conf"].severity is I
    assert "this copy wins" in got_b["/usr/share/x/conf"].message
    assert "/usr/share/x/only-a" not in got_a


def test_overlap_order_is_version_order(tmp_path: Path) -> None:
    """strverscmp: app_10 sorts after app_9."""
    v9 = make_image(tmp_path / "9", "tool_9", {"usr/share/t": "9"}, release_name="tool")
    v10 = make_image(tmp_path / "10", "tool_10", {"usr/share/t": "10"}, release_name="tool")
    r9, r10 = run_check([v9, v10])
    assert by_rule(list(r9.findings), Rule.OVERLAP) == [(W, "/usr/share/t")]
    assert by_rule(list(r10.findings), Rule.OVERLAP) == [(I, "/usr/share/t")]


def test_overlap_same_name(tmp_path: Path) -> None:
    a = make_image(tmp_path / "1", "same", {"usr/share/a": "a"})
    b = make_image(tmp_path / "2", "same", {"usr/share/b": "b"})
    ra, rb = run_check([a, b])
    assert by_rule(list(ra.findings), Rule.OVERLAP) == []
    assert by_rule(list(rb.findings), Rule.OVERLAP) == [(E, "/")]


def test_overlap_needs_the_same_class(tmp_path: Path) -> None:
    a = make_image(tmp_path, "a", {"usr/share/a": "a"})
    c = make_image(tmp_path, "c", {"etc/a": "a"}, confext=True)
    ra, rc = run_check([a, c])
    assert ra.findings == () and rc.findings == ()


def test_directory_over_file_in_another_image(tmp_path: Path) -> None:
    a = make_image(tmp_path, "a", {"usr/share/thing": "file"})
    b = make_image(tmp_path, "b", {"usr/share/thing/inside": "x"})
    ra, rb = run_check([a, b])
    assert by_rule(list(ra.findings), Rule.OVERLAP) == [(W, "/usr/share/thing")]
    assert by_rule(list(rb.findings), Rule.OVERLAP) == [(I, "/usr/share/thing")]


# --- exit status and reports -------------------------------------------------------------------


def _report(*severities: Severity) -> ImageReport:
    return ImageReport("x", "x", "sysext, directory",
                       tuple(Finding(Rule.SETUID, s, "/p", "m") for s in severities))


@pytest.mark.parametrize(("severities", "status"), [
    ((), EXIT_CLEAN),
    ((I,), EXIT_CLEAN),
    ((I, W), EXIT_WARNING),
    ((W, E, I), EXIT_ERROR),
    ((E,), EXIT_ERROR),
])
def test_exit_status(severities: tuple[Severity, ...], status: int) -> None:
    assert exit_status([_report(*severities)]) == status
    assert exit_status([_report(), _report(*severities)]) == status


def test_unreadable_image_is_a_finding_and_others_are_checked(tmp_path: Path) -> None:
    bad = tmp_path / "bad.raw"
    bad.write_bytes(b"not an image" * 100)
    good = make_image(tmp_path, "good", {"usr/share/x": "x"})
    rb, rg = run_check([bad, good])
    assert [(f.rule, f.severity) for f in rb.findings] == [(Rule.UNREADABLE, E)]
    assert str(bad) in rb.findings[0].message
    assert rg.findings == ()
    missing = run_check([tmp_path / "nope"])[0]
    assert missing.findings[0].rule is Rule.UNREADABLE


def test_findings_are_sorted_worst_first(tmp_path: Path) -> None:
    img = make_image(tmp_path, "mix", {"usr/bin/su": "x", "lib/x": "x", "usr/bin/alt": "->/nope"})
    os.chmod(img / "usr/bin/su", 0o4755)
    ranks = [f.severity.rank for f in findings(img)]
    assert ranks == sorted(ranks, reverse=True) and len(ranks) >= 3
    assert ANY == {"ID": "_any"}


def test_ld_so_conf_of_the_image_counts_where_etc_is_merged(tmp_path: Path) -> None:
    from strata.check.elf import ET_DYN, ElfIdent, ElfInfo
    from strata.check.view import Layered, open_view

    img = make_image(tmp_path, "both", {
        "opt/app/lib/libx.so.1": fake_elf(62),
        "etc/ld.so.conf": "include /etc/ld.so.conf.d/*.conf\n",
        "etc/ld.so.conf.d/app.conf": "/opt/app/lib\n",
        "etc/extension-release.d/extension-release.both": "ID=_any\n",
    })
    ident = ElfIdent(62, 64, True, ET_DYN)
    info = ElfInfo(None, ("libx.so.1",), (), (), None)
    for cls, expected in ((None, "/opt/app/lib/libx.so.1"), (ExtClass.SYSEXT, None)):
        view = open_view(str(img), cls=cls)
        try:
            assert Layered(view, None).find_library("libx.so.1", "/usr/bin/p", ident,
                                                    info) == expected
        finally:
            view.close()
