"""Logging in systemd's style: plain lines on stderr, no prefixes unless debugging.

Deliberately not the logging module: it costs several milliseconds of start-up, and every
command here wants just "print this line to stderr if the level allows".
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

DEBUG, INFO, WARNING, ERROR = 10, 20, 30, 40
_NAMES = {"debug": DEBUG, "info": INFO, "notice": INFO, "warning": WARNING, "err": ERROR,
          "error": ERROR, "crit": ERROR + 10, "alert": ERROR + 10, "emerg": ERROR + 10}
_state = {"level": INFO}


def setup(level: str | None = None) -> None:
    """STRATA_LOG_LEVEL or SYSTEMD_LOG_LEVEL (debug, info, warning, err) decide."""
    name = (level or os.environ.get("STRATA_LOG_LEVEL") or os.environ.get("SYSTEMD_LOG_LEVEL")
            or "info").lower()
    _state["level"] = _NAMES.get(name, INFO)


def enabled(level: int) -> bool:
    return level >= _state["level"]


_listeners: list[Callable[[int, str], None]] = []


class listen:  # noqa: N801 - used like a function: `with log.listen(fn):`
    """Also hand every message of INFO and above to `fn(level, message)` while the `with`
    block runs (the varlink service streams them as progress replies)."""

    def __init__(self, fn: Callable[[int, str], None]) -> None:
        self.fn = fn

    def __enter__(self) -> None:
        _listeners.append(self.fn)

    def __exit__(self, *exc: object) -> None:
        _listeners.remove(self.fn)


def _emit(level: int, tag: str, msg: str) -> None:
    if level >= INFO:
        for fn in list(_listeners):
            fn(level, msg)
    if level >= _state["level"]:
        line = f"{tag}: {msg}\n" if _state["level"] <= DEBUG else msg + "\n"
        try:
            sys.stderr.write(line)
            sys.stderr.flush()
        except (OSError, ValueError):
            pass


def debug(msg: str) -> None:
    _emit(DEBUG, "debug", msg)


def info(msg: str) -> None:
    _emit(INFO, "info", msg)


def warning(msg: str) -> None:
    _emit(WARNING, "warning", msg)


def error(msg: str) -> None:
    _emit(ERROR, "error", msg)
