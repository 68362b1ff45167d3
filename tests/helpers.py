"""Test helpers: scratch roots, extension trees and images made by the real mkfs tools, running
strata (and systemd-sysext) inside a private mount namespace."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from strata.kernel.ns import ChildError, run_isolated

T = TypeVar("T")

Files = Mapping[str, "str | bytes | int"]  # path -> content, or an int mode for a directory


def isolated(fn: Callable[..., T]) -> Callable[..., T]:
    """Run a test body in a forked child inside a private mount namespace; assertion failures
    come back as AssertionError with the child's traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return run_isolated(functools.partial(fn, *args, **kwargs))
        except ChildError as e:
            raise AssertionError("in the isolated child:\n" + e.text) from None

    return wrapper


def write_tree(base: Path, files: Files) -> None:
    for rel, content in files.items():
        p = base / rel.lstrip("/")
        if isinstance(content, int):
            p.mkdir(parents=True, exist_ok=True)
            os.chmod(p, content)
            continue
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            p.write_bytes(content)
        elif content.startswith("->"):
            os.symlink(content[2:], p)
        else:
            p.write_text(content)


def release_text(fields: Mapping[str, str]) -> str:
    return "".join(f"{k}={v}\n" for k, v in fields.items())


def make_root(base: Path, os_release: Mapping[str, str] | None = None,
              files: Files | None = None) -> Path:
    """A scratch OS root: /etc/os-release, a host file in /usr and /opt, /run."""
    root = base / "root"
    fields = {"ID": "debian", "VERSION_ID": "12"} if os_release is None else os_release
    write_tree(root, {
        "etc/os-release": release_text(fields),
        "usr/bin/host-tool": "host\n",
        "usr/share/host/data": "host data\n",
        "opt/host/file": "host opt\n",
        "run": 0o755,
        "var/lib": 0o755,
        **(files or {}),
    })
    return root


def ext_tree(base: Path, name: str, files: Files, release: Mapping[str, str] | None,
             *, confext: bool = False, release_name: str | None = None) -> Path:
    """An extension tree (outside any root) with its extension-release file."""
    tree = base / f"tree-{name}"
    rel_dir = "etc/extension-release.d" if confext else "usr/lib/extension-release.d"
    all_files: dict[str, str | bytes | int] = dict(files)
    if release is not None:
        all_files[f"{rel_dir}/extension-release.{release_name or name}"] = release_text(release)
    write_tree(tree, all_files)
    return tree


def mkfs(tree: Path, image: Path, fmt: str = "erofs") -> Path:
    image.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "erofs":
        argv = ["mkfs.erofs", "-zlz4hc", "-T0", "--all-root",
                "-U", "6b1c3c5e-0000-4000-8000-000000000001", str(image), str(tree)]
    elif fmt == "squashfs":
        argv = ["mksquashfs", str(tree), str(image), "-noappend", "-all-root", "-quiet",
                "-no-progress"]
    else:
        raise ValueError(fmt)
    subprocess.run(argv, check=True, capture_output=True)
    return image


def install_ext(root: Path, name: str, files: Files, release: Mapping[str, str] | None = None,
                *, fmt: str = "dir", where: str = "var/lib/extensions", confext: bool = False,
                filename: str | None = None, release_name: str | None = None) -> Path:
    """Build an extension and put it into a search directory of the root."""
    if release is None:
        release = {"ID": "_any"}
    tree = ext_tree(root.parent, name, files, release, confext=confext,
                    release_name=release_name)
    dest_dir = root / where
    dest_dir.mkdir(parents=True, exist_ok=True)
    if fmt == "dir":
        dest = dest_dir / (filename or name)
        shutil.copytree(tree, dest, symlinks=True)
        return dest
    return mkfs(tree, dest_dir / (filename or f"{name}.raw"), fmt)


def strata(*args: str, env: Mapping[str, str] | None = None, check: bool = False
           ) -> subprocess.CompletedProcess[str]:
    """Run the strata CLI (from this checkout) and capture its output."""
    full_env = {**os.environ, **(env or {})}
    src = str(Path(__file__).resolve().parent.parent / "src")
    full_env["PYTHONPATH"] = src + os.pathsep + full_env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "strata", *args], capture_output=True,
                          text=True, env=full_env, check=check)


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=check)


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below `path` in this namespace."""
    from strata.kernel import mountinfo

    p = str(path)
    return [e.mountpoint for e in mountinfo.read()
            if e.mountpoint == p or e.mountpoint.startswith(p + "/")]


def make_shared(root: Path) -> None:
    """Make `root` a shared mount point (systemd-sysext's child relies on propagation)."""
    run("mount", "--bind", str(root), str(root))
    run("mount", "--make-shared", str(root))
