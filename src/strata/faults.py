"""Crash points for fault-injection tests: STRATA_FAULT=<name> kills the process there.

The engine calls point() between the steps of merge and refresh; tests set the variable,
see the process die by SIGKILL at that exact step, and check the root holds the old state or
the new one, and that the next command cleans up. Unset, a point costs one dict lookup.
"""

from __future__ import annotations

import os
import signal


def point(name: str) -> None:
    if os.environ.get("STRATA_FAULT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
