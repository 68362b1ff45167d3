"""The seed's Dalec example end to end: its spec as is (plus the libraries jq needs, which the
Dalec docs say to add), jq, libjq1, libonig5 and zsh fetched from Debian with apt-get download,
built, merged into a scratch root that has only this machine's C library, and `jq --version`
run from the merged /usr inside a chroot.

It needs the network (deb.debian.org); without it the test fails saying so (CI has network).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from strata.images import open_fs
from strata.images.base import FileKind
from tests.helpers import isolated, make_root, strata

pytestmark = pytest.mark.privileged

DALEC_SPEC = """\
# syntax=ghcr.io/project-dalec/dalec/frontend:latest
name: my-sysext
version: 0.1.0
revision: 1
license: MIT
description: A system extension with some useful tools

dependencies:
  sysext:
    jq:
    libjq1:
    libonig5:
    zsh:
"""


def _network_or_fail() -> None:
    try:
        socket.create_connection(("deb.debian.org", 80), timeout=10).close()
    except OSError as e:
        pytest.fail(f"network needed: cannot reach deb.debian.org:80 ({e}); this test fetches "
                    "jq, libjq1, libonig5 and zsh with apt-get download")


def _host_libraries(binary: Path, shipped: set[str]) -> list[tuple[str, str]]:
    """(path the loader asks for, host file) for every library of `binary` that the image
    does not ship, from ldd run on this machine: the scratch root gets exactly those."""
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=True)
    libs = []
    for line in out.stdout.splitlines():
        m = re.match(r"\s*(\S+) => (\S+) \(", line) or re.match(r"\s*(/\S+) \(", line)
        if m is None:
            continue
        name, path = (m.group(1), m.group(2)) if m.lastindex == 2 else (m.group(1), m.group(1))
        if os.path.basename(name) not in shipped:
            libs.append((path, os.path.realpath(path)))
    return libs


@isolated
def test_dalec_example_end_to_end(tmp_path: Path) -> None:
    _network_or_fail()
    spec = tmp_path / "my-sysext.yml"
    spec.write_text(DALEC_SPEC)
    r = strata("build", str(spec), "-o", str(tmp_path / "out"), "--json=short")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert sorted(p["name"] for p in data["packages"]) == ["jq", "libjq1", "libonig5", "zsh"]
    assert all(p["origin"] == "apt-get download" for p in data["packages"])
    image = tmp_path / "out/my-sysext-0.1.0-x86-64.raw"
    assert data["outputs"][0]["path"] == str(image)

    # what the image holds: Debian's /bin/zsh moved to /usr, nothing outside /usr
    work = tmp_path / "work"
    work.mkdir()
    with open_fs(str(image)) as fs:
        assert fs.listdir("/") == ["usr"]
        assert {"jq", "zsh"} <= set(fs.listdir("/usr/bin"))
        shipped = set(fs.listdir("/usr/lib/x86_64-linux-gnu"))
        assert {"libjq.so.1", "libonig.so.5"} <= shipped
        for prog in ("jq", "zsh"):
            assert fs.lstat(f"/usr/bin/{prog}").kind is FileKind.REGULAR
            (work / prog).write_bytes(fs.read(f"/usr/bin/{prog}"))
            os.chmod(work / prog, 0o755)

    # a scratch root with only this machine's C library (and what zsh needs of the host):
    # jq, libjq and libonig can only come from the extension
    root = make_root(tmp_path, files={"usr/bin/host-tool": "host\n"})
    for name in ("bin", "lib", "lib64", "sbin"):
        (root / "usr" / name).mkdir(parents=True, exist_ok=True)
        os.symlink(f"usr/{name}", root / name)
    needed = {p: real for prog in ("jq", "zsh") for p, real in
              _host_libraries(work / prog, shipped)}
    assert any("libc.so.6" in p for p in needed)
    for path, real in needed.items():
        dest = root / path.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not dest.exists():
            shutil.copy2(real, dest.resolve() if dest.is_symlink() else dest)
    assert not (root / "usr/bin/jq").exists()
    ext_dir = root / "var/lib/extensions"
    ext_dir.mkdir(parents=True)
    shutil.copy(image, ext_dir / image.name)

    r = strata("sysext", "merge", f"--root={root}")
    assert r.returncode == 0, r.stderr
    assert f"Using extensions '{image.name}'." in r.stderr
    jq = subprocess.run(["chroot", str(root), "/usr/bin/jq", "--version"], capture_output=True,
                        text=True, check=False)
    assert jq.returncode == 0, jq.stderr
    assert jq.stdout.startswith("jq-1.")
    filtered = subprocess.run(["chroot", str(root), "/usr/bin/jq", "-c", '.a | test("b+")'],
                              input='{"a": "abbc"}', capture_output=True, text=True,
                              check=False)  # a regular expression: oniguruma at work
    assert (filtered.returncode, filtered.stdout) == (0, "true\n"), filtered.stderr
    zsh = subprocess.run(["chroot", str(root), "/usr/bin/zsh", "-fc", "echo $ZSH_VERSION"],
                         capture_output=True, text=True, check=False)
    assert zsh.returncode == 0, zsh.stderr
    assert zsh.stdout.startswith("5.")

    assert strata("sysext", "unmerge", f"--root={root}").returncode == 0
    assert not (root / "usr/bin/jq").exists()
