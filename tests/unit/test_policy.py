from __future__ import annotations

import pytest

from strata.errors import StrataError
from strata.policy import (
    CONFEXT_DEFAULT,
    IGNORE,
    OPEN,
    SYSEXT_DEFAULT,
    SYSEXT_STRICT,
    Flag,
    check,
    check_absent,
    parse,
    to_string,
)


@pytest.mark.parametrize(
    ("text", "designator", "expected"),
    [
        ("*", "root", "open"),
        ("-", "root", "ignore"),
        ("", "usr", "ignore"),
        ("~", "root", "absent"),
        ("root=verity+signed", "root", "verity+signed"),
        ("root=verity+signed", "usr", "ignore"),  # not listed: the default
        ("root=signed:=unprotected+absent", "home", "unprotected+absent"),
        ("usr=open", "usr", "open"),
        (" root = verity + signed ", "root", "verity+signed"),
    ],
)
def test_parse(text: str, designator: str, expected: str) -> None:
    flags = parse(text).flags_for(designator)
    assert to_string(flags & OPEN) == expected


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("root", "Missing '='"),
        ("root=bogus", "Unknown partition policy flag: bogus"),
        ("rot=verity", "Unknown partition designator: rot"),
        ("root=verity:root=signed", "specified more than once: root"),
        ("=open:=ignore", "Default partition policy flags specified more than once."),
    ],
)
def test_parse_errors(text: str, why: str) -> None:
    with pytest.raises(StrataError) as e:
        parse(text)
    assert why in str(e.value) and text in str(e.value)


@pytest.mark.parametrize(
    ("policy", "designator", "found", "allowed"),
    [
        (SYSEXT_DEFAULT, "root", Flag.UNPROTECTED, True),
        (SYSEXT_DEFAULT, "usr", Flag.UNPROTECTED, True),
        (CONFEXT_DEFAULT, "root", Flag.UNPROTECTED, True),
        (SYSEXT_STRICT, "root", Flag.UNPROTECTED, False),
        (SYSEXT_STRICT, "root", Flag.SIGNED, True),
        (parse("root=verity"), "root", Flag.UNPROTECTED, False),
        (parse("root=absent"), "root", Flag.UNPROTECTED, False),
        (parse("*"), "root", Flag.UNPROTECTED, True),
    ],
)
def test_check(policy: object, designator: str, found: Flag, allowed: bool) -> None:
    why = check(policy, designator, found)  # type: ignore[arg-type]
    assert (why is None) is allowed


def test_check_messages_and_gpt_flags() -> None:
    why = check(parse("root=verity+signed"), "root", Flag.UNPROTECTED)
    assert why == ("Partition root discovered with policy 'unprotected' but 'verity+signed' was "
                   "required, refusing.")
    ro = parse("root=unprotected+read-only-on")
    assert check(ro, "root", Flag.UNPROTECTED, gpt_flags=1 << 60) is None
    assert "read-only" in (check(ro, "root", Flag.UNPROTECTED, gpt_flags=0) or "")
    assert check_absent(parse("usr=unprotected"), "usr") is not None
    assert check_absent(SYSEXT_DEFAULT, "usr") is None
    assert parse("-").default == IGNORE
