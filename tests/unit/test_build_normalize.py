"""Normalisation: the pure decisions as tables, then normalize_tree on real staging trees."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from strata.build.normalize import (
    Dropped,
    Route,
    Rules,
    Target,
    merged_bin_for,
    normalize_tree,
    relocate,
    retarget,
    route,
)
from strata.build.spec import ClassChoice, EtcMode, MergedBin
from strata.errors import ErrorKind, StrataError
from strata.images.base import FileKind
from tests.helpers import write_tree

F, D, L, X = FileKind.REGULAR, FileKind.DIRECTORY, FileKind.SYMLINK, FileKind.OTHER


@pytest.mark.parametrize(("setting", "os_id", "merged"), [
    (MergedBin.AUTO, "_any", True),
    (MergedBin.AUTO, "fedora", True),
    (MergedBin.AUTO, "arch", True),
    (MergedBin.AUTO, "debian", False),
    (MergedBin.AUTO, "ubuntu", False),
    (MergedBin.YES, "debian", True),
    (MergedBin.NO, "_any", False),
])
def test_merged_bin_for(setting: MergedBin, os_id: str, merged: bool) -> None:
    assert merged_bin_for(setting, os_id) is merged


@pytest.mark.parametrize(("path", "merged", "new"), [
    ("bin/zsh", False, "usr/bin/zsh"),
    ("sbin/fsck.x", False, "usr/sbin/fsck.x"),
    ("sbin/fsck.x", True, "usr/bin/fsck.x"),
    ("lib/modules/6.1/x.ko", True, "usr/lib/modules/6.1/x.ko"),
    ("lib64/ld-linux-x86-64.so.2", True, "usr/lib64/ld-linux-x86-64.so.2"),
    ("usr/sbin/tool", True, "usr/bin/tool"),
    ("usr/sbin/tool", False, "usr/sbin/tool"),
    ("usr/sbin", True, "usr/bin"),
    ("usr/sbinx/tool", True, "usr/sbinx/tool"),
    ("usr/local/sbin/x", True, "usr/local/sbin/x"),
    ("binary/x", True, "binary/x"),
    ("opt/x/sbin/y", True, "opt/x/sbin/y"),
    ("etc/x", True, "etc/x"),
])
def test_relocate(path: str, merged: bool, new: str) -> None:
    assert relocate(path, merged_bin=merged) == new


SYS = Rules(name="app", cls=ClassChoice.SYSEXT, etc=EtcMode.TMPFILES, merged_bin=True)
SPLIT = Rules(name="app", cls=ClassChoice.SYSEXT, etc=EtcMode.TMPFILES, merged_bin=False)
BOTH = Rules(name="app", cls=ClassChoice.BOTH, etc=EtcMode.CONFEXT, merged_bin=True)
CONF = Rules(name="app", cls=ClassChoice.CONFEXT, etc=EtcMode.CONFEXT, merged_bin=True)
DROPETC = Rules(name="app", cls=ClassChoice.SYSEXT, etc=EtcMode.DROP, merged_bin=True)
EXCL = Rules(name="app", cls=ClassChoice.SYSEXT, etc=EtcMode.TMPFILES, merged_bin=True,
             exclude=("usr/share/doc", "usr/share/man/*", "*.a"))

ROUTES: list[tuple[str, FileKind, Rules, Target, str]] = [
    ("usr/bin/jq", F, SYS, Target.SYSEXT, "usr/bin/jq"),
    ("bin/zsh", F, SYS, Target.SYSEXT, "usr/bin/zsh"),
    ("sbin/tool", F, SPLIT, Target.SYSEXT, "usr/sbin/tool"),
    ("sbin/tool", F, SYS, Target.SYSEXT, "usr/bin/tool"),
    ("opt/app/data", F, SYS, Target.SYSEXT, "opt/app/data"),
    ("bin", L, SYS, Target.DROP, ""),  # merged-usr compatibility link
    ("lib64", L, SYS, Target.DROP, ""),
    ("bin", D, SYS, Target.SYSEXT, "usr/bin"),
    ("var/lib/app/state", F, SYS, Target.DROP, ""),
    ("srv", D, SYS, Target.DROP, ""),
    ("dev/null", X, SYS, Target.DROP, ""),
    ("usr/bin/fifo", X, SYS, Target.DROP, ""),
    ("usr/lib/os-release", F, SYS, Target.DROP, ""),
    ("etc/os-release", F, BOTH, Target.DROP, ""),
    ("usr/lib/extension-release.d/extension-release.app", F, SYS, Target.DROP, ""),
    ("etc/extension-release.d/extension-release.app", F, BOTH, Target.DROP, ""),
    ("usr/lib", L, SYS, Target.DROP, ""),  # would replace the host's directory
    ("usr/sbin", L, SPLIT, Target.DROP, ""),
    ("usr/lib/x86_64-linux-gnu", L, SYS, Target.DROP, ""),
    ("usr/lib/x86_64-linux-gnu/libx.so", L, SYS, Target.SYSEXT,
     "usr/lib/x86_64-linux-gnu/libx.so"),
    ("etc/app.conf", F, SYS, Target.SYSEXT, "usr/share/app/etc/app.conf"),
    ("etc", D, SYS, Target.SYSEXT, "usr/share/app/etc"),
    ("etc/systemd/system/app.service", F, SYS, Target.DROP, ""),
    ("etc/app.conf", F, BOTH, Target.CONFEXT, "etc/app.conf"),
    ("etc/systemd/system/app.service", F, BOTH, Target.CONFEXT,
     "etc/systemd/system/app.service"),
    ("usr/bin/app", F, BOTH, Target.SYSEXT, "usr/bin/app"),
    ("etc/app.conf", F, CONF, Target.CONFEXT, "etc/app.conf"),
    ("usr/bin/app", F, CONF, Target.ERROR, ""),
    ("etc/app.conf", F, DROPETC, Target.DROP, ""),
    ("usr/share/doc", D, EXCL, Target.DROP, ""),
    ("usr/share/doc/app/README", F, EXCL, Target.SYSEXT, "usr/share/doc/app/README"),
    ("usr/share/man", D, EXCL, Target.SYSEXT, "usr/share/man"),
    ("usr/share/man/man1", D, EXCL, Target.DROP, ""),
    ("lib/libx.a", F, EXCL, Target.DROP, ""),  # patterns match the final path
]


@pytest.mark.parametrize(("path", "kind", "rules", "target", "new"), ROUTES)
def test_route(path: str, kind: FileKind, rules: Rules, target: Target, new: str) -> None:
    r = route(path, kind, rules)
    assert r.target is target, r
    if target is Target.SYSEXT or target is Target.CONFEXT:
        assert r.path == new
    else:
        assert r.reason


def test_route_reasons_are_quiet_only_for_expected_drops() -> None:
    assert route("bin", L, SYS).quiet
    assert route("usr/share/doc", D, EXCL).quiet
    assert not route("var/x", F, SYS).quiet
    assert not route("usr/lib/os-release", F, SYS).quiet
    assert route("usr/bin/app", F, CONF) == Route(
        Target.ERROR, reason="a confext carries only /etc (use class: both for a sysext "
                             "beside it)")


RETARGET: list[tuple[str, str, str, bool, str | None]] = [
    # untouched links keep their spelling
    ("usr/bin/rzsh", "usr/bin/rzsh", "zsh", True, "zsh"),
    ("usr/lib/libx.so", "usr/lib/libx.so", "./libx.so.1", True, "./libx.so.1"),
    # a moved link with a target in the same directory
    ("bin/rzsh", "usr/bin/rzsh", "zsh", True, "zsh"),
    # a moved link whose relative target climbs out of the moved tree
    ("lib/x/libfoo.so", "usr/lib/x/libfoo.so", "../../usr/lib/x/libfoo.so.1", False,
     "libfoo.so.1"),
    ("sbin/t", "usr/bin/t", "../usr/lib/t/t", True, "../lib/t/t"),
    # a link not moved, pointing into a moved tree
    ("usr/bin/x", "usr/bin/x", "../../sbin/x2", True, "x2"),
    ("usr/bin/x", "usr/bin/x", "../../sbin/x2", False, "../sbin/x2"),
    # absolute targets stay absolute, rewritten only when their target moved
    ("usr/bin/sh2", "usr/bin/sh2", "/bin/dash", True, "/usr/bin/dash"),
    ("usr/bin/sh2", "usr/bin/sh2", "/usr/bin/dash", True, "/usr/bin/dash"),
    ("usr/bin/u", "usr/bin/u", "/usr/sbin/u2", True, "/usr/bin/u2"),
    # compatibility links that would point at themselves
    ("bin/zsh", "usr/bin/zsh", "/usr/bin/zsh", True, None),
    ("usr/sbin/zsh", "usr/bin/zsh", "../bin/zsh", True, None),
    ("sbin/ldconfig", "usr/bin/ldconfig", "../usr/sbin/ldconfig", True, None),
]


@pytest.mark.parametrize(("old", "new", "target", "merged", "want"), RETARGET)
def test_retarget(old: str, new: str, target: str, merged: bool, want: str | None) -> None:
    assert retarget(old, new, target, merged_bin=merged) == want


# --------------------------------------------------------------------------- on disk

def _run(tmp_path: Path, files: dict[str, str | bytes | int], rules: Rules = SYS,
         modes: dict[str, int] | None = None) -> tuple[dict[Target, Path], list[Dropped]]:
    raw = tmp_path / "raw"
    raw.mkdir(parents=True)
    write_tree(raw, files)
    for p, m in (modes or {}).items():
        os.chmod(raw / p, m)
    trees = {Target.SYSEXT: tmp_path / "sysext"}  # (parents made by raw.mkdir)
    if rules.cls is not ClassChoice.SYSEXT:
        trees[Target.CONFEXT] = tmp_path / "confext"
    if rules.cls is ClassChoice.CONFEXT:
        del trees[Target.SYSEXT]
    for t in trees.values():
        t.mkdir()
    dropped: list[Dropped] = []
    normalize_tree(raw, trees, rules, dropped.append)
    return trees, dropped


def _listing(tree: Path) -> dict[str, str]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(tree):
        for n in (*dirnames, *filenames):
            p = Path(dirpath, n)
            rel = p.relative_to(tree).as_posix()
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = "-> " + os.readlink(p)
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = f"d{stat.S_IMODE(st.st_mode):o}"
            else:
                out[rel] = f"{stat.S_IMODE(st.st_mode):o} {p.read_text()}"
    return out


def test_debian_package_layout(tmp_path: Path) -> None:
    trees, dropped = _run(tmp_path, {
        "bin/zsh": "zsh", "bin/rzsh": "->zsh", "usr/bin/jq": "jq",
        "sbin/helper": "helper", "usr/sbin/helper2": "->../../sbin/helper",
        "lib/x86_64-linux-gnu/libfoo.so.1": "lib",
        "usr/lib/x86_64-linux-gnu/libfoo.so": "->../../../lib/x86_64-linux-gnu/libfoo.so.1",
        "etc/app/app.conf": "conf", "etc/systemd/system/app.service": "unit",
        "var/lib/app/state": "state",
    }, modes={"bin/zsh": 0o4755})
    assert _listing(trees[Target.SYSEXT]) == {
        "usr": "d755", "usr/bin": "d755",
        "usr/bin/zsh": "4755 zsh", "usr/bin/rzsh": "-> zsh", "usr/bin/jq": "644 jq",
        "usr/bin/helper": "644 helper", "usr/bin/helper2": "-> helper",
        "usr/lib": "d755", "usr/lib/x86_64-linux-gnu": "d755",
        "usr/lib/x86_64-linux-gnu/libfoo.so.1": "644 lib",
        "usr/lib/x86_64-linux-gnu/libfoo.so": "-> libfoo.so.1",
        "usr/share": "d755", "usr/share/app": "d755", "usr/share/app/etc": "d755",
        "usr/share/app/etc/app": "d755", "usr/share/app/etc/app/app.conf": "644 conf",
    }
    loud = {(d.path, d.count) for d in dropped if not d.quiet}
    assert loud == {("etc/systemd", 3), ("var", 4)}


def test_directory_modes_first_one_wins(tmp_path: Path) -> None:
    trees, _ = _run(tmp_path, {"bin/a": "a", "usr/bin/b": "b", "usr/share/x/y": "y"},
                    modes={"bin": 0o750, "usr/share/x": 0o555})
    lst = _listing(trees[Target.SYSEXT])
    assert lst["usr/bin"] == "d750"  # "bin" sorts before "usr"
    assert lst["usr/share/x"] == "d555"
    assert lst["usr"] == "d755"  # created as a parent only
    assert stat.S_IMODE(os.stat(trees[Target.SYSEXT]).st_mode) == 0o755


def test_class_both_splits_etc(tmp_path: Path) -> None:
    trees, _ = _run(tmp_path, {"usr/bin/app": "app", "etc/app.conf": "c",
                               "etc/systemd/system/app.service": "u"}, BOTH)
    assert set(_listing(trees[Target.SYSEXT])) == {"usr", "usr/bin", "usr/bin/app"}
    assert set(_listing(trees[Target.CONFEXT])) == {
        "etc", "etc/app.conf", "etc/systemd", "etc/systemd/system",
        "etc/systemd/system/app.service"}


def test_confext_refuses_usr(tmp_path: Path) -> None:
    with pytest.raises(StrataError) as e:
        _run(tmp_path, {"etc/a": "a", "usr/bin/b": "b"}, CONF)
    assert e.value.kind is ErrorKind.INVALID
    assert e.value.message.startswith("usr: a confext carries only /etc")


def test_dropped_entries_are_deleted_and_moved_directories_cleaned(tmp_path: Path) -> None:
    trees, _ = _run(tmp_path, {"usr/sbin/a": "a", "usr/bin/b": "b", "usr/share/doc/x": "x",
                               "usr/lib/os-release": "ID=x\n", "var/y": "y"},
                    Rules(name="app", cls=ClassChoice.SYSEXT, etc=EtcMode.TMPFILES,
                          merged_bin=True, exclude=("usr/share/doc",)))
    assert set(_listing(trees[Target.SYSEXT])) == {
        "usr", "usr/bin", "usr/bin/a", "usr/bin/b", "usr/lib", "usr/share"}
    assert os.listdir(tmp_path / "raw") == []


def test_identical_duplicates_merge_and_different_ones_fail(tmp_path: Path) -> None:
    trees, _ = _run(tmp_path / "same", {"bin/x": "same", "usr/bin/x": "same"})
    assert _listing(trees[Target.SYSEXT])["usr/bin/x"] == "644 same"
    with pytest.raises(StrataError) as e:
        _run(tmp_path / "diff", {"bin/x": "one", "usr/bin/x": "two"})
    assert e.value.message == ("bin/x and usr/bin/x both become usr/bin/x in the image, and "
                               "they differ")
    assert e.value.hint is not None


def test_sbin_and_bin_collide_only_when_merged(tmp_path: Path) -> None:
    files: dict[str, str | bytes | int] = {"usr/bin/t": "bin", "usr/sbin/t": "sbin"}
    trees, _ = _run(tmp_path / "split", files, SPLIT)
    assert _listing(trees[Target.SYSEXT])["usr/sbin/t"] == "644 sbin"
    with pytest.raises(StrataError, match="usr/bin/t and usr/sbin/t both become usr/bin/t"):
        _run(tmp_path / "merged", files, SYS)


def test_file_where_a_directory_is_needed(tmp_path: Path) -> None:
    with pytest.raises(StrataError) as e:
        _run(tmp_path / "a", {"usr/bin": "a file", "bin/x": "x"})
    assert e.value.message == ("bin and usr/bin both become usr/bin in the image, one of them a "
                               "directory")
    with pytest.raises(StrataError) as e:
        _run(tmp_path / "b", {"usr/bin": "a file", "usr/sbin/x": "x"})
    assert e.value.message == ("usr/bin and usr/sbin both become usr/bin in the image, one of "
                               "them a directory")


def test_symlinked_host_directory_is_dropped(tmp_path: Path) -> None:
    trees, dropped = _run(tmp_path, {"usr/lib64": "->lib", "usr/lib/x": "x"})
    assert "usr/lib64" not in _listing(trees[Target.SYSEXT])
    assert [d.path for d in dropped if not d.quiet] == ["usr/lib64"]


def test_restrictive_directory_modes_from_the_staging_map(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    write_tree(raw, {"usr/lib/app/x": "x"})
    out = tmp_path / "sysext"
    out.mkdir()
    normalize_tree(raw, {Target.SYSEXT: out}, SYS, lambda d: None,
                   dir_modes={"usr/lib/app": 0o555})
    assert stat.S_IMODE(os.stat(out / "usr/lib/app").st_mode) == 0o555
