"""The contract of the management layer, used by `strata ext` (cli/ext.py) and the varlink
service (service/). Implementations live in the sibling modules; this module holds the value
types and the function signatures, so both fronts can be written against it.

Every function takes `root` ("/" or a scratch root; nothing outside it is touched) and raises
StrataError with these kinds, which the service maps to org.avocado.Extensions errors:

    NOT_FOUND (subject=name)   -> ExtensionNotFound{name}
    CONFIGURATION              -> ConfigurationError{message}
    COMMAND (subject=command)  -> CommandFailed{command, message}
    anything else during merge/refresh -> MergeFailed{reason}; during unmerge -> UnmergeFailed
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from strata.record import record

#: receives one human-readable progress line at a time (streamed as {message, done:false})
Progress = Callable[[str], None]


@record
class ExtensionInfo:
    """org.avocado.Extensions `Extension`."""

    name: str
    version: str | None
    path: str
    is_sysext: bool
    is_confext: bool
    is_directory: bool


@record
class ExtensionStatus:
    """org.avocado.Extensions `ExtensionStatus`."""

    name: str
    version: str | None
    is_sysext: bool
    is_confext: bool
    is_merged: bool
    origin: str | None  # where it came from: "store", "/var/lib/extensions", "/run/extensions"...
    image_id: str | None  # first 12 hex digits of the image's sha256 (directories: None)
    enabled: bool = False  # enabled for the running OS release
    path: str | None = None  # the image (None: merged, but no longer in the store)


@record
class CountResult:
    """Enable/Disable replies: how many succeeded, how many failed."""

    done: int
    failed: int


@record
class HookRun:
    """One hook command and what became of it (ran, or would have run)."""

    phase: str  # "ldconfig", "depmod", "modprobe", "daemon-reload", "restart", "on-merge", ...
    argv: tuple[str, ...]
    ran: bool  # False: only recorded (not PID 1 systemd, or --root)
    status: int | None = None  # exit status when it ran
    error: str | None = None


@record
class MergedExtension:
    """One extension as it was merged, handed to the hooks (manage/hooks.py).

    `release` is its extension-release file as a mapping (the last value wins for a repeated
    key, as in systemd); `release_pairs` keeps every (key, value) line in file order, for keys
    that may legitimately repeat.
    """

    name: str
    cls: str  # "sysext" | "confext"
    path: str  # the image (file or directory) that was merged
    release: Mapping[str, str]
    release_pairs: tuple[tuple[str, str], ...] = ()


@record
class Outcome:
    """Merge/Unmerge/Refresh result for both classes together."""

    merged: tuple[str, ...]  # extension names merged (sysext and confext)
    skipped: tuple[tuple[str, str], ...]  # (name, reason): broken, incompatible, policy...
    hooks: tuple[HookRun, ...] = ()
    unmerged: tuple[str, ...] = ()  # unmerge/refresh: names that were merged and are no more


# The functions (implemented in manage/ext.py):
#
# def list_extensions(root: str) -> list[ExtensionInfo]
# def status(root: str) -> list[ExtensionStatus]
# def enable(root: str, names: Sequence[str], *, os_release: str | None = None,
#            priority: int | None = None) -> CountResult
# def disable(root: str, names: Sequence[str] | None = None, *, all: bool = False,
#             os_release: str | None = None) -> CountResult
# def merge(root: str, env: Mapping[str, str], *, progress: Progress | None = None) -> Outcome
# def unmerge(root: str, env: Mapping[str, str], *, unmount: bool = False,
#             progress: Progress | None = None) -> Outcome
# def refresh(root: str, env: Mapping[str, str], *, progress: Progress | None = None) -> Outcome
#
# The hooks (manage/hooks.py), called by merge/unmerge/refresh; `live`: systemd is PID 1
# (/run/systemd/system exists) and root == "/". A failing hook is reported in its HookRun.
# merge: after_merge; unmerge: before_unmerge, after_unmerge; refresh: before_unmerge (the old
# set), after_merge (the new set). While hooks.py exists, it owns daemon-reload for
# EXTENSION_RELOAD_MANAGER=1 (the engine is told --no-reload).
#
# def after_merge(root: str, merged: Sequence[MergedExtension], *, live: bool
#                 ) -> tuple[HookRun, ...]
# def before_unmerge(root: str, merged: Sequence[MergedExtension], *, live: bool
#                    ) -> tuple[HookRun, ...]
# def after_unmerge(root: str, merged: Sequence[MergedExtension], *, live: bool
#                   ) -> tuple[HookRun, ...]

__all__ = ["CountResult", "ExtensionInfo", "ExtensionStatus", "HookRun", "Mapping",
           "MergedExtension", "Outcome", "Progress", "Sequence"]
