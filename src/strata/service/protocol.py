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
* Reads with a fast path (Service.fast_reads: Status, List, io.systemd.sysext.List) skip
  asyncvarlink's parsing, dispatch and conversion: the handler returns the encoded replies,
  usually straight from the read cache, and they are written as they are.
"""

import asyncio
import errno
import socket
from collections.abc import Awaitable, Mapping
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
from strata.service.wire import complete, strip_nulls

_IDENT_FIRST = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")


class Transport(VarlinkTransport):
    """asyncvarlink's transport, with three changes:

    * it reads 4 KiB at a time and re-joins a long message chunk by chunk (quadratic); bigger
      reads keep an 8 MiB message cheap. Still below malloc's mmap threshold, so small
      messages cost no more;
    * on a socket it first peeks at the data to find message boundaries (so that passed file
      descriptors go with the right message): three system calls per read. No method here
      takes file descriptors, so it reads with plain read(2), which also discards any a
      client passes;
    * it writes a reply only after the event loop has registered the socket for writing and
      reported it writable: two more loop iterations and two epoll_ctl calls per reply (and
      asyncio formats an error message each time it looks up an unregistered socket). With
      nothing queued, the reply is written at once, as asyncio's own transports do, and only
      what the socket does not take is queued."""

    RECV_BUFFER_SIZE = 64 * 1024

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket,
                 protocol: "Connection", extra: Mapping[str, Any] | None = None) -> None:
        super().__init__(loop, sock, sock, protocol, extra, boundary_predictor=None)
        self._handle_read = self._handle_read_fd

    def send_message(self, data: bytes, fds: list[int] | None = None
                     ) -> asyncio.Future[None]:
        if fds or self._sendqueue or self._closing or self._sendfd is None:
            return super().send_message(data, fds)
        try:
            sent = self._do_write([data], [])
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            return super().send_message(data, fds)  # fails it the ordinary way
        if sent < len(data):
            return super().send_message(data[sent:])
        done: asyncio.Future[None] = self._loop.create_future()
        done.set_result(None)
        return done


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
        self._received = 0  # Service.checks_run when the latest input arrived

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
        self._received = self._service.checks_run
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
        taken, answering = self._fast_read(obj)
        if taken:
            return answering
        try:
            VarlinkMethodCall.fromjson(obj)
        except (TypeError, ValueError):
            # Answered even with "oneway": the flags of a malformed call mean nothing.
            self.send_error(bad_call_error(obj))
            return None
        fut: asyncio.Future[None] | None = super().request_received(obj, fds)
        return fut

    # --- calls -----------------------------------------------------------------------------

    def _fast_read(self, obj: JSONObject) -> tuple[bool, asyncio.Future[None] | None]:
        """A read with a fast path (Service.fast_reads), answered without asyncvarlink's
        parsing, dispatch and conversion: (True, None) when answered already, (True, future)
        when the answer is being computed, (False, None) when the call takes the ordinary
        path (any unusual flag or parameter, or a caller that may not call it: that path
        has the errors)."""
        method = obj.get("method")
        handler = self._service.fast_reads.get(method) if type(method) is str else None
        if handler is None:
            return False, None
        params = obj.get("parameters", {})
        more = obj.get("more", False)
        if type(params) is not dict or type(more) is not bool \
                or obj.get("oneway", False) is not False or obj.get("upgrade", False) is not False:
            return False, None
        assert isinstance(method, str)
        if not auth.allowed(method, self.peer, self._service.policy, self._peer_groups):
            return False, None
        try:
            work = handler(params, more, self._received)
        except VarlinkErrorReply as e:
            self.send_error(e)
            return True, None
        except Exception as e:
            self.handle_call_exception(e, False)
            return True, None
        if work is None:
            return False, None
        if isinstance(work, bytes):
            self.send_encoded(work)
            return True, None
        self._busy += 1
        fut = asyncio.ensure_future(self._answer(work))
        fut.add_done_callback(lambda _f: self._call_done())
        self._add_transfer(fut)
        return True, fut

    async def _answer(self, work: Awaitable[bytes]) -> None:
        try:
            data = await work
        except VarlinkErrorReply as e:
            self.send_error(e)
            return
        except Exception as e:
            self.handle_call_exception(e, False)
            return
        self.send_encoded(data)

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
        return super().send_reply(complete(reply), fds, autoclose)

    def send_encoded(self, data: bytes) -> asyncio.Future[None]:
        """Send replies already encoded (wire.encode), as send_reply would send them."""
        if self._transport is None:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            fut.set_exception(BrokenPipeError())
        else:
            fut = self._transport.send_message(data)
        fut.add_done_callback(self._on_message_sent)
        self._add_transfer(fut)
        return fut

    def handle_call_exception(self, exc: BaseException, oneway: bool) -> None:
        """A bug, not a client error: log it with its traceback, answer a generic error."""
        import traceback

        log.error("Internal error serving a varlink call:\n"
                  + "".join(traceback.format_exception(exc)).rstrip())
        if not oneway:
            self.send_error(GenericVarlinkErrorReply("io.systemd.System",
                                                     {"errno": errno.EIO}))
