"""`strata ext`: manage the extensions of a device (avocadoctl's `ext` verbs) on top of the
merge engine: which are enabled for which OS release, merged together (sysext and confext),
in dependency and priority order, with hooks. See strata-ext(8) in docs/reference.md."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from strata import log
from strata.cli import lifecycle
from strata.cli.output import dump_json, render_table, write
from strata.cli.parsing import Parser, check_verb_options, json_mode
from strata.errors import ErrorKind, StrataError

if TYPE_CHECKING:
    from strata.manage.api import Outcome

PROG = "strata ext"

HELP = """\
strata ext [OPTIONS...] COMMAND

Manage extension images: enable them per OS release, merge the enabled set
(system and configuration extensions together), in dependency order.

Commands:
  status (default)        Show every extension: version, class, enabled, merged,
                          origin, image id
  list                    List the extension images that can be enabled
  enable NAME...          Enable extensions for an OS release
  disable NAME...|--all   Disable extensions for an OS release
  merge                   Merge the extensions enabled for the running OS release
  unmerge                 Unmerge all extensions
  refresh                 Merge the enabled set again
  install SOURCE...       Validate and install images (file, URL, repository
                          name) into the store
  remove NAME...          Stop, disable, unmerge and delete extensions
  info NAME               Everything about one extension
  verify NAME...|--all    Check images against what install recorded
  health [NAME...]        Merged, services active, files intact, libraries
                          resolved
  logs NAME               The journal of an extension's units
  -h --help               Show this help (COMMAND --help: that command's)

Options:
     --root=PATH          Operate on the OS tree at PATH
     --json=pretty|short|off
                          Generate JSON output
     --no-legend          Do not show the column headers
     --os-release=VERSION enable/disable: for this VERSION_ID (default: the
                          running OS release)
     --priority=N         enable: stack position among independent extensions
                          (higher is higher up; default 0)
     --all                disable: every enabled extension; verify: every
                          image in the store
     --unmount            unmerge: accepted; loop devices go with the overlays
     --enable             install: also enable for the running OS release
     --now                install: also refresh (implies --enable)
     --image-policy=POLICY
                          install: the image policy (default: strata.toml's)
     --keep-files         remove: keep the images in the store
     --force              remove: even if enabled extensions depend on it
  -f --follow             logs: follow the journal

See strata-ext(8) in docs/reference.md for the layout and the rules.
"""

VERB_HELP = {
    "status": """\
strata ext status [--root=PATH] [--json=pretty|short|off] [--no-legend]

Show every extension image with its version, class (sysext, confext or both),
whether it is enabled for the running OS release, whether it is merged, where it
comes from (store, or a systemd extension directory) and its image id (first 12
hex digits of its sha256). Extensions merged without an image in the store are
listed last.
""",
    "list": """\
strata ext list [--root=PATH] [--json=pretty|short|off] [--no-legend]

List the extension images in /var/lib/strata/extensions and in the systemd
extension directories, with version, class and path.
""",
    "enable": """\
strata ext enable NAME... [--os-release=VERSION] [--priority=N] [--root=PATH]

Enable extensions for an OS release (default: VERSION_ID of the running one,
"unknown" without one). NAME is an extension name (the newest version is chosen)
or an image name. Refused, with nothing changed: an unknown name, an image that
is no extension, a dependency (STRATA_DEPENDS=) that is not enabled, a conflict
(STRATA_CONFLICTS=), a dependency cycle. --priority=N orders extensions that do
not depend on each other: higher is higher up the stack (wins a file both ship).
""",
    "disable": """\
strata ext disable NAME...|--all [--os-release=VERSION] [--root=PATH]

Disable extensions for an OS release (default: the running one). An unknown name
is refused and nothing changes; disabling an extension that an enabled one
depends on is refused. A name that is not enabled is reported and counts as
failed (exit status 1), the others are still disabled.
""",
    "merge": """\
strata ext merge [--root=PATH] [--json=pretty|short|off]

Merge the extensions enabled for the running OS release: system extensions into
/usr and /opt, then configuration extensions into /etc, in dependency and
priority order. An image that is missing, broken, incompatible with the OS or
refused by the image policy is skipped and reported, and so is everything that
depends on it; the rest is merged. Fails if something is merged already (use
refresh). Then runs the hooks.
""",
    "unmerge": """\
strata ext unmerge [--unmount] [--root=PATH] [--json=pretty|short|off]

Run the unmerge hooks, unmerge both classes and remove the links in
/run/extensions and /run/confexts. --unmount is accepted for avocadoctl
compatibility: Strata's loop devices are released with the overlays.
""",
    "refresh": """\
strata ext refresh [--root=PATH] [--json=pretty|short|off]

Merge the enabled set again: each hierarchy switches to the new set in one step
where the kernel allows it (Linux >= 6.5). A class with nothing left to merge is
unmerged.
""",
}

VERB_HELP.update(lifecycle.HELP)

VERBS = ("status", "list", "enable", "disable", "merge", "unmerge", "refresh",
         *lifecycle.VERBS, "help")

#: options that only some verbs take
ONLY = {"os_release": ("enable", "disable"), "priority": ("enable",),
        "all": ("disable", "verify"), "unmount": ("unmerge",)}
OPTION_NAMES = {"os_release": "--os-release", "priority": "--priority", "all": "--all",
                "unmount": "--unmount"}




def _priority(value: str) -> int:
    try:
        return int(value, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"Failed to parse --priority= value: {value} (an integer)") from None


def build_parser() -> Parser:
    p = Parser(PROG)
    p.add_argument("verb", nargs="?")
    p.add_argument("names", nargs="*")
    p.add_argument("-h", "--help", action="store_true")
    p.add_argument("--root")
    p.add_argument("--json", type=json_mode, default="off")
    p.add_argument("--no-legend", action="store_true")
    p.add_argument("--no-pager", action="store_true")
    p.add_argument("--os-release")
    p.add_argument("--priority", type=_priority)
    p.add_argument("--all", action="store_true")
    p.add_argument("--unmount", action="store_true")
    lifecycle.add_arguments(p)
    return p


def _class_text(is_sysext: bool, is_confext: bool) -> str | None:
    if is_sysext and is_confext:
        return "sysext+confext"
    if is_sysext:
        return "sysext"
    if is_confext:
        return "confext"
    return None


def _yes_no(value: bool) -> str:
    return "yes" if value else "no"


def _print_list(root: str, ns: argparse.Namespace) -> int:
    from strata.manage import ext

    infos = ext.list_extensions(root)
    if ns.json != "off":
        write(dump_json([{"name": i.name, "version": i.version, "path": i.path,
                          "isSysext": i.is_sysext, "isConfext": i.is_confext,
                          "isDirectory": i.is_directory} for i in infos], ns.json))
        return 0
    if not infos:
        log.info("No extensions found.")
        return 0
    rows = [[i.name, i.version, _class_text(i.is_sysext, i.is_confext), i.path] for i in infos]
    write(render_table(["name", "version", "class", "path"], rows, legend=not ns.no_legend))
    return 0


def _print_status(root: str, ns: argparse.Namespace) -> int:
    from strata.manage import ext

    rows = ext.status(root)
    if ns.json != "off":
        write(dump_json([{"name": s.name, "version": s.version, "isSysext": s.is_sysext,
                          "isConfext": s.is_confext, "isMerged": s.is_merged,
                          "isEnabled": s.enabled, "origin": s.origin, "imageId": s.image_id,
                          "path": s.path} for s in rows], ns.json))
        return 0
    if not rows:
        log.info("No extensions found.")
        return 0
    table = [[s.name, s.version, _class_text(s.is_sysext, s.is_confext), _yes_no(s.enabled),
              _yes_no(s.is_merged), s.origin, s.image_id] for s in rows]
    write(render_table(["name", "version", "class", "enabled", "merged", "origin", "image-id"],
                       table, legend=not ns.no_legend))
    return 0


def _outcome_json(o: Outcome) -> dict[str, Any]:
    return {
        "merged": list(o.merged),
        "unmerged": list(o.unmerged),
        "skipped": [{"name": n, "reason": r} for n, r in o.skipped],
        "hooks": [{"phase": h.phase, "argv": list(h.argv), "ran": h.ran, "status": h.status,
                   "error": h.error} for h in o.hooks],
    }


def _report_outcome(o: Outcome, ns: argparse.Namespace, verb: str) -> int:
    if ns.json != "off":
        write(dump_json(_outcome_json(o), ns.json))
        return 0
    if verb != "unmerge":
        if o.merged:
            log.info(f"Merged {len(o.merged)} extension(s): {', '.join(o.merged)}.")
        else:
            log.info("No enabled extension was merged.")
        if o.skipped:
            log.info(f"Skipped {len(o.skipped)}: "
                     + ", ".join(dict.fromkeys(n for n, _ in o.skipped)) + ".")
    elif o.unmerged:
        log.info(f"Unmerged {len(o.unmerged)} extension(s): {', '.join(o.unmerged)}.")
    failed = [h for h in o.hooks if h.error]
    if failed:
        log.warning(f"{len(failed)} hook(s) failed; the extensions stay merged.")
    return 0


def _check_options(ns: argparse.Namespace) -> None:
    check_verb_options(ns, ONLY, OPTION_NAMES)
    check_verb_options(ns, lifecycle.ONLY, lifecycle.OPTION_NAMES)
    if ns.names and ns.verb not in ("enable", "disable", "help", *lifecycle.VERBS):
        raise StrataError("Too many arguments.", kind=ErrorKind.USAGE)


def run(argv: Sequence[str]) -> int:
    """Parse and execute; returns the exit status (StrataError is reported by the caller)."""
    ns = build_parser().parse_args(list(argv))
    if ns.verb == "help":
        topic = ns.names[0] if ns.names else None
        write(VERB_HELP.get(topic, HELP) if topic else HELP)
        return 0
    if ns.help:
        write(VERB_HELP.get(ns.verb, HELP) if ns.verb else HELP)
        return 0
    ns.verb = ns.verb or "status"
    if ns.verb not in VERBS:
        raise StrataError(f"Unknown command verb '{ns.verb}'.", kind=ErrorKind.USAGE,
                          hint="one of: " + ", ".join(VERBS))
    _check_options(ns)
    root = ns.root or "/"
    if not os.path.isdir(root):
        raise StrataError(f"Root directory '{root}' does not exist or is not a directory.",
                          kind=ErrorKind.NOT_FOUND)
    from strata.manage import ext

    if ns.verb in lifecycle.VERBS:
        return lifecycle.run(ns.verb, root, ns, os.environ)
    if ns.verb == "status":
        return _print_status(root, ns)
    if ns.verb == "list":
        return _print_list(root, ns)
    if ns.verb == "enable":
        r = ext.enable(root, ns.names, os_release=ns.os_release, priority=ns.priority)
        if ns.json != "off":
            write(dump_json({"enabled": r.done, "failed": r.failed}, ns.json))
        return 1 if r.failed else 0
    if ns.verb == "disable":
        if ns.all and ns.names:
            raise StrataError("Give extension names or --all, not both.", kind=ErrorKind.USAGE)
        r = ext.disable(root, ns.names or None, all=ns.all, os_release=ns.os_release)
        if ns.json != "off":
            write(dump_json({"disabled": r.done, "failed": r.failed}, ns.json))
        return 1 if r.failed else 0
    if ns.verb == "merge":
        return _report_outcome(ext.merge(root, os.environ), ns, "merge")
    if ns.verb == "refresh":
        return _report_outcome(ext.refresh(root, os.environ), ns, "refresh")
    return _report_outcome(ext.unmerge(root, os.environ, unmount=ns.unmount), ns, "unmerge")
