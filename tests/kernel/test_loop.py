"""Loop devices: LOOP_CONFIGURE and the legacy ioctls, offsets, autoclear, device nodes.

Every test attaches and mounts inside a private mount namespace (run_isolated)."""

from __future__ import annotations

import errno
import os
import stat
import time
from pathlib import Path

import pytest

from strata.errors import ErrorKind, StrataError
from strata.kernel import libc, loop, mountapi
from strata.kernel.ns import run_isolated
from strata.run import run

pytestmark = pytest.mark.privileged

MiB = 1024 * 1024


def _tree(root: Path, name: str) -> Path:
    src = root / f"src-{name}"
    (src / "usr/lib").mkdir(parents=True)
    (src / "usr/lib/hello").write_text(f"hello from {name}\n")
    return src


def make_erofs(root: Path, name: str = "erofs") -> Path:
    img = root / f"{name}.erofs"
    run(["mkfs.erofs", "--quiet", str(img), str(_tree(root, name))])
    return img


def make_squashfs(root: Path, name: str = "squashfs") -> Path:
    img = root / f"{name}.squashfs"
    run(["mksquashfs", str(_tree(root, name)), str(img), "-noappend", "-quiet", "-no-progress"])
    return img


def _wait_unbound(number: int, timeout: float = 5.0) -> bool:
    """Autoclear runs when the last reference goes; give deferred superblock teardown time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if loop.backing_file(number) is None:
            return True
        time.sleep(0.01)
    return False


def _mount_read(img: str, fstype: str, target: str, offset: int = 0, size: int = 0
                ) -> dict[str, object]:
    """Attach read-only+autoclear, mount detached, close our loop fd, attach, read, unmount."""
    dev = loop.attach(img, offset=offset, size=size)
    with dev:
        ro = Path(f"/sys/block/loop{dev.number}/ro").read_text().strip()
        sectors = int(Path(f"/sys/block/loop{dev.number}/size").read_text())
        backing = loop.backing_file(dev.number)
        fd = mountapi.mount_fs(dev.path, fstype, options=["ro"],
                               attrs=mountapi.MOUNT_ATTR_RDONLY | mountapi.MOUNT_ATTR_NODEV)
    # our fd is closed: only the detached mount keeps the device now
    still_bound = loop.backing_file(dev.number) is not None
    try:
        mountapi.attach(fd, target)
    finally:
        os.close(fd)
    text = Path(target, "usr/lib/hello").read_text()
    mountapi.unmount(target)
    return {"text": text, "ro": ro, "sectors": sectors, "backing": backing,
            "bound_after_close": still_bound, "freed": _wait_unbound(dev.number),
            "closed": dev.closed}


@pytest.mark.parametrize(("maker", "fstype"), [(make_erofs, "erofs"),
                                                (make_squashfs, "squashfs")])
@pytest.mark.parametrize("legacy", [False, True], ids=["configure", "legacy"])
def test_attach_mount_read_autoclear(tmp_path: Path, maker: object, fstype: str, legacy: bool,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    if legacy:  # LOOP_SET_FD + LOOP_SET_STATUS64, as on kernels before 5.8
        monkeypatch.setenv(mountapi.DISABLE_ENV, "loop-configure")
    assert callable(maker)
    img = maker(tmp_path)
    target = tmp_path / "mnt"
    target.mkdir()
    r = run_isolated(_mount_read, str(img), fstype, str(target))
    assert r["text"] == f"hello from {fstype}\n"
    assert r["ro"] == "1"
    assert r["backing"] == str(img)
    assert r["bound_after_close"] is True, "the detached mount must hold the device"
    assert r["freed"] is True, "autoclear must free the device after unmount"
    assert r["closed"] is True


@pytest.mark.parametrize("legacy", [False, True], ids=["configure", "legacy"])
def test_offset_and_size(tmp_path: Path, legacy: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if legacy:
        monkeypatch.setenv(mountapi.DISABLE_ENV, "loop-configure")
    img = make_erofs(tmp_path)
    data = img.read_bytes()
    big = tmp_path / "disk.img"
    # image 1 MiB in, followed by junk that must not be part of the device
    big.write_bytes(b"\0" * MiB + data + b"\xff" * MiB)
    target = tmp_path / "mnt"
    target.mkdir()
    r = run_isolated(_mount_read, str(big), "erofs", str(target), MiB, len(data))
    assert r["text"] == "hello from erofs\n"
    assert r["sectors"] == len(data) // 512
    assert r["freed"] is True


def test_without_offset_the_filesystem_is_not_found(tmp_path: Path) -> None:
    img = make_erofs(tmp_path)
    big = tmp_path / "disk.img"
    big.write_bytes(b"\0" * MiB + img.read_bytes())
    target = tmp_path / "mnt"
    target.mkdir()
    with pytest.raises(StrataError) as exc:
        run_isolated(_mount_read, str(big), "erofs", str(target))
    assert "creating erofs from /dev/loop" in str(exc.value)


def _close_before_mount(img: str) -> tuple[bool, str | None]:
    dev = loop.attach(img)
    n = dev.number
    dev.close()  # the autoclear trap: no mount holds the device yet
    return _wait_unbound(n), loop.backing_file(n)


def test_autoclear_trap_closing_early_frees_device(tmp_path: Path) -> None:
    freed, backing = run_isolated(_close_before_mount, str(make_erofs(tmp_path)))
    assert freed is True
    assert backing is None


def _no_autoclear(img: str) -> tuple[str | None, bool, str]:
    dev = loop.attach(img, autoclear=False, read_only=False)
    try:
        ro = Path(f"/sys/block/loop{dev.number}/ro").read_text().strip()
        dev.close()
        time.sleep(0.05)
        kept = loop.backing_file(dev.number)
    finally:
        with open(dev.path, "rb") as f:  # reopen to unbind it: nothing else would
            again = loop.LoopDevice(dev.number, dev.path, os.dup(f.fileno()))
        with again:
            again.clear()
    return kept, _wait_unbound(dev.number), ro


def test_without_autoclear_device_stays_until_cleared(tmp_path: Path) -> None:
    kept, freed, ro = run_isolated(_no_autoclear, str(make_erofs(tmp_path)))
    assert kept is not None
    assert kept.endswith(".erofs")
    assert freed is True
    assert ro == "0"


def _in_minimal_dev(img: str, target: str) -> tuple[bool, bool, str]:
    # A /dev without devtmpfs: only loop-control exists, /dev/loopN must be created by us.
    ctl = os.stat("/dev/loop-control")
    libc.mount("tmpfs", "/dev", "tmpfs", 0, "mode=0755")
    os.mknod("/dev/loop-control", 0o600 | stat.S_IFCHR, ctl.st_rdev)
    with loop.attach(img) as dev:
        created = stat.S_ISBLK(os.stat(dev.path).st_mode)
        only_ours = sorted(os.listdir("/dev")) == sorted(["loop-control", f"loop{dev.number}"])
        fd = mountapi.mount_fs(dev.path, "erofs", options=["ro"])
    mountapi.attach(fd, target)
    os.close(fd)
    return created, only_ours, Path(target, "usr/lib/hello").read_text()


def test_creates_missing_device_node(tmp_path: Path) -> None:
    target = tmp_path / "mnt"
    target.mkdir()
    created, only_ours, text = run_isolated(_in_minimal_dev, str(make_erofs(tmp_path)),
                                            str(target))
    assert created
    assert only_ours
    assert text == "hello from erofs\n"


def test_missing_backing_file(tmp_path: Path) -> None:
    with pytest.raises(StrataError) as exc:
        loop.attach(str(tmp_path / "nope.raw"))
    assert exc.value.kind is ErrorKind.NOT_FOUND
    assert str(tmp_path / "nope.raw") in str(exc.value)


def test_negative_offset_is_usage_error(tmp_path: Path) -> None:
    with pytest.raises(StrataError) as exc:
        loop.attach(str(tmp_path), offset=-1)
    assert exc.value.kind is ErrorKind.USAGE


def test_backing_file_of_unbound_device() -> None:
    assert loop.backing_file(2**20 - 1) is None


def test_struct_sizes() -> None:
    info = loop.pack_info64(offset=MiB, size=4096, flags=loop.LO_FLAGS_AUTOCLEAR,
                            file_name="/x" * 100)
    assert len(info) == 232  # sizeof(struct loop_info64)
    assert len(loop.pack_config(fd=3, block_size=0, info=info)) == 304  # struct loop_config
    assert info[24:32] == MiB.to_bytes(8, "little")
    assert info[56 : 56 + 64].rstrip(b"\0") == b"/x" * 31 + b"/"  # truncated, NUL-terminated


def test_read_only_device_rejects_writes(tmp_path: Path) -> None:
    def work(img: str) -> int:
        with loop.attach(img) as dev:
            try:
                fd = os.open(dev.path, os.O_WRONLY)
            except OSError as e:
                return e.errno or 0
            try:
                os.write(fd, b"x" * 512)
            except OSError as e:
                return e.errno or 0
            finally:
                os.close(fd)
        return 0

    assert run_isolated(work, str(make_erofs(tmp_path))) in (errno.EROFS, errno.EACCES,
                                                               errno.EPERM)


def _dio_block_size(img: str) -> tuple[str, str]:
    with loop.attach(img, direct_io=True, block_size=4096) as dev:
        base = Path(f"/sys/block/loop{dev.number}")
        return ((base / "loop/dio").read_text().strip(),
                (base / "queue/logical_block_size").read_text().strip())


@pytest.mark.parametrize("legacy", [False, True], ids=["configure", "legacy"])
def test_direct_io_and_block_size(tmp_path: Path, legacy: bool,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    if legacy:
        monkeypatch.setenv(mountapi.DISABLE_ENV, "loop-configure")
    dio, bs = run_isolated(_dio_block_size, str(make_erofs(tmp_path)))
    assert bs == "4096"
    assert dio == "1"
