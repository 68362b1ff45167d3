"""Conflict rules: files that replace the host's while merged (--host), entries whose type
differs from the host's (a directory over a host symlink hides everything behind it), and
paths shared by images checked together (the higher name wins, as systemd stacks them)."""

from __future__ import annotations

import functools
import posixpath
import re
import stat as _stat
from collections.abc import Sequence

from strata.check.context import Context
from strata.check.findings import Finding, Rule, Severity
from strata.check.host import HostView
from strata.check.tree import Entry, under
from strata.check.view import ImageView
from strata.images.base import FileKind
from strata.model import ExtClass

ERROR, WARNING, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO

_LIBRARY = re.compile(r".*\.so(\.[0-9]+)*")
_PROGRAM_DIRS = ("bin", "sbin", "libexec")


def is_program_or_library(e: Entry) -> bool:
    """What a host breaks on when it is replaced: ELF files, shared-library names (symlinks
    included), and anything in a bin/sbin/libexec directory."""
    if e.elf is not None:
        return True
    name = posixpath.basename(e.path)
    parent = posixpath.basename(posixpath.dirname(e.path))
    return bool(_LIBRARY.fullmatch(name)) or parent in _PROGRAM_DIRS


def _kind_name(e: Entry) -> str:
    return {FileKind.REGULAR: "file", FileKind.DIRECTORY: "directory",
            FileKind.SYMLINK: "symlink"}.get(e.kind, "special file")


def _same_as_host(view: ImageView, e: Entry, host: HostView, host_mode: int) -> bool:
    if e.kind is FileKind.SYMLINK:
        return _stat.S_ISLNK(host_mode) and host.readlink(e.path) == e.target
    if e.kind is FileKind.REGULAR and _stat.S_ISREG(host_mode):
        return host.size(e.path) == e.size and host.digest(e.path) == view.digest(e.path)
    return False


def shadows_host(view: ImageView, ctx: Context) -> list[Finding]:
    """Every merged non-directory whose path the host has too (with no symlink in between:
    that is where the overlay stacks them), and every type clash. Identical copies are one
    note; programs and libraries replaced are errors (snosi#784: a shipped libxkbcommon
    replaced the host's and crashed the desktop), other files warnings."""
    host = ctx.host
    if host is None:
        return []
    releases = view.release_paths()
    identical: list[str] = []
    out = []
    for e in view.tree:
        if not view.merged(e.path) or e.path in view.hierarchies or e.path in releases:
            continue
        mode = host.direct_mode(e.path)
        if mode is None:
            continue
        if e.kind is FileKind.DIRECTORY:
            if _stat.S_ISDIR(mode):
                continue
            if _stat.S_ISLNK(mode):
                if e.path == "/usr/sbin" and ExtClass.SYSEXT in view.classes:
                    continue  # the usr-sbin rule
                target = host.readlink(e.path)
                out.append(Finding(Rule.TYPE_CLASH, ERROR, e.path,
                                   f"this directory replaces the host's symlink {e.path} -> "
                                   f"{target}: whatever the host reaches through it "
                                   "disappears while merged",
                                   f"ship these files where the symlink leads ({target})"))
            else:
                out.append(Finding(Rule.TYPE_CLASH, ERROR, e.path,
                                   f"this directory hides the host's file {e.path}",
                                   "rename or remove it"))
            continue
        if _stat.S_ISDIR(mode):
            out.append(Finding(Rule.TYPE_CLASH, ERROR, e.path,
                               f"this {_kind_name(e)} hides the host's directory {e.path} and "
                               "everything in it while merged", "rename or remove it"))
            continue
        if _same_as_host(view, e, host, mode):
            identical.append(e.path)
            continue
        severity = ERROR if is_program_or_library(e) else WARNING
        out.append(Finding(Rule.SHADOWS_HOST, severity, e.path,
                           f"replaces the host's {e.path} while merged",
                           "remove it from the image if the host's copy will do; otherwise "
                           "every program on the host gets this one"))
    if identical:
        more = f" and {len(identical) - 1} more" if len(identical) > 1 else ""
        out.append(Finding(Rule.SHADOWS_HOST, INFO, identical[0],
                           f"identical to the host's copy{more}",
                           "remove identical copies from the image"))
    return out


def _identical(a: ImageView, b: ImageView, path: str) -> bool:
    ea, eb = a.tree.get(path), b.tree.get(path)
    if ea is None or eb is None or ea.kind is not eb.kind:
        return False
    if ea.kind is FileKind.SYMLINK:
        return ea.target == eb.target
    if ea.kind is FileKind.REGULAR:
        return ea.size == eb.size and a.digest(path) == b.digest(path)
    return ea.kind is FileKind.DIRECTORY


def overlaps(views: Sequence[ImageView]) -> list[list[Finding]]:
    """Paths that several of the given images of one class ship, where at least one is not a
    directory (directories merge; anything else hides the ones below). systemd stacks images
    by name (strverscmp_improved), the highest on top: that copy is the one seen. Two images
    of the same name are never merged together. Returns the findings per image, in order."""
    from strata.versions import strverscmp_improved

    out: list[list[Finding]] = [[] for _ in views]
    version = functools.cmp_to_key(strverscmp_improved)
    for cls in ExtClass:
        members = [i for i, v in enumerate(views) if cls in v.classes]
        seen_names: dict[str, int] = {}
        for i in members:
            first = seen_names.setdefault(views[i].name, i)
            if first != i:
                out[i].append(Finding(Rule.OVERLAP, ERROR, "/",
                                      f"same image name '{views[i].name}' as "
                                      f"{views[first].path}: only one of them is merged",
                                      "give each extension its own name"))
        if len(members) < 2:
            continue
        hierarchies = cls.default_hierarchies
        contested: dict[str, list[int]] = {}
        for i in members:
            releases = views[i].release_paths()
            for e in views[i].tree:
                if e.kind is FileKind.DIRECTORY or e.path in releases or \
                        not any(under(e.path, h) for h in hierarchies):
                    continue
                contested.setdefault(e.path, [])
        for path in contested:
            holders = [i for i in members if views[i].tree.get(path) is not None]
            names = {views[i].name for i in holders}
            if len(holders) < 2 or len(names) < 2:
                continue
            holders.sort(key=lambda i: version(views[i].name))
            top = holders[-1]
            winner = views[top]
            for i in holders[:-1]:
                same = _identical(views[i], winner, path)
                out[i].append(Finding(
                    Rule.OVERLAP, INFO if same else WARNING, path,
                    f"{'identical to' if same else 'hidden by'} the copy in {winner.path}, "
                    f"which is merged above it ('{winner.name}' sorts after "
                    f"'{views[i].name}')",
                    None if same else "ship each file in one extension only"))
            others = ", ".join(views[i].path for i in holders[:-1])
            out[top].append(Finding(Rule.OVERLAP, INFO, path,
                                    f"also in {others}; this copy wins (its name sorts last)"))
    return out


RULES = (shadows_host,)
