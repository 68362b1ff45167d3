"""parse_env_pairs(): every assignment in order, with parse_env()'s syntax and errors."""

from __future__ import annotations

import pytest

from strata.errors import ErrorKind, StrataError
from strata.release import parse_env, parse_env_pairs

PAIR_CASES: list[tuple[str, bytes | str, list[tuple[str, str]]]] = [
    ("empty", "", []),
    ("plain", "ID=debian\nVERSION_ID=12\n", [("ID", "debian"), ("VERSION_ID", "12")]),
    ("a repeated key is kept each time, in order",
     "AVOCADO_ON_MERGE=depmod\nID=_any\nAVOCADO_ON_MERGE=\"systemctl restart x\"\n"
     "AVOCADO_ON_MERGE=depmod\n",
     [("AVOCADO_ON_MERGE", "depmod"), ("ID", "_any"),
      ("AVOCADO_ON_MERGE", "systemctl restart x"), ("AVOCADO_ON_MERGE", "depmod")]),
    ("quoting and escapes as parse_env", "A='x y'\"z\"\nB=a\\ b  \nC=\"q\\\"r\"\n",
     [("A", "x yz"), ("B", "a b"), ("C", 'q"r')]),
    ("comments and lines without = are dropped", "# A=1\n; B=2\nJUNK\nC=3\n", [("C", "3")]),
    ("continuation lines", "A=foo\\\nbar\nA=2\n", [("A", "foobar"), ("A", "2")]),
    ("empty values count", "A=\nA=x\nA=", [("A", ""), ("A", "x"), ("A", "")]),
    ("unterminated quote runs to the end", 'A=1\nB="x\nA=2\n', [("A", "1"), ("B", "x\nA=2\n")]),
    ("stops at NUL", b"A=1\nA=2\0\nA=3\n", [("A", "1"), ("A", "2")]),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in PAIR_CASES],
                         ids=[c[0] for c in PAIR_CASES])
def test_parse_env_pairs(text: bytes | str, expected: list[tuple[str, str]]) -> None:
    pairs = parse_env_pairs(text, source="f")
    assert pairs == expected
    # the mapping systemd sees is the pairs with the last value winning, first position kept
    assert parse_env(text, source="f") == dict(pairs)
    assert list(parse_env(text, source="f")) == list(dict.fromkeys(k for k, _ in pairs))


def test_parse_env_is_unchanged_by_pairs() -> None:
    text = "A=1\nB=2\nA=3\n"
    parse_env_pairs(text, source="f")
    result = parse_env(text, source="f")
    assert result == {"A": "3", "B": "2"}
    assert type(result) is dict


def test_invalid_utf8_is_the_same_error() -> None:
    with pytest.raises(StrataError) as e:
        parse_env_pairs(b"A=1\nB=\xff\n", source="img:/rel")
    assert e.value.kind is ErrorKind.INVALID
    assert str(e.value) == "img:/rel:2: invalid UTF-8 value for key B: '\ufffd'"
