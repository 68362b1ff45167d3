"""Staging plumbing: copying trees, merging layers, the content digest, removal; and the
package/arch helpers of sources.py."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from strata.build.sources import apt_names, arch_fits
from strata.build.spec import AptSource
from strata.build.tree import (
    copy_tree,
    finish_tree,
    merge_into,
    owner_writable,
    remove_tree,
)
from strata.errors import ErrorKind, StrataError
from tests.helpers import write_tree


def test_copy_tree_keeps_modes_links_and_hardlinks(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_tree(src, {"usr/bin/su": "su", "usr/bin/link": "->su", "usr/lib/a": "a",
                     "opt/x": 0o750})
    os.chmod(src / "usr/bin/su", 0o4755)
    os.link(src / "usr/lib/a", src / "usr/lib/b")
    os.mkfifo(src / "usr/bin/fifo")
    specials: list[tuple[str, str]] = []
    dst = tmp_path / "dst"
    dst.mkdir()
    n = copy_tree(src, dst, lambda p, k: specials.append((p, k)))
    assert specials == [("usr/bin/fifo", "fifo")]
    assert n == 9  # usr, usr/bin, su, link, usr/lib, a, b, opt, opt/x; not the fifo
    assert stat.S_IMODE(os.lstat(dst / "usr/bin/su").st_mode) == 0o4755
    assert os.readlink(dst / "usr/bin/link") == "su"
    assert os.stat(dst / "usr/lib/a").st_ino == os.stat(dst / "usr/lib/b").st_ino
    assert os.stat(dst / "usr/lib/a").st_ino != os.stat(src / "usr/lib/a").st_ino
    assert stat.S_IMODE(os.stat(dst / "opt/x").st_mode) == 0o750


def test_merge_into_later_sources_win(tmp_path: Path) -> None:
    stage, layer = tmp_path / "stage", tmp_path / "layer"
    write_tree(stage, {"usr/bin/a": "old", "usr/bin/same": "s", "usr/share/x": "x"})
    write_tree(layer, {"usr/bin/a": "new", "usr/bin/same": "s", "usr/lib/new/f": "f"})
    replaced: list[str] = []
    merge_into(layer, stage, "layer", replaced.append)
    assert replaced == ["usr/bin/a"]
    assert (stage / "usr/bin/a").read_text() == "new"
    assert (stage / "usr/lib/new/f").read_text() == "f"
    assert (stage / "usr/share/x").read_text() == "x"


def test_merge_into_refuses_file_against_directory(tmp_path: Path) -> None:
    stage, layer = tmp_path / "stage", tmp_path / "layer"
    write_tree(stage, {"usr/lib/foo": "a file"})
    write_tree(layer, {"usr/lib/foo/bar": "x"})
    with pytest.raises(StrataError) as e:
        merge_into(layer, stage, "pkg.deb", lambda r: None)
    assert e.value.kind is ErrorKind.INVALID
    assert e.value.message == ("pkg.deb: usr/lib/foo is a directory, unlike what an earlier "
                               "source put there")


def _make(base: Path, order: list[str], mtime: float) -> Path:
    for rel in order:
        p = base / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith("/link"):
            os.symlink("target", p)
        else:
            p.write_text(rel)
            os.utime(p, (mtime, mtime))
    return base


def test_digest_ignores_creation_order_and_times(tmp_path: Path) -> None:
    names = ["usr/bin/a", "usr/bin/b", "usr/lib/x/link", "opt/z"]
    a = _make(tmp_path / "a", names, time.time())
    b = _make(tmp_path / "b", list(reversed(names)), 12345.0)
    ia, ib = finish_tree(a, 0), finish_tree(b, 0)
    assert ia == ib
    assert (ia.files, ia.directories, ia.symlinks) == (3, 5, 1)
    assert ia.size == len("usr/bin/a") + len("usr/bin/b") + len("opt/z")
    # every time is clamped to the epoch
    for d, _dirs, files in os.walk(a):
        for n in files:
            assert os.lstat(os.path.join(d, n)).st_mtime == 0


def test_digest_clamps_only_newer_times(tmp_path: Path) -> None:
    t = _make(tmp_path / "t", ["old", "new"], 100.0)
    os.utime(t / "new", (5000, 5000))
    finish_tree(t, 1000)
    assert os.lstat(t / "old").st_mtime == 100
    assert os.lstat(t / "new").st_mtime == 1000


@pytest.mark.parametrize("change", ["content", "mode", "name", "link", "hardlink"])
def test_digest_sees_every_change(tmp_path: Path, change: str) -> None:
    def build(base: Path, changed: bool) -> str:
        write_tree(base, {"usr/bin/a": "a", "usr/bin/l": "->a", "usr/lib/x": "x",
                          "usr/lib/y": "x"})
        if changed:
            if change == "content":
                (base / "usr/bin/a").write_text("b")
            elif change == "mode":
                os.chmod(base / "usr/bin/a", 0o4755)
            elif change == "name":
                os.rename(base / "usr/lib/x", base / "usr/lib/x2")
            elif change == "link":
                os.unlink(base / "usr/bin/l")
                os.symlink("./a", base / "usr/bin/l")
            else:
                os.unlink(base / "usr/lib/y")
                os.link(base / "usr/lib/x", base / "usr/lib/y")
        return finish_tree(base, 0).digest

    assert build(tmp_path / "a", False) != build(tmp_path / "b", True)


def test_remove_tree_through_readonly_directories(tmp_path: Path) -> None:
    t = tmp_path / "t"
    write_tree(t, {"a/b/c": "c", "a/d": "d"})
    os.chmod(t / "a/b", 0o555)
    os.chmod(t / "a", 0o500)
    remove_tree(t)
    assert not t.exists()
    remove_tree(t)  # missing: nothing to do


def test_owner_writable_reports_original_modes(tmp_path: Path) -> None:
    t = tmp_path / "t"
    write_tree(t, {"usr/lib/a/x": "x", "usr/share": 0o755})
    os.chmod(t / "usr/lib/a", 0o555)
    assert owner_writable(t) == {"usr/lib/a": 0o555}
    assert stat.S_IMODE(os.stat(t / "usr/lib/a").st_mode) == 0o755


@pytest.mark.parametrize(("kind", "pkg", "arch", "fits"), [
    ("deb", "amd64", "x86-64", True),
    ("deb", "all", "arm64", True),
    ("deb", "arm64", "x86-64", False),
    ("deb", "armhf", "arm", True),
    ("rpm", "x86_64", "x86-64", True),
    ("rpm", "noarch", "x86-64", True),
    ("rpm", "aarch64", "x86-64", False),
    ("rpm", "i686", "x86", True),
    ("deb", "amd64", "tilegx", None),
])
def test_arch_fits(kind: str, pkg: str, arch: str, fits: bool | None) -> None:
    assert arch_fits(kind, pkg, arch) is fits


def test_apt_names() -> None:
    srcs = [AptSource(name="jq"), AptSource(name="zsh", version="5.9-4")]
    assert apt_names(srcs, "x86-64", "x86-64") == ["jq", "zsh=5.9-4"]
    assert apt_names(srcs, "_any", "x86-64") == ["jq", "zsh=5.9-4"]
    assert apt_names(srcs, "arm64", "x86-64") == ["jq:arm64", "zsh:arm64=5.9-4"]
    with pytest.raises(StrataError, match="no Debian architecture is known for tilegx"):
        apt_names(srcs, "tilegx", "x86-64")
