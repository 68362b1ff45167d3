"""End to end through the socket, with the real management layer and engine, in a private
mount namespace on a scratch root: enable -> merge (streamed) -> status -> disable -> refresh
-> unmerge, with the `varlink` package as the client."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import varlink

from strata.service.backend import load
from tests.helpers import install_ext, isolated, make_root, mounts_under
from tests.service.harness import ServerThread

pytestmark = pytest.mark.privileged

STORE = "var/lib/strata/extensions"
AV = "org.avocado.Extensions"


def status_of(iface: Any) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in iface.Status()["extensions"]}


@isolated
def test_enable_merge_status_disable_refresh_unmerge(tmp_path: Path, sock_dir: Path) -> None:
    root = make_root(tmp_path, files={"etc/host.conf": "host\n"})
    install_ext(root, "base", {"usr/share/x": "base\n", "usr/bin/base": "b"}, where=STORE)
    install_ext(root, "app-1.0", {"usr/share/x": "app\n", "opt/app/f": "a"},
                {"ID": "debian", "VERSION_ID": "12", "STRATA_DEPENDS": "base"},
                where=STORE, fmt="erofs")
    install_ext(root, "conf", {"etc/app.conf": "conf\n"}, where=STORE, confext=True,
                fmt="squashfs")
    with ServerThread(sock_dir / "s.sock", load(), root=str(root)) as srv, \
            varlink.Client(address=f"unix:{srv.path}") as client, client.open(AV) as iface:
        listed = {e["name"]: e for e in iface.List()["extensions"]}
        assert set(listed) == {"base", "app", "conf"}
        assert listed["app"]["version"] == "1.0" and listed["app"]["isSysext"] is True
        assert listed["conf"]["isConfext"] is True and listed["base"]["isDirectory"] is True

        with pytest.raises(varlink.VarlinkError) as exc:
            iface.Enable(["app", "nope"], None)
        assert exc.value.error() == f"{AV}.ExtensionNotFound"
        assert exc.value.parameters()["name"] == "nope"
        with pytest.raises(varlink.VarlinkError) as exc:
            iface.Enable(["app"], None)  # its dependency is not enabled
        assert exc.value.error() == f"{AV}.ConfigurationError"
        assert iface.Enable(["base", "app", "conf"], None) == {"enabled": 3, "failed": 0}

        replies = list(iface.Merge(_more=True))
        assert [r["done"] for r in replies] == [False] * (len(replies) - 1) + [True]
        assert len(replies) > 2  # progress was streamed before the end
        assert replies[-1]["message"] == "Merged 3 extensions: base, app, conf."
        assert (root / "usr/share/x").read_text() == "app\n"  # app above its dependency
        assert (root / "opt/app/f").read_text() == "a"
        assert (root / "etc/app.conf").read_text() == "conf\n"

        st = status_of(iface)
        assert {n: s["isMerged"] for n, s in st.items()} == {"base": True, "app": True,
                                                             "conf": True}
        assert len(st["app"]["imageId"]) == 12 and "imageId" not in st["base"]

        assert iface.Disable(["conf"], None, None) == {"disabled": 1, "failed": 0}
        assert status_of(iface)["conf"]["isMerged"] is True  # until the next refresh
        refreshed = list(iface.Refresh(_more=True))
        assert refreshed[-1]["done"] is True
        assert refreshed[-1]["message"] == "Refreshed 2 extensions: base, app."
        assert not (root / "etc/app.conf").exists()
        assert (root / "etc/host.conf").read_text() == "host\n"
        assert {n: s["isMerged"] for n, s in status_of(iface).items()} == {
            "base": True, "app": True, "conf": False}

        final = iface.Unmerge(False)
        assert final["done"] is True
        assert (root / "usr/share/x").exists() is False
        assert not any(s["isMerged"] for s in status_of(iface).values())
    assert mounts_under(root / "usr") == [] and mounts_under(root / "etc") == []
