"""Scenario 0: the VM is what the other scenarios assume — systemd as PID 1 on a kernel with
the mount API Strata's atomic refresh needs, and Strata installed from the project's wheel
(not from the source tree on the work disk)."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
from pathlib import Path

import pytest

import strata
from tests.system.guestlib import prop, sh
from tests.system.harness.image import GUEST_VENV

pytestmark = pytest.mark.system


def test_systemd_is_pid1_and_the_system_is_up() -> None:
    assert Path("/proc/1/comm").read_text().strip() == "systemd"
    assert prop("multi-user.target", "ActiveState") == "active"
    version = sh("systemctl", "--version").stdout.split()[1]
    print(f"systemd {version}, kernel {os.uname().release}")
    assert int(version) >= 252


def test_kernel_has_what_atomic_refresh_needs() -> None:
    major, minor = (int(x) for x in os.uname().release.split(".")[:2])
    assert (major, minor) >= (6, 5), "MOVE_MOUNT_BENEATH needs Linux >= 6.5"
    for fs in ("overlay", "erofs", "squashfs"):
        sh("modprobe", fs)
        assert fs in Path("/proc/filesystems").read_text()


def test_strata_comes_from_the_installed_wheel() -> None:
    assert strata.__file__ is not None
    assert strata.__file__.startswith(f"{GUEST_VENV}/"), strata.__file__
    assert importlib.metadata.version("strata")
    exe = shutil.which("strata", path="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin")
    assert exe is not None and os.path.realpath(exe) == f"{GUEST_VENV}/bin/strata"
    assert "strata ext" in sh("strata", "ext", "--help").stdout
