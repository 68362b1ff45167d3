"""systemd's architecture names (src/basic/architecture.c, v257)."""

from __future__ import annotations

import os

import pytest

from strata import arch
from strata.errors import ErrorKind, StrataError


@pytest.mark.parametrize(
    ("machine", "name"),
    [("x86_64", "x86-64"), ("i686", "x86"), ("i586", "x86"), ("i486", "x86"), ("i386", "x86"),
     ("aarch64", "arm64"), ("aarch64_be", "arm64-be"), ("armv8l", "arm"), ("armv8b", "arm-be"),
     ("armv7l", "arm"), ("armv7b", "arm-be"), ("armv7ml", "arm"), ("armv6l", "arm"),
     ("armv5tejl", "arm"), ("armv5teb", "arm-be"), ("armv4l", "arm"), ("armv4tb", "arm-be"),
     ("alpha", "alpha"), ("arc", "arc"), ("arceb", "arc-be"), ("crisv32", "cris"),
     ("ia64", "ia64"), ("parisc64", "parisc64"), ("parisc", "parisc"),
     ("loongarch64", "loongarch64"), ("m68k", "m68k"),
     # uname cannot see MIPS endianness; systemd reports the big-endian names
     ("mips64", "mips64"), ("mips", "mips"), ("nios2", "nios2"),
     ("ppc64le", "ppc64-le"), ("ppc64", "ppc64"), ("ppcle", "ppc-le"), ("ppc", "ppc"),
     ("riscv64", "riscv64"), ("riscv32", "riscv32"), ("s390x", "s390x"), ("s390", "s390"),
     ("sh5", "sh64"), ("sh4a", "sh"), ("sh4", "sh"), ("sh2", "sh"),
     ("sparc64", "sparc64"), ("sparc", "sparc"), ("tilegx", "tilegx")],
)
def test_from_machine(machine: str, name: str) -> None:
    assert arch.from_machine(machine) == name


@pytest.mark.parametrize(("bits", "name"), [(64, "riscv64"), (32, "riscv32")])
def test_bare_riscv_follows_pointer_size(bits: int, name: str) -> None:
    assert arch.from_machine("riscv", pointer_bits=bits) == name


@pytest.mark.parametrize("machine", ["x86-64", "amd64", "arm64", "armv9l", "", "X86_64"])
def test_unknown_machine(machine: str) -> None:
    with pytest.raises(StrataError) as ei:
        arch.from_machine(machine)
    assert ei.value.kind is ErrorKind.UNSUPPORTED
    assert f"'{machine}'" in str(ei.value)


def test_table_is_consistent() -> None:
    assert len(arch.ALL) == len(set(arch.ALL)) == 33
    assert set(arch.MACHINES.values()) <= set(arch.ALL)
    # every systemd name but the little-endian MIPS ones is reachable from some uname string
    unreachable = set(arch.ALL) - set(arch.MACHINES.values())
    assert unreachable == {"mips-le", "mips64-le"}
    assert all(arch.is_valid(n) for n in arch.ALL)
    assert not arch.is_valid("x86_64")


def test_native_matches_uname() -> None:
    assert arch.native() == arch.from_machine(os.uname().machine)
    assert arch.is_valid(arch.native())
    if os.uname().machine == "x86_64":
        assert arch.native() == "x86-64"
