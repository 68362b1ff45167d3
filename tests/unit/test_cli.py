"""The command line front: argument handling, exit codes, invocation names, delegation."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import install_ext, make_root, strata

STRATA_BIN = Path(sys.executable).parent / "strata"


@pytest.mark.parametrize(
    ("args", "rc", "stderr"),
    [
        (["sysext", "bogus"], 1, "Unknown command verb 'bogus'."),
        (["sysext", "list", "extra"], 1, "Too many arguments."),
        (["sysext", "--json=yaml"], 1, "Unknown argument to --json=: yaml"),
        (["sysext", "--noexec=maybe"], 1, "Failed to parse boolean argument to --noexec: maybe."),
        (["sysext", "merge", "--mutable=sometimes"], 1,
         "Failed to parse argument to --mutable=: sometimes"),
        (["sysext", "--frobnicate"], 1, "strata sysext: unrecognized option '--frobnicate'"),
        (["confext", "merge", "--root=/nonexistent/root"], 1, "/nonexistent/root"),
        (["nosuch"], 1, "unknown command 'nosuch'"),
    ],
)
def test_bad_usage(args: list[str], rc: int, stderr: str) -> None:
    r = strata(*args)
    assert r.returncode == rc
    assert stderr in r.stderr
    assert r.stdout == ""


def test_help_and_version() -> None:
    r = strata("sysext", "--help")
    assert r.returncode == 0 and "Merge system extension images into /usr/ and /opt/." in r.stdout
    assert "--mutable=yes|no|auto|import|ephemeral|ephemeral-import" in r.stdout
    r = strata("confext", "help")
    assert r.returncode == 0 and "/etc/" in r.stdout
    assert "257" in strata("sysext", "--version").stdout


def test_options_before_and_after_the_verb(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    install_ext(root, "a", {"usr/bin/a": "a"})
    before = strata("sysext", f"--root={root}", "--json=short", "list")
    after = strata("sysext", "list", f"--root={root}", "--json=short")
    assert before.returncode == after.returncode == 0
    assert before.stdout == after.stdout and '"name":"a"' in before.stdout


def test_unprivileged_merge_is_refused(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    if os.geteuid() != 0:
        r = strata("sysext", "merge", f"--root={root}")
    else:  # drop CAP_SYS_ADMIN for the child, as an unprivileged user would lack it
        if shutil.which("setpriv") is None:
            pytest.skip("setpriv (util-linux) is not installed")
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
        r = subprocess.run(["setpriv", "--inh-caps=-all", "--bounding-set=-all", "--",
                            sys.executable, "-m", "strata", "sysext", "merge",
                            f"--root={root}"], capture_output=True, text=True, env=env, check=False)
    assert r.returncode == 1
    assert "Need to be privileged." in r.stderr


def test_invoked_through_a_symlink_named_systemd_sysext(tmp_path: Path) -> None:
    if not STRATA_BIN.exists():
        pytest.skip(f"{STRATA_BIN} is not installed (pip install -e .)")
    for name, blurb in (("systemd-sysext", "/usr/ and /opt/"), ("systemd-confext", "/etc/")):
        link = tmp_path / name
        link.symlink_to(STRATA_BIN)
        r = subprocess.run([str(link), "--help"], capture_output=True, text=True, check=False)
        assert r.returncode == 0 and r.stdout.startswith(f"{name} [OPTIONS...]"), r.stderr
        assert blurb in r.stdout
        v = subprocess.run([str(link), "--version"], capture_output=True, text=True, check=False)
        assert v.stdout.startswith("strata ")


def test_engine_systemd_delegates(tmp_path: Path) -> None:
    real = shutil.which("systemd-sysext")
    if real is None:
        pytest.skip("systemd-sysext is not installed")
    r = strata("sysext", "--engine=systemd", "--version")
    assert r.returncode == 0 and r.stdout.startswith("systemd "), r.stdout
    root = make_root(tmp_path)
    install_ext(root, "a", {"usr/bin/a": "a"})
    ours = strata("sysext", "list", f"--root={root}", "--json=short")
    theirs = strata("sysext", "list", f"--root={root}", "--json=short", "--engine", "systemd")
    assert theirs.returncode == 0
    assert theirs.stdout == ours.stdout
    missing = strata("sysext", "--engine=systemd", "list",
                     env={"STRATA_SYSTEMD_SYSEXT": str(tmp_path / "none")})
    assert missing.returncode != 0
