"""Pure per-hierarchy layout: the overlay's lower stack, upper and work directories.

Follows sysext.c (v257) merge_hierarchy(): the meta directory on top, then (import modes) the
mutable directory, then the extensions highest name first, then the host hierarchy unless it is
missing, empty, or itself the upper directory. The host facts come in as a snapshot taken in
the worker after any previous merge was taken down, so this stays a pure decision.
"""

from __future__ import annotations

import errno
import posixpath

from strata.errors import ErrorKind, StrataError
from strata.model import MutableMode
from strata.record import record

MUTABLE_BASE = "/var/lib/extensions.mutable"


def single_component(hierarchy: str) -> str:
    """hierarchy_as_single_path_component(): "/usr/local/" -> "usr.local"."""
    return hierarchy.strip("/").replace("/", ".")


def workdir_name(hierarchy: str) -> str:
    return f".systemd-{single_component(hierarchy)}-workdir"


@record
class HostHierarchy:
    """What the host looks like for one hierarchy (the snapshot the worker takes)."""

    hierarchy: str  # as configured, e.g. "/usr"
    resolved: str | None  # host path chased below the root; None if it does not exist
    mode: int  # permission bits of `resolved`, 0o755 when missing
    empty: bool  # `resolved` is an empty directory (or missing)
    #: the resolved mutable directory (persistent or ephemeral), None if absent
    mutable_dir: str | None = None
    #: yes/auto: the unresolved host path of the persistent mutable directory, as systemd names
    #: it in the mode mismatch error (<root>/var/lib/extensions.mutable/<N>)
    mutable_path: str | None = None
    #: yes/auto: permission bits of `mutable_path` (symlinks followed) *before* this merge
    #: created it; None when it did not exist (a fresh directory is chmod'ed to `mode` later)
    mutable_dir_mode: int | None = None
    mutable_is_hierarchy: bool = False  # same inode as `resolved`
    mutable_read_only: bool = False  # lives on a read-only filesystem
    mutable_parent_same_fs: bool = True  # its parent is on the same filesystem (for the workdir)
    #: ephemeral-import: the resolved persistent mutable directory to import, None if absent
    import_dir: str | None = None
    import_is_hierarchy: bool = False


@record
class HierarchyLayout:
    hierarchy: str
    mode: int  # applied to the top layer so the merged root keeps the host's permissions
    lower: tuple[str, ...]  # lowerdir=, top to bottom
    upper: str | None
    work: str | None

    @property
    def top_layer(self) -> str:
        return self.upper if self.upper is not None else self.lower[0]


def check_mutable_mode(host: HostHierarchy, mutable: MutableMode) -> None:
    """yes/auto: a mutable directory that existed before the merge must carry the hierarchy's
    mode, since the merged root takes the upper directory's mode (v257
    mutable_directory_mode_matches_hierarchy, checked before `yes` creates the directory)."""
    if mutable not in (MutableMode.YES, MutableMode.AUTO):
        return
    if host.mutable_dir_mode is not None and host.mutable_dir_mode != host.mode:
        path = host.mutable_path or host.mutable_dir
        raise StrataError(
            f"Mutable directory '{path}' has mode {host.mutable_dir_mode:04o}, "
            f"ought to have mode {host.mode:04o}",
            hint=f"chmod {host.mode:04o} {path}", kind=ErrorKind.INVALID,
            errno=errno.EINVAL)


def _loop_error(hierarchy: str) -> StrataError:
    return StrataError(
        f"Not importing mutable directory for hierarchy {hierarchy} as a lower dir, because it "
        "points to the hierarchy itself", kind=ErrorKind.INVALID, errno=errno.ELOOP)


def layout(
    host: HostHierarchy,
    mutable: MutableMode,
    *,
    meta: str,
    extension_dirs: tuple[str, ...],
) -> HierarchyLayout:
    """The overlay for one hierarchy; `extension_dirs` are the contributing extension
    directories, top to bottom. Raises StrataError with systemd's reason where it would fail."""
    check_mutable_mode(host, mutable)
    # mutable=no never resolves a mutable directory (resolve_mutable_directory returns NULL)
    mdir = None if mutable is MutableMode.NO else host.mutable_dir
    lower: list[str] = [meta]
    if mutable is MutableMode.IMPORT and mdir is not None:
        if host.mutable_is_hierarchy:
            raise _loop_error(host.hierarchy)
        lower.append(mdir)
    if mutable is MutableMode.EPHEMERAL_IMPORT and host.import_dir is not None:
        if host.import_is_hierarchy:
            raise _loop_error(host.hierarchy)
        lower.append(host.import_dir)
    lower.extend(extension_dirs)

    if host.resolved is not None and not host.empty:
        # hierarchy_as_lower_dir(): the import modes always keep the host; otherwise a host
        # that is itself the mutable directory serves as the upper directory instead
        use_host = (mutable in (MutableMode.IMPORT, MutableMode.EPHEMERAL_IMPORT)
                    or mdir is None or not host.mutable_is_hierarchy)
        if use_host:
            lower.append(host.resolved)

    upper = work = None
    if mutable is not MutableMode.IMPORT and mdir is not None:
        if host.mutable_read_only:
            raise StrataError(f"Can't use '{mdir}' as an upperdir as it is read-only.",
                              kind=ErrorKind.INVALID, errno=errno.EROFS)
        if not host.mutable_parent_same_fs:
            raise StrataError(
                f"Unable to find a suitable workdir location for upperdir '{mdir}' "
                f"for host hierarchy '{host.hierarchy}' - parent directory of the upperdir is in "
                "a different filesystem", kind=ErrorKind.INVALID, errno=errno.EXDEV)
        upper = mdir
        work = posixpath.join(posixpath.dirname(upper.rstrip("/")), workdir_name(host.hierarchy))
    return HierarchyLayout(hierarchy=host.hierarchy, mode=host.mode, lower=tuple(lower),
                           upper=upper, work=work)

