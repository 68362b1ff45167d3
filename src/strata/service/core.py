"""What all connections share: the settings, the management backend, the change lock and the
worker threads, and the plumbing that turns log lines and `progress` calls made in a worker
thread into streamed replies on the event loop.

Changes (merge, unmerge, refresh, enable, disable) run one at a time: an asyncio.Lock queues
them in arrival order, and they run on a single worker thread (so even a caller that gave up
waiting cannot start a second one early). Reads run on a small pool of their own, so Status
and List are answered while a merge streams.

Cached reads (readcache.py): a call first has the cached reply checked, on the event loop; a
check made after a call arrived answers for it too (fifty clients asking at once cost one
check), and the calls it finds stale share one computation that starts after it. So a reply
always reflects the state after the call arrived.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from strata import log
from strata.errors import ErrorKind, StrataError
from strata.record import record

if TYPE_CHECKING:
    from strata.service.auth import PeerCreds, Policy
    from strata.service.backend import Manage
    from strata.service.readcache import Answer, Lstats, ReadCache, Watched

T = TypeVar("T")

#: a progress sink: one human-readable line at a time
Emit = Callable[[str], None]

#: a read's fast path: (call parameters, `more`, Service.checks_run when the call arrived) ->
#: the encoded replies (or an awaitable of them), or None when this call takes asyncvarlink's
#: ordinary path (parameters it does not handle itself)
FastRead = Callable[[Mapping[str, Any], bool, int], "bytes | Awaitable[bytes] | None"]


@record
class Limits:
    """Protection against misbehaving clients (see protocol.py)."""

    max_message: int = 8 << 20  # bytes of one JSON message (without its NUL)
    idle_timeout: float = 30.0  # seconds a client may stay silent with nothing in flight
    max_connections: int = 1024  # at once, all users
    max_per_uid: int = 128  # at once, per unprivileged uid


@record
class CallContext:
    """The call being served, for the method implementations (asyncvarlink hands them only
    the parameters). `notify` is set when the caller asked for `more`: it sends one reply
    with "continues": true (the parameters as JSON, nulls dropped); the method's own result
    is the last reply."""

    method: str
    more: bool
    peer: PeerCreds | None
    notify: Callable[[Mapping[str, Any]], None] | None = None


#: set by the connection around each call (asyncio tasks inherit it)
_CURRENT: contextvars.ContextVar[CallContext | None] = contextvars.ContextVar(
    "strata_varlink_call", default=None)


def current_call() -> CallContext | None:
    return _CURRENT.get()


def set_current_call(ctx: CallContext | None) -> contextvars.Token[CallContext | None]:
    return _CURRENT.set(ctx)


def reset_current_call(token: contextvars.Token[CallContext | None]) -> None:
    _CURRENT.reset(token)


class Service:
    """The daemon's shared state. Create it inside the running event loop."""

    def __init__(self, *, manage: Manage, root: str = "/", root_given: bool = False,
                 env: Mapping[str, str] | None = None, policy: Policy | None = None,
                 limits: Limits | None = None, cache: ReadCache | None = None,
                 cache_manage: bool = False) -> None:
        """`cache`: the read cache (None: every read is computed); `cache_manage`: whether
        the management layer's reads may be cached too (only for the real one, whose inputs
        the cache knows)."""
        from strata.service.auth import Policy

        self.manage = manage
        self.root = root
        self.root_given = root_given
        self.env: Mapping[str, str] = dict(env or {})
        self.policy = policy or Policy()
        self.limits = limits or Limits()
        self.stopping = False
        self._change_lock = asyncio.Lock()
        self._reads = ThreadPoolExecutor(max_workers=4, thread_name_prefix="strata-read")
        self._changes = ThreadPoolExecutor(max_workers=1, thread_name_prefix="strata-change")
        self._per_uid: dict[int, int] = {}
        self.connections = 0
        self._shared: dict[Hashable, asyncio.Future[Any]] = {}
        self._generation = 0  # changes completed
        self.cache = cache
        self.cache_manage = cache_manage and cache is not None
        #: fully qualified method -> its fast path (registered by the interfaces)
        self.fast_reads: dict[str, FastRead] = {}
        self._checks: dict[str, tuple[int, bytes | None]] = {}  # key -> last check
        self.checks_run = 0

    # --- connections ---------------------------------------------------------------------

    def admit(self, creds: PeerCreds | None) -> bool:
        """Count a new connection in, unless it is over a limit (root only has the global
        one, so an unprivileged flood cannot lock the administrator out... beyond it)."""
        if self.connections >= self.limits.max_connections:
            return False
        uid = creds.uid if creds is not None else -1
        if uid != 0 and self._per_uid.get(uid, 0) >= self.limits.max_per_uid:
            return False
        self.connections += 1
        self._per_uid[uid] = self._per_uid.get(uid, 0) + 1
        return True

    def release(self, creds: PeerCreds | None) -> None:
        uid = creds.uid if creds is not None else -1
        self.connections -= 1
        left = self._per_uid.get(uid, 1) - 1
        if left > 0:
            self._per_uid[uid] = left
        else:
            self._per_uid.pop(uid, None)

    # --- work ------------------------------------------------------------------------------

    async def read(self, fn: Callable[..., T], *args: object) -> T:
        """Run a read-only backend call on the read pool."""
        return await asyncio.get_running_loop().run_in_executor(self._reads, fn, *args)

    async def read_shared(self, key: str, fn: Callable[[], T]) -> T:
        """read(fn), shared by every caller that asks for `key` while it runs: fifty clients
        asking Status at once cost one Status. A caller never joins a read that started
        before the latest change through this service finished."""
        return await self._share((key, self._generation), fn)

    async def _share(self, slot: Hashable, fn: Callable[[], T]) -> T:
        fut = self._shared.get(slot)
        if fut is None:
            fut = asyncio.ensure_future(self.read(fn))
            self._shared[slot] = fut
            fut.add_done_callback(lambda _f: self._shared.pop(slot, None))
        result: T = await asyncio.shield(fut)
        return result

    def read_cached(self, key: str, inputs: Callable[[Lstats], Iterable[Watched]] | None,
                    compute: Callable[[], Answer], received: int
                    ) -> bytes | Awaitable[bytes]:
        """The encoded reply `compute` gives (on the read pool): from the cache while it is
        valid (bytes, at once), else to be awaited. `inputs` says what the reply is read from
        (readcache.py); None: never cached (but still shared by concurrent callers, as
        read_shared). `received`: `checks_run` when the caller's request arrived.

        A check made after the request arrived answers for it: a burst of calls read from the
        sockets together costs one check, and the calls it finds stale share one computation,
        which starts after it."""
        cache = self.cache
        if cache is None or inputs is None:
            return self._payload(self.read_shared(key, compute))
        last = self._checks.get(key)
        if last is not None and last[0] > received and (
                last[1] is not None or ("fill", key, last[0]) in self._shared):
            round_, hit = last
        else:
            self.checks_run += 1
            round_, hit = self.checks_run, cache.lookup(key)
            self._checks[key] = (round_, hit)
        if hit is not None:
            return hit
        return self._share(("fill", key, round_), lambda: cache.fill(key, inputs, compute))

    @staticmethod
    async def _payload(answer: Awaitable[Answer]) -> bytes:
        return (await answer).payload

    @property
    def changing(self) -> bool:
        return self._change_lock.locked()

    async def change(self, fn: Callable[[Emit], T], *, progress: Emit | None = None) -> T:
        """Run fn(emit) on the change thread once every earlier change is done. Lines given
        to emit, and everything logged at INFO and above by that thread meanwhile, reach
        `progress` on the event loop, in order."""
        if self.stopping:
            raise StrataError("the service is stopping", kind=ErrorKind.BUSY)
        loop = asyncio.get_running_loop()
        if self._change_lock.locked() and progress is not None:
            progress("Waiting for another operation to finish...")
        async with self._change_lock:
            if self.stopping:
                raise StrataError("the service is stopping", kind=ErrorKind.BUSY)
            sink = _Sink(loop, progress)
            try:
                return await loop.run_in_executor(self._changes, _run_change, fn, sink.emit)
            finally:
                self._generation += 1
                self._checks.clear()
                if self.cache is not None:
                    self.cache.invalidate()

    async def drain(self) -> None:
        """Refuse new changes and wait for the running one (a merge is never cut short)."""
        self.stopping = True
        async with self._change_lock:
            pass

    def close(self) -> None:
        self._reads.shutdown(wait=False, cancel_futures=True)
        self._changes.shutdown(wait=True)
        if self.cache is not None:
            self.cache.close()


class _Sink:
    """Carries progress lines from the change thread to the event loop.

    A line logged by the management layer reaches the sink twice in a row: through our own
    log listener and through the layer's `progress` (it forwards its log lines too). An
    immediate repetition is therefore dropped; the same line later on is not."""

    def __init__(self, loop: asyncio.AbstractEventLoop, progress: Emit | None) -> None:
        self._loop = loop
        self._progress = progress
        self._last: str | None = None

    def emit(self, line: str) -> None:
        if self._progress is None or line == self._last:
            return
        self._last = line  # only the change thread emits
        self._loop.call_soon_threadsafe(self._progress, line)


def _run_change(fn: Callable[[Emit], T], emit: Emit) -> T:
    """On the change thread: forward this thread's log lines (not those of concurrent reads)
    while fn runs."""
    me = threading.get_ident()

    def on_log(_level: int, message: str) -> None:
        if threading.get_ident() == me:
            emit(message)

    with log.listen(on_log):
        return fn(emit)
