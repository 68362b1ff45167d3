"""Logging in systemd's style: plain lines on stderr, no prefixes unless debugging."""

from __future__ import annotations

import logging
import os
import sys

_LOGGER = logging.getLogger("strata")


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if _LOGGER.level <= logging.DEBUG:
            return f"{record.levelname.lower()}: {msg}"
        return msg


def setup(level: str | None = None) -> None:
    """Configure once; SYSTEMD_LOG_LEVEL or STRATA_LOG_LEVEL (debug, info, warning, err) decide."""
    if _LOGGER.handlers:
        return
    name = (level or os.environ.get("STRATA_LOG_LEVEL") or os.environ.get("SYSTEMD_LOG_LEVEL")
            or "info").lower()
    lvl = {"debug": logging.DEBUG, "info": logging.INFO, "notice": logging.INFO,
           "warning": logging.WARNING, "err": logging.ERROR, "error": logging.ERROR,
           "crit": logging.CRITICAL}.get(name, logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    _LOGGER.addHandler(handler)
    _LOGGER.setLevel(lvl)
    _LOGGER.propagate = False


def debug(msg: str) -> None:
    _LOGGER.debug(msg)


def info(msg: str) -> None:
    _LOGGER.info(msg)


def warning(msg: str) -> None:
    _LOGGER.warning(msg)


def error(msg: str) -> None:
    _LOGGER.error(msg)
