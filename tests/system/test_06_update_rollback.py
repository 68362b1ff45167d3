"""Scenario 6: an update that rolls back. A TUF repository made with `strata publish` is
served from inside the guest (127.0.0.1); the device trusts it (`strata update --init`) and
installs version 1.0 of an extension with a service. Then a broken 2.0 is published:
`strata update --apply` installs it, the restarted service dies, the health check fails, and
1.0 comes back — enabled, merged, its service answering — and 2.0 is not taken again."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.system.guestlib import (
    BUILD_DIR,
    STORE,
    ask,
    build_extension,
    prop,
    service_unit,
    sh,
    strata,
    strata_json,
    systemctl,
    versiond,
    wait_active,
    wait_for,
)

pytestmark = pytest.mark.system

REPO = Path("/srv/strata-repo")
KEYS = Path("/srv/strata-repo.keys")
PORT = 8719
URL = f"http://127.0.0.1:{PORT}"
HTTP_UNIT = "strata-repo-http.service"
CONFIG = Path("/etc/strata/strata.toml")
SOCK = "/run/appd.sock"
STATE = ("/var/lib/strata/tuf", "/var/lib/strata/update")

BROKEN = "#!/bin/sh\necho 'appd 2.0: broken build, exiting' >&2\nexit 1\n"


def app_image(version: str, binary: str) -> Path:
    return build_extension("app", version, {
        "usr/bin/appd": binary,
        "usr/lib/systemd/system/appd.service": service_unit("The app", "/usr/bin/appd"),
    }, release={"STRATA_SERVICES": "appd", "EXTENSION_RESTART_UNITS": "appd.service"},
        executable={"usr/bin/appd"}, into=BUILD_DIR / "published")


def answers(prefix: str) -> str:
    """What appd answers, once it answers with `prefix`."""
    answer = wait_for(f"appd to answer '{prefix}...'", lambda: ask(SOCK),
                      lambda a: a is not None and a.startswith(prefix))
    assert answer is not None
    return answer


@pytest.fixture
def repository(clean_device: None) -> Iterator[None]:
    for p in (REPO, KEYS, *map(Path, STATE)):
        shutil.rmtree(p, ignore_errors=True)
    CONFIG.parent.mkdir(parents=True, exist_ok=True)
    CONFIG.write_text('[update]\nextensions = ["app"]\nhealth_units = ["appd.service"]\n'
                      "settle = 6\n")
    strata("publish", str(app_image("1.0", versiond("appd", "1.0"))), f"--repo={REPO}",
           f"--url={URL}")
    sh("systemd-run", f"--unit={HTTP_UNIT}", "--property=Type=exec", "/usr/bin/python3",
       "-m", "http.server", str(PORT), "--bind", "127.0.0.1", "--directory", str(REPO))
    wait_for("the repository to be served",
             lambda: sh("python3", "-c", f"import urllib.request as u; "
                        f"u.urlopen('{URL}/metadata/root.json').read()", check=False
                        ).returncode == 0)
    yield
    systemctl("stop", HTTP_UNIT, check=False)
    systemctl("stop", "appd.service", check=False)
    CONFIG.unlink(missing_ok=True)
    for p in (REPO, KEYS, *map(Path, STATE)):
        shutil.rmtree(p, ignore_errors=True)


def test_broken_update_rolls_back_to_the_previous_version(repository: None) -> None:
    strata("update", "--init", f"--repo={URL}", f"--root-file={REPO}/metadata/root.json")

    # 1.0: installed, enabled, merged, healthy.
    strata("update", "--apply")
    wait_active("appd.service")
    assert answers("appd 1.0 ").startswith("appd 1.0 pid=")
    status = {s["name"]: s for s in strata_json("ext", "status")}
    assert status["app"]["version"] == "1.0" and status["app"]["isMerged"]

    # 2.0 is broken: its appd exits at once.
    strata("publish", str(app_image("2.0", BROKEN)), f"--repo={REPO}")
    plan = strata_json("update", "--check")
    assert [(u["name"], u["from"], u["to"]) for u in plan["updates"]] == [("app", "1.0", "2.0")]

    res = strata("update", "--apply", "--json=short", check=False)
    assert res.returncode == 1
    result = json.loads(res.stdout)
    assert result["rolledBack"] is True
    assert "appd.service" in result["reason"], result["reason"]

    # 1.0 is back: enabled, merged, and its service answers again.
    status = {s["name"]: s for s in strata_json("ext", "status")}
    assert status["app"]["version"] == "1.0"
    assert status["app"]["isEnabled"] and status["app"]["isMerged"]
    assert Path("/usr/bin/appd").read_text().startswith("#!/usr/bin/python3\n# appd 1.0")
    answer = answers("appd 1.0 ")
    wait_active("appd.service")
    assert answer.startswith(f"appd 1.0 pid={prop('appd.service', 'MainPID')} ")
    # The broken image is gone from the store, and is not offered to this device again.
    assert sorted(p.name for p in STORE.iterdir() if p.name.endswith(".raw")) == ["app-1.0.raw"]
    plan = strata_json("update", "--check")
    assert plan["updates"] == [] and ["app", "1.0"] in [[c["name"], c["version"]]
                                                       for c in plan["current"]]
