"""The management layer as the service sees it: the functions of manage/api.py, as a Protocol
so that tests can hand the service a fake with the same signatures."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from strata.manage.api import CountResult, ExtensionInfo, ExtensionStatus, Outcome, Progress


class Manage(Protocol):
    """manage/api.py's functions (implemented by the module strata.manage.ext)."""

    def list_extensions(self, root: str) -> list[ExtensionInfo]: ...

    def status(self, root: str) -> list[ExtensionStatus]: ...

    def enable(self, root: str, names: Sequence[str], *, os_release: str | None = None,
               priority: int | None = None) -> CountResult: ...

    def disable(self, root: str, names: Sequence[str] | None = None, *, all: bool = False,
                os_release: str | None = None) -> CountResult: ...

    def merge(self, root: str, env: Mapping[str, str], *,
              progress: Progress | None = None) -> Outcome: ...

    def unmerge(self, root: str, env: Mapping[str, str], *, unmount: bool = False,
                progress: Progress | None = None) -> Outcome: ...

    def refresh(self, root: str, env: Mapping[str, str], *,
                progress: Progress | None = None) -> Outcome: ...


def load() -> Manage:
    """The real management layer (manage/ext.py); mypy checks it against Manage."""
    from strata.manage import ext

    return ext
