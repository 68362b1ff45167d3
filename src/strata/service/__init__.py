"""`strata serve`: the varlink daemon.

It serves three interfaces on one socket (/run/strata/strata.sock, or a socket-activated fd):

* org.avocado.Extensions (avocado.py): Avocado's device API over the management layer
  (manage/api.py), exactly as its golden IDL org.avocado.Extensions.varlink says;
* io.systemd.sysext (sysext.py): systemd-sysext 257's own varlink API, over the merge engine;
* org.varlink.service: introspection (asyncvarlink's).

Layout: protocol.py (one connection: limits, authorisation, malformed input, the fast path of
reads), core.py (state shared by all connections: the change lock, the worker threads, progress
plumbing, cached reads), readcache.py (replies kept encoded while what they were read from,
the mount table included, stays the same), wire.py (how replies are encoded), auth.py
(SO_PEERCRED and the group policy), config.py ([serve] in strata.toml), listen.py (sockets,
socket activation, sd_notify), server.py (putting it together). The modules that declare
varlink types do not use `from __future__ import annotations`: asyncvarlink derives the IDL
from live annotations.
"""
