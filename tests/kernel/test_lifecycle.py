"""The extension lifecycle end to end, on scratch roots in private mount namespaces: install
from a file and over HTTP, enable, merge, info, verify, tamper and verify again, health,
remove; services and logs as the plans recorded under --root; and a kill at every step of
install and remove, after which the next run finds the old state or the new one and leaves no
temporary files."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from strata.check.elf import read_info
from strata.manage import ext, records
from strata.manage.api import CheckState, HealthAspect
from strata.manage.health import health
from tests.helpers import isolated, make_root, mounts_under, strata
from tests.unit.test_check_support import copy_into, copy_lib
from tests.unit.test_lifecycle_support import DEBIAN_12, http_server, image, strays

pytestmark = pytest.mark.privileged

S = "var/lib/strata/extensions"
APP_RELEASE = {**DEBIAN_12, "STRATA_DEPENDS": "base", "STRATA_SERVICES": "app",
               "SYSEXT_VERSION_ID": "1.0"}
APP_FILES = {"usr/share/app/data": "app data\n", "usr/bin/app": "#!/bin/sh\necho app\n",
             "usr/lib/systemd/system/app.service": "[Service]\nExecStart=/usr/bin/app\n"}


def _json(*args: str) -> Any:
    r = strata(*args, "--json=short")
    assert r.returncode in (0, 1), r.stderr
    return json.loads(r.stdout)


def _merged(root: Path) -> str | None:
    marker = root / "usr/.systemd-sysext/extensions"
    return marker.read_text() if marker.exists() else None


def _hooks(outcome: dict[str, Any], phase: str) -> list[list[str]]:
    return [h["argv"] for h in outcome["hooks"] if h["phase"] == phase]


@isolated
def test_the_whole_cycle(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    R = f"--root={root}"  # noqa: N806
    base = image(tmp_path, "base", {"usr/share/base/b": "base\n"})
    app = image(tmp_path / "web", "app-1.0", APP_FILES, APP_RELEASE)

    # install a file, enable it
    r = strata("ext", "install", str(base), "--enable", R)
    assert r.returncode == 0, r.stderr
    assert "Installed base as" in r.stderr
    # install over HTTP, enable and merge now
    with http_server(app.parent) as url:
        source = f"{url}/app-1.0.raw"
        out = _json("ext", "install", source, "--now", R)
    (inst,) = out["installed"]
    assert (inst["name"], inst["version"], inst["sourceKind"], inst["action"]) == (
        "app", "1.0", "url", "installed")
    outcome = out["outcome"]
    assert outcome["merged"] == ["base", "app"]
    assert (root / "usr/share/app/data").read_text() == "app data\n"
    assert (root / "usr/share/base/b").read_text() == "base\n"
    # the services the extension declares: started after the merge, recorded under --root
    assert _hooks(outcome, "daemon-reload") == [["systemctl", "daemon-reload"]]
    assert _hooks(outcome, "start") == [["systemctl", "start", "--no-block", "app.service"]]
    assert not any(h["ran"] for h in outcome["hooks"])

    # info
    d = _json("ext", "info", "app", R)
    assert d["mergedInto"] == ["/usr"] and d["enabled"] and d["origin"] == source
    assert d["depends"] == ["base"] and d["services"] == ["app.service"]
    assert d["images"][0]["sha256"] == d["images"][0]["recordedSha256"]
    assert _json("ext", "info", "base", R)["requiredByEnabled"] == ["app"]

    # verify
    assert [v["state"] for v in _json("ext", "verify", "--all", R)] == ["ok", "ok"]

    # health: healthy; services unknown here (not the running system)
    reports = {h["name"]: h for h in _json("ext", "health", R)}
    assert set(reports) == {"base", "app"}
    assert all(h["healthy"] for h in reports.values()), reports
    aspects = {c["aspect"]: (c["state"], c["detail"]) for c in reports["app"]["checks"]}
    assert aspects["merged"] == ("ok", "merged as sysext")
    assert aspects["services"] == ("unknown", "unknown: not the running system (--root)")
    assert aspects["files"][0] == "ok" and aspects["libraries"][0] == "skipped"

    # a file changed in the merged tree (the writable layer of the ephemeral merge): unhealthy
    (root / "usr/share/app/data").write_text("changed\n")
    r = strata("ext", "health", "app", R)
    assert r.returncode == 1
    assert "/usr/share/app/data: 8 bytes, the image's 9" in r.stdout
    assert "Unhealthy: app." in r.stderr
    # a refresh brings the image's file back
    assert strata("ext", "refresh", R).returncode == 0
    assert strata("ext", "health", R).returncode == 0

    # logs: the plan
    r = strata("ext", "logs", "app", R)
    assert r.returncode == 0 and "Would run: journalctl --no-pager -u app.service" in r.stderr

    # tamper with the image in the store: verify names it, exit status 1
    stored = root / S / "app-1.0.raw"
    data = bytearray(stored.read_bytes())
    data[-64] ^= 0xFF
    stored.write_bytes(bytes(data))
    r = strata("ext", "verify", "--all", R)
    assert r.returncode == 1
    assert "Extension 'app' has been tampered with" in r.stderr
    assert [v["state"] for v in _json("ext", "verify", "base", R)] == ["ok"]

    # remove: base is needed by app
    r = strata("ext", "remove", "base", R)
    assert r.returncode == 1 and "'app' depends on it" in r.stderr
    out = _json("ext", "remove", "app", R)
    assert out["removed"] == ["app"] and out["deleted"] == [str(stored)]
    assert [h["argv"] for h in out["services"]] == [["systemctl", "stop", "app.service"]]
    # stopped once: the refresh does not stop it again
    assert _hooks(out["outcome"], "stop") == []
    assert out["outcome"]["unmerged"] == ["app"] and out["outcome"]["merged"] == ["base"]
    assert not (root / "usr/share/app").exists()
    assert (root / "usr/share/base/b").exists()
    assert _merged(root) == "base\n"
    assert records.load(str(root), "app-1.0.raw") is None
    out = _json("ext", "remove", "base", R)
    assert out["outcome"]["merged"] == [] and _merged(root) is None
    assert mounts_under(root) == []
    assert os.listdir(root / S) == [] and strays(root) == []


@isolated
def test_services_across_merge_refresh_unmerge(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    R = f"--root={root}"  # noqa: N806
    a = image(tmp_path, "a", {"usr/share/a": "a"},
              {**DEBIAN_12, "AVOCADO_ENABLE_SERVICES": "a.service a-helper.socket"})
    b = image(tmp_path, "b", {"usr/share/b": "b"}, {**DEBIAN_12, "STRATA_SERVICES": "b",
                                                     "EXTENSION_RELOAD_MANAGER": "1"})
    assert strata("ext", "install", str(a), str(b), "--enable", R).returncode == 0
    merged = _json("ext", "merge", R)
    # the hooks' own daemon-reload (EXTENSION_RELOAD_MANAGER=1) counts: not reloaded twice
    assert _hooks(merged, "daemon-reload") == [["systemctl", "daemon-reload"]]
    assert _hooks(merged, "start") == [["systemctl", "start", "--no-block", "a.service",
                                        "a-helper.socket", "b.service"]]
    assert strata("ext", "disable", "a", R).returncode == 0
    refreshed = _json("ext", "refresh", R)
    # the one that goes is stopped before; the rest (re)started after
    assert _hooks(refreshed, "stop") == [["systemctl", "stop", "a.service", "a-helper.socket"]]
    assert _hooks(refreshed, "start") == [["systemctl", "start", "--no-block", "b.service"]]
    unmerged = _json("ext", "unmerge", R)
    assert _hooks(unmerged, "stop") == [["systemctl", "stop", "b.service"]]
    assert unmerged["hooks"][0]["phase"] == "stop"  # before anything else


def _libc_root(base: Path) -> Path:
    """A merged-/usr root with this machine's libc and loader (what /bin/true needs)."""
    root = make_root(base)
    for name in ("bin", "lib", "lib64", "sbin"):
        (root / "usr" / name).mkdir(parents=True, exist_ok=True)
        os.symlink(f"usr/{name}", root / name)
    copy_lib(root, "libc.so.6")
    with open("/bin/true", "rb") as f:
        loader = read_info(f).interpreter
    assert loader is not None
    copy_into(root, os.path.realpath(loader))
    dest = root / loader.lstrip("/")
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(os.path.realpath(loader), dest.resolve() if dest.is_symlink() else dest)
    return root


@isolated
def test_health_libraries_on_the_merged_root(tmp_path: Path) -> None:
    tool = {"usr/bin/mytrue": Path(os.path.realpath("/bin/true")).read_bytes()}
    good = _libc_root(tmp_path / "good")
    bare = make_root(tmp_path / "bare")  # no C library at all
    for root in (good, bare):
        (root / S).mkdir(parents=True)
        shutil.copy(image(tmp_path / root.parent.name, "tool", tool), root / S / "tool.raw")
        ext.enable(str(root), ["tool"])
        ext.merge(str(root), {})
    (ok,) = health(str(good))
    libs = next(c for c in ok.checks if c.aspect is HealthAspect.LIBRARIES)
    assert libs.state is CheckState.OK and ok.healthy, ok
    (bad,) = health(str(bare))
    libs = next(c for c in bad.checks if c.aspect is HealthAspect.LIBRARIES)
    assert libs.state is CheckState.FAILED and not bad.healthy
    assert "/usr/bin/mytrue" in libs.detail and "libc.so.6" in libs.detail


@isolated
def test_health_names_a_stale_merge_and_a_hidden_file(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    v1 = image(tmp_path, "app-1", {"usr/share/app": "1\n"})
    v2 = image(tmp_path, "app-2", {"usr/share/app": "2\n"})
    # "zz" sits above "app" (names ascend) and ships the same path
    zz = image(tmp_path, "zz", {"usr/share/app": "z\n"})
    ext_root = str(root)
    from strata.manage.install import install

    install(ext_root, [str(v1)], enable=True, now=True)
    install(ext_root, [str(v2)], enable=True)
    (r,) = health(ext_root, ["app"])
    merged = r.checks[0]
    assert merged.state is CheckState.FAILED
    assert merged.detail == "app-1 is merged, but app-2 is enabled: run 'strata ext refresh'"
    install(ext_root, [str(zz)], enable=True, now=True)
    (r,) = health(ext_root, ["app"])
    files = next(c for c in r.checks if c.aspect is HealthAspect.FILES)
    assert r.checks[0].state is CheckState.OK
    assert files.state is CheckState.FAILED
    assert "/usr/share/app: content differs from the image's" in files.detail


# --- kills at every step ---------------------------------------------------------------------


INSTALL_FAULTS = ("install-fetched", "install-validated", "install-recorded", "install-stored",
                  "install-enabled")
REMOVE_FAULTS = ("remove-stopped", "remove-disabled", "remove-refreshed", "remove-deleted")


def _installed_state(root: Path, img: Path) -> str:
    """"old": nothing of it anywhere; "new": in the store, recorded, as the source;
    anything else fails the test."""
    stored = root / S / img.name
    visible = [e.name for e in os.scandir(root / S)] if (root / S).exists() else []
    visible = [n for n in visible if not n.startswith(".#")]
    if not visible:
        assert not stored.exists()
        return "old"
    assert visible == [img.name], visible
    assert stored.read_bytes() == img.read_bytes()
    rec = records.load(str(root), img.name)
    assert rec is not None and rec.size == img.stat().st_size
    return "new"


@pytest.mark.parametrize("fault", INSTALL_FAULTS)
@isolated
def test_install_killed_at_each_step(tmp_path: Path, fault: str) -> None:
    root = make_root(tmp_path)
    R = f"--root={root}"  # noqa: N806
    img = image(tmp_path, "app-1.0", APP_FILES, {**DEBIAN_12, "STRATA_SERVICES": "app"})
    r = strata("ext", "install", str(img), "--now", R, env={"STRATA_FAULT": fault})
    assert r.returncode == -9, r.stderr
    state = _installed_state(root, img)
    expected = "old" if fault in ("install-fetched", "install-validated",
                                  "install-recorded") else "new"
    assert state == expected
    assert _merged(root) is None
    # the next run completes it (or does it), and sweeps what the kill left behind
    r = strata("ext", "install", str(img), "--now", R)
    assert r.returncode == 0, r.stderr
    if state == "new":
        assert "already installed" in r.stderr
    assert _installed_state(root, img) == "new"
    assert _merged(root) == "app-1.0\n"
    assert (root / "usr/share/app/data").read_text() == "app data\n"
    assert strays(root) == []


@pytest.mark.parametrize("fault", REMOVE_FAULTS)
@isolated
def test_remove_killed_at_each_step(tmp_path: Path, fault: str) -> None:
    root = make_root(tmp_path)
    R = f"--root={root}"  # noqa: N806
    img = image(tmp_path, "app-1.0", APP_FILES, {**DEBIAN_12, "STRATA_SERVICES": "app"})
    keep = image(tmp_path, "keep", {"usr/share/keep": "k"})
    assert strata("ext", "install", str(img), str(keep), "--now", R).returncode == 0
    r = strata("ext", "remove", "app", R, env={"STRATA_FAULT": fault})
    assert r.returncode == -9, r.stderr
    present = (root / S / img.name).exists()
    if fault == "remove-deleted":
        assert not present  # the image went: removed, its record is a leftover
    else:
        assert present and records.load(str(root), img.name) is not None
        assert (root / S / img.name).read_bytes() == img.read_bytes()
    # merged as before or without it, never half
    assert _merged(root) in ("app-1.0\nkeep\n", "keep\n")
    assert (root / "usr/share/keep").exists()
    # the next run finishes the job
    r = strata("ext", "remove", "app", R)
    if fault == "remove-deleted":
        assert r.returncode == 1 and "not found" in r.stderr
    else:
        assert r.returncode == 0, r.stderr
    assert not (root / S / img.name).exists()
    assert records.load(str(root), img.name) is None
    assert _merged(root) == "keep\n" and not (root / "usr/share/app").exists()
    assert strays(root) == []
    assert not (root / "var/lib/strata/metadata" / f"{img.name}.json").exists()
