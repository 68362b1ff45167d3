"""What every rule gets besides the image: the host (with --host) and the package lookup."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from strata.check.host import HostView
from strata.record import record


def no_packages(_sonames: Sequence[str]) -> Mapping[str, str]:
    return {}


@record
class Context:
    host: HostView | None = None
    #: soname -> package providing it (packages.lookup; tests pass something fixed)
    packages: Callable[[Sequence[str]], Mapping[str, str]] = no_packages

