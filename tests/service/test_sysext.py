"""io.systemd.sysext over the socket, backed by the real engine on a scratch root."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest

from strata.discover import Extension as Image
from strata.errors import ErrorKind, StrataError
from strata.model import ExtClass, ImageType
from strata.service import sysext
from tests.helpers import install_ext, isolated, make_root, mounts_under
from tests.service.fake_manage import FakeManage
from tests.service.harness import Raw, ServerThread

IFACE = "io.systemd.sysext"


def list_images(path: Path, **params: Any) -> list[dict[str, Any]]:
    with Raw(path) as r:
        r.call(f"{IFACE}.List", params, more=True)
        return list(r.replies())


def call(path: Path, method: str, **params: Any) -> dict[str, Any]:
    with Raw(path, timeout=120) as r:
        r.call(f"{IFACE}.{method}", params)
        return r.reply()


def test_list_streams_images(tmp_path: Path, sock_dir: Path) -> None:
    root = make_root(tmp_path)
    install_ext(root, "foo", {"usr/bin/foo": "foo\n"})
    install_ext(root, "bar", {"usr/bin/bar": "bar\n"}, fmt="erofs")
    install_ext(root, "conf", {"etc/conf.d/x": "x\n"}, where="var/lib/confexts",
                confext=True)
    with ServerThread(sock_dir / "s.sock", FakeManage(), root=str(root)) as srv:
        replies = list_images(srv.path)
        confexts = list_images(srv.path, **{"class": "confext"})
        explicit = list_images(srv.path, **{"class": "sysext"})
    assert [r.get("continues") for r in replies] == [True, None]
    bar, foo = (r["parameters"] for r in replies)
    assert foo == {"Class": "sysext", "Type": "directory", "Name": "foo",
                   "Path": f"{root}/var/lib/extensions/foo", "ReadOnly": False,
                   **({"CreationTimestamp": foo["CreationTimestamp"]}
                      if "CreationTimestamp" in foo else {})}
    size = os.stat(root / "var/lib/extensions/bar.raw").st_size
    assert bar["Type"] == "raw" and bar["Name"] == "bar"
    assert bar["Limit"] == bar["LimitExclusive"] == size
    assert bar["Usage"] == bar["UsageExclusive"] > 0
    assert bar["ModificationTimestamp"] == \
        os.stat(root / "var/lib/extensions/bar.raw").st_mtime_ns // 1000
    assert [r["parameters"]["Name"] for r in confexts] == ["conf"]
    assert confexts[0]["parameters"]["Class"] == "confext"
    assert explicit == replies


def test_list_without_images(tmp_path: Path, sock_dir: Path) -> None:
    root = make_root(tmp_path)
    with ServerThread(sock_dir / "s.sock", FakeManage(), root=str(root)) as srv:
        assert list_images(srv.path) == [{"error": f"{IFACE}.NoImagesFound",
                                          "parameters": {}}]
        assert list_images(srv.path, **{"class": None}) == \
            [{"error": f"{IFACE}.NoImagesFound", "parameters": {}}]


@pytest.mark.privileged
@isolated
def test_merge_unmerge_refresh(tmp_path: Path, sock_dir: Path) -> None:
    root = make_root(tmp_path)
    install_ext(root, "foo", {"usr/bin/foo": "foo\n"}, fmt="erofs")
    install_ext(root, "conf", {"etc/foo.conf": "conf\n"}, where="var/lib/confexts",
                confext=True)
    with ServerThread(sock_dir / "s.sock", FakeManage(), root=str(root)) as srv:
        assert call(srv.path, "Merge") == {"parameters": {}}
        assert (root / "usr/bin/foo").read_text() == "foo\n"
        assert not (root / "etc/foo.conf").exists()
        assert call(srv.path, "Merge", force=False, noReload=True) == {
            "error": f"{IFACE}.AlreadyMerged", "parameters": {"hierarchy": "/usr"}}
        assert call(srv.path, "Merge", **{"class": "confext"}) == {"parameters": {}}
        assert (root / "etc/foo.conf").read_text() == "conf\n"

        install_ext(root, "two", {"usr/bin/two": "two\n"})
        assert call(srv.path, "Refresh", noexec=True) == {"parameters": {}}
        assert (root / "usr/bin/two").exists()
        assert call(srv.path, "Unmerge") == {"parameters": {}}
        assert not (root / "usr/bin/foo").exists()
        assert (root / "etc/foo.conf").exists()  # the confext is still merged
        assert call(srv.path, "Unmerge", **{"class": "confext"}) == {"parameters": {}}
    assert mounts_under(root) == []


# --- pure parts ------------------------------------------------------------------------------


@pytest.mark.parametrize(("exc", "expect"), [
    (StrataError("Hierarchy '/usr' is already merged.", kind=ErrorKind.BUSY, subject="/usr"),
     ("io.systemd.sysext.AlreadyMerged", {"hierarchy": "/usr"})),
    (StrataError("locked", kind=ErrorKind.BUSY, errno=errno.EBUSY),
     ("io.systemd.System", {"errno": errno.EBUSY})),
    (StrataError("Need to be privileged.", kind=ErrorKind.PERMISSION, errno=errno.EPERM),
     ("io.systemd.System", {"errno": errno.EPERM})),
    (StrataError("bad env", kind=ErrorKind.USAGE), ("io.systemd.System",
                                                     {"errno": errno.EINVAL})),
    (StrataError("no loop", kind=ErrorKind.UNSUPPORTED),
     ("io.systemd.System", {"errno": errno.EOPNOTSUPP})),
    (StrataError("mount", kind=ErrorKind.SYSTEM), ("io.systemd.System", {"errno": errno.EIO})),
    (OSError(errno.ENOSPC, "full"), ("io.systemd.System", {"errno": errno.ENOSPC})),
    (RuntimeError("bug"), ("io.systemd.System", {"errno": errno.EIO})),
])
def test_to_error(exc: BaseException, expect: tuple[str, dict[str, Any]]) -> None:
    err = sysext.to_error(exc)
    assert (err.name, err.paramstojson()) == expect


def test_list_entry_block_device() -> None:
    img = Image(name="dev", path="/dev/sdz", type=ImageType.BLOCK, ext_class=ExtClass.CONFEXT,
                read_only=True, mtime_us=0, crtime_us=0, search_dir="/run/confexts",
                usage_bytes=4096, limit_bytes=4096)
    assert sysext.list_entry(img) == {
        "Class": sysext.ImageClass.confext, "Type": sysext.ImageType.block, "Name": "dev",
        "Path": "/dev/sdz", "ReadOnly": True, "Usage": 4096, "UsageExclusive": 4096,
        "Limit": 4096, "LimitExclusive": 4096}
