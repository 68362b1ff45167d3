"""Tables and JSON in systemd's format (format-table.c / sd-json pretty printing)."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any

#: a table cell: text, several lines (systemd's TABLE_STRV), or None (shown as "-")
Cell = str | Sequence[str] | None


def format_timestamp(usec: int) -> str:
    """systemd's FORMAT_TIMESTAMP: "Mon 2026-11-23 13:17:28 UTC" in local time."""
    return time.strftime("%a %Y-%m-%d %H:%M:%S %Z", time.localtime(usec / 1_000_000))


def _lines(cell: Cell) -> list[str]:
    if cell is None:
        return ["-"]
    if isinstance(cell, str):
        return [cell]
    return list(cell) or [""]


def render_table(headers: Sequence[str], rows: Sequence[Sequence[Cell]], *, legend: bool = True
                 ) -> str:
    """Columns separated by one space, padded to the widest cell, the last one unpadded;
    multi-line cells continue on following lines (other cells padded with blanks, exactly as
    systemd prints them); the header is upper case."""
    grid = [[_lines(c) for c in row] for row in rows]
    head = [h.upper() for h in headers]
    widths = [len(h) if legend else 0 for h in head]
    for row in grid:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], *(len(line) for line in cell))
    out: list[str] = []

    def emit(cells: Sequence[str]) -> None:
        parts = [c.ljust(widths[i]) if i < len(cells) - 1 else c for i, c in enumerate(cells)]
        out.append(" ".join(parts))

    if legend:
        emit(head)
    for row in grid:
        height = max(len(c) for c in row)
        for k in range(height):
            emit([c[k] if k < len(c) else "" for c in row])
    return "\n".join(out) + ("\n" if out else "")


def _pretty(value: Any, depth: int) -> str:
    import json

    pad = "\t" * (depth + 1)
    end = "\t" * depth
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [f"{pad}{json.dumps(k, ensure_ascii=False)} : {_pretty(v, depth + 1)}"
                 for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + end + "}"
    if isinstance(value, list):
        if not value:
            return "[]"
        return "[\n" + ",\n".join(pad + _pretty(v, depth + 1) for v in value) + "\n" + end + "]"
    return json.dumps(value, ensure_ascii=False)


def dump_json(value: Any, mode: str) -> str:
    """--json=short (compact) or pretty (tabs, "key" : value), newline-terminated."""
    import json

    if mode == "pretty":
        return _pretty(value, 0) + "\n"
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")) + "\n"


def write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()
