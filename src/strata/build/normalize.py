"""Normalisation: from the staged sources (whatever packages and trees put where) to the trees
of the images. The decisions are pure functions (`relocate`, `route`, `retarget`,
`merged_bin_for`); `normalize_tree` applies them to a staging directory by renaming.

- `/bin`, `/sbin`, `/lib`, `/lib64` move under `/usr` (systemd merges only /usr and /opt);
  their top-level compatibility symlinks (merged-usr trees) are dropped.
- With merged-bin, `usr/sbin` is folded into `usr/bin`: a real `usr/sbin` directory in an
  extension hides a merged-bin host's `/usr/sbin -> bin` symlink, and with it every tool the
  host has there (systemd#42746, sysext-bakery#131).
- Relative symlinks that cross a moved boundary are rewritten to point where their target went;
  a symlink that would then point at itself (a compatibility link) is dropped.
- `/etc` goes to the confext, to `/usr/share/<name>/etc` (Dalec's tmpfiles scheme, without
  `etc/systemd`, which tmpfiles would copy too late to matter), or is dropped.
- Anything else outside /usr, /opt and /etc (var, srv, ...) would never be merged: dropped with
  a warning; so are os-release files and release files the sources bring (the builder writes
  its own), and symlinks standing where the host has a directory (`usr/lib -> lib64`).
- Device nodes, fifos and sockets are dropped with a warning. Ownership is not touched here:
  the image tools make everything root:root.
"""

from __future__ import annotations

import enum
import fnmatch
import os
import posixpath
import re
import stat
from collections.abc import Callable, Mapping
from pathlib import Path

from strata.build.spec import ClassChoice, EtcMode, MergedBin
from strata.build.tree import remove_tree, same_entry
from strata.errors import ErrorKind, StrataError
from strata.images.base import FileKind
from strata.record import record

#: top-level directories that live under /usr on a merged-usr system
USR_MERGED = ("bin", "sbin", "lib", "lib64")

#: distributions whose /usr/sbin is a real directory (MergedBin.AUTO keeps usr/sbin for them)
SPLIT_SBIN_IDS = frozenset({"debian", "ubuntu", "raspbian", "devuan"})

#: directories the host certainly has: a symlink there in an image would replace the host's
#: directory with the link in the merged tree
_HOST_DIRS = frozenset({
    "usr", "opt", "etc", "usr/bin", "usr/sbin", "usr/lib", "usr/lib32", "usr/lib64",
    "usr/libx32", "usr/libexec", "usr/share", "usr/include", "usr/local", "usr/src",
    "usr/lib/systemd", "usr/lib/modules", "usr/lib/extension-release.d", "usr/share/doc",
    "etc/systemd", "etc/extension-release.d",
})
_MULTIARCH = re.compile(r"usr/lib/[a-z0-9_]+-linux-[a-z0-9_]+")


class Target(enum.Enum):
    SYSEXT = "sysext"
    CONFEXT = "confext"
    DROP = "drop"
    ERROR = "error"


@record
class Rules:
    name: str
    cls: ClassChoice
    etc: EtcMode
    merged_bin: bool
    exclude: tuple[str, ...] = ()


@record
class Route:
    """Where one staged entry goes: a tree and an image path (no leading "/"), or why not."""

    target: Target
    path: str = ""
    reason: str | None = None  # for DROP (a warning unless quiet) and ERROR
    quiet: bool = False  # dropped as expected (compatibility links, excluded paths)


def merged_bin_for(setting: MergedBin, os_id: str) -> bool:
    """Whether to fold usr/sbin into usr/bin. AUTO folds unless the image targets a
    distribution known to keep a separate /usr/sbin: an image for `_any` may land on a
    merged-bin host (Fedora 42+, Arch), where a real usr/sbin would hide all of the host's
    /usr/sbin, while folding on a split host only moves the tools to another directory in
    $PATH (absolute /usr/sbin/... paths then need the host's merged-bin)."""
    if setting is MergedBin.AUTO:
        return os_id not in SPLIT_SBIN_IDS
    return setting is MergedBin.YES


def relocate(path: str, *, merged_bin: bool) -> str:
    """The merged-usr (and merged-bin) place of image path `path` (no leading "/")."""
    if path.partition("/")[0] in USR_MERGED:
        path = f"usr/{path}"
    if merged_bin and (path == "usr/sbin" or path.startswith("usr/sbin/")):
        path = "usr/bin" + path[len("usr/sbin"):]
    return path


def _is_host_dir(path: str) -> bool:
    return path in _HOST_DIRS or _MULTIARCH.fullmatch(path) is not None


def route(path: str, kind: FileKind, rules: Rules) -> Route:
    """Where the staged entry `path` (relative, no leading "/") of type `kind` goes."""
    top = path.partition("/")[0]
    if path in USR_MERGED and kind is FileKind.SYMLINK:
        return Route(Target.DROP, reason="merged-usr compatibility symlink", quiet=True)
    if kind is FileKind.OTHER:
        return Route(Target.DROP, reason="device nodes, fifos and sockets cannot be shipped")

    if top == "etc":
        return _route_etc(path, kind, rules)

    new = relocate(path, merged_bin=rules.merged_bin)
    new_top = new.partition("/")[0]
    if new_top not in ("usr", "opt"):
        return Route(Target.DROP, reason="outside /usr, /opt and /etc: never merged")
    if rules.cls is ClassChoice.CONFEXT:
        return Route(Target.ERROR, reason="a confext carries only /etc (use class: both for a "
                                          "sysext beside it)")
    if new in ("usr/lib/os-release",):
        return Route(Target.DROP, reason="an extension must not ship os-release")
    if new.startswith("usr/lib/extension-release.d/"):
        return Route(Target.DROP, reason="the builder writes the extension-release file")
    if kind is FileKind.SYMLINK and _is_host_dir(new):
        return Route(Target.DROP, reason="a symlink here would replace the host's directory")
    return _excluded(Route(Target.SYSEXT, new), rules)


def _route_etc(path: str, kind: FileKind, rules: Rules) -> Route:
    if path == "etc/os-release":
        return Route(Target.DROP, reason="an extension must not ship os-release")
    if path.startswith("etc/extension-release.d/"):
        return Route(Target.DROP, reason="the builder writes the extension-release file")
    if kind is FileKind.SYMLINK and _is_host_dir(path):
        return Route(Target.DROP, reason="a symlink here would replace the host's directory")
    if rules.etc is EtcMode.DROP:
        return Route(Target.DROP, reason="/etc is dropped (normalize.etc: drop)")
    if rules.etc is EtcMode.CONFEXT:
        return _excluded(Route(Target.CONFEXT, path), rules)
    if path == "etc/systemd" or path.startswith("etc/systemd/"):
        return Route(Target.DROP, reason="etc/systemd is not copied by tmpfiles (units belong "
                                         "in usr/lib/systemd)")
    return _excluded(Route(Target.SYSEXT, f"usr/share/{rules.name}/{path}"), rules)


def _excluded(r: Route, rules: Rules) -> Route:
    for pattern in rules.exclude:
        if fnmatch.fnmatchcase(r.path, pattern):
            return Route(Target.DROP, reason=f"excluded by '{pattern}'", quiet=True)
    return r


def retarget(old: str, new: str, target: str, *, merged_bin: bool) -> str | None:
    """The target a symlink moved from image path `old` to `new` needs, so that it still
    points at the same entry after relocation; None if it would point at itself. Targets that
    do not move keep their spelling; absolute ones stay absolute, relative ones relative."""
    if not target:
        return target
    old_dir = posixpath.dirname("/" + old)
    absolute = posixpath.normpath(target if target.startswith("/")
                                  else posixpath.join(old_dir, target))
    moved = "/" + relocate(absolute.lstrip("/"), merged_bin=merged_bin) if absolute != "/" \
        else "/"
    if moved == "/" + new:
        return None
    if target.startswith("/"):
        return moved if moved != absolute else target
    new_dir = posixpath.dirname("/" + new)
    if moved == absolute and new_dir == old_dir:
        return target
    return posixpath.relpath(moved, new_dir)


# --------------------------------------------------------------------------------------------
# Applying the rules to a staging tree


@record
class Dropped:
    """Entries left out, reported once per top path."""

    path: str
    reason: str
    count: int
    quiet: bool


def _kind(mode: int) -> FileKind:
    return FileKind.from_mode(mode)


def _count(path: str) -> int:
    n = 1
    for _dirpath, dirnames, filenames in os.walk(path):
        n += len(dirnames) + len(filenames)
    return n


def normalize_tree(raw: Path, trees: dict[Target, Path], rules: Rules,
                   dropped: Callable[[Dropped], None],
                   dir_modes: Mapping[str, int] | None = None) -> int:
    """Move every entry of the staged tree `raw` into `trees[SYSEXT]` / `trees[CONFEXT]` as
    `route` says; `dropped` hears about what is left out (and it is deleted). Returns the
    number of non-directories placed.

    A directory whose destination does not exist yet moves in one rename, and its entries are
    then visited where they landed: most stay (their route is that same place), the others
    move on or are dropped. So a typical tree costs one rename per directory, not one mkdir
    and one rename per entry. Entries are visited in name order, so the result does not
    depend on the staging file system. Two entries landing on one path must be
    interchangeable, else INVALID. A directory gets the mode of the first staged directory
    that lands on it (0755 if none does), applied at the end, so that a 0555 directory does
    not block the moves into it; `dir_modes` gives the real modes of staged directories that
    were made owner-writable for the build (tree.owner_writable)."""
    real_modes = dir_modes or {}
    placed: dict[tuple[Target, str], str] = {}  # (tree, image path) -> staged path
    modes: dict[Path, int] = {tree: 0o755 for tree in trees.values()}
    dir_sources: dict[Path, str] = {}  # directory -> the staged directory that made it
    count = 0

    def ensure_dir(tree: Path, target: Target, rel: str, origin: str) -> None:
        d = tree
        for part in rel.split("/") if rel else ():
            d = d / part
            try:
                st = os.lstat(d)
            except FileNotFoundError:
                os.mkdir(d)
                modes[d] = 0o755
                continue
            if not stat.S_ISDIR(st.st_mode):
                where = d.relative_to(tree).as_posix()
                raise StrataError(f"{origin} needs a directory at {where}, where "
                                  f"{placed.get((target, where), where)} is not one",
                                  kind=ErrorKind.INVALID)

    def claim(dest: Path, rel: str, st: os.stat_result) -> None:
        if dest not in dir_sources:
            dir_sources[dest] = rel
            modes[dest] = real_modes.get(rel, stat.S_IMODE(st.st_mode))

    def children(d: Path, rel: str) -> None:
        for name in sorted(os.listdir(d)):
            place(d / name, f"{rel}/{name}")

    def place(src: Path, rel: str) -> None:
        nonlocal count
        st = os.lstat(src)
        kind = _kind(st.st_mode)
        r = route(rel, kind, rules)
        if r.target is Target.ERROR:
            raise StrataError(f"{rel}: {r.reason}", kind=ErrorKind.INVALID)
        if r.target is Target.DROP:
            n = _count(str(src)) if kind is FileKind.DIRECTORY else 1
            dropped(Dropped(rel, r.reason or "", n, r.quiet))
            remove_tree(src)
            return
        tree = trees[r.target]
        dest = tree / r.path
        if kind is FileKind.DIRECTORY:
            if src == dest:  # inside a directory that moved here
                claim(dest, rel, st)
                children(dest, rel)
            elif not os.path.lexists(dest):
                ensure_dir(tree, r.target, posixpath.dirname(r.path), rel)
                os.rename(src, dest)
                claim(dest, rel, st)
                children(dest, rel)
            elif dest.is_dir() and not dest.is_symlink():
                claim(dest, rel, st)
                children(src, rel)
                os.rmdir(src)
            else:
                other = placed.get((r.target, r.path), r.path)
                raise StrataError(f"{other} and {rel} both become {r.path} in the image, one "
                                  "of them a directory", kind=ErrorKind.INVALID,
                                  hint="leave one out with normalize.exclude, or fix the "
                                       "sources")
            return
        if kind is FileKind.SYMLINK and r.target is Target.SYSEXT and not rel.startswith("etc/"):
            # (links in a tmpfiles-copied etc keep their targets: they are copied back to /etc)
            link = os.readlink(src)
            new_link = retarget(rel, r.path, link, merged_bin=rules.merged_bin)
            if new_link is None:
                dropped(Dropped(rel, f"points at itself once moved to {r.path}", 1, True))
                os.unlink(src)
                return
            if new_link != link:
                os.unlink(src)
                os.symlink(new_link, src)
        key = (r.target, r.path)
        if src != dest:
            if os.path.lexists(dest):
                if key in placed and same_entry(src, dest):
                    os.unlink(src)
                    return
                is_dir = dest.is_dir() and not dest.is_symlink()
                other = placed.get(key) or dir_sources.get(dest, "another entry")
                how = "one of them a directory" if is_dir else "and they differ"
                raise StrataError(f"{other} and {rel} both become {r.path} in the image, {how}",
                                  kind=ErrorKind.INVALID,
                                  hint="leave one out with normalize.exclude, or fix the "
                                       "sources")
            ensure_dir(tree, r.target, posixpath.dirname(r.path), rel)
            os.rename(src, dest)
        placed[key] = rel
        count += 1

    for name in sorted(os.listdir(raw)):
        place(raw / name, name)
    for d in sorted(modes, key=lambda p: len(p.parts), reverse=True):
        os.chmod(d, modes[d])
    return count
