"""The shared helper modules of the image reader tests assert things themselves: have pytest
rewrite their asserts as it does the test modules', so that failures show the values."""

from __future__ import annotations

import pytest

pytest.register_assert_rewrite("tests.unit.imagetree", "tests.unit.erofstree",
                               "tests.unit.gptdisk")
