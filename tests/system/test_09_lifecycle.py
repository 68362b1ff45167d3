"""Scenario 9: the lifecycle verbs on a live system. `strata ext install --enable --now` takes
an image from outside the store and its service runs; `strata ext health` sees every aspect
healthy on the real merged /usr (services by asking systemd, libraries on the live root) and
names the unit when it stops; `strata ext verify` catches a changed byte in the store; and
`strata ext remove` stops the service while its binary is still there, then unmerges and
deletes the image."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.system.guestlib import (
    BUILD_DIR,
    STORE,
    ask,
    build_extension,
    is_merged,
    prop,
    service_unit,
    strata,
    strata_json,
    systemctl,
    versiond,
    wait_active,
    wait_for,
)

pytestmark = pytest.mark.system

SOCK = "/run/lifed.sock"
BINARY = Path("/usr/bin/lifed")
#: the unit's ExecStopPost records whether the extension's binary was still there at stop time
STOPPED = Path("/run/lifed-stopped")


def health(name: str) -> tuple[int, dict[str, str]]:
    """`strata ext health NAME`: its exit status and aspect -> state."""
    res = strata("ext", "health", name, "--json=short", check=False)
    (report,) = json.loads(res.stdout)
    assert report["name"] == name
    return res.returncode, {c["aspect"]: c["state"] for c in report["checks"]}


def details(res: Any) -> str:
    return f"exit {res.returncode}\n{res.stdout}\n{res.stderr}"


def test_install_health_verify_remove_on_a_live_system(clean_device: None) -> None:
    image = build_extension("life", "1.0", {
        "usr/bin/lifed": versiond("lifed", "1.0"),
        "usr/lib/systemd/system/lifed.service": service_unit(
            "A Strata lifecycle extension", "/usr/bin/lifed",
            extra="ExecStopPost=/bin/sh -c 'test -x /usr/bin/lifed && echo present > "
                  f"{STOPPED} || echo absent > {STOPPED}'\n"),
    }, release={"STRATA_SERVICES": "lifed", "EXTENSION_RELOAD_MANAGER": "1"},
        executable={"usr/bin/lifed"}, into=BUILD_DIR / "incoming",
        copies={"usr/lib/life/true": "/usr/bin/true"})  # an ELF program: libraries apply
    STOPPED.unlink(missing_ok=True)

    # install: validated, copied into the store, enabled, merged, service started
    result = strata_json("ext", "install", str(image), "--enable", "--now")
    (installed,) = result["installed"]
    assert (installed["name"], installed["version"], installed["enabled"]) == \
        ("life", "1.0", True)
    assert Path(installed["path"]) == STORE / "life-1.0.raw"
    assert result["outcome"]["merged"] == ["life"]
    wait_active("lifed.service")
    answer = wait_for("lifed to answer", lambda: ask(SOCK))
    assert answer is not None and answer.startswith("lifed 1.0 pid="), answer
    assert is_merged("/usr") and BINARY.exists()

    # health: every aspect that applies is ok on the live system
    rc, aspects = health("life")
    assert rc == 0, aspects
    assert aspects == {"merged": "ok", "services": "ok", "files": "ok", "libraries": "ok"}

    # ... and a stopped service makes it unhealthy, naming the unit
    systemctl("stop", "lifed.service")
    res = strata("ext", "health", "life", check=False)
    assert res.returncode != 0, details(res)
    assert "lifed.service" in res.stdout + res.stderr, details(res)
    systemctl("start", "lifed.service")
    wait_active("lifed.service")

    # verify: the store's image against what install recorded
    assert strata_json("ext", "verify", "life")[0]["state"] == "ok"
    stored = STORE / "life-1.0.raw"
    original = stored.read_bytes()
    changed = bytearray(original)
    changed[len(changed) // 2] ^= 0x01
    stored.write_bytes(bytes(changed))
    res = strata("ext", "verify", "life", "--json=short", check=False)
    assert res.returncode != 0
    assert json.loads(res.stdout)[0]["state"] == "tampered"
    stored.write_bytes(original)
    assert strata_json("ext", "verify", "life")[0]["state"] == "ok"

    # remove: stop the service first (its ExecStopPost still finds the binary), then
    # unmerge and delete
    STOPPED.unlink(missing_ok=True)
    removed = strata_json("ext", "remove", "life")
    assert removed["removed"] == ["life"]
    assert [h["argv"] for h in removed["services"]] == [
        ["systemctl", "stop", "lifed.service"]]
    assert STOPPED.read_text() == "present\n"
    assert prop("lifed.service", "ActiveState") == "inactive"
    assert not BINARY.exists() and not is_merged("/usr")
    assert not stored.exists()
    assert ask(SOCK) is None
    # EXTENSION_RELOAD_MANAGER=1: systemd forgot the unit with the extension
    assert prop("lifed.service", "LoadState") == "not-found"
    assert "life" not in {s["name"] for s in strata_json("ext", "status")}
