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

import enum
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

# --- the lifecycle: install, remove, info, verify, services, health, logs -------------------
# (install.py, remove.py, info.py, verify.py, services.py, health.py, logs.py;
#  docs/lifecycle.md walks through them)

#: resolves an extension name in a configured repository to a local image file: (root, name)
#: -> host path. `strata update` (strata.update.client.resolve_target) provides one; install
#: copies the file, it never moves or deletes it.
Resolver = Callable[[str, str], str]


class SourceKind(enum.Enum):
    """Where an installed image came from."""

    FILE = "file"
    URL = "url"  # http:// or https://
    REPOSITORY = "repository"  # a name, resolved through a Resolver


class InstallAction(enum.Enum):
    INSTALLED = "installed"  # copied into the store
    PRESENT = "already-installed"  # the same version with the same content was there: no-op


@record
class Installed:
    """One SOURCE of `install`, and what became of it."""

    name: str  # extension name
    version: str | None
    path: str  # the image in the store (host path)
    sha256: str
    size: int
    source: str  # as given
    kind: SourceKind
    action: InstallAction
    enabled: bool = False  # enabled for the running OS release by this call


@record
class InstallResult:
    installed: tuple[Installed, ...]
    outcome: Outcome | None = None  # --now: the refresh


@record
class RemoveResult:
    names: tuple[str, ...]  # extensions removed (disabled, unmerged, deleted unless kept)
    deleted: tuple[str, ...]  # image paths deleted from the store
    kept: tuple[str, ...] = ()  # image paths left in place (--keep-files)
    services: tuple[HookRun, ...] = ()  # the services stopped first (or what would have been)
    outcome: Outcome | None = None  # the refresh, when one was merged
    forced: tuple[str, ...] = ()  # enabled extensions that depend on a removed one (--force)


@record
class ImageDetails:
    """One image of an extension on disk."""

    path: str
    image_name: str
    version: str | None
    origin: str  # "store" or the search directory
    is_directory: bool
    size: int  # bytes of the file; a directory: of its regular files
    sha256: str | None  # computed now; None for a directory or an unreadable file
    recorded_sha256: str | None = None  # what install recorded (None: not installed by it)
    source: str | None = None  # install's SOURCE
    source_kind: str | None = None
    installed_at: str | None = None  # ISO 8601, UTC
    enabled: bool = False  # this image is the one enabled for the running OS release


@record
class ExtensionDetails:
    """`strata ext info`: everything known about one extension. The release data, services,
    hooks and dependencies are those of `image` (the enabled image, else the newest)."""

    name: str
    version: str | None
    image: str  # path of the image described
    classes: tuple[str, ...]  # "sysext", "confext"
    #: class -> every field of its extension-release file, in file order
    release: Mapping[str, tuple[tuple[str, str], ...]]
    images: tuple[ImageDetails, ...]
    services: tuple[str, ...]  # AVOCADO_ENABLE_SERVICES= / STRATA_SERVICES=
    hooks: tuple[tuple[str, str], ...]  # (key, value) of the hook keys, in file order
    depends: tuple[str, ...]
    conflicts: tuple[str, ...]
    provides: tuple[str, ...]
    required_by: tuple[str, ...]  # extensions (any installed) whose STRATA_DEPENDS= it meets
    required_by_enabled: tuple[str, ...]  # ... of those, the ones enabled for this release
    enabled: bool
    merged_into: tuple[str, ...]  # hierarchies whose merge lists it ("/usr", "/etc", ...)
    origin: str | None  # install's SOURCE of the described image, else where it was found


class VerifyState(enum.Enum):
    OK = "ok"
    TAMPERED = "tampered"  # differs from what install recorded
    UNRECORDED = "unrecorded"  # not installed by `strata ext install`: nothing to compare
    SKIPPED = "skipped"  # a directory image: no single digest


@record
class VerifyResult:
    name: str
    path: str
    state: VerifyState
    expected: str | None = None
    actual: str | None = None
    detail: str = ""


class HealthAspect(enum.Enum):
    MERGED = "merged"  # merged as the enabled set says
    SERVICES = "services"  # its declared services are active
    FILES = "files"  # the merged tree shows the image's files unchanged
    LIBRARIES = "libraries"  # its programs' libraries resolve on the merged root


class CheckState(enum.Enum):
    OK = "ok"
    FAILED = "failed"
    UNKNOWN = "unknown"  # could not be told (e.g. systemd not running)
    SKIPPED = "skipped"  # does not apply (nothing declared, not merged)


@record
class HealthCheck:
    aspect: HealthAspect
    state: CheckState
    detail: str = ""


@record
class HealthReport:
    name: str
    checks: tuple[HealthCheck, ...]

    @property
    def healthy(self) -> bool:
        """No check failed (unknown and skipped ones do not count against it)."""
        return all(c.state is not CheckState.FAILED for c in self.checks)


@record
class LogsPlan:
    """`strata ext logs`: the journalctl command for the extension's units, and whether it
    can run here (journald running, the root is the running system)."""

    argv: tuple[str, ...]
    units: tuple[str, ...]
    runnable: bool
    reason: str | None = None  # why not


# The lifecycle functions:
#
# install.py
# def install(root: str, sources: Sequence[str], *, enable: bool = False, now: bool = False,
#             env: Mapping[str, str] | None = None, image_policy: str | None = None,
#             resolver: Resolver | None = None, progress: Progress | None = None
#             ) -> InstallResult
# remove.py
# def remove(root: str, names: Sequence[str], *, keep_files: bool = False,
#            force: bool = False, env: Mapping[str, str] | None = None,
#            progress: Progress | None = None) -> RemoveResult
# info.py
# def info(root: str, name: str, *, env: Mapping[str, str] | None = None
#          ) -> ExtensionDetails
# verify.py
# def verify(root: str, names: Sequence[str] = (), *, all: bool = False,
#            checks: Sequence[ImageCheck] = ()) -> list[VerifyResult]
# health.py
# def health(root: str, names: Sequence[str] = (), *, env: Mapping[str, str] | None = None
#            ) -> list[HealthReport]
# logs.py
# def logs_plan(root: str, name: str, *, follow: bool = False) -> LogsPlan


__all__ = ["CheckState", "CountResult", "ExtensionDetails", "ExtensionInfo", "ExtensionStatus",
           "HealthAspect", "HealthCheck", "HealthReport", "HookRun", "ImageDetails",
           "InstallAction", "InstallResult", "Installed", "LogsPlan", "Mapping",
           "MergedExtension", "Outcome", "Progress", "RemoveResult", "Resolver", "Sequence",
           "SourceKind", "VerifyResult", "VerifyState"]
