"""A stand-in for the management layer (manage/api.py signatures), for the service tests: an
in-memory store and enabled set, progress lines, a gate to hold a merge open, and injectable
failures."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence

from strata import log
from strata.errors import ErrorKind, StrataError
from strata.manage.api import (
    CountResult,
    ExtensionInfo,
    ExtensionStatus,
    HookRun,
    Outcome,
    Progress,
)

DEFAULT_OS = "12"


def default_store() -> dict[str, ExtensionInfo]:
    return {
        "app": ExtensionInfo("app", "1.0", "/var/lib/strata/extensions/app-1.0.raw",
                             True, False, False),
        "cfg": ExtensionInfo("cfg", None, "/var/lib/strata/extensions/cfg", False, True, True),
        "tools": ExtensionInfo("tools", "2.1", "/var/lib/extensions/tools.raw", True, True,
                               False),
    }


class FakeManage:
    def __init__(self, store: Mapping[str, ExtensionInfo] | None = None) -> None:
        self.store = dict(store if store is not None else default_store())
        self.enabled: dict[str, list[str]] = {}
        self.merged: tuple[str, ...] = ()
        self.calls: list[tuple[str, object]] = []
        #: op name -> error raised by that op
        self.fail: dict[str, StrataError] = {}
        #: when set, merge/refresh wait for it after their first progress line
        self.gate: threading.Event | None = None
        self.entered = threading.Event()  # a merge/refresh is running
        self.lock = threading.Lock()
        self.running = 0
        self.max_running = 0

    def _check(self, op: str) -> None:
        self.calls.append((op, None))
        if op in self.fail:
            raise self.fail[op]

    def list_extensions(self, root: str) -> list[ExtensionInfo]:
        self._check("list")
        return [self.store[n] for n in sorted(self.store)]

    def status(self, root: str) -> list[ExtensionStatus]:
        self._check("status")
        return [ExtensionStatus(e.name, e.version, e.is_sysext, e.is_confext,
                                e.name in self.merged, "store" if "strata" in e.path else None,
                                None if e.is_directory else "0123456789ab")
                for e in (self.store[n] for n in sorted(self.store))]

    def enable(self, root: str, names: Sequence[str], *, os_release: str | None = None,
               priority: int | None = None) -> CountResult:
        self._check("enable")
        for n in names:
            if n not in self.store:
                raise StrataError(f"unknown extension '{n}'", kind=ErrorKind.NOT_FOUND,
                                  subject=n)
        current = self.enabled.setdefault(os_release or DEFAULT_OS, [])
        current.extend(n for n in names if n not in current)
        return CountResult(len(names), 0)

    def disable(self, root: str, names: Sequence[str] | None = None, *, all: bool = False,
                os_release: str | None = None) -> CountResult:
        self._check("disable")
        current = self.enabled.setdefault(os_release or DEFAULT_OS, [])
        if all:
            count = len(current)
            current.clear()
            return CountResult(count, 0)
        for name in names or ():
            if name not in self.store:
                raise StrataError(f"unknown extension '{name}'", kind=ErrorKind.NOT_FOUND,
                                  subject=name)
        done = [n for n in names or () if n in current]
        for n in done:
            current.remove(n)
        return CountResult(len(done), len(names or ()) - len(done))

    def _merge(self, op: str, progress: Progress | None) -> Outcome:
        self._check(op)
        with self.lock:
            self.running += 1
            self.max_running = max(self.max_running, self.running)
        try:
            names = tuple(self.enabled.get(DEFAULT_OS, []))
            if progress is not None:
                progress(f"{op}: {len(names)} enabled")
            self.entered.set()
            if self.gate is not None:
                self.gate.wait(30)
            for n in names:
                log.info(f"Merging {n}")  # as the engine does: reaches the stream via log
                if progress is not None:
                    progress(f"Merging {n}")  # both ways: streamed once
            self.merged = names
            return Outcome(merged=names, skipped=(("broken", "not an extension"),),
                           hooks=(HookRun("ldconfig", ("ldconfig",), True, 0),
                                  HookRun("on-merge", ("false",), True, 1)))
        finally:
            with self.lock:
                self.running -= 1

    def merge(self, root: str, env: Mapping[str, str], *,
              progress: Progress | None = None) -> Outcome:
        return self._merge("merge", progress)

    def refresh(self, root: str, env: Mapping[str, str], *,
                progress: Progress | None = None) -> Outcome:
        return self._merge("refresh", progress)

    def unmerge(self, root: str, env: Mapping[str, str], *, unmount: bool = False,
                progress: Progress | None = None) -> Outcome:
        self._check("unmerge")
        self.calls.append(("unmount", unmount))
        was, self.merged = self.merged, ()
        if progress is not None:
            progress("Unmerging")
        return Outcome(merged=was, skipped=())
