"""Where the dynamic loader looks for a DT_NEEDED library (glibc's ld.so, man 8 ld.so): pure
functions over paths; the lookups themselves are in `host` and `elfrules`.

Order: DT_RPATH (only without DT_RUNPATH), DT_RUNPATH, the ld.so.cache (built from
/etc/ld.so.conf), the trusted directories (/lib, /usr/lib, and their 64-bit and multiarch
variants). For a yes/no "would it be found" only the set matters; it is kept in loader order
so that the first match is the one the loader would take.
"""

from __future__ import annotations

import fnmatch
import posixpath
from collections.abc import Callable, Sequence

from strata.check.elf import ElfIdent, ElfInfo

#: systemd architecture -> Debian multiarch tuples (/usr/lib/<tuple>)
MULTIARCH: dict[str, tuple[str, ...]] = {
    "x86-64": ("x86_64-linux-gnu",),
    "x86": ("i386-linux-gnu",),
    "arm64": ("aarch64-linux-gnu",),
    "arm": ("arm-linux-gnueabihf", "arm-linux-gnueabi"),
    "ppc64-le": ("powerpc64le-linux-gnu",),
    "ppc64": ("powerpc64-linux-gnu",),
    "ppc": ("powerpc-linux-gnu",),
    "s390x": ("s390x-linux-gnu",),
    "riscv64": ("riscv64-linux-gnu",),
    "loongarch64": ("loongarch64-linux-gnu",),
    "mips64-le": ("mips64el-linux-gnuabi64",),
    "mips-le": ("mipsel-linux-gnu",),
    "mips": ("mips-linux-gnu",),
    "sparc64": ("sparc64-linux-gnu",),
    "alpha": ("alpha-linux-gnu",),
    "m68k": ("m68k-linux-gnu",),
    "ia64": ("ia64-linux-gnu",),
    "sh": ("sh4-linux-gnu",),
    "parisc": ("hppa-linux-gnu",),
}


def trusted_dirs(ident: ElfIdent) -> tuple[str, ...]:
    """The loader's built-in directories for a file like `ident`: the multiarch ones (Debian,
    Ubuntu), lib64 (Fedora, SUSE, Arch for 64-bit), lib32 for 32-bit on 64-bit systems, and
    plain lib. Directories of the wrong width are harmless: a library found there is checked
    against `ident` before it counts."""
    dirs: list[str] = []
    for t in MULTIARCH.get(ident.arch or "", ()):
        dirs += [f"/lib/{t}", f"/usr/lib/{t}"]
    dirs += ["/lib64", "/usr/lib64"] if ident.bits == 64 else ["/lib32", "/usr/lib32"]
    dirs += ["/lib", "/usr/lib"]
    return tuple(dirs)


def expand_dst(entry: str, origin: str, ident: ElfIdent) -> str | None:
    """A RUNPATH/RPATH entry with $ORIGIN (the directory of the file), $LIB and $PLATFORM
    expanded; None for entries that cannot be resolved statically (relative ones depend on
    the working directory; $PLATFORM on the CPU)."""
    lib = "lib64" if ident.bits == 64 else "lib"
    out = entry
    for name, value in (("ORIGIN", origin), ("LIB", lib)):
        out = out.replace("${" + name + "}", value).replace("$" + name, value)
    if "$" in out or not out.startswith("/"):
        return None
    return out


def search_dirs(info: ElfInfo, ident: ElfIdent, path: str, conf_dirs: Sequence[str]
                ) -> tuple[str, ...]:
    """Every directory the loader tries for the needs of the file at image path `path`, in
    order, without repeats."""
    origin = posixpath.dirname(path) or "/"
    dirs: list[str] = []
    for entry in (info.rpath if not info.runpath else ()) + info.runpath:
        expanded = expand_dst(entry, origin, ident)
        if expanded is not None:
            dirs.append(expanded)
    dirs += conf_dirs
    dirs += trusted_dirs(ident)
    return tuple(dict.fromkeys(d.rstrip("/") or "/" for d in dirs))


def parse_ld_so_conf(text: str) -> tuple[list[str], list[str]]:
    """(directories, include patterns) of an ld.so.conf file, as ldconfig reads it: "#"
    starts a comment, "include PATTERN..." includes files, "hwcap" lines are obsolete, other
    lines are directories (an "=TYPE" suffix from old libc5 days is dropped)."""
    dirs: list[str] = []
    includes: list[str] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        word, _, rest = line.partition(" ")
        if word == "include":
            includes += rest.split()
        elif word == "hwcap":
            continue
        else:
            for item in line.replace(",", " ").replace(":", " ").split():
                dirs.append(item.split("=", 1)[0].rstrip("/") or "/")
    return dirs, includes


def ld_so_conf_dirs(read: Callable[[str], str | None], listdir: Callable[[str], list[str]],
                    start: str = "/etc/ld.so.conf") -> list[str]:
    """The directories listed by `start` and the files it includes, through `read(path)`
    (None if missing) and `listdir(dir)` over one tree. Include patterns are globbed in their
    last component only (what ld.so.conf.d setups use); relative ones are relative to the
    including file's directory; recursion is bounded as ldconfig's is not."""
    out: list[str] = []
    seen: set[str] = set()

    def load(path: str, depth: int) -> None:
        if path in seen or depth > 8:
            return
        seen.add(path)
        text = read(path)
        if text is None:
            return
        dirs, includes = parse_ld_so_conf(text)
        out.extend(dirs)
        for pattern in includes:
            full = posixpath.join(posixpath.dirname(path), pattern)  # an absolute one stays
            parent, glob = posixpath.split(full)
            names = sorted(n for n in listdir(parent) if fnmatch.fnmatchcase(n, glob))
            for name in names:
                load(posixpath.join(parent, name), depth + 1)

    load(start, 0)
    return list(dict.fromkeys(out))
