from __future__ import annotations

import pickle
from typing import ClassVar

import pytest

from strata.record import FrozenInstanceError, record, replace


@record
class Point:
    x: int
    y: int = 0
    label: str = "p"
    KIND: ClassVar[str] = "point"

    @property
    def total(self) -> int:
        return self.x + self.y


def test_construct_defaults_and_keywords() -> None:
    assert Point(1) == Point(x=1, y=0, label="p")
    assert Point(1, 2).total == 3
    assert Point(1, label="q").label == "q"
    assert Point.KIND == "point"
    with pytest.raises(TypeError):
        Point()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Point(1, 2, "a", 4)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Point(1, z=3)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Point(1, x=2)  # type: ignore[misc]


def test_frozen_eq_hash_repr_replace_pickle() -> None:
    p = Point(1, 2)
    with pytest.raises(FrozenInstanceError):
        p.x = 3  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError):
        del p.x
    assert p == Point(1, 2) and p != Point(2, 1)
    assert p.__eq__((1, 2)) is NotImplemented
    assert len({p, Point(1, 2), Point(2, 2)}) == 2
    assert repr(p) == "Point(x=1, y=2, label='p')"
    assert replace(p, y=5) == Point(1, 5)
    assert pickle.loads(pickle.dumps(p)) == p
    match p:
        case Point(a, b):
            assert (a, b) == (1, 2)
