"""systemd's architecture names, and the one the running kernel reports.

systemd compares an extension's ``ARCHITECTURE=`` with ``uname_architecture()``
(src/basic/architecture.c, v257): the kernel's ``uname().machine`` mapped through a fixed table.
Because it is uname-based, a 32-bit personality (``setarch i686``, ``linux32``) changes the
answer, exactly as it does for systemd, and so do the big-endian ``*b``/``*_be`` machine strings.

Two quirks are kept on purpose, because matching systemd matters more than being "right":

* uname cannot tell little-endian MIPS from big-endian MIPS (both report ``mips``/``mips64``),
  so systemd maps them to ``mips``/``mips64`` and never yields ``mips-le``/``mips64-le`` here;
  those names only exist for images built for such machines.
* ``riscv`` (without a width) means the width of the running program's pointers.

systemd compiles only its own CPU family's rows in; Python code is not built per CPU, so the
table below is the union of all rows. No machine string appears in two families, so the union
gives the same answer systemd would on each machine.
"""

from __future__ import annotations

import functools
import os
import struct

from strata.errors import ErrorKind, StrataError

#: every name systemd knows (architecture_table), in systemd's order
ALL: tuple[str, ...] = (
    "arm64", "arm64-be", "arm", "arm-be", "alpha", "arc", "arc-be", "cris", "x86-64", "x86",
    "ia64", "loongarch64", "m68k", "mips64-le", "mips64", "mips-le", "mips", "nios2", "parisc64",
    "parisc", "ppc64-le", "ppc64", "ppc", "ppc-le", "riscv32", "riscv64", "s390x", "s390",
    "sh64", "sh", "sparc64", "sparc", "tilegx",
)

#: uname().machine -> systemd name (uname_architecture's arch_map, all CPU families)
MACHINES: dict[str, str] = {
    # arm
    "aarch64": "arm64", "aarch64_be": "arm64-be",
    "armv8l": "arm", "armv8b": "arm-be", "armv7ml": "arm", "armv7mb": "arm-be",
    "armv7l": "arm", "armv7b": "arm-be", "armv6l": "arm", "armv6b": "arm-be",
    "armv5tl": "arm", "armv5tel": "arm", "armv5tejl": "arm", "armv5tejb": "arm-be",
    "armv5teb": "arm-be", "armv5tb": "arm-be", "armv4tl": "arm", "armv4tb": "arm-be",
    "armv4l": "arm", "armv4b": "arm-be",
    "alpha": "alpha",
    "arc": "arc", "arceb": "arc-be",
    "crisv32": "cris",
    # x86
    "x86_64": "x86-64", "i686": "x86", "i586": "x86", "i486": "x86", "i386": "x86",
    "ia64": "ia64",
    "parisc64": "parisc64", "parisc": "parisc",
    "loongarch64": "loongarch64",
    "m68k": "m68k",
    "mips64": "mips64", "mips": "mips",
    "nios2": "nios2",
    "ppc64le": "ppc64-le", "ppc64": "ppc64", "ppcle": "ppc-le", "ppc": "ppc",
    "riscv64": "riscv64", "riscv32": "riscv32",  # bare "riscv": see from_machine()
    "s390x": "s390x", "s390": "s390",
    "sh5": "sh64", "sh4a": "sh", "sh4": "sh", "sh3": "sh", "sh2a": "sh", "sh2": "sh",
    "sparc64": "sparc64", "sparc": "sparc",
    "tilegx": "tilegx",
}


def is_valid(name: str) -> bool:
    """Whether `name` is one of systemd's architecture names (architecture_from_string)."""
    return name in ALL


def from_machine(machine: str, *, pointer_bits: int | None = None) -> str:
    """Map a uname machine string to systemd's name.

    `pointer_bits` decides what a bare ``riscv`` means (systemd uses its own pointer size);
    by default this interpreter's. An unknown machine string is an UNSUPPORTED StrataError
    (systemd itself aborts with assert_not_reached there).
    """
    if machine == "riscv":
        bits = pointer_bits if pointer_bits is not None else struct.calcsize("P") * 8
        return "riscv64" if bits == 64 else "riscv32"
    try:
        return MACHINES[machine]
    except KeyError:
        raise StrataError(
            f"uname reports the machine '{machine}', which systemd has no architecture name for",
            kind=ErrorKind.UNSUPPORTED,
        ) from None


@functools.cache
def native() -> str:
    """systemd's name for the architecture this process runs as (uname_architecture()).

    Cached like systemd's: the personality does not change under a running process.
    """
    return from_machine(os.uname().machine)
