"""org.avocado.Extensions, as its golden IDL (org.avocado.Extensions.varlink) defines it, over
the management layer (manage/api.py).

asyncvarlink renders the served IDL from these annotations; tests/service/test_idl.py checks it
against the golden file. Named struct types must be dataclasses for asyncvarlink (it tests
dataclasses.is_dataclass), hence stdlib dataclasses here rather than @record: this module is
only imported by the long-running daemon, where their definition cost does not matter.

Merge, Unmerge and Refresh answer one {message, done: true} reply; called with `more`, they
first stream {message, done: false} progress replies (continues: true), one per step.

List and Status are answered by their fast path (core.FastRead): the reply is built as JSON
directly (`extension_json`, `status_json`: the same members asyncvarlink's conversion of the
types below gives, a test checks it) and encoded once, then reused from the read cache while
nothing it was read from changed. Their varlinkmethods remain for the IDL and for the calls
the fast path leaves to asyncvarlink (with parameters, or oneway).
"""

import dataclasses
import enum
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypedDict, TypeVar

from asyncvarlink import (
    AnnotatedResult,
    TypedVarlinkErrorReply,
    VarlinkErrorReply,
    VarlinkInterface,
    VarlinkMethodReply,
    varlinkmethod,
)
from asyncvarlink.serviceinterface import InvalidParameter, PermissionDenied

from strata.errors import ErrorKind, StrataError
from strata.manage import api
from strata.service import readcache
from strata.service.core import Emit, FastRead, Service, current_call
from strata.service.wire import encode, wire_results

INTERFACE = "org.avocado.Extensions"

T = TypeVar("T")

# --- types -------------------------------------------------------------------------------
# Field names are the wire's (camelCase).


@dataclasses.dataclass(frozen=True)
class Extension:
    name: str
    version: str | None
    path: str
    isSysext: bool  # noqa: N815
    isConfext: bool  # noqa: N815
    isDirectory: bool  # noqa: N815


@dataclasses.dataclass(frozen=True)
class ExtensionStatus:
    name: str
    version: str | None
    isSysext: bool  # noqa: N815
    isConfext: bool  # noqa: N815
    isMerged: bool  # noqa: N815
    origin: str | None
    imageId: str | None  # noqa: N815


class Progress(TypedDict):
    message: str
    done: bool


class EnableReply(TypedDict):
    enabled: int
    failed: int


class DisableReply(TypedDict):
    disabled: int
    failed: int


def extension(info: api.ExtensionInfo) -> Extension:
    return Extension(name=info.name, version=info.version, path=info.path,
                     isSysext=info.is_sysext, isConfext=info.is_confext,
                     isDirectory=info.is_directory)


def extension_status(s: api.ExtensionStatus) -> ExtensionStatus:
    return ExtensionStatus(name=s.name, version=s.version, isSysext=s.is_sysext,
                           isConfext=s.is_confext, isMerged=s.is_merged, origin=s.origin,
                           imageId=s.image_id)


def extension_json(info: api.ExtensionInfo) -> dict[str, Any]:
    """Extension as the wire has it (members in IDL order, a null one left out)."""
    out: dict[str, Any] = {"name": info.name}
    if info.version is not None:
        out["version"] = info.version
    out["path"] = info.path
    out["isSysext"] = info.is_sysext
    out["isConfext"] = info.is_confext
    out["isDirectory"] = info.is_directory
    return out


def status_json(s: api.ExtensionStatus) -> dict[str, Any]:
    """ExtensionStatus as the wire has it (members in IDL order, null ones left out)."""
    out: dict[str, Any] = {"name": s.name}
    if s.version is not None:
        out["version"] = s.version
    out["isSysext"] = s.is_sysext
    out["isConfext"] = s.is_confext
    out["isMerged"] = s.is_merged
    if s.origin is not None:
        out["origin"] = s.origin
    if s.image_id is not None:
        out["imageId"] = s.image_id
    return out


def list_answer(infos: Sequence[api.ExtensionInfo]) -> readcache.Answer:
    """The encoded List reply, and the images it describes (for the read cache)."""
    return readcache.Answer(
        encode(VarlinkMethodReply({"extensions": [extension_json(i) for i in infos]})),
        files=tuple(i.path for i in infos))


def status_answer(rows: Sequence[api.ExtensionStatus]) -> readcache.Answer:
    """The encoded Status reply, and the images it describes (for the read cache)."""
    return readcache.Answer(
        encode(VarlinkMethodReply({"extensions": [status_json(r) for r in rows]})),
        files=tuple(r.path for r in rows if r.path))


# --- errors ------------------------------------------------------------------------------
# (paramprefix stays "p_": with "" the parameter `name` would replace the error's own `name`)


class ExtensionNotFound(TypedVarlinkErrorReply, interface=INTERFACE):
    """A referenced extension name does not exist."""

    class Parameters:
        name: str


class MergeFailed(TypedVarlinkErrorReply, interface=INTERFACE):
    """The merge failed."""

    class Parameters:
        reason: str


class UnmergeFailed(TypedVarlinkErrorReply, interface=INTERFACE):
    """The unmerge failed."""

    class Parameters:
        reason: str


class ConfigurationError(TypedVarlinkErrorReply, interface=INTERFACE):
    """The extension configuration is invalid (dependencies, conflicts, release data)."""

    class Parameters:
        message: str


class CommandFailed(TypedVarlinkErrorReply, interface=INTERFACE):
    """An external command run during extension management failed."""

    class Parameters:
        command: str
        message: str


class Op(enum.Enum):
    READ = "read"
    ENABLE = "enable"
    DISABLE = "disable"
    MERGE = "merge"
    UNMERGE = "unmerge"
    REFRESH = "refresh"


def to_error(exc: BaseException, op: Op) -> VarlinkErrorReply:
    """The org.avocado.Extensions error for a failure of `op` (manage/api.py's mapping)."""
    if isinstance(exc, VarlinkErrorReply):
        return exc
    if isinstance(exc, StrataError):
        if exc.kind is ErrorKind.NOT_FOUND and exc.subject:
            return ExtensionNotFound(name=exc.subject)
        if exc.kind is ErrorKind.CONFIGURATION:
            return ConfigurationError(message=exc.message)
        if exc.kind is ErrorKind.COMMAND:
            return CommandFailed(command=exc.subject or "", message=exc.message)
        reason = exc.message
    else:
        reason = f"internal error: {type(exc).__name__}: {exc}"
    if op is Op.UNMERGE:
        return UnmergeFailed(reason=reason)
    if op in (Op.MERGE, Op.REFRESH):
        return MergeFailed(reason=reason)
    return ConfigurationError(message=reason)


# --- progress wording (pure) -------------------------------------------------------------


def _names(names: Sequence[str]) -> str:
    n = len(names)
    return f"{n} extension{'' if n == 1 else 's'}" + (f": {', '.join(names)}" if names else "")


def summary(op: Op, outcome: api.Outcome) -> str:
    """The final reply's message."""
    skipped = f" ({len(outcome.skipped)} skipped)" if outcome.skipped else ""
    if op is Op.UNMERGE:
        return f"Unmerged {_names(outcome.merged)}." if outcome.merged else "Unmerged."
    if not outcome.merged:
        what = "Refreshed: nothing" if op is Op.REFRESH else "Nothing"
        return f"{what} to merge{skipped}."
    verb = "Refreshed" if op is Op.REFRESH else "Merged"
    return f"{verb} {_names(outcome.merged)}{skipped}."


def outcome_lines(outcome: api.Outcome) -> list[str]:
    """What the outcome tells beyond the summary: skipped images, failed hooks."""
    lines = [f"Skipped {name}: {why}" for name, why in outcome.skipped]
    for h in outcome.hooks:
        if h.error:
            lines.append(f"Hook '{' '.join(h.argv)}' failed: {h.error}")
        elif h.status:
            lines.append(f"Hook '{' '.join(h.argv)}' failed with exit status {h.status}")
    return lines


# --- the interface -----------------------------------------------------------------------


@wire_results
class AvocadoExtensions(VarlinkInterface, name=INTERFACE):
    """Manages Avocado Linux system extensions (sysext and confext images): list, merge,
    unmerge, refresh, enable, disable, and query the status of extensions."""

    errors = (ExtensionNotFound, MergeFailed, UnmergeFailed, ConfigurationError, CommandFailed,
              PermissionDenied)

    def __init__(self, service: Service) -> None:
        self._service = service
        service.fast_reads[f"{INTERFACE}.List"] = self._fast(
            f"{INTERFACE}.List", lambda: list_answer(service.manage.list_extensions(service.root)))
        service.fast_reads[f"{INTERFACE}.Status"] = self._fast(
            f"{INTERFACE}.Status", lambda: status_answer(service.manage.status(service.root)))

    def _fast(self, key: str, compute: Callable[[], readcache.Answer]) -> FastRead:
        """The fast path of a read without parameters (with any, asyncvarlink checks them)."""
        service = self._service

        def inputs(lstat: readcache.Lstats) -> list[readcache.Watched]:
            return readcache.manage_inputs(service.root, lstat)

        async def mapped(work: Awaitable[bytes]) -> bytes:
            try:
                return await work
            except Exception as e:
                raise to_error(e, Op.READ) from e

        def handler(params: Mapping[str, Any], _more: bool, received: int
                    ) -> bytes | Awaitable[bytes] | None:
            if params:
                return None
            try:
                got = service.read_cached(key, inputs if service.cache_manage else None,
                                          compute, received)
            except Exception as e:
                raise to_error(e, Op.READ) from e
            return got if isinstance(got, bytes) else mapped(got)

        return handler

    async def _read(self, key: str, fn: Callable[[], AnnotatedResult]) -> AnnotatedResult:
        """A shared read (core.Service.read_shared): concurrent callers get the very same
        result object, which WireType then converts once."""
        try:
            return await self._service.read_shared(key, fn)
        except Exception as e:
            raise to_error(e, Op.READ) from e

    async def _change(self, op: Op, fn: Callable[[Emit], T]) -> T:
        ctx = current_call()
        notify = ctx.notify if ctx is not None else None

        def progress(message: str) -> None:
            if notify is not None:
                notify({"message": message, "done": False})

        try:
            return await self._service.change(fn, progress=progress if notify else None)
        except Exception as e:
            raise to_error(e, op) from e

    async def _run(self, op: Op, call: Callable[[Emit], api.Outcome]) -> Progress:
        def work(emit: Emit) -> api.Outcome:
            outcome = call(emit)
            for line in outcome_lines(outcome):
                emit(line)
            return outcome

        outcome = await self._change(op, work)
        return {"message": summary(op, outcome), "done": True}

    @varlinkmethod(return_parameter="extensions", return_type=list[Extension])
    async def List(self) -> AnnotatedResult:  # noqa: N802
        """List all available extensions."""
        s = self._service
        return await self._read("list", lambda: AnnotatedResult(
            {"extensions": [extension(i) for i in s.manage.list_extensions(s.root)]}))

    @varlinkmethod(return_parameter="extensions", return_type=list[ExtensionStatus])
    async def Status(self) -> AnnotatedResult:  # noqa: N802
        """The merge status of every extension."""
        s = self._service
        return await self._read("status", lambda: AnnotatedResult(
            {"extensions": [extension_status(r) for r in s.manage.status(s.root)]}))

    @varlinkmethod
    async def Merge(self) -> Progress:  # noqa: N802
        """Merge all enabled extensions into the running system. Streams progress replies
        {message, done: false} when called with more; the final reply has done: true."""
        s = self._service
        return await self._run(Op.MERGE, lambda emit: s.manage.merge(s.root, s.env,
                                                                     progress=emit))

    @varlinkmethod
    async def Unmerge(self, *, unmount: bool | None = None) -> Progress:  # noqa: N802
        """Unmerge extensions from the running system; with unmount, also release the
        images. Streams progress like Merge."""
        s = self._service
        return await self._run(Op.UNMERGE, lambda emit: s.manage.unmerge(
            s.root, s.env, unmount=bool(unmount), progress=emit))

    @varlinkmethod
    async def Refresh(self) -> Progress:  # noqa: N802
        """Unmerge and then re-merge all enabled extensions. Streams progress like Merge."""
        s = self._service
        return await self._run(Op.REFRESH, lambda emit: s.manage.refresh(s.root, s.env,
                                                                         progress=emit))

    @varlinkmethod
    async def Enable(self, *, extensions: list[str],  # noqa: N802
                     osRelease: str | None = None) -> EnableReply:  # noqa: N803
        """Enable extensions for an OS release (default: the running one)."""
        s = self._service
        result = await self._change(Op.ENABLE, lambda _emit: s.manage.enable(
            s.root, extensions, os_release=osRelease))
        return {"enabled": result.done, "failed": result.failed}

    @varlinkmethod
    async def Disable(self, *, extensions: list[str] | None = None,  # noqa: N802
                      all: bool | None = None,
                      osRelease: str | None = None) -> DisableReply:  # noqa: N803
        """Disable extensions (or all of them) for an OS release (default: the running
        one)."""
        if extensions is None and not all:
            raise InvalidParameter(parameter="extensions")
        s = self._service
        result = await self._change(Op.DISABLE, lambda _emit: s.manage.disable(
            s.root, extensions, all=bool(all), os_release=osRelease))
        return {"disabled": result.done, "failed": result.failed}
