"""systemd's version comparison: `strverscmp_improved()`, src/fundamental/string-util-fundamental.c.

It decides two things for sysext/confext: the overlay layer order (images are stacked in descending
order of their *names*, so the highest name wins a conflict) and which entry of a `.v/` directory
vpick chooses. Both must agree with systemd byte for byte, so this is a literal port working on the
UTF-8 bytes of the strings, including the corner cases the C code has:

* a NUL ends the string (C strings);
* characters other than ASCII letters, digits and `~-^.` only separate segments and are otherwise
  ignored, so "123_aa2" equals "123aa+2" and all non-ASCII text compares equal;
* after a `~` both sides advance one byte unconditionally, and the end-of-string test then compares
  the next bytes as *signed* chars (x86-64 `char`), which is what systemd does.

Identical in systemd v252 through v262.
"""

from __future__ import annotations

import functools

_TILDE, _DASH, _CARET, _DOT = 0x7E, 0x2D, 0x5E, 0x2E


def _isdigit(c: int) -> bool:
    return 0x30 <= c <= 0x39


def _isalpha(c: int) -> bool:
    return 0x41 <= c <= 0x5A or 0x61 <= c <= 0x7A


def _is_valid_version_char(c: int) -> bool:
    return _isdigit(c) or _isalpha(c) or c in (_TILDE, _DASH, _CARET, _DOT)


def _signed(c: int) -> int:
    """A byte as C's (signed, on x86-64) `char`."""
    return c - 256 if c >= 128 else c


def _cmp(x: int, y: int) -> int:
    return (x > y) - (x < y)


def _bytes_cmp(p: bytes, q: bytes) -> int:
    """strncmp() over equal-length slices, normalised like CMP() to -1/0/1."""
    return (p > q) - (p < q)


def _to_c_bytes(s: str | None) -> bytes:
    """The C string systemd would see: UTF-8 (raw bytes kept via surrogateescape), cut at NUL."""
    if s is None:  # strempty()
        return b""
    raw = s.encode("utf-8", "surrogateescape")
    nul = raw.find(b"\0")
    return raw if nul < 0 else raw[:nul]


def strverscmp_improved(a: str | None, b: str | None) -> int:
    """Compare two version strings like systemd; returns -1, 0 or 1 (`None` counts as "")."""
    # A sentinel NUL at the end makes `x[i]` always valid where C would read the terminator.
    x = _to_c_bytes(a) + b"\0"
    y = _to_c_bytes(b) + b"\0"
    i = j = 0

    while True:
        # Drop leading characters that cannot be part of a version.
        while x[i] != 0 and not _is_valid_version_char(x[i]):
            i += 1
        while y[j] != 0 and not _is_valid_version_char(y[j]):
            j += 1

        # '~' marks a pre-release: the side carrying it is older.
        if x[i] == _TILDE or y[j] == _TILDE:
            r = _cmp(x[i] != _TILDE, y[j] != _TILDE)
            if r:
                return r
            i += 1
            j += 1

        # One string ended: the longer one is newer (after the '~' check on purpose).
        if x[i] == 0 or y[j] == 0:
            return _cmp(_signed(x[i]), _signed(y[j]))

        # '-' separates version and release: the side carrying it is older.
        for sep in (_DASH, _CARET, _DOT):
            if x[i] == sep or y[j] == sep:
                r = _cmp(x[i] != sep, y[j] != sep)
                if r:
                    return r
                i += 1
                j += 1

        if _isdigit(x[i]) or _isdigit(y[j]):
            # Numeric segments; an empty one (the other side is alpha) is older.
            ii, jj = i, j
            while _isdigit(x[ii]):
                ii += 1
            while _isdigit(y[jj]):
                jj += 1
            r = _cmp(i != ii, j != jj)
            if r:
                return r
            # Leading zeros do not count: 00123 equals 123.
            while x[i] == 0x30:
                i += 1
            while y[j] == 0x30:
                j += 1
            # Longer number is larger; equal lengths compare as strings.
            r = _cmp(ii - i, jj - j)
            if r:
                return r
            r = _bytes_cmp(x[i:ii], y[j:jj])
            if r:
                return r
        else:
            # Alphabetic segments: compare the common prefix, then the longer one is newer.
            ii, jj = i, j
            while _isalpha(x[ii]):
                ii += 1
            while _isalpha(y[jj]):
                jj += 1
            n = min(ii - i, jj - j)
            r = _bytes_cmp(x[i:i + n], y[j:j + n])
            if r:
                return r
            r = _cmp(ii - i, jj - j)
            if r:
                return r

        i, j = ii, jj


def version_key(s: str | None) -> VersionKey:
    """A sort key ordering strings by `strverscmp_improved` (use with sorted(), min(), max())."""
    return VersionKey(s)


@functools.total_ordering
class VersionKey:
    """Wraps a string so that comparisons use `strverscmp_improved`."""

    __slots__ = ("value",)

    def __init__(self, value: str | None) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, VersionKey):
            return NotImplemented
        return strverscmp_improved(self.value, other.value) == 0

    def __lt__(self, other: VersionKey) -> bool:
        return strverscmp_improved(self.value, other.value) < 0

    def __hash__(self) -> int:  # equal keys may differ textually; keep hashing consistent
        return 0

    def __repr__(self) -> str:
        return f"VersionKey({self.value!r})"
