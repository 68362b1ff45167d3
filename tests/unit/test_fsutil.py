from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from strata.errors import StrataError
from strata.fsutil import chase, join_root
from strata.images.base import MAX_SYMLINK_HOPS, chase_path, walk
from strata.images.filebacked import LruCache


@pytest.mark.parametrize(
    ("root", "path", "expected"),
    [("/", "/usr", "/usr"), ("/r", "/usr", "/r/usr"), ("/r/", "usr/", "/r/usr"), ("/r", "/", "/r"),
     ("", "/x", "/x")],
)
def test_join_root(root: str, path: str, expected: str) -> None:
    assert join_root(root, path) == expected


def test_chase_follows_links_inside_root(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "f").write_text("x")
    os.symlink("/real", tmp_path / "abs")
    os.symlink("real", tmp_path / "rel")
    os.symlink("../../../real", tmp_path / "escape")
    root = str(tmp_path)
    assert chase("/abs/f", root) == f"{root}/real/f"
    assert chase("/rel", root) == f"{root}/real"
    assert chase("/escape", root) == f"{root}/real"  # ".." stops at the root


def test_chase_missing(tmp_path: Path) -> None:
    with pytest.raises(StrataError) as e:
        chase("/nope/x", str(tmp_path))
    assert "nope" in str(e.value)
    assert chase("/nope/x", str(tmp_path), nonexistent=True) == f"{tmp_path}/nope/x"
    os.symlink("/target", tmp_path / "dangling")
    assert chase("/dangling", str(tmp_path), nonexistent=True) == f"{tmp_path}/target"


def test_directory_fs_listdir_does_not_follow_a_final_symlink(tmp_path: Path) -> None:
    from strata.images.base import DirectoryFS

    (tmp_path / "usr/lib").mkdir(parents=True)
    (tmp_path / "etc").mkdir()
    os.symlink("/etc", tmp_path / "usr/lib/x")
    fs = DirectoryFS(str(tmp_path))
    assert fs.listdir("/usr/lib") == ["x"]
    with pytest.raises(StrataError):
        fs.listdir("/usr/lib/x")
    assert fs.resolve("/usr/lib/x") == "/etc"


# --- base.walk / chase_path: the one symlink walk (fsutil.chase, DirectoryFS, the readers) ------

_DIR, _REG, _LNK = stat.S_IFDIR | 0o755, stat.S_IFREG | 0o644, stat.S_IFLNK | 0o777
_TREE: dict[str, tuple[int, str]] = {
    "/usr": (_DIR, ""),
    "/usr/lib": (_DIR, ""),
    "/usr/lib/os-release": (_REG, ""),
    "/etc": (_DIR, ""),
    "/etc/os-release": (_LNK, "../usr/lib/os-release"),
    "/lib": (_LNK, "usr/lib"),
    "/abs": (_LNK, "/usr/"),
    "/up": (_LNK, "../../../usr"),
    "/a": (_LNK, "b"),
    "/b": (_LNK, "a"),
    "/dangling": (_LNK, "/nope/x"),
}


def _chase(path: str, *, nonexistent: bool = False, calls: list[str] | None = None) -> str:
    def lstat_mode(p: str) -> int | None:
        if calls is not None:
            calls.append(p)
        if p in _TREE:
            return _TREE[p][0]
        if nonexistent:
            return None
        raise StrataError(f"{p}: missing", errno=errno.ENOENT)

    return chase_path(path, lstat_mode, lambda p: _TREE[p][1],
                      lambda p: StrataError(f"{p}: loop", errno=errno.ELOOP))


@pytest.mark.parametrize(("path", "expected"), [
    ("/usr/lib/os-release", "/usr/lib/os-release"),
    ("usr//./lib/", "/usr/lib"),
    ("", "/"),
    ("/..", "/"),
    ("/usr/../etc", "/etc"),
    ("/etc/os-release", "/usr/lib/os-release"),  # relative target, with ".."
    ("/lib/os-release", "/usr/lib/os-release"),  # a link in the middle
    ("/abs/lib", "/usr/lib"),  # absolute target: from the root
    ("/up/lib", "/usr/lib"),  # ".." stops at the root
    ("/usr/lib/../../etc/../usr", "/usr"),
    ("/lib/..", "/usr"),  # ".." after a link leaves where the link led, not the link
])
def test_chase_path(path: str, expected: str) -> None:
    assert _chase(path) == expected


@pytest.mark.parametrize(("path", "expected"), [
    ("/usr/nope", "/usr/nope"),
    ("/usr/nope/../x/./y", "/usr/nope/x/y"),  # the unresolved rest loses its ".."
    ("/dangling", "/nope/x"),
    ("/lib/missing/z", "/usr/lib/missing/z"),
])
def test_chase_path_nonexistent(path: str, expected: str) -> None:
    assert _chase(path, nonexistent=True) == expected


def test_chase_path_errors_come_from_the_callbacks() -> None:
    with pytest.raises(StrataError, match=r"^/usr/nope: missing$"):
        _chase("/usr/nope/x")
    with pytest.raises(StrataError) as exc:
        _chase("/a/x")
    assert exc.value.errno == errno.ELOOP
    assert str(exc.value) == "/a: loop"  # the link one past MAX_SYMLINK_HOPS: a, b, a, ...
    assert MAX_SYMLINK_HOPS % 2 == 0


def test_chase_path_looks_at_each_component_once() -> None:
    calls: list[str] = []
    _chase("/lib/os-release", calls=calls)
    assert calls == ["/lib", "/usr", "/usr/lib", "/usr/lib/os-release"]


def test_walk_follows_the_last_link_only_when_asked() -> None:
    def step(parent: str, name: str) -> tuple[str, bool]:
        cur = "/" + name if parent == "/" else f"{parent}/{name}"
        return cur, stat.S_ISLNK(_TREE[cur][0])

    def readlink(p: str) -> str:
        return _TREE[p][1]

    def loop(p: str) -> StrataError:
        return StrataError(p)

    assert walk("/lib", "/", step, readlink, loop, follow_last=False) == (["/", "/lib"], [])
    assert walk("/lib", "/", step, readlink, loop) == (["/", "/usr", "/usr/lib"], [])
    nodes, rest = walk("/abs/lib", "/", step, readlink, loop, follow_last=False)
    assert (nodes, rest) == (["/", "/usr", "/usr/lib"], [])


def test_lru_cache_drops_the_least_recently_used() -> None:
    cache: LruCache[int, str] = LruCache(2)
    assert cache.put(1, "one") == "one"
    cache.put(2, "two")
    assert cache.get(1) == "one"  # 1 is now the most recently used
    cache.put(3, "three")
    assert (cache.get(1), cache.get(2), cache.get(3)) == ("one", None, "three")
