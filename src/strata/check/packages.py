"""Which Debian package provides a library, for the hints of `elf-needed`. Best effort and
local only: the package that ships it on this machine (dpkg-query -S), else the name Debian
policy gives a library package (§8.1: libonig.so.5 -> libonig5), if apt knows it."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

_SONAME = re.compile(r"(?P<name>.+?)\.so(?:\.(?P<version>[0-9][0-9.]*))?")


def policy_name(soname: str) -> str | None:
    """The package name Debian policy gives the library `soname`: the name before ".so"
    and the version after it, joined with "-" when the name ends in a digit; lower case,
    "_" as "-". None for names that are not "libX.so[.N]"."""
    m = _SONAME.fullmatch(soname)
    if m is None or not m.group("name").startswith("lib"):
        return None
    name, version = m.group("name"), m.group("version") or ""
    sep = "-" if version and name[-1].isdigit() else ""
    return (name + sep + version).lower().replace("_", "-")


def parse_dpkg_search(output: str, sonames: Sequence[str]) -> dict[str, str]:
    """`dpkg-query -S` lines ("pkg[:arch][, pkg2]: /path") -> soname -> first package whose
    file is exactly that soname (not libfoo.so.1.2 for libfoo.so.1)."""
    wanted = set(sonames)
    out: dict[str, str] = {}
    for line in output.splitlines():
        pkgs, sep, rest = line.partition(": /")
        if not sep or pkgs.startswith("diversion by"):
            continue
        base = rest.rsplit("/", 1)[-1]
        if base in wanted and base not in out:
            out[base] = pkgs.split(",")[0].strip().split(":")[0]
    return out


def parse_apt_policy(output: str) -> set[str]:
    """Package names that `apt-cache policy` knows with an installable candidate."""
    known: set[str] = set()
    current: str | None = None
    for line in output.splitlines():
        if line and not line[0].isspace() and line.endswith(":"):
            current = line[:-1]
        elif current and line.strip().startswith("Candidate:"):
            if line.split(":", 1)[1].strip() != "(none)":
                known.add(current)
            current = None
    return known


def lookup(sonames: Sequence[str]) -> Mapping[str, str]:
    """soname -> Debian package, for those that can be found cheaply here."""
    import shutil

    from strata.errors import StrataError
    from strata.run import run

    names = sorted(set(sonames))
    found: dict[str, str] = {}
    if not names:
        return found
    try:
        if shutil.which("dpkg-query"):
            proc = run(["dpkg-query", "-S", *(f"*/{n}" for n in names)], check=False,
                       timeout=30)
            found.update(parse_dpkg_search(proc.stdout.decode(errors="replace"), names))
        guesses = {n: g for n in names if n not in found and (g := policy_name(n))}
        if guesses and shutil.which("apt-cache"):
            proc = run(["apt-cache", "policy", *sorted(set(guesses.values()))], check=False,
                       timeout=30)
            known = parse_apt_policy(proc.stdout.decode(errors="replace"))
            found.update({n: g for n, g in guesses.items() if g in known})
    except StrataError:
        pass  # a hint is not worth failing the check for
    return found


def hint(sonames: Sequence[str], packages: Mapping[str, str]) -> str:
    """"add the package libonig5", "add packages providing libfoo.so.1 and libbar.so.2"."""
    pkgs = sorted({packages[n] for n in sonames if n in packages})
    unknown = [n for n in sonames if n not in packages]
    parts = []
    if pkgs:
        parts.append(("add the package " if len(pkgs) == 1 else "add the packages ")
                     + ", ".join(pkgs))
    if unknown:
        parts.append("add a package providing " + ", ".join(unknown))
    return "; ".join(parts) + " to the image or to the host"
