"""strata.check.elf and strata.check.libs: ELF identification, architecture names, glibc
versions, the loader's search path, ld.so.conf; and the real dynamic data of this machine's
programs."""

from __future__ import annotations

import os
import posixpath

import pytest

from strata.check.elf import (
    ET_DYN,
    ET_EXEC,
    ET_REL,
    ElfIdent,
    ElfInfo,
    arch_of,
    format_version,
    glibc_version,
    parse_ident,
    read_info,
)
from strata.check.libs import (
    expand_dst,
    ld_so_conf_dirs,
    parse_ld_so_conf,
    search_dirs,
    trusted_dirs,
)
from tests.unit.test_check_support import fake_elf, machine_lib, program

X86_64 = ElfIdent(machine=62, bits=64, little=True, type=ET_DYN)
X86 = ElfIdent(machine=3, bits=32, little=True, type=ET_EXEC)


@pytest.mark.parametrize(("machine", "bits", "little", "arch"), [
    (62, 64, True, "x86-64"),
    (62, 32, True, None),  # x32
    (3, 32, True, "x86"),
    (183, 64, True, "arm64"),
    (183, 64, False, "arm64-be"),
    (40, 32, True, "arm"),
    (40, 32, False, "arm-be"),
    (243, 64, True, "riscv64"),
    (243, 32, True, "riscv32"),
    (21, 64, True, "ppc64-le"),
    (21, 64, False, "ppc64"),
    (20, 32, False, "ppc"),
    (22, 64, False, "s390x"),
    (22, 32, False, "s390"),
    (8, 64, True, "mips64-le"),
    (8, 32, False, "mips"),
    (258, 64, True, "loongarch64"),
    (0x9026, 64, True, "alpha"),
    (43, 64, False, "sparc64"),
    (2, 32, False, "sparc"),
    (15, 64, False, "parisc64"),
    (247, 64, True, None),  # BPF
])
def test_arch_of(machine: int, bits: int, little: bool, arch: str | None) -> None:
    assert arch_of(machine, bits, little) == arch


def test_every_arch_name_is_systemds() -> None:
    from strata import arch

    for machine in (*range(0, 300), 0x9026):
        for bits in (32, 64):
            for little in (True, False):
                name = arch_of(machine, bits, little)
                assert name is None or arch.is_valid(name), (machine, bits, little, name)


@pytest.mark.parametrize(("head", "expected"), [
    (fake_elf(183), ElfIdent(183, 64, True, ET_DYN)),
    (fake_elf(3, bits=32, etype=ET_EXEC), ElfIdent(3, 32, True, ET_EXEC)),
    (fake_elf(22, little=False, etype=ET_REL), ElfIdent(22, 64, False, ET_REL)),
    (b"\x7fELF", None),  # too short
    (b"#!/bin/sh\n" + bytes(20), None),
    (b"\x7fELF\x03\x01" + bytes(20), None),  # bad class
    (b"\x7fELF\x02\x00" + bytes(20), None),  # bad data
])
def test_parse_ident(head: bytes, expected: ElfIdent | None) -> None:
    assert parse_ident(head[:20]) == expected


def test_ident_properties() -> None:
    assert X86_64.arch == "x86-64" and X86_64.loadable
    assert not ElfIdent(62, 64, True, ET_REL).loadable
    assert X86_64.compatible(ElfIdent(62, 64, True, ET_EXEC))
    assert not X86_64.compatible(X86)
    assert not X86_64.compatible(ElfIdent(62, 64, False, ET_DYN))


@pytest.mark.parametrize(("name", "version"), [
    ("GLIBC_2.34", (2, 34)),
    ("GLIBC_2.2.5", (2, 2, 5)),
    ("GLIBC_PRIVATE", None),
    ("GLIBC_ABI_DT_RELR", None),
    ("OPENSSL_3.0.0", None),
    ("GLIBC_2", None),
    ("XGLIBC_2.3", None),
])
def test_glibc_version(name: str, version: tuple[int, ...] | None) -> None:
    assert glibc_version(name) == version


def test_glibc_versions_compare_numerically() -> None:
    """2.10 is newer than 2.9, 2.3.4 newer than 2.3: tuples, not strings."""
    info = ElfInfo(None, ("libc.so.6",), (), (), None,
                   (("libc.so.6", ("GLIBC_2.9", "GLIBC_2.10", "GLIBC_2.3.4")),
                    ("libm.so.6", ("GLIBC_2.2.5", "GLIBC_PRIVATE"))))
    assert info.max_glibc() == ((2, 10), "libc.so.6")
    assert format_version((2, 10)) == "2.10"
    libc = ElfInfo(None, (), (), (), "libc.so.6", (),
                   ("GLIBC_2.2.5", "GLIBC_2.36", "GLIBC_2.4", "GLIBC_PRIVATE"))
    assert libc.glibc_provided() == (2, 36)
    assert ElfInfo(None, (), (), (), None).max_glibc() is None


def test_read_info_of_a_real_program() -> None:
    path = program()
    with open(path, "rb") as f:
        info = read_info(f)
    assert "libc.so.6" in info.needed
    assert info.interpreter is not None and "ld" in posixpath.basename(info.interpreter)
    need = info.max_glibc()
    assert need is not None and need[0] >= (2, 2)
    libc = machine_lib("libc.so.6")
    assert libc is not None
    with open(libc, "rb") as f:
        libc_info = read_info(f)
    assert libc_info.soname == "libc.so.6"
    provided = libc_info.glibc_provided()
    assert provided is not None and provided >= need[0]


def test_read_info_of_a_library_with_runpath_or_soname() -> None:
    jq = machine_lib("libjq.so.1")
    if jq is None:
        pytest.skip("libjq1 is not installed")
    with open(jq, "rb") as f:
        info = read_info(f)
    assert info.soname == "libjq.so.1"
    assert any(n.startswith("libonig.so.") for n in info.needed)


def test_read_info_of_garbage_raises() -> None:
    import io

    with pytest.raises(Exception):  # noqa: B017 - whatever pyelftools raises is reported
        read_info(io.BytesIO(b"\x7fELF\x02\x01\x01" + b"\xff" * 100))


@pytest.mark.parametrize(("entry", "expected"), [
    ("$ORIGIN/../lib", "/usr/bin/../lib"),
    ("${ORIGIN}/lib", "/usr/bin/lib"),
    ("/opt/app/$LIB", "/opt/app/lib64"),
    ("/opt/app/${LIB}/x", "/opt/app/lib64/x"),
    ("/usr/lib/app", "/usr/lib/app"),
    ("lib", None),  # relative: depends on the working directory
    ("/x/$PLATFORM", None),
])
def test_expand_dst(entry: str, expected: str | None) -> None:
    assert expand_dst(entry, "/usr/bin", X86_64) == expected


def test_expand_lib_for_32_bit() -> None:
    assert expand_dst("/opt/$LIB", "/", X86) == "/opt/lib"


def test_trusted_dirs() -> None:
    assert trusted_dirs(X86_64) == ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu",
                                    "/lib64", "/usr/lib64", "/lib", "/usr/lib")
    assert trusted_dirs(X86)[:2] == ("/lib/i386-linux-gnu", "/usr/lib/i386-linux-gnu")
    assert "/usr/lib32" in trusted_dirs(X86)
    arm = ElfIdent(40, 32, True, ET_DYN)
    assert "/usr/lib/arm-linux-gnueabihf" in trusted_dirs(arm)


def test_search_dirs_order() -> None:
    """RPATH is ignored when RUNPATH is there; then ld.so.conf, then the trusted dirs."""
    with_runpath = ElfInfo(None, ("libx.so.1",), ("$ORIGIN/../lib/app",), ("/ignored",), None)
    dirs = search_dirs(with_runpath, X86_64, "/usr/bin/tool", ["/usr/local/lib"])
    assert dirs[:2] == ("/usr/bin/../lib/app", "/usr/local/lib")
    assert "/ignored" not in dirs
    assert dirs[-1] == "/usr/lib"
    rpath_only = ElfInfo(None, (), (), ("/opt/x/lib/",), None)
    assert search_dirs(rpath_only, X86_64, "/opt/x/bin/t", [])[0] == "/opt/x/lib"
    # no repeats
    twice = ElfInfo(None, (), ("/usr/lib",), (), None)
    dirs = search_dirs(twice, X86_64, "/usr/bin/t", ["/usr/lib"])
    assert dirs.count("/usr/lib") == 1


def test_parse_ld_so_conf() -> None:
    text = ("# comment\ninclude /etc/ld.so.conf.d/*.conf\n/usr/local/lib  # trailing\n"
            "hwcap 1 nosegneg\n/opt/a:/opt/b,/opt/c=ELF\n\n/usr/lib/x/\n")
    dirs, includes = parse_ld_so_conf(text)
    assert dirs == ["/usr/local/lib", "/opt/a", "/opt/b", "/opt/c", "/usr/lib/x"]
    assert includes == ["/etc/ld.so.conf.d/*.conf"]


def test_ld_so_conf_dirs_with_includes() -> None:
    files = {
        "/etc/ld.so.conf": "include /etc/ld.so.conf.d/*.conf\ninclude rel.conf\n/top\n",
        "/etc/ld.so.conf.d/b.conf": "/b\n",
        "/etc/ld.so.conf.d/a.conf": "/a\ninclude /etc/ld.so.conf\n",  # a loop: read once
        "/etc/ld.so.conf.d/skip.txt": "/never\n",
        "/etc/rel.conf": "/rel\n",
    }

    def listdir(d: str) -> list[str]:
        return [p[len(d) + 1:] for p in files if posixpath.dirname(p) == d]

    assert ld_so_conf_dirs(files.get, listdir) == ["/top", "/a", "/b", "/rel"]
    assert ld_so_conf_dirs(lambda _p: None, listdir) == []


@pytest.mark.skipif(not os.path.exists("/etc/ld.so.conf"), reason="no /etc/ld.so.conf")
def test_this_machines_ld_so_conf() -> None:
    from strata.check.host import HostView

    dirs = HostView("/").conf_dirs
    libc = machine_lib("libc.so.6")
    assert libc is not None
    # the multiarch directory of libc is configured on Debian, or trusted elsewhere
    assert posixpath.dirname(libc) in dirs or posixpath.dirname(libc) in (
        "/usr/lib64", "/usr/lib", "/lib64", "/lib")
