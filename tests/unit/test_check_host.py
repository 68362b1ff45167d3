"""strata check --host: rules that need the host tree, against fake host roots holding this
machine's real glibc (copied, and for one test made to look older) and real programs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from strata.check.findings import Rule, Severity
from strata.check.host import HostView
from strata.errors import StrataError
from tests.unit.test_check_support import (
    by_rule,
    copy_into,
    copy_lib,
    findings,
    machine_lib,
    make_host,
    make_image,
    program,
    this_python,
)

E, W, I = Severity.ERROR, Severity.WARNING, Severity.INFO  # noqa: E741

needs_jq = pytest.mark.skipif(
    not os.path.exists("/usr/bin/jq") or machine_lib("libjq.so.1") is None
    or machine_lib("libonig.so.5") is None, reason="jq, libjq1 and libonig5 are not installed")


def _arch() -> str:
    arch = this_python().arch
    assert arch is not None
    return arch


def test_host_must_be_a_directory(tmp_path: Path) -> None:
    with pytest.raises(StrataError, match="not a directory"):
        HostView(str(tmp_path / "nope"))


def test_host_facts(tmp_path: Path) -> None:
    host = HostView(str(make_host(tmp_path)))
    assert host.arch == _arch()
    glibc = host.glibc(this_python())
    assert glibc is not None and glibc[0] >= (2, 17)
    assert not isinstance(host.release, Exception) and host.release.id == "debian"


@needs_jq
def test_library_closure(tmp_path: Path) -> None:
    """jq needs libjq, which needs libonig: each missing one is named with its package, and
    once the image carries both, nothing is missing."""
    host = make_host(tmp_path)
    img = make_image(tmp_path, "jq", {}, {"ID": "debian", "VERSION_ID": "12",
                                          "ARCHITECTURE": _arch()})
    copy_into(img, "/usr/bin/jq")
    found = findings(img, host=host)
    assert by_rule(found, Rule.ELF_NEEDED) == [(E, "/usr/bin/jq")]
    jq = next(f for f in found if f.rule is Rule.ELF_NEEDED)
    assert jq.message.startswith("needs libjq.so.1:")
    assert jq.hint == "add the package libjq1 to the image or to the host"

    libjq = machine_lib("libjq.so.1")
    assert libjq is not None
    libjq = copy_lib(img, "libjq.so.1")
    found = findings(img, host=host)
    assert by_rule(found, Rule.ELF_NEEDED) == [(E, libjq)]
    assert "libonig.so.5" in found[0].message and "libonig5" in (found[0].hint or "")

    copy_lib(img, "libonig.so.5")
    found = findings(img, host=host)
    assert by_rule(found, Rule.ELF_NEEDED) == []
    assert by_rule(found, Rule.ELF_GLIBC) == []
    assert by_rule(found, Rule.HOST_COMPATIBILITY) == []
    assert by_rule(found, Rule.ELF_ARCH) == []


def test_host_without_libc(tmp_path: Path) -> None:
    host = make_host(tmp_path, libc=False)
    img = make_image(tmp_path, "p", {})
    copy_into(img, program(), "/usr/bin/p")
    found = [f for f in findings(img, host=host) if f.rule is Rule.ELF_NEEDED]
    assert [(f.severity, f.path) for f in found] == [(E, "/usr/bin/p"), (E, "/usr/bin/p")]
    assert any("libc.so.6" in f.message for f in found)
    assert any("interpreter" in f.message for f in found)
    assert all(f.hint for f in found)


def test_unknown_package_hint(tmp_path: Path) -> None:
    host = make_host(tmp_path, libc=False)
    img = make_image(tmp_path, "p", {})
    copy_into(img, program(), "/usr/bin/p")
    found = findings(img, host=host, packages={})
    libc = next(f for f in found if f.rule is Rule.ELF_NEEDED and "libc.so.6" in f.message)
    assert "add a package providing" in (libc.hint or "") and "libc.so.6" in (libc.hint or "")


def test_newer_glibc_than_the_host(tmp_path: Path) -> None:
    """A copy of this machine's libc with every version newer than the program's newest need
    renamed: the host looks one glibc release too old."""
    from strata.check.elf import read_info

    with open(program(), "rb") as f:
        need = read_info(f).max_glibc()
    assert need is not None
    version, lib = need
    older = (*version[:-1], version[-1] - 1)
    host = make_host(tmp_path, glibc_upto=older)
    view = HostView(str(host))
    have = view.glibc(this_python())
    assert have is not None and have[0] < version
    img = make_image(tmp_path, "p", {})
    copy_into(img, program(), "/usr/bin/p")
    found = findings(img, host=host)
    assert by_rule(found, Rule.ELF_GLIBC) == [(E, "/usr/bin/p")]
    msg = next(f for f in found if f.rule is Rule.ELF_GLIBC).message
    v = ".".join(map(str, version))
    assert f"needs GLIBC_{v} from {lib}" in msg
    assert f"host's glibc is {'.'.join(map(str, have[0]))}" in msg
    # the same host with its real glibc: nothing to say
    (tmp_path / "real").mkdir()
    real_host = make_host(tmp_path / "real")
    assert by_rule(findings(img, host=real_host), Rule.ELF_GLIBC) == []


def test_host_compatibility(tmp_path: Path) -> None:
    host = make_host(tmp_path, os_release={"ID": "fedora", "VERSION_ID": "40"})
    deb = make_image(tmp_path, "deb", {"usr/share/x": "x"},
                     {"ID": "debian", "VERSION_ID": "12"})
    found = findings(deb, host=host)
    assert by_rule(found, Rule.HOST_COMPATIBILITY) == [
        (E, "/usr/lib/extension-release.d/extension-release.deb")]
    assert "is for OS 'debian', but deployed on top of 'fedora'" in found[0].message
    anyos = make_image(tmp_path, "anyos", {"usr/share/x": "x"})
    assert by_rule(findings(anyos, host=host), Rule.HOST_COMPATIBILITY) == []
    wrong_arch = make_image(tmp_path, "wa", {"usr/share/x": "x"},
                            {"ID": "_any", "ARCHITECTURE": "s390"})
    found = findings(wrong_arch, host=host)
    assert by_rule(found, Rule.HOST_COMPATIBILITY) == [
        (E, "/usr/lib/extension-release.d/extension-release.wa")]
    assert "architecture 's390'" in found[0].message


def test_host_without_os_release(tmp_path: Path) -> None:
    host = tmp_path / "bare"
    host.mkdir()
    img = make_image(tmp_path, "x", {"usr/share/x": "x"})
    found = findings(img, host=host)
    assert by_rule(found, Rule.HOST_COMPATIBILITY) == [(W, "/")]
    assert "os-release" in found[0].message


def test_usr_sbin_over_merged_bin_host(tmp_path: Path) -> None:
    merged = make_host(tmp_path / "m", {"usr/sbin": "->bin", "usr/bin/ip": "x"}, libc=False)
    split = make_host(tmp_path / "s", {"usr/sbin/ip": "x"}, libc=False)
    img = make_image(tmp_path, "sb", {"usr/sbin/daemon": "d"})
    found = findings(img, host=merged)
    assert by_rule(found, Rule.USR_SBIN) == [(E, "/usr/sbin")]
    assert "/usr/sbin -> bin" in found[0].message
    assert by_rule(found, Rule.TYPE_CLASH) == []  # said once
    assert by_rule(findings(img, host=split), Rule.USR_SBIN) == []


def test_shadows_host(tmp_path: Path) -> None:
    host = make_host(tmp_path, {
        "usr/bin/tool": "host tool\n", "usr/share/doc/x/notes": "host\n",
        "usr/share/x/same-1": "same\n", "usr/share/x/same-2": "same too\n",
        "usr/lib/libfoo.so.1": "->libfoo.so.1.0", "usr/lib/libfoo.so.1.0": "lib",
        "usr/share/x/link": "->same-1",
    }, libc=False)
    img = make_image(tmp_path, "sh", {
        "usr/bin/tool": "my tool\n", "usr/share/doc/x/notes": "mine\n",
        "usr/share/x/same-1": "same\n", "usr/share/x/same-2": "same too\n",
        "usr/lib/libfoo.so.1": "->libfoo.so.1.1", "usr/lib/libfoo.so.1.1": "lib",
        "usr/share/x/link": "->same-1", "usr/share/x/new": "new\n",
    })
    found = findings(img, host=host)
    assert by_rule(found, Rule.SHADOWS_HOST) == [
        (E, "/usr/bin/tool"), (E, "/usr/lib/libfoo.so.1"), (W, "/usr/share/doc/x/notes"),
        (I, "/usr/share/x/link")]
    same = next(f for f in found if f.severity is I and f.rule is Rule.SHADOWS_HOST)
    assert "2 more" in same.message  # link, same-1, same-2


def test_type_clash(tmp_path: Path) -> None:
    host = make_host(tmp_path, {"usr/lib64": "->lib", "usr/lib/libx.so.1": "x",
                                "usr/share/doc/": 0o755, "usr/share/thing": "file"},
                     libc=False)
    img = make_image(tmp_path, "tc", {"usr/lib64/libx.so.1": "mine", "usr/share/doc": "a file",
                                      "usr/share/thing/inside": "x"})
    found = findings(img, host=host)
    assert by_rule(found, Rule.TYPE_CLASH) == [
        (E, "/usr/lib64"), (E, "/usr/share/doc"), (E, "/usr/share/thing")]
    assert "symlink /usr/lib64 -> lib" in found[0].message
    # nothing below the directory that replaced the symlink shadows anything
    assert by_rule(found, Rule.SHADOWS_HOST) == []


def test_dangling_symlinks_against_host(tmp_path: Path) -> None:
    host = make_host(tmp_path, {"usr/share/host/data": "d", "etc/alternatives/ed": "->/bin/ed",
                                "bin/ed": "x"}, libc=False)
    img = make_image(tmp_path, "dl", {
        "usr/share/l/ok": "->/usr/share/host/data",
        "usr/share/l/alt": "->/etc/alternatives/ed",
        "usr/share/l/gone": "->/usr/share/host/missing",
    })
    found = findings(img, host=host)
    assert by_rule(found, Rule.DANGLING_SYMLINK) == [(W, "/usr/share/l/gone")]
    assert "neither in the image nor on the host" in found[0].message


def test_elf_arch_against_host_without_architecture(tmp_path: Path) -> None:
    from tests.unit.test_check_support import fake_elf

    host = make_host(tmp_path)
    foreign = 183 if _arch() != "arm64" else 62
    img = make_image(tmp_path, "fa", {"usr/lib/fa/lib.so": fake_elf(foreign)})
    found = findings(img, host=host)
    got = by_rule(found, Rule.ELF_ARCH)
    assert got == [(E, "/usr/lib/fa/lib.so"), (W, "/usr/lib/fa/lib.so")]
    assert f"the host is {_arch()}" in found[0].message


@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="not a dpkg system")
def test_package_lookup_on_this_machine() -> None:
    from strata.check.packages import lookup

    libc = machine_lib("libc.so.6")
    assert libc is not None
    found = lookup(["libc.so.6", "libsurely-not-there.so.77"])
    assert found.get("libc.so.6") == "libc6"
    assert "libsurely-not-there.so.77" not in found


def test_check_against_this_machine(tmp_path: Path) -> None:
    """--host / with a real program: everything is found; the program is this machine's own
    copy, so it is noted as identical."""
    img = make_image(tmp_path, "self", {}, {"ID": "_any", "ARCHITECTURE": _arch()})
    prog = os.path.realpath(program())
    copy_into(img, prog, "/usr/bin/" + os.path.basename(prog) + "-copy")
    found = findings(img, host=Path("/"))
    assert [f for f in found if f.severity is not I] == []
