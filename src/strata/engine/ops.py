"""The engine's verbs: status, list, merge, unmerge, refresh (systemd-sysext v257 semantics).

merge/refresh: discover and read every image without mounting, plan (pure), build the new
overlays in a private namespace (engine.worker), then attach them here. A refresh slides the
new overlay *beneath* the old one and then detaches the old one, so a reader never sees the
hierarchy without its extensions (MOVE_MOUNT_BENEATH, Linux >= 6.5); older kernels fall back
to systemd's unmerge-then-merge and say so.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

from strata import faults, log
from strata.discover import Extension
from strata.engine import marker
from strata.engine.plan import Candidate, Selection, check_forbidden_directories, select
from strata.engine.query import in_initrd, list_images, native_arch, resolved
from strata.engine.settings import Settings
from strata.engine.worker import (
    BuildResult,
    attach_submounts,
    build_wire,
    clone_submounts,
    detach_top,
    remove_workdir,
)
from strata.errors import ErrorKind, StrataError
from strata.fsutil import flocked, join_root
from strata.kernel import mountapi
from strata.kernel.ns import in_private_namespace
from strata.model import ExtClass
from strata.parse import parse_boolean
from strata.record import record

if TYPE_CHECKING:
    from strata.policy import ImagePolicy


def require_privileges() -> None:
    """merge/unmerge/refresh need CAP_SYS_ADMIN, as in systemd ("Need to be privileged.")."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    if int(line.split()[1], 16) & (1 << 21):
                        return
                    break
    except OSError:
        if os.geteuid() == 0:
            return
    raise StrataError("Need to be privileged.", kind=ErrorKind.PERMISSION, errno=errno.EPERM)


@contextlib.contextmanager
def root_lock(root: str) -> Iterator[None]:
    """Serialise merge/unmerge/refresh on one root: an exclusive flock on the root directory
    itself, so nothing is created and a crashed holder releases it with its last fd."""
    with flocked(root, f"Waiting for another merge on '{root}' to finish...",
                 what="root directory"):
        yield


# --- reading images --------------------------------------------------------------------------


@record
class ImageSet:
    """Merge exactly these images instead of discovering them (strata ext)."""

    images: tuple[Extension, ...]
    #: layer order, bottom to top, for the names listed (the rest below, in version order)
    order: tuple[str, ...] = ()
    #: skip and report a broken, incompatible or policy-violating image; merge the rest
    lenient: bool = True


@record
class MergeOutcome:
    merged: tuple[str, ...]  # as listed in the marker
    skipped: tuple[tuple[str, str], ...] = ()  # (image name, why), in decision order


def read_candidates(settings: Settings, extensions: Sequence[Extension], *,
                    lenient: bool = False) -> tuple[list[Candidate], list[tuple[str, str]]]:
    """image_read_metadata() for every image, without mounting. A failure is fatal, naming
    the image, as in systemd; lenient, the image is left out and reported instead."""
    from strata.engine.inspect import read_candidate

    out: list[Candidate] = []
    broken: list[tuple[str, str]] = []
    for ext in extensions:
        try:
            out.append(read_candidate(ext, settings.cls, settings.hierarchies))
        except StrataError as e:
            message = f"Failed to read metadata for image {ext.name}: {e.message}"
            if not lenient:
                raise StrataError(message, hint=e.hint, kind=e.kind, errno=e.errno) from e
            broken.append((ext.name, message))
    if lenient:
        for c in [c for c in out if c.forbidden and not c.is_raw
                  and settings.cls is ExtClass.SYSEXT]:
            out.remove(c)
            broken.append((c.name, f"{c.ext.path} contains /usr/lib/os-release, which is not "
                                   "allowed in an extension"))
    else:
        check_forbidden_directories(settings.cls, out)
    return out, broken


def read_all(settings: Settings) -> list[Candidate]:
    """Discover and read every image (image_discover_and_read_metadata)."""
    return read_candidates(settings, list_images(settings))[0]


def choose(settings: Settings, env: Mapping[str, str], candidates: list[Candidate], *,
           images: ImageSet | None = None) -> Selection:
    """Compare with the host's os-release and pick (the start of merge_subprocess)."""
    from strata.model import Scope
    from strata.release import load_host_release

    host = load_host_release(settings.root, env)
    scope = Scope.INITRD if in_initrd() else Scope.SYSTEM  # v257: the running system's
    return select(candidates, host, cls=settings.cls, scope=scope,
                  arch=native_arch(), force=settings.force,
                  policy=lambda c: pick_image_policy(settings, c.ext.path),
                  order=images.order if images else (),
                  lenient=images.lenient if images else False)


def _drop_unverifiable(settings: Settings, selection: Selection) -> Selection:
    """Lenient merges (strata ext): an image whose verity signature does not verify, or that
    cannot be checked as its policy demands, is left out and reported instead of failing the
    whole merge. (A tampered data partition is only found while mounting, and still fails.)"""
    from strata.engine.plan import Decision
    from strata.engine.worker import check_verity

    kept: list[Candidate] = []
    dropped: list[Decision] = []
    for c in selection.accepted:
        try:
            check_verity(settings, c)
        except StrataError as e:
            dropped.append(Decision(c.name, c.ext.path, False, e.message))
            continue
        kept.append(c)
    if not dropped:
        return selection
    decisions = tuple(d for d in selection.decisions
                      if d.accepted is False or d.name not in {x.name for x in dropped})
    return Selection(cls=selection.cls, accepted=tuple(kept), decisions=(*decisions, *dropped))


def pick_image_policy(settings: Settings, path: str) -> ImagePolicy:
    """pick_image_policy(): --image-policy= wins; in the initrd, images from the untrusted
    /.extra/ (placed by systemd-stub) must be signed or are denied; else the class default."""
    from strata import policy

    if settings.image_policy is not None:
        return policy.parse(settings.image_policy)
    sysext = settings.cls is ExtClass.SYSEXT
    if in_initrd():
        rel = "/" + os.path.relpath(path, settings.root).lstrip("/")
        if rel.startswith("/.extra/sysext/"):
            return policy.SYSEXT_STRICT
        if rel.startswith("/.extra/confext/"):
            return policy.CONFEXT_STRICT
        if rel.startswith("/.extra/"):
            return policy.DENY
    return policy.SYSEXT_DEFAULT if sysext else policy.CONFEXT_DEFAULT


# --- unmerge ---------------------------------------------------------------------------------


def unmerge_hierarchy(cls: ExtClass, target: str, root: str) -> int:
    """Remove every overlay of ours stacked on `target`; submounts that sat on top are put
    back on the revealed directory unless a mount is already there. Returns how many."""
    n = 0
    saved: list[tuple[str, int]] = []
    while (state := marker.read_merged(cls, target, root)) is not None:
        saved.extend(clone_submounts(target, exclude=os.path.join(target, cls.marker_dir)))
        detach_top(cls, target)
        remove_workdir(state.work_dir)
        log.info(f"Unmerged '{target}'.")
        n += 1
    keep = []
    for rel, fd in saved:
        dst = os.path.join(target, rel)
        if os.path.lexists(dst) and marker.is_mount_point(dst):
            os.close(fd)
        else:
            keep.append((rel, fd))
    attach_submounts(target, keep)
    return n


def unmerge(settings: Settings) -> None:
    require_privileges()
    with root_lock(settings.root):
        reload = need_reload(settings)
        failure: StrataError | None = None
        for h in settings.hierarchies:
            try:
                target = resolved(h, settings.root)
                if target is not None:
                    unmerge_hierarchy(settings.cls, target, settings.root)
            except StrataError as e:
                log.error(e.message)
                failure = failure or e
        if reload:
            daemon_reload()
        if failure is not None:
            raise failure


# --- merge and refresh -----------------------------------------------------------------------


def workspace_dir(settings: Settings) -> str:
    """An empty directory the worker mounts its private tmpfs on (only the directory itself
    ever shows on the host). Inside the root when it is writable, so --root touches nothing
    outside it."""
    for base in (join_root(settings.root, "/run/strata"), "/run/strata"):
        try:
            os.makedirs(base, 0o755, exist_ok=True)
            return os.path.join(base, f"{settings.cls.value}.workspace")
        except OSError:
            continue
    raise StrataError(f"Failed to create a workspace below {settings.root}/run or /run",
                      kind=ErrorKind.SYSTEM)


def first_merged(settings: Settings) -> str | None:
    for h in settings.hierarchies:
        target = resolved(h, settings.root)
        if target is not None and marker.read_merged(settings.cls, target, settings.root):
            return h
    return None


def _detach_ours_above(cls: ExtClass, target: str, root: str, keep_id: int) -> list[str | None]:
    """After a mount beneath: detach the old overlays stacked above the new one."""
    old_workdirs: list[str | None] = []
    while mountapi.mount_id(target) != keep_id:
        state = marker.read_merged(cls, target, root)
        if state is None:
            log.warning(f"A foreign mount sits on top of '{target}'; leaving it in place.")
            break
        detach_top(cls, target)
        old_workdirs.append(state.work_dir)
        faults.point("refresh-old-detached")
    return old_workdirs


def _collapse_stack(cls: ExtClass, target: str, root: str) -> list[str | None]:
    """Leave at most one of our overlays at `target` (a crash between mounting beneath and
    detaching the old one leaves two). The new tree can only slide under the top one, so the
    others above it go first; each step shows a complete merge, never the bare hierarchy."""
    from strata.kernel import mountinfo

    removed: list[str | None] = []
    while True:
        stack = mountinfo.stack_at(mountinfo.read(), target)
        # Copies of one overlay made by mount propagation share its superblock: one merge.
        ours = {(e.major, e.minor) for e in stack
                if e.fstype == "overlay" and e.source == cls.mount_source}
        state = marker.read_merged(cls, target, root)
        if len(ours) <= 1 or state is None:
            return removed
        detach_top(cls, target)
        removed.append(state.work_dir)


def _detach_ours(cls: ExtClass, target: str, root: str) -> list[str | None]:
    old: list[str | None] = []
    while (state := marker.read_merged(cls, target, root)) is not None:
        detach_top(cls, target)
        old.append(state.work_dir)
    return old


def attach_trees(settings: Settings, result: BuildResult, fds: list[int]) -> None:
    """Put the built trees in place; only mount-table operations happen from here on."""
    cls, root = settings.cls, settings.root
    beneath = settings.atomic and mountapi.has_move_mount_beneath()
    done: set[str] = set()
    for tree, fd in zip(result.trees, fds, strict=True):
        target = tree.target
        try:
            os.makedirs(target, 0o755, exist_ok=True)
        except OSError as e:
            raise StrataError.from_os(e, f"Failed to create hierarchy mount point '{target}'"
                                      ) from e
        old_workdirs: list[str | None] = []
        fallback: str | None = None  # why the refresh of this hierarchy cannot be atomic
        if marker.read_merged(cls, target, root) is None:
            mountapi.attach(fd, target)
        elif not beneath:
            fallback = ("--atomic=no" if not settings.atomic
                        else "the kernel lacks MOVE_MOUNT_BENEATH (Linux >= 6.5)")
        else:
            old_workdirs = _collapse_stack(cls, target, root)
            try:
                mountapi.attach(fd, target, beneath=True)
            except StrataError as e:
                if e.errno != errno.EINVAL:
                    raise
                # The kernel refuses when propagation would mount the new tree on top of the
                # old one elsewhere (a hierarchy bind-mounted within its own peer group).
                fallback = "mount propagation forbids mounting beneath it"
            else:
                faults.point("refresh-beneath")
                old_workdirs += _detach_ours_above(cls, target, root, mountapi.mount_id(fd))
        if fallback is not None:
            log.info(f"Refreshing '{target}' by unmerging first ({fallback}); its extensions "
                     "are briefly absent.")
            old_workdirs += _detach_ours(cls, target, root)
            mountapi.attach(fd, target)
        for wd in old_workdirs:
            if wd != tree.work_dir:
                remove_workdir(wd)
        done.add(tree.hierarchy)
        log.info(f"Merged extensions into '{target}'.")
        faults.point("attached")
    for h in settings.hierarchies:
        if h in done:
            continue
        stale = resolved(h, root)
        if stale is not None:
            unmerge_hierarchy(cls, stale, root)


def merge(settings: Settings, env: Mapping[str, str], *, refresh: bool = False,
          images: ImageSet | None = None) -> MergeOutcome:
    """Merge (or, with refresh, re-merge) the extensions found where systemd looks, or exactly
    `images`. Nothing merged (outcome.merged empty) means nothing usable was found: the caller
    of refresh then unmerges, as systemd does."""
    require_privileges()
    with root_lock(settings.root):
        exts = list(images.images) if images is not None else list_images(settings)
        candidates, broken = read_candidates(settings, exts,
                                             lenient=images is not None and images.lenient)
        for _name, why in broken:
            log.error(why)
        if not refresh:
            which = first_merged(settings)
            if which is not None:
                raise StrataError(f"Hierarchy '{which}' is already merged.", kind=ErrorKind.BUSY,
                                  errno=errno.EBUSY, hint=f"use '{settings.cls.value} refresh'")
        selection = choose(settings, env, candidates, images=images)
        if images is not None and images.lenient:
            selection = _drop_unverifiable(settings, selection)
        for d in selection.decisions:
            if not d.accepted:
                log.info(d.reason)
        log.info(selection.summary())
        outcome = MergeOutcome(
            merged=selection.names,
            skipped=(*broken, *((d.name, d.reason) for d in selection.decisions
                                if not d.accepted)))
        if not selection.accepted:
            return outcome
        faults.point("planned")
        wire, fds = in_private_namespace(build_wire, settings, selection,
                                         workspace_dir(settings))
        result = BuildResult.from_wire(wire)
        try:
            faults.point("built")
            attach_trees(settings, result, fds)
        finally:
            for fd in fds:
                os.close(fd)
        if need_reload(settings):
            daemon_reload()
        return outcome


def refresh(settings: Settings, env: Mapping[str, str], *,
            images: ImageSet | None = None) -> MergeOutcome:
    outcome = merge(settings, env, refresh=True, images=images)
    if not outcome.merged:
        unmerge(settings)
    return outcome


# --- service manager reload ------------------------------------------------------------------


def need_reload(settings: Settings) -> bool:
    """Any merged extension asking for EXTENSION_RELOAD_MANAGER=1 (read from the merged tree
    with the relaxed lookup, as systemd does)."""
    if settings.no_reload:
        return False
    from strata.images.base import DirectoryFS
    from strata.release import find_extension_release

    fs = DirectoryFS(settings.root)
    for h in settings.hierarchies:
        target = resolved(h, settings.root)
        state = marker.read_merged(settings.cls, target, settings.root) if target else None
        if state is None:
            continue
        for name in state.extensions:
            try:
                found = find_extension_release(fs, settings.cls, name, relaxed=True)
            except StrataError:
                continue
            value = (found.fields or {}).get("EXTENSION_RELOAD_MANAGER", "")
            if value and parse_boolean(value):
                return True
    return False


def daemon_reload() -> None:
    """Ask systemd (when it is PID 1) to reload its units."""
    if not os.path.isdir("/run/systemd/system"):
        log.info("Not reloading the service manager: systemd is not running.")
        return
    from strata.run import run

    run(["systemctl", "daemon-reload"])
