"""Scenario 3: EXTENSION_RESTART_UNITS=. A new version of an extension arrives; `strata ext
refresh` swaps it in and restarts the unit it names, and the new process — the new binary —
answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.system.guestlib import (
    ask,
    build_extension,
    prop,
    service_unit,
    strata,
    strata_json,
    versiond,
    wait_active,
    wait_for,
)

pytestmark = pytest.mark.system

SOCK = "/run/answerd.sock"


def answer_extension(version: str) -> Path:
    return build_extension("answer", version, {
        "usr/bin/answerd": versiond("answerd", version),
        "usr/lib/systemd/system/answerd.service": service_unit(
            "Answers with its version", "/usr/bin/answerd"),
    }, release={"EXTENSION_RESTART_UNITS": "answerd.service", "STRATA_SERVICES": "answerd"},
        executable={"usr/bin/answerd"})


def test_refresh_restarts_the_unit_and_the_new_binary_answers(clean_device: None) -> None:
    answer_extension("1")
    strata("ext", "enable", "answer")
    strata("ext", "merge")
    wait_active("answerd.service")
    first = wait_for("answerd 1 to answer", lambda: ask(SOCK))
    pid1 = int(prop("answerd.service", "MainPID"))
    assert first == f"answerd 1 pid={pid1} exe=/usr/bin/answerd"
    invocation1 = prop("answerd.service", "InvocationID")

    answer_extension("2")
    strata("ext", "enable", "answer")  # the newest version of the name replaces the old
    outcome = strata_json("ext", "refresh")
    assert outcome["merged"] == ["answer"]
    restart = [h for h in outcome["hooks"] if h["phase"] == "restart"]
    assert [(h["argv"], h["ran"], h["status"]) for h in restart] == [
        (["systemctl", "restart", "--no-block", "answerd.service"], True, 0)]
    assert Path("/usr/bin/answerd").read_text().startswith("#!/usr/bin/python3\n# answerd 2")

    second = wait_for("answerd 2 to answer", lambda: ask(SOCK),
                      lambda a: a is not None and a.startswith("answerd 2 "))
    wait_active("answerd.service")
    pid2 = int(prop("answerd.service", "MainPID"))
    assert second == f"answerd 2 pid={pid2} exe=/usr/bin/answerd"
    assert pid2 != pid1
    assert prop("answerd.service", "InvocationID") != invocation1
