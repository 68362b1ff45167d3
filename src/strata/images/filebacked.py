"""What the file system readers share: a byte range of a file read with os.pread, turned into
an ImageFS by walking inodes.

`FileBackedFS` owns the descriptor and the region (`offset`, `size`), the bounds-checked
`_pread`, `close`, and `_guard`, which turns the readers' internal exceptions (and the
struct.error/IndexError/... a damaged image provokes in parsing code) into one-line
StrataErrors naming the image, the path and the format. It also implements the ImageFS methods
on top of a few per-format hooks: the root inode, a directory lookup, a symlink target, file
contents and extended attributes. Path walking is `base.walk`, shared with DirectoryFS and
fsutil.chase.

Readers raise `CorruptError` deep in their parsers for damaged structures and `UnsupportedError`
for valid ones they cannot read; neither ever reaches a caller.
"""

from __future__ import annotations

import abc
import contextlib
import errno
import os
import stat as _stat
import struct
import zlib
from collections import OrderedDict
from typing import TYPE_CHECKING, ClassVar, Generic, Protocol, TypeVar

from strata.errors import ErrorKind, StrataError
from strata.images.base import FileKind, ImageFS, Stat, not_found, too_many_links, walk

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator


class CorruptError(Exception):
    """A damaged structure, raised deep in a parser; `_guard` adds the image and path."""


class UnsupportedError(CorruptError):
    """A valid structure the reader does not handle (an encrypted inode, an EROFS feature)."""


#: what parsing code raises on bytes that do not add up (zlib.error: EROFS DEFLATE streams)
_INTERNAL = (struct.error, IndexError, ValueError, OverflowError, KeyError, RecursionError,
             MemoryError, zlib.error)


def one_line(exc: BaseException) -> str:
    """An exception's message with its white space folded (messages are one line)."""
    return " ".join(str(exc).split()) or type(exc).__name__


class InodeLike(Protocol):
    """What FileBackedFS needs of a reader's inode."""

    @property
    def mode(self) -> int: ...  # full st_mode
    @property
    def size(self) -> int: ...
    @property
    def uid(self) -> int: ...
    @property
    def gid(self) -> int: ...
    @property
    def mtime(self) -> int: ...


N = TypeVar("N", bound=InodeLike)
T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")


class LruCache(Generic[K, V]):
    """The `size` values last used (parsed metadata: blocks, inodes, directory listings)."""

    __slots__ = ("_data", "_size")

    def __init__(self, size: int) -> None:
        self._data: OrderedDict[K, V] = OrderedDict()
        self._size = size

    def get(self, key: K) -> V | None:
        hit = self._data.get(key)
        if hit is not None:
            self._data.move_to_end(key)
        return hit

    def put(self, key: K, value: V) -> V:
        """Remember `value` (dropping the least recently used beyond `size`); returns it."""
        self._data[key] = value
        if len(self._data) > self._size:
            self._data.popitem(last=False)
        return value


class FileBackedFS(ImageFS, Generic[N]):
    """A file system in the file `path`, starting `offset` bytes in and `size` bytes long
    (default: to the end of the file). Subclasses set FORMAT and implement `_load` and the
    inode hooks below; every message keeps the wording its reader always had."""

    #: the format as messages name it: "<image>:<path>: corrupt <FORMAT>: <what>"
    FORMAT: ClassVar[str]
    #: the CorruptError messages for a read outside the image, and for a file that ends early
    #: (it shrank after it was opened); fields: pos, n, size, what, at (where it fell short)
    _OUTSIDE: ClassVar[str] = "read of {n} bytes at {pos} is outside the {size}-byte image"
    _SHORT: ClassVar[str] = "short read at {at}"

    def __init__(self, path: str, offset: int = 0, size: int | None = None) -> None:
        self.label = path
        self._fd = -1
        try:
            self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            end = os.lseek(self._fd, 0, os.SEEK_END)
        except OSError as e:
            self.close()
            raise StrataError.from_os(e, path) from e
        try:
            with self._guard(None):
                self._offset = offset
                self._size = self._region(offset, size, end)
                self._load()
        except BaseException:
            self.close()
            raise

    # -- per-format hooks --

    @abc.abstractmethod
    def _load(self) -> None:
        """Read and check the superblock and the root inode (runs inside `_guard`)."""

    @abc.abstractmethod
    def _root(self) -> N: ...

    @abc.abstractmethod
    def _child(self, directory: N, name: str) -> N | None:
        """The inode called `name` in `directory`, or None."""

    @abc.abstractmethod
    def _link_target(self, link: N) -> str: ...

    @abc.abstractmethod
    def _names(self, directory: N) -> list[str]:
        """Entry names, without "." and "..", in on-disk order."""

    @abc.abstractmethod
    def _contents(self, regular: N, limit: int | None) -> bytes:
        """A regular file's data, at most `limit` bytes of it."""

    @abc.abstractmethod
    def _xattr(self, node: N, name: str) -> bytes | None: ...

    def _region(self, offset: int, size: int | None, end: int) -> int:
        """The size of the image, given the file's size `end`; a region outside the file is
        refused."""
        if offset < 0 or offset > end or (size is not None and (size < 0 or offset + size > end)):
            raise StrataError(f"{self.label}: region at offset {offset} (size {size}) lies "
                              f"outside the {end}-byte file", kind=ErrorKind.INVALID)
        return end - offset if size is None else size

    def _where(self, path: str) -> str:
        """How messages name `path` in this image."""
        return f"{self.label}:{path}"

    def _not_a_directory(self, path: str, *, listing: bool) -> StrataError:
        """A non-directory where a directory is needed: in the middle of `path` (reported as
        missing, as DirectoryFS does), or as the directory to list (`listing`)."""
        if not listing:
            return self._missing(path)
        return StrataError(f"{self._where(path)}: not a directory", kind=ErrorKind.INVALID,
                           errno=errno.ENOTDIR)

    def _unsupported(self, where: str, exc: UnsupportedError) -> StrataError:
        """A valid image using something this reader cannot read."""
        return StrataError(f"{where}: {exc}, which this reader cannot read",
                           kind=ErrorKind.UNSUPPORTED)

    def _describe(self, exc: BaseException) -> str:
        """An unexpected parser exception, for "corrupt <FORMAT>: <this>"."""
        return one_line(exc)

    # -- plumbing --

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        # the descriptor is a raw int, which the garbage collector would not close for us
        if getattr(self, "_fd", -1) >= 0:
            self.close()

    def _pread(self, pos: int, n: int, what: str = "data") -> bytes:
        """Exactly `n` bytes at image offset `pos`; CorruptError if that leaves the image."""
        if pos < 0 or n < 0 or pos + n > self._size:
            raise CorruptError(self._OUTSIDE.format(pos=pos, n=n, size=self._size, what=what,
                                                    at=pos))
        if self._fd < 0:
            raise StrataError(f"{self.label}: image is already closed", kind=ErrorKind.USAGE)
        parts: list[bytes] = []
        at, left = pos, n
        while left > 0:
            chunk = os.pread(self._fd, left, self._offset + at)
            if not chunk:
                raise CorruptError(self._SHORT.format(pos=pos, n=n, size=self._size, what=what,
                                                      at=at))
            parts.append(chunk)
            at += len(chunk)
            left -= len(chunk)
        return b"".join(parts)

    def _read_superblock(self, parse: Callable[[bytes], T], at: int, length: int,
                         expected: str) -> T:
        """parse(the `length` bytes at `at`); its ValueError means the wrong kind of file rather
        than a damaged one: "<image>: not a valid <expected>: <reason>"."""
        try:
            if self._size < at + length:
                raise ValueError(f"only {self._size} bytes")
            return parse(self._pread(at, length))
        except ValueError as e:
            raise StrataError(f"{self.label}: not a valid {expected}: {e}",
                              kind=ErrorKind.INVALID) from None

    @contextlib.contextmanager
    def _guard(self, path: str | None) -> Iterator[None]:
        """Turn internal failures into one-line StrataErrors naming the image and `path`."""
        where = self.label if path is None else self._where(path)
        try:
            yield
        except UnsupportedError as e:
            raise self._unsupported(where, e) from None
        except CorruptError as e:
            raise StrataError(f"{where}: corrupt {self.FORMAT}: {e}",
                              kind=ErrorKind.INVALID) from None
        except OSError as e:
            raise StrataError.from_os(e, where) from e
        except _INTERNAL as e:
            raise StrataError(f"{where}: corrupt {self.FORMAT}: {self._describe(e)}",
                              kind=ErrorKind.INVALID) from None

    # -- paths --

    def _missing(self, path: str) -> StrataError:
        return not_found(self._where(path))

    def _lookup(self, path: str) -> N:
        """The inode at `path`: intermediate symlinks are followed inside the image, the last
        component is not."""

        def step(parent: N, name: str) -> tuple[N, bool]:
            if not _stat.S_ISDIR(parent.mode):
                raise self._not_a_directory(path, listing=False)
            node = self._child(parent, name)
            if node is None:
                raise self._missing(path)
            return node, _stat.S_ISLNK(node.mode)

        nodes, _ = walk(path, self._root(), step, self._link_target,
                        lambda _link: too_many_links(self._where(path)), follow_last=False)
        return nodes[-1]

    # -- ImageFS --

    def lstat(self, path: str) -> Stat:
        with self._guard(path):
            n = self._lookup(path)
            return Stat(FileKind.from_mode(n.mode), n.mode, n.size, n.uid, n.gid, n.mtime)

    def listdir(self, path: str) -> list[str]:
        with self._guard(path):
            n = self._lookup(path)
            if not _stat.S_ISDIR(n.mode):
                raise self._not_a_directory(path, listing=True)
            return self._names(n)

    def read(self, path: str, *, limit: int | None = None) -> bytes:
        with self._guard(path):
            n = self._lookup(path)
            if not _stat.S_ISREG(n.mode):
                raise StrataError(f"{self._where(path)}: not a regular file",
                                  kind=ErrorKind.INVALID)
            return self._contents(n, limit)

    def readlink(self, path: str) -> str:
        with self._guard(path):
            n = self._lookup(path)
            if not _stat.S_ISLNK(n.mode):
                raise StrataError(f"{self._where(path)}: not a symbolic link",
                                  kind=ErrorKind.INVALID, errno=errno.EINVAL)
            return self._link_target(n)

    def getxattr(self, path: str, name: str) -> bytes | None:
        with self._guard(path):
            return self._xattr(self._lookup(path), name)
