"""`strata check`: lint extension images before they reach a device. See strata-check(8) in
docs/reference.md; the rules are in strata.check."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from strata.cli.output import dump_json, write
from strata.cli.parsing import Parser
from strata.cli.parsing import json_mode as strict_json_mode
from strata.errors import ErrorKind, StrataError
from strata.model import ExtClass

PROG = "strata check"

HELP = """\
strata check [OPTIONS...] IMAGE...

Check extension images (directories, erofs/squashfs/ext4 images, GPT disk
images) without mounting them: layout, release file, permissions, ELF
programs and libraries, and conflicts with the host and with each other.

Options:
     --host=ROOT          Check against the OS tree at ROOT (/ for this
                          machine): compatibility, missing libraries, glibc
                          version, files replaced, merged-bin /usr/sbin
     --class=sysext|confext
                          Check as this class (default: from the release
                          files, else from the content)
     --json[=pretty|short]
                          One JSON list of findings: image, rule, severity,
                          path, message, hint
     --list-rules         Show the rules and exit
  -h --help               Show this help

Exit status: 0 no findings, or only info; 2 warnings but no errors;
1 errors, or the check could not run.
"""


def json_mode(value: str) -> str:
    """--json=pretty|short|off, or "" for a bare --json (see bare_json)."""
    return value if value == "" else strict_json_mode(value)


def bare_json(argv: Sequence[str]) -> list[str]:
    """A bare "--json" means "--json=" (the default mode): its value is optional, and an
    optional value would otherwise swallow the image path that follows it."""
    return ["--json=" if a == "--json" else a for a in argv]


def default_json_mode() -> str:
    """A bare --json: pretty on a terminal, short in a pipe (systemd's -j)."""
    return "pretty" if sys.stdout.isatty() else "short"


def _class(value: str) -> ExtClass:
    try:
        return ExtClass(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"Unknown argument to --class=: {value} (sysext or confext)") from None


def build_parser() -> Parser:
    p = Parser(PROG)
    p.add_argument("images", nargs="*")
    p.add_argument("-h", "--help", action="store_true")
    p.add_argument("--host")
    p.add_argument("--class", dest="cls", type=_class)
    p.add_argument("--json", type=json_mode, default="off")
    p.add_argument("--list-rules", action="store_true")
    return p


def _list_rules() -> str:
    from strata.check.findings import Rule

    width = max(len(r.value) for r in Rule)
    return "".join(f"{r.value.ljust(width)}  {r.description}\n" for r in Rule)


def run(argv: Sequence[str]) -> int:
    ns = build_parser().parse_args(bare_json(argv))
    if ns.help:
        write(HELP)
        return 0
    if ns.list_rules:
        write(_list_rules())
        return 0
    if not ns.images:
        raise StrataError("no image given", kind=ErrorKind.USAGE,
                          hint="strata check IMAGE... (see strata check --help)")
    from strata.check.findings import exit_status
    from strata.check.report import render, to_json
    from strata.check.runner import check_images

    reports = check_images(ns.images, host=ns.host, cls=ns.cls)
    if ns.json != "off":
        write(dump_json(to_json(reports), ns.json or default_json_mode()))
    else:
        write(render(reports))
    return exit_status(reports)
