"""The `strata` command. Heavy modules are imported only by the verb that needs them."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from strata import __version__, log
from strata.errors import StrataError
from strata.model import ExtClass

USAGE = """\
strata [--version] COMMAND ...

Strata: systemd system and configuration extensions, end to end.

Commands:
  sysext [VERB] [OPTIONS]   Merge system extensions into /usr and /opt
                            (a drop-in for systemd-sysext: status, merge,
                            unmerge, refresh, list)
  confext [VERB] [OPTIONS]  The same for configuration extensions in /etc
                            (a drop-in for systemd-confext)
  ext [VERB] [OPTIONS]      Manage a device's extensions: enable/disable per OS
                            release, merge the enabled set in dependency order
                            (status, list, enable, disable, merge, unmerge,
                            refresh, install, remove, info, verify, health,
                            logs)
  serve [OPTIONS]           The varlink daemon: org.avocado.Extensions and
                            io.systemd.sysext on /run/strata/strata.sock
  build SPEC.yaml [-o DIR]  Build reproducible extension images from a spec:
                            trees, files, .deb/.rpm packages, apt-get download
  check [OPTIONS] IMAGE...  Check extension images before they reach a device:
                            layout, release file, permissions, ELF libraries
                            and glibc, conflicts (--host ROOT)
  inspect [OPTIONS] IMAGE   Show an image without mounting it: format, sha256,
                            release fields, file tree
  publish IMAGE... --repo=DIR
                            Publish images to a TUF repository (signed
                            metadata, SHA256SUMS, sysupdate transfers)
  update [--check|--apply]  Update the device's extensions from a TUF
                            repository: verify, install, refresh, health
                            check, roll back on failure

Run 'strata COMMAND --help' for a command's options. Invoked through a symlink
named systemd-sysext or systemd-confext, strata acts as that command.
"""


def report(e: StrataError) -> int:
    log.error(e.message)
    if e.hint:
        log.info(f"Hint: {e.hint}")
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    log.setup()
    args = list(sys.argv[1:] if argv is None else argv)
    invoked = os.path.basename(sys.argv[0]) if argv is None else "strata"
    try:
        if invoked in ("systemd-sysext", "systemd-confext"):
            from strata.cli import sysext

            cls = ExtClass.SYSEXT if invoked == "systemd-sysext" else ExtClass.CONFEXT
            return sysext.run(cls, args, invoked)
        if not args or args[0] in ("-h", "--help", "help"):
            sys.stdout.write(USAGE)
            return 0 if args else 1
        if args[0] == "--version":
            sys.stdout.write(f"strata {__version__}\n")
            return 0
        cmd, rest = args[0], args[1:]
        if cmd in ("sysext", "confext"):
            from strata.cli import sysext

            return sysext.run(ExtClass(cmd), rest, f"strata {cmd}")
        if cmd == "serve":
            from strata.cli import serve

            return serve.run(rest)
        if cmd == "ext":
            from strata.cli import ext

            return ext.run(rest)
        if cmd == "build":
            from strata.cli import build

            return build.run(rest)
        if cmd == "check":
            from strata.cli import check

            return check.run(rest)
        if cmd == "inspect":
            from strata.cli import inspect

            return inspect.run(rest)
        if cmd == "publish":
            from strata.cli import publish

            return publish.run(rest)
        if cmd == "update":
            from strata.cli import update

            return update.run(rest)
        sys.stderr.write(f"strata: unknown command '{cmd}'\n\n{USAGE}")
        return 1
    except StrataError as e:
        return report(e)
    except KeyboardInterrupt:
        return 130
