"""`strata serve`: the varlink daemon (org.avocado.Extensions, io.systemd.sysext)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from strata.cli.parsing import UsageParser
from strata.errors import ErrorKind, StrataError

HELP = """\
strata serve [OPTIONS...]

Serve org.avocado.Extensions and io.systemd.sysext over varlink, with
org.varlink.service introspection.

Options:
  -h --help            Show this help
     --socket=PATH     Listen on PATH (default: /run/strata/strata.sock, mode 0660);
                       ignored when systemd passes a socket (LISTEN_FDS, the fd named
                       "varlink" or else the first)
     --root=PATH       Manage the system below PATH instead of /
     --group=GROUP     Members of GROUP may also merge, unmerge, refresh, enable and
                       disable (default: [serve] group in <root>/etc/strata/strata.toml;
                       otherwise root only); the socket gets this group
     --config=FILE     Read [serve] from FILE

Everything else (List, Status, introspection) is open to any local user who can
reach the socket. See docs/reference.md, "Varlink API".
"""


def run(argv: Sequence[str]) -> int:
    from strata.service.listen import DEFAULT_SOCKET

    p = UsageParser("strata serve")
    p.add_argument("-h", "--help", action="store_true")
    p.add_argument("--socket", default=DEFAULT_SOCKET)
    p.add_argument("--root")
    p.add_argument("--group")
    p.add_argument("--config")
    ns = p.parse_args(list(argv))
    if ns.help:
        sys.stdout.write(HELP)
        return 0
    if not ns.socket:
        raise StrataError("strata serve: --socket= needs a path", kind=ErrorKind.USAGE)
    from strata.service.server import ServeOptions
    from strata.service.server import run as serve

    return serve(ServeOptions(socket_path=ns.socket, root=ns.root, group=ns.group,
                              config=ns.config))
