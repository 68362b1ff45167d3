"""Detached overlay mounts through every configuration path (lowerdir+, lowerdir, mount(2)),
escaping, fd layers, read-only and writable overlays. All mounting happens in run_isolated."""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from strata.errors import ErrorKind, StrataError
from strata.kernel import loop, mountapi, mountinfo
from strata.kernel.ns import run_isolated
from strata.kernel.overlay import Layer, OverlayMethod, make_overlay
from strata.run import run

pytestmark = pytest.mark.privileged

SOURCE = "strata-test"


def _layers(root: Path, names: list[str]) -> list[str]:
    """Layer dirs (given top -> bottom): each has its own file and a shared 'conflict'."""
    paths: list[str] = []
    for name in names:
        d = root / name
        d.mkdir(parents=True)
        (d / f"only-{len(paths)}").write_text(name)
        (d / "conflict").write_text(name)
        paths.append(str(d))
    return paths


def _mount_and_probe(lower: Sequence[Layer], target: str, **kw: Any) -> dict[str, object]:
    fd = make_overlay(lower, source=SOURCE, **kw)
    try:
        mountapi.attach(fd, target)
    finally:
        os.close(fd)
    entry = mountinfo.top_mount_at(mountinfo.read(), target)
    assert entry is not None
    try:
        Path(target, "new-file").write_text("x")
        write = 0
    except OSError as e:
        write = e.errno or 0
    return {
        "conflict": Path(target, "conflict").read_text(),
        "files": sorted(os.listdir(target)),
        "write": write,
        "fstype": entry.fstype,
        "source": entry.source,
        "mount_ro": entry.read_only,
        "super": entry.super_options,
    }


def _run(lower: Sequence[Layer], target: Path, **kw: Any) -> dict[str, object]:
    target.mkdir(exist_ok=True)
    return run_isolated(lambda: _mount_and_probe(lower, str(target), **kw))


METHODS = [None, OverlayMethod.LOWERDIR_PLUS, OverlayMethod.LOWERDIR, OverlayMethod.MOUNT]


@pytest.mark.parametrize("method", METHODS, ids=lambda m: "auto" if m is None else m.value)
def test_three_layers_top_wins_read_only(tmp_path: Path, method: OverlayMethod | None) -> None:
    lower = _layers(tmp_path, ["top", "middle", "bottom"])
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    r = _run(lower, tmp_path / "mnt", method=method, scratch_mountpoint=str(scratch))
    assert r["conflict"] == "top"
    assert r["files"] == ["conflict", "only-0", "only-1", "only-2"]
    assert r["write"] == errno.EROFS
    assert r["fstype"] == "overlay"
    assert r["source"] == SOURCE
    assert r["mount_ro"] is True
    sup = r["super"]
    assert isinstance(sup, tuple)
    assert "ro" in sup, "read_only makes the superblock read-only too"
    if method is OverlayMethod.LOWERDIR_PLUS:
        assert [o for o in sup if o.startswith("lowerdir+=")] == [f"lowerdir+={p}" for p in lower]
    elif method in (OverlayMethod.LOWERDIR, OverlayMethod.MOUNT):
        assert f"lowerdir={':'.join(lower)}" in sup


def test_lower_order_bottom_first_flips_winner(tmp_path: Path) -> None:
    lower = _layers(tmp_path, ["a", "b", "c"])
    r = _run(list(reversed(lower)), tmp_path / "mnt")
    assert r["conflict"] == "c"


def test_env_disabling_lowerdir_plus_uses_lowerdir_string(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(mountapi.DISABLE_ENV, "lowerdir+")
    lower = _layers(tmp_path, ["x", "y"])
    r = _run(lower, tmp_path / "mnt")
    sup = r["super"]
    assert isinstance(sup, tuple)
    assert not any(o.startswith("lowerdir+") for o in sup)
    assert f"lowerdir={lower[0]}:{lower[1]}" in sup
    assert r["conflict"] == "x"


def _long_layers(tmp_path: Path) -> list[str]:
    # 6 layers of ~80 bytes each: the joined lowerdir= (~500 bytes) exceeds fsconfig's 255
    deep = tmp_path / ("d" * 60)
    return _layers(deep, [f"layer{i}-" + "n" * 10 for i in range(6)])


def test_long_layer_list_falls_back_to_mount(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(mountapi.DISABLE_ENV, "lowerdir+")
    lower = _long_layers(tmp_path)
    assert len(":".join(lower)) > 255
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    r = _run(lower, tmp_path / "mnt", scratch_mountpoint=str(scratch))
    assert r["conflict"] == Path(lower[0]).name
    assert len(r["files"]) == 7  # type: ignore[arg-type]
    sup = r["super"]
    assert isinstance(sup, tuple)
    assert f"lowerdir={':'.join(lower)}" in sup

    def scratch_is_mounted(path: str) -> bool:
        return mountinfo.top_mount_at(mountinfo.read(), path) is not None

    def check(path: str) -> bool:
        fd = make_overlay(lower, source=SOURCE, scratch_mountpoint=path)
        os.close(fd)
        return scratch_is_mounted(path)

    assert run_isolated(check, str(scratch)) is False, "the scratch mount is cleaned up"


def test_long_layer_list_without_scratch_is_an_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(mountapi.DISABLE_ENV, "lowerdir+")
    with pytest.raises(StrataError) as exc:
        _run(_long_layers(tmp_path), tmp_path / "mnt")
    assert exc.value.kind is ErrorKind.USAGE
    assert "scratch" in str(exc.value)


def test_long_layer_list_with_lowerdir_plus(tmp_path: Path) -> None:
    if not mountapi.overlay_has_lowerdir_plus():
        pytest.skip("needs lowerdir+ (Linux >= 6.8)")
    lower = _long_layers(tmp_path)
    r = _run(lower, tmp_path / "mnt")  # no scratch needed
    assert r["conflict"] == Path(lower[0]).name


@pytest.mark.parametrize("method", METHODS, ids=lambda m: "auto" if m is None else m.value)
def test_special_characters_in_layer_paths(tmp_path: Path, method: OverlayMethod | None) -> None:
    lower = _layers(tmp_path, ["a,b", "c:d", "e\\f g"])
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    r = _run(lower, tmp_path / "mnt", method=method, scratch_mountpoint=str(scratch))
    assert r["conflict"] == "a,b"
    assert r["files"] == ["conflict", "only-0", "only-1", "only-2"]


@pytest.mark.parametrize("disable", ["", "overlay-fd-layers"], ids=["as-fd", "via-mount"])
def test_single_layer_longer_than_fsconfig_limit(tmp_path: Path, disable: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # lowerdir+ with one >255-byte path: passed as an fd where overlay accepts fds, else the
    # whole thing goes through mount(2)
    monkeypatch.setenv(mountapi.DISABLE_ENV, disable)
    base = tmp_path
    for _ in range(3):
        base = base / ("p" * 100)
    lower = _layers(base, ["top", "bottom"])
    assert len(lower[0]) > 255
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    r = _run(lower, tmp_path / "mnt", scratch_mountpoint=str(scratch))
    assert r["conflict"] == "top"
    sup = r["super"]
    assert isinstance(sup, tuple)
    via_fd = not disable and mountapi.overlay_has_fd_layers()
    assert any(o.startswith("lowerdir+=") for o in sup) is via_fd
    assert (f"lowerdir={':'.join(lower)}" in sup) is not via_fd


def _image(root: Path, name: str) -> str:
    src = root / f"src-{name}"
    src.mkdir()
    (src / "conflict").write_text(name)
    (src / f"only-{name}").write_text(name)
    img = root / f"{name}.erofs"
    run(["mkfs.erofs", "--quiet", str(img), str(src)])
    return str(img)


def _overlay_of_detached_images(images: list[str], target: str, scratch: str,
                                method: OverlayMethod | None) -> dict[str, object]:
    """Each image: loop + detached erofs mount fd; the overlay takes the fds as layers, so the
    images are never attached anywhere."""
    fds = []
    for img in images:
        with loop.attach(img) as dev:
            fds.append(mountapi.mount_fs(dev.path, "erofs", options=["ro"],
                                         attrs=mountapi.MOUNT_ATTR_RDONLY))
    try:
        return _mount_and_probe(fds, target, method=method, scratch_mountpoint=scratch)
    finally:
        for fd in fds:
            os.close(fd)


@pytest.mark.parametrize(
    ("disable", "method"),
    [
        ("", OverlayMethod.LOWERDIR_PLUS),  # fds straight to fsconfig (FSCONFIG_SET_FD)
        ("overlay-fd-layers", OverlayMethod.LOWERDIR_PLUS),  # "/proc/self/fd/N" strings
        ("lowerdir+", OverlayMethod.LOWERDIR),
        ("lowerdir+", OverlayMethod.MOUNT),
    ],
    ids=["fsconfig-fd", "lowerdir+-proc-path", "lowerdir-proc-path", "mount-proc-path"],
)
def test_detached_mounts_as_layers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   disable: str, method: OverlayMethod) -> None:
    monkeypatch.setenv(mountapi.DISABLE_ENV, disable)
    if method is OverlayMethod.LOWERDIR_PLUS and not mountapi.overlay_has_lowerdir_plus():
        pytest.skip("needs lowerdir+ (Linux >= 6.8)")
    if not disable and not mountapi.overlay_has_fd_layers():
        pytest.skip("overlay does not take O_PATH fds as layers on this kernel")
    images = [_image(tmp_path, n) for n in ("img-top", "img-bottom")]
    (tmp_path / "mnt").mkdir()
    (tmp_path / "scratch").mkdir()
    r = run_isolated(_overlay_of_detached_images, images, str(tmp_path / "mnt"),
                     str(tmp_path / "scratch"), method)
    assert r["conflict"] == "img-top"
    assert r["files"] == ["conflict", "only-img-bottom", "only-img-top"]
    assert r["write"] == errno.EROFS


def test_writable_overlay_with_upper(tmp_path: Path) -> None:
    lower = _layers(tmp_path, ["low"])
    upper, work = tmp_path / "up,per", tmp_path / "wo:rk"  # escaping applies to these too
    upper.mkdir()
    work.mkdir()
    r = _run(lower, tmp_path / "mnt", upper=str(upper), work=str(work), read_only=False,
             extra=["redirect_dir=on", "noatime", "metacopy=off"])
    assert r["write"] == 0
    assert (upper / "new-file").read_text() == "x", "writes land in the upper directory"
    assert r["mount_ro"] is False
    sup = r["super"]
    assert isinstance(sup, tuple)
    assert "redirect_dir=on" in sup


def test_noatime_becomes_a_mount_attribute(tmp_path: Path) -> None:
    lower = _layers(tmp_path, ["a", "b"])

    def work(target: str) -> tuple[str, ...]:
        fd = make_overlay(lower, source=SOURCE, extra=["noatime", "nodev"])
        mountapi.attach(fd, target)
        os.close(fd)
        entry = mountinfo.top_mount_at(mountinfo.read(), target)
        assert entry is not None
        return entry.mount_options

    (tmp_path / "mnt").mkdir()
    opts = run_isolated(work, str(tmp_path / "mnt"))
    assert "noatime" in opts
    assert "nodev" in opts
    assert "ro" in opts


def test_kernel_reason_in_error(tmp_path: Path) -> None:
    lower = _layers(tmp_path, ["a"])
    with pytest.raises(StrataError) as exc:
        _run(lower, tmp_path / "mnt", extra=["bogus_option=1"])
    assert "Unknown parameter 'bogus_option'" in str(exc.value)
    with pytest.raises(StrataError) as exc:
        _run([str(tmp_path / "missing"), *lower], tmp_path / "mnt")
    assert str(tmp_path / "missing") in str(exc.value)
    assert exc.value.kind is ErrorKind.NOT_FOUND


def test_usage_errors() -> None:
    with pytest.raises(StrataError) as exc:
        make_overlay([], source=SOURCE)
    assert exc.value.kind is ErrorKind.USAGE
    with pytest.raises(StrataError) as exc:
        make_overlay(["/a"], upper="/u", source=SOURCE)
    assert exc.value.kind is ErrorKind.USAGE
