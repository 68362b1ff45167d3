"""io.strata.Extensions: the extension lifecycle (manage/install.py, remove.py, info.py,
verify.py, health.py) over varlink, next to the seed's org.avocado.Extensions, which stays as
it is. Golden IDL: io.strata.Extensions.varlink (tests/service/test_strata_iface.py).

Install and Remove change the store: they are privileged (auth.PRIVILEGED), run one at a time
with every other change (Service.change: the change lock, then the read cache invalidated),
and, called with `more`, stream {message, done: false} progress replies (download progress,
validation, enable, refresh) before the final {message, done: true, ...}. Info, Verify and
Health only read (Verify and Health read whole images: they run on the read pool, never
shared with or cached for other callers).

Errors: ExtensionNotFound{name}; InvalidSource{source, reason} for a SOURCE install refused
(not an image, incompatible with the host, refused by the image policy, a truncated download,
a missing file); ConfigurationError{message} for dependencies (remove what others need,
enable without what it needs); Failed{message} for anything else. Struct types are stdlib
dataclasses, as asyncvarlink needs (see avocado.py).
"""

import dataclasses
from collections.abc import Callable, Sequence
from typing import TypedDict, TypeVar

from asyncvarlink import TypedVarlinkErrorReply, VarlinkErrorReply, VarlinkInterface, varlinkmethod
from asyncvarlink.serviceinterface import InvalidParameter, PermissionDenied

from strata.errors import ErrorKind, StrataError
from strata.manage import api
from strata.service.core import Emit, Service, current_call
from strata.service.wire import wire_results

INTERFACE = "io.strata.Extensions"

T = TypeVar("T")

# --- types (wire names: camelCase) -------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class InstalledImage:
    name: str
    version: str | None
    path: str
    sha256: str
    size: int
    source: str
    sourceKind: str  # noqa: N815
    action: str
    enabled: bool


@dataclasses.dataclass(frozen=True)
class Field:
    key: str
    value: str


@dataclasses.dataclass(frozen=True)
class Image:
    path: str
    imageName: str  # noqa: N815
    version: str | None
    origin: str
    isDirectory: bool  # noqa: N815
    size: int
    sha256: str | None
    recordedSha256: str | None  # noqa: N815
    source: str | None
    sourceKind: str | None  # noqa: N815
    installedAt: str | None  # noqa: N815
    enabled: bool


@dataclasses.dataclass(frozen=True)
class ExtensionDetails:
    name: str
    version: str | None
    image: str
    classes: list[str]
    sysextRelease: list[Field] | None  # noqa: N815
    confextRelease: list[Field] | None  # noqa: N815
    images: list[Image]
    services: list[str]
    hooks: list[Field]
    depends: list[str]
    conflicts: list[str]
    provides: list[str]
    requiredBy: list[str]  # noqa: N815
    requiredByEnabled: list[str]  # noqa: N815
    enabled: bool
    mergedInto: list[str]  # noqa: N815
    origin: str | None


@dataclasses.dataclass(frozen=True)
class VerifyResult:
    name: str
    path: str
    state: str
    expected: str | None
    actual: str | None
    detail: str


@dataclasses.dataclass(frozen=True)
class HealthCheck:
    aspect: str
    state: str
    detail: str


@dataclasses.dataclass(frozen=True)
class HealthReport:
    name: str
    healthy: bool
    checks: list[HealthCheck]


class InstallReply(TypedDict):
    message: str
    done: bool
    installed: list[InstalledImage] | None


class RemoveReply(TypedDict):
    message: str
    done: bool
    deleted: list[str] | None


class VerifyReply(TypedDict):
    results: list[VerifyResult]
    ok: bool


class HealthReply(TypedDict):
    reports: list[HealthReport]
    healthy: bool


# --- conversions (pure) ------------------------------------------------------------------------


def installed(i: api.Installed) -> InstalledImage:
    return InstalledImage(name=i.name, version=i.version, path=i.path, sha256=i.sha256,
                          size=i.size, source=i.source, sourceKind=i.kind.value,
                          action=i.action.value, enabled=i.enabled)


def _fields(pairs: Sequence[tuple[str, str]]) -> list[Field]:
    return [Field(key=k, value=v) for k, v in pairs]


def details(d: api.ExtensionDetails) -> ExtensionDetails:
    return ExtensionDetails(
        name=d.name, version=d.version, image=d.image, classes=list(d.classes),
        sysextRelease=_fields(d.release["sysext"]) if "sysext" in d.release else None,
        confextRelease=_fields(d.release["confext"]) if "confext" in d.release else None,
        images=[Image(path=i.path, imageName=i.image_name, version=i.version, origin=i.origin,
                      isDirectory=i.is_directory, size=i.size, sha256=i.sha256,
                      recordedSha256=i.recorded_sha256, source=i.source,
                      sourceKind=i.source_kind, installedAt=i.installed_at,
                      enabled=i.enabled) for i in d.images],
        services=list(d.services), hooks=_fields(d.hooks), depends=list(d.depends),
        conflicts=list(d.conflicts), provides=list(d.provides),
        requiredBy=list(d.required_by), requiredByEnabled=list(d.required_by_enabled),
        enabled=d.enabled, mergedInto=list(d.merged_into), origin=d.origin)


def verify_result(r: api.VerifyResult) -> VerifyResult:
    return VerifyResult(name=r.name, path=r.path, state=r.state.value, expected=r.expected,
                        actual=r.actual, detail=r.detail)


def health_report(r: api.HealthReport) -> HealthReport:
    return HealthReport(name=r.name, healthy=r.healthy,
                        checks=[HealthCheck(aspect=c.aspect.value, state=c.state.value,
                                            detail=c.detail) for c in r.checks])


def install_message(result: api.InstallResult) -> str:
    new = [i for i in result.installed if i.action is api.InstallAction.INSTALLED]
    present = [i for i in result.installed if i.action is api.InstallAction.PRESENT]
    parts = []
    if new:
        parts.append("Installed " + ", ".join(f"{i.name} {i.version or ''}".rstrip()
                                               for i in new))
    if present:
        parts.append("already installed: " + ", ".join(f"{i.name} {i.version or ''}".rstrip()
                                                       for i in present))
    if result.outcome is not None:
        parts.append(f"merged: {', '.join(result.outcome.merged) or 'nothing'}")
    text = "; ".join(parts) or "Nothing installed"
    return text[0].upper() + text[1:] + "."


# --- errors ------------------------------------------------------------------------------------
# (paramprefix stays "p_": with "" the parameter `name` would replace the error's own `name`)


class ExtensionNotFound(TypedVarlinkErrorReply, interface=INTERFACE):
    """No extension of that name is installed."""

    class Parameters:
        name: str


class InvalidSource(TypedVarlinkErrorReply, interface=INTERFACE):
    """Install refused a SOURCE: not an image, incompatible with the host, refused by the image
    policy, a truncated download, a missing file. Nothing was installed."""

    class Parameters:
        source: str
        reason: str


class ConfigurationError(TypedVarlinkErrorReply, interface=INTERFACE):
    """Dependencies forbid it: removing what an enabled extension needs, enabling without
    what it needs. Nothing changed."""

    class Parameters:
        message: str


class Failed(TypedVarlinkErrorReply, interface=INTERFACE):
    """The operation failed for another reason."""

    class Parameters:
        message: str


def to_error(exc: BaseException, *, installing: bool = False) -> VarlinkErrorReply:
    if isinstance(exc, VarlinkErrorReply):
        return exc
    if not isinstance(exc, StrataError):
        return Failed(message=f"internal error: {type(exc).__name__}: {exc}")
    if exc.kind is ErrorKind.CONFIGURATION:
        return ConfigurationError(message=exc.message)
    if installing and exc.subject is not None:
        return InvalidSource(source=exc.subject, reason=exc.message)
    if exc.kind is ErrorKind.NOT_FOUND and exc.subject:
        return ExtensionNotFound(name=exc.subject)
    return Failed(message=exc.message)


# --- the interface -----------------------------------------------------------------------------


@wire_results
class StrataExtensions(VarlinkInterface, name=INTERFACE):
    """The extension lifecycle on a device: install (from a file, a URL or the repository),
    remove, describe, verify and check the health of extensions."""

    errors = (ExtensionNotFound, InvalidSource, ConfigurationError, Failed, PermissionDenied)

    def __init__(self, service: Service) -> None:
        self._service = service

    async def _change(self, fn: Callable[[Emit], T], *, installing: bool = False) -> T:
        ctx = current_call()
        notify = ctx.notify if ctx is not None else None

        def progress(message: str) -> None:
            if notify is not None:
                notify({"message": message, "done": False})

        try:
            return await self._service.change(fn, progress=progress if notify else None)
        except Exception as e:
            raise to_error(e, installing=installing) from e

    async def _read(self, fn: Callable[[], T]) -> T:
        try:
            return await self._service.read(fn)
        except Exception as e:
            raise to_error(e) from e

    @varlinkmethod
    async def Install(self, *, sources: list[str], enable: bool | None = None,  # noqa: N802
                      now: bool | None = None,
                      imagePolicy: str | None = None) -> InstallReply:  # noqa: N803
        """Validate SOURCEs (image files, http(s) URLs, repository names) and install them
        into the store; enable them for the running OS release (enable) and merge them
        (now). Nothing is installed if one is refused. Streams progress replies {message,
        done: false} when called with more; the final reply has done: true."""
        from strata.manage.install import default_resolver, install

        if not sources:
            raise InvalidParameter(parameter="sources")
        s = self._service
        result = await self._change(lambda emit: install(
            s.root, sources, enable=bool(enable), now=bool(now), env=s.env,
            image_policy=imagePolicy, resolver=default_resolver(), progress=emit),
            installing=True)
        return {"message": install_message(result), "done": True,
                "installed": [installed(i) for i in result.installed]}

    @varlinkmethod
    async def Remove(self, *, names: list[str], keepFiles: bool | None = None,  # noqa: N802, N803
                     force: bool | None = None) -> RemoveReply:
        """Stop, disable, unmerge and delete extensions (keepFiles: keep their images);
        refused when an enabled extension depends on one, unless force. Streams progress
        like Install."""
        from strata.manage.remove import remove

        if not names:
            raise InvalidParameter(parameter="names")
        s = self._service
        result = await self._change(lambda emit: remove(
            s.root, names, keep_files=bool(keepFiles), force=bool(force), env=s.env,
            progress=emit))
        return {"message": f"Removed {', '.join(result.names)}.", "done": True,
                "deleted": list(result.deleted)}

    @varlinkmethod(return_parameter="extension")
    async def Info(self, *, name: str) -> ExtensionDetails:  # noqa: N802
        """Everything about one extension: release fields, images with sizes and sha256,
        services, hooks, dependencies both ways, where it is merged, its origin."""
        from strata.manage.info import info

        s = self._service
        return details(await self._read(lambda: info(s.root, name, env=s.env)))

    @varlinkmethod
    async def Verify(self, *, names: list[str] | None = None,  # noqa: N802
                     all: bool | None = None) -> VerifyReply:
        """Compare the sha256 of the images of names (or of the whole store, all) with what
        install recorded; ok is false when one was tampered with."""
        from strata.manage.verify import verify

        if not names and not all:
            raise InvalidParameter(parameter="names")
        s = self._service
        results = await self._read(lambda: verify(s.root, names or (), all=bool(all)))
        return {"results": [verify_result(r) for r in results],
                "ok": all_ok(results)}

    @varlinkmethod
    async def Health(self, *, names: list[str] | None = None) -> HealthReply:  # noqa: N802
        """Merged as enabled, services active, files as in the image, libraries resolved: per
        extension (default: every enabled one); healthy is false when one is not."""
        from strata.manage.health import health

        s = self._service
        reports = await self._read(lambda: health(s.root, names or (), env=s.env))
        return {"reports": [health_report(r) for r in reports],
                "healthy": all(r.healthy for r in reports)}


def all_ok(results: Sequence[api.VerifyResult]) -> bool:
    return not any(r.state is api.VerifyState.TAMPERED for r in results)

