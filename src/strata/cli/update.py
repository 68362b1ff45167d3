"""`strata update`: bring the device's extensions up to date from a TUF repository
(strata-update(8) in docs/reference.md)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from strata import log
from strata.cli.output import dump_json, render_table, write
from strata.cli.parsing import Parser, json_mode
from strata.errors import ErrorKind, StrataError

if TYPE_CHECKING:
    from strata.update.client import Plan, Result

HELP = """\
strata update [--check|--apply] [OPTIONS...]

Update the extensions enabled for the running OS release (and those listed in
[update] extensions= of /etc/strata/strata.toml) to the newest version in a TUF
repository that this device can merge: download (resumed after an interruption),
verify against the signed metadata, install into the store, enable, refresh
atomically, check health; roll back when the check fails. An update interrupted
at any point is completed or rolled back by the next run.

Modes:
     --apply              Update (the default)
     --check              Show what an update would do; change nothing
     --init               Install the repository's trust anchor: needs --repo and
                          --root-file (the repository's metadata/root.json,
                          obtained out of band)

Options:
  -h --help               Show this help
     --repo=URL           The repository (default: [update] repository, else the
                          one --init recorded)
     --root=PATH          Operate on the OS tree at PATH
     --root-file=FILE     --init: the trusted root.json
     --force              --init: replace an installed trust anchor
     --retry-rejected     Take versions this device rolled back before again
     --json=pretty|short|off
                          Print the result as JSON on standard output
     --no-legend          --check: no column headers

Exit status: 0 when up to date or updated, 1 on an error or a roll-back.
"""


def build_parser() -> Parser:
    p = Parser("strata update")
    p.add_argument("-h", "--help", action="store_true")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true")
    mode.add_argument("--apply", action="store_true")
    mode.add_argument("--init", action="store_true")
    p.add_argument("--repo")
    p.add_argument("--root")
    p.add_argument("--root-file")
    p.add_argument("--force", action="store_true")
    p.add_argument("--retry-rejected", action="store_true")
    p.add_argument("--json", type=json_mode, default="off")
    p.add_argument("--no-legend", action="store_true")
    return p


class TerminalProgress:
    """One line per download, redrawn in place on a terminal (at most 10 times a second);
    elsewhere a line when a download starts and one when it is done."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.last = 0.0
        self.label: str | None = None

    def __call__(self, label: str, done: int, total: int) -> None:
        if label != self.label:
            self.label = label
            if not self.tty:
                resumed = f", resuming at {done} bytes" if done else ""
                log.info(f"Downloading {label} ({total} bytes{resumed}).")
        if self.tty:
            now = time.monotonic()
            if done < total and now - self.last < 0.1:
                return
            self.last = now
            pct = 100 * done // total if total else 100
            end = "\n" if done >= total else ""
            self.stream.write(f"\r{label}: {pct:3d}% ({done / 1e6:.1f}/{total / 1e6:.1f} MB)"
                              f"{end}")
            self.stream.flush()


def _plan_json(plan: Plan) -> dict[str, Any]:
    return {
        "repository": plan.url,
        "updates": [{"name": p.name, "from": p.installed.version if p.installed else None,
                     "to": p.offer.version, "file": p.offer.path, "size": p.offer.length,
                     "sha256": p.offer.sha256} for p in plan.updates],
        "current": [{"name": n, "version": v} for n, v in plan.current],
        "notOffered": list(plan.not_offered),
        "problems": list(plan.problems),
        "pending": plan.pending,
    }


def _result_json(r: Result) -> dict[str, Any]:
    out = _plan_json(r.plan)
    out.update({
        "updated": [{"name": n, "from": a, "to": b} for n, a, b in r.updated],
        "rolledBack": r.rolled_back,
        "reason": r.reason,
        "health": ([{"check": c.what, "ok": c.ok, "detail": c.detail}
                    for c in r.health.checks] if r.health is not None else None),
        "removed": list(r.removed),
        "recovered": r.recovered,
    })
    return out


def _print_plan(plan: Plan, ns: argparse.Namespace) -> int:
    if ns.json != "off":
        write(dump_json(_plan_json(plan), ns.json))
        return 1 if plan.problems else 0
    if plan.pending:
        log.warning(f"An interrupted update is pending (step '{plan.pending}'): "
                    "'strata update' completes or rolls it back.")
    rows: list[list[str | None]] = []
    for p in plan.updates:
        rows.append([p.name, p.installed.version if p.installed else None, p.offer.version,
                     f"{p.offer.length / 1e6:.1f} MB", "update"])
    for name, version in plan.current:
        rows.append([name, version, version, None, "up to date"])
    for name in plan.not_offered:
        rows.append([name, None, None, None, "not in repository"])
    if rows:
        write(render_table(["name", "installed", "available", "size", "state"], rows,
                           legend=not ns.no_legend))
    else:
        log.info("No extension is enabled, and [update] extensions= names none.")
    for problem in plan.problems:
        log.error(problem)
    return 1 if plan.problems else 0


def run(argv: Sequence[str]) -> int:
    ns = build_parser().parse_args(list(argv))
    if ns.help:
        write(HELP)
        return 0
    root = ns.root or "/"
    if not os.path.isdir(root):
        raise StrataError(f"Root directory '{root}' does not exist or is not a directory.",
                          kind=ErrorKind.NOT_FOUND)
    if ns.init:
        if not ns.repo or not ns.root_file:
            raise StrataError("--init needs --repo=URL and --root-file=FILE.",
                              kind=ErrorKind.USAGE)
        from strata.update import remote

        version = remote.init(root, ns.repo, ns.root_file, force=ns.force)
        log.info(f"Trusting repository {ns.repo} (root version {version}); metadata in "
                 f"{remote.tuf_dir(root)}.")
        return 0
    if ns.root_file or ns.force:
        raise StrataError("--root-file and --force go with --init.", kind=ErrorKind.USAGE)
    from strata.update import client

    if ns.check:
        return _print_plan(client.check(root, url=ns.repo, retry_rejected=ns.retry_rejected),
                           ns)
    result = client.apply(root, url=ns.repo, progress=TerminalProgress(),
                          retry_rejected=ns.retry_rejected)
    if ns.json != "off":
        write(dump_json(_result_json(result), ns.json))
    if result.recovered:
        log.info(f"The interrupted update was {result.recovered}.")
    if result.rolled_back:
        log.error(f"The update was rolled back: {result.reason}")
        return 1
    if ns.json == "off" and result.removed:
        log.info(f"Removed {len(result.removed)} old version(s).")
    return 0
