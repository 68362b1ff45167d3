"""Where `strata ext install` gets an image from, and copying it next to the store.

A SOURCE is, in this order: an `http://` or `https://` URL (`file://` is a local path); a path
that exists; something that looks like a path (has a "/" or ends in ".raw"), which then is a
missing file; else an extension name for the configured repository. `classify` decides (pure
but for the one existence test it is given).

Every byte is hashed while it is written, so the sha256 recorded is that of the file the store
gets. A download must deliver exactly the Content-Length the server announced: a short read
(the server stopped, the connection broke) is an error and nothing is installed. Without a
Content-Length a truncated image is still caught by validation: the readers refuse an image
whose superblock claims more bytes than the file holds.
"""

from __future__ import annotations

import os
import stat as _stat
from collections.abc import Callable

from strata import log
from strata.errors import ErrorKind, StrataError
from strata.manage.api import SourceKind
from strata.record import record

CHUNK = 1 << 20
#: seconds without progress before a download is abandoned
TIMEOUT = 60.0
USER_AGENT = "strata-ext-install"


@record
class Source:
    text: str  # as the user gave it
    kind: SourceKind
    location: str  # the path (FILE), the URL (URL) or the name (REPOSITORY)

    @property
    def file_name(self) -> str:
        """The image's file name as the source names it ("" for a repository name)."""
        if self.kind is SourceKind.URL:
            from urllib.parse import unquote, urlsplit

            return os.path.basename(unquote(urlsplit(self.location).path))
        if self.kind is SourceKind.FILE:
            return os.path.basename(self.location.rstrip("/"))
        return ""


@record
class Fetched:
    path: str  # the copy (host path)
    sha256: str
    size: int


def classify(text: str, *, exists: Callable[[str], bool] = os.path.lexists) -> Source:
    """What kind of SOURCE `text` is (see the module docstring)."""
    if not text:
        raise StrataError("Empty SOURCE given.", kind=ErrorKind.USAGE)
    scheme, sep, _ = text.partition("://")
    if sep and scheme and scheme.replace("+", "").replace("-", "").replace(".", "").isalnum():
        low = scheme.lower()
        if low in ("http", "https"):
            return Source(text, SourceKind.URL, text)
        if low == "file":
            from urllib.parse import unquote, urlsplit

            return Source(text, SourceKind.FILE, unquote(urlsplit(text).path))
        raise StrataError(f"Cannot install from '{text}': unsupported URL scheme '{scheme}'.",
                          hint="use an http://, https:// or file:// URL, a file, or a name",
                          kind=ErrorKind.USAGE)
    if exists(text) or "/" in text or text.endswith(".raw"):
        return Source(text, SourceKind.FILE, text)
    return Source(text, SourceKind.REPOSITORY, text)


class _Progress:
    """Progress lines for a copy of a large file: every 10% when the size is known, else
    every 16 MiB. Files below QUIET bytes copy silently (they take no time)."""

    QUIET = 16 << 20

    def __init__(self, what: str, total: int | None) -> None:
        self.what = what
        self.total = total
        self.next = self.QUIET if total is None else 0

    def update(self, done: int) -> None:
        if self.total is not None:
            if self.total < self.QUIET or done >= self.total:
                return
            percent = done * 100 // self.total
            if percent >= self.next:
                log.info(f"{self.what}: {percent}% ({_mib(done)} of {_mib(self.total)})")
                self.next = percent // 10 * 10 + 10
        elif done >= self.next:
            log.info(f"{self.what}: {_mib(done)}")
            self.next = done + self.QUIET


def _mib(n: int) -> str:
    if n < 1 << 20:
        return f"{n / 1024:.1f} KiB"
    return f"{n / (1 << 20):.1f} MiB"


def _copy(read: Callable[[int], bytes], dest: str, progress: _Progress) -> Fetched:
    """Write what `read` gives to the new file `dest`, hashing it, then fsync it. `read`
    reports its own failures (as StrataError); a failure to write is reported here."""
    import hashlib

    h = hashlib.sha256()
    size = 0
    try:
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    except OSError as e:
        raise StrataError.from_os(e, f"Failed to create '{dest}'") from e
    try:
        progress.update(0)
        while chunk := read(CHUNK):
            h.update(chunk)
            view = memoryview(chunk)
            try:
                while view:
                    view = view[os.write(fd, view):]
            except OSError as e:
                raise StrataError.from_os(e, f"Failed to write '{dest}'") from e
            size += len(chunk)
            progress.update(size)
        try:
            os.fsync(fd)
        except OSError as e:
            raise StrataError.from_os(e, f"Failed to write '{dest}'") from e
    finally:
        os.close(fd)
    return Fetched(path=dest, sha256=h.hexdigest(), size=size)


def copy_file(path: str, dest: str) -> Fetched:
    """Copy the regular file `path` (a host path, followed if a symlink) to `dest`."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise StrataError(f"Cannot install '{path}': No such file", kind=ErrorKind.NOT_FOUND,
                          subject=path) from None
    except OSError as e:
        raise StrataError.from_os(e, f"Cannot install '{path}'") from e
    try:
        st = os.fstat(fd)
        if _stat.S_ISDIR(st.st_mode):
            raise StrataError(f"Cannot install '{path}': it is a directory, not an image file",
                              hint="build an image from it with 'strata build'",
                              kind=ErrorKind.INVALID)
        if not _stat.S_ISREG(st.st_mode):
            raise StrataError(f"Cannot install '{path}': not a regular file",
                              kind=ErrorKind.INVALID)
        with os.fdopen(os.dup(fd), "rb") as f:

            def read(n: int) -> bytes:
                try:
                    return f.read(n)
                except OSError as e:
                    raise StrataError.from_os(e, f"Failed to read '{path}'") from e

            return _copy(read, dest, _Progress(f"Copying {os.path.basename(path)}",
                                               st.st_size))
    finally:
        os.close(fd)


def download(url: str, dest: str, *, timeout: float = TIMEOUT) -> Fetched:
    """Download `url` to `dest`. An HTTP error, a broken connection and a body shorter (or
    longer) than its Content-Length are errors naming the URL."""
    import http.client
    import urllib.error
    import urllib.request

    def failed(why: str) -> StrataError:
        return StrataError(f"Failed to download '{url}': {why}", kind=ErrorKind.SYSTEM)

    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT,
                                                   "Accept-Encoding": "identity"})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        raise failed(f"HTTP {e.code} {e.reason}") from e
    except urllib.error.URLError as e:
        raise failed(str(e.reason)) from e
    except (OSError, http.client.HTTPException, ValueError) as e:
        raise failed(str(e) or type(e).__name__) from e
    with response:
        length_header = response.headers.get("Content-Length")
        expected: int | None = None
        if length_header is not None:
            try:
                expected = int(length_header)
            except ValueError:
                raise failed(f"bad Content-Length '{length_header}'") from None
        name = os.path.basename(dest)

        def read(n: int) -> bytes:
            try:
                data: bytes = response.read(n)
            except http.client.IncompleteRead as e:
                raise failed("truncated download: the connection closed before the "
                             "announced length was sent") from e
            except (OSError, http.client.HTTPException) as e:
                raise failed(f"truncated download: {e or type(e).__name__}") from e
            return data

        fetched = _copy(read, dest, _Progress(f"Downloading {name}", expected))
    if expected is not None and fetched.size != expected:
        raise failed(f"truncated download: got {fetched.size} of {expected} bytes")
    log.info(f"Downloaded {name}: {_mib(fetched.size)}, sha256 {fetched.sha256}.")
    return fetched
