"""Table tests of the pure per-hierarchy decision (engine.layout), branch by branch against
sysext.c v257 merge_hierarchy(): lower stack, upper/work directories, and every refusal."""

from __future__ import annotations

import errno
from typing import Any

import pytest

from strata.engine.layout import (
    HierarchyLayout,
    HostHierarchy,
    check_mutable_mode,
    layout,
    single_component,
    workdir_name,
)
from strata.errors import ErrorKind, StrataError
from strata.model import MutableMode as M
from strata.record import replace

META = "/ws/meta/opt"
EXTS = ("/ws/extensions/b/opt", "/ws/extensions/a/opt")
R = "/r"
H = f"{R}/opt"
MUT = f"{R}/var/lib/extensions.mutable/opt"
WORK = f"{R}/var/lib/extensions.mutable/.systemd-opt-workdir"
EPH = "/ws/mh_workspace/opt/opt"
EPH_WORK = "/ws/mh_workspace/opt/.systemd-opt-workdir"

#: the host as the worker sees it: /opt exists, non-empty, mode 0755, no mutable directory
BASE = HostHierarchy(hierarchy="/opt", resolved=H, mode=0o755, empty=False)


def host(**changes: Any) -> HostHierarchy:
    return replace(BASE, **changes)


def lay(lower: tuple[str, ...], upper: str | None = None, work: str | None = None,
        mode: int = 0o755) -> HierarchyLayout:
    return HierarchyLayout(hierarchy="/opt", mode=mode, lower=lower, upper=upper, work=work)


LAYOUTS = [
    # --- no mutable directory involved
    ("no: meta, extensions, host", BASE, M.NO,
     lay((META, *EXTS, H))),
    ("no: a mutable directory is ignored entirely", host(mutable_dir=MUT, mutable_dir_mode=0o700),
     M.NO, lay((META, *EXTS, H))),
    ("no: even one that is the hierarchy itself",
     host(mutable_dir=H, mutable_is_hierarchy=True), M.NO, lay((META, *EXTS, H))),
    ("missing host hierarchy: not a layer, mode 0755", host(resolved=None, empty=True), M.NO,
     lay((META, *EXTS))),
    ("empty host hierarchy: not a layer", host(empty=True), M.NO, lay((META, *EXTS))),
    ("host mode carried to the layout", host(mode=0o750), M.NO,
     lay((META, *EXTS, H), mode=0o750)),
    ("auto without a mutable directory: read-only", BASE, M.AUTO, lay((META, *EXTS, H))),
    ("yes without a directory (the worker always makes one): read-only", BASE, M.YES,
     lay((META, *EXTS, H))),
    # --- upper directory
    ("auto with a mutable directory: upper + workdir next to it",
     host(mutable_dir=MUT, mutable_path=MUT, mutable_dir_mode=0o755), M.AUTO,
     lay((META, *EXTS, H), MUT, WORK)),
    ("yes, freshly created (no previous mode): upper", host(mutable_dir=MUT, mutable_path=MUT),
     M.YES, lay((META, *EXTS, H), MUT, WORK)),
    ("yes, missing host: upper, no host layer",
     host(resolved=None, empty=True, mutable_dir=MUT), M.YES, lay((META, *EXTS), MUT, WORK)),
    ("mutable dir behind a symlink: workdir beside the resolved target",
     host(mutable_dir=f"{R}/upperdir", mutable_path=MUT, mutable_dir_mode=0o755), M.AUTO,
     lay((META, *EXTS, H), f"{R}/upperdir", f"{R}/.systemd-opt-workdir")),
    ("mutable dir is the hierarchy: H is the upper, not a lower",
     host(mutable_dir=H, mutable_path=MUT, mutable_dir_mode=0o755, mutable_is_hierarchy=True),
     M.AUTO, lay((META, *EXTS), H, f"{R}/.systemd-opt-workdir")),
    ("mutable dir is the (empty) hierarchy: still the upper",
     host(empty=True, mutable_dir=H, mutable_is_hierarchy=True), M.YES,
     lay((META, *EXTS), H, f"{R}/.systemd-opt-workdir")),
    ("trailing slash on the upper does not change the workdir",
     host(mutable_dir=MUT + "/"), M.YES, lay((META, *EXTS, H), MUT + "/", WORK)),
    ("ephemeral: tmpfs upper, host stays a lower", host(mutable_dir=EPH), M.EPHEMERAL,
     lay((META, *EXTS, H), EPH, EPH_WORK)),
    ("ephemeral: the mode check does not apply", host(mutable_dir=EPH, mutable_dir_mode=0o700),
     M.EPHEMERAL, lay((META, *EXTS, H), EPH, EPH_WORK)),
    # --- import modes
    ("import: mutable dir below meta, read-only", host(mutable_dir=MUT, mutable_dir_mode=0o700),
     M.IMPORT, lay((META, MUT, *EXTS, H))),
    ("import without a directory: plain read-only", BASE, M.IMPORT, lay((META, *EXTS, H))),
    ("import: a read-only mutable dir is fine as a lower",
     host(mutable_dir=MUT, mutable_read_only=True, mutable_parent_same_fs=False), M.IMPORT,
     lay((META, MUT, *EXTS, H))),
    ("import, empty host: not a layer", host(empty=True, mutable_dir=MUT), M.IMPORT,
     lay((META, MUT, *EXTS))),
    ("ephemeral-import: persistent dir imported, tmpfs upper",
     host(mutable_dir=EPH, import_dir=MUT), M.EPHEMERAL_IMPORT,
     lay((META, MUT, *EXTS, H), EPH, EPH_WORK)),
    ("ephemeral-import without a persistent dir", host(mutable_dir=EPH), M.EPHEMERAL_IMPORT,
     lay((META, *EXTS, H), EPH, EPH_WORK)),
    ("ephemeral: import_dir is only for ephemeral-import", host(mutable_dir=EPH, import_dir=MUT),
     M.EPHEMERAL, lay((META, *EXTS, H), EPH, EPH_WORK)),
    ("import: import_dir (ephemeral-import's) is not used", host(import_dir=MUT), M.IMPORT,
     lay((META, *EXTS, H))),
]


@pytest.mark.parametrize(("why", "snapshot", "mode", "expected"), LAYOUTS,
                         ids=[row[0] for row in LAYOUTS])
def test_layout(why: str, snapshot: HostHierarchy, mode: M, expected: HierarchyLayout) -> None:
    got = layout(snapshot, mode, meta=META, extension_dirs=EXTS)
    assert got == expected
    assert got.top_layer == (expected.upper or META)


LOOP = ("Not importing mutable directory for hierarchy /opt as a lower dir, because it points "
        "to the hierarchy itself")
EROFS = f"Can't use '{MUT}' as an upperdir as it is read-only."
EXDEV = (f"Unable to find a suitable workdir location for upperdir '{MUT}' for host hierarchy "
         "'/opt' - parent directory of the upperdir is in a different filesystem")
MODE = f"Mutable directory '{MUT}' has mode 0700, ought to have mode 0755"

REFUSALS = [
    ("import of the hierarchy itself", host(mutable_dir=H, mutable_is_hierarchy=True), M.IMPORT,
     LOOP, errno.ELOOP),
    ("ephemeral-import of the hierarchy itself",
     host(mutable_dir=EPH, import_dir=H, import_is_hierarchy=True), M.EPHEMERAL_IMPORT,
     LOOP, errno.ELOOP),
    ("read-only upper (auto)", host(mutable_dir=MUT, mutable_read_only=True), M.AUTO,
     EROFS, errno.EROFS),
    ("read-only upper (yes)", host(mutable_dir=MUT, mutable_read_only=True), M.YES,
     EROFS, errno.EROFS),
    ("read-only hierarchy as its own upper",
     host(mutable_dir=H, mutable_is_hierarchy=True, mutable_read_only=True), M.AUTO,
     f"Can't use '{H}' as an upperdir as it is read-only.", errno.EROFS),
    ("upper on another file system than its parent", host(mutable_dir=MUT,
                                                          mutable_parent_same_fs=False),
     M.YES, EXDEV, errno.EXDEV),
    ("read-only is reported before the workdir problem",
     host(mutable_dir=MUT, mutable_read_only=True, mutable_parent_same_fs=False), M.AUTO,
     EROFS, errno.EROFS),
    ("mode mismatch (yes)", host(mutable_dir=MUT, mutable_path=MUT, mutable_dir_mode=0o700),
     M.YES, MODE, errno.EINVAL),
    ("mode mismatch (auto), checked before the read-only test",
     host(mutable_dir=MUT, mutable_path=MUT, mutable_dir_mode=0o700, mutable_read_only=True),
     M.AUTO, MODE, errno.EINVAL),
]


@pytest.mark.parametrize(("why", "snapshot", "mode", "message", "code"), REFUSALS,
                         ids=[row[0] for row in REFUSALS])
def test_layout_refusals(why: str, snapshot: HostHierarchy, mode: M, message: str,
                         code: int) -> None:
    with pytest.raises(StrataError) as e:
        layout(snapshot, mode, meta=META, extension_dirs=EXTS)
    assert e.value.message == message
    assert e.value.errno == code
    assert e.value.kind is ErrorKind.INVALID


MODE_CHECKS = [
    # (mode, mutable_path, mutable_dir, previous mode, hierarchy mode, error path or None)
    (M.YES, MUT, MUT, 0o700, 0o755, MUT),
    (M.AUTO, MUT, MUT, 0o700, 0o755, MUT),
    (M.AUTO, MUT, MUT, 0o755, 0o750, MUT),
    (M.YES, MUT, MUT, 0o755, 0o755, None),  # matching
    (M.YES, MUT, MUT, None, 0o755, None),  # created by this merge: chmod'ed later
    (M.AUTO, MUT, None, None, 0o755, None),  # absent (or a dangling symlink)
    (M.YES, MUT, f"{R}/upperdir", 0o700, 0o755, MUT),  # a symlink: named as configured
    (M.YES, None, MUT, 0o700, 0o755, MUT),  # no configured path: the resolved one
    (M.NO, MUT, MUT, 0o700, 0o755, None),
    (M.IMPORT, MUT, MUT, 0o700, 0o755, None),
    (M.EPHEMERAL, MUT, EPH, 0o700, 0o755, None),
    (M.EPHEMERAL_IMPORT, MUT, EPH, 0o700, 0o755, None),
]


@pytest.mark.parametrize("case", MODE_CHECKS)
def test_check_mutable_mode(
        case: tuple[M, str | None, str | None, int | None, int, str | None]) -> None:
    mode, path, mdir, previous, hmode, error_path = case
    snap = host(mode=hmode, mutable_path=path, mutable_dir=mdir, mutable_dir_mode=previous)
    if error_path is None:
        check_mutable_mode(snap, mode)
        return
    with pytest.raises(StrataError) as e:
        check_mutable_mode(snap, mode)
    assert e.value.message == (f"Mutable directory '{error_path}' has mode {previous:04o}, "
                               f"ought to have mode {hmode:04o}")
    assert e.value.hint == f"chmod {hmode:04o} {error_path}"
    assert e.value.errno == errno.EINVAL


@pytest.mark.parametrize(("hierarchy", "component", "workdir"), [
    ("/usr", "usr", ".systemd-usr-workdir"),
    ("/usr/local/", "usr.local", ".systemd-usr.local-workdir"),
    ("/spa ce/h", "spa ce.h", ".systemd-spa ce.h-workdir"),
])
def test_names(hierarchy: str, component: str, workdir: str) -> None:
    assert single_component(hierarchy) == component
    assert workdir_name(hierarchy) == workdir


def test_layout_without_extension_layers() -> None:
    assert layout(BASE, M.NO, meta=META, extension_dirs=()) == lay((META, H))


def test_layout_workdir_uses_the_hierarchy_name() -> None:
    snap = HostHierarchy(hierarchy="/usr/local", resolved="/r/usr/local", mode=0o755,
                         empty=False, mutable_dir="/r/var/lib/extensions.mutable/usr.local")
    got = layout(snap, M.YES, meta="/m", extension_dirs=("/e",))
    assert got.work == "/r/var/lib/extensions.mutable/.systemd-usr.local-workdir"
    assert got.lower == ("/m", "/e", "/r/usr/local")
