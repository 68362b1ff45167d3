"""strata check against the truth: what it says about a real program's libraries and glibc
matches what happens when the image is merged into that host and the program is run.

A scratch root holds only this machine's glibc (libc, libm, the loader). jq is packed into an
erofs image with libjq but without libonig: `strata check --host ROOT` reports libonig.so.5
missing (exit status 1), and after the merge jq indeed fails to load it. With libonig added,
check finds nothing wrong with the libraries, and the merged jq runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from strata.check.elf import read_info
from tests.helpers import isolated, make_root, mkfs, strata, write_tree
from tests.unit.test_check_support import copy_into, copy_lib, machine_lib, program

pytestmark = [
    pytest.mark.privileged,
    pytest.mark.skipif(program() != "/usr/bin/jq" or machine_lib("libonig.so.5") is None
                       or machine_lib("libjq.so.1") is None,
                       reason="jq, libjq1 and libonig5 are not installed"),
]


def _scratch_root(base: Path) -> Path:
    """A merged-/usr root with this machine's glibc and nothing else of it."""
    root = make_root(base)
    for name in ("bin", "lib", "lib64", "sbin"):
        (root / "usr" / name).mkdir(parents=True, exist_ok=True)
        os.symlink(f"usr/{name}", root / name)
    for lib in ("libc.so.6", "libm.so.6"):
        copy_lib(root, lib)
    with open("/usr/bin/jq", "rb") as f:
        loader = read_info(f).interpreter
    assert loader is not None
    real = os.path.realpath(loader)
    copy_into(root, real)
    dest = root / loader.lstrip("/")
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(real, dest.resolve() if dest.is_symlink() else dest)
    return root


def _image(base: Path, name: str, with_onig: bool) -> Path:
    tree = base / name
    write_tree(tree, {"usr/lib/extension-release.d/extension-release." + name:
                      "ID=debian\nVERSION_ID=12\n"})
    copy_into(tree, "/usr/bin/jq")
    copy_lib(tree, "libjq.so.1")
    if with_onig:
        copy_lib(tree, "libonig.so.5")
    return mkfs(tree, base / "images" / f"{name}.raw")


def _run_jq(root: Path, image: Path) -> subprocess.CompletedProcess[str]:
    ext = root / "var/lib/extensions"
    ext.mkdir(parents=True, exist_ok=True)
    for old in ext.iterdir():
        old.unlink()
    shutil.copy(image, ext / image.name)
    r = strata("sysext", "merge", f"--root={root}")
    assert r.returncode == 0, r.stderr
    try:
        return subprocess.run(["chroot", str(root), "/usr/bin/jq", "-n", "1+1"],
                              capture_output=True, text=True, check=False)
    finally:
        assert strata("sysext", "unmerge", f"--root={root}").returncode == 0


@isolated
def test_check_predicts_the_merge(tmp_path: Path) -> None:
    root = _scratch_root(tmp_path)
    broken = _image(tmp_path, "jqbroken", with_onig=False)
    whole = _image(tmp_path, "jqwhole", with_onig=True)

    r = strata("check", "--json=short", f"--host={root}", str(broken))
    assert r.returncode == 1, r.stderr
    needed = [f for f in json.loads(r.stdout) if f["rule"] == "elf-needed"]
    assert len(needed) == 1 and "libonig.so.5" in needed[0]["message"]
    assert needed[0]["path"].endswith("/libjq.so.1")
    ran = _run_jq(root, broken)
    assert ran.returncode != 0 and "libonig.so.5" in ran.stderr

    r = strata("check", "--json=short", f"--host={root}", str(whole))
    findings = json.loads(r.stdout)
    assert [f for f in findings if f["severity"] == "error"] == [], findings
    assert not any(f["rule"] in ("elf-needed", "elf-glibc") for f in findings)
    ran = _run_jq(root, whole)
    assert (ran.returncode, ran.stdout) == (0, "2\n"), ran.stderr
