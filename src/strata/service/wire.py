"""How results go on the wire: asyncvarlink's conversion, with null members left out (systemd
and libvarlink servers omit them, and a C client reading an optional string must find it
absent rather than null), remembered for a result object handed to several callers (shared
reads: fifty Status calls answered by one computation are converted once); and the bytes of
a whole reply, as asyncvarlink would write them, for replies the daemon keeps encoded (the
read cache)."""

import json
from collections.abc import Iterator
from typing import Any, TypeVar

from asyncvarlink import VarlinkInterface, VarlinkMethodReply, varlinksignature
from asyncvarlink.conversion import ObjectVarlinkType, OOBTypeState, VarlinkType
from asyncvarlink.types import JSONValue

C = TypeVar("C", bound=type[VarlinkInterface])


def strip_nulls(value: Any) -> Any:
    """`value` without object members whose value is null (recursively)."""
    if isinstance(value, dict):
        return {k: strip_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [strip_nulls(v) for v in value]
    return value


class WireType(ObjectVarlinkType):
    """`inner` as the IDL shows it and as clients decode it; converted to JSON without nulls,
    and the last conversion is reused when the very same object comes again."""

    def __init__(self, inner: ObjectVarlinkType) -> None:  # no super().__init__: all delegated
        self.inner = inner
        self.as_type = inner.as_type
        self.as_varlink = inner.as_varlink
        self.typedefs = inner.typedefs
        self._last: tuple[object, Any] | None = None

    def tojson(self, obj: Any, oobstate: OOBTypeState = None) -> Any:
        last = self._last
        if last is not None and last[0] is obj:
            return last[1]
        value = strip_nulls(self.inner.tojson(obj, oobstate))
        self._last = (obj, value)  # keeps obj alive, so its id cannot be reused meanwhile
        return value

    def fromjson(self, obj: JSONValue, oobstate: OOBTypeState = None) -> Any:
        return self.inner.fromjson(obj, oobstate)

    def subtypes(self) -> Iterator[VarlinkType]:
        yield self.inner

    def __repr__(self) -> str:
        return f"WireType({self.inner!r})"


def wire_results(cls: C) -> C:
    """Class decorator: every varlink method of `cls` converts its result with WireType."""
    for name in dir(cls):
        signature = varlinksignature(getattr(cls, name))
        if signature is not None and not isinstance(signature.return_type, WireType):
            signature.return_type = WireType(signature.return_type)
    return cls


def complete(reply: VarlinkMethodReply) -> VarlinkMethodReply:
    """`reply` with "parameters" always present: asyncvarlink leaves an empty one out, and
    libvarlink's clients take a reply without it for an invalid message (systemd always sends
    it too)."""
    if not reply.parameters:
        reply.extensions = {**reply.extensions, "parameters": {}}
    return reply


#: asyncvarlink's own encoder settings (protocol.py), so that encoded replies are identical
_ENCODER = json.JSONEncoder(separators=(",", ":"))


def encode(reply: VarlinkMethodReply) -> bytes:
    """The message asyncvarlink would send for `reply` (parameters already in JSON form,
    nulls left out), NUL included."""
    return _ENCODER.encode(complete(reply).tojson()).encode("utf8") + b"\0"
