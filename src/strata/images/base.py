"""The read-only filesystem view every image reader provides, and the directory implementation.

Paths are image-relative, "/"-separated; a leading "/" is allowed and means the image root.
Nothing here follows a symlink out of the image: `resolve` chases links with the image root as "/".
"""

from __future__ import annotations

import abc
import enum
import errno
import os
import posixpath
import stat as _stat
from typing import TYPE_CHECKING, Self, TypeVar

from strata.errors import ErrorKind, StrataError
from strata.record import record

if TYPE_CHECKING:
    from collections.abc import Callable


class FileKind(enum.Enum):
    REGULAR = "regular"
    DIRECTORY = "directory"
    SYMLINK = "symlink"
    OTHER = "other"  # devices, fifos, sockets

    @classmethod
    def from_mode(cls, mode: int) -> FileKind:
        if _stat.S_ISREG(mode):
            return cls.REGULAR
        if _stat.S_ISDIR(mode):
            return cls.DIRECTORY
        if _stat.S_ISLNK(mode):
            return cls.SYMLINK
        return cls.OTHER


@record
class Stat:
    """lstat() of an entry inside an image."""

    kind: FileKind
    mode: int  # full st_mode, type bits included
    size: int
    uid: int
    gid: int
    mtime: int  # seconds


MAX_SYMLINK_HOPS = 32  # systemd: CHASE_MAX (src/basic/chase.h)


def split(path: str) -> list[str]:
    """Image path -> components, rejecting ".." escapes is left to resolve(); "." dropped."""
    return [p for p in path.split("/") if p and p != "."]


N = TypeVar("N")


def walk(path: str, root: N, step: Callable[[N, str], tuple[N, bool] | None],
         readlink: Callable[[N], str], loop: Callable[[N], StrataError], *,
         follow_last: bool = True) -> tuple[list[N], list[str]]:
    """Walk `path` from `root` following symlinks, with `root` as "/" for absolute targets and
    ".." (systemd's chase() with a root). The one path walk every tree here uses: the readers'
    inode lookups, DirectoryFS.resolve, and fsutil.chase on the host (through `chase_path`).

    `step(directory, name)` gives the entry (any node type) and whether it is a symlink, raises
    if it cannot, or returns None to stop: what is left of the path (without "..") is returned
    unresolved (CHASE_NONEXISTENT). `readlink(node)` gives a link's target; it is called only
    for links that are followed, which the last component is only with `follow_last`.
    `loop(link)` is the error for more than MAX_SYMLINK_HOPS links.

    Returns the nodes from `root` to the result (".." pops them), and the unresolved rest."""
    todo = split(path)
    todo.reverse()  # a stack: the next component last
    nodes = [root]
    hops = 0
    while todo:
        part = todo.pop()
        if part == "..":
            if len(nodes) > 1:
                nodes.pop()
            continue
        found = step(nodes[-1], part)
        if found is None:
            todo.reverse()
            return nodes, [part, *(p for p in todo if p != "..")]
        node, is_link = found
        if is_link and (todo or follow_last):
            hops += 1
            if hops > MAX_SYMLINK_HOPS:
                raise loop(node)
            target = readlink(node)
            if target.startswith("/"):
                del nodes[1:]
            todo.extend(reversed(split(target)))
            continue
        nodes.append(node)
    return nodes, []


def chase_path(path: str, lstat_mode: Callable[[str], int | None],
               readlink: Callable[[str], str], loop: Callable[[str], StrataError]) -> str:
    """`walk` over image paths: the normalized image path of `path` with every symlink chased.
    `lstat_mode(p)` (st_mode of an lstat) and `readlink(p)` take image paths ("/usr/lib");
    lstat_mode raises for a missing component, or returns None to have the rest appended
    unresolved. One lstat_mode call per component walked."""

    def step(parent: str, name: str) -> tuple[str, bool] | None:
        cur = "/" + name if parent == "/" else f"{parent}/{name}"
        mode = lstat_mode(cur)
        return None if mode is None else (cur, _stat.S_ISLNK(mode))

    nodes, rest = walk(path, "/", step, readlink, loop)
    if not rest:
        return nodes[-1]
    return "/".join([nodes[-1].rstrip("/"), *rest])


class ImageFS(abc.ABC):
    """A read-only tree: a directory, or a filesystem inside an image file, read without mounting.

    Readers raise StrataError(kind=NOT_FOUND, errno=ENOENT) for missing paths and
    StrataError(kind=INVALID) naming the image for corrupt structures. `lstat`, `listdir`,
    `read`, `readlink` and `getxattr` do not follow a symlink in the *last* component but do
    follow symlinks in intermediate components (within the image).
    """

    #: what to call this image in messages (usually its path)
    label: str

    @abc.abstractmethod
    def lstat(self, path: str) -> Stat: ...

    @abc.abstractmethod
    def listdir(self, path: str) -> list[str]:
        """Entry names, without "." and "..", in on-disk order."""

    @abc.abstractmethod
    def read(self, path: str, *, limit: int | None = None) -> bytes:
        """Contents of a regular file (at most `limit` bytes)."""

    @abc.abstractmethod
    def readlink(self, path: str) -> str: ...

    @abc.abstractmethod
    def getxattr(self, path: str, name: str) -> bytes | None:
        """Value of extended attribute `name` (e.g. "user.extension-release.strict"), or None."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release file handles."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def exists(self, path: str) -> bool:
        try:
            self.lstat(path)
        except StrataError as e:
            if e.errno == errno.ENOENT or e.kind is ErrorKind.NOT_FOUND:
                return False
            raise
        return True

    def resolve(self, path: str) -> str:
        """Chase symlinks in every component with the image root as "/" ("chase" in systemd
        terms); returns the normalized image path. Missing components raise NOT_FOUND."""
        return chase_path(path, lambda p: self.lstat(p).mode, self.readlink,
                          lambda link: too_many_links(f"{self.label}:{link}"))


def not_found(where: str) -> StrataError:
    """ENOENT for `where` ("<image>:<path>")."""
    return StrataError(f"{where}: No such file or directory", kind=ErrorKind.NOT_FOUND,
                       errno=errno.ENOENT)


def too_many_links(where: str) -> StrataError:
    """ELOOP for `where` ("<image>:<path>")."""
    return StrataError(f"{where}: too many levels of symbolic links", kind=ErrorKind.INVALID,
                       errno=errno.ELOOP)


class DirectoryFS(ImageFS):
    """A directory extension. Intermediate symlinks are resolved inside the directory."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.label = root
        self._resolved: dict[str, str] = {}

    def resolve(self, path: str) -> str:
        """As ImageFS.resolve, but with one os.lstat per component (the generic version goes
        through self.lstat, which resolves each parent again) and a memo of directories."""
        key = "/" + "/".join(split(path))
        hit = self._resolved.get(key)
        if hit is not None:
            return hit

        def lstat_mode(cur: str) -> int:
            try:
                return os.lstat(posixpath.join(self.root, cur[1:])).st_mode
            except OSError as e:
                raise self._wrap(e, cur) from e

        result = chase_path(path, lstat_mode,
                            lambda cur: os.readlink(posixpath.join(self.root, cur[1:])),
                            lambda _link: too_many_links(f"{self.label}:{key}"))
        self._resolved[key] = result
        return result

    def _host(self, path: str) -> str:
        parts = split(path)
        if not parts:
            return self.root
        parent = self.resolve("/" + "/".join(parts[:-1])) if len(parts) > 1 else "/"
        return posixpath.join(self.root, parent.lstrip("/"), parts[-1])

    def _wrap(self, exc: OSError, path: str) -> StrataError:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return not_found(f"{self.label}:{path}")
        return StrataError.from_os(exc, f"{self.label}:{path}")

    def lstat(self, path: str) -> Stat:
        parts = split(path)
        try:
            if len(parts) > 1:
                host = self._host(path)
            else:
                host = posixpath.join(self.root, *parts) if parts else self.root
            st = os.lstat(host)
        except OSError as e:
            raise self._wrap(e, path) from e
        return Stat(FileKind.from_mode(st.st_mode), st.st_mode, st.st_size, st.st_uid,
                    st.st_gid, int(st.st_mtime))

    def listdir(self, path: str) -> list[str]:
        try:
            # O_NOFOLLOW: a symlink as the last component must not lead out of the image
            fd = os.open(self._host(path), os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                         | os.O_CLOEXEC)
        except OSError as e:
            if e.errno == errno.ELOOP:
                e = OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
            raise self._wrap(e, path) from e
        try:
            with os.scandir(fd) as it:
                return [e.name for e in it]
        finally:
            os.close(fd)

    def read(self, path: str, *, limit: int | None = None) -> bytes:
        try:
            fd = os.open(self._host(path), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as e:
            raise self._wrap(e, path) from e
        try:
            if not _stat.S_ISREG(os.fstat(fd).st_mode):
                raise StrataError(f"{self.label}:{path}: not a regular file",
                                  kind=ErrorKind.INVALID)
            chunks: list[bytes] = []
            remaining = limit if limit is not None else -1
            while remaining != 0:
                chunk = os.read(fd, 1 << 20 if remaining < 0 else min(remaining, 1 << 20))
                if not chunk:
                    break
                chunks.append(chunk)
                if remaining > 0:
                    remaining -= len(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)

    def readlink(self, path: str) -> str:
        try:
            return os.readlink(self._host(path))
        except OSError as e:
            raise self._wrap(e, path) from e

    def getxattr(self, path: str, name: str) -> bytes | None:
        try:
            return os.getxattr(self._host(path), name, follow_symlinks=False)
        except OSError as e:
            if e.errno in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP):
                return None
            raise self._wrap(e, path) from e
