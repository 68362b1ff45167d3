"""io.strata.Extensions: its golden IDL, and the lifecycle over the wire against the real
management layer on a scratch root: Install streaming progress, Info, Verify, Health,
Remove, their errors, the privilege check, and the read cache seeing every change."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from strata.service.backend import load
from tests.helpers import make_root
from tests.service.harness import Raw, ServerThread
from tests.service.test_auth import NOBODY, as_user
from tests.service.test_idl import golden, members
from tests.unit.test_lifecycle_support import DEBIAN_12, http_server, image, store_state

IF = "io.strata.Extensions"
APP = {"usr/share/app/data": "app\n"}


def test_golden_members() -> None:
    name, m = members(golden(IF))
    assert name == IF
    assert m == {
        "InstalledImage": ("type", "(name: string, version: ?string, path: string, "
                                   "sha256: string, size: int, source: string, "
                                   "sourceKind: string, action: string, enabled: bool)"),
        "Field": ("type", "(key: string, value: string)"),
        "Image": ("type", "(path: string, imageName: string, version: ?string, "
                          "origin: string, isDirectory: bool, size: int, sha256: ?string, "
                          "recordedSha256: ?string, source: ?string, sourceKind: ?string, "
                          "installedAt: ?string, enabled: bool)"),
        "ExtensionDetails": ("type", "(name: string, version: ?string, image: string, "
                                     "classes: []string, sysextRelease: ?[]Field, "
                                     "confextRelease: ?[]Field, images: []Image, "
                                     "services: []string, hooks: []Field, "
                                     "depends: []string, conflicts: []string, "
                                     "provides: []string, requiredBy: []string, "
                                     "requiredByEnabled: []string, enabled: bool, "
                                     "mergedInto: []string, origin: ?string)"),
        "VerifyResult": ("type", "(name: string, path: string, state: string, "
                                 "expected: ?string, actual: ?string, detail: string)"),
        "HealthCheck": ("type", "(aspect: string, state: string, detail: string)"),
        "HealthReport": ("type", "(name: string, healthy: bool, checks: []HealthCheck)"),
        "Install": ("method", "(sources: []string, enable: ?bool, now: ?bool, "
                              "imagePolicy: ?string)",
                    "(message: string, done: bool, installed: ?[]InstalledImage)"),
        "Remove": ("method", "(names: []string, keepFiles: ?bool, force: ?bool)",
                   "(message: string, done: bool, deleted: ?[]string)"),
        "Info": ("method", "(name: string)", "(extension: ExtensionDetails)"),
        "Verify": ("method", "(names: ?[]string, all: ?bool)",
                   "(results: []VerifyResult, ok: bool)"),
        "Health": ("method", "(names: ?[]string)", "(reports: []HealthReport, healthy: bool)"),
        "ExtensionNotFound": ("error", "(name: string)"),
        "InvalidSource": ("error", "(source: string, reason: string)"),
        "ConfigurationError": ("error", "(message: string)"),
        "Failed": ("error", "(message: string)"),
    }


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_root(tmp_path)


@pytest.fixture
def served(sock_dir: Path, root: Path) -> Iterator[ServerThread]:
    with ServerThread(sock_dir / "strata.sock", load(), root=str(root)) as srv:
        yield srv


def call(srv: ServerThread, method: str, params: dict[str, Any], *, more: bool = False
         ) -> list[dict[str, Any]]:
    with Raw(srv.path, timeout=60) as c:
        c.call(f"{IF}.{method}", params, **({"more": True} if more else {}))
        return list(c.replies())


def test_install_streams_progress_then_info_verify_health_remove(
        served: ServerThread, root: Path, tmp_path: Path) -> None:
    base = image(tmp_path, "base", {"usr/share/base": "b"})
    app = image(tmp_path, "app-1.0", APP, {**DEBIAN_12, "STRATA_DEPENDS": "base"})
    big = image(tmp_path, "big-2.0", {"usr/share/big": os.urandom(24 << 20).hex()[:24 << 20]})
    with http_server(big.parent) as url:
        replies = call(served, "Install", {"sources": [str(base), str(app), f"{url}/big-2.0.raw"],
                                           "enable": True}, more=True)
    *progress, final = replies
    assert all(r["continues"] and r["parameters"]["done"] is False for r in progress)
    lines = [r["parameters"]["message"] for r in progress]
    assert any(line.startswith("Downloading big-2.0.raw: ") for line in lines), lines
    assert any(line.startswith("Installed app 1.0 as ") for line in lines), lines
    assert any("Enabled extension 'app'" in line for line in lines), lines
    assert "continues" not in final
    p = final["parameters"]
    assert p["done"] is True
    assert p["message"] == "Installed base, app 1.0, big 2.0."
    assert [(i["name"], i["action"], i["sourceKind"], i["enabled"]) for i in p["installed"]] \
        == [("base", "installed", "file", True), ("app", "installed", "file", True),
            ("big", "installed", "url", True)]

    (info,) = call(served, "Info", {"name": "base"})
    d = info["parameters"]["extension"]
    assert d["requiredByEnabled"] == ["app"] and d["enabled"] is True
    assert d["sysextRelease"] == [{"key": "ID", "value": "debian"},
                                  {"key": "VERSION_ID", "value": "12"}]
    assert "confextRelease" not in d  # null members are left out

    (err,) = call(served, "Remove", {"names": ["base"]})
    assert err["error"] == f"{IF}.ConfigurationError"
    assert "'app' depends on it" in err["parameters"]["message"]

    (v,) = call(served, "Verify", {"all": True})
    assert v["parameters"]["ok"] is True
    assert {r["name"]: r["state"] for r in v["parameters"]["results"]} == {
        "base": "ok", "app": "ok", "big": "ok"}
    stored = root / "var/lib/strata/extensions/app-1.0.raw"
    data = bytearray(stored.read_bytes())
    data[-64] ^= 1
    stored.write_bytes(bytes(data))
    (v,) = call(served, "Verify", {"names": ["app"]})
    assert v["parameters"]["ok"] is False
    assert v["parameters"]["results"][0]["state"] == "tampered"

    (h,) = call(served, "Health", {"names": ["base"]})
    report = h["parameters"]["reports"][0]
    assert h["parameters"]["healthy"] is False  # enabled, but nothing is merged
    assert report["checks"][0] == {"aspect": "merged", "state": "failed",
                                   "detail": "enabled, but not merged (as sysext)"}

    # app's image is damaged now: what it needs is unknown
    (err,) = call(served, "Remove", {"names": ["base"]})
    assert err["error"] == f"{IF}.ConfigurationError"
    assert "'app' enabled for OS release 12 cannot be read" in err["parameters"]["message"]
    *_progress, done = call(served, "Remove", {"names": ["app", "base"]}, more=True)
    assert done["parameters"]["deleted"] == [
        str(root / "var/lib/strata/extensions/app-1.0.raw"),
        str(root / "var/lib/strata/extensions/base.raw")]


@pytest.mark.parametrize(("method", "params", "error", "expected"), [
    ("Info", {"name": "nosuch"}, "ExtensionNotFound", {"name": "nosuch"}),
    ("Remove", {"names": ["nosuch"]}, "ExtensionNotFound", {"name": "nosuch"}),
    ("Verify", {"names": ["nosuch"]}, "ExtensionNotFound", {"name": "nosuch"}),
    ("Health", {"names": ["nosuch"]}, "ExtensionNotFound", {"name": "nosuch"}),
    ("Install", {"sources": ["nosuch"]}, "InvalidSource", None),
    ("Install", {"sources": []}, "org.varlink.service.InvalidParameter",
     {"parameter": "sources"}),
    ("Verify", {}, "org.varlink.service.InvalidParameter", {"parameter": "names"}),
])
def test_errors(served: ServerThread, method: str, params: dict[str, Any], error: str,
                expected: dict[str, Any] | None) -> None:
    (r,) = call(served, method, params)
    assert r["error"] == (error if "." in error else f"{IF}.{error}")
    if expected is not None:
        assert r["parameters"] == expected
    else:
        # no such file; the repository (strata update's, when installed) has none either
        assert r["parameters"]["source"] == "nosuch"
        assert "repository" in r["parameters"]["reason"].lower()


def test_bad_sources_are_invalid_source_and_change_nothing(served: ServerThread, root: Path,
                                                           tmp_path: Path) -> None:
    junk = tmp_path / "junk.raw"
    junk.write_bytes(b"\0" * 8192)
    fedora = image(tmp_path, "fed", APP, {"ID": "fedora", "VERSION_ID": "40"})
    signed_only = image(tmp_path, "app", APP)
    before = store_state(root)
    for sources, policy, text in (
            ([str(junk)], None, "not a usable image"),
            ([str(fedora)], None, "is for OS 'fedora'"),
            ([str(signed_only)], "root=signed+absent:usr=signed+absent",
             "Image does not match image policy")):
        params: dict[str, Any] = {"sources": sources}
        if policy:
            params["imagePolicy"] = policy
        (r,) = call(served, "Install", params)
        assert r["error"] == f"{IF}.InvalidSource", r
        assert r["parameters"]["source"] == sources[0]
        assert text in r["parameters"]["reason"]
    assert store_state(root) == before


def test_changes_invalidate_the_read_cache(served: ServerThread, tmp_path: Path) -> None:
    """A Status cached before an Install through io.strata.Extensions is not served after."""
    def status() -> list[str]:
        with Raw(served.path) as c:
            c.call("org.avocado.Extensions.Status", {})
            return [e["name"] for e in c.reply()["parameters"]["extensions"]]

    assert status() == [] and status() == []
    call(served, "Install", {"sources": [str(image(tmp_path, "app", APP))]})
    assert status() == ["app"]
    call(served, "Remove", {"names": ["app"]})
    assert status() == []


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch uids")
def test_install_and_remove_need_privileges(served: ServerThread, tmp_path: Path) -> None:
    img = image(tmp_path, "app", APP)
    os.chmod(served.path, 0o666)  # authorisation is then all the daemon's

    def attempt() -> list[str]:
        out = []
        for method, params in (("Install", {"sources": [str(img)]}),
                               ("Remove", {"names": ["app"]}),
                               ("Health", {})):
            with Raw(served.path) as c:
                c.call(f"{IF}.{method}", params)
                out.append(c.reply().get("error", "ok"))
        return out

    assert as_user(NOBODY, NOBODY, [], attempt) == [
        "org.varlink.service.PermissionDenied", "org.varlink.service.PermissionDenied", "ok"]
