"""Tiny parsers shared by several modules, with systemd's exact vocabulary."""

from __future__ import annotations

_TRUE = frozenset({"1", "yes", "y", "true", "t", "on"})
_FALSE = frozenset({"0", "no", "n", "false", "f", "off"})


def parse_boolean(value: str) -> bool | None:
    """systemd's parse_boolean(): ASCII-case-insensitive 1/yes/y/true/t/on and
    0/no/n/false/f/off, None for anything else. Exact: surrounding whitespace is not stripped,
    so " false" is not false."""
    v = value.lower() if value.isascii() else value
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    return None


def parse_devnum(text: str) -> tuple[int, int] | None:
    """"MAJ:MIN" (decimal, as written in .systemd-sysext/dev) -> (major, minor), or None."""
    parts = text.strip().split(":")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        return None
    return int(parts[0]), int(parts[1])


def cescape(s: str) -> str:
    """systemd's cescape(): C escapes for control characters, quotes and backslash."""
    special = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t",
               "\v": "\\v", "\\": "\\\\", '"': '\\"', "'": "\\'"}
    out = []
    for ch in s:
        if ch in special:
            out.append(special[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return "".join(out)


def cunescape(s: str) -> str:
    """Inverse of cescape (the subset systemd writes: \\xNN, octal, and the named escapes)."""
    named = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
             "\\": "\\", '"': '"', "'": "'", "s": " "}
    out: list[str] = []
    i = 0
    while i < len(s):
        ch = s[i]
        if ch != "\\" or i + 1 >= len(s):
            out.append(ch)
            i += 1
            continue
        nxt = s[i + 1]
        if nxt in named:
            out.append(named[nxt])
            i += 2
        elif nxt == "x" and i + 3 < len(s) + 1 and all(c in "0123456789abcdefABCDEF"
                                                        for c in s[i + 2:i + 4]):
            out.append(chr(int(s[i + 2:i + 4], 16)))
            i += 4
        elif nxt in "01234567" and all(c in "01234567" for c in s[i + 1:i + 4]) \
                and len(s[i + 1:i + 4]) == 3:
            out.append(chr(int(s[i + 1:i + 4], 8)))
            i += 4
        else:
            raise ValueError(f"invalid escape sequence at offset {i}")
    return "".join(out)
