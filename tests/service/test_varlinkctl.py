"""systemd 257's varlinkctl as a client (opt-in: needs ../shared/tools/peers.sh and
STRATA_DIFF_257=1): the calls the seed document shows, as a C client built on systemd would
make them."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.helpers import PEERS
from tests.service.harness import ServerThread

pytestmark = pytest.mark.peers257
AV = "org.avocado.Extensions"


def varlinkctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PEERS, "varlinkctl", *args], capture_output=True, text=True,
                          check=False, timeout=60)


def test_varlinkctl(server: ServerThread) -> None:
    sock = str(server.path)
    r = varlinkctl("info", sock)
    assert r.returncode == 0 and "Vendor: Strata" in r.stdout, r.stderr
    for iface in (AV, "io.systemd.sysext"):
        r = varlinkctl("introspect", sock, iface)  # varlinkctl parses what we serve
        assert r.returncode == 0 and f"interface {iface}" in r.stdout, r.stderr
    r = varlinkctl("call", sock, f"{AV}.Status", "{}")
    assert r.returncode == 0, r.stderr
    assert {e["name"] for e in json.loads(r.stdout)["extensions"]} == {"app", "cfg", "tools"}
    r = varlinkctl("call", "--more", sock, f"{AV}.Merge", "{}")
    assert r.returncode == 0, r.stderr
    replies = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
    assert replies[-1]["done"] is True and all(not x["done"] for x in replies[:-1])
    r = varlinkctl("call", sock, f"{AV}.Enable", '{"extensions": ["nope"]}')
    assert r.returncode != 0 and f"{AV}.ExtensionNotFound" in r.stderr
    r = varlinkctl("call", sock, "io.systemd.sysext.List", "{}")
    assert r.returncode != 0 and "org.varlink.service.ExpectedMore" in r.stderr

