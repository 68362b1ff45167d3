"""What a run found: the guest's pytest results (JUnit XML), and the excerpts shown when
something went wrong. Pure functions over text."""

from __future__ import annotations

import enum
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


class Outcome(enum.Enum):
    PASSED = "passed"
    FAILED = "failed"
    ERROR = "error"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Case:
    boot: int
    name: str  # file::test as pytest names it
    outcome: Outcome
    seconds: float
    message: str = ""  # first line of the failure/skip message
    details: str = ""  # the traceback or output pytest recorded


def parse_junit(text: str, boot: int) -> list[Case]:
    """The test cases of a pytest --junitxml file."""
    root = ET.fromstring(text)
    out: list[Case] = []
    for tc in root.iter("testcase"):
        classname = tc.get("classname", "")
        module = classname.rsplit(".", 1)[-1] if classname else ""
        name = f"{module}::{tc.get('name', '?')}" if module else tc.get("name", "?")
        outcome, message, details = Outcome.PASSED, "", ""
        for child, kind in (("failure", Outcome.FAILED), ("error", Outcome.ERROR),
                            ("skipped", Outcome.SKIPPED)):
            el = tc.find(child)
            if el is not None:
                outcome = kind
                text = (el.get("message") or "").strip()
                message = text.splitlines()[0] if text else ""
                details = (el.text or "").strip()
                break
        out.append(Case(boot, name, outcome, float(tc.get("time") or 0.0), message, details))
    return out


def counts(cases: Iterable[Case]) -> Counter[Outcome]:
    return Counter(c.outcome for c in cases)


def summary_line(cases: Sequence[Case], problems: int = 0) -> str:
    """The closing line, in the form CI readers recognise: "N passed, N failed". A boot that
    died (`problems`) counts as a failure: its tests never reported."""
    c = counts(cases)
    failed = c[Outcome.FAILED] + c[Outcome.ERROR] + problems
    return (f"system-tests: {c[Outcome.PASSED]} passed, {failed} failed, "
            f"{c[Outcome.SKIPPED]} skipped")


def table(cases: Sequence[Case]) -> str:
    """One line per test: boot, outcome, seconds, name (and why, when not passed)."""
    lines = []
    for c in cases:
        why = f"  -- {c.message}" if c.outcome is not Outcome.PASSED and c.message else ""
        lines.append(f"  boot {c.boot}  {c.outcome.value.upper():7} {c.seconds:7.1f}s  "
                     f"{c.name}{why}")
    return "\n".join(lines)


def tail(text: str, n: int) -> str:
    lines = text.rstrip("\n").splitlines()
    return "\n".join(lines[-n:])


def console_excerpt(console: str, n: int = 60) -> str:
    """The end of the serial console, where a panic, a hung start job or the last test
    output is; escape sequences of systemd's status lines removed."""
    import re

    clean = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", console)
    return tail(clean, n)


def journal_excerpt(journal: str, test_names: Sequence[str] = (), n: int = 40) -> str:
    """Lines of the guest's journal worth showing with a failure: the warnings and errors
    (given as the `-p warning` export), the last `n` of them; if the failing tests logged
    their names (guestlib marks each test's start and end in the journal), the lines between
    the first such mark and its end instead."""
    lines = journal.rstrip("\n").splitlines()
    for name in test_names:
        start = next((i for i, line in enumerate(lines) if f"BEGIN {name}" in line), None)
        if start is None:
            continue
        end = next((i for i in range(start, len(lines)) if f"END {name}" in lines[i]),
                   len(lines) - 1)
        return "\n".join(lines[start:end + 1][-n * 3:])
    return "\n".join(lines[-n:])


def unfinished_test(journal: str) -> str | None:
    """The test that had begun and not ended when the journal stops (the one a hang or a
    crash interrupted), from the BEGIN/END marks the scenarios write."""
    running: str | None = None
    for line in journal.splitlines():
        _, begin, name = line.partition("BEGIN ")
        if begin:
            running = name.strip()
        elif running is not None and f"END {running}" in line:
            running = None
    return running
