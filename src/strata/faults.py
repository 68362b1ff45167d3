"""Crash and pause points for fault-injection tests.

The engine calls point() between the steps of merge and refresh. STRATA_FAULT=<name> makes the
process SIGKILL itself there; STRATA_FAULT_PAUSE=<name>=<seconds> makes it sleep there (to
hold the lock while a test starts a competing command). Unset, a point costs one dict lookup.
"""

from __future__ import annotations

import os
import signal
import time


def point(name: str) -> None:
    env = os.environ
    if env.get("STRATA_FAULT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
    pause = env.get("STRATA_FAULT_PAUSE")
    if pause and pause.partition("=")[0] == name:
        time.sleep(float(pause.partition("=")[2] or "1"))
