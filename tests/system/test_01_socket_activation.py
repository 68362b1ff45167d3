"""Scenario 1: strata.socket starts `strata serve` on the first connection, and the seed's
varlink calls (List, Enable, Merge with streaming, Status, Disable, Refresh, Unmerge) change
the real /usr and /etc of the running system — seen by processes that systemd starts
afterwards, not only by the daemon."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from tests.system.guestlib import (
    SOCKET,
    build_extension,
    cmdline,
    is_merged,
    prop,
    sh,
    systemctl,
    top_mount,
    varlink_iface,
    wait_active,
)

pytestmark = pytest.mark.system

APP_FILE = Path("/usr/share/strata-s1/app.txt")
CONF_FILE = Path("/etc/strata-s1/conf.txt")


def merged_state(iface: Any) -> dict[str, bool]:
    return {s["name"]: s["isMerged"] for s in iface.Status()["extensions"]}


def test_socket_activation_then_seed_calls_change_usr_and_etc(clean_device: None) -> None:
    build_extension("s1app", "1.0", {
        "usr/share/strata-s1/app.txt": "s1app 1.0\n",
        "usr/bin/s1app": "#!/bin/sh\necho 's1app 1.0 from the extension'\n",
    }, executable={"usr/bin/s1app"})
    build_extension("s1conf", "1.0", {"etc/strata-s1/conf.txt": "s1conf 1.0\n"},
                    confext=True, fmt="squashfs")
    assert not APP_FILE.exists() and not CONF_FILE.exists()

    # Only the socket listens; the daemon is not running.
    systemctl("stop", "strata.service")
    assert prop("strata.socket", "ActiveState") == "active"
    assert prop("strata.service", "ActiveState") == "inactive"
    st = os.stat(SOCKET)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660

    with varlink_iface() as iface:
        listed = {e["name"]: e for e in iface.List()["extensions"]}
        # The first connection started the service, through the socket.
        wait_active("strata.service")
        assert prop("strata.service", "TriggeredBy") == "strata.socket"
        pid = int(prop("strata.service", "MainPID"))
        assert "serve" in cmdline(pid), cmdline(pid)

        assert listed["s1app"]["isSysext"] is True and listed["s1app"]["version"] == "1.0"
        assert listed["s1conf"]["isConfext"] is True
        assert iface.Enable(["s1app", "s1conf"], None) == {"enabled": 2, "failed": 0}

        replies = list(iface.Merge(_more=True))
        assert [r["done"] for r in replies] == [False] * (len(replies) - 1) + [True]
        assert len(replies) > 2, "progress was streamed before the end"
        assert replies[-1]["message"] == "Merged 2 extensions: s1app, s1conf."

        # The real hierarchies changed...
        assert is_merged("/usr") and is_merged("/etc")
        assert APP_FILE.read_text() == "s1app 1.0\n"
        assert CONF_FILE.read_text() == "s1conf 1.0\n"
        # ...for everyone: a service PID 1 starts now runs the extension's program.
        out = sh("systemd-run", "--wait", "--pipe", "--quiet", "/usr/bin/s1app").stdout
        assert out == "s1app 1.0 from the extension\n"
        assert merged_state(iface) == {"s1app": True, "s1conf": True}

        assert iface.Disable(["s1conf"], None, None) == {"disabled": 1, "failed": 0}
        refreshed = list(iface.Refresh(_more=True))
        assert refreshed[-1]["done"] is True
        assert refreshed[-1]["message"] == "Refreshed 1 extension: s1app."
        assert not CONF_FILE.exists() and not is_merged("/etc")
        assert APP_FILE.read_text() == "s1app 1.0\n"
        assert merged_state(iface) == {"s1app": True, "s1conf": False}

        final = iface.Unmerge(False)
        assert final["done"] is True
        assert not APP_FILE.exists() and not is_merged("/usr")
        assert top_mount("/usr").fstype != "overlay"
        assert merged_state(iface) == {"s1app": False, "s1conf": False}
        out = sh("systemd-run", "--wait", "--pipe", "--quiet", "/bin/sh", "-c",
                 "test -e /usr/bin/s1app && echo present || echo absent").stdout
        assert out == "absent\n"
