"""io.systemd.sysext as systemd-sysext 257 serves it (golden IDL: io.systemd.sysext.varlink,
taken from `varlinkctl introspect` of systemd 257.13), over the merge engine directly.

As in systemd 257 (src/sysext/sysext.c vl_method_*): every parameter is nullable and the class
defaults to sysext; a bad class is org.varlink.service.InvalidParameter{parameter: "class"};
Merge on a merged hierarchy is AlreadyMerged{hierarchy}; List needs `more`, streams one image
per reply and fails with NoImagesFound when there is none; other failures are errno-style
io.systemd.System{errno}. Unlike systemd 257 (root only), List is open to any local user;
Merge/Unmerge/Refresh need root or the configured group (auth.py).

The parameter `class` cannot be a Python parameter name, so unlike avocado.py these methods'
signatures are built from explicit {wire name: type} tables rather than from annotations.

List with `more` and a valid class (or none) takes the fast path (core.FastRead): its replies
are encoded together once and reused from the read cache while the search directories, the
images and the mount table stay as they were.
"""

import enum
import errno
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from asyncvarlink import (
    AnnotatedResult,
    GenericVarlinkErrorReply,
    TypedVarlinkErrorReply,
    VarlinkErrorReply,
    VarlinkInterface,
    VarlinkMethodReply,
    VarlinkMethodSignature,
)
from asyncvarlink.conversion import ObjectVarlinkType, VarlinkType
from asyncvarlink.serviceinterface import ExpectedMore, PermissionDenied

from strata.errors import ErrorKind, StrataError
from strata.model import ExtClass
from strata.service import readcache
from strata.service.core import Service, current_call
from strata.service.wire import WireType, encode

if TYPE_CHECKING:
    from strata.discover import Extension as Image
    from strata.engine.settings import Settings

INTERFACE = "io.systemd.sysext"

F = TypeVar("F", bound=Callable[..., Any])


class ImageClass(enum.Enum):
    sysext = "sysext"
    confext = "confext"


class ImageType(enum.Enum):
    directory = "directory"
    subvolume = "subvolume"
    raw = "raw"
    block = "block"


class NoImagesFound(TypedVarlinkErrorReply, interface=INTERFACE):
    class Parameters:
        pass


class AlreadyMerged(TypedVarlinkErrorReply, interface=INTERFACE):
    class Parameters:
        hierarchy: str


MERGE_PARAMS: Mapping[str, Any] = {"class": ImageClass | None, "force": bool | None,
                                   "noReload": bool | None, "noexec": bool | None}
UNMERGE_PARAMS: Mapping[str, Any] = {"class": ImageClass | None, "noReload": bool | None}
LIST_PARAMS: Mapping[str, Any] = {"class": ImageClass | None}
LIST_REPLY: Mapping[str, Any] = {
    "Class": ImageClass, "Type": ImageType, "Name": str, "Path": str | None, "ReadOnly": bool,
    "CreationTimestamp": int | None, "ModificationTimestamp": int | None,
    "Usage": int | None, "UsageExclusive": int | None,
    "Limit": int | None, "LimitExclusive": int | None,
}


def _object(fields: Mapping[str, Any]) -> ObjectVarlinkType:
    return ObjectVarlinkType({k: VarlinkType.from_type_annotation(t) for k, t in fields.items()})


_LIST_TYPE = _object(LIST_REPLY)


def wire_method(params: Mapping[str, Any], returns: Mapping[str, Any], *,
                more: bool = False) -> Callable[[F], F]:
    """Mark an async method (async generator with more) as a varlink method whose parameters,
    by wire name, arrive as keyword arguments (absent ones are not passed). It must return
    (or yield, with `continues` set) AnnotatedResult objects. This is what
    asyncvarlink.varlinkmethod records, spelled out (varlinksignature() reads it back)."""
    signature = VarlinkMethodSignature(asynchronous=True, more=more,
                                       parameter_type=_object(params),
                                       return_type=WireType(_object(returns)))

    def mark(fn: F) -> F:
        setattr(fn, "_varlink_signature", signature)  # noqa: B010 - asyncvarlink's attribute
        return fn

    return mark


_KIND_ERRNO = {
    ErrorKind.USAGE: errno.EINVAL, ErrorKind.INVALID: errno.EINVAL,
    ErrorKind.NOT_FOUND: errno.ENOENT, ErrorKind.BUSY: errno.EBUSY,
    ErrorKind.PERMISSION: errno.EPERM, ErrorKind.UNSUPPORTED: errno.EOPNOTSUPP,
    ErrorKind.INCOMPATIBLE: errno.EINVAL, ErrorKind.CONFIGURATION: errno.EINVAL,
}


def to_error(exc: BaseException) -> VarlinkErrorReply:
    """systemd's errno-style error (sd_varlink_error_errno) for a failure."""
    if isinstance(exc, VarlinkErrorReply):
        return exc
    if isinstance(exc, StrataError):
        if exc.kind is ErrorKind.BUSY and exc.subject:
            return AlreadyMerged(hierarchy=exc.subject)
        code = exc.errno or _KIND_ERRNO.get(exc.kind, errno.EIO)
    elif isinstance(exc, OSError) and exc.errno:
        code = exc.errno
    else:
        code = errno.EIO
    return GenericVarlinkErrorReply("io.systemd.System", {"errno": code})


def list_entry(img: "Image") -> dict[str, Any]:
    """image_to_json(): absent rather than zero/unknown for the optional fields."""
    entry: dict[str, Any] = {"Class": ImageClass(img.ext_class.value),
                             "Type": ImageType(img.type.value), "Name": img.name,
                             "Path": img.path, "ReadOnly": img.read_only}
    if img.crtime_us:
        entry["CreationTimestamp"] = img.crtime_us
    if img.mtime_us:
        entry["ModificationTimestamp"] = img.mtime_us
    if img.usage_bytes is not None:
        entry["Usage"] = entry["UsageExclusive"] = img.usage_bytes
    if img.limit_bytes is not None:
        entry["Limit"] = entry["LimitExclusive"] = img.limit_bytes
    return entry


def list_json(img: "Image") -> dict[str, Any]:
    """list_entry() as the wire has it (what _LIST_TYPE.tojson gives; a test checks it)."""
    return {k: v.value if isinstance(v, (ImageClass, ImageType)) else v
            for k, v in list_entry(img).items()}


def list_answer(images: Sequence["Image"]) -> readcache.Answer:
    """All replies of List (more) at once: one per image, all but the last with continues;
    NoImagesFound when there is none."""
    if not images:
        return readcache.Answer(encode(NoImagesFound().toreply()))
    last = len(images) - 1
    return readcache.Answer(
        b"".join(encode(VarlinkMethodReply(list_json(img), continues=i < last))
                 for i, img in enumerate(images)),
        files=tuple(img.path for img in images))


async def _mapped(work: Awaitable[bytes]) -> bytes:
    try:
        return await work
    except Exception as e:
        raise to_error(e) from e


_CLASSES = {None: ImageClass.sysext, "sysext": ImageClass.sysext,
            "confext": ImageClass.confext}


class Sysext(VarlinkInterface, name=INTERFACE):
    errors = (NoImagesFound, AlreadyMerged, PermissionDenied)

    def __init__(self, service: Service) -> None:
        self._service = service
        service.fast_reads[f"{INTERFACE}.List"] = self._fast_list

    def _fast_list(self, params: Mapping[str, Any], more: bool, received: int
                   ) -> bytes | Awaitable[bytes] | None:
        """List's fast path: with `more`, and no parameter but a valid class (the rest gets
        asyncvarlink's checks and errors)."""
        if not more or not params.keys() <= {"class"}:
            return None
        value = params.get("class")
        image_class = _CLASSES.get(value) if value is None or isinstance(value, str) else None
        if image_class is None:
            return None
        from strata.discover import search_path
        from strata.engine.query import in_initrd, list_images

        service = self._service

        def inputs(lstat: readcache.Lstats) -> list[readcache.Watched]:
            dirs = search_path(ExtClass(image_class.value), initrd=in_initrd())
            return readcache.discover_inputs(service.root, dirs, follow=not service.root_given,
                                             lstat=lstat)

        def compute() -> readcache.Answer:
            return list_answer(list_images(self._settings({"class": image_class})))

        try:
            got = service.read_cached(f"{INTERFACE}.List:{image_class.value}", inputs, compute,
                                      received)
        except Exception as e:
            raise to_error(e) from e
        return got if isinstance(got, bytes) else _mapped(got)


    def _settings(self, params: Mapping[str, Any]) -> "Settings":
        from strata.engine.settings import resolve

        image_class = params.get("class") or ImageClass.sysext
        s = self._service
        return resolve(ExtClass(image_class.value), s.env,
                       root=s.root if s.root_given else None,
                       force=bool(params.get("force")), noexec=params.get("noexec"),
                       no_reload=bool(params.get("noReload")))

    async def _change(self, params: Mapping[str, Any],
                      work: Callable[["Settings"], object]) -> AnnotatedResult:
        try:
            settings = self._settings(params)
            await self._service.change(lambda _emit: work(settings))
        except Exception as e:
            raise to_error(e) from e
        return AnnotatedResult({})

    @wire_method(MERGE_PARAMS, {})
    async def Merge(self, **params: Any) -> AnnotatedResult:  # noqa: N802
        env = self._service.env

        def merge(settings: "Settings") -> None:
            from strata.engine import ops

            which = ops.first_merged(settings)
            if which is not None:
                raise StrataError(f"Hierarchy '{which}' is already merged.",
                                  kind=ErrorKind.BUSY, errno=errno.EBUSY, subject=which)
            ops.merge(settings, env)

        return await self._change(params, merge)

    @wire_method(UNMERGE_PARAMS, {})
    async def Unmerge(self, **params: Any) -> AnnotatedResult:  # noqa: N802
        def unmerge(settings: "Settings") -> None:
            from strata.engine import ops

            ops.unmerge(settings)

        return await self._change(params, unmerge)

    @wire_method(MERGE_PARAMS, {})
    async def Refresh(self, **params: Any) -> AnnotatedResult:  # noqa: N802
        env = self._service.env

        def refresh(settings: "Settings") -> None:
            from strata.engine import ops

            ops.refresh(settings, env)

        return await self._change(params, refresh)

    @wire_method(LIST_PARAMS, LIST_REPLY)
    async def List(self, **params: Any) -> AnnotatedResult:  # noqa: N802
        """[Requires 'more' flag]"""
        # Not an asyncvarlink generator method: that one waits for each reply to be written
        # before producing the next; these all go out at once, the last as the result.
        ctx = current_call()
        if ctx is None or ctx.notify is None:
            raise ExpectedMore()
        from strata.engine.query import list_images

        try:
            images = await self._service.read(list_images, self._settings(params))
        except Exception as e:
            raise to_error(e) from e
        if not images:
            raise NoImagesFound()
        for img in images[:-1]:
            ctx.notify(_LIST_TYPE.tojson(list_entry(img)))
        return AnnotatedResult(list_entry(images[-1]))

