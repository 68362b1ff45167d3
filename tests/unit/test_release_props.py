"""Property tests for the env-file parser: round-trips, total error behaviour, last-wins."""

from __future__ import annotations

import re

from hypothesis import example, given
from hypothesis import strategies as st

from strata.errors import ErrorKind, StrataError
from strata.release import format_env, parse_env, quote_env_value

# What systemd's utf8_is_valid() refuses: surrogates and the Unicode noncharacters.
_NONCHAR = re.compile("[\ufdd0-\ufdef]")


def _valid_char(c: str) -> bool:
    cp = ord(c)
    return not (0xD800 <= cp <= 0xDFFF or _NONCHAR.match(c) or (cp & 0xFFFE) == 0xFFFE)


# Any value systemd could hold: valid UTF-8, no NUL (a C string ends there).
values = st.text(st.characters(blacklist_characters="\0").filter(_valid_char))
# Keys as os-release uses them (parse_env itself accepts far more, verbatim).
keys = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,15}", fullmatch=True)


@given(values)
@example("")
@example(" leading and trailing ")
@example('"')
@example("\\")
@example("line\\\ncontinued")
@example("\r\n")
@example("'single'")
def test_quoted_value_round_trips(value: str) -> None:
    assert parse_env(f"K={quote_env_value(value)}\n", source="t") == {"K": value}
    assert parse_env(f"K={quote_env_value(value)}", source="t") == {"K": value}


@given(st.dictionaries(keys, values))
def test_format_env_round_trips(fields: dict[str, str]) -> None:
    assert parse_env(format_env(fields).encode(), source="t") == fields


@given(st.lists(st.tuples(keys, values)))
def test_last_assignment_wins(pairs: list[tuple[str, str]]) -> None:
    text = "".join(f"{k}={quote_env_value(v)}\n" for k, v in pairs)
    expected: dict[str, str] = {}
    for k, v in pairs:
        expected[k] = v
    result = parse_env(text, source="t")
    assert result == expected
    assert list(result) == list(dict.fromkeys(k for k, _ in pairs))  # first position kept


@given(st.binary())
@example(b"A=\xff")
@example(b"\"'\\\n=\\")
def test_arbitrary_bytes_only_raise_strata_error(data: bytes) -> None:
    try:
        result = parse_env(data, source="t")
    except StrataError as e:
        assert e.kind is ErrorKind.INVALID
        assert str(e).startswith("t:")
        return
    for k, v in result.items():
        assert k and "\0" not in k and "\0" not in v
        assert all(_valid_char(c) for c in k + v)


@given(st.text())
def test_arbitrary_text_only_raises_strata_error(text: str) -> None:
    try:
        parse_env(text, source="t")
    except StrataError as e:
        assert e.kind is ErrorKind.INVALID


@given(st.text(st.sampled_from("AB= \t\n\r#;'\"\\`$x")))
def test_special_character_soup_never_crashes(text: str) -> None:
    result = parse_env(text, source="t")
    # keys never start with whitespace and never end with it
    for k in result:
        assert k.strip(" \t\n\r") == k
