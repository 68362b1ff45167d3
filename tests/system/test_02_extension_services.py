"""Scenario 2: an extension that ships services and asks for them (AVOCADO_ENABLE_SERVICES=,
STRATA_SERVICES=) and for a manager reload (EXTENSION_RELOAD_MANAGER=1). After `strata ext
merge` its services are active and run the extension's own files; `strata ext logs` shows
their journal; after `strata ext unmerge` they are stopped and systemd forgot the units."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.system.guestlib import (
    ask,
    cmdline,
    hello_extension,
    prop,
    sh,
    strata,
    strata_json,
    wait_active,
    wait_for,
)

pytestmark = pytest.mark.system

BINARY = "/usr/bin/hello-strata"
SOCK = "/run/hello-strata.sock"


def test_services_of_an_extension_start_after_merge_and_stop_at_unmerge(
        clean_device: None) -> None:
    hello_extension("1.0")
    assert prop("hello-strata.service", "LoadState") == "not-found"
    assert not os.path.exists(BINARY)

    strata("ext", "enable", "hello")
    outcome = strata_json("ext", "merge")
    assert outcome["merged"] == ["hello"]
    ran = [(h["phase"], h["argv"]) for h in outcome["hooks"] if h["ran"] and h["status"] == 0]
    assert ("daemon-reload", ["systemctl", "daemon-reload"]) in ran
    assert ("start", ["systemctl", "start", "--no-block", "hello-strata.service",
                      "hello-strata-mark.service"]) in ran
    assert not [h for h in outcome["hooks"] if h["error"]]

    # Both services run, from the extension's unit files.
    wait_active("hello-strata.service")
    wait_active("hello-strata-mark.service")
    assert prop("hello-strata.service", "FragmentPath") == \
        "/usr/lib/systemd/system/hello-strata.service"
    assert Path("/run/hello-strata-mark").read_text() == "1.0\n"

    # The daemon is the extension's program: its command line names the file, which lives
    # on the merged overlay, and it answers with the extension's version.
    answer = wait_for("hello-strata to answer", lambda: ask(SOCK))
    pid = int(prop("hello-strata.service", "MainPID"))
    assert answer == f"hello-strata 1.0 pid={pid} exe={BINARY}"
    assert cmdline(pid)[1] == BINARY
    assert sh("findmnt", "-n", "-o", "FSTYPE,SOURCE", "--target", BINARY).stdout.split() == \
        ["overlay", "sysext"]
    assert os.stat(BINARY).st_dev != os.stat("/").st_dev  # not a file of the root disk

    # Its journal, through strata.
    logs = wait_for("the service's line in `strata ext logs hello`",
                    lambda: strata("ext", "logs", "hello").stdout,
                    lambda out: "hello-strata 1.0 listening on /run/hello-strata.sock" in out)
    assert "hello-strata-mark 1.0: started from the extension" in logs

    outcome = strata_json("ext", "unmerge")
    assert outcome["unmerged"] == ["hello"]
    stopped = [h["argv"] for h in outcome["hooks"] if h["phase"] == "stop"]
    assert stopped == [["systemctl", "stop", "hello-strata.service",
                        "hello-strata-mark.service"]]
    assert prop("hello-strata.service", "ActiveState") == "inactive"
    assert prop("hello-strata-mark.service", "ActiveState") == "inactive"
    assert ask(SOCK) is None
    assert not os.path.exists(BINARY)
    # EXTENSION_RELOAD_MANAGER=1: the manager was reloaded after the unmerge too.
    assert prop("hello-strata.service", "LoadState") == "not-found"
