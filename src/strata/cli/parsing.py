"""The argparse pieces the systemd-style fronts share."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn


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
