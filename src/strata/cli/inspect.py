"""`strata inspect`: what an image is and what it holds, read without mounting. See
strata-inspect(8) in docs/reference.md."""

from __future__ import annotations

from collections.abc import Sequence

from strata.cli.check import bare_json, default_json_mode, json_mode
from strata.cli.output import dump_json, write
from strata.cli.parsing import Parser
from strata.errors import ErrorKind, StrataError

PROG = "strata inspect"

HELP = """\
strata inspect [OPTIONS...] IMAGE

Show an extension image without mounting it: format (directory, erofs,
squashfs, ext4, GPT and the partition used), size, sha256, class, the
extension-release fields, and every file with its type, mode, owner and size.

Options:
     --json[=pretty|short]
                          One JSON object instead
  -h --help               Show this help
"""


def build_parser() -> Parser:
    p = Parser(PROG)
    p.add_argument("images", nargs="*")
    p.add_argument("-h", "--help", action="store_true")
    p.add_argument("--json", type=json_mode, default="off")
    return p


def run(argv: Sequence[str]) -> int:
    ns = build_parser().parse_args(bare_json(argv))
    if ns.help:
        write(HELP)
        return 0
    if len(ns.images) != 1:
        raise StrataError("give exactly one image", kind=ErrorKind.USAGE,
                          hint="strata inspect IMAGE (see strata inspect --help)")
    from strata.check.inspect import inspect_image, render, to_json

    info = inspect_image(ns.images[0])
    if ns.json != "off":
        write(dump_json(to_json(info), ns.json or default_json_mode()))
    else:
        write(render(info))
    return 0
