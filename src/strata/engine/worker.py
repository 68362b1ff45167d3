"""The build half of apply: runs in a forked child inside a private mount namespace.

It mounts the selected images, takes any previous merge down *in its own namespace only*
(so the host's hierarchy stays merged while the new overlay is built against the underlying
directory), builds one overlay per hierarchy with the marker directory on top, carries the
hierarchy's submounts across, and hands each finished tree back as a detached mount fd.
Whatever fails here dies with the namespace: the caller's mount table is never touched.
"""

from __future__ import annotations

import enum
import errno
import os
import stat
from collections.abc import Mapping

from strata import faults, log
from strata.engine import marker
from strata.engine.layout import (
    MUTABLE_BASE,
    HierarchyLayout,
    HostHierarchy,
    layout,
    single_component,
    workdir_name,
)
from strata.engine.plan import Candidate, Selection, VerityUse
from strata.engine.settings import Settings, VerifyMode
from strata.errors import ErrorKind, StrataError
from strata.fsutil import chase, dir_is_empty, join_root
from strata.kernel import libc, loop, mountapi, mountinfo
from strata.kernel.overlay import make_overlay
from strata.model import ExtClass, ImageType, MutableMode
from strata.record import record

#: overlay options systemd v257 adds in mutable modes; index=off (v259) lets the old and the
#: new overlay share the upper directory for the instant of an atomic refresh
MUTABLE_OPTIONS = ("redirect_dir=on", "noatime", "metacopy=off", "index=off")

#: the name of the workdir Strata uses when the overlay being replaced still holds systemd's
ALT_WORKDIR_FMT = ".strata-{}-workdir"


@record
class BuiltTree:
    hierarchy: str
    target: str  # host path the tree belongs on
    work_dir: str | None  # host path of this overlay's workdir, if mutable


@record
class BuildResult:
    trees: tuple[BuiltTree, ...]  # one per fd handed back, same order

    def to_wire(self) -> tuple[tuple[str, str, str | None], ...]:
        """Plain tuples, so the result crosses the process boundary with marshal."""
        return tuple((t.hierarchy, t.target, t.work_dir) for t in self.trees)

    @classmethod
    def from_wire(cls, wire: tuple[tuple[str, str, str | None], ...]) -> BuildResult:
        return cls(tuple(BuiltTree(h, t, w) for h, t, w in wire))


def build_wire(settings: Settings, selection: Selection, workspace: str
               ) -> tuple[tuple[tuple[str, str, str | None], ...], list[int]]:
    result, fds = build(settings, selection, workspace)
    return result.to_wire(), fds


def mount_attrs(cls: ExtClass, *, read_only: bool, noexec: bool | None) -> int:
    """MOUNT_ATTR_* bits as systemd's default_mount_flags (sysext RDONLY|NODEV; confext adds
    NOSUID|NOEXEC), --noexec forcing NOEXEC either way, and no RDONLY with an upperdir."""
    attrs = mountapi.MOUNT_ATTR_NODEV
    if cls is ExtClass.CONFEXT:
        attrs |= mountapi.MOUNT_ATTR_NOSUID | mountapi.MOUNT_ATTR_NOEXEC
    if noexec is True:
        attrs |= mountapi.MOUNT_ATTR_NOEXEC
    elif noexec is False:
        attrs &= ~mountapi.MOUNT_ATTR_NOEXEC
    if read_only:
        attrs |= mountapi.MOUNT_ATTR_RDONLY
    return attrs


# --- submounts -------------------------------------------------------------------------------


def submount_points(target: str, exclude: str | None = None) -> list[str]:
    """The outermost visible mount points strictly below `target`, excluding `exclude` (the
    marker bind mount), as systemd's get_sub_mounts() + sub_mount_drop(): `target` need not
    be a mount point itself (a tmpfs on /usr/share/x with /usr a plain directory of "/"
    counts), a mount hidden under another one is skipped (its mount ID differs from the one
    its path resolves to), and mounts nested below another one are left out because they
    travel with it in a recursive clone."""
    prefix = target.rstrip("/") + "/"
    visible: list[str] = []
    for e in mountinfo.read():
        point = e.mountpoint
        if not point.startswith(prefix) or point == exclude or point in visible:
            continue
        try:
            if mountapi.mount_id(point) != e.mount_id:
                continue
        except StrataError as err:
            if err.kind is not ErrorKind.UNSUPPORTED:  # Linux < 5.8: no mount IDs, keep it
                continue  # gone, or hidden by an over-mount of a parent directory
        visible.append(point)
    visible.sort()
    points: list[str] = []
    for point in visible:
        if not any(point.startswith(p + "/") for p in points):
            points.append(point)
    return points


def clone_submounts(target: str, exclude: str | None = None) -> list[tuple[str, int]]:
    """Detached recursive copies of the submounts of `target`, with their relative paths."""
    out: list[tuple[str, int]] = []
    for point in submount_points(target, exclude):
        rel = os.path.relpath(point, target)
        out.append((rel, mountapi.clone_tree(point, recursive=True)))
    return out


def attach_submounts(base: str, clones: list[tuple[str, int]]) -> None:
    """Put cloned submounts back at their relative paths below `base` (move_submounts)."""
    for rel, fd in clones:
        dst = os.path.join(base, rel)
        try:
            if not os.path.lexists(dst):
                st = os.fstat(fd)
                os.makedirs(os.path.dirname(dst), 0o755, exist_ok=True)
                if stat.S_ISDIR(st.st_mode):
                    os.mkdir(dst, 0o755)
                else:
                    os.close(os.open(dst, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
            mountapi.attach(fd, dst)
        except OSError as e:
            raise StrataError.from_os(e, f"Failed to create mountpoint {dst}") from e
        finally:
            os.close(fd)


def take_down(cls: ExtClass, target: str, root: str) -> tuple[int, list[tuple[str, int]]]:
    """unmerge_hierarchy(): unmount our overlays at `target` until none is left. Returns how
    many were removed and clones of the submounts that sat on the topmost one. Work
    directories are left alone (the caller decides when they may go)."""
    n = 0
    clones: list[tuple[str, int]] = []
    while marker.read_merged(cls, target, root) is not None:
        if n == 0:
            clones = clone_submounts(target, exclude=os.path.join(target, cls.marker_dir))
        detach_top(cls, target)
        n += 1
    return n, clones


def detach_top(cls: ExtClass, target: str) -> None:
    """Lazily unmount the top merge at `target`: first the marker's read-only bind mount
    (absent for read-only merges: EINVAL), then the overlay with everything on it."""
    mdir = os.path.join(target, cls.marker_dir)
    try:
        libc.umount2(mdir, libc.MNT_DETACH | libc.UMOUNT_NOFOLLOW)
    except OSError as e:
        if e.errno != errno.EINVAL:
            raise StrataError.from_os(e, f"Failed to unmount '{mdir}'") from e
    mountapi.detach(target)


# --- host snapshot ---------------------------------------------------------------------------


def _mode(path: str) -> int | None:
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return None


def _same_inode(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return False
    try:
        sa, sb = os.stat(a), os.stat(b)
    except FileNotFoundError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _chase_or_none(path: str, root: str) -> str | None:
    try:
        return chase(path, root)
    except StrataError as e:
        if e.errno == errno.ENOENT:
            return None
        raise


def snapshot_host(settings: Settings, hierarchy: str, workspace: str) -> HostHierarchy:
    """Read the host side of one hierarchy, creating the mutable directory where systemd does
    (yes: persistent, ephemeral modes: in the workspace tmpfs)."""
    root, mode_setting = settings.root, settings.mutable
    resolved = _chase_or_none(hierarchy, root)
    mode = 0o755
    empty = True
    if resolved is not None:
        mode = stat.S_IMODE(os.stat(resolved).st_mode)
        try:
            empty = dir_is_empty(resolved)
        except OSError as e:
            raise StrataError.from_os(
                e, f"Failed to check if host hierarchy '{resolved}' is empty") from e
    snap = HostHierarchy(hierarchy=hierarchy, resolved=resolved, mode=mode, empty=empty)
    if mode_setting is MutableMode.NO:
        return snap

    name = single_component(hierarchy)
    if mode_setting.ephemeral:
        mroot, mpath = "/", os.path.join(workspace, "mh_workspace", hierarchy.strip("/"), name)
    else:
        mroot, mpath = root, os.path.join(MUTABLE_BASE, name)
    host_mpath = join_root(mroot, mpath)
    # yes/auto: the mode the directory had *before* we create it; layout() checks it against
    # the hierarchy's (a directory created just now is chmod'ed to that mode when mounting).
    existing_mode = None
    if mode_setting in (MutableMode.YES, MutableMode.AUTO):
        try:
            existing_mode = _mode(host_mpath)
        except OSError as e:
            raise StrataError.from_os(
                e, f"Failed to stat mutable directory '{host_mpath}'") from e
    if mode_setting in (MutableMode.YES, MutableMode.EPHEMERAL, MutableMode.EPHEMERAL_IMPORT):
        try:
            os.makedirs(host_mpath, 0o700, exist_ok=True)
        except OSError as e:
            raise StrataError.from_os(e, f"Failed to create a directory '{host_mpath}'") from e
    mdir = _chase_or_none(mpath, mroot)
    read_only = False
    parent_same_fs = True
    if mdir is not None:
        read_only = bool(os.statvfs(mdir).f_flag & os.ST_RDONLY)
        parent_same_fs = os.stat(mdir).st_dev == os.stat(os.path.dirname(mdir)).st_dev
    import_dir = None
    if mode_setting is MutableMode.EPHEMERAL_IMPORT:
        import_dir = _chase_or_none(os.path.join(MUTABLE_BASE, name), root)
    return HostHierarchy(
        hierarchy=hierarchy, resolved=resolved, mode=mode, empty=empty,
        mutable_dir=mdir, mutable_path=host_mpath, mutable_dir_mode=existing_mode,
        mutable_is_hierarchy=_same_inode(mdir, resolved), mutable_read_only=read_only,
        mutable_parent_same_fs=parent_same_fs, import_dir=import_dir,
        import_is_hierarchy=_same_inode(import_dir, resolved),
    )


# --- images ----------------------------------------------------------------------------------


def _mount_fs(path: str, where: str, *, is_block: bool, fstype: str, offset: int,
              size: int) -> None:
    """Mount one file system of an image read-only at `where`: through a read-only, autoclear
    loop device (a block device is used directly unless a partition offset is needed)."""
    dev = None if is_block and not offset else loop.attach(path, offset=offset, size=size,
                                                           read_only=True)
    try:
        fd = _mount_node(path, dev.path if dev is not None else path, fstype)
    finally:
        if dev is not None:
            dev.close()  # the mount now holds the device; autoclear frees it with the mount
    _attach_at(fd, where)


def _mount_node(image: str, node: str, fstype: str) -> int:
    try:
        return mountapi.mount_fs(node, fstype, options=["ro"],
                                 attrs=mountapi.MOUNT_ATTR_RDONLY | mountapi.MOUNT_ATTR_NODEV)
    except StrataError as e:
        raise StrataError(f"Failed to mount image {image}: {e.message}", hint=e.hint,
                          kind=e.kind, errno=e.errno) from e


def _attach_at(fd: int, where: str) -> None:
    try:
        os.makedirs(where, 0o700, exist_ok=True)
        mountapi.attach(fd, where)
    finally:
        os.close(fd)


# --- verity ----------------------------------------------------------------------------------


class VerityMethod(enum.Enum):
    DM_VERITY = "dm-verity"
    USERSPACE = "userspace"
    NONE = "none"  # the partition is mounted as it is


def verity_method(mode: VerifyMode, *, dm_available: bool) -> VerityMethod:
    """How verity-protected partitions are checked under --verify=`mode`. Pure."""
    if mode is VerifyMode.USERSPACE:
        return VerityMethod.USERSPACE
    return VerityMethod.DM_VERITY if dm_available else VerityMethod.NONE


def verity_refusal(mode: VerifyMode, use: VerityUse, *, dm_available: bool) -> str | None:
    """Why a verity-protected partition cannot be used here, before anything is read: no
    dm-verity while the policy (or --verify=dm-verity) insists on verity. Pure."""
    if verity_method(mode, dm_available=dm_available) is not VerityMethod.NONE:
        return None
    if use.required or mode is VerifyMode.DM_VERITY:
        from strata.images.verity import dm_unavailable_message

        return dm_unavailable_message()
    return None


def check_verity(settings: Settings, c: Candidate) -> None:
    """The checks that need no mount, for every verity-protected partition of an image: is
    there a way to check it, and does its signature verify with a trusted certificate
    (userspace; with dm-verity a failure here leaves the kernel's keyring to decide)."""
    from strata.images import verity as iv

    dm = iv.dm_available()
    for use in c.verity_use:
        why = verity_refusal(settings.verify, use, dm_available=dm)
        if why:
            raise StrataError(f"{c.ext.path}: {why}", kind=ErrorKind.UNSUPPORTED,
                              hint="the image policy requires verity for this image"
                              if use.required else None)
        method = verity_method(settings.verify, dm_available=dm)
        if not use.signed or method is VerityMethod.NONE:
            continue
        sig = use.verity.signature
        assert sig is not None
        certs = iv.trusted_certificates(settings.root)
        problem = (iv.verify_signature(sig, certs) if certs
                   else iv.no_certificates_message(settings.root))
        if problem is None:
            continue
        if method is VerityMethod.USERSPACE:
            raise StrataError(f"{c.ext.path}: {problem}", kind=ErrorKind.PERMISSION,
                              hint="put the signer's certificate (PEM, *.crt) into "
                                   "/etc/verity.d of the root")
        log.info(f"{c.ext.path}: {problem}; leaving it to the kernel's keyring.")


def _mount_verified(settings: Settings, c: Candidate, use: VerityUse, where: str,
                    fstype: str) -> None:
    """Mount a verity-protected data partition read-only at `where`, its hash tree checked
    as --verify= says."""
    from strata.images import verity as iv

    v = use.verity
    path = c.ext.path
    method = verity_method(settings.verify, dm_available=iv.dm_available())
    if method is VerityMethod.NONE:
        log.info(f"{path}: dm-verity is not available; the image policy allows its "
                 f"{v.designator} partition unprotected, mounting it without checking it.")
        _mount_fs(path, where, is_block=c.ext.type is ImageType.BLOCK, fstype=fstype,
                  offset=v.data.offset, size=v.data.size)
        return
    # only the bytes the hash tree covers are visible to the file system
    size = min(v.data.size, v.superblock.data_size)
    if method is VerityMethod.USERSPACE:
        dev = loop.attach(path, offset=v.data.offset, size=size, read_only=True)
        try:
            problem = iv.verify_hash_tree(dev.path, path, v)
            if problem is not None:
                raise StrataError(
                    f"{path}: {v.data.describe()} does not match its verity root hash "
                    f"{v.root_hash_hex} ({problem}); not mounting it",
                    hint="the image was modified or is corrupt", kind=ErrorKind.INVALID)
            fd = _mount_node(path, dev.path, fstype)
        finally:
            dev.close()
        _attach_at(fd, where)
        return
    # a signature userspace could not verify is left to the kernel's keyring (check_verity)
    kernel_signature = use.signed and v.signature is not None and iv.verify_signature(
        v.signature, iv.trusted_certificates(settings.root)) is not None
    _mount_dm_verity(c, use, where, fstype, size, kernel_signature=kernel_signature)


def _mount_dm_verity(c: Candidate, use: VerityUse, where: str, fstype: str, size: int, *,
                     kernel_signature: bool) -> None:
    """Open the partition through dm-verity (veritysetup open: the kernel checks every block
    as it is read, and with `kernel_signature` the root hash signature against its keyring),
    mount it, and let the device go with the mount (deferred close)."""
    import tempfile

    from strata.images import verity as iv
    from strata.run import run

    v = use.verity
    path = c.ext.path
    data = loop.attach(path, offset=v.data.offset, size=size, read_only=True)
    hashes = loop.attach(path, offset=v.hash.offset, size=v.hash.size, read_only=True)
    name = f"strata-{os.getpid()}-{data.number}-verity"
    try:
        with tempfile.TemporaryDirectory(prefix="strata-verity-") as tmp:
            sig_file = None
            if kernel_signature and v.signature is not None:
                sig_file = os.path.join(tmp, "roothash.p7s")
                with open(sig_file, "wb") as f:
                    f.write(v.signature.signature)
            try:
                run(iv.open_argv(data.path, name, hashes.path, v.root_hash_hex,
                                 signature=sig_file))
            except StrataError as e:
                raise StrataError(f"{path}: cannot open {v.data.describe()} through "
                                  f"dm-verity: {e.message}", kind=ErrorKind.SYSTEM) from e
        try:
            fd = _mount_node(path, f"/dev/mapper/{name}", fstype)
        finally:
            run(iv.close_argv(name), check=False)
    finally:
        data.close()
        hashes.close()
    _attach_at(fd, where)


def mount_image(settings: Settings, c: Candidate, where: str) -> None:
    """Mount a raw image's tree at `where` as dissect would: the root file system, with a usr
    partition on /usr (a usr-only disk image gets an empty root, as systemd's tmpfs); a
    verity-protected partition through its hash tree (see `_mount_verified`)."""
    lay = c.layout
    if lay is None:
        raise StrataError(f"{c.ext.path}: no filesystem layout for a raw image",
                          kind=ErrorKind.INVALID)
    is_block = c.ext.type is ImageType.BLOCK
    uses = {u.verity.data.index: u for u in c.verity_use}
    mounts = []
    if lay.mount_point == "/usr":
        where = os.path.join(where, "usr")
    mounts.append((lay.partition, where, lay.fs_format.value, lay.offset, lay.size))
    usr, usr_fmt = lay.usr_partition, lay.usr_fs_format
    if lay.mount_point != "/usr" and usr is not None and usr_fmt is not None:
        mounts.append((usr, os.path.join(where, "usr"), usr_fmt.value, usr.offset, usr.size))
    for part, at, fstype, offset, size in mounts:
        use = uses.get(part.index) if part is not None else None
        if use is not None:
            _mount_verified(settings, c, use, at, fstype)
        else:
            _mount_fs(c.ext.path, at, is_block=is_block, fstype=fstype, offset=offset,
                      size=size)


def image_roots(settings: Settings, selection: Selection, workspace: str) -> dict[str, str]:
    """Mount every selected image; name -> directory holding its tree. The checks that need
    no mount run for every image first, so a refusal mounts nothing."""
    for c in selection.accepted:
        if c.is_raw and c.verity_use:
            check_verity(settings, c)
    roots: dict[str, str] = {}
    for c in selection.accepted:
        if c.is_raw:
            where = os.path.join(workspace, selection.cls.image_subdir, c.name)
            mount_image(settings, c, where)
            roots[c.name] = where
        else:
            roots[c.name] = c.ext.path
        faults.point("worker-image-mounted")
    return roots


# --- overlays --------------------------------------------------------------------------------


def _write(path: str, content: str) -> None:
    with open(path, "w", encoding="utf-8", errors="surrogateescape") as f:
        f.write(content)


def choose_workdir(lay: HierarchyLayout, busy: set[str]) -> HierarchyLayout:
    """Use an alternate workdir when the default one still serves the overlay being replaced
    (overlayfs would wipe its "work" directory under the live mount)."""
    if lay.work is None or lay.work not in busy:
        return lay
    alt = os.path.join(os.path.dirname(lay.work),
                       ALT_WORKDIR_FMT.format(single_component(lay.hierarchy)))
    if alt in busy:
        alt = os.path.join(os.path.dirname(lay.work), workdir_name(lay.hierarchy))
    return HierarchyLayout(lay.hierarchy, lay.mode, lay.lower, lay.upper, alt)


def build_overlay(settings: Settings, selection: Selection, hierarchy: str, *,
                  roots: Mapping[str, str], workspace: str, busy_workdirs: set[str]
                  ) -> BuiltTree | None:
    """merge_hierarchy() for one hierarchy: mounts the overlay at <workspace>/overlay/<h>, or
    returns None if no selected image has content there."""
    cls = settings.cls
    layers = selection.layers(hierarchy)
    if not layers:
        return None
    host = snapshot_host(settings, hierarchy, workspace)
    ext_dirs = tuple(os.path.join(roots[c.name], c.content[hierarchy].lstrip("/"))
                     for c in layers)
    meta = os.path.join(workspace, "meta", hierarchy.strip("/"))
    lay = choose_workdir(layout(host, settings.mutable, meta=meta, extension_dirs=ext_dirs),
                         busy_workdirs)

    mdir = os.path.join(meta, cls.marker_dir)
    os.makedirs(mdir, 0o755, exist_ok=True)
    os.chmod(mdir, 0o755)
    work_in_root = None
    if lay.work is not None:
        os.makedirs(lay.work, 0o700, exist_ok=True)
        if not settings.mutable.ephemeral:
            root = settings.root.rstrip("/") or "/"
            if root != "/" and not lay.work.startswith(root + "/"):
                raise StrataError(f"Workdir '{lay.work}' must not be outside root '{root}'",
                                  kind=ErrorKind.INVALID, errno=errno.EINVAL)
            # relative to the root, without a leading slash, as v257's path_startswith()
            # leaves it (v262 refuses an absolute work_dir when unmerging)
            work_in_root = lay.work[len(root.rstrip("/")):].lstrip("/")
    for name, content in marker.marker_files(cls, selection.names, work_in_root).items():
        _write(os.path.join(mdir, name), content)
    os.chmod(lay.top_layer, lay.mode)

    read_only = lay.upper is None
    attrs = mount_attrs(cls, read_only=read_only, noexec=settings.noexec)
    scratch = os.path.join(workspace, "scratch", hierarchy.strip("/"))
    os.makedirs(scratch, 0o700, exist_ok=True)
    fd = make_overlay(list(lay.lower), upper=lay.upper, work=lay.work,
                      extra=MUTABLE_OPTIONS if lay.upper is not None else (),
                      source=cls.mount_source, read_only=read_only, attrs=attrs,
                      scratch_mountpoint=scratch)
    try:
        _write(os.path.join(mdir, "dev"), marker.format_dev(os.fstat(fd).st_dev))
        os.utime(meta)
        where = os.path.join(workspace, "overlay", hierarchy.strip("/"))
        os.makedirs(where, 0o700, exist_ok=True)
        mountapi.attach(fd, where)
    finally:
        os.close(fd)
    if lay.upper is not None:
        # Keep the marker out of reach of writes through the mutable overlay. mount_setattr
        # adds RDONLY only; a MS_REMOUNT|MS_BIND would also drop the nodev/nosuid/noexec the
        # bind inherited, which systemd's bind_remount_one() keeps.
        mpath = os.path.join(where, cls.marker_dir)
        libc.mount(mpath, mpath, None, libc.MS_BIND)
        mountapi.set_attrs(mpath, attr_set=mountapi.MOUNT_ATTR_RDONLY)
    return BuiltTree(hierarchy=hierarchy,
                     target=chase(hierarchy, settings.root, nonexistent=True),
                     work_dir=lay.work if not settings.mutable.ephemeral else None)


def build(settings: Settings, selection: Selection, workspace: str
          ) -> tuple[BuildResult, list[int]]:
    """The worker's entry point (runs inside strata.kernel.ns.in_private_namespace)."""
    cls = settings.cls
    try:
        os.makedirs(workspace, 0o700, exist_ok=True)
    except OSError as e:
        raise StrataError.from_os(e, f"Failed to create '{workspace}'") from e
    libc.mount(cls.value, workspace, "tmpfs", 0, "mode=0700")
    roots = image_roots(settings, selection, workspace)

    # Take the status quo ante down in this namespace only, keeping its submounts.
    submounts: dict[str, list[tuple[str, int]]] = {}
    busy: set[str] = set()
    for h in settings.hierarchies:
        target = chase(h, settings.root, nonexistent=True)
        state = marker.read_merged(cls, target, settings.root)
        if state is not None and state.work_dir:
            busy.add(state.work_dir)
        n, clones = take_down(cls, target, settings.root)
        if n == 0 and os.path.isdir(target):
            clones = clone_submounts(target)
        submounts[h] = clones
    faults.point("worker-unmerged")

    trees: list[BuiltTree] = []
    fds: list[int] = []
    for h in settings.hierarchies:
        tree = build_overlay(settings, selection, h, roots=roots, workspace=workspace,
                             busy_workdirs=busy)
        if tree is None:
            for _rel, fd in submounts[h]:
                os.close(fd)
            continue
        where = os.path.join(workspace, "overlay", h.strip("/"))
        attach_submounts(where, submounts[h])
        trees.append(tree)
        fds.append(mountapi.clone_tree(where, recursive=True))
        faults.point("worker-built")
    return BuildResult(tuple(trees)), fds


def remove_workdir(path: str | None) -> None:
    if path:
        import shutil

        shutil.rmtree(path, ignore_errors=True)
