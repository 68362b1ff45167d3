from __future__ import annotations

import os
from pathlib import Path

import pytest

from strata.errors import StrataError
from strata.fsutil import chase, join_root


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
