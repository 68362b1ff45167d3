"""One walk of an image, and symlink chasing over what it found.

`scan` lists every entry of an image once (lstat, link target, and the first bytes of each
regular file so that ELF files are known without a second pass). Every later question - does
this path exist, where does this link lead, which library would the loader find - is answered
from that list, from the host root, or from both stacked as an overlay (`Layered`), with the
same symlink walk the image readers use (`images.base.walk`: image root as "/", systemd's
CHASE_MAX hops).
"""

from __future__ import annotations

import errno
import os
import stat as _stat
from collections.abc import Callable, Iterator

from strata.check.elf import IDENT_SIZE, ElfIdent, parse_ident
from strata.errors import ErrorKind, StrataError
from strata.images.base import DirectoryFS, FileKind, ImageFS, walk
from strata.record import record


@record
class Entry:
    """One file in an image. `target` is a symlink's target; `elf` the ELF header of a regular
    file that starts with the ELF magic."""

    path: str
    kind: FileKind
    mode: int
    size: int
    uid: int
    gid: int
    target: str | None = None
    elf: ElfIdent | None = None


def under(path: str, top: str) -> bool:
    """Whether `path` is `top` or below it ("/usr/lib" is under "/usr", "/usrx" is not)."""
    return path == top or path.startswith(top + "/") or top == "/"


def join(parent: str, name: str) -> str:
    return "/" + name if parent == "/" else f"{parent}/{name}"


class Tree:
    """Every entry of an image below its root, by path ("/usr/bin/jq"), in walk order (each
    directory before its entries, names sorted)."""

    def __init__(self, entries: dict[str, Entry]) -> None:
        self.entries = entries

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.entries.values())

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, path: str) -> Entry | None:
        return self.entries.get(path)

    def mode(self, path: str) -> int | None:
        if path == "/":
            return _stat.S_IFDIR | 0o755
        e = self.entries.get(path)
        return None if e is None else e.mode

    def readlink(self, path: str) -> str:
        e = self.entries.get(path)
        if e is None or e.target is None:
            raise StrataError(f"{path}: not a symbolic link", kind=ErrorKind.INVALID,
                              errno=errno.EINVAL)
        return e.target

    def below(self, top: str) -> Iterator[Entry]:
        """Entries strictly below directory `top`."""
        prefix = "/" if top == "/" else top + "/"
        return (e for e in self.entries.values() if e.path.startswith(prefix))

    def chase(self, path: str, *, follow_last: bool = True) -> str | None:
        """The image path `path` leads to inside the image, or None if something is missing."""
        return chase(path, self.mode, self.readlink, follow_last=follow_last)


def chase(path: str, mode: Callable[[str], int | None], readlink: Callable[[str], str], *,
          follow_last: bool = True) -> str | None:
    """Resolve `path` (symlinks followed, root as "/", ".." after resolution, as systemd's
    chase() with a root) over any tree given by `mode(p)` (st_mode of an lstat, None when
    missing) and `readlink(p)`. None if a component is missing or a non-directory is walked
    through; more than CHASE_MAX links raise ELOOP."""
    missing = False

    def step(parent: str, name: str) -> tuple[str, bool] | None:
        nonlocal missing
        if parent != "/":
            pmode = mode(parent)
            if pmode is None or not _stat.S_ISDIR(pmode):
                missing = True
                return None
        cur = join(parent, name)
        m = mode(cur)
        if m is None:
            missing = True
            return None
        return cur, _stat.S_ISLNK(m)

    def loop(_link: str) -> StrataError:
        return StrataError(f"{path}: too many levels of symbolic links", kind=ErrorKind.INVALID,
                           errno=errno.ELOOP)

    nodes, rest = walk(path, "/", step, readlink, loop, follow_last=follow_last)
    if missing or rest:
        return None
    return nodes[-1]


def scan(fs: ImageFS) -> Tree:
    """Every entry of `fs`, in one walk: directories are entered, symlinks are not."""
    if isinstance(fs, DirectoryFS):
        return Tree(_scan_directory(fs.root))
    entries: dict[str, Entry] = {}
    todo = ["/"]
    while todo:
        directory = todo.pop()
        names = sorted(fs.listdir(directory))
        subdirs: list[str] = []
        for name in names:
            path = join(directory, name)
            st = fs.lstat(path)
            target = fs.readlink(path) if st.kind is FileKind.SYMLINK else None
            ident = None
            if st.kind is FileKind.REGULAR and st.size >= 4:
                ident = parse_ident(fs.read(path, limit=IDENT_SIZE))
            entries[path] = Entry(path, st.kind, st.mode, st.size, st.uid, st.gid, target, ident)
            if st.kind is FileKind.DIRECTORY:
                subdirs.append(path)
        todo.extend(reversed(subdirs))
    return Tree(_in_walk_order(entries))


def _in_walk_order(entries: dict[str, Entry]) -> dict[str, Entry]:
    """Depth-first with sorted names, as `ls -R` would list them."""
    return dict(sorted(entries.items(), key=lambda kv: kv[0].split("/")))


def _scan_directory(root: str) -> dict[str, Entry]:
    """scan() for a directory image: os.scandir gives lstat results without a path lookup per
    file, which matters for trees of thousands of files."""
    entries: dict[str, Entry] = {}
    todo: list[tuple[str, str]] = [("/", root)]
    while todo:
        directory, real = todo.pop()
        try:
            with os.scandir(real) as it:
                items = sorted(it, key=lambda d: d.name)
        except OSError as e:
            raise StrataError.from_os(e, f"{root}:{directory}") from e
        subdirs: list[tuple[str, str]] = []
        for d in items:
            path = join(directory, d.name)
            try:
                st = d.stat(follow_symlinks=False)
                kind = FileKind.from_mode(st.st_mode)
                target = os.readlink(d.path) if kind is FileKind.SYMLINK else None
                ident = None
                if kind is FileKind.REGULAR and st.st_size >= 4:
                    ident = _read_ident(d.path)
            except OSError as e:
                raise StrataError.from_os(e, f"{root}:{path}") from e
            entries[path] = Entry(path, kind, st.st_mode, st.st_size, st.st_uid, st.st_gid,
                                  target, ident)
            if kind is FileKind.DIRECTORY:
                subdirs.append((path, d.path))
        todo.extend(reversed(subdirs))
    return _in_walk_order(entries)


def _read_ident(real: str) -> ElfIdent | None:
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as e:
        if e.errno == errno.EACCES:
            return None  # unreadable to this user: not looked at, like a non-ELF file
        raise
    try:
        return parse_ident(os.read(fd, IDENT_SIZE))
    finally:
        os.close(fd)
