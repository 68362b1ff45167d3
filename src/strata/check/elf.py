"""ELF files: the identification header (pure, 20 bytes), systemd's architecture name for it,
glibc version strings, and the dynamic data (DT_NEEDED, RUNPATH, symbol versions) read with
pyelftools - imported only when an image has ELF files to look at (it costs ~60 ms)."""

from __future__ import annotations

import re
from typing import IO, Literal

from strata.record import record

#: bytes of an ELF file needed by parse_ident: e_ident (16), e_type (2), e_machine (2)
IDENT_SIZE = 20
MAGIC = b"\x7fELF"

ET_REL, ET_EXEC, ET_DYN, ET_CORE = 1, 2, 3, 4

@record
class ElfIdent:
    """What the first 20 bytes of an ELF file say."""

    machine: int  # e_machine
    bits: int  # 32 or 64 (EI_CLASS)
    little: bool  # EI_DATA
    type: int  # e_type: ET_EXEC, ET_DYN, ...

    @property
    def arch(self) -> str | None:
        """systemd's architecture name, or None for machines systemd has none for (BPF...)."""
        return arch_of(self.machine, self.bits, self.little)

    @property
    def loadable(self) -> bool:
        """An executable or shared object: what the dynamic loader deals with."""
        return self.type in (ET_EXEC, ET_DYN)

    def compatible(self, other: ElfIdent) -> bool:
        """Whether the loader would take `other` as a library for this file."""
        return (self.machine, self.bits, self.little) == (other.machine, other.bits,
                                                          other.little)


def parse_ident(head: bytes) -> ElfIdent | None:
    """The ELF identification of a file starting with `head`, None if it is no ELF file."""
    if len(head) < IDENT_SIZE or not head.startswith(MAGIC):
        return None
    ei_class, ei_data = head[4], head[5]
    if ei_class not in (1, 2) or ei_data not in (1, 2):
        return None
    order: Literal["little", "big"] = "little" if ei_data == 1 else "big"
    return ElfIdent(machine=int.from_bytes(head[18:20], order), bits=32 * ei_class,
                    little=ei_data == 1, type=int.from_bytes(head[16:18], order))


def arch_of(machine: int, bits: int, little: bool) -> str | None:
    """(e_machine, EI_CLASS, EI_DATA) -> systemd's architecture name (src/basic/architecture.h),
    the names ARCHITECTURE= takes. None where systemd has no name (x32, BPF, ...)."""
    b64 = bits == 64
    match machine:
        case 62:  # EM_X86_64; the 32-bit x32 ABI has no systemd name
            return "x86-64" if b64 else None
        case 3:  # EM_386
            return "x86"
        case 183:  # EM_AARCH64
            return "arm64" if little else "arm64-be"
        case 40:  # EM_ARM
            return "arm" if little else "arm-be"
        case 0x9026:  # EM_ALPHA
            return "alpha"
        case 45 | 93 | 195:  # EM_ARC, EM_ARC_COMPACT, EM_ARC_COMPACT2
            return "arc" if little else "arc-be"
        case 76:  # EM_CRIS
            return "cris"
        case 50:  # EM_IA_64
            return "ia64"
        case 258:  # EM_LOONGARCH
            return "loongarch64" if b64 else None
        case 4:  # EM_68K
            return "m68k"
        case 8:  # EM_MIPS
            if b64:
                return "mips64-le" if little else "mips64"
            return "mips-le" if little else "mips"
        case 113:  # EM_ALTERA_NIOS2
            return "nios2"
        case 15:  # EM_PARISC
            return "parisc64" if b64 else "parisc"
        case 21:  # EM_PPC64
            return "ppc64-le" if little else "ppc64"
        case 20:  # EM_PPC
            return "ppc-le" if little else "ppc"
        case 243:  # EM_RISCV
            return "riscv64" if b64 else "riscv32"
        case 22:  # EM_S390
            return "s390x" if b64 else "s390"
        case 42:  # EM_SH
            return "sh64" if b64 else "sh"
        case 43:  # EM_SPARCV9
            return "sparc64"
        case 2 | 18:  # EM_SPARC, EM_SPARC32PLUS
            return "sparc"
        case 191:  # EM_TILEGX
            return "tilegx"
    return None


#: 64-bit architectures and the 32-bit one whose programs they can also run (multilib)
COMPANIONS: dict[str, str] = {
    "x86-64": "x86", "arm64": "arm", "ppc64": "ppc", "s390x": "s390", "sparc64": "sparc",
    "mips64": "mips", "mips64-le": "mips-le", "parisc64": "parisc",
}

_GLIBC = re.compile(r"GLIBC_([0-9]+(?:\.[0-9]+)+)")


def glibc_version(version_name: str) -> tuple[int, ...] | None:
    """"GLIBC_2.34" -> (2, 34); None for other names (GLIBC_PRIVATE, OPENSSL_3.0.0)."""
    m = _GLIBC.fullmatch(version_name)
    return tuple(int(p) for p in m.group(1).split(".")) if m else None


def format_version(v: tuple[int, ...]) -> str:
    return ".".join(str(p) for p in v)


@record
class ElfInfo:
    """The dynamic-linking data of an ELF file."""

    interpreter: str | None  # PT_INTERP
    needed: tuple[str, ...]  # DT_NEEDED, in order
    runpath: tuple[str, ...]  # DT_RUNPATH entries
    rpath: tuple[str, ...]  # DT_RPATH entries (used only without DT_RUNPATH)
    soname: str | None
    #: (library file, version names needed from it), from .gnu.version_r
    version_needs: tuple[tuple[str, tuple[str, ...]], ...] = ()
    #: version names this file defines (.gnu.version_d), the base (soname) entry excluded
    version_defs: tuple[str, ...] = ()

    def max_glibc(self) -> tuple[tuple[int, ...], str] | None:
        """The newest GLIBC_x.y version needed, and the library it is needed from."""
        best: tuple[tuple[int, ...], str] | None = None
        for lib, names in self.version_needs:
            for name in names:
                v = glibc_version(name)
                if v is not None and (best is None or v > best[0]):
                    best = (v, lib)
        return best

    def glibc_provided(self) -> tuple[int, ...] | None:
        """For a libc.so.6: the newest GLIBC_x.y version it defines, i.e. glibc's version."""
        versions = [v for v in map(glibc_version, self.version_defs) if v is not None]
        return max(versions) if versions else None


def _split_path(value: str) -> tuple[str, ...]:
    return tuple(p for p in value.split(":") if p)


def _text(tag: object, attr: str) -> str:
    """A string-valued dynamic tag: pyelftools sets the attribute named for the tag."""
    return str(getattr(tag, attr))


def read_info(stream: IO[bytes]) -> ElfInfo:
    """Parse the dynamic section, the program interpreter and the symbol version sections.
    Raises whatever pyelftools raises for a damaged file (the caller reports it)."""
    from elftools.elf.dynamic import DynamicSection
    from elftools.elf.elffile import ELFFile
    from elftools.elf.gnuversions import GNUVerDefSection, GNUVerNeedSection
    from elftools.elf.segments import InterpSegment

    elf = ELFFile(stream)
    interpreter: str | None = None
    for seg in elf.iter_segments():
        if isinstance(seg, InterpSegment):
            interpreter = seg.get_interp_name()
            break
    needed: list[str] = []
    runpath: tuple[str, ...] = ()
    rpath: tuple[str, ...] = ()
    soname: str | None = None
    needs: list[tuple[str, tuple[str, ...]]] = []
    defs: list[str] = []
    for section in elf.iter_sections():
        if isinstance(section, DynamicSection):
            for tag in section.iter_tags():
                t = tag.entry.d_tag
                if t == "DT_NEEDED":
                    needed.append(_text(tag, "needed"))
                elif t == "DT_RUNPATH":
                    runpath += _split_path(_text(tag, "runpath"))
                elif t == "DT_RPATH":
                    rpath += _split_path(_text(tag, "rpath"))
                elif t == "DT_SONAME":
                    soname = _text(tag, "soname")
        elif isinstance(section, GNUVerNeedSection):
            for verneed, aux in section.iter_versions():
                needs.append((str(verneed.name), tuple(str(a.name) for a in aux)))
        elif isinstance(section, GNUVerDefSection):
            for verdef, aux in section.iter_versions():
                names = [a.name for a in aux]
                if names and not verdef["vd_flags"] & 1:  # VER_FLG_BASE: the file's own name
                    defs.append(names[0])
    return ElfInfo(interpreter, tuple(needed), runpath, rpath, soname, tuple(needs),
                   tuple(defs))
