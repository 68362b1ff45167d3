"""The new mount API wrappers: detached mounts, attach, MOVE_MOUNT_BENEATH, clone_tree,
mount IDs, attributes, probes and error messages. All mounting happens in run_isolated."""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from strata.errors import ErrorKind, StrataError
from strata.kernel import mountapi, mountinfo
from strata.kernel.ns import run_isolated

pytestmark = pytest.mark.privileged


def _tmpfs_with(name: str, content: str) -> int:
    """A detached tmpfs holding one file, written through the mount fd (never attached)."""
    fd = mountapi.mount_fs("tmpfs", "tmpfs", options=[("mode", "0755")])
    f = os.open(name, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644, dir_fd=fd)
    try:
        os.write(f, content.encode())
    finally:
        os.close(f)
    return fd


def test_probes_on_this_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    # the project's reference machine runs 6.18: everything is there
    if mountapi.kernel_version() < (6, 8):
        pytest.skip("needs Linux >= 6.8")
    assert mountapi.has_new_mount_api()
    assert mountapi.has_move_mount_beneath()
    assert mountapi.overlay_has_lowerdir_plus()
    monkeypatch.setenv(mountapi.DISABLE_ENV, "move-mount-beneath, lowerdir+")
    assert mountapi.has_new_mount_api()
    assert not mountapi.has_move_mount_beneath()
    assert not mountapi.overlay_has_lowerdir_plus()
    assert not mountapi.overlay_has_fd_layers()
    monkeypatch.setenv(mountapi.DISABLE_ENV, "new-mount-api")
    assert not mountapi.has_new_mount_api()
    assert not mountapi.has_move_mount_beneath()


def _detached_then_attached(target: str) -> dict[str, object]:
    before = mountapi.mount_id(target)
    fd = _tmpfs_with("f", "detached")
    detached_id = mountapi.mount_id(fd)
    # a detached mount is in no mount table yet
    in_table_before = mountinfo.by_id(mountinfo.read(), detached_id) is not None
    mountapi.attach(fd, target)
    os.close(fd)
    after = mountapi.mount_id(target)
    top = mountinfo.top_mount_at(mountinfo.read(), target)
    text = Path(target, "f").read_text()
    mountapi.detach(target)
    return {"before": before, "detached": detached_id, "after": after, "text": text,
            "in_table_before": in_table_before,
            "top": None if top is None else (top.mount_id, top.fstype, top.source),
            "restored": mountapi.mount_id(target)}


def test_mount_fs_detached_attach_and_mount_id(tmp_path: Path) -> None:
    target = tmp_path / "mnt"
    target.mkdir()
    r = run_isolated(_detached_then_attached, str(target))
    assert r["text"] == "detached"
    assert r["in_table_before"] is False
    assert r["after"] != r["before"], "mount ID must change when something is mounted"
    assert r["after"] == r["detached"], "the attached mount is the one the fd referred to"
    assert r["top"] == (r["detached"], "tmpfs", "tmpfs")
    assert r["restored"] == r["before"]


def _beneath(target: str) -> dict[str, object]:
    a = _tmpfs_with("f", "A")
    mountapi.attach(a, target)
    os.close(a)
    entries = mountinfo.read()
    top_a = mountinfo.top_mount_at(entries, target)
    assert top_a is not None
    stop = threading.Event()
    seen: list[str] = []
    misses: list[str] = []

    def reader() -> None:
        path = os.path.join(target, "f")
        while not stop.is_set():
            try:
                with open(path) as f:
                    seen.append(f.read())
            except OSError as e:
                misses.append(errno.errorcode.get(e.errno or 0, "?"))

    t = threading.Thread(target=reader)
    t.start()
    try:
        time.sleep(0.02)
        b = _tmpfs_with("f", "B")
        b_id = mountapi.mount_id(b)
        mountapi.attach(b, target, beneath=True)
        os.close(b)
        time.sleep(0.02)
        visible_after_beneath = Path(target, "f").read_text()
        stack = [e.mount_id for e in mountinfo.stack_at(mountinfo.read(), target)]
        mountapi.detach(target)  # unmounts A, the top
        time.sleep(0.02)
    finally:
        stop.set()
        t.join()
    return {"visible_after_beneath": visible_after_beneath, "stack": stack,
            "a": top_a.mount_id, "b": b_id, "final": Path(target, "f").read_text(),
            "final_id": mountapi.mount_id(target), "misses": misses,
            "saw": sorted(set(seen)), "reads": len(seen)}


def test_move_mount_beneath_swaps_without_gap(tmp_path: Path) -> None:
    if not mountapi.has_move_mount_beneath():
        pytest.skip("needs MOVE_MOUNT_BENEATH (Linux >= 6.5)")
    target = tmp_path / "mnt"
    target.mkdir()
    r = run_isolated(_beneath, str(target))
    assert r["visible_after_beneath"] == "A", "B goes beneath: A stays visible"
    stack = r["stack"]
    assert isinstance(stack, list)
    assert stack[-2:] == [r["b"], r["a"]]
    assert r["final"] == "B"
    assert r["final_id"] == r["b"]
    assert r["misses"] == [], "a reader must never see the directory underneath"
    assert r["saw"] == ["A", "B"]
    assert isinstance(r["reads"], int)
    assert r["reads"] > 10


def test_attach_beneath_unsupported_is_clear(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(mountapi.DISABLE_ENV, "move-mount-beneath")
    with pytest.raises(StrataError) as exc:
        mountapi.attach(0, str(tmp_path), beneath=True)
    assert exc.value.kind is ErrorKind.UNSUPPORTED
    assert "MOVE_MOUNT_BENEATH" in str(exc.value)


def _clone_reveals(parent: str) -> dict[str, object]:
    covered = os.path.join(parent, "covered")
    cover = _tmpfs_with("on-top", "x")
    mountapi.attach(cover, covered)
    os.close(cover)
    visible = sorted(os.listdir(covered))
    flat = mountapi.clone_tree(parent, recursive=False)
    rec = mountapi.clone_tree(parent, recursive=True)
    try:
        under = sorted(os.listdir(f"/proc/self/fd/{flat}/covered"))
        with_sub = sorted(os.listdir(f"/proc/self/fd/{rec}/covered"))
        ids = (mountapi.mount_id(flat), mountapi.mount_id(rec), mountapi.mount_id(parent))
    finally:
        os.close(flat)
        os.close(rec)
    return {"visible": visible, "under": under, "with_sub": with_sub, "ids": ids}


def test_clone_tree_reveals_covered_directory(tmp_path: Path) -> None:
    parent = tmp_path / "parent"
    (parent / "covered").mkdir(parents=True)
    (parent / "covered" / "underneath").write_text("hidden")
    r = run_isolated(_clone_reveals, str(parent))
    assert r["visible"] == ["on-top"]
    assert r["under"] == ["underneath"], "a non-recursive clone leaves the cover behind"
    assert r["with_sub"] == ["on-top"], "a recursive clone carries the submount"
    ids = r["ids"]
    assert isinstance(ids, tuple)
    assert len(set(ids)) == 3, "clones are new mounts"


def _read_only_attr(target: str) -> tuple[int, int]:
    fd = _tmpfs_with("f", "x")
    mountapi.attach(fd, target)
    mountapi.set_attrs(fd, attr_set=mountapi.MOUNT_ATTR_RDONLY)
    os.close(fd)
    codes = []
    try:
        Path(target, "g").write_text("y")
        codes.append(0)
    except OSError as e:
        codes.append(e.errno or 0)
    mountapi.set_attrs(target, attr_clr=mountapi.MOUNT_ATTR_RDONLY)
    Path(target, "g").write_text("y")
    entry = mountinfo.top_mount_at(mountinfo.read(), target)
    codes.append(int(entry is not None and entry.read_only))
    return codes[0], codes[1]


def test_set_attrs_read_only(tmp_path: Path) -> None:
    (tmp_path / "mnt").mkdir()
    code, still_ro = run_isolated(_read_only_attr, str(tmp_path / "mnt"))
    assert code == errno.EROFS
    assert still_ro == 0


def _errors() -> dict[str, tuple[str, ErrorKind]]:
    out: dict[str, tuple[str, ErrorKind]] = {}
    cases: dict[str, Callable[[], object]] = {
        "bad-value": lambda: mountapi.mount_fs("tmpfs", "tmpfs", options=[("size", "bogus")]),
        "unknown": lambda: mountapi.mount_fs("tmpfs", "tmpfs", options=["bogusflag"]),
        "no-fs": lambda: mountapi.mount_fs("x", "no-such-fs"),
        "no-source": lambda: mountapi.mount_fs("/nonexistent.img", "erofs"),
        "too-long": lambda: mountapi.mount_fs("tmpfs", "tmpfs", options=[("x", "y" * 300)]),
        "not-mounted": lambda: mountapi.unmount("/proc/self"),
    }
    for name, fn in cases.items():
        try:
            fn()
        except StrataError as e:
            out[name] = (str(e), e.kind)
    return out


def test_error_messages_carry_kernel_log() -> None:
    r = run_isolated(_errors)
    assert r["bad-value"][0] == (
        "fsconfig tmpfs size=bogus: Invalid argument (kernel: tmpfs: Bad value for 'size')")
    assert "Unknown parameter 'bogusflag'" in r["unknown"][0]
    assert r["no-fs"][0].startswith("fsopen no-such-fs: No such device")
    assert r["no-source"] == ("creating erofs from /nonexistent.img: No such file or directory",
                              ErrorKind.NOT_FOUND)
    assert "at most 255" in r["too-long"][0]
    assert r["too-long"][1] is ErrorKind.UNSUPPORTED
    assert r["not-mounted"][0].startswith("unmounting /proc/self: ")


def test_mount_id_of_missing_path(tmp_path: Path) -> None:
    with pytest.raises(StrataError) as exc:
        mountapi.mount_id(str(tmp_path / "missing"))
    assert exc.value.kind is ErrorKind.NOT_FOUND
    assert "missing" in str(exc.value)


def test_mount_id_matches_mountinfo() -> None:
    entries = mountinfo.read()
    proc = mountinfo.top_mount_at(entries, "/proc")
    assert proc is not None
    assert mountapi.mount_id("/proc") == proc.mount_id
    fd = os.open("/proc", os.O_PATH)
    try:
        assert mountapi.mount_id(fd) == proc.mount_id
    finally:
        os.close(fd)
