"""The argparse pieces the systemd-style fronts share."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import NoReturn


def json_mode(value: str) -> str:
    """The type of --json=: pretty, short or off, as systemd's tools take it."""
    if value not in ("pretty", "short", "off"):
        raise argparse.ArgumentTypeError(f"Unknown argument to --json=: {value}")
    return value


def check_verb_options(ns: argparse.Namespace, only: Mapping[str, tuple[str, ...]],
                       names: Mapping[str, str]) -> None:
    """Refuse an option given with a verb that does not take it: `only` maps an option's
    dest to the verbs it is valid with, `names` its dest to how it is spelled."""
    from strata.errors import ErrorKind, StrataError

    for dest, verbs in only.items():
        value = getattr(ns, dest)
        if value not in (None, False) and ns.verb not in verbs:
            allowed = " and ".join(f"'{v}'" for v in verbs)
            raise StrataError(f"Option {names[dest]} is only valid with {allowed}.",
                              kind=ErrorKind.USAGE)


class UsageParser(argparse.ArgumentParser):
    """argparse for the strata-only commands whose errors go through main's one error path:
    a usage error (exit status 1) with a hint to --help."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog=prog, add_help=False, allow_abbrev=False)

    def error(self, message: str) -> NoReturn:
        from strata.errors import ErrorKind, StrataError

        raise StrataError(f"{self.prog}: {message}", kind=ErrorKind.USAGE,
                          hint=f"see '{self.prog} --help'")


class Formatter(argparse.HelpFormatter):
    """A fixed width: argparse builds a formatter for every add_argument(), and the default
    one asks the terminal for its size each time (our help texts are our own anyway)."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=100)


class Parser(argparse.ArgumentParser):
    """argparse that fails like systemd: one line on stderr, exit status 1."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog=prog, add_help=False, allow_abbrev=False, formatter_class=Formatter)

    def error(self, message: str) -> NoReturn:
        # argparse says "argument --x: <ours>" and "unrecognized arguments: --y"; print what
        # systemd (getopt + its parsers) prints instead.
        head, sep, rest = message.partition(": ")
        if head.startswith("argument ") and sep and rest.startswith(("Failed", "Unknown")):
            sys.stderr.write(rest + "\n")
        elif head == "unrecognized arguments" and sep:
            for arg in rest.split():
                sys.stderr.write(f"{self.prog}: unrecognized option '{arg}'\n")
        else:
            sys.stderr.write(f"{self.prog}: {message}\n")
        raise SystemExit(1)
