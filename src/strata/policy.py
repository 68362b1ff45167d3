"""Image policies (systemd's `--image-policy=` language, image-policy.c in v257).

A policy maps partition designators to the ways a partition may be used:
`root=verity+signed:usr=unprotected+absent:=ignore`. Flags: verity, signed, encrypted,
unprotected, unused, absent, open (all six), ignore (unused+absent), read-only-on/-off,
growfs-on/-off. "*" allows everything, "-" (or empty) ignores everything, "~" denies everything.
Designators not listed get the default (`=FLAGS`, else "ignore").

Parsing and checking are pure. `ImagePolicy.flags_for` is image_policy_get_exhaustively(): a
verity or signature partition without a rule of its own takes one derived from its data
partition's, and protection flags are masked where they mean nothing (verity for /home, any
protection for the verity partitions themselves). `check_image` runs dissect_image()'s checks
over a whole image, given how each partition was found.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

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
        flags = _get(self, designator)
        return flags if flags is not None else _normalized_for(designator, self.default)

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


#: data designator -> its verity and its verity signature designator (partition_verity_of() and
#: partition_verity_sig_of(): only root and usr have them)
VERITY_OF = {"root": "root-verity", "usr": "usr-verity"}
VERITY_SIG_OF = {"root": "root-verity-sig", "usr": "usr-verity-sig"}
_DATA_OF_VERITY = {v: d for d, v in VERITY_OF.items()}
_DATA_OF_SIG = {v: d for d, v in VERITY_SIG_OF.items()}


def _normalized_for(designator: str, flags: Flag) -> Flag:
    """partition_policy_normalized_flags(): unset groups filled in, then protection flags that
    make no sense for `designator` masked off."""
    flags = normalized(flags)
    if designator in _DATA_OF_VERITY or designator in _DATA_OF_SIG:
        # a verity or signature partition *is* the protection; it has none of its own
        flags &= ~(Flag.VERITY | Flag.SIGNED | Flag.ENCRYPTED)
    if designator not in VERITY_OF:
        flags &= ~(Flag.VERITY | Flag.SIGNED)
    if flags & USE_MASK == Flag.ABSENT:
        flags &= ~(READ_ONLY_MASK | GROWFS_MASK)
    return flags


def _get(policy: ImagePolicy, designator: str) -> Flag | None:
    """image_policy_get(): the rule for `designator`, or one synthesised for a verity (or
    signature) partition from its data partition's rule when that asks for verity (or
    signed); None when there is neither (the default applies)."""
    for name, flags in policy.rules:
        if name == designator:
            return _normalized_for(designator, flags)
    data = _DATA_OF_VERITY.get(designator) or _DATA_OF_SIG.get(designator)
    if data is None:
        return None
    data_flags = _get(policy, data)
    needed = Flag.VERITY | Flag.SIGNED if designator in _DATA_OF_VERITY else Flag.SIGNED
    if data_flags is None or not data_flags & needed:
        return None
    # it may be unused or absent when the data partition may; it inherits the GPT flag rules
    return _normalized_for(designator, Flag.UNPROTECTED
                           | (data_flags & (Flag.UNUSED | Flag.ABSENT | READ_ONLY_MASK
                                            | GROWFS_MASK)))


def to_string(flags: Flag) -> str:
    if flags & USE_MASK == OPEN and not flags & ~USE_MASK:
        return "open"
    if flags & USE_MASK == IGNORE and not flags & ~USE_MASK:
        return "ignore"
    words = [w for w, f in _WORDS.items() if w not in ("open", "ignore") and flags & f]
    return "+".join(words) or "-"


def simplified(flags: Flag) -> str:
    """partition_policy_flags_to_string(simplify=true), as systemd's messages show policies:
    "open"/"ignore" shortcuts, and a read-only or growfs pair left out when both are set."""
    use = flags & USE_MASK
    if use == OPEN:
        words = ["open"]
    elif use == IGNORE:
        words = ["ignore"]
    else:
        words = [w for w, f in (("verity", Flag.VERITY), ("signed", Flag.SIGNED),
                                ("encrypted", Flag.ENCRYPTED),
                                ("unprotected", Flag.UNPROTECTED), ("unused", Flag.UNUSED),
                                ("absent", Flag.ABSENT)) if flags & f]
    for pair in ((("read-only-on", Flag.READ_ONLY_ON), ("read-only-off", Flag.READ_ONLY_OFF)),
                 (("growfs-off", Flag.GROWFS_OFF), ("growfs-on", Flag.GROWFS_ON))):
        if bool(flags & pair[0][1]) != bool(flags & pair[1][1]):
            words += [w for w, f in pair if flags & f]
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
                f"'{simplified(flags)}' was required, refusing.")
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
    """A designator the image lacks must be allowed to be absent (found as 'absent')."""
    flags = policy.flags_for(designator)
    if not flags & Flag.ABSENT:
        return (f"Partition {designator} discovered with policy 'absent' but "
                f"'{simplified(flags)}' was required, refusing.")
    return None


@record
class Dissection:
    """What dissect_image() makes of an image under a policy."""

    #: why the policy refuses the image, or None
    refused: str | None
    #: the designators present and used; those the policy says to ignore ("unused") are not,
    #: so a signed image under `root=verity` is used as verity-only, and under
    #: `root=unprotected` without verity at all
    used: frozenset[str]


def check_image(policy: ImagePolicy, found: Mapping[str, int]) -> Dissection:
    """dissect_image()'s policy checks for a whole image. `found` maps each designator present
    (root, usr, their verity and signature partitions) to its GPT attribute bits, in partition
    table order; every other designator is absent.

    First each present partition must be allowed to exist (image_policy_may_use(): a policy of
    only `absent` refuses it, one of only `unused` ignores it). Then every designator, in
    systemd's order, is checked with how it was found: a data partition is *signed* with its
    verity and signature partitions used, *verity* with only the verity partition, else
    *unprotected*; a verity or signature partition is *unprotected*; an ignored one *unused*; a
    missing one *absent*."""
    used: list[str] = []
    for designator in found:
        use = policy.flags_for(designator) & USE_MASK
        if use == Flag.ABSENT:
            return Dissection(f"Partition of designator '{designator}' exists, but not allowed "
                              "by policy, refusing.", frozenset())
        if use & ~Flag.ABSENT == Flag.UNUSED:
            continue  # "exists, and policy dictates to ignore it"
        used.append(designator)
    for designator in DESIGNATORS:
        if designator in used:
            verity, sig = VERITY_OF.get(designator), VERITY_SIG_OF.get(designator)
            got = Flag.UNPROTECTED
            if verity is not None and verity in used:
                got = Flag.SIGNED if sig in used else Flag.VERITY
            why = check(policy, designator, got, gpt_flags=found[designator])
        elif designator in found:
            why = None  # ignored: its policy allows "unused", or it would not have been
        else:
            why = check_absent(policy, designator)
        if why:
            return Dissection(why, frozenset(used))
    return Dissection(None, frozenset(used))


def allows_unprotected(policy: ImagePolicy, designator: str) -> bool:
    """Whether `policy` lets a `designator` partition be used without verity: what decides if
    a verity-protected image may be mounted when its hash tree cannot be checked."""
    return bool(policy.flags_for(designator) & Flag.UNPROTECTED)
