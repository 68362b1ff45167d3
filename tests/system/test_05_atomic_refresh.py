"""Scenario 5: an atomic refresh under load. A service reads a file of a merged extension in a
tight loop while the daemon refreshes 100 times; every read finds the file with its content.
Each refresh really replaced the overlay (a new mount every time, and the reader saw files of
many of them). A control run with the atomic path switched off shows that the reader does
notice the gap an unmerge-then-merge leaves.

Overlays are told apart by what two of them alive at the same moment cannot share: a mount id
(the new overlay is mounted beneath the old one before that is detached), and the device
number of the files read through them. Both numbers are reused later, so what is counted is
each change from one to the next."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.system.guestlib import (
    build_extension,
    prop,
    sh,
    strata,
    systemctl,
    top_mount,
    varlink_iface,
    wait_active,
    wait_for,
)

pytestmark = pytest.mark.system

PAYLOAD = "".join(f"strata-load line {i:04d}\n" for i in range(256))
FILE = "/usr/share/strata-load/payload"
WORK = Path("/run/strata-load")
UNIT = "strata-load-reader.service"
REFRESHES = 100
NON_ATOMIC_TRIES = 15

READER = '''\
import json, os, signal, sys, time

path, expected_path, stats_path = sys.argv[1:4]
expected = open(expected_path, "rb").read()
reads = misses = switches = 0
last_dev = None
first_miss = None
stop = False


def on_term(*_):
    global stop
    stop = True


def save():
    tmp = stats_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"reads": reads, "misses": misses, "switches": switches,
                   "first_miss": first_miss, "final": stop}, f)
    os.replace(tmp, stats_path)


signal.signal(signal.SIGTERM, on_term)
saved = 0.0
while not stop:
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            dev = os.fstat(fd).st_dev
            data = os.read(fd, len(expected) + 1)
        finally:
            os.close(fd)
        if data == expected:
            # a file of another overlay than the last read's: the reader saw a refresh
            switches += last_dev is not None and dev != last_dev
            last_dev = dev
        else:
            misses += 1
            first_miss = first_miss or f"read {len(data)} unexpected bytes"
    except OSError as e:
        misses += 1
        first_miss = first_miss or f"{e.__class__.__name__}: {e.strerror}"
    reads += 1
    now = time.monotonic()
    if now - saved > 0.5:
        save()
        saved = now
save()
'''


def stats() -> dict[str, Any]:
    try:
        return dict(json.loads((WORK / "stats.json").read_text()))
    except (FileNotFoundError, json.JSONDecodeError):
        return {"reads": 0}


@pytest.fixture
def reader(clean_device: None) -> Iterator[None]:
    build_extension("loadfile", "1.0", {FILE.lstrip("/"): PAYLOAD})
    strata("ext", "enable", "loadfile")
    strata("ext", "merge")
    WORK.mkdir(exist_ok=True)
    (WORK / "reader.py").write_text(READER)
    (WORK / "expected").write_text(PAYLOAD)
    yield
    systemctl("stop", UNIT, check=False)
    systemctl("reset-failed", UNIT, check=False)


def start_reader() -> int:
    """Start the reading service; returns its read count once it is reading."""
    (WORK / "stats.json").unlink(missing_ok=True)
    sh("systemd-run", f"--unit={UNIT}", "--property=Type=exec", "/usr/bin/python3",
       str(WORK / "reader.py"), FILE, str(WORK / "expected"), str(WORK / "stats.json"))
    wait_active(UNIT)
    return int(wait_for("the reader to read", stats, lambda s: s["reads"] > 50)["reads"])


def stop_reader() -> dict[str, Any]:
    systemctl("stop", UNIT)
    final = stats()
    assert final.get("final") is True, final
    return final


def test_100_refreshes_under_load_never_lose_the_file(reader: None) -> None:
    before = start_reader()
    replaced = 0
    messages: list[str] = []
    started = time.monotonic()
    with varlink_iface() as iface:
        for _ in range(REFRESHES):
            mount_before = top_mount("/usr").mount_id
            replies = list(iface.Refresh(_more=True))
            assert replies[-1]["done"] is True
            assert replies[-1]["message"] == "Refreshed 1 extension: loadfile."
            messages += [r["message"] for r in replies]
            replaced += top_mount("/usr").mount_id != mount_before
    took = time.monotonic() - started
    during = stats()["reads"] - before
    final = stop_reader()
    print(f"{REFRESHES} refreshes in {took:.1f}s; {final['reads']} reads "
          f"({during} during the refreshes), {final['misses']} misses; the reader went "
          f"from one overlay to the next {final['switches']} times")

    assert prop(UNIT, "Result") in ("success", "")
    assert final["misses"] == 0, final["first_miss"]
    # Every refresh put a new overlay in place, atomically (never the fallback).
    assert replaced == REFRESHES
    assert not [m for m in messages if "by unmerging first" in m]
    # The reader was reading all along, through most of the overlays that came and went.
    assert during >= REFRESHES
    assert final["switches"] >= REFRESHES // 2, final


def test_control_unmerge_then_merge_is_seen_by_the_reader(reader: None) -> None:
    start_reader()
    tries = 0
    while tries < NON_ATOMIC_TRIES and stats().get("misses", 0) == 0:
        tries += 1
        out = strata("ext", "refresh", env={"STRATA_KERNEL_DISABLE": "move-mount-beneath"})
        assert "by unmerging first" in out.stderr
        time.sleep(0.6)  # the reader saves its counts twice a second
    final = stop_reader()
    print(f"non-atomic refreshes: {tries}; reader: {final}")
    assert final["misses"] > 0, (
        f"the reader saw no gap in {tries} non-atomic refreshes: it could not have "
        "noticed one in the atomic test either")
