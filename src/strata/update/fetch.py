"""Downloading one image: resumable, bounded, verified while it streams.

The file grows as `<dest>.part` in the staging directory. A run that is cut off (network,
server, power) leaves the part behind and the next one asks for the rest with an HTTP Range
request; a server that ignores the range sends everything again and the part starts over. The
hashes the signed metadata lists are computed over the bytes as they arrive (the part's
existing bytes first, on a resume), so the file is read once; never more than the signed
length is accepted (an endless or longer response is an attack, not a download). Only a file
whose length and every listed hash match becomes `<dest>`; one that does not is deleted, so a
poisoned part is never resumed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from strata.errors import ErrorKind, StrataError
from strata.record import record

CHUNK = 1 << 20
#: (label, bytes so far, total): called as bytes arrive
ProgressFn = Callable[[str, int, int], None]


@record
class Want:
    url: str
    dest: str  # the verified file's final path
    length: int
    hashes: Mapping[str, str]  # algorithm -> hex digest, from signed metadata
    label: str  # for messages: the target name


class _CutError(Exception):
    """The transfer stopped before the signed length: worth another (resuming) attempt."""


def _hashers(want: Want) -> dict[str, Any]:
    if not want.hashes:
        raise StrataError(f"{want.label}: the metadata lists no hash to verify it with.",
                          kind=ErrorKind.INVALID)
    out = {}
    for algo in want.hashes:
        try:
            out[algo] = hashlib.new(algo)
        except ValueError as e:
            raise StrataError(f"{want.label}: unsupported hash algorithm '{algo}'.",
                              kind=ErrorKind.INVALID) from e
    return out


def _hash_existing(path: str, hashers: Mapping[str, Any], limit: int) -> int:
    """Feed the part's bytes to the hashers; its size (0 when absent, or too long: removed)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return 0
    except OSError as e:
        raise StrataError.from_os(e, f"Failed to open '{path}'") from e
    try:
        size = os.fstat(fd).st_size
        if size > limit:
            os.close(fd)
            fd = -1
            os.unlink(path)
            return 0
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        while True:
            n = os.readv(fd, [buf])
            if n == 0:
                break
            for h in hashers.values():
                h.update(view[:n])
        return size
    finally:
        if fd >= 0:
            os.close(fd)


def _mismatch(want: Want, hashers: Mapping[str, Any]) -> str | None:
    for algo, h in hashers.items():
        if h.hexdigest() != want.hashes[algo].lower():
            return algo
    return None


def verify_file(want: Want, path: str) -> bool:
    """Whether `path` is exactly the wanted file (length and every hash)."""
    try:
        if os.stat(path).st_size != want.length:
            return False
    except OSError:
        return False
    hashers = _hashers(want)
    _hash_existing(path, hashers, want.length)
    return _mismatch(want, hashers) is None


class _State:
    """The part's size and the hashes of its bytes so far (kept in step across attempts)."""

    def __init__(self, want: Want, part: str) -> None:
        self.hashers = _hashers(want)
        self.have = _hash_existing(part, self.hashers, want.length)

    def restart(self, want: Want) -> None:
        self.hashers = _hashers(want)
        self.have = 0


def download(want: Want, *, progress: ProgressFn | None = None, timeout: float = 30.0,
             retries: int = 3) -> None:
    """Make `want.dest` the verified file, resuming `<dest>.part` if there is one."""
    if os.path.exists(want.dest):
        if verify_file(want, want.dest):
            return
        os.unlink(want.dest)
    part = want.dest + ".part"
    state = _State(want, part)
    last = ""
    for attempt in range(max(1, retries)):
        if state.have == want.length:
            break
        if attempt:
            time.sleep(min(0.2 * 2 ** attempt, 5.0))
        try:
            _transfer(want, part, state, progress, timeout)
        except _CutError as e:
            last = str(e)
    if state.have != want.length:
        raise StrataError(
            f"Download of {want.label} stopped at {state.have} of {want.length} bytes: "
            f"{last}. The partial file is kept; the next run resumes it.",
            kind=ErrorKind.SYSTEM)
    algo = _mismatch(want, state.hashers)
    if algo is not None:
        with contextlib.suppress(OSError):
            os.unlink(part)
        raise StrataError(
            f"{want.label}: the {algo} of the download does not match the signed metadata "
            "(tampered with or corrupted); it was discarded.", kind=ErrorKind.INVALID)
    _sync(part)
    os.rename(part, want.dest)


def _sync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _open(want: Want, have: int, timeout: float) -> Any:
    import urllib.error
    import urllib.request

    headers = {"User-Agent": "strata-update"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        return urllib.request.urlopen(urllib.request.Request(want.url, headers=headers),
                                      timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:
            raise _CutError("the server refused to resume (HTTP 416)") from e
        raise StrataError(f"Download of {want.label} failed: HTTP {e.code} {e.reason} "
                          f"({want.url})", kind=ErrorKind.NOT_FOUND if e.code == 404
                          else ErrorKind.SYSTEM) from e
    except (urllib.error.URLError, OSError) as e:
        raise _CutError(f"cannot reach {want.url}: {getattr(e, 'reason', e)}") from e


def _transfer(want: Want, part: str, state: _State, progress: ProgressFn | None,
              timeout: float) -> None:
    """One request: append what the server sends to the part, hashing it on the way."""
    resp = _open(want, state.have, timeout)
    with resp:
        status = resp.status
        if state.have and status == 206:
            start = _range_start(resp.headers.get("Content-Range", ""))
            if start != state.have:
                raise _CutError(f"the server resumed at byte {start}, not {state.have}")
        elif status == 200:
            if state.have:
                state.restart(want)  # the range was ignored: start over
        else:
            raise StrataError(f"Download of {want.label} failed: unexpected HTTP {status}",
                              kind=ErrorKind.SYSTEM)
        flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC
        flags |= os.O_APPEND if state.have else os.O_TRUNC
        try:
            fd = os.open(part, flags, 0o644)
        except OSError as e:
            raise StrataError.from_os(e, f"Failed to write '{part}'") from e
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        try:
            if progress is not None:
                progress(want.label, state.have, want.length)
            while state.have < want.length:
                try:
                    n = resp.readinto(view[:min(CHUNK, want.length - state.have)])
                except (OSError, ValueError) as e:  # reset, timeout, IncompleteRead
                    raise _CutError(f"the transfer broke off ({e.__class__.__name__})") from e
                if not n:
                    raise _CutError("the server closed the connection")
                chunk = view[:n]
                try:
                    while chunk:
                        chunk = chunk[os.write(fd, chunk):]
                except OSError as e:
                    raise StrataError.from_os(e, f"Failed to write '{part}'") from e
                for h in state.hashers.values():
                    h.update(view[:n])
                state.have += n
                if progress is not None:
                    progress(want.label, state.have, want.length)
            extra = _read_extra(resp)
        finally:
            os.close(fd)
        if extra:
            os.unlink(part)
            state.restart(want)
            raise StrataError(
                f"{want.label}: the server sent more than the {want.length} bytes the signed "
                "metadata allows (tampered with?); the download was discarded.",
                kind=ErrorKind.INVALID)


def _read_extra(resp: Any) -> bool:
    try:
        return bool(resp.read(1))
    except (OSError, ValueError):
        return False


def _range_start(content_range: str) -> int | None:
    # "bytes 100-199/200"
    unit, _sp, rest = content_range.strip().partition(" ")
    if unit != "bytes":
        return None
    first = rest.partition("-")[0]
    return int(first) if first.isdigit() else None
