"""Socket activation and the daemon as a process: LISTEN_FDS/LISTEN_FDNAMES (our activator and
systemd-socket-activate), SIGTERM, the `strata serve` command line."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from strata.service.listen import listen_fds, pick_fd
from tests.helpers import strata
from tests.service.harness import REPO, Raw, spawn, wait_for_socket

SERVE_FAKE = [sys.executable, "-m", "tests.service.serve_fake"]


def listener(path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.listen(16)
    return s


def activated(fds: list[tuple[socket.socket, str]], unused: Path,
              ) -> subprocess.Popen[str]:
    specs = [f"{s.fileno()}:{name}" for s, name in fds]
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'src'}"}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.service.activate", *specs, "--",
         *SERVE_FAKE, "--socket", str(unused)],
        cwd=REPO, env=env, pass_fds=[s.fileno() for s, _ in fds],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=30)
    return proc.returncode, err


def get_info(path: Path) -> dict[str, object]:
    with Raw(path) as r:
        r.call("org.varlink.service.GetInfo")
        params: dict[str, object] = r.reply()["parameters"]
        return params


def test_activation_picks_the_varlink_fd(sock_dir: Path) -> None:
    other, mine = listener(sock_dir / "other.sock"), listener(sock_dir / "varlink.sock")
    proc = activated([(other, "other"), (mine, "varlink")], sock_dir / "unused.sock")
    other.close()
    mine.close()
    try:
        assert get_info(sock_dir / "varlink.sock")["product"] == "strata"
        assert not (sock_dir / "unused.sock").exists()  # --socket is ignored when activated
    finally:
        code, err = stop(proc)
    assert code == 0, err
    assert "Serving" in err and "passed by systemd" in err
    assert (sock_dir / "varlink.sock").exists()  # systemd's socket: not ours to remove


def test_activation_unnamed_fd(sock_dir: Path) -> None:
    s = listener(sock_dir / "a.sock")
    proc = activated([(s, "")], sock_dir / "unused.sock")
    s.close()
    try:
        assert get_info(sock_dir / "a.sock")["vendor"] == "Strata"
    finally:
        code, err = stop(proc)
    assert code == 0, err


@pytest.mark.skipif(shutil.which("systemd-socket-activate") is None,
                    reason="systemd-socket-activate is not installed")
def test_systemd_socket_activate(sock_dir: Path) -> None:
    path = sock_dir / "sa.sock"
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'src'}"}
    proc = subprocess.Popen(
        ["systemd-socket-activate", "-l", str(path), "--fdname=varlink", *SERVE_FAKE,
         "--socket", str(sock_dir / "unused.sock")],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_socket(path, proc)
        assert get_info(path)["product"] == "strata"
    finally:
        code, err = stop(proc)
    assert code == 0, err


def test_sigterm_stops_and_removes_socket(sock_dir: Path) -> None:
    path = sock_dir / "s.sock"
    proc = spawn(path, "--config", str(sock_dir / "none.toml"))
    try:
        wait_for_socket(path, proc)
        with Raw(path) as r:
            r.call("org.avocado.Extensions.Merge")
            assert r.reply()["parameters"]["done"] is True
    finally:
        code, err = stop(proc)
    assert code == 0, err
    assert not path.exists()


def test_second_daemon_on_same_socket_refuses(sock_dir: Path) -> None:
    path = sock_dir / "s.sock"
    first = spawn(path)
    try:
        wait_for_socket(path, first)
        second = spawn(path)
        _out, err = second.communicate(timeout=30)
        assert second.returncode == 1
        assert f"'{path}' is in use by another process" in err
        assert get_info(path)["product"] == "strata"  # the first one is untouched
    finally:
        stop(first)


@pytest.mark.parametrize(("env", "expect"), [
    ({}, []),
    ({"LISTEN_PID": "100", "LISTEN_FDS": "1"}, [(3, "unknown")]),
    ({"LISTEN_PID": "101", "LISTEN_FDS": "1"}, []),  # for another process
    ({"LISTEN_PID": "100", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "a:varlink"},
     [(3, "a"), (4, "varlink")]),
    ({"LISTEN_PID": "100", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "onlyone"},
     [(3, "unknown"), (4, "unknown")]),
    ({"LISTEN_PID": "100", "LISTEN_FDS": "x"}, []),
    ({"LISTEN_PID": "100", "LISTEN_FDS": "0"}, []),
])
def test_listen_fds(env: dict[str, str], expect: list[tuple[int, str]]) -> None:
    assert listen_fds(env, 100) == expect


def test_pick_fd() -> None:
    assert pick_fd([(3, "a"), (4, "varlink")]) == 4
    assert pick_fd([(3, "a"), (4, "b")]) == 3
    assert pick_fd([]) is None


def test_cli_help_and_errors(sock_dir: Path) -> None:
    r = strata("serve", "--help")
    assert r.returncode == 0 and "--socket=PATH" in r.stdout
    r = strata("serve", "--bogus")
    assert r.returncode == 1 and "unrecognized arguments: --bogus" in r.stderr
    r = strata("serve", "--socket", str(sock_dir / "x.sock"), "--root", "/nonexistent/root")
    assert r.returncode == 1
    assert "Root directory '/nonexistent/root' does not exist" in r.stderr
    assert not (sock_dir / "x.sock").exists()
    r = strata("--help")
    assert "serve [OPTIONS]" in r.stdout
