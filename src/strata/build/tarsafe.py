"""Safe extraction of package payloads (tar and cpio members) into a staging tree.

Why not tarfile's own extraction filters: on Python 3.11 they are wrong both ways for image
trees (../shared/reference/libs.md §5). `data` clears setuid bits and refuses absolute symlinks,
which images need (`/usr/bin/sudo` is 04755; `/usr/lib/os-release` -> `/etc/...` is interpreted
inside the image); `tar` links hardlinks to files outside the tree; and the filters have had
bypasses fixed in later CPython releases. So tarfile (and cpio.py) only *parse*; this module
decides, member by member, with one pure function (`check_member`), and writes with *at()
system calls relative to directory descriptors opened with O_NOFOLLOW, so that not even a race
can make a write follow a symlink out of the tree.

The rules (dpkg's, where dpkg has one):
- names: a leading "/" and "./" are stripped (dpkg does the same), "." and empty components are
  dropped; any ".." component is refused.
- parents: every existing parent must be a real directory; a symlink parent (an archive's own, a
  previous package's) is refused rather than written through; missing parents are created 0755.
- symlinks: kept as they are, absolute ones too (they are resolved inside the image at run time);
  a relative target that climbs above the tree's root is refused (it points out of the tree).
- hardlinks: the target must be a regular file this extraction has already written.
- device nodes, fifos, sockets: refused, or handed to `on_special` and skipped.
- modes: the full permission bits, setuid/setgid/sticky included; ownership is not applied (the
  build makes everything root's). mtimes: set on files, directories and symlinks (as GNU tar,
  and so `dpkg-deb -x`, does); not on hardlinks (they share the inode of their target).
- an existing directory is never replaced by a non-directory, nor a non-directory or symlink by a
  directory; other existing entries are replaced (the last package wins, as tar does).
"""

from __future__ import annotations

import enum
import errno
import os
import tarfile
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Protocol, Self, cast

from strata.errors import ErrorKind, StrataError
from strata.images.base import FileKind
from strata.record import record

if TYPE_CHECKING:
    from types import TracebackType

#: longest symlink target Linux accepts (PATH_MAX including the NUL)
MAX_LINK_TARGET = 4095
_CHUNK = 1 << 20
_FD_CACHE = 64  # directory descriptors kept open between members

OnSpecial = Callable[[str, str], None]


class MemberKind(enum.Enum):
    """What an archive member is; the value is how messages and `on_special` name it."""

    FILE = "file"
    DIRECTORY = "directory"
    SYMLINK = "symlink"
    HARDLINK = "hardlink"
    CHAR_DEVICE = "character device"
    BLOCK_DEVICE = "block device"
    FIFO = "fifo"
    SOCKET = "socket"
    UNKNOWN = "unknown member type"


SPECIAL_KINDS = frozenset({MemberKind.CHAR_DEVICE, MemberKind.BLOCK_DEVICE, MemberKind.FIFO,
                           MemberKind.SOCKET})


@record
class Member:
    """One archive member, format-neutral (tar and cpio readers both produce these)."""

    name: str  # as written in the archive (surrogate-escaped if not UTF-8)
    kind: MemberKind
    mode: int = 0o644  # permission bits only, setuid/setgid/sticky included
    size: int = 0  # bytes of data that follow (regular files)
    mtime: int = 0  # seconds since the epoch
    linkname: str = ""  # symlink target, or the archive name a hardlink points to


class Action(enum.Enum):
    WRITE = "write"  # create the member at `path`
    SKIP_ROOT = "skip-root"  # the archive's "./" entry: `dest` belongs to the caller
    SPECIAL = "special"  # device/fifo/socket: refused, or dropped through on_special
    REFUSE = "refuse"


@record
class Decision:
    action: Action
    path: str = ""  # normalised, relative to dest: "usr/bin/jq"
    reason: str = ""  # why, for REFUSE and SPECIAL


class Readable(Protocol):
    """Where a regular file's data comes from (tarfile's member file, cpio's EntryData)."""

    def read(self, size: int = -1, /) -> bytes: ...


class DestState(Protocol):
    """What `check_member` may know about the destination tree."""

    def kind(self, path: str) -> FileKind | None:
        """The entry at relative `path` (not following a symlink in its last component; its
        parents have been checked to be real directories), or None if absent."""

    def is_extracted_file(self, path: str) -> bool:
        """True if this extraction wrote a regular file at `path` (and it is still there)."""


def split_name(name: str) -> list[str] | None:
    """An archive name as path components, dpkg's way: leading "/" and "./" stripped, "." and
    empty components dropped. None if any component is "..". ("" and "./" give [].)"""
    parts = [p for p in name.split("/") if p and p != "."]
    return None if ".." in parts else parts


def climbs_out(link_path: str, target: str) -> bool:
    """True if relative `target`, read from the directory of `link_path`, goes above the root."""
    depth = link_path.count("/")  # the link's directory depth: "usr/bin/x" -> 2
    for part in target.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part and part != ".":
            depth += 1
    return False


def _refuse(path: str, reason: str) -> Decision:
    return Decision(Action.REFUSE, path, reason)


def check_member(member: Member, state: DestState) -> Decision:
    """Decide what to do with `member`, given what is already in the destination. Pure: it
    only asks `state`, and the extraction loop carries the decision out."""
    if "\0" in member.name:
        return _refuse("", "NUL byte in the name")
    parts = split_name(member.name)
    if parts is None:
        return _refuse("", "path climbs out of the tree ('..')")
    path = "/".join(parts)
    kind = member.kind
    if not parts:
        if kind is MemberKind.DIRECTORY:
            return Decision(Action.SKIP_ROOT)
        return _refuse("", f"{kind.value} with an empty name (the tree's root)")
    if kind in SPECIAL_KINDS:
        return Decision(Action.SPECIAL, path, f"{kind.value}s are not allowed in an image")
    if kind is MemberKind.UNKNOWN:
        return _refuse(path, "unsupported member type")

    for i in range(1, len(parts)):
        parent = "/".join(parts[:i])
        found = state.kind(parent)
        if found is None:
            break  # created, with what is below it
        if found is FileKind.SYMLINK:
            return _refuse(path, f"parent {parent} is a symlink (writing through it is refused)")
        if found is not FileKind.DIRECTORY:
            return _refuse(path, f"parent {parent} is not a directory")

    existing = state.kind(path)
    if kind is MemberKind.DIRECTORY:
        if existing is FileKind.SYMLINK:
            return _refuse(path, "a symlink is already there (writing through it is refused)")
        if existing not in (None, FileKind.DIRECTORY):
            return _refuse(path, "a non-directory is already there")
    elif existing is FileKind.DIRECTORY:
        return _refuse(path, f"a directory is already there (not replaced by a {kind.value})")

    if kind is MemberKind.SYMLINK:
        target = member.linkname
        if not target or "\0" in target:
            return _refuse(path, "symlink with an empty or invalid target")
        if len(os.fsencode(target)) > MAX_LINK_TARGET:
            return _refuse(path, "symlink target too long")
        if not target.startswith("/") and climbs_out(path, target):
            return _refuse(path, f"symlink target {show(target)} climbs out of the tree")
    elif kind is MemberKind.HARDLINK:
        tparts = split_name(member.linkname)
        if tparts is None:
            return _refuse(path, f"hardlink target {show(member.linkname)} is outside the tree")
        target = "/".join(tparts)
        if not target or target == path:
            return _refuse(path, f"hardlink to {show(member.linkname)}: invalid target")
        if not state.is_extracted_file(target):
            return _refuse(path, f"hardlink target {show(member.linkname)} is not a file "
                                 "extracted before it from this archive")
    return Decision(Action.WRITE, path)


def show(name: str) -> str:
    """`name` quoted for a one-line message: control characters and undecodable bytes escaped."""
    raw = os.fsencode(name).decode("utf-8", "backslashreplace")
    out = [c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in raw]
    return "'" + "".join(out).replace("'", "\\'") + "'"


def member_error(package: str, name: str, reason: str) -> StrataError:
    return StrataError(f"{package}: member {show(name)}: {reason}", kind=ErrorKind.INVALID)


class _DiskState:
    """DestState for the real destination: lstat() below `dest`, plus what was written."""

    def __init__(self, dest: str) -> None:
        self.dest = dest
        self.files: set[str] = set()
        self.dirs: set[str] = set()  # known real directories (never replaced while extracting)

    def kind(self, path: str) -> FileKind | None:
        if path in self.dirs:
            return FileKind.DIRECTORY
        try:
            st = os.lstat(f"{self.dest}/{path}")
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as e:
            raise StrataError.from_os(e, f"{self.dest}/{path}") from e
        found = FileKind.from_mode(st.st_mode)
        if found is FileKind.DIRECTORY:
            self.dirs.add(path)
        return found

    def is_extracted_file(self, path: str) -> bool:
        return path in self.files


class MemberReadError(Exception):
    """Reading a member's data failed (the archive's fault, not the destination's): wraps
    the reader's OSError so that it is not reported as a write error."""

    def __init__(self, cause: OSError) -> None:
        super().__init__(str(cause))
        self.cause = cause


class Extractor:
    """Writes members, in archive order, below the existing directory `dest`.

    `add()` checks each member with `check_member` and writes it; refusals raise a one-line
    StrataError(INVALID) naming `package` and the member. Directory modes and mtimes are applied
    by `close()` (children change a directory's mtime; a read-only mode would stop them). Errors
    while *reading* the member's data propagate unchanged for the caller to name (see
    `archive_error`); `current` is the member being written, `last` the last one finished."""

    def __init__(self, dest: str, *, package: str, on_special: OnSpecial | None = None) -> None:
        self.package = package
        self.on_special = on_special
        self.current: str | None = None
        self.last: str | None = None
        self.count = 0
        self._state = _DiskState(dest)
        try:
            self._root = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            raise StrataError.from_os(e, dest) from e
        self._fds: dict[tuple[str, ...], int] = {}
        self._dir_attrs: dict[tuple[str, ...], tuple[int, int]] = {}

    def __enter__(self) -> Extractor:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close(apply=exc is None)

    def add(self, member: Member, data: Readable | None) -> None:
        """Check and write one member; `data` gives a regular file's `member.size` bytes."""
        decision = check_member(member, self._state)
        if decision.action is Action.SKIP_ROOT:
            return
        if decision.action is Action.REFUSE:
            raise member_error(self.package, member.name, decision.reason)
        if decision.action is Action.SPECIAL:
            if self.on_special is None:
                raise member_error(self.package, member.name, decision.reason)
            self.on_special("/" + decision.path, member.kind.value)
            return
        self._trim_fds()
        self.current = member.name
        parts = tuple(decision.path.split("/"))
        try:
            self._write(member, parts, data)
        except OSError as e:
            raise self._os_error(member.name, e) from e
        self.current = None
        self.last = member.name
        self.count += 1

    def close(self, *, apply: bool = True) -> None:
        """Apply the directories' modes and mtimes (unless `apply` is false: after a failure)
        and release the descriptors."""
        try:
            if apply:
                for parts, (mode, mtime) in self._dir_attrs.items():
                    self._trim_fds()
                    name = "/".join(parts)
                    try:
                        fd = self._dir_fd(parts, create=False)
                        os.fchmod(fd, mode)
                        os.utime(fd, ns=(mtime, mtime))
                    except OSError as e:
                        raise self._os_error(name, e) from e
        finally:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()
            if self._root >= 0:
                os.close(self._root)
                self._root = -1

    # -- writing -----------------------------------------------------------------------------

    def _os_error(self, name: str, e: OSError) -> StrataError:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):  # a symlink raced in under a checked path
            return member_error(self.package, name, "a parent is not a real directory "
                                "(writing through symlinks is refused)")
        return StrataError.from_os(e, f"{self.package}: member {show(name)}")

    def _trim_fds(self) -> None:
        if len(self._fds) > _FD_CACHE:  # oldest first: dicts keep insertion order
            for key in list(self._fds)[: len(self._fds) - _FD_CACHE // 2]:
                os.close(self._fds.pop(key))

    def _dir_fd(self, parts: tuple[str, ...], *, create: bool) -> int:
        """A descriptor for directory `parts` below dest, opened one component at a time with
        O_NOFOLLOW (a symlink anywhere is ELOOP/ENOTDIR); missing ones made 0755 if `create`."""
        if not parts:
            return self._root
        fd = self._fds.get(parts)
        if fd is not None:
            return fd
        parent = self._dir_fd(parts[:-1], create=create)
        name = parts[-1]
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(name, flags, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                raise
            os.mkdir(name, 0o755, dir_fd=parent)
            fd = os.open(name, flags, dir_fd=parent)
            os.fchmod(fd, 0o755)  # not the umask's idea
        self._fds[parts] = fd
        self._state.dirs.add("/".join(parts))
        return fd

    def _clear(self, parent: int, name: str) -> None:
        """Remove a non-directory at `name` (check_member refused replacing a directory)."""
        try:
            os.unlink(name, dir_fd=parent)
        except FileNotFoundError:
            pass

    def _write(self, member: Member, parts: tuple[str, ...], data: Readable | None) -> None:
        path = "/".join(parts)
        parent = self._dir_fd(parts[:-1], create=True)
        name = parts[-1]
        kind = member.kind
        mtime_ns = member.mtime * 1_000_000_000
        if kind is MemberKind.DIRECTORY:
            try:
                os.mkdir(name, 0o700, dir_fd=parent)
            except FileExistsError:
                pass
            self._dir_fd(parts, create=False)  # a real directory, or ELOOP/ENOTDIR
            self._dir_attrs[parts] = (member.mode & 0o7777, mtime_ns)
            return
        self._state.files.discard(path)
        self._clear(parent, name)
        if kind is MemberKind.FILE:
            self._write_file(member, parent, name, data)
            self._state.files.add(path)
        elif kind is MemberKind.SYMLINK:
            os.symlink(member.linkname, name, dir_fd=parent)
            os.utime(name, ns=(mtime_ns, mtime_ns), dir_fd=parent, follow_symlinks=False)
        elif kind is MemberKind.HARDLINK:
            tparts = tuple(split_name(member.linkname) or ())
            tparent = self._dir_fd(tparts[:-1], create=False)
            os.link(tparts[-1], name, src_dir_fd=tparent, dst_dir_fd=parent,
                    follow_symlinks=False)
            self._state.files.add(path)
        else:  # pragma: no cover - check_member lets no other kind through
            raise AssertionError(kind)

    def _write_file(self, member: Member, parent: int, name: str,
                    data: Readable | None) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(name, flags, 0o600, dir_fd=parent)
        try:
            left = member.size
            while left > 0:
                try:
                    chunk = data.read(min(left, _CHUNK)) if data is not None else b""
                except OSError as e:  # a decoder's (BadGzipFile is one): not the disk's
                    raise MemberReadError(e) from e
                if not chunk:
                    raise member_error(self.package, member.name,
                                       f"truncated: {left} of {member.size} bytes missing")
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
                left -= len(chunk)
            os.fchmod(fd, member.mode & 0o7777)  # after the data: writes may clear setuid
            mtime_ns = member.mtime * 1_000_000_000
            os.utime(fd, ns=(mtime_ns, mtime_ns))
        finally:
            os.close(fd)


# -- tar ----------------------------------------------------------------------------------------


class _TarTruncatedError(Exception):
    pass


class _TarCorruptError(Exception):
    pass


# tarfile's header errors (not in typeshed): a zero block, a short read, garbage
_EOF_HEADER: type[Exception] = tarfile.EOFHeaderError  # type: ignore[attr-defined]
_SHORT_HEADER: tuple[type[Exception], ...] = (
    tarfile.TruncatedHeaderError, tarfile.EmptyHeaderError)  # type: ignore[attr-defined]
_BAD_HEADER: type[Exception] = tarfile.InvalidHeaderError  # type: ignore[attr-defined]


class _StrictTarInfo(tarfile.TarInfo):
    """TarInfo whose header errors after the first member are not taken for the end of the
    archive: tarfile.next() treats a truncated or garbled header (and a missing end-of-archive
    block) at a non-zero offset as a clean end, which would silently drop the rest."""

    @classmethod
    def fromtarfile(cls, tarfile_: tarfile.TarFile) -> Self:
        try:
            return super().fromtarfile(tarfile_)
        except _EOF_HEADER:
            raise  # a zero block: the real end
        except _SHORT_HEADER as e:
            raise _TarTruncatedError(f"archive ends inside a header or lacks its end ({e})") \
                from None
        except _BAD_HEADER as e:
            raise _TarCorruptError(f"invalid tar header ({e})") from None


_TAR_KINDS = {
    tarfile.DIRTYPE: MemberKind.DIRECTORY,
    tarfile.SYMTYPE: MemberKind.SYMLINK,
    tarfile.LNKTYPE: MemberKind.HARDLINK,
    tarfile.CHRTYPE: MemberKind.CHAR_DEVICE,
    tarfile.BLKTYPE: MemberKind.BLOCK_DEVICE,
    tarfile.FIFOTYPE: MemberKind.FIFO,
}


def member_from_tarinfo(info: tarfile.TarInfo) -> Member:
    kind = MemberKind.FILE if info.isreg() else _TAR_KINDS.get(info.type, MemberKind.UNKNOWN)
    return Member(name=info.name, kind=kind, mode=info.mode & 0o7777,
                  size=info.size if kind is MemberKind.FILE else 0, mtime=int(info.mtime),
                  linkname=info.linkname)


def open_tar_stream(fileobj: Readable) -> tarfile.TarFile:
    """A tarfile reading `fileobj` (already decompressed) strictly, as a stream: only read()
    is used."""
    return tarfile.open(fileobj=cast("IO[bytes]", fileobj), mode="r|", encoding="utf-8",
                        errors="surrogateescape", tarinfo=_StrictTarInfo)


class _Watched:
    """The decompressed stream as tarfile reads it (always in blocks of its record size),
    keeping the last two blocks read: after tarfile stops at the end-of-archive block, `finish`
    checks that what follows it is zeros, and reads the stream to its very end, so that the
    decoder checks its own trailer (gzip's CRC, xz's and zstd's checksums), which tarfile never
    reaches: corrupt data in a stored gzip block would otherwise go unnoticed."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self.pos = 0
        self._prev = b""
        self._last = b""

    def read(self, size: int = -1, /) -> bytes:
        data = self._raw.read(size)
        self.pos += len(data)
        self._prev, self._last = self._last, data
        return data

    def finish(self, end: int) -> None:
        """`end`: where tarfile found the end-of-archive block."""
        seen = self._prev + self._last
        after = seen[max(0, len(seen) - (self.pos - end)):]
        if after.strip(b"\0"):
            raise _TarCorruptError("data after the end-of-archive block")
        while chunk := self._raw.read(_CHUNK):
            if chunk.strip(b"\0"):
                raise _TarCorruptError("data after the end-of-archive block")


def extract_tar(fileobj: IO[bytes], dest: str, *, package: str, label: str,
                on_special: OnSpecial | None = None) -> int:
    """Extract the (decompressed) tar stream `fileobj`, called `label` in messages, into the
    existing directory `dest`. Returns the number of members written. The stream is read to
    its end: a decoder's checksum failure, or anything but zeros after the archive's end
    block, is an error too."""
    watched = _Watched(fileobj)
    with Extractor(dest, package=package, on_special=on_special) as ex:
        try:
            with open_tar_stream(watched) as tf:
                for info in tf:
                    member = member_from_tarinfo(info)
                    data = tf.extractfile(info) if member.kind is MemberKind.FILE else None
                    ex.add(member, data)
                watched.finish(tf.offset)
        except StrataError:
            raise
        except Exception as e:  # every decoder's own errors: named by archive_error
            raise archive_error(e, package, label, ex) from e
        return ex.count


# -- errors while reading -------------------------------------------------------------------------


def is_truncation(exc: BaseException) -> bool:
    """Whether a reading error means the data ended early (rather than being garbled)."""
    if isinstance(exc, EOFError | _TarTruncatedError):
        return True
    if isinstance(exc, tarfile.ReadError):
        return "unexpected end of data" in str(exc) or "truncated" in str(exc)
    return bool(getattr(exc, "truncated", False))


def archive_error(exc: BaseException, package: str, label: str,
                  ex: Extractor | None = None) -> StrataError:
    """One line for an error raised while reading `label` of `package` (a decoder's, tarfile's,
    the cpio reader's), naming the member being read or the last one read."""
    if isinstance(exc, MemberReadError):
        exc = exc.cause
    detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    what = "truncated" if is_truncation(exc) else "corrupt"
    where = ""
    if ex is not None and ex.current is not None:
        where = f" in member {show(ex.current)}"
    elif ex is not None and ex.last is not None:
        where = f" after member {show(ex.last)}"
    return StrataError(f"{package}: {label}: {what}{where}: {detail}", kind=ErrorKind.INVALID)

