"""A reader for "newc" and "crc" cpio archives (SVR4, magic 070701/070702): rpm's payload
format, as `rpm2cpio` writes it.

Why our own: `rpmfile` reports `mode & 0o777` (setuid lost) and skips directories
(../shared/reference/libs.md §5); the newc header carries everything an image needs, and it is
small. Pure parsing over a byte stream, read once, front to back: `entries()` gives each header
with a reader for its data, `members()` turns them into format-neutral tarsafe.Members,
resolving hardlinks.

newc hardlinks: the files of a link group share (dev, ino) and nlink > 1; the data is stored
once, with the *last* of them (rpm and GNU cpio both do this), the others have size 0. So names
seen before the data are held back, then written as hardlinks to the one carrying the data.
"""

from __future__ import annotations

import stat
from collections.abc import Iterator
from typing import IO

from strata.build.tarsafe import Member, MemberKind, Readable
from strata.record import record

HEADER_LEN = 110
MAGIC_NEWC = b"070701"
MAGIC_CRC = b"070702"
TRAILER = "TRAILER!!!"
MAX_NAME = 4096  # PATH_MAX: longer names are garbage, not paths
MAX_LINK_TARGET = 4095
_CHUNK = 1 << 20


class CpioError(Exception):
    """A malformed archive; `truncated` if it ends early (the caller words the message)."""

    def __init__(self, message: str, *, truncated: bool = False) -> None:
        super().__init__(message)
        self.truncated = truncated


@record
class CpioEntry:
    """One newc header, decoded."""

    name: str  # surrogate-escaped if not UTF-8
    mode: int  # full st_mode: type and permission bits (setuid/setgid/sticky included)
    uid: int
    gid: int
    nlink: int
    mtime: int
    size: int
    ino: int
    dev: tuple[int, int]  # (major, minor) of the device the file was on: with ino, link groups
    rdev: tuple[int, int]  # (major, minor) of a device node
    check: int  # crc format: the sum of the data's bytes (mod 2**32); 0 in newc


def _hex(field: bytes, what: str) -> int:
    try:
        return int(field, 16)
    except ValueError:
        raise CpioError(f"invalid {what} field {field!r} in a header") from None


def parse_header(raw: bytes) -> tuple[bool, list[int]]:
    """A 110-byte header -> (crc format?, its 13 numbers after the magic)."""
    magic = raw[:6]
    if magic not in (MAGIC_NEWC, MAGIC_CRC):
        if magic in (b"070707", b"07070X"):
            raise CpioError(f"unsupported cpio format (magic {magic.decode()}; newc expected)")
        raise CpioError(f"not a newc cpio header (magic {magic!r})")
    names = ("ino", "mode", "uid", "gid", "nlink", "mtime", "filesize", "devmajor", "devminor",
             "rdevmajor", "rdevminor", "namesize", "check")
    return magic == MAGIC_CRC, [_hex(raw[6 + 8 * i: 14 + 8 * i], n) for i, n in enumerate(names)]


class _Reader:
    """Exact reads over the stream, counting the offset (for the 4-byte padding)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.offset = 0

    def read(self, n: int, what: str) -> bytes:
        chunk = self.stream.read(n)
        if len(chunk) < n:  # a pipe gives what it has: read on until n, or the end
            parts = [chunk]
            got = len(chunk)
            while chunk and got < n:
                chunk = self.stream.read(n - got)
                parts.append(chunk)
                got += len(chunk)
            if got < n:
                raise CpioError(f"the archive ends inside {what}", truncated=True)
            chunk = b"".join(parts)
        self.offset += n
        return chunk

    def skip(self, n: int, what: str) -> None:
        while n > 0:
            step = min(n, _CHUNK)
            self.read(step, what)
            n -= step

    def align(self, what: str) -> None:
        self.skip(-self.offset % 4, what)


class EntryData:
    """The data of the current entry: read() gives at most what is left of it; reading past the
    archive's end raises CpioError(truncated). Verifies a crc-format checksum at the end."""

    def __init__(self, reader: _Reader, entry: CpioEntry, crc: bool) -> None:
        self._reader = reader
        self._entry = entry
        self._left = entry.size
        self._sum: int | None = 0 if crc else None

    def read(self, n: int = -1) -> bytes:
        if n < 0 or n > self._left:
            n = self._left
        if n == 0:
            return b""
        data = self._reader.read(n, f"the data of {self._entry.name!r}")
        self._left -= n
        if self._sum is not None:
            self._sum = (self._sum + sum(data)) & 0xFFFFFFFF
            if self._left == 0 and self._sum != self._entry.check:
                raise CpioError(f"checksum mismatch in {self._entry.name!r}")
        return data

    def finish(self) -> None:
        """Skip what was not read, and the padding after it."""
        while self._left:
            self.read(min(self._left, _CHUNK))
        self._reader.align("padding")


def entries(stream: IO[bytes]) -> Iterator[tuple[CpioEntry, EntryData]]:
    """Every entry up to TRAILER!!!, with a reader for its data that is valid until the next
    iteration (what is left unread is skipped). An archive without the trailer is truncated."""
    reader = _Reader(stream)
    while True:
        raw = reader.read(HEADER_LEN, "a header")
        crc, (ino, mode, uid, gid, nlink, mtime, size, dmaj, dmin, rmaj, rmin, namesize,
              check) = parse_header(raw)
        if namesize < 2 or namesize > MAX_NAME + 1:
            raise CpioError(f"invalid name size {namesize} in a header")
        rawname = reader.read(namesize, "a name")
        if rawname[-1] != 0 or 0 in rawname[:-1]:
            raise CpioError(f"name {rawname[:-1]!r} is not NUL-terminated")
        reader.align("padding")
        name = rawname[:-1].decode("utf-8", "surrogateescape")
        if name == TRAILER:
            return
        entry = CpioEntry(name=name, mode=mode, uid=uid, gid=gid, nlink=nlink, mtime=mtime,
                          size=size, ino=ino, dev=(dmaj, dmin), rdev=(rmaj, rmin), check=check)
        data = EntryData(reader, entry, crc)
        yield entry, data
        data.finish()


_KINDS = {
    stat.S_IFREG: MemberKind.FILE,
    stat.S_IFDIR: MemberKind.DIRECTORY,
    stat.S_IFLNK: MemberKind.SYMLINK,
    stat.S_IFCHR: MemberKind.CHAR_DEVICE,
    stat.S_IFBLK: MemberKind.BLOCK_DEVICE,
    stat.S_IFIFO: MemberKind.FIFO,
    stat.S_IFSOCK: MemberKind.SOCKET,
}


def _member(entry: CpioEntry, kind: MemberKind, linkname: str = "", size: int = 0) -> Member:
    return Member(name=entry.name, kind=kind, mode=stat.S_IMODE(entry.mode), size=size,
                  mtime=entry.mtime, linkname=linkname)


def members(stream: IO[bytes]) -> Iterator[tuple[Member, Readable | None]]:
    """The archive as tarsafe Members, each with the reader for a regular file's data (valid
    until the next iteration). Hardlinks come out as HARDLINK members naming the group's first
    written file; a group whose members all have no data becomes an empty file and links."""
    leaders: dict[tuple[int, int, int], str] = {}  # link group -> the name holding its data
    waiting: dict[tuple[int, int, int], list[CpioEntry]] = {}  # names seen before the data
    for entry, data in entries(stream):
        kind = _KINDS.get(stat.S_IFMT(entry.mode), MemberKind.UNKNOWN)
        if kind is MemberKind.SYMLINK:
            if entry.size > MAX_LINK_TARGET:
                raise CpioError(f"symlink {entry.name!r} has a {entry.size}-byte target")
            target = data.read().decode("utf-8", "surrogateescape")
            yield _member(entry, kind, linkname=target), None
            continue
        if kind is not MemberKind.FILE or entry.nlink < 2:
            yield _member(entry, kind, size=entry.size if kind is MemberKind.FILE else 0), \
                (data if kind is MemberKind.FILE else None)
            continue
        key = (*entry.dev, entry.ino)
        leader = leaders.get(key)
        if leader is not None and entry.size == 0:
            yield _member(entry, MemberKind.HARDLINK, linkname=leader), None
        elif entry.size == 0:
            waiting.setdefault(key, []).append(entry)
        else:  # the data: this name is written, those held back link to it
            if leader is None:
                leaders[key] = entry.name
            yield _member(entry, MemberKind.FILE, size=entry.size), data
            for held in waiting.pop(key, []):
                yield _member(held, MemberKind.HARDLINK, linkname=entry.name), None
    for held_back in waiting.values():  # groups of empty files
        first, *rest = held_back
        yield _member(first, MemberKind.FILE), None
        for other in rest:
            yield _member(other, MemberKind.HARDLINK, linkname=first.name), None
