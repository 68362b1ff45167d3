"""The daemon: accept connections, serve the interfaces, stop cleanly.

Accepting is ours rather than asyncvarlink's VarlinkUnixServer: that one closes the listening
socket on the first unexpected accept() error (EMFILE...), and it does not give the protocol
the peer's credentials, which authorisation needs. On SIGTERM the daemon stops accepting,
lets a running merge finish (never cut short: no half-merged tree), then exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
import socket
from collections.abc import Callable, MutableMapping

from strata import __version__, log
from strata.errors import ErrorKind, StrataError
from strata.record import record
from strata.service.core import Limits, Service
from strata.service.listen import DEFAULT_SOCKET

TYPE_CHECKING = False
if TYPE_CHECKING:
    from asyncvarlink import VarlinkInterfaceRegistry

    from strata.service.backend import Manage
    from strata.service.protocol import Connection

_ACCEPT_BATCH = 32
_TRANSIENT_ACCEPT = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

#: modules the change thread would otherwise import lazily: importing them up front keeps
#: imports out of the worker threads (the engine forks from one; see docs/reference.md)
WARM_MODULES = (
    "strata.engine.ops", "strata.engine.inspect", "strata.engine.worker",
    "strata.images.detect", "strata.images.erofs", "strata.images.squashfs",
    "strata.images.ext4", "strata.images.gpt", "strata.release", "strata.policy",
    "strata.manage.ext",
)


@record
class ServeOptions:
    socket_path: str = DEFAULT_SOCKET
    root: str | None = None  # None: "/" (and not --root)
    group: str | None = None  # overrides [serve] group
    config: str | None = None  # default <root>/etc/strata/strata.toml
    limits: Limits = Limits()


def build_registry(service: Service) -> VarlinkInterfaceRegistry:
    from asyncvarlink import VarlinkInterfaceRegistry
    from asyncvarlink.serviceinterface import VarlinkServiceInterface

    from strata.service.avocado import AvocadoExtensions
    from strata.service.lifecycle import StrataExtensions
    from strata.service.sysext import Sysext

    registry = VarlinkInterfaceRegistry()
    registry.register_interface(AvocadoExtensions(service))
    registry.register_interface(Sysext(service))
    registry.register_interface(StrataExtensions(service))
    registry.register_interface(VarlinkServiceInterface(
        "Strata", "strata", __version__, "", registry))
    return registry


class Listener:
    """Accepts connections on a listening socket and hands each to a Connection."""

    def __init__(self, sock: socket.socket, service: Service,
                 registry: VarlinkInterfaceRegistry) -> None:
        self._sock: socket.socket | None = sock
        self._service = service
        self._registry = registry
        self._loop = asyncio.get_running_loop()
        self.clients: set[Connection] = set()
        self._paused = False

    def start(self) -> None:
        assert self._sock is not None
        self._loop.add_reader(self._sock, self._on_readable)

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_reader(self._sock)
            self._sock.close()
            self._sock = None

    def close_clients(self) -> None:
        for conn in list(self.clients):
            conn.close()

    def _resume(self) -> None:
        self._paused = False
        if self._sock is not None:
            self._loop.add_reader(self._sock, self._on_readable)

    def _on_readable(self) -> None:
        for _ in range(_ACCEPT_BATCH):
            if self._sock is None:
                return
            try:
                conn, _addr = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno in _TRANSIENT_ACCEPT:
                    # Out of fds or memory: stop accepting for a moment rather than spin.
                    if not self._paused:
                        log.warning(f"Cannot accept connections: {e.strerror}; pausing")
                        self._paused = True
                        self._loop.remove_reader(self._sock)
                        self._loop.call_later(0.2, self._resume)
                    return
                continue  # the client went away (ECONNABORTED, EPROTO...)
            try:
                self._adopt(conn)
            except Exception as e:  # never let one connection take the listener down
                log.error(f"Failed to set up a varlink connection: {e}")
                conn.close()

    def _adopt(self, conn: socket.socket) -> None:
        from strata.service import auth
        from strata.service.protocol import Connection, Transport

        try:
            creds: auth.PeerCreds | None = auth.peer_credentials(conn)
        except OSError:
            creds = None
        if not self._service.admit(creds):
            log.warning("Too many varlink connections"
                        + (f" from uid {creds.uid}" if creds is not None else "")
                        + "; refusing one")
            conn.close()
            return
        try:
            conn.setblocking(False)
            protocol = Connection(self._service, self._registry, creds, conn)
            transport = Transport(self._loop, conn, protocol, {"peercred": creds})
        except BaseException:
            self._service.release(creds)
            raise
        self.clients.add(protocol)
        transport.closed_future.add_done_callback(lambda _f: self.clients.discard(protocol))


def warm_up() -> None:
    import importlib

    for name in WARM_MODULES:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


def _on_loop_exception(_loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
    exc = context.get("exception")
    log.error(f"Internal error: {context.get('message')}"
              + (f": {type(exc).__name__}: {exc}" if exc is not None else ""))


async def serve(options: ServeOptions, *, manage: Manage | None = None,
                environ: MutableMapping[str, str] | None = None,
                stop: asyncio.Event | None = None,
                ready: Callable[[str], None] | None = None) -> None:
    """Serve until `stop` is set (or SIGTERM/SIGINT/SIGHUP, in the main thread).
    `environ` (default: os.environ) loses the socket-activation and notify variables; the
    rest is the environment merges run with. `ready(where)` is called once listening."""
    from strata.engine.settings import normalize_root
    from strata.service import auth, backend, config, listen

    loop = asyncio.get_running_loop()
    loop.set_exception_handler(_on_loop_exception)
    environ = os.environ if environ is None else environ
    notify = listen.Notifier(environ)
    root = normalize_root(options.root)
    if not os.path.isdir(root):
        raise StrataError(f"Root directory '{root}' does not exist or is not a directory.",
                          kind=ErrorKind.NOT_FOUND)
    cfg_path = options.config or config.config_path(root)
    cfg = config.load(cfg_path)
    group = options.group or cfg.group
    policy = auth.Policy()
    if group:
        source = "--group" if options.group else cfg_path
        policy = auth.Policy(gid=auth.resolve_group(group, source), group=group)
    sock = listen.activated_socket(environ)
    activated = sock is not None
    if sock is None:
        sock = listen.bind_socket(options.socket_path, policy.gid)
    bound = os.stat(options.socket_path) if not activated else None
    where = "the socket passed by systemd" if activated else options.socket_path
    service: Service | None = None
    try:
        from strata.service.readcache import open_cache

        real = backend.load()
        if manage is None:
            manage = real
        warm_up()
        # The cache knows what the real management layer reads; a stand-in's reads are
        # computed every time (io.systemd.sysext.List, from the engine, is cached either way).
        service = Service(manage=manage, root=root, root_given=options.root is not None,
                          env=dict(environ), policy=policy, limits=options.limits,
                          cache=open_cache(root), cache_manage=manage is real)
        listener = Listener(sock, service, build_registry(service))
    except BaseException:
        sock.close()
        if service is not None:
            service.close()
        raise
    stop = stop or asyncio.Event()
    handled: list[signal.Signals] = []
    # SIGHUP too: its default action would kill the daemon on the spot, mid-merge perhaps.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        with contextlib.suppress(ValueError, RuntimeError):  # not the main thread
            loop.add_signal_handler(sig, stop.set)
            handled.append(sig)
    listener.start()
    log.info(f"Serving org.avocado.Extensions, io.strata.Extensions and io.systemd.sysext on "
             f"{where}"
             + (f" (group {group} may change state)" if group else ""))
    notify(f"READY=1\nSTATUS=Serving on {where}")
    if ready is not None:
        ready(where)
    try:
        await stop.wait()
    finally:
        notify("STOPPING=1")
        listener.close()
        if service.changing:
            log.info("Waiting for the running operation to finish before stopping...")
        await service.drain()
        listener.close_clients()
        await asyncio.sleep(0)  # let the transports close
        service.close()
        for sig in handled:
            loop.remove_signal_handler(sig)
        if bound is not None:
            with contextlib.suppress(OSError):
                st = os.stat(options.socket_path)
                if (st.st_dev, st.st_ino) == (bound.st_dev, bound.st_ino):
                    os.unlink(options.socket_path)


def raise_fd_limit(want: int = 4096) -> None:
    """Room for Limits.max_connections clients (the soft limit is often 1024); not to the hard
    limit, which children (hooks) would inherit."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def run(options: ServeOptions) -> int:
    """`strata serve`: serve until told to stop; StrataError goes to the caller."""
    raise_fd_limit()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(options))
    return 0
