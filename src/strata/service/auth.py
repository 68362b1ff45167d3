"""Who may call what: the peer's credentials from the kernel (SO_PEERCRED, SO_PEERGROUPS),
and the policy: state-changing methods need uid 0 or membership of the configured group,
everything else is open to any local user (who could read the same files anyway)."""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Callable, Iterable

from strata.errors import ErrorKind, StrataError
from strata.record import record

_SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)  # Linux >= 4.13; not in Python 3.11
_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid

#: methods that change the system (or the enabled set), fully qualified
PRIVILEGED: frozenset[str] = frozenset({
    "org.avocado.Extensions.Merge",
    "org.avocado.Extensions.Unmerge",
    "org.avocado.Extensions.Refresh",
    "org.avocado.Extensions.Enable",
    "org.avocado.Extensions.Disable",
    "io.systemd.sysext.Merge",
    "io.systemd.sysext.Unmerge",
    "io.systemd.sysext.Refresh",
    "io.strata.Extensions.Install",
    "io.strata.Extensions.Remove",
})


@record
class PeerCreds:
    """The connecting process as the kernel saw it at connect() time (not spoofable)."""

    pid: int
    uid: int
    gid: int


@record
class Policy:
    """Who may change state besides root: members (primary or supplementary) of `gid`."""

    gid: int | None = None
    group: str | None = None  # its name, for messages


def allowed(method: str, creds: PeerCreds | None, policy: Policy,
            groups: Callable[[], Iterable[int]]) -> bool:
    """Whether `creds` may call `method`. `groups` is asked (lazily: it costs a syscall) for
    the peer's supplementary groups only when the answer depends on them. Unknown
    credentials (not a unix socket) are refused anything privileged."""
    if method not in PRIVILEGED:
        return True
    if creds is None:
        return False
    if creds.uid == 0:
        return True
    if policy.gid is None:
        return False
    return creds.gid == policy.gid or policy.gid in set(groups())


def peer_credentials(sock: socket.socket) -> PeerCreds:
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    pid, uid, gid = _UCRED.unpack(raw)
    return PeerCreds(pid=pid, uid=uid, gid=gid)


def peer_groups(sock: socket.socket) -> tuple[int, ...]:
    """The peer's supplementary groups at connect() time (SO_PEERGROUPS); () if the kernel
    cannot tell."""
    size = 64 * 4
    while size <= 65536 * 4:
        try:
            raw = sock.getsockopt(socket.SOL_SOCKET, _SO_PEERGROUPS, size)
        except OSError as e:
            if e.errno == errno.ERANGE:
                size *= 4
                continue
            return ()
        return struct.unpack(f"{len(raw) // 4}I", raw[: len(raw) // 4 * 4])
    return ()


def resolve_group(name: str, source: str) -> int:
    """A group name (or number) to its gid; `source` names where it was configured."""
    import grp

    if name.isdigit():
        return int(name)
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise StrataError(f"{source}: group '{name}' does not exist",
                          kind=ErrorKind.CONFIGURATION,
                          hint="create it (groupadd) or change [serve] group") from None
