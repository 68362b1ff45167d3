"""How long each role's signed metadata stays valid (pure).

Defaults follow the TUF specification's advice: the offline roles (root, targets) last long, the
online ones short, so that a repository mirror that stops being refreshed (a frozen or
replayed timestamp) is noticed by devices within a day.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping

from strata.errors import ErrorKind, StrataError

ROLES = ("root", "targets", "snapshot", "timestamp")

DEFAULTS: Mapping[str, dt.timedelta] = {
    "root": dt.timedelta(days=365),
    "targets": dt.timedelta(days=90),
    "snapshot": dt.timedelta(days=7),
    "timestamp": dt.timedelta(days=1),
}

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}
_DURATION = re.compile(r"([0-9]+)\s*([smhdwy])")


def parse_duration(text: str) -> dt.timedelta:
    """"90d", "12h", "1y", "1d12h", "3600s": positive, whole units."""
    s = text.strip().lower()
    pos = 0
    total = 0
    while pos < len(s):
        m = _DURATION.match(s, pos)
        if m is None:
            raise StrataError(f"Invalid duration '{text}'", kind=ErrorKind.USAGE,
                              hint="a number with a unit: s, m, h, d, w, y (e.g. 7d, 12h)")
        total += int(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
        while pos < len(s) and s[pos] == " ":
            pos += 1
    if total <= 0:
        raise StrataError(f"Invalid duration '{text}': must be longer than zero",
                          kind=ErrorKind.USAGE)
    return dt.timedelta(seconds=total)


def parse_expires(specs: list[str] | tuple[str, ...]) -> dict[str, dt.timedelta]:
    """`--expires ROLE=DURATION[,ROLE=DURATION...]`, repeatable: the defaults with these
    changed."""
    out = dict(DEFAULTS)
    for spec in specs:
        for part in (p for p in spec.split(",") if p.strip()):
            role, sep, value = part.partition("=")
            role = role.strip()
            if not sep or role not in ROLES:
                raise StrataError(f"Invalid --expires '{part}'", kind=ErrorKind.USAGE,
                                  hint="ROLE=DURATION with ROLE one of " + ", ".join(ROLES))
            out[role] = parse_duration(value)
    return out


def utcnow() -> dt.datetime:
    # TUF metadata carries whole seconds
    return dt.datetime.now(dt.UTC).replace(microsecond=0)
