"""`strata publish`: keep a TUF repository of extension images (strata-publish(8) in
docs/reference.md)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from strata import log
from strata.cli.output import dump_json, write
from strata.cli.parsing import Parser, json_mode
from strata.errors import ErrorKind, StrataError

if TYPE_CHECKING:
    from strata.update.publish import Report

HELP = """\
strata publish IMAGE... --repo=DIR [OPTIONS...]
strata publish --repo=DIR --refresh-timestamp | --resign | --rotate-key=ROLE

Publish extension images to a TUF repository that any static web server or CDN
can serve (created, with new keys, on first use): the images under targets/,
signed metadata under metadata/ (root, targets with each image's name, version,
class and compatibility fields, snapshot, timestamp; consistent snapshots), and
for systemd-sysupdate targets/SHA256SUMS and sysupdate.d/*.transfer. Devices
update from it with 'strata update'.

Options:
  -h --help               Show this help
     --repo=DIR           The repository directory (required)
     --keys=DIR           The signing keys (default: DIR.keys beside the
                          repository; never inside it)
     --url=URL            Where the repository is served (for the sysupdate
                          transfer files; remembered)
     --expires=ROLE=DURATION[,...]
                          Lifetime of newly signed metadata: root (365d), targets
                          (90d), snapshot (7d), timestamp (1d); units s m h d w y
     --refresh-timestamp  Sign a new timestamp (and snapshot if it would expire
                          first): run it from cron, well within the timestamp's
                          lifetime
     --resign             Sign new targets, snapshot and timestamp versions with
                          fresh expiry dates
     --rotate-key=ROLE    Replace a role's key (root, targets, snapshot,
                          timestamp); the old one goes to KEYS/retired/
     --json=pretty|short|off
                          Print the result as JSON on standard output

Key files are unencrypted PEM unless $STRATA_KEY_PASSPHRASE is set.
"""


def build_parser() -> Parser:
    p = Parser("strata publish")
    p.add_argument("-h", "--help", action="store_true")
    p.add_argument("images", nargs="*")
    p.add_argument("--repo")
    p.add_argument("--keys")
    p.add_argument("--url")
    p.add_argument("--expires", action="append", default=[])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--refresh-timestamp", action="store_true")
    mode.add_argument("--resign", action="store_true")
    mode.add_argument("--rotate-key", metavar="ROLE")
    p.add_argument("--json", type=json_mode, default="off")
    return p


def _report_json(r: Report) -> dict[str, Any]:
    return {
        "repository": r.repo,
        "published": [{"name": p.name, "version": p.version, "target": p.target,
                       "sha256": p.sha256, "size": p.length, "added": p.added}
                      for p in r.published],
        "roles": {role: {"version": v, "expires": e} for role, (v, e) in r.roles.items()},
        "createdKeys": list(r.created_keys),
        "signed": list(r.changed),
    }


def run(argv: Sequence[str]) -> int:
    ns = build_parser().parse_args(list(argv))
    if ns.help:
        write(HELP)
        return 0
    if not ns.repo:
        raise StrataError("strata publish: --repo=DIR is required.", kind=ErrorKind.USAGE,
                          hint="see 'strata publish --help'")
    from strata.update import expiry, publish

    expires = expiry.parse_expires(ns.expires)
    maintenance = ns.refresh_timestamp or ns.resign or ns.rotate_key
    if maintenance and ns.images:
        raise StrataError("Give images, or one of --refresh-timestamp, --resign, "
                          "--rotate-key, not both.", kind=ErrorKind.USAGE)
    if ns.refresh_timestamp:
        report = publish.refresh_timestamp(ns.repo, keys_dir=ns.keys, expires=expires)
    elif ns.resign:
        report = publish.resign(ns.repo, keys_dir=ns.keys, expires=expires)
    elif ns.rotate_key:
        report = publish.rotate_key(ns.repo, ns.rotate_key, keys_dir=ns.keys,
                                    expires=expires)
    elif ns.images:
        report = publish.publish(ns.repo, ns.images, keys_dir=ns.keys, expires=expires,
                                 url=ns.url)
    else:
        raise StrataError("Nothing to publish: give images, or --refresh-timestamp, "
                          "--resign or --rotate-key=ROLE.", kind=ErrorKind.USAGE)
    if ns.json != "off":
        write(dump_json(_report_json(report), ns.json))
    elif report.changed:
        versions = ", ".join(f"{role} v{report.roles[role][0]}" for role in report.changed)
        log.info(f"Signed {versions}; timestamp expires {report.roles['timestamp'][1]}.")
    return 0
