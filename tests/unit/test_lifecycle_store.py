"""install, verify, info, remove, logs on scratch roots, without mounting anything: images
made with mkfs.erofs, served over HTTP from 127.0.0.1; bad input leaves the store as it
was."""

from __future__ import annotations

import json
import os
import sys
import types
from collections.abc import Callable
from pathlib import Path

import pytest

from strata.errors import ErrorKind, StrataError
from strata.manage import ext, records, store
from strata.manage.api import InstallAction, SourceKind, VerifyState
from strata.manage.info import info
from strata.manage.install import default_resolver, install
from strata.manage.logs import logs_plan
from strata.manage.remove import remove
from strata.manage.verify import verify
from tests.helpers import make_root, strata, write_tree
from tests.unit.test_lifecycle_support import (
    DEBIAN_12,
    http_server,
    image,
    store_state,
    strays,
)

S = "var/lib/strata/extensions"
APP = {"usr/share/app/data": "app data\n", "usr/bin/app": "#!/bin/sh\necho app\n"}


def _enabled_links(root: Path, version: str = "12") -> dict[str, str]:
    d = root / "var/lib/strata/os-releases" / version
    return {p.name: os.readlink(p) for p in d.iterdir() if p.is_symlink()} if d.exists() \
        else {}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_root(tmp_path)


# --- install -----------------------------------------------------------------------------------


def test_install_records_enables_and_is_idempotent(root: Path, tmp_path: Path) -> None:
    img = image(tmp_path, "app-1.0", APP, {**DEBIAN_12, "STRATA_SERVICES": "app"})
    r = install(str(root), [str(img)], enable=True)
    (i,) = r.installed
    stored = root / S / "app-1.0.raw"
    assert (i.name, i.version, i.path, i.action, i.kind, i.enabled) == (
        "app", "1.0", str(stored), InstallAction.INSTALLED, SourceKind.FILE, True)
    assert stored.read_bytes() == img.read_bytes()
    import hashlib

    digest = hashlib.sha256(img.read_bytes()).hexdigest()
    rec = records.load(str(root), "app-1.0.raw")
    assert rec is not None
    assert (rec.sha256, rec.size, rec.source, rec.kind) == (digest, img.stat().st_size,
                                                            str(img), SourceKind.FILE)
    assert _enabled_links(root) == {"app-1.0.raw": "../../extensions/app-1.0.raw"}
    assert r.outcome is None

    before = store_state(root)
    again = install(str(root), [str(img)], enable=True)
    assert again.installed[0].action is InstallAction.PRESENT
    assert again.installed[0].path == str(stored)
    assert store_state(root) == before
    assert strays(root) == []


def test_cli_says_already_installed(root: Path, tmp_path: Path) -> None:
    img = image(tmp_path, "app-1.0", APP)
    assert strata("ext", "install", str(img), f"--root={root}").returncode == 0
    r = strata("ext", "install", str(img), f"--root={root}")
    assert r.returncode == 0, r.stderr
    assert "app 1.0 is already installed" in r.stderr and "nothing to do" in r.stderr


def test_newer_version_goes_beside_the_old(root: Path, tmp_path: Path) -> None:
    old = image(tmp_path, "app-1.0", APP, {**DEBIAN_12, "SYSEXT_VERSION_ID": "1.0"},
                release_name="app")
    new = image(tmp_path, "app-2.0", {**APP, "usr/share/app/data": "v2\n"},
                {**DEBIAN_12, "SYSEXT_VERSION_ID": "2.0"}, release_name="app")
    install(str(root), [str(old)], enable=True)
    r = install(str(root), [str(new)], enable=True)
    assert r.installed[0].version == "2.0"
    assert sorted(p.name for p in (root / S).iterdir()) == ["app-1.0.raw", "app-2.0.raw"]
    # the newest is enabled; the old one is kept for rollback
    assert _enabled_links(root) == {"app-2.0.raw": "../../extensions/app-2.0.raw"}
    assert {(s.version, s.enabled) for s in ext.status(str(root))} == {("1.0", False),
                                                                      ("2.0", True)}


def test_an_unversioned_name_already_taken_gets_systemds_version_name(
        root: Path, tmp_path: Path) -> None:
    one = image(tmp_path / "1", "app", APP, {**DEBIAN_12, "SYSEXT_VERSION_ID": "1"})
    two = image(tmp_path / "2", "app", {"usr/share/app/data": "2\n"},
                {**DEBIAN_12, "SYSEXT_VERSION_ID": "2"})
    install(str(root), [str(one)])
    r = install(str(root), [str(two)], enable=True)
    assert r.installed[0].path == str(root / S / "app_2.raw")
    entry = next(e for e in store.scan(str(root)) if e.image_name == "app_2")
    assert entry.name == "app" and store.probe(entry).is_extension
    assert _enabled_links(root) == {"app_2.raw": "../../extensions/app_2.raw"}


def test_same_version_with_other_content_is_refused(root: Path, tmp_path: Path) -> None:
    install(str(root), [str(image(tmp_path / "a", "app-1.0", APP))])
    before = store_state(root)
    rebuilt = image(tmp_path / "b", "app-1.0", {"usr/share/app/data": "rebuilt\n"})
    with pytest.raises(StrataError) as e:
        install(str(root), [str(rebuilt)])
    assert "app 1.0 is already installed" in e.value.message
    assert "different content" in e.value.message
    assert store_state(root) == before and strays(root) == []


def _bad_sources(tmp: Path, root: Path) -> dict[str, tuple[Callable[[], list[str]],
                                                           ErrorKind, str]]:
    def junk() -> list[str]:
        p = tmp / "junk.raw"
        p.write_bytes(os.urandom(8192))
        return [str(p)]

    def truncated() -> list[str]:
        img = image(tmp, "big-1.0", {"usr/share/big": os.urandom(200_000).hex()})
        cut = tmp / "cut" / "big-1.0.raw"
        cut.parent.mkdir()
        cut.write_bytes(img.read_bytes()[:8192])
        return [str(cut)]

    def check_error() -> list[str]:  # /bin at the top level: never merged (check: error)
        return [str(image(tmp, "oldbin", {"bin/tool": "x", "usr/share/x": "y"}))]

    def good_then_bad() -> list[str]:
        return [str(image(tmp, "good", APP)), *junk()]

    def directory() -> list[str]:
        d = tmp / "tree.raw"
        write_tree(d, {"usr/share/x": "x"})
        return [str(d)]

    def no_raw() -> list[str]:
        img = image(tmp, "app", APP)
        return [str(img.rename(img.with_suffix(".img")))]

    return {
        "not an image": (junk, ErrorKind.INVALID, "not a usable image"),
        "a truncated image": (truncated, ErrorKind.INVALID, "not a usable image"),
        "not an extension": (lambda: [str(image(tmp, "norel", APP, release_name="other"))],
                             ErrorKind.INVALID, "not an extension image"),
        "incompatible": (lambda: [str(image(tmp, "fed", APP, {"ID": "fedora",
                                                             "VERSION_ID": "40"}))],
                         ErrorKind.INCOMPATIBLE, "is for OS 'fedora'"),
        "wrong architecture": (lambda: [str(image(tmp, "arm", APP, {
            "ID": "_any", "ARCHITECTURE": "arm64" if os.uname().machine == "x86_64"
            else "x86-64"}))], ErrorKind.INCOMPATIBLE, "architecture"),
        "a strata check error": (check_error, ErrorKind.INVALID, "root-directory: /bin"),
        "one bad of two": (good_then_bad, ErrorKind.INVALID, "junk.raw"),
        "a missing file": (lambda: [str(tmp / "nothere.raw")], ErrorKind.NOT_FOUND,
                           "No such file"),
        "a directory": (directory, ErrorKind.INVALID, "is a directory"),
        "not *.raw": (no_raw, ErrorKind.INVALID, "must end in .raw"),
        "an unknown name": (lambda: ["nosuchext"], ErrorKind.NOT_FOUND,
                            "no extension repository is configured"),
    }


@pytest.mark.parametrize("case", list(_bad_sources(Path("/x"), Path("/x"))))
def test_bad_input_leaves_the_store_unchanged(root: Path, tmp_path: Path, case: str) -> None:
    install(str(root), [str(image(tmp_path / "pre", "pre", APP))], enable=True)
    before = store_state(root)
    make, kind, text = _bad_sources(tmp_path, root)[case]
    sources = make()
    with pytest.raises(StrataError) as e:
        install(str(root), sources, enable=True)
    assert e.value.kind is kind, e.value.message
    assert text in e.value.message
    assert store_state(root) == before
    assert strays(root) == []


@pytest.mark.parametrize("how", ["argument", "strata.toml"])
def test_unsigned_image_under_a_signature_policy_is_refused(root: Path, tmp_path: Path,
                                                            how: str) -> None:
    policy = "root=signed+absent:usr=signed+absent"
    img = image(tmp_path, "app", APP)
    if how == "strata.toml":
        write_tree(root, {"etc/strata/strata.toml": f'[ext]\nimage_policy = "{policy}"\n'})
    before = store_state(root)
    with pytest.raises(StrataError) as e:
        install(str(root), [str(img)], image_policy=policy if how == "argument" else None)
    assert e.value.kind is ErrorKind.PERMISSION
    assert "Image does not match image policy" in e.value.message
    assert "'signed+absent' was required" in e.value.message
    assert e.value.subject == str(img)
    assert store_state(root) == before and strays(root) == []
    # the same image under the default policy goes in
    if how == "argument":
        install(str(root), [str(img)])


def test_a_malformed_policy_is_a_usage_error(root: Path, tmp_path: Path) -> None:
    with pytest.raises(StrataError) as e:
        install(str(root), [str(image(tmp_path, "app", APP))], image_policy="root=bogus")
    assert e.value.kind is ErrorKind.USAGE


def test_enable_refused_takes_the_new_images_out_again(root: Path, tmp_path: Path) -> None:
    before = store_state(root)
    app = image(tmp_path, "app", APP, {**DEBIAN_12, "STRATA_DEPENDS": "base"})
    with pytest.raises(StrataError) as e:
        install(str(root), [str(app)], enable=True)
    assert e.value.kind is ErrorKind.CONFIGURATION
    assert "depends on 'base' (not installed)" in e.value.message
    assert store_state(root) == before and strays(root) == []
    # together with what it depends on, it goes in and both are enabled
    base = image(tmp_path, "base", {"usr/lib/libbase.txt": "b"})
    r = install(str(root), [str(app), str(base)], enable=True)
    assert [i.name for i in r.installed] == ["app", "base"]
    assert set(_enabled_links(root)) == {"app.raw", "base.raw"}


def test_missing_library_with_a_dependency_is_a_warning(root: Path, tmp_path: Path) -> None:
    """elf-needed does not refuse an image that declares STRATA_DEPENDS=: its dependency may
    ship the library. Without the dependency declared, it does."""
    prog = Path(sys.executable).resolve()
    files = {"usr/bin/tool": prog.read_bytes()}
    lonely = image(tmp_path / "a", "tool", files)
    with pytest.raises(StrataError) as e:
        install(str(root), [str(lonely)])
    assert "elf-needed" in e.value.message
    needy = image(tmp_path / "b", "tool", files, {**DEBIAN_12, "STRATA_DEPENDS": "pyrt"})
    r = install(str(root), [str(needy)])
    assert r.installed[0].action is InstallAction.INSTALLED


# --- HTTP --------------------------------------------------------------------------------------


def test_install_from_http(root: Path, tmp_path: Path) -> None:
    img = image(tmp_path, "web-1.0", APP)
    with http_server(img.parent) as url:
        r = install(str(root), [f"{url}/web-1.0.raw"], enable=True)
    (i,) = r.installed
    assert (i.name, i.kind, i.source) == ("web", SourceKind.URL, f"{url}/web-1.0.raw")
    assert (root / S / "web-1.0.raw").read_bytes() == img.read_bytes()
    rec = records.load(str(root), "web-1.0.raw")
    assert rec is not None and rec.kind is SourceKind.URL and rec.source == i.source


@pytest.mark.parametrize(("path", "text"), [
    ("cut/web-1.0.raw", "truncated download"),  # Content-Length announced, half sent
    ("nolength/web-1.0.raw", "not a usable image"),  # no length: the image check catches it
    ("missing.raw", "HTTP 404"),
])
def test_bad_downloads_install_nothing(root: Path, tmp_path: Path, path: str,
                                       text: str) -> None:
    img = image(tmp_path, "web-1.0", {"usr/share/big": os.urandom(300_000).hex()})
    before = store_state(root)
    with http_server(img.parent) as url, pytest.raises(StrataError) as e:
        install(str(root), [f"{url}/{path}"])
    assert text in e.value.message, e.value.message
    assert e.value.subject == f"{url}/{path}"
    assert store_state(root) == before and strays(root) == []


def test_unreachable_server(root: Path) -> None:
    with pytest.raises(StrataError) as e:
        install(str(root), ["http://127.0.0.1:9/app.raw"])
    assert "Failed to download 'http://127.0.0.1:9/app.raw'" in e.value.message


# --- the repository seam -----------------------------------------------------------------------


def test_a_resolver_turns_names_into_files(root: Path, tmp_path: Path) -> None:
    img = image(tmp_path, "repoapp-3", APP)
    asked: list[tuple[str, str]] = []

    def resolve(r: str, name: str) -> str:
        asked.append((r, name))
        return str(img)

    r = install(str(root), ["repoapp"], resolver=resolve)
    assert asked == [(str(root), "repoapp")]
    (i,) = r.installed
    assert (i.kind, i.source, i.name, i.version) == (SourceKind.REPOSITORY, "repoapp",
                                                      "repoapp", "3")
    assert img.exists()  # copied, never moved


def test_default_resolver_is_strata_updates_when_present(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "strata.update.client", None)
    assert default_resolver() is None
    fake = types.ModuleType("strata.update.client")

    def resolve_target(root: str, name: str) -> str:
        return f"{root}/{name}"

    fake.resolve_target = resolve_target  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "strata.update.client", fake)
    assert default_resolver() is resolve_target


# --- verify ------------------------------------------------------------------------------------


def test_verify_reports_tampering_by_name(root: Path, tmp_path: Path) -> None:
    install(str(root), [str(image(tmp_path, "app-1.0", APP)),
                        str(image(tmp_path, "other", {"usr/share/o": "o"}))])
    assert [r.state for r in verify(str(root), ["app"])] == [VerifyState.OK]
    stored = root / S / "app-1.0.raw"
    data = bytearray(stored.read_bytes())
    data[-100] ^= 0xFF
    stored.write_bytes(bytes(data))
    (r,) = verify(str(root), ["app"])
    assert r.state is VerifyState.TAMPERED and r.name == "app"
    assert r.expected != r.actual and "recorded at installation" in r.detail
    cli = strata("ext", "verify", "--all", f"--root={root}")
    assert cli.returncode == 1
    assert "Extension 'app' has been tampered with" in cli.stderr
    assert "other" in cli.stdout and "tampered" in cli.stdout
    js = json.loads(strata("ext", "verify", "other", f"--root={root}", "--json=short").stdout)
    assert [(v["name"], v["state"]) for v in js] == [("other", "ok")]


def test_verify_unrecorded_unknown_and_usage(root: Path, tmp_path: Path) -> None:
    (root / S).mkdir(parents=True)
    image(tmp_path, "byhand", APP).rename(root / S / "byhand.raw")
    (r,) = verify(str(root), all=True)
    assert r.state is VerifyState.UNRECORDED
    assert strata("ext", "verify", "byhand", f"--root={root}").returncode == 0
    with pytest.raises(StrataError) as e:
        verify(str(root), ["nosuch"])
    assert e.value.kind is ErrorKind.NOT_FOUND and e.value.subject == "nosuch"
    r2 = strata("ext", "verify", "byhand", "--all", f"--root={root}")
    assert r2.returncode == 1 and "not both" in r2.stderr


# --- info --------------------------------------------------------------------------------------


def test_info(root: Path, tmp_path: Path) -> None:
    base = image(tmp_path, "base-1.0", {"usr/lib/base/x": "x"},
                 {**DEBIAN_12, "STRATA_PROVIDES": "libbase", "SYSEXT_VERSION_ID": "1.0"},
                 release_name="base")
    app = image(tmp_path, "app-2.1", APP, {
        **DEBIAN_12, "STRATA_DEPENDS": "libbase", "AVOCADO_ENABLE_SERVICES": "app.service",
        "AVOCADO_ON_MERGE": "ldconfig", "EXTENSION_RELOAD_MANAGER": "1"})
    tools = image(tmp_path, "tools", {"usr/bin/t": "t"}, {**DEBIAN_12, "STRATA_DEPENDS": "base"})
    with http_server(base.parent) as url:
        install(str(root), [f"{url}/base-1.0.raw", str(app), str(tools)])
    ext.enable(str(root), ["base", "app"])
    d = info(str(root), "base")
    assert (d.name, d.version, d.classes, d.enabled) == ("base", "1.0", ("sysext",), True)
    assert d.provides == ("libbase",) and d.depends == ()
    assert d.required_by == ("app", "tools") and d.required_by_enabled == ("app",)
    assert d.origin == f"{url}/base-1.0.raw"
    (img,) = d.images
    assert img.sha256 == img.recorded_sha256 and img.size == base.stat().st_size
    assert img.source_kind == "url" and img.enabled
    assert d.merged_into == ()
    a = info(str(root), "app-2.1")
    assert a.services == ("app.service",)
    assert a.hooks == (("AVOCADO_ON_MERGE", "ldconfig"), ("EXTENSION_RELOAD_MANAGER", "1"))
    assert dict(a.release["sysext"])["STRATA_DEPENDS"] == "libbase"
    js = json.loads(strata("ext", "info", "app", f"--root={root}", "--json=short").stdout)
    assert js["depends"] == ["libbase"] and js["release"]["sysext"]["ID"] == "debian"
    text = strata("ext", "info", "app", f"--root={root}").stdout
    assert "Services: app.service" in text and "(as installed)" in text
    with pytest.raises(StrataError) as e:
        info(str(root), "nosuch")
    assert e.value.kind is ErrorKind.NOT_FOUND


# --- remove (nothing merged: no refresh needed) ------------------------------------------------


def test_remove_refuses_what_others_need_then_removes(root: Path, tmp_path: Path) -> None:
    base = image(tmp_path, "base", {"usr/lib/base/x": "x"})
    app = image(tmp_path, "app", APP, {**DEBIAN_12, "STRATA_DEPENDS": "base"})
    install(str(root), [str(base), str(app)], enable=True)
    before = store_state(root)
    with pytest.raises(StrataError) as e:
        remove(str(root), ["base"])
    assert e.value.kind is ErrorKind.CONFIGURATION
    assert e.value.message == ("Cannot remove 'base': 'app' depends on it (enabled for OS "
                               "release 12).")
    assert store_state(root) == before
    cli = strata("ext", "remove", "base", f"--root={root}")
    assert cli.returncode == 1 and "'app' depends on it" in cli.stderr

    r = remove(str(root), ["app", "base"])
    assert r.names == ("app", "base") and len(r.deleted) == 2
    assert list((root / S).iterdir()) == []
    assert list((root / "var/lib/strata/metadata").iterdir()) == []
    assert _enabled_links(root) == {}
    assert strays(root) == []


def test_remove_force_keep_files_and_refusals(root: Path, tmp_path: Path) -> None:
    base = image(tmp_path, "base", {"usr/lib/base/x": "x"})
    app = image(tmp_path, "app", APP, {**DEBIAN_12, "STRATA_DEPENDS": "base"})
    install(str(root), [str(base), str(app)], enable=True)
    # also enabled for the next OS release: its link goes too
    ext.enable(str(root), ["base"], os_release="13")
    r = remove(str(root), ["base"], force=True, keep_files=True)
    assert r.forced == ("app",) and r.deleted == ()
    assert r.kept == (str(root / S / "base.raw"),)
    assert set(_enabled_links(root)) == {"app.raw"} and _enabled_links(root, "13") == {}
    assert (root / S / "base.raw").exists()
    assert records.load(str(root), "base.raw") is not None

    write_tree(root, {"var/lib/extensions/foreign/usr/share/f": "f",
                      "var/lib/extensions/foreign/usr/lib/extension-release.d/"
                      "extension-release.foreign": "ID=_any\n"})
    with pytest.raises(StrataError) as e:
        remove(str(root), ["foreign"])
    assert e.value.kind is ErrorKind.USAGE and "not in Strata's store" in e.value.message
    with pytest.raises(StrataError) as e:
        remove(str(root), ["nosuch"])
    assert e.value.kind is ErrorKind.NOT_FOUND and e.value.subject == "nosuch"


def test_remove_one_version(root: Path, tmp_path: Path) -> None:
    v1 = image(tmp_path, "app-1.0", APP)
    v2 = image(tmp_path, "app-2.0", {"usr/share/app/data": "2"})
    install(str(root), [str(v1)])
    install(str(root), [str(v2)], enable=True)
    r = remove(str(root), ["app-1.0"])
    assert r.deleted == (str(root / S / "app-1.0.raw"),)
    assert [p.name for p in (root / S).iterdir()] == ["app-2.0.raw"]
    assert set(_enabled_links(root)) == {"app-2.0.raw"}


# --- logs and the option checks ----------------------------------------------------------------


def test_logs_under_root_prints_the_plan(root: Path, tmp_path: Path) -> None:
    img = image(tmp_path, "svc", {**APP, "usr/lib/systemd/system/svc-helper.service": "[Unit]\n",
                                  "usr/lib/systemd/system/svc@.service": "[Unit]\n"},
                {**DEBIAN_12, "STRATA_SERVICES": "svc", "EXTENSION_RESTART_UNITS": "x.service"})
    install(str(root), [str(img)], enable=True)
    plan = logs_plan(str(root), "svc", follow=True)
    assert plan.units == ("svc.service", "x.service", "svc-helper.service")
    assert plan.argv == ("journalctl", "--no-pager", "-u", "svc.service", "-u", "x.service",
                         "-u", "svc-helper.service", "--follow")
    assert not plan.runnable and "is not the running system" in (plan.reason or "")
    r = strata("ext", "logs", "svc", f"--root={root}")
    assert r.returncode == 0
    assert ("Would run: journalctl --no-pager -u svc.service -u x.service -u "
            "svc-helper.service") in r.stderr
    quiet = image(tmp_path, "quiet", APP)
    install(str(root), [str(quiet)])
    r = strata("ext", "logs", "quiet", f"--root={root}")
    assert r.returncode == 1 and "declares no services and ships no units" in r.stderr


@pytest.mark.parametrize(("argv", "message"), [
    (["install", "x.raw", "--force"], "Option --force is only valid with 'remove'."),
    (["remove", "x", "--now"], "Option --now is only valid with 'install'."),
    (["status", "-f"], "Option --follow is only valid with 'logs'."),
    (["info", "a", "b"], "'info' takes exactly one extension name."),
    (["install"], "No image to install given."),
])
def test_cli_usage(root: Path, argv: list[str], message: str) -> None:
    r = strata("ext", *argv, f"--root={root}")
    assert r.returncode == 1 and message in r.stderr
