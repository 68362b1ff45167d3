"""The systemd units shipped in the package: what they say, and that systemd accepts them."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from importlib import resources
from pathlib import Path

import pytest

UNITS = ("strata.socket", "strata.service", "strata-merge.service")


def unit(name: str) -> configparser.ConfigParser:
    text = resources.files("strata.service").joinpath(f"units/{name}").read_text()
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    return parser


def test_socket() -> None:
    s = unit("strata.socket")["Socket"]
    assert s["ListenStream"] == "/run/strata/strata.sock"
    assert s["SocketMode"] == "0660"
    assert s["FileDescriptorName"] == "varlink"  # what `strata serve` picks


def test_service() -> None:
    u = unit("strata.service")
    assert u["Service"]["ExecStart"].split() == ["strata", "serve"]
    assert u["Service"]["Type"] == "notify"  # `strata serve` sends READY=1
    assert "strata.socket" in u["Unit"]["Requires"]
    sandboxing = {"PrivateTmp", "ProtectSystem", "ProtectHome", "PrivateMounts",
                  "ReadOnlyPaths", "TemporaryFileSystem", "MountFlags"}
    assert not sandboxing & set(u["Service"])  # merges must land in the host's namespace


def test_boot_merge() -> None:
    u = unit("strata-merge.service")
    assert u["Service"]["ExecStart"].split() == ["strata", "ext", "refresh"]
    assert u["Service"]["Type"] == "oneshot"
    assert "sysinit.target" in u["Unit"]["Before"].split()
    assert u["Unit"]["DefaultDependencies"] == "no"
    assert u["Install"]["WantedBy"] == "sysinit.target"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    for name in UNITS:
        (tmp_path / name).write_text(
            resources.files("strata.service").joinpath(f"units/{name}").read_text())
    r = subprocess.run(["systemd-analyze", "verify", *(str(tmp_path / n) for n in UNITS)],
                       capture_output=True, text=True, check=False)
    complaints = [line for line in (r.stdout + r.stderr).splitlines()
                  if line.strip() and "Command strata is not executable" not in line]
    assert complaints == []  # only: strata itself is not installed in /usr/bin here
