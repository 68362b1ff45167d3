"""`@record`: frozen value classes, like `@record` but cheap to define.

dataclasses generates each class's methods with exec(), about 1 ms per class on the small boards
and VMs Strata runs on; with forty such classes on the merge path that was a quarter of the
command's wall time (see docs/ARCHITECTURE.md). `record` builds the same behaviour from shared
generic methods: keyword or positional construction in field order, defaults, immutability,
equality and hashing by field values, a readable repr, and `replace()`. Type checkers see it
as a dataclass (PEP 681 `dataclass_transform`).
"""

from __future__ import annotations

from typing import Any, TypeVar, dataclass_transform

T = TypeVar("T")

_MISSING: Any = object()


class FrozenInstanceError(AttributeError):
    """Assignment to a field of a record."""


def _init(self: Any, *args: Any, **kwargs: Any) -> None:
    names: tuple[str, ...] = self.__record_fields__
    defaults: dict[str, Any] = self.__record_defaults__
    if len(args) > len(names):
        raise TypeError(f"{type(self).__name__}() takes {len(names)} arguments, "
                        f"got {len(args)}")
    values = dict(zip(names, args, strict=False))
    for key, value in kwargs.items():
        if key not in defaults and key not in names:
            raise TypeError(f"{type(self).__name__}() got an unexpected keyword '{key}'")
        if key in values:
            raise TypeError(f"{type(self).__name__}() got multiple values for '{key}'")
        values[key] = value
    d = self.__dict__
    for name in names:
        if name in values:
            d[name] = values[name]
        elif name in defaults:
            d[name] = defaults[name]
        else:
            raise TypeError(f"{type(self).__name__}() missing argument '{name}'")


def _setattr(self: Any, name: str, value: Any) -> None:
    raise FrozenInstanceError(f"cannot assign to field '{name}'")


def _delattr(self: Any, name: str) -> None:
    raise FrozenInstanceError(f"cannot delete field '{name}'")


def _values(self: Any) -> tuple[Any, ...]:
    d = self.__dict__
    return tuple(d[n] for n in self.__record_fields__)


def _eq(self: Any, other: object) -> Any:
    if other.__class__ is not self.__class__:
        return NotImplemented
    return _values(self) == _values(other)


def _hash(self: Any) -> int:
    return hash((self.__class__.__name__, _values(self)))


def _repr(self: Any) -> str:
    d = self.__dict__
    inner = ", ".join(f"{n}={d[n]!r}" for n in self.__record_fields__)
    return f"{self.__class__.__qualname__}({inner})"


@dataclass_transform(frozen_default=True)
def record(cls: type[T]) -> type[T]:
    """Make `cls` a frozen record of its annotated fields (in declaration order)."""
    # not inspect.get_annotations(): importing inspect is what this module exists to avoid
    own = cls.__dict__.get("__annotations__", {})  # noqa: RUF063
    names = tuple(n for n in own if not n.startswith("__") and not _is_classvar(own[n]))
    defaults = {}
    for n in names:
        value = cls.__dict__.get(n, _MISSING)
        if value is not _MISSING:
            defaults[n] = value
            delattr(cls, n)  # instances carry their own value in __dict__
    ns: Any = cls
    ns.__record_fields__ = names
    ns.__record_defaults__ = defaults
    setattr(ns, "__match_args__", names)  # noqa: B010 - mypy forbids the plain assignment
    ns.__init__ = _init
    ns.__setattr__ = _setattr
    ns.__delattr__ = _delattr
    ns.__eq__ = _eq
    ns.__hash__ = _hash
    if "__repr__" not in cls.__dict__:
        ns.__repr__ = _repr
    return cls


def _is_classvar(ann: object) -> bool:
    return isinstance(ann, str) and ann.startswith(("ClassVar", "typing.ClassVar"))


def replace(obj: T, **changes: Any) -> T:
    """A copy of record `obj` with some fields changed (dataclasses.replace)."""
    d: dict[str, Any] = obj.__dict__
    values = {n: d[n] for n in obj.__record_fields__}  # type: ignore[attr-defined]
    values.update(changes)
    return type(obj)(**values)


def fields(obj: Any) -> tuple[str, ...]:
    return tuple(obj.__record_fields__)
