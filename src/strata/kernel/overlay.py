"""overlayfs: option building (pure) and creating a detached overlay mount on any kernel.

Three ways to hand the layers to the kernel, best first (OverlayMethod):
  LOWERDIR_PLUS  fsconfig "lowerdir+" once per layer (Linux >= 6.8). Values are taken verbatim
                 (no escaping); each must fit fsconfig's 255-byte string limit, or be passed
                 as an fd where overlay accepts fds (>= 6.13; O_PATH/detached mounts later).
  LOWERDIR       one fsconfig "lowerdir" string, escaped and ':'-joined; the whole string must
                 fit in 255 bytes (fs/fsopen.c copies it with strndup_user(value, 256)).
  MOUNT          classic mount(2) with a comma-separated option string (up to a page) onto a
                 scratch directory, then open_tree(OPEN_TREE_CLONE) and a lazy unmount of the
                 scratch mount, so the caller still gets a detached mount fd.

A layer may be a path or an fd of a directory or detached mount. Where the kernel does not take
fds as layers, "/proc/self/fd/N" is passed instead: the kernel's path lookup follows that magic
link to the very mount the fd refers to, detached or not.

Escaping follows systemd's shell_escape(path, ",:"): a backslash before ',', ':' and '\\'.
systemd additionally C-escapes control characters and invalid UTF-8, which the kernel does not
undo (ovl_unescape only drops backslashes), so such paths could never mount; we pass those
bytes through unchanged instead.
"""

from __future__ import annotations

import enum
import errno
import os
from collections.abc import Sequence

from strata.errors import ErrorKind, StrataError
from strata.kernel import libc, mountapi
from strata.kernel.mountapi import FSCONFIG_STRING_MAX, FsOption
from strata.record import record

Layer = str | int
"""A layer directory: a path, or an fd (O_PATH is fine) of a directory or detached mount."""

# mount(2) copies at most one page of option data (copy_mount_options); keep room for the NUL.
MOUNT_DATA_MAX = 4095


class OverlayMethod(enum.Enum):
    LOWERDIR_PLUS = "lowerdir+"
    LOWERDIR = "lowerdir"
    MOUNT = "mount"


def escape_layer(path: str) -> str:
    """Escape a path for overlay's lowerdir=/upperdir=/workdir= (',' ':' and '\\')."""
    out = []
    for ch in path:
        if ch in "\\,:":
            out.append("\\")
        out.append(ch)
    return "".join(out)


def _split_extra(opt: str) -> tuple[str, str] | str:
    key, sep, value = opt.partition("=")
    return (key, value) if sep else opt


def overlay_options(lower: Sequence[str], upper: str | None, work: str | None,
                    extra: Sequence[str] = ()) -> list[tuple[str, str] | str]:
    """Options in the classic form, as systemd builds them: one escaped, ':'-joined lowerdir
    (top layer first), then upperdir/workdir, then the extra options ("k=v" split)."""
    if not lower:
        raise StrataError("overlay needs at least one lower layer", kind=ErrorKind.USAGE)
    opts: list[tuple[str, str] | str] = [("lowerdir", ":".join(escape_layer(p) for p in lower))]
    if upper is not None:
        opts.append(("upperdir", escape_layer(upper)))
    if work is not None:
        opts.append(("workdir", escape_layer(work)))
    opts.extend(_split_extra(o) for o in extra)
    return opts


def option_string(options: Sequence[FsOption]) -> str:
    """Render options as mount(2) data: "k=v,flag,..." (values must already be escaped)."""
    parts = []
    for opt in options:
        if isinstance(opt, str):
            parts.append(opt)
        else:
            parts.append(f"{opt[0]}={opt[1]}")
    return ",".join(parts)


@record
class MountFlags:
    """Generic mount options found among filesystem options (systemd passes e.g. "noatime" in
    the overlay option string and libmount turns it into MS_NOATIME; overlayfs itself would
    reject it). attr_clr is applied before attr_set."""

    attr_set: int = 0
    attr_clr: int = 0
    read_only: bool | None = None

    def apply(self, attrs: int) -> int:
        return (attrs & ~self.attr_clr) | self.attr_set


_ATIME = mountapi.MOUNT_ATTR__ATIME
_VFS_OPTIONS: dict[str, tuple[int, int]] = {  # name -> (set, clear)
    "nosuid": (mountapi.MOUNT_ATTR_NOSUID, 0),
    "suid": (0, mountapi.MOUNT_ATTR_NOSUID),
    "nodev": (mountapi.MOUNT_ATTR_NODEV, 0),
    "dev": (0, mountapi.MOUNT_ATTR_NODEV),
    "noexec": (mountapi.MOUNT_ATTR_NOEXEC, 0),
    "exec": (0, mountapi.MOUNT_ATTR_NOEXEC),
    "noatime": (mountapi.MOUNT_ATTR_NOATIME, _ATIME),
    "relatime": (mountapi.MOUNT_ATTR_RELATIME, _ATIME),
    "atime": (mountapi.MOUNT_ATTR_RELATIME, _ATIME),
    "strictatime": (mountapi.MOUNT_ATTR_STRICTATIME, _ATIME),
    "nodiratime": (mountapi.MOUNT_ATTR_NODIRATIME, 0),
    "diratime": (0, mountapi.MOUNT_ATTR_NODIRATIME),
    "nosymfollow": (mountapi.MOUNT_ATTR_NOSYMFOLLOW, 0),
    "symfollow": (0, mountapi.MOUNT_ATTR_NOSYMFOLLOW),
}


def split_mount_flags(options: Sequence[str]) -> tuple[MountFlags, list[str]]:
    """Separate per-mount options (noatime, nodev, ro, ...) from filesystem options."""
    attr_set = attr_clr = 0
    read_only: bool | None = None
    rest: list[str] = []
    for opt in options:
        if opt in ("ro", "rw"):
            read_only = opt == "ro"
        elif opt in _VFS_OPTIONS:
            s, c = _VFS_OPTIONS[opt]
            attr_clr |= c  # apply() clears before it sets, so a later "nosuid" still wins
            attr_set = (attr_set & ~c) | s
        elif opt:
            rest.append(opt)
    return MountFlags(attr_set, attr_clr, read_only), rest


def ms_flags(attrs: int, read_only: bool) -> int:
    """MOUNT_ATTR_* bits as mount(2) MS_* flags."""
    table = {
        mountapi.MOUNT_ATTR_RDONLY: libc.MS_RDONLY,
        mountapi.MOUNT_ATTR_NOSUID: libc.MS_NOSUID,
        mountapi.MOUNT_ATTR_NODEV: libc.MS_NODEV,
        mountapi.MOUNT_ATTR_NOEXEC: libc.MS_NOEXEC,
        mountapi.MOUNT_ATTR_NODIRATIME: libc.MS_NODIRATIME,
        mountapi.MOUNT_ATTR_NOSYMFOLLOW: libc.MS_NOSYMFOLLOW,
    }
    flags = libc.MS_RDONLY if read_only else 0
    for attr, ms in table.items():
        if attrs & attr:
            flags |= ms
    atime = attrs & _ATIME
    if atime == mountapi.MOUNT_ATTR_NOATIME:
        flags |= libc.MS_NOATIME
    elif atime == mountapi.MOUNT_ATTR_STRICTATIME:
        flags |= libc.MS_STRICTATIME
    return flags


def _fits(value: str) -> bool:
    return len(os.fsencode(value)) <= FSCONFIG_STRING_MAX


def _as_path(layer: Layer) -> str:
    return f"/proc/self/fd/{layer}" if isinstance(layer, int) else layer


def choose_method(lower: Sequence[Layer], upper: Layer | None, work: Layer | None,
                  extra: Sequence[str], *, lowerdir_plus: bool, fd_layers: bool
                  ) -> OverlayMethod:
    """The best way to configure this overlay, given what the kernel supports."""
    extra_ok = all(_fits(v) for o in extra for v in [o.partition("=")[2]])

    def fits_plus(layer: Layer, escaped: bool) -> bool:
        if isinstance(layer, int) or fd_layers:
            return True
        return _fits(escape_layer(layer) if escaped else layer)

    dirs = [d for d in (upper, work) if d is not None]
    if (lowerdir_plus and extra_ok and all(fits_plus(x, False) for x in lower)
            and all(fits_plus(d, True) for d in dirs)):
        return OverlayMethod.LOWERDIR_PLUS
    joined = ":".join(escape_layer(_as_path(x)) for x in lower)
    if extra_ok and _fits(joined) and all(_fits(escape_layer(_as_path(d))) for d in dirs):
        return OverlayMethod.LOWERDIR
    return OverlayMethod.MOUNT


def make_overlay(
    lower: Sequence[Layer],
    *,
    upper: Layer | None = None,
    work: Layer | None = None,
    extra: Sequence[str] = (),
    source: str = "overlay",
    read_only: bool = True,
    attrs: int = 0,
    scratch_mountpoint: str | None = None,
    method: OverlayMethod | None = None,
) -> int:
    """Create an overlay and return it as a DETACHED mount fd (owned by the caller).

    lower is ordered top -> bottom, like lowerdir=. extra are overlay options ("k=v" or flags);
    generic mount options among them (noatime, nodev, ro, rw, ...) become mount attributes as
    libmount would make them. read_only makes both the superblock and the mount read-only.
    scratch_mountpoint is an empty directory used only when the options fit neither fsconfig
    form (old kernels with long layer lists). `method` forces a way (tests; see OverlayMethod).
    """
    if not lower:
        raise StrataError("overlay needs at least one lower layer", kind=ErrorKind.USAGE)
    if (upper is None) != (work is None):
        raise StrataError("overlay upperdir and workdir go together", kind=ErrorKind.USAGE)
    if not mountapi.has_new_mount_api():
        raise StrataError("creating a detached overlay: the kernel lacks the new mount API",
                          hint="Linux >= 5.12 is required", kind=ErrorKind.UNSUPPORTED)
    vfs, fs_extra = split_mount_flags(extra)
    if vfs.read_only is not None:
        read_only = vfs.read_only
    attrs = vfs.apply(attrs)
    if read_only:
        attrs |= mountapi.MOUNT_ATTR_RDONLY
    lowerdir_plus = mountapi.overlay_has_lowerdir_plus()
    fd_layers = mountapi.overlay_has_fd_layers()
    if method is None:
        method = choose_method(lower, upper, work, fs_extra, lowerdir_plus=lowerdir_plus,
                               fd_layers=fd_layers)
    if method is OverlayMethod.MOUNT:
        return _via_mount(lower, upper, work, extra=fs_extra, source=source,
                          read_only=read_only, attrs=attrs, scratch=scratch_mountpoint)
    opened: list[int] = []
    try:
        if method is OverlayMethod.LOWERDIR_PLUS:
            if not lowerdir_plus:
                raise StrataError("overlay lowerdir+: needs Linux >= 6.8",
                                  kind=ErrorKind.UNSUPPORTED)
            opts: list[FsOption] = [
                ("lowerdir+", _layer_value(x, False, fd_layers, opened)) for x in lower]
            if upper is not None and work is not None:
                opts.append(("upperdir", _layer_value(upper, True, fd_layers, opened)))
                opts.append(("workdir", _layer_value(work, True, fd_layers, opened)))
        else:
            opts = list(overlay_options([_as_path(x) for x in lower],
                                        None if upper is None else _as_path(upper),
                                        None if work is None else _as_path(work)))
        opts.extend(_split_extra(o) for o in fs_extra)
        if read_only:
            opts.append("ro")
        return mountapi.mount_fs(source, "overlay", options=opts, attrs=attrs)
    finally:
        for fd in opened:
            os.close(fd)


def _layer_value(layer: Layer, escaped: bool, fd_layers: bool, opened: list[int]) -> str | int:
    """A layer as an fsconfig value: its path if it fits, else an fd (opened here, closed by
    the caller once the superblock holds its own reference)."""
    if isinstance(layer, int):
        return layer if fd_layers else _as_path(layer)
    value = escape_layer(layer) if escaped else layer
    if _fits(value) or not fd_layers:
        return value
    try:
        fd = os.open(layer, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise StrataError.from_os(e, f"opening overlay layer {layer}") from e
    opened.append(fd)
    return fd


def _via_mount(lower: Sequence[Layer], upper: Layer | None, work: Layer | None, *,
               extra: Sequence[str], source: str, read_only: bool, attrs: int,
               scratch: str | None) -> int:
    data = option_string(overlay_options(
        [_as_path(x) for x in lower], None if upper is None else _as_path(upper),
        None if work is None else _as_path(work), extra))
    size = len(os.fsencode(data))
    if size > MOUNT_DATA_MAX:
        raise StrataError(
            f"overlay options are {size} bytes, mount(2) takes at most {MOUNT_DATA_MAX}",
            hint="use fewer or shorter layer paths, or Linux >= 6.8 (lowerdir+)",
            kind=ErrorKind.UNSUPPORTED)
    if scratch is None:
        raise StrataError(
            "overlay options are too long for fsconfig and no scratch mountpoint was given",
            kind=ErrorKind.USAGE)
    try:
        libc.mount(source, scratch, "overlay", ms_flags(attrs, read_only), data)
    except OSError as e:
        hint = "the kernel log (dmesg) has overlayfs' reason" if e.errno == errno.EINVAL else None
        raise StrataError.from_os(e, f"mounting overlay {source} on {scratch}", hint=hint) from e
    try:
        return mountapi.clone_tree(scratch, recursive=False)
    finally:
        mountapi.detach(scratch)
