"""Staging-tree plumbing: copying source trees, merging one source's layer into the staging
tree, making directories writable while we work, clamping times, the content digest, and
removal.

The digest covers what the image tools record and nothing else: paths, types, permission bits
(setuid included), symlink targets, file contents and which files are hard links of one
another. Owners and times are not in it: the tools force them (root, SOURCE_DATE_EPOCH).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

from strata.errors import ErrorKind, StrataError
from strata.record import record

#: kind names given to on_special callbacks
SPECIAL_KINDS = {stat.S_IFCHR: "character device", stat.S_IFBLK: "block device",
                 stat.S_IFIFO: "fifo", stat.S_IFSOCK: "socket"}


def special_kind(mode: int) -> str:
    return SPECIAL_KINDS.get(stat.S_IFMT(mode), "special file")


def _os_error(e: OSError, what: str) -> StrataError:
    return StrataError.from_os(e, what)


def copy_tree(src: Path, dst: Path, on_special: Callable[[str, str], None], *,
              link: bool = False) -> int:
    """Copy the directory `src` into the existing directory `dst`: files with their permission
    bits (setuid too), symlinks as they are, hard links as hard links; devices, fifos and
    sockets are reported to `on_special(relative path, kind)` and skipped. Owners, times and
    extended attributes are not copied. Returns the number of entries copied.

    With `link`, regular files are hard-linked to the source where the kernel allows it (same
    file system; as non-root, protected_hardlinks wants our own files) instead of copied: the
    image tools only read them, and copying the data was most of the staging time. The caller
    must then not change those files in place (no chmod, chown or utime)."""
    links: dict[tuple[int, int], Path] = {}
    dir_modes: list[tuple[Path, int]] = []
    count = 0

    def walk(s: Path, d: Path, rel: str) -> None:
        nonlocal count
        try:
            names = sorted(os.listdir(s))
        except OSError as e:
            raise _os_error(e, f"cannot read {s}") from e
        for name in names:
            sp, dp = s / name, d / name
            r = f"{rel}/{name}" if rel else name
            try:
                st = os.lstat(sp)
                mode = st.st_mode
                if stat.S_ISDIR(mode):
                    os.mkdir(dp, 0o700)
                    dir_modes.append((dp, stat.S_IMODE(mode)))
                    walk(sp, dp, r)
                elif stat.S_ISLNK(mode):
                    os.symlink(os.readlink(sp), dp)
                elif stat.S_ISREG(mode):
                    key = (st.st_dev, st.st_ino)
                    if st.st_nlink > 1 and key in links:
                        os.link(links[key], dp)
                    elif link and _try_link(sp, dp):
                        pass
                    else:
                        shutil.copyfile(sp, dp, follow_symlinks=False)
                        os.chmod(dp, stat.S_IMODE(mode))
                        if st.st_nlink > 1:
                            links[key] = dp
                else:
                    on_special(r, special_kind(mode))
                    continue
            except OSError as e:
                raise _os_error(e, f"cannot copy {sp}") from e
            count += 1

    walk(src, dst, "")
    for d, mode in reversed(dir_modes):
        os.chmod(d, mode)
    return count


def _try_link(src: Path, dst: Path) -> bool:
    try:
        os.link(src, dst)
    except OSError:  # EXDEV, EPERM (protected_hardlinks), EMLINK: copy instead
        return False
    return True


def owner_writable(tree: Path) -> dict[str, int]:
    """Give every directory below `tree` owner rwx (a 0555 directory from a package would
    stop the moves that follow, unless we are root) and return the original modes of those
    that lacked it, by relative path."""
    changed: dict[str, int] = {}
    for dirpath, dirnames, _files in os.walk(tree):
        for name in dirnames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            if stat.S_ISDIR(st.st_mode) and st.st_mode & 0o700 != 0o700:
                changed[os.path.relpath(p, tree)] = stat.S_IMODE(st.st_mode)
                os.chmod(p, stat.S_IMODE(st.st_mode) | 0o700)
    return changed


def same_entry(a: Path, b: Path) -> bool:
    """Whether two non-directories are interchangeable: same type, and for files the same
    permission bits and contents, for symlinks the same target."""
    sa, sb = os.lstat(a), os.lstat(b)
    if stat.S_IFMT(sa.st_mode) != stat.S_IFMT(sb.st_mode):
        return False
    if stat.S_ISLNK(sa.st_mode):
        return os.readlink(a) == os.readlink(b)
    if stat.S_IMODE(sa.st_mode) != stat.S_IMODE(sb.st_mode) or sa.st_size != sb.st_size:
        return False
    import filecmp

    return filecmp.cmp(a, b, shallow=False)


def merge_into(layer: Path, stage: Path, label: str,
               replaced: Callable[[str], None]) -> None:
    """Move the contents of `layer` (one source) into `stage`, later sources winning: a new
    subtree moves in one rename; a file that an earlier source already put there is replaced
    (`replaced(relative path)` is told, unless both are the same); a directory where an
    earlier source has a file, or the reverse, is INVALID."""

    def merge(src: Path, dst: Path, rel: str) -> None:
        for name in sorted(os.listdir(src)):
            s, d = src / name, dst / name
            r = f"{rel}/{name}" if rel else name
            try:
                dst_st = os.lstat(d)
            except FileNotFoundError:
                os.rename(s, d)
                continue
            src_dir = stat.S_ISDIR(os.lstat(s).st_mode)
            dst_dir = stat.S_ISDIR(dst_st.st_mode)
            if src_dir and dst_dir:
                merge(s, d, r)
            elif src_dir or dst_dir:
                what = "a directory" if src_dir else "not a directory"
                raise StrataError(f"{label}: {r} is {what}, unlike what an earlier source put "
                                  "there", kind=ErrorKind.INVALID)
            elif not same_entry(s, d):
                os.unlink(d)
                os.rename(s, d)
                replaced(r)

    merge(layer, stage, "")


def remove_tree(path: Path) -> None:
    """rm -rf, also through directories without write permission."""

    def fix(func: Callable[..., object], p: str, _exc: object) -> None:
        parent = os.path.dirname(p)
        os.chmod(parent, 0o700)
        if os.path.isdir(p) and not os.path.islink(p):
            os.chmod(p, 0o700)
            shutil.rmtree(p, onerror=fix)
        else:
            os.unlink(p)

    if os.path.lexists(path):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, onerror=fix)
        else:
            path.unlink()


@record
class TreeInfo:
    """The digest of a finished tree and what is in it."""

    digest: str  # sha256 hex over paths, types, modes, targets and contents
    files: int  # regular files
    directories: int  # the root not counted
    symlinks: int
    size: int  # bytes of regular file content (hard links once)


def _file_sha256(path: str) -> bytes:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").digest()


def finish_tree(tree: Path, epoch: int, *, clamp_times: bool = True) -> TreeInfo:
    """Digest the tree, walking names in byte order, and (with `clamp_times`) clamp every
    time in it to `epoch` (SOURCE_DATE_EPOCH: nothing newer than the epoch). Image builds
    skip the clamping: their tools set every time to the epoch anyway, and the staged files
    may be hard links to the sources (and the digest runs while the image tool reads the
    tree)."""
    h = hashlib.sha256(b"strata-tree-v1\0")
    seen: dict[tuple[int, int], str] = {}
    files = dirs = links = size = 0

    def clamp(p: str, st: os.stat_result) -> None:
        if clamp_times and (st.st_mtime > epoch or st.st_atime > epoch):
            os.utime(p, (min(st.st_atime, epoch), min(st.st_mtime, epoch)),
                     follow_symlinks=False)

    def walk(d: str, rel: bytes) -> None:
        nonlocal files, dirs, links, size
        for name in sorted(os.listdir(os.fsencode(d))):
            p = os.path.join(d, os.fsdecode(name))
            r = rel + b"/" + name if rel else name
            st = os.lstat(p)
            mode = st.st_mode
            head = b"%s\0%o\0" % (r, mode)
            if stat.S_ISDIR(mode):
                dirs += 1
                h.update(b"d\0" + head + b"\n")
                walk(p, r)
            elif stat.S_ISLNK(mode):
                links += 1
                h.update(b"l\0" + head + os.fsencode(os.readlink(p)) + b"\n")
            elif stat.S_ISREG(mode):
                files += 1
                key = (st.st_dev, st.st_ino)
                if st.st_nlink > 1 and key in seen:
                    h.update(b"h\0" + head + os.fsencode(seen[key]) + b"\n")
                else:
                    if st.st_nlink > 1:
                        seen[key] = os.fsdecode(r)
                    size += st.st_size
                    h.update(b"f\0" + head + _file_sha256(p) + b"\n")
            else:
                raise StrataError(f"{p}: unexpected {special_kind(mode)} in the staging tree",
                                  kind=ErrorKind.INVALID)
            clamp(p, st)

    walk(str(tree), b"")
    clamp(str(tree), os.lstat(tree))
    return TreeInfo(digest=h.hexdigest(), files=files, directories=dirs, symlinks=links,
                    size=size)
