"""Run a function in a forked child inside a new, private mount namespace.

The engine builds overlays there, so half-built state never touches the caller's namespace;
detached mount fds come back over a socketpair (SCM_RIGHTS). Tests use the same to keep every
kernel-touching test out of the machine's own mount table.
"""

from __future__ import annotations

import _socket  # the C module: socket.py costs milliseconds of enum building at import
import array
import marshal
import os
from collections.abc import Callable
from typing import Any, TypeVar

from strata.errors import ErrorKind, StrataError
from strata.kernel import libc

T = TypeVar("T")

_MAX_FDS = 250


class ChildError(Exception):
    """A non-StrataError exception in the child; carries its formatted traceback."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


def _encode(result: tuple[str, Any]) -> bytes:
    """marshal for plain data (fast to import and load), pickle for anything else."""
    try:
        return b"M" + marshal.dumps(result)
    except ValueError:
        import pickle

        return b"P" + pickle.dumps(result)


def _decode(payload: bytes) -> tuple[str, Any]:
    if payload[:1] == b"M":
        value: tuple[str, Any] = marshal.loads(payload[1:])
        return value
    import pickle

    value = pickle.loads(payload[1:])
    return value


def _send(sock: _socket.socket, payload: bytes, fds: list[int]) -> None:
    header = len(payload).to_bytes(8, "little")
    anc = ([(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, array.array("i", fds).tobytes())]
           if fds else [])
    sock.sendmsg([header], anc)
    sock.sendall(payload)


def _recv(sock: _socket.socket) -> tuple[bytes, list[int]]:
    fds = array.array("i")
    msg, anc, _flags, _addr = sock.recvmsg(8, _socket.CMSG_SPACE(_MAX_FDS * fds.itemsize))
    for level, typ, data in anc:
        if level == _socket.SOL_SOCKET and typ == _socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
    if len(msg) < 8:
        return b"", list(fds)
    size = int.from_bytes(msg, "little")
    buf = bytearray()
    while len(buf) < size:
        chunk = sock.recv(size - len(buf))
        if not chunk:
            break
        buf.extend(chunk)
    return bytes(buf), list(fds)


def in_private_namespace(
    fn: Callable[..., tuple[T, list[int]]], *args: Any, propagation: int = libc.MS_PRIVATE
) -> tuple[T, list[int]]:
    """Fork; the child unshares its mount namespace, makes every mount private (or slave), and
    runs fn(*args) which returns (value, fds). value is pickled back and fds are passed to the
    caller (who owns them). A StrataError raised in the child is re-raised here; other
    exceptions become ChildError with the child's traceback. A child killed by a signal
    is a StrataError naming the signal."""
    parent_sock, child_sock = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
    pid = os.fork()
    if pid == 0:  # child
        code = 0
        try:
            parent_sock.close()
            try:
                libc.unshare(libc.CLONE_NEWNS)
                libc.mount(None, "/", None, libc.MS_REC | propagation)
                value, fds = fn(*args)
                result: tuple[str, Any] = ("ok", value)
            except StrataError as e:
                result, fds = ("strata", (e.message, e.hint, e.kind.value, e.errno)), []
            except BaseException:
                import traceback

                result, fds = ("exc", traceback.format_exc()), []
            _send(child_sock, _encode(result), fds)
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    child_sock.close()
    try:
        payload, fds = _recv(parent_sock)
    finally:
        parent_sock.close()
        _pid, status = os.waitpid(pid, 0)
    if not payload:
        for fd in fds:
            os.close(fd)
        if os.WIFSIGNALED(status):
            raise StrataError(f"namespace worker killed by signal {os.WTERMSIG(status)}",
                              kind=ErrorKind.SYSTEM)
        raise StrataError("namespace worker exited without a result", kind=ErrorKind.SYSTEM)
    tag, value = _decode(payload)
    if tag == "ok":
        return value, fds
    if tag == "strata":
        message, hint, kind, errno = value
        raise StrataError(message, hint=hint, kind=ErrorKind(kind), errno=errno)
    raise ChildError(value)


def run_isolated(fn: Callable[..., T], *args: Any) -> T:
    """Run fn(*args) in a private mount namespace and return its (picklable) result."""

    def wrapper() -> tuple[T, list[int]]:
        return fn(*args), []

    value, _ = in_private_namespace(wrapper)
    return value
