"""A minimal socket activator for tests (what systemd does for strata.socket):

    python -m tests.service.activate FD:NAME [FD:NAME...] -- COMMAND...

moves the inherited fds to 3, 4, ... and execs COMMAND with LISTEN_PID (its own pid, which
exec keeps), LISTEN_FDS and LISTEN_FDNAMES set."""

from __future__ import annotations

import fcntl
import os
import sys


def main() -> None:
    args = sys.argv[1:]
    split = args.index("--")
    specs, command = args[:split], args[split + 1:]
    pairs = [spec.split(":", 1) for spec in specs]
    # out of the way first, so that moving one onto 3.. cannot clobber another
    high = [fcntl.fcntl(int(fd), fcntl.F_DUPFD, 100) for fd, _name in pairs]
    for i, fd in enumerate(high):
        os.dup2(fd, 3 + i)
        os.close(fd)
    os.environ["LISTEN_PID"] = str(os.getpid())
    os.environ["LISTEN_FDS"] = str(len(pairs))
    os.environ["LISTEN_FDNAMES"] = ":".join(name for _fd, name in pairs)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
