"""One client connection: asyncvarlink's server protocol plus what a system daemon needs.

* Authorisation: a state-changing method (auth.PRIVILEGED) from a peer that may not call it
  gets org.varlink.service.PermissionDenied; the connection stays usable.
* Bad input gets the standard org.varlink.service errors: a message that is not a JSON
  object, or a call object without a valid "method" -> InvalidParameter (parameter "" for the
  message itself, else the offending key); unknown interface -> InterfaceNotFound; unknown
  method -> MethodNotFound{method: fully qualified, as systemd}; wrong or missing parameters
  -> InvalidParameter{parameter}. The connection stays open.
* A message longer than Limits.max_message: io.systemd.System{errno: E2BIG} (what systemd's
  sd-varlink calls it), then the connection is closed.
* A client that sends no complete message for Limits.idle_timeout while nothing of its is in
  flight is disconnected.
* Replies omit null fields (as systemd and libvarlink-based servers do), so C clients that
  read an optional field find it absent rather than mistyped, and always carry "parameters".
"""

import asyncio
import errno
import socket
from collections.abc import Mapping
from typing import Any

from asyncvarlink import (
    FileDescriptorArray,
    GenericVarlinkErrorReply,
    VarlinkErrorReply,
    VarlinkInterfaceRegistry,
    VarlinkInterfaceServerProtocol,
    VarlinkMethodCall,
    VarlinkMethodReply,
    VarlinkTransport,
    varlinksignature,
)
from asyncvarlink.serviceinterface import (
    InterfaceNotFound,
    InvalidParameter,
    MethodNotFound,
    PermissionDenied,
)
from asyncvarlink.types import JSONObject

from strata import log
from strata.service import auth
from strata.service.core import (
    CallContext,
    Service,
    reset_current_call,
    set_current_call,
)
from strata.service.wire import strip_nulls

_IDENT_FIRST = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")


class Transport(VarlinkTransport):
    """asyncvarlink's transport reads 4 KiB at a time and re-joins a long message chunk by
    chunk (quadratic); bigger reads keep an 8 MiB message cheap. Still below malloc's mmap
    threshold, so small messages cost no more."""

    RECV_BUFFER_SIZE = 64 * 1024


def _valid_interface(name: str) -> bool:
    from asyncvarlink.types import validate_interface

    try:
        validate_interface(name)
    except ValueError:
        return False
    return True


def bad_call_error(obj: JSONObject) -> VarlinkErrorReply:
    """The error for a JSON object that is not a well-formed varlink call."""
    method = obj.get("method")
    if not isinstance(method, str):
        return InvalidParameter(parameter="method")
    interface, dot, name = method.rpartition(".")
    if not dot or not _valid_interface(interface):
        return InterfaceNotFound(interface=interface if dot else method)
    if not name or name[0] not in _IDENT_FIRST or not name.isalnum() or not name.isascii():
        return MethodNotFound(method=method)
    if not isinstance(obj.get("parameters", {}), dict):
        return InvalidParameter(parameter="parameters")
    flags = ("oneway", "more", "upgrade")
    for flag in flags:
        if not isinstance(obj.get(flag, False), bool):
            return InvalidParameter(parameter=flag)
    set_flags = [f for f in flags if obj.get(f)]
    return InvalidParameter(parameter=set_flags[-1] if set_flags else "method")


def too_large_error() -> VarlinkErrorReply:
    return GenericVarlinkErrorReply("io.systemd.System", {"errno": errno.E2BIG})


class Connection(VarlinkInterfaceServerProtocol):
    def __init__(self, service: Service, registry: VarlinkInterfaceRegistry,
                 peer: auth.PeerCreds | None, sock: socket.socket | None) -> None:
        super().__init__(registry)
        self._service = service
        self._registry = registry
        self.peer = peer
        self._sock = sock
        self._groups: tuple[int, ...] | None = None
        self._limits = service.limits
        self._partial = 0  # bytes received since the last NUL
        self._busy = 0  # calls in flight
        self._last = 0.0
        self._idle: asyncio.TimerHandle | None = None
        self._rejected = False
        self._released = False

    # --- life cycle ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._touch()
        self._arm(self._limits.idle_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        if not self._released:
            self._released = True
            self._service.release(self.peer)
        super().connection_lost(exc)

    def _touch(self) -> None:
        self._last = asyncio.get_running_loop().time()

    def _arm(self, delay: float) -> None:
        self._idle = asyncio.get_running_loop().call_later(max(delay, 0.01), self._check_idle)

    def _check_idle(self) -> None:
        self._idle = None
        if self._released:
            return
        if self._busy:
            self._arm(self._limits.idle_timeout)
            return
        left = self._last + self._limits.idle_timeout - asyncio.get_running_loop().time()
        if left > 0:
            self._arm(left)
            return
        log.debug(f"Dropping idle varlink client (pid {self.peer.pid if self.peer else '?'})")
        self.close()

    # --- input -----------------------------------------------------------------------------

    def _fits(self, data: bytes) -> bool:
        """Account `data` against the message size limit."""
        limit = self._limits.max_message
        partial, start = self._partial, 0
        while (nul := data.find(b"\0", start)) >= 0:
            if partial + nul - start > limit:
                return False
            partial, start = 0, nul + 1
        self._partial = partial + len(data) - start
        return self._partial <= limit

    def message_received(self, data: bytes, fds: FileDescriptorArray | None) -> None:
        if self._rejected:
            return
        if not self._fits(data):
            self._rejected = True
            log.warning(f"Varlink client (pid {self.peer.pid if self.peer else '?'}) sent a "
                        f"message over {self._limits.max_message} bytes; disconnecting")
            if self._transport is not None:
                self._transport.pause_reading()
            sent = self.send_error(too_large_error())
            sent.add_done_callback(lambda _f: self.close())
            return
        super().message_received(data, fds)

    def error_received(self, err: Exception, data: bytes,
                       fds: FileDescriptorArray | None) -> None:
        """Not JSON, or not a JSON object."""
        self._touch()
        self.send_error(InvalidParameter(parameter=""))

    def request_received(self, obj: JSONObject,
                         fds: FileDescriptorArray | None) -> asyncio.Future[None] | None:
        self._touch()
        try:
            VarlinkMethodCall.fromjson(obj)
        except (TypeError, ValueError):
            # Answered even with "oneway": the flags of a malformed call mean nothing.
            self.send_error(bad_call_error(obj))
            return None
        fut: asyncio.Future[None] | None = super().request_received(obj, fds)
        return fut

    # --- calls -----------------------------------------------------------------------------

    def _lookup(self, call: VarlinkMethodCall) -> None:
        """Unknown interface or method, named like systemd names them."""
        try:
            interface = self._registry[call.method_interface]
        except KeyError:
            raise InterfaceNotFound(interface=call.method_interface) from None
        method = getattr(interface, call.method_name, None)
        if method is None or varlinksignature(method) is None:
            raise MethodNotFound(method=call.method)

    def _peer_groups(self) -> tuple[int, ...]:
        if self._groups is None:
            self._groups = auth.peer_groups(self._sock) if self._sock is not None else ()
        return self._groups

    def call_received(self, call: VarlinkMethodCall,
                      fds: FileDescriptorArray | None) -> asyncio.Future[None] | None:
        self._lookup(call)
        if not auth.allowed(call.method, self.peer, self._service.policy, self._peer_groups):
            who = (f"uid {self.peer.uid} (pid {self.peer.pid})" if self.peer is not None
                   else "an unknown peer")
            log.warning(f"Refused {call.method} to {who}: not root"
                        + (f" nor in group {self._service.policy.group}"
                           if self._service.policy.group else ""))
            raise PermissionDenied()
        ctx = CallContext(method=call.method, more=call.more, peer=self.peer,
                          notify=self._notify if call.more else None)
        token = set_current_call(ctx)
        self._busy += 1
        fut: asyncio.Future[None] | None
        try:
            fut = super().call_received(call, fds)
        except BaseException:
            self._call_done()
            raise
        finally:
            reset_current_call(token)
        if fut is None:
            self._call_done()
        else:
            fut.add_done_callback(lambda _f: self._call_done())
        return fut

    def _call_done(self) -> None:
        self._busy -= 1
        self._touch()

    def _notify(self, parameters: Mapping[str, Any]) -> None:
        """A "continues" reply of the call in flight (a connection serves its calls one after
        the other, so there is only one)."""
        self.send_reply(VarlinkMethodReply(strip_nulls(dict(parameters)), continues=True))

    # --- output ----------------------------------------------------------------------------

    def send_reply(self, reply: VarlinkMethodReply, fds: list[int] | None = None,
                   autoclose: bool = True) -> asyncio.Future[None]:
        if not reply.parameters:
            # asyncvarlink leaves an empty "parameters" out; libvarlink's clients take a
            # reply without it for an invalid message (systemd always sends it too).
            reply.extensions = {**reply.extensions, "parameters": {}}
        return super().send_reply(reply, fds, autoclose)

    def handle_call_exception(self, exc: BaseException, oneway: bool) -> None:
        """A bug, not a client error: log it with its traceback, answer a generic error."""
        import traceback

        log.error("Internal error serving a varlink call:\n"
                  + "".join(traceback.format_exception(exc)).rstrip())
        if not oneway:
            self.send_error(GenericVarlinkErrorReply("io.systemd.System",
                                                     {"errno": errno.EIO}))
