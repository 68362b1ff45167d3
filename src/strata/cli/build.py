"""`strata build`: extension images from a spec (strata-build(8) in docs/reference.md)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from strata.cli.parsing import UsageParser, json_mode
from strata.errors import ErrorKind, StrataError

HELP = """\
strata build SPEC.yaml [OPTIONS...]

Build system and configuration extension images (erofs, squashfs or a
directory) from a spec: trees, files, local .deb/.rpm packages and packages
fetched with apt-get download. Reproducible: the same inputs give the same
bytes. A Dalec spec (name, version, dependencies.sysext) builds as is.

Options:
  -h --help                 Show this help
  -o --output=DIR           Write the images into DIR (default: the current
                            directory; created if missing)
     --json[=pretty|short]  Print the build report as JSON on standard output
     --source-date-epoch=N  Time of every file and of the image (default:
                            $SOURCE_DATE_EPOCH, else the spec's
                            source_date_epoch, else 0)
     --keep-staging         Keep the staged trees (DIR/.strata-build-*) for
                            debugging; the report names the directory

See docs/reference.md, strata-build(8), for the spec.
"""


def _epoch(value: str) -> int:
    from strata.build.spec import EPOCH_MAX

    if not value.isdigit() or int(value) > EPOCH_MAX:
        raise argparse.ArgumentTypeError(f"not a number of seconds between 0 and {EPOCH_MAX}: "
                                         f"{value}")
    return int(value)


def run(argv: Sequence[str]) -> int:
    p = UsageParser("strata build")
    p.add_argument("-h", "--help", action="store_true")
    p.add_argument("spec", nargs="?")
    p.add_argument("-o", "--output", default=".")
    p.add_argument("--json", nargs="?", const="pretty", default="off", type=json_mode)
    p.add_argument("--source-date-epoch", type=_epoch)
    p.add_argument("--keep-staging", action="store_true")
    ns = p.parse_args(list(argv))
    if ns.help:
        sys.stdout.write(HELP)
        return 0
    if not ns.spec:
        raise StrataError("strata build: a spec file is required", kind=ErrorKind.USAGE,
                          hint="strata build SPEC.yaml [-o DIR]")
    from pathlib import Path

    from strata.build.image import BuildRequest, build
    from strata.build.spec import load_spec
    from strata.cli.output import dump_json, write

    spec = load_spec(ns.spec)
    report = build(BuildRequest(spec=spec, output_dir=Path(ns.output),
                                source_date_epoch=ns.source_date_epoch,
                                keep_staging=ns.keep_staging))
    if ns.json != "off":
        write(dump_json(report.to_json(), ns.json))
    else:
        write(report.summary())
    return 0
