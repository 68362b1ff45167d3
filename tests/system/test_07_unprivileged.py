"""Scenario 7: an unprivileged user. The socket's group lets a user connect (a strata.socket
drop-in, as strata.socket's comment says); the daemon answers List and Status, and refuses
every state-changing method with the typed error org.varlink.service.PermissionDenied —
through varlinkctl and through the `varlink` package — and nothing changes. A user outside
the group cannot connect at all."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.system.guestlib import (
    SOCKET,
    build_extension,
    is_merged,
    sh,
    strata_json,
    systemctl,
)
from tests.system.harness.image import GUEST_VENV

pytestmark = pytest.mark.system

USER = "strata-tester"
OUTSIDER = "strata-outsider"
GROUP = "strata-view"
DROP_IN = Path("/run/systemd/system/strata.socket.d/50-system-test-group.conf")
DENIED = "org.varlink.service.PermissionDenied"

#: what the user's Python client does: each call, and the error name it got back (or "ok")
CLIENT = f'''
import json, varlink
out = {{}}
calls = {{
    "List": lambda i: i.List(),
    "Status": lambda i: i.Status(),
    "Enable": lambda i: i.Enable(["s7app"], None),
    "Merge": lambda i: i.Merge(),
    "Refresh": lambda i: i.Refresh(),
    "Unmerge": lambda i: i.Unmerge(None),
    "Disable": lambda i: i.Disable(None, True, None),
}}
with varlink.Client(address="unix:{SOCKET}") as c, c.open("org.avocado.Extensions") as i:
    for name, call in calls.items():
        try:
            call(i)
            out[name] = "ok"
        except varlink.VarlinkError as e:
            out[name] = e.error()
print(json.dumps(out))
'''


def restart_socket() -> None:
    systemctl("daemon-reload")
    systemctl("stop", "strata.service", "strata.socket")
    systemctl("start", "strata.socket")


@pytest.fixture
def users(clean_device: None) -> Iterator[None]:
    sh("groupadd", "-f", GROUP)
    for user, groups in ((USER, [f"--groups={GROUP}"]), (OUTSIDER, [])):
        if sh("id", user, check=False).returncode != 0:
            sh("useradd", "--system", "--no-create-home", *groups, user)
    DROP_IN.parent.mkdir(parents=True, exist_ok=True)
    DROP_IN.write_text(f"[Socket]\nSocketGroup={GROUP}\n")
    restart_socket()
    yield
    DROP_IN.unlink()
    restart_socket()
    sh("userdel", USER, check=False)
    sh("userdel", OUTSIDER, check=False)
    sh("groupdel", GROUP, check=False)


def varlinkctl(user: str, method: str, params: str = "{}") -> tuple[int, str]:
    p = sh("varlinkctl", "call", SOCKET, method, params, user=user, check=False)
    return p.returncode, p.stdout + p.stderr


def test_user_reads_but_cannot_change_state(users: None) -> None:
    build_extension("s7app", "1.0", {"usr/share/strata-s7/file": "s7\n"})
    st = os.stat(SOCKET)
    assert st.st_gid == int(sh("getent", "group", GROUP).stdout.split(":")[2])

    # Reads work for the user.
    rc, out = varlinkctl(USER, "org.avocado.Extensions.List")
    assert rc == 0 and [e["name"] for e in json.loads(out)["extensions"]] == ["s7app"]
    rc, out = varlinkctl(USER, "org.avocado.Extensions.Status")
    assert rc == 0 and json.loads(out)["extensions"][0]["isMerged"] is False

    # Changes are refused with the typed error, on both interfaces.
    for method, params in (("org.avocado.Extensions.Enable", '{"extensions": ["s7app"]}'),
                           ("org.avocado.Extensions.Merge", "{}"),
                           ("io.systemd.sysext.Merge", "{}"),
                           ("io.systemd.sysext.Refresh", "{}")):
        rc, out = varlinkctl(USER, method, params)
        assert rc != 0 and DENIED in out, (method, out)

    # The same through the varlink package, call by call on one connection.
    answers = json.loads(sh(f"{GUEST_VENV}/bin/python", "-c", CLIENT, user=USER).stdout)
    assert answers == {"List": "ok", "Status": "ok", "Enable": DENIED, "Merge": DENIED,
                       "Refresh": DENIED, "Unmerge": DENIED, "Disable": DENIED}

    # Nothing changed.
    status = strata_json("ext", "status")
    assert [(s["name"], s["isEnabled"], s["isMerged"]) for s in status] == [
        ("s7app", False, False)]
    assert not is_merged("/usr")

    # Someone outside the socket's group does not get in at all.
    rc, out = varlinkctl(OUTSIDER, "org.avocado.Extensions.List")
    assert rc != 0 and "Permission denied" in out, out
