"""Where the daemon listens: a socket it binds itself, or one handed over by systemd (socket
activation: LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES, fds from 3 on); and telling systemd it is
ready (sd_notify)."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
from collections.abc import Mapping, MutableMapping

from strata.errors import ErrorKind, StrataError

DEFAULT_SOCKET = "/run/strata/strata.sock"
SOCKET_MODE = 0o660
FD_NAME = "varlink"
_LISTEN_FDS_START = 3
_ACTIVATION_VARS = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


def listen_fds(env: Mapping[str, str], pid: int) -> list[tuple[int, str]]:
    """sd_listen_fds_with_names(): the (fd, name) pairs passed to process `pid`; [] when the
    variables are absent, malformed, or meant for another process. Unnamed fds are
    "unknown", as in systemd."""
    try:
        if int(env.get("LISTEN_PID", "")) != pid:
            return []
        count = int(env.get("LISTEN_FDS", ""))
    except ValueError:
        return []
    if count <= 0:
        return []
    names = env.get("LISTEN_FDNAMES", "").split(":") if env.get("LISTEN_FDNAMES") else []
    if len(names) != count:
        names = ["unknown"] * count
    return [(_LISTEN_FDS_START + i, names[i]) for i in range(count)]


def pick_fd(fds: list[tuple[int, str]], name: str = FD_NAME) -> int | None:
    """The fd named `name`, else the first."""
    for fd, fd_name in fds:
        if fd_name == name:
            return fd
    return fds[0][0] if fds else None


def activated_socket(environ: MutableMapping[str, str]) -> socket.socket | None:
    """The listening socket systemd passed us, if any. The activation variables are removed
    from `environ` (the process's, normally) so that hooks and other children do not take
    them for theirs, and all passed fds are made non-inheritable."""
    fds = listen_fds(environ, os.getpid())
    for var in _ACTIVATION_VARS:
        environ.pop(var, None)
    if not fds:
        return None
    for fd, _name in fds:
        with contextlib.suppress(OSError):
            os.set_inheritable(fd, False)
    chosen = pick_fd(fds)
    assert chosen is not None
    try:
        sock = socket.socket(fileno=chosen)
    except OSError as e:
        raise StrataError.from_os(e, f"Socket activation: fd {chosen} is not a socket") from e
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
        raise StrataError(f"Socket activation: fd {chosen} is not a unix stream socket",
                          kind=ErrorKind.CONFIGURATION, hint="ListenStream= a socket path")
    sock.setblocking(False)
    return sock


def _in_use(path: str) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        probe.connect(path)
    except OSError:
        return False
    finally:
        probe.close()
    return True


def bind_socket(path: str, gid: int | None = None) -> socket.socket:
    """Listen on `path` (mode 0660, owner root, group `gid` when given). A stale socket from
    a previous run is replaced; one that still answers is another daemon's, and an error.

    The socket is bound before its mode is set: the mode bind() gives (0777 & ~umask) denies
    connecting to others under the usual umasks, and an early connection would only get
    what SO_PEERCRED says it may have anyway."""
    parent = os.path.dirname(path) or "."
    try:
        os.makedirs(parent, 0o755, exist_ok=True)
    except OSError as e:
        raise StrataError.from_os(e, f"Failed to create '{parent}'") from e
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        raise StrataError.from_os(e, f"Failed to check '{path}'") from e
    else:
        if not stat.S_ISSOCK(st.st_mode):
            raise StrataError(f"'{path}' exists and is not a socket", kind=ErrorKind.BUSY)
        if _in_use(path):
            raise StrataError(f"'{path}' is in use by another process", kind=ErrorKind.BUSY,
                              errno=errno.EADDRINUSE, hint="is strata serve already running?")
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX,
                         socket.SOCK_STREAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
    try:
        sock.bind(path)
        os.chmod(path, SOCKET_MODE)
        if gid is not None:
            os.chown(path, 0 if os.geteuid() == 0 else -1, gid)
        sock.listen(128)
    except OSError as e:
        sock.close()
        raise StrataError.from_os(e, f"Failed to listen on '{path}'") from e
    return sock


class Notifier:
    """sd_notify(): one datagram per state change to $NOTIFY_SOCKET (taken out of the
    environment at start, so that children do not notify in our name)."""

    def __init__(self, environ: MutableMapping[str, str]) -> None:
        addr = environ.pop("NOTIFY_SOCKET", "")
        if addr.startswith("@"):
            addr = "\0" + addr[1:]
        self._addr = addr if addr.startswith(("/", "\0")) else None

    def __call__(self, state: str) -> None:
        if self._addr is None:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
                s.sendto(state.encode(), self._addr)
        except OSError:
            pass
