"""vpick: choosing the newest entry of a versioned `.v/` directory (systemd src/shared/vpick.c).

Entries are named `<basename>_<version>[_<arch>][+<left>[-<done>]]<suffix>`. Image discovery calls
vpick with an explicit basename and suffix and with PICK_ARCHITECTURE|PICK_TRIES, which is what
`choose()`/`pick()` implement (the pure decision over a list of names) and `pick_path()` wraps with
the filesystem steps (list the directory, stat the winner, check its inode type).

Rules, as in v257's make_choice():

* the name must start with `<basename>_` and end in one of the suffixes (the first matching suffix
  is chopped);
* a `+` counter after the *last* `+` is parsed as `+LEFT` or `+LEFT-DONE` (C `strtoul` base 0, so
  `+010` means 8 and `+09` is not a counter); an unparsable counter stays part of the version;
* the text after the *last* `_` is looked up as an architecture. An unknown word counts as "no
  architecture" and is chopped off all the same (so `foo_1_2.raw` has version `1`); entries whose
  architecture is neither native, the secondary one (x86 on x86-64, ...) nor "none" are ignored;
* the remaining version must be non-empty, at most 255 bytes, of `[A-Za-z0-9.,_+-]`;
* the best entry: (1) one with tries left (or no counter) beats one with `+0`, (2) the higher
  version by strverscmp_improved, (3) native beats secondary beats no architecture, (4) more tries
  left, (5) fewer tries done, (6) the larger file name (strcmp).

Only *after* choosing is the winner stat()ed (following symlinks) and its type checked; a wrong
type or a dangling winner is an error for the whole directory (no fallback to the runner-up).

Not implemented (not used by image discovery): the `___` pattern syntax and deriving the basename
from the directory name, and the direct-lookup shortcut taken without PICK_TRIES.
v262 note: from v259 on (PR systemd/systemd#39843) the winner is resolved inside `--root`; v257
opens it relative to the host, which `pick_path` mirrors.
"""

from __future__ import annotations

import errno as _errno
import os
import stat as _stat
from collections.abc import Iterable, Sequence

from strata.record import record
from strata.versions import strverscmp_improved

UINT_MAX = 2**32 - 1
_NAME_MAX = 255

# systemd's architecture_table (src/basic/architecture.c), the only names vpick recognises.
ARCHITECTURES: frozenset[str] = frozenset({
    "arm64", "arm64-be", "arm", "arm-be", "alpha", "arc", "arc-be", "cris", "x86-64", "x86",
    "ia64", "loongarch64", "m68k", "mips64-le", "mips64", "mips-le", "mips", "nios2", "parisc64",
    "parisc", "ppc64-le", "ppc64", "ppc", "ppc-le", "riscv32", "riscv64", "s390x", "s390", "sh64",
    "sh", "sparc64", "sparc", "tilegx",
})

# ARCHITECTURE_SECONDARY (src/basic/architecture.h): what a native build also runs.
SECONDARY_ARCHITECTURE: dict[str, str] = {
    "x86-64": "x86",
    "ppc64": "ppc",
    "ppc64-le": "ppc-le",
    "s390x": "s390",
    "arm64": "arm",
}

_VERSION_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,_-+")


@record
class Choice:
    """The entry vpick chose, with what it parsed out of the name."""

    filename: str
    version: str | None  # None when the version part is empty (never for a choice made by listing)
    architecture: str | None  # None: the name names no (known) architecture
    tries_left: int | None  # None: the name carries no tries counter
    tries_done: int | None


@record
class PickResult:
    """A choice made on disk: its path (not symlink-resolved) and its stat (symlinks followed)."""

    path: str
    st: os.stat_result
    choice: Choice


def _safe_atou(digits: str) -> int | None:
    """systemd safe_atou() on a string of ASCII digits: strtoul base 0, fits in unsigned int."""
    if not digits:
        return None
    if len(digits) > 1 and digits[0] == "0":
        if any(c in "89" for c in digits):  # octal: strtoul stops early, leaving junk → EINVAL
            return None
        value = int(digits, 8)
    else:
        value = int(digits, 10)
    return value if value <= UINT_MAX else None


def parse_tries(counter: str) -> tuple[int, int] | None:
    """Parse `+LEFT` or `+LEFT-DONE` (the text from the last '+'); None if it is not a counter."""
    if not counter.startswith("+"):
        return None
    s = counter[1:]
    n = 0
    while n < len(s) and s[n].isascii() and s[n].isdigit():
        n += 1
    if n == 0:
        return None
    if n == len(s):
        left = _safe_atou(s)
        return None if left is None else (left, 0)
    if s[n] != "-":
        return None
    left = _safe_atou(s[:n])
    rest = s[n + 1:]
    if left is None or not all(c.isascii() and c.isdigit() for c in rest):
        return None
    done = _safe_atou(rest)
    return None if done is None else (left, done)


def version_is_valid(version: str) -> bool:
    """systemd version_is_valid(): non-empty, a valid file name part, [A-Za-z0-9.,_+-] only."""
    if not version or "/" in version:
        return False
    if len(version.encode("utf-8", "surrogateescape")) > _NAME_MAX:
        return False
    return all(c in _VERSION_CHARS for c in version)


def local_architectures(arch: str) -> tuple[str | None, ...]:
    """Acceptable architectures, best first: native, secondary, then None (no architecture)."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}")
    secondary = SECONDARY_ARCHITECTURE.get(arch)
    return (arch, secondary, None) if secondary else (arch, None)


@record
class _Candidate:
    filename: str
    version: str
    arch_index: int
    tries_left: int  # UINT_MAX when absent, as in C
    tries_done: int
    has_counter: bool


def _cmp(x: int, y: int) -> int:
    return (x > y) - (x < y)


def _better(c: _Candidate, best: _Candidate, *, tries: bool) -> bool:
    """make_choice()'s ranking: True if `c` replaces `best` (ties go to the later entry)."""
    d = 0
    if tries:
        d = _cmp(c.tries_left != 0, best.tries_left != 0)
    if d == 0:
        d = strverscmp_improved(c.version, best.version)
    if d == 0:
        d = -_cmp(c.arch_index, best.arch_index)
    if tries:
        if d == 0:
            d = _cmp(c.tries_left, best.tries_left)
        if d == 0:
            d = -_cmp(c.tries_done, best.tries_done)
    if d == 0:  # strcmp() of the raw names
        a, b = os.fsencode(c.filename), os.fsencode(best.filename)
        d = (a > b) - (a < b)
    return d >= 0


def choose(
    entries: Iterable[str],
    *,
    basename: str,
    suffix: str | Sequence[str],
    arch: str,
    architecture: str | None = None,
    version: str | None = None,
    tries: bool = True,
    match_architecture: bool = True,
) -> Choice | None:
    """Choose among directory entry names like vpick's make_choice().

    `arch` is the native architecture (systemd name, e.g. "x86-64"); `architecture` restricts to
    exactly one architecture (PickFilter.architecture), `version` to one version. `tries` and
    `match_architecture` are PICK_TRIES and PICK_ARCHITECTURE (image discovery sets both).
    """
    suffixes = (suffix,) if isinstance(suffix, str) else tuple(suffix)
    if architecture is not None:
        if architecture not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {architecture!r}")
        archs: tuple[str | None, ...] = (architecture,)
    else:
        archs = local_architectures(arch)

    best: _Candidate | None = None
    for name in entries:
        if name in (".", ".."):
            continue
        if basename:
            if not name.startswith(basename + "_"):
                continue
            e = name[len(basename) + 1:]
        else:
            e = name

        if suffixes:
            for sfx in suffixes:  # endswith_strv(): the first matching suffix wins
                if e.endswith(sfx):
                    e = e[: len(e) - len(sfx)]
                    break
            else:
                continue

        left, done, has_counter = UINT_MAX, UINT_MAX, False
        if tries:
            plus = e.rfind("+")
            if plus >= 0:
                parsed = parse_tries(e[plus:])
                if parsed is not None:
                    left, done = parsed
                    has_counter = True
                    e = e[:plus]

        arch_index = -1
        if match_architecture:
            underscore = e.rfind("_")
            word = e[underscore + 1:] if underscore >= 0 else None
            found: str | None = word if word in ARCHITECTURES else None
            if found not in archs:
                continue  # an architecture we do not run
            arch_index = archs.index(found)
            if underscore >= 0:
                e = e[:underscore]

        if not version_is_valid(e):
            continue
        if version is not None and e != version:
            continue

        cand = _Candidate(name, e, arch_index, left, done, has_counter)
        if best is None or _better(cand, best, tries=tries):
            best = cand

    if best is None:
        return None
    return Choice(
        filename=best.filename,
        version=best.version or None,
        architecture=archs[best.arch_index] if best.arch_index >= 0 else None,
        tries_left=best.tries_left if best.has_counter else None,
        tries_done=best.tries_done if best.has_counter else None,
    )


def pick(
    entries: Iterable[str], *, basename: str, suffix: str | Sequence[str], arch: str
) -> str | None:
    """The file name image discovery would pick among `entries`, or None."""
    choice = choose(entries, basename=basename, suffix=suffix, arch=arch)
    return None if choice is None else choice.filename


def errno_from_mode(type_mask: frozenset[int], found_mode: int) -> int:
    """vpick's errno for "found an inode of the wrong type" (S_IFxxx values in `type_mask`)."""
    if type_mask == frozenset({_stat.S_IFBLK}):
        return _errno.ENOTBLK
    if type_mask == frozenset({_stat.S_IFDIR}):
        return _errno.ENOTDIR
    if type_mask == frozenset({_stat.S_IFSOCK}):
        return _errno.ENOTSOCK
    if _stat.S_ISLNK(found_mode):
        return _errno.ELOOP
    if _stat.S_ISDIR(found_mode):
        return _errno.EISDIR
    return _errno.EBADF


def pick_path(
    directory: str,
    *,
    basename: str,
    suffix: str | Sequence[str],
    arch: str,
    type_mask: frozenset[int] = frozenset(),
) -> PickResult | None:
    """Pick inside `directory` (a host path; symlinks on the way are followed by the kernel).

    Returns None when no entry matches. Raises OSError when the directory cannot be read, the
    winner vanished or dangles, or its type is not in `type_mask` (S_IFREG/S_IFDIR/S_IFBLK...;
    empty means any type).
    """
    names = os.listdir(directory)
    choice = choose(names, basename=basename, suffix=suffix, arch=arch)
    if choice is None:
        return None
    path = os.path.join(directory, choice.filename)
    st = os.stat(path)  # O_PATH open + fstat: follows symlinks
    if type_mask and _stat.S_IFMT(st.st_mode) not in type_mask:
        code = errno_from_mode(type_mask, st.st_mode)
        raise OSError(code, f"{os.strerror(code)} (found {_kind_name(st.st_mode)})", path)
    return PickResult(path=path, st=st, choice=choice)


def _kind_name(mode: int) -> str:
    for test, name in ((_stat.S_ISREG, "regular file"), (_stat.S_ISDIR, "directory"),
                       (_stat.S_ISBLK, "block device"), (_stat.S_ISCHR, "character device"),
                       (_stat.S_ISFIFO, "fifo"), (_stat.S_ISSOCK, "socket"),
                       (_stat.S_ISLNK, "symlink")):
        if test(mode):
            return name
    return "unknown"
