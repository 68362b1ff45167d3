"""`strata ext` end to end: real merges of the enabled set in private mount namespaces, on
scratch roots, with erofs, squashfs and directory images."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

import pytest

from strata.errors import ErrorKind, StrataError
from strata.manage import ext
from tests.helpers import install_ext, isolated, make_root, mounts_under, strata, write_tree

pytestmark = pytest.mark.privileged

S = "var/lib/strata/extensions"


def _links(d: Path) -> dict[str, Path]:
    """Symlinks in d -> what they resolve to."""
    if not d.exists():
        return {}
    return {p.name: p.resolve() for p in d.iterdir() if p.is_symlink()}


def _systemd_would_merge(root: Path, names: set[str]) -> None:
    """What systemd v257 makes of <root>/run/extensions as its search directory (symlinks
    followed, as without --root): these images, each with release data under its name."""
    from strata.arch import native
    from strata.discover import discover
    from strata.engine.inspect import read_candidate
    from strata.model import ExtClass

    found = discover(ExtClass.SYSEXT, search_dirs=(str(root / "run/extensions"),),
                     arch=native()).extensions
    assert {e.name for e in found} == names
    for e in found:
        assert read_candidate(e, ExtClass.SYSEXT, ("/usr", "/opt")).release.found, e


@isolated
def test_enable_merge_status_disable_refresh_unmerge(tmp_path: Path) -> None:
    root = make_root(tmp_path, files={"etc/host.conf": "host\n"})
    R = f"--root={root}"  # noqa: N806
    base = install_ext(root, "base", {"usr/share/x": "base\n", "usr/bin/base": "b"}, where=S)
    app = install_ext(root, "app-1.0", {"usr/share/x": "app\n", "opt/app/f": "a"},
                      {"ID": "debian", "VERSION_ID": "12", "STRATA_DEPENDS": "base"},
                      where=S, fmt="erofs")
    conf = install_ext(root, "conf", {"etc/app.conf": "conf\n"}, where=S, confext=True,
                       fmt="squashfs")
    install_ext(root, "extra", {"usr/share/extra": "e"})  # /var/lib/extensions, not enabled

    r = strata("ext", "enable", "app", "base", "conf", R)
    assert r.returncode == 0, r.stderr
    r = strata("ext", "merge", R)
    assert r.returncode == 0, r.stderr
    assert "Merged 3 extension(s): base, app, conf." in r.stderr
    # the dependency sits below: app's file wins over base's although "base" > "app"
    assert (root / "usr/share/x").read_text() == "app\n"
    assert (root / "usr/bin/base").read_text() == "b"
    assert (root / "opt/app/f").read_text() == "a"
    assert (root / "etc/app.conf").read_text() == "conf\n"
    assert (root / "etc/host.conf").read_text() == "host\n"
    assert not (root / "usr/share/extra").exists()
    assert (root / "usr/.systemd-sysext/extensions").read_text() == "app-1.0\nbase\n"
    assert (root / "etc/.systemd-confext/confexts").read_text() == "conf\n"
    # the enabled set, where stock systemd looks
    assert _links(root / "run/extensions") == {"base": base.resolve(),
                                               "app-1.0.raw": app.resolve()}
    assert _links(root / "run/confexts") == {"conf.raw": conf.resolve()}
    _systemd_would_merge(root, {"base", "app-1.0"})
    # avocadoctl's default: ephemeral, writable, gone on unmerge
    (root / "usr/share/scratch").write_text("tmp")

    status = {s["name"]: s for s in json.loads(strata("ext", "status", R, "--json=short").stdout)}
    assert {n: (s["isMerged"], s["isEnabled"]) for n, s in status.items()} == {
        "app": (True, True), "base": (True, True), "conf": (True, True),
        "extra": (False, False)}
    assert status["app"]["version"] == "1.0" and status["app"]["origin"] == "store"
    assert status["extra"]["origin"] == "/var/lib/extensions"

    again = strata("ext", "merge", R)
    assert again.returncode == 1 and "already merged" in again.stderr

    r = strata("ext", "disable", "app", R)
    assert r.returncode == 0, r.stderr
    r = strata("ext", "refresh", R, "--json=short")
    assert r.returncode == 0, r.stderr
    outcome = json.loads(r.stdout)
    assert outcome["merged"] == ["base", "conf"] and outcome["unmerged"] == ["app"]
    assert (root / "usr/share/x").read_text() == "base\n"
    assert not (root / "opt/app").exists()
    assert _links(root / "run/extensions") == {"base": base.resolve()}

    r = strata("ext", "unmerge", "--unmount", R)
    assert r.returncode == 0, r.stderr
    assert mounts_under(root) == []
    assert not (root / "usr/share/scratch").exists()
    assert _links(root / "run/extensions") == {} and _links(root / "run/confexts") == {}
    status = json.loads(strata("ext", "status", R, "--json=short").stdout)
    assert not any(s["isMerged"] for s in status)


@isolated
def test_broken_and_incompatible_images_are_skipped_while_the_rest_merge(tmp_path: Path
                                                                        ) -> None:
    root = make_root(tmp_path)
    install_ext(root, "good", {"usr/share/good": "g"}, where=S)
    install_ext(root, "fedora", {"usr/share/f": "f"}, {"ID": "fedora"}, where=S, fmt="erofs")
    install_ext(root, "needsfedora", {"usr/share/n": "n"},
                {"ID": "_any", "STRATA_DEPENDS": "fedora"}, where=S)
    cut = install_ext(root, "cut", {"usr/share/big": os.urandom(300_000).hex()}, where=S,
                      fmt="erofs")
    gone = install_ext(root, "gone", {"usr/share/gone": "x"}, where=S, fmt="squashfs")
    ext.enable(str(root), ["good", "fedora", "needsfedora", "cut", "gone"])
    data = cut.read_bytes()
    cut.write_bytes(data[: len(data) // 3])  # broken after it was enabled
    gone.unlink()

    lines: list[str] = []
    outcome = ext.merge(str(root), {}, progress=lines.append)
    assert outcome.merged == ("good",)
    reasons = dict(outcome.skipped)
    assert set(reasons) == {"fedora", "needsfedora", "cut", "gone"}
    assert "fedora" in reasons["fedora"]
    assert "'needsfedora' depends on 'fedora'" in reasons["needsfedora"]
    assert "truncated" in reasons["cut"] and "cut.raw" in reasons["cut"]
    assert "leads to no image" in reasons["gone"]
    assert (root / "usr/share/good").read_text() == "g"
    for f in ("f", "n", "big"):
        assert not (root / "usr/share" / f).exists()
    assert set(_links(root / "run/extensions")) == {"good"}
    # every step and every skip reached the progress callback
    assert any("Merged extensions into" in line for line in lines)
    assert any("needsfedora" in line for line in lines)
    ext.unmerge(str(root), {})
    assert mounts_under(root) == []


@isolated
def test_order_by_dependencies_priorities_and_names(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    for name in ("a", "b", "c"):
        install_ext(root, name, {"usr/share/x": name}, where=S, fmt="erofs")
    install_ext(root, "y", {"usr/share/yz": "y"}, where=S)
    install_ext(root, "z", {"usr/share/yz": "z"}, {"ID": "_any", "STRATA_DEPENDS": "y"},
                where=S, fmt="squashfs")
    ext.enable(str(root), ["a", "b", "c"])
    ext.enable(str(root), ["y"], priority=100)  # the dependency still goes below z
    ext.enable(str(root), ["z"])
    ext.merge(str(root), {})
    assert (root / "usr/share/x").read_text() == "c"  # equal priorities: the highest name
    assert (root / "usr/share/yz").read_text() == "z"
    ext.enable(str(root), ["b"], priority=5)
    outcome = ext.refresh(str(root), {})
    # bottom to top: by priority, then name; y (100) as late as it can, z above what it needs
    assert outcome.merged == ("a", "c", "b", "y", "z")
    assert (root / "usr/share/x").read_text() == "b"  # priority beats the name
    assert (root / "usr/share/yz").read_text() == "z"
    ext.enable(str(root), ["a"], priority=9)
    ext.refresh(str(root), {})
    assert (root / "usr/share/x").read_text() == "a"
    ext.unmerge(str(root), {})


@isolated
def test_both_classes_release_named_for_the_name_and_hooks(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    install_ext(root, "dual", {
        "usr/share/dual": "u", "etc/dual.conf": "e",
        "etc/extension-release.d/extension-release.dual": 'ID=_any\nAVOCADO_ON_MERGE="echo hi"\n',
    }, where=S, fmt="erofs", filename="dual-2.3.raw")
    ext.enable(str(root), ["dual"])
    outcome = ext.merge(str(root), {})
    assert outcome.merged == ("dual",)
    assert (root / "usr/share/dual").read_text() == "u"
    assert (root / "etc/dual.conf").read_text() == "e"
    # exposed under the name its release file is found by, in both directories
    assert set(_links(root / "run/extensions")) == {"dual.raw"}
    assert set(_links(root / "run/confexts")) == {"dual.raw"}
    _systemd_would_merge(root, {"dual"})  # dual-2.3.raw alone would carry no release data
    (st,) = ext.status(str(root))
    assert (st.name, st.version, st.is_sysext, st.is_confext, st.is_merged) == (
        "dual", "2.3", True, True, True)
    # a scratch root is not the running system: hooks are only recorded
    assert ("echo", "hi") in [h.argv for h in outcome.hooks]
    assert not any(h.ran for h in outcome.hooks)
    ext.unmerge(str(root), {})
    assert mounts_under(root) == []


@isolated
def test_mutable_modes_from_the_config(tmp_path: Path) -> None:
    root = make_root(tmp_path, files={
        "etc/strata/strata.toml": '[ext]\nconfext_mutable = "no"\n'})
    install_ext(root, "s", {"usr/share/s": "s"}, where=S)
    install_ext(root, "c", {"etc/c.conf": "c"}, where=S, confext=True)
    ext.enable(str(root), ["s", "c"])
    ext.merge(str(root), {})
    (root / "usr/share/new").write_text("ok")  # sysext: ephemeral (the default)
    with pytest.raises(OSError) as e:
        (root / "etc/new.conf").write_text("x")
    assert e.value.errno == errno.EROFS
    ext.unmerge(str(root), {})
    write_tree(root, {"etc/strata/strata.toml": '[ext]\nsysext_mutable = "bogus"\n'})
    with pytest.raises(StrataError) as err:
        ext.merge(str(root), {})
    assert err.value.kind is ErrorKind.CONFIGURATION
    assert mounts_under(root) == []


@isolated
def test_a_failed_merge_takes_the_first_class_down_again(tmp_path: Path) -> None:
    from strata.engine import ops
    from strata.engine.settings import Settings
    from strata.model import ExtClass

    root = make_root(tmp_path)
    install_ext(root, "s", {"usr/share/s": "s"}, where=S)
    install_ext(root, "c", {"etc/c.conf": "c"}, where=S, confext=True)
    ext.enable(str(root), ["s", "c"])
    real = ops.merge

    def failing(settings: Settings, env: object, **kw: Any) -> ops.MergeOutcome:
        if settings.cls is ExtClass.CONFEXT:
            raise StrataError("injected failure")
        return real(settings, {}, **kw)

    ops.merge = failing
    try:
        with pytest.raises(StrataError, match="injected failure"):
            ext.merge(str(root), {})
    finally:
        ops.merge = real
    assert mounts_under(root) == []
    assert not (root / "usr/share/s").exists()
    outcome = ext.merge(str(root), {})
    assert outcome.merged == ("c", "s")
    ext.unmerge(str(root), {})


@isolated
def test_switching_versions(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    install_ext(root, "app", {"usr/share/v": "1"}, {"ID": "_any", "SYSEXT_VERSION_ID": "1"},
                where=S, fmt="erofs", filename="app_1.raw")
    ext.enable(str(root), ["app"])
    ext.merge(str(root), {})
    assert (root / "usr/share/v").read_text() == "1"
    install_ext(root, "app2", {"usr/share/v": "2"}, {"ID": "_any", "SYSEXT_VERSION_ID": "2"},
                where=S, fmt="erofs", filename="app_2.raw", release_name="app")
    ext.refresh(str(root), {})
    assert (root / "usr/share/v").read_text() == "1"  # enabled is the image, not the name
    ext.enable(str(root), ["app"])  # the newest version now
    ext.refresh(str(root), {})
    assert (root / "usr/share/v").read_text() == "2"
    assert set(_links(root / "run/extensions")) == {"app_2.raw"}
    ext.unmerge(str(root), {})
