"""ELF rules: the machine against ARCHITECTURE=, the libraries and interpreter each program
needs, the glibc symbol versions it needs, and glibc shipped in the image. Libraries are looked
up the way the loader would (libs.search_dirs) in the image merged over the host (Layered)."""

from __future__ import annotations

import posixpath
import re

from strata.check import packages as _packages
from strata.check.context import Context
from strata.check.elf import COMPANIONS, ElfIdent, format_version
from strata.check.findings import Finding, Rule, Severity
from strata.check.tree import under
from strata.check.view import NOT_RUN, ImageView, Layered
from strata.errors import StrataError

ERROR, WARNING, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO

#: glibc's own files: the C library and the dynamic loaders
_GLIBC_FILES = re.compile(r"libc\.so\.6|libc-[0-9.]+\.so|ld-[0-9.]+\.so|ld-linux[-\w.]*\.so\.\d+"
                          r"|ld\.so\.1|ld64\.so\.[12]")


def _loadable(view: ImageView) -> list[tuple[str, ElfIdent]]:
    """The merged programs and libraries (not debug info or firmware), in walk order."""
    out = []
    for e in view.tree:
        if e.elf is not None and e.elf.loadable and view.merged(e.path) \
                and not any(under(e.path, d) for d in NOT_RUN):
            out.append((e.path, e.elf))
    return out


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'s' if n != 1 else ''}"


def elf_arch(view: ImageView, ctx: Context) -> list[Finding]:
    """The ELF machine of every program and library against ARCHITECTURE= (or, without one,
    the host's). One finding per foreign architecture, naming the first file."""
    files = _loadable(view)
    if not files:
        return []
    groups: dict[str, list[str]] = {}
    for path, ident in files:
        if ident.arch is not None:
            groups.setdefault(ident.arch, []).append(path)
    fields = view.release_fields()
    declared = "" if fields is None else fields.get("ARCHITECTURE", "")
    out = []
    if fields is not None and declared in ("", "_any") and groups:
        archs = ", ".join(sorted(groups))
        main = max(groups, key=lambda a: len(groups[a]))
        value = "not set" if not declared else "_any"
        out.append(Finding(Rule.ELF_ARCH, WARNING, groups[main][0],
                           f"ARCHITECTURE= is {value}, but the image holds {archs} programs "
                           "or libraries: systemd would merge it on any architecture",
                           f"set ARCHITECTURE={main} in the release file"))
    from strata import arch

    if declared and declared != "_any":
        if not arch.is_valid(declared):
            return out  # release-fields reports it
        expected, against = declared, f"ARCHITECTURE={declared}"
    elif ctx.host is not None:
        expected, against = ctx.host.arch, f"the host is {ctx.host.arch}"
    else:
        return out
    for name in sorted(groups):
        paths = groups[name]
        if name == expected:
            continue
        many = f" (and {_count(len(paths) - 1, 'more file')})" if len(paths) > 1 else ""
        if COMPANIONS.get(expected) == name:
            out.append(Finding(Rule.ELF_ARCH, INFO, paths[0],
                               f"{name} ELF file{many} in an {expected} image: needs the "
                               f"host's {name} (multilib) libraries"))
        else:
            out.append(Finding(Rule.ELF_ARCH, ERROR, paths[0],
                               f"ELF for {name}{many}, but {against}",
                               f"build it for {expected}"))
    return out


def elf_needed(view: ImageView, ctx: Context) -> list[Finding]:
    """DT_NEEDED libraries and the program interpreter, looked up in the image merged over the
    host. Without --host: one note listing what the image expects the host to provide."""
    layered = Layered(view, ctx.host)
    missing: dict[str, list[str]] = {}
    no_interp: dict[str, str] = {}
    for path, info in view.elf.items():
        e = view.tree.get(path)
        ident = None if e is None else e.elf
        if ident is None:
            continue
        libs = [n for n in info.needed if layered.find_library(n, path, ident, info) is None]
        if libs:
            missing[path] = libs
        if info.interpreter and ctx.host is not None:
            try:
                found = layered.chase(info.interpreter)
            except StrataError:  # a symlink loop: not found either
                found = None
            if found is None:
                no_interp[path] = info.interpreter
    if ctx.host is None:
        expected = sorted({n for libs in missing.values() for n in libs})
        if not expected:
            return []
        return [Finding(Rule.ELF_NEEDED, INFO, "/",
                        f"expects from the host: {', '.join(expected)} (needed by "
                        f"{_count(len(missing), 'file')} and found nowhere in the image)",
                        "check them against the host with --host ROOT")]
    names = sorted({n for libs in missing.values() for n in libs})
    provided = ctx.packages(names) if names else {}
    out = []
    for path, libs in missing.items():
        out.append(Finding(Rule.ELF_NEEDED, ERROR, path,
                           f"needs {', '.join(libs)}: found neither in the image nor on the "
                           "host", _packages.hint(libs, provided)))
    for path, interp in no_interp.items():
        out.append(Finding(Rule.ELF_NEEDED, ERROR, path,
                           f"its interpreter {interp} is neither in the image nor on the host",
                           "build it for the host's C library and loader"))
    return out


def elf_glibc(view: ImageView, ctx: Context) -> list[Finding]:
    """GLIBC_x.y symbol versions newer than the host's glibc: the program fails to start with
    "version `GLIBC_x.y' not found". glibc is not forward compatible. Without --host: the
    newest version the image needs, as a note."""
    needs = []
    for path, info in view.elf.items():
        need = info.max_glibc()
        e = view.tree.get(path)
        if need is not None and e is not None and e.elf is not None:
            needs.append((path, e.elf, need))
    if not needs:
        return []
    host = ctx.host
    if host is None:
        path, _ident, (version, lib) = max(needs, key=lambda n: n[2][0])
        return [Finding(Rule.ELF_GLIBC, INFO, path,
                        f"needs glibc {format_version(version)} or newer ({lib} "
                        f"GLIBC_{format_version(version)})")]
    out = []
    for path, ident, (version, lib) in needs:
        have = host.glibc(ident)
        if have is None or version <= have[0]:
            continue  # no glibc for it on the host: elf-needed reports libc.so.6
        hv = format_version(have[0])
        out.append(Finding(Rule.ELF_GLIBC, ERROR, path,
                           f"needs GLIBC_{format_version(version)} from {lib}, but the host's "
                           f"glibc is {hv} ({have[1]})",
                           f"build it against glibc {hv} or older (the host's release)"))
    return out


def elf_unreadable(view: ImageView, ctx: Context) -> list[Finding]:
    return [Finding(Rule.ELF_UNREADABLE, WARNING, path,
                    f"has the ELF magic but cannot be parsed: {why}",
                    "check that the file is complete") for path, why in view.elf_errors.items()]


def ships_glibc(view: ImageView, ctx: Context) -> list[Finding]:
    """glibc inside an extension replaces the host's C library for every program on the host
    that finds it first, and breaks the host when the versions differ (systemd#32007 bricked
    devices). Dalec's documentation warns against it too."""
    out = []
    for path, _ident in _loadable(view):
        if _GLIBC_FILES.fullmatch(posixpath.basename(path)):
            out.append(Finding(Rule.SHIPS_GLIBC, WARNING, path,
                               "the image ships glibc: host programs may load it instead of "
                               "the host's, and break when the versions differ",
                               "remove glibc from the image and build against the host's"))
    return out


RULES = (elf_arch, elf_needed, elf_glibc, elf_unreadable, ships_glibc)
