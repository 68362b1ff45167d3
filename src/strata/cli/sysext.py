"""`strata sysext` / `strata confext`: drop-ins for systemd-sysext and systemd-confext (v257).

Same verbs, options, exit codes, tables and JSON. Options go before or after the verb.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NoReturn

from strata import __version__, log
from strata.cli.output import dump_json, format_timestamp, render_table, write
from strata.cli.parsing import Parser, json_mode
from strata.errors import ErrorKind, StrataError
from strata.model import ExtClass, MutableMode
from strata.parse import parse_boolean

if TYPE_CHECKING:
    from strata.engine.settings import Settings

VERBS = ("status", "merge", "unmerge", "refresh", "list", "help")

BLURB = {
    ExtClass.SYSEXT: "Merge system extension images into /usr/ and /opt/.",
    ExtClass.CONFEXT: "Merge configuration extension images into /etc/.",
}

HELP = """\
{prog} [OPTIONS...] COMMAND

{blurb}

Commands:
  status                  Show current merge status (default)
  merge                   Merge extensions into relevant hierarchies
  unmerge                 Unmerge extensions from relevant hierarchies
  refresh                 Unmerge/merge extensions again
  list                    List installed extensions
  -h --help               Show this help
     --version            Show package version

Options:
     --mutable=yes|no|auto|import|ephemeral|ephemeral-import
                          Specify a mutability mode of the merged hierarchy
     --no-pager           Do not pipe output into a pager
     --no-legend          Do not show the headers and footers
     --root=PATH          Operate relative to root path
     --json=pretty|short|off
                          Generate JSON output
     --force              Ignore version incompatibilities
     --no-reload          Do not reload the service manager
     --image-policy=POLICY
                          Specify disk image dissection policy
     --noexec=BOOL        Whether to mount extension overlay with noexec

Strata options:
     --atomic=BOOL        Refresh by mounting the new overlay beneath the old one, so
                          the hierarchy never loses its extensions (default: yes;
                          needs Linux >= 6.5, else falls back to unmerge + merge)
     --engine=strata|systemd
                          Merge with Strata's own engine (default), or delegate to
                          the installed {program}
     --verify=auto|dm-verity|userspace
                          Check verity-protected images through dm-verity (auto:
                          where the kernel has device-mapper), or in userspace: the
                          whole hash tree and the signature before mounting

Environment: SYSTEMD_{env}_HIERARCHIES, SYSTEMD_{env}_MUTABLE_MODE, SYSTEMD_OS_RELEASE.
See strata-sysext(8) in docs/reference.md for details.
"""




def _bool(option: str) -> Callable[[str], bool]:
    def conv(value: str) -> bool:
        b = parse_boolean(value)
        if b is None:
            raise argparse.ArgumentTypeError(
                f"Failed to parse boolean argument to {option}: {value}.")
        return b
    return conv


def build_parser(prog: str) -> Parser:
    p = Parser(prog)
    p.add_argument("verb", nargs="?", default="status")
    p.add_argument("extra", nargs="*")
    p.add_argument("-h", "--help", action="store_true")
    p.add_argument("--version", action="store_true")
    p.add_argument("--no-pager", action="store_true")
    p.add_argument("--no-legend", action="store_true")
    p.add_argument("--root")
    p.add_argument("--json", type=json_mode, default="off")
    p.add_argument("--force", action="store_true")
    p.add_argument("--no-reload", action="store_true")
    p.add_argument("--image-policy")
    p.add_argument("--noexec", type=_bool("--noexec"))
    p.add_argument("--mutable")
    p.add_argument("--atomic", type=_bool("--atomic"), default=True)
    p.add_argument("--engine", choices=("strata", "systemd"), default="strata")
    p.add_argument("--verify")
    return p


def find_systemd_binary(cls: ExtClass) -> str:
    """The installed systemd-sysext/confext, never Strata itself (which may be installed under
    that name): $STRATA_SYSTEMD_SYSEXT / _CONFEXT, else PATH entries that are not scripts."""
    env = os.environ.get(f"STRATA_{cls.program.upper().replace('-', '_')}")
    if env:
        return env
    me = os.path.realpath(sys.argv[0])
    dirs = [*os.environ.get("PATH", "").split(":"), "/usr/bin", "/usr/lib/systemd"]
    for d in dirs:
        cand = os.path.join(d, cls.program)
        if not os.access(cand, os.X_OK) or os.path.realpath(cand) == me:
            continue
        try:
            with open(cand, "rb") as f:
                if f.read(2) == b"#!":
                    continue
        except OSError:
            continue
        return cand
    raise StrataError(f"--engine=systemd: {cls.program} is not installed",
                      hint="install systemd >= 248 or use the default --engine=strata",
                      kind=ErrorKind.NOT_FOUND)


def delegate(cls: ExtClass, argv: Sequence[str]) -> NoReturn:
    binary = find_systemd_binary(cls)
    args = [a for a in argv if not a.startswith("--engine")]
    if "--engine" in argv:  # "--engine systemd" form: drop the value too
        i = list(argv).index("--engine")
        args = [*argv[:i], *argv[i + 2:]]
    os.execv(binary, [binary, *args])


def _print_status(cls: ExtClass, ns: argparse.Namespace) -> int:
    from strata.engine import query

    settings = _settings(cls, ns)
    rows = query.status(settings)
    if ns.json != "off":
        data = [{"hierarchy": r.hierarchy,
                 "extensions": list(r.extensions) if r.extensions is not None else "none",
                 "since": r.since_us} for r in rows]
        write(dump_json(data, ns.json))
        return 0
    table = [[r.hierarchy, list(r.extensions) if r.extensions is not None else "none",
              format_timestamp(r.since_us) if r.since_us is not None else None] for r in rows]
    write(render_table(["hierarchy", "extensions", "since"], table, legend=not ns.no_legend))
    return 0


def _print_list(cls: ExtClass, ns: argparse.Namespace) -> int:
    from strata.engine import query

    exts = query.list_images(_settings(cls, ns))
    if not exts and ns.json == "off":
        log.info("No OS extensions found.")
        return 0
    if ns.json != "off":
        data = [{"name": e.name, "type": e.type.value, "path": e.path, "time": e.time_us}
                for e in exts]
        write(dump_json(data, ns.json))
        return 0
    rows = [[e.name, e.type.value, e.path, format_timestamp(e.time_us) if e.time_us else None]
            for e in exts]
    write(render_table(["name", "type", "path", "time"], rows, legend=not ns.no_legend))
    return 0


def _settings(cls: ExtClass, ns: argparse.Namespace) -> Settings:
    from strata.engine.settings import resolve

    s = resolve(cls, os.environ, root=ns.root, force=ns.force, mutable=ns.mutable,
                noexec=ns.noexec, no_reload=ns.no_reload, image_policy=ns.image_policy,
                verify=ns.verify)
    if not ns.atomic:
        from strata.record import replace

        s = replace(s, atomic=False)
    return s


def run(cls: ExtClass, argv: Sequence[str], prog: str) -> int:
    """Parse and execute; returns the exit status (StrataError is reported by the caller)."""
    parser = build_parser(prog)
    ns = parser.parse_args(list(argv))
    if ns.engine == "systemd":
        delegate(cls, argv)
    if ns.help or ns.verb == "help":
        write(HELP.format(prog=prog, blurb=BLURB[cls], program=cls.program,
                          env=cls.value.upper()))
        return 0
    if ns.version:
        write(f"strata {__version__} (compatible with {cls.program} 257)\n")
        return 0
    if ns.mutable is not None:
        from strata.engine.settings import parse_mutable

        if parse_mutable(ns.mutable) is None:
            raise StrataError(f"Failed to parse argument to --mutable=: {ns.mutable}",
                              kind=ErrorKind.USAGE,
                              hint="one of: " + "|".join(m.value for m in MutableMode))
    if ns.verb not in VERBS:
        raise StrataError(f"Unknown command verb '{ns.verb}'.", kind=ErrorKind.USAGE,
                          hint="one of: " + ", ".join(VERBS))
    if ns.extra:
        raise StrataError("Too many arguments.", kind=ErrorKind.USAGE)
    if ns.root is not None and not os.path.isdir(ns.root):
        if not os.path.lexists(ns.root) and ns.verb in ("status", "list", "unmerge"):
            # As systemd: below a missing root nothing exists, so status shows no hierarchy,
            # list no image and unmerge has nothing to do (all exit 0).
            if ns.verb == "unmerge":
                return 0
        else:
            raise StrataError(f"Root directory '{ns.root}' does not exist or is not a "
                              "directory.", kind=ErrorKind.NOT_FOUND)
    if ns.verb == "status":
        return _print_status(cls, ns)
    if ns.verb == "list":
        return _print_list(cls, ns)
    from strata.engine import ops

    settings = _settings(cls, ns)
    if ns.verb == "merge":
        ops.merge(settings, os.environ)
    elif ns.verb == "unmerge":
        ops.unmerge(settings)
    elif ns.verb == "refresh":
        ops.refresh(settings, os.environ)
    return 0

