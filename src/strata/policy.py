"""Image policies (systemd's `--image-policy=` language, image-policy.c in v257).

A policy maps partition designators to the ways a partition may be used:
`root=verity+signed:usr=unprotected+absent:=ignore`. Flags: verity, signed, encrypted,
unprotected, unused, absent, open (all six), ignore (unused+absent), read-only-on/-off,
growfs-on/-off. "*" allows everything, "-" (or empty) ignores everything, "~" denies everything.
Designators not listed get the default (`=FLAGS`, else "ignore").

Parsing and checking are pure. Strata's images are not verity-protected yet, so the check that
matters today is whether the policy allows an `unprotected` root (or usr) partition.
"""

from __future__ import annotations

import enum

from strata.errors import ErrorKind, StrataError
from strata.record import record


class Flag(enum.IntFlag):
    VERITY = 1 << 0
    SIGNED = 1 << 1
    ENCRYPTED = 1 << 2
    UNPROTECTED = 1 << 3
    UNUSED = 1 << 4
    ABSENT = 1 << 5
    READ_ONLY_OFF = 1 << 6
    READ_ONLY_ON = 1 << 7
    GROWFS_OFF = 1 << 8
    GROWFS_ON = 1 << 9


OPEN = Flag.VERITY | Flag.SIGNED | Flag.ENCRYPTED | Flag.UNPROTECTED | Flag.UNUSED | Flag.ABSENT
IGNORE = Flag.UNUSED | Flag.ABSENT
USE_MASK = OPEN
READ_ONLY_MASK = Flag.READ_ONLY_OFF | Flag.READ_ONLY_ON
GROWFS_MASK = Flag.GROWFS_OFF | Flag.GROWFS_ON

_WORDS = {
    "verity": Flag.VERITY, "signed": Flag.SIGNED, "encrypted": Flag.ENCRYPTED,
    "unprotected": Flag.UNPROTECTED, "unused": Flag.UNUSED, "absent": Flag.ABSENT,
    "open": OPEN, "ignore": IGNORE, "read-only-on": Flag.READ_ONLY_ON,
    "read-only-off": Flag.READ_ONLY_OFF, "growfs-on": Flag.GROWFS_ON,
    "growfs-off": Flag.GROWFS_OFF,
}

DESIGNATORS = ("root", "usr", "home", "srv", "esp", "xbootldr", "swap", "root-verity",
               "usr-verity", "root-verity-sig", "usr-verity-sig", "tmp", "var")


@record
class ImagePolicy:
    rules: tuple[tuple[str, Flag], ...]
    default: Flag = IGNORE

    def flags_for(self, designator: str) -> Flag:
        """image_policy_get_exhaustively(): the normalized flags for one designator."""
        for name, flags in self.rules:
            if name == designator:
                return normalized(flags)
        return normalized(self.default)

    def __str__(self) -> str:
        parts = [f"{n}={to_string(f)}" for n, f in self.rules]
        parts.append(f"={to_string(self.default)}")
        return ":".join(parts)


def normalized(flags: Flag) -> Flag:
    """Unset groups mean "anything" (partition_policy_normalized_flags)."""
    if not flags & USE_MASK:
        flags |= OPEN
    if not flags & READ_ONLY_MASK:
        flags |= READ_ONLY_MASK
    if not flags & GROWFS_MASK:
        flags |= GROWFS_MASK
    return flags


def to_string(flags: Flag) -> str:
    if flags & USE_MASK == OPEN and not flags & ~USE_MASK:
        return "open"
    if flags & USE_MASK == IGNORE and not flags & ~USE_MASK:
        return "ignore"
    words = [w for w, f in _WORDS.items() if w not in ("open", "ignore") and flags & f]
    return "+".join(words) or "-"


def _bad(text: str, why: str) -> StrataError:
    return StrataError(f"Failed to parse image policy '{text}': {why}", kind=ErrorKind.USAGE)


def parse_flags(text: str, policy: str) -> Flag:
    value = text.strip()
    if value in ("", "-"):
        return Flag(0)
    flags = Flag(0)
    for word in value.split("+"):
        f = _WORDS.get(word.strip())
        if f is None:
            raise _bad(policy, f"Unknown partition policy flag: {word.strip()}")
        flags |= f
    return flags


def parse(text: str) -> ImagePolicy:
    """image_policy_from_string()."""
    if text in ("", "-"):
        return ImagePolicy(rules=(), default=IGNORE)
    if text == "*":
        return ImagePolicy(rules=(), default=OPEN)
    if text == "~":
        return ImagePolicy(rules=(), default=Flag.ABSENT)
    rules: list[tuple[str, Flag]] = []
    default: Flag | None = None
    for item in text.split(":"):
        name, eq, value = item.partition("=")
        if not eq:
            raise _bad(text, f"Missing '=' in policy expression: {item}")
        name = name.strip()
        flags = parse_flags(value, text)
        if not name:
            if default is not None:
                raise _bad(text, "Default partition policy flags specified more than once.")
            default = flags
            continue
        if name not in DESIGNATORS:
            raise _bad(text, f"Unknown partition designator: {name}")
        if any(n == name for n, _ in rules):
            raise _bad(text, f"Partition designator specified more than once: {name}")
        rules.append((name, flags))
    rules.sort(key=lambda r: DESIGNATORS.index(r[0]))
    return ImagePolicy(rules=tuple(rules), default=IGNORE if default is None else default)


ALL = "root=verity+signed+encrypted+unprotected+absent"
SYSEXT_DEFAULT = parse(f"{ALL}:usr=verity+signed+encrypted+unprotected+absent")
CONFEXT_DEFAULT = parse(ALL)
SYSEXT_STRICT = parse("root=signed+absent:usr=signed+absent")
CONFEXT_STRICT = parse("root=signed+absent")
DENY = parse("~")


def check(policy: ImagePolicy, designator: str, found: Flag, *, gpt_flags: int = 0) -> str | None:
    """Why `policy` refuses a partition of `designator` found with protection `found`
    (image_policy_may_use + check_protection + check_partition_flags), or None if allowed."""
    flags = policy.flags_for(designator)
    if flags & USE_MASK == Flag.ABSENT:
        return (f"Partition of designator '{designator}' exists, but not allowed by policy, "
                "refusing.")
    if not found & flags:
        return (f"Partition {designator} discovered with policy '{to_string(found)}' but "
                f"'{to_string(flags & USE_MASK)}' was required, refusing.")
    read_only = bool(gpt_flags & (1 << 60))
    if flags & READ_ONLY_MASK == (Flag.READ_ONLY_OFF if read_only else Flag.READ_ONLY_ON):
        return (f"Partition {designator} has 'read-only' flag incorrectly set (must be "
                f"{int(not read_only)}, is {int(read_only)}), refusing.")
    growfs = bool(gpt_flags & (1 << 59))
    if flags & GROWFS_MASK == (Flag.GROWFS_OFF if growfs else Flag.GROWFS_ON):
        return (f"Partition {designator} has 'growfs' flag incorrectly set (must be "
                f"{int(not growfs)}, is {int(growfs)}), refusing.")
    return None


def check_absent(policy: ImagePolicy, designator: str) -> str | None:
    """A designator the image lacks must be allowed to be absent."""
    if not policy.flags_for(designator) & Flag.ABSENT:
        return (f"Partition {designator} is absent, but policy requires it "
                f"('{to_string(policy.flags_for(designator) & USE_MASK)}'), refusing.")
    return None
