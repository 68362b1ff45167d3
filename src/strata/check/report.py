"""`strata check` output: human lines grouped by image, or JSON."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from strata.check.findings import ImageReport, Severity


def to_json(reports: Sequence[ImageReport]) -> list[dict[str, Any]]:
    """One object per finding: image, rule, severity, path, message, hint (null if none)."""
    return [{"image": r.image, "rule": f.rule.value, "severity": f.severity.value,
             "path": f.path, "message": f.message, "hint": f.hint}
            for r in reports for f in r.findings]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def summary(reports: Sequence[ImageReport]) -> str:
    counts = {s: sum(1 for r in reports for f in r.findings if f.severity is s)
              for s in Severity}
    return (f"{_plural(len(reports), 'image')}: {_plural(counts[Severity.ERROR], 'error')}, "
            f"{_plural(counts[Severity.WARNING], 'warning')}, "
            f"{counts[Severity.INFO]} info")


def render(reports: Sequence[ImageReport]) -> str:
    """Per image a heading "<image> (<class>, <format>)", then one line per finding:
    "  <severity> <path>: <message> (<hint>)"; a summary line at the end."""
    width = max(len(s.value) for s in Severity)
    lines: list[str] = []
    for r in reports:
        if not r.findings:
            lines.append(f"{r.image} ({r.description}): no findings")
            continue
        lines.append(f"{r.image} ({r.description}):")
        for f in r.findings:
            hint = f" ({f.hint})" if f.hint else ""
            lines.append(f"  {f.severity.value.ljust(width)} {f.path}: {f.message}{hint}")
    lines.append(summary(reports))
    return "\n".join(lines) + "\n"
