"""The enabled set (enable/disable), its atomic writes, and the /run link farm. Nothing here
mounts, so it runs unprivileged on scratch roots."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from strata.errors import ErrorKind, StrataError
from strata.manage import enabled, ext, fsio, runlinks
from strata.model import ExtClass
from tests.helpers import install_ext, make_root

S = "var/lib/strata/extensions"
REL = "var/lib/strata/os-releases"


def _state(root: Path) -> dict[str, str]:
    """Everything below os-releases: link -> target, file -> content."""
    out: dict[str, str] = {}
    base = root / REL
    for dirpath, _dirs, files in os.walk(base):
        for f in files:
            p = Path(dirpath) / f
            rel = str(p.relative_to(base))
            out[rel] = "-> " + os.readlink(p) if p.is_symlink() else p.read_text()
    return out


def _links(root: Path, version: str = "12") -> dict[str, str]:
    d = root / REL / version
    return {p.name: os.readlink(p) for p in d.iterdir() if p.is_symlink()} if d.exists() else {}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = make_root(tmp_path)
    install_ext(r, "base", {"usr/share/b": "b"}, where=S)
    install_ext(r, "app-1.0", {"usr/share/a": "1"}, {"ID": "_any", "STRATA_DEPENDS": "base"},
                where=S, fmt="erofs")
    install_ext(r, "conf", {"etc/c": "c"}, where=S, confext=True, fmt="squashfs")
    install_ext(r, "old", {"usr/share/o": "o"}, {"ID": "_any", "STRATA_CONFLICTS": "base"},
                where=S)
    install_ext(r, "sys", {"usr/share/s": "s"})  # /var/lib/extensions
    install_ext(r, "nothing", {"usr/share/n": "n"}, where=S, release_name="other")
    return r


def test_enable_writes_relative_links_and_counts(root: Path) -> None:
    r = ext.enable(str(root), ["base", "app", "conf", "sys", "base"])
    assert (r.done, r.failed) == (4, 0)
    assert _links(root) == {"base": "../../extensions/base",
                            "app-1.0.raw": "../../extensions/app-1.0.raw",
                            "conf.raw": "../../extensions/conf.raw",
                            "sys": "../../../extensions/sys"}
    # every link resolves inside the root
    for name in _links(root):
        assert (root / REL / "12" / name).exists()
    assert not (root / REL / "12" / enabled.PRIORITIES_FILE).exists()
    assert [s.name for s in ext.status(str(root)) if s.enabled] == ["app", "base", "conf",
                                                                     "sys"]


def test_enable_by_image_name_and_the_newest_version(root: Path) -> None:
    install_ext(root, "app-2.0", {"usr/share/a": "2"},
                {"ID": "_any", "SYSEXT_VERSION_ID": "2.0", "STRATA_DEPENDS": "base"},
                where=S, fmt="erofs")
    ext.enable(str(root), ["base", "app-1.0"])
    assert "app-1.0.raw" in _links(root)
    ext.enable(str(root), ["app"])  # the newest: switches, one version per name
    assert set(_links(root)) == {"base", "app-2.0.raw"}


@pytest.mark.parametrize(("names", "kind", "needle"), [
    (["base", "nosuch"], ErrorKind.NOT_FOUND, "Extension 'nosuch' not found"),
    (["app"], ErrorKind.CONFIGURATION, "Cannot enable 'app': it depends on 'base' (not "
                                       "enabled)."),
    (["base", "old"], ErrorKind.CONFIGURATION, "'old' conflicts with 'base'"),
    (["nothing"], ErrorKind.CONFIGURATION, "carries no extension-release file for 'nothing'"),
])
def test_enable_refusals_change_nothing(root: Path, names: list[str], kind: ErrorKind,
                                        needle: str) -> None:
    ext.enable(str(root), ["conf"], priority=3)
    before = _state(root)
    with pytest.raises(StrataError) as e:
        ext.enable(str(root), names, priority=9)
    assert e.value.kind is kind
    assert needle in e.value.message
    if kind is ErrorKind.NOT_FOUND:
        assert e.value.subject == "nosuch"
    assert _state(root) == before


def test_enable_refuses_a_conflict_with_what_is_enabled(root: Path) -> None:
    ext.enable(str(root), ["old"])
    with pytest.raises(StrataError) as e:
        ext.enable(str(root), ["base"])
    assert e.value.kind is ErrorKind.CONFIGURATION
    assert "'old' conflicts with 'base'" in e.value.message


def test_enable_refuses_a_cycle(root: Path) -> None:
    install_ext(root, "x", {"usr/share/x": "x"}, {"ID": "_any", "STRATA_DEPENDS": "y"}, where=S)
    install_ext(root, "y", {"usr/share/y": "y"}, {"ID": "_any", "STRATA_DEPENDS": "x"}, where=S)
    with pytest.raises(StrataError) as e:
        ext.enable(str(root), ["x", "y"])
    assert e.value.kind is ErrorKind.CONFIGURATION
    assert "x -> y -> x" in e.value.message
    assert _links(root) == {}


def test_priorities(root: Path) -> None:
    ext.enable(str(root), ["base", "conf"], priority=7)
    ext.enable(str(root), ["app"], priority=-2)
    ext.enable(str(root), ["base"])  # without --priority: kept
    prio_file = root / REL / "12" / enabled.PRIORITIES_FILE
    assert json.loads(prio_file.read_text()) == {
        "version": 1, "priorities": {"app": -2, "base": 7, "conf": 7}}
    ext.disable(str(root), ["app"])
    assert json.loads(prio_file.read_text())["priorities"] == {"base": 7, "conf": 7}
    ext.disable(str(root), all=True)
    assert not prio_file.exists()


def test_os_release_choice(root: Path, tmp_path: Path) -> None:
    ext.enable(str(root), ["conf"], os_release="13")
    assert _links(root, "13") == {"conf.raw": "../../extensions/conf.raw"}
    assert _links(root, "12") == {}
    (root / "etc/os-release").write_text("ID=debian\n")  # no VERSION_ID: "unknown"
    ext.enable(str(root), ["conf"])
    assert "conf.raw" in _links(root, "unknown")
    for bad in ("", "..", "a/b", ".x"):
        with pytest.raises(StrataError) as e:
            ext.enable(str(root), ["conf"], os_release=bad)
        assert e.value.kind is ErrorKind.USAGE


def test_disable(root: Path) -> None:
    ext.enable(str(root), ["base", "app", "conf"])
    with pytest.raises(StrataError) as e:
        ext.disable(str(root), ["conf", "nosuch"])
    assert e.value.kind is ErrorKind.NOT_FOUND and e.value.subject == "nosuch"
    assert set(_links(root)) == {"base", "app-1.0.raw", "conf.raw"}
    with pytest.raises(StrataError) as e:
        ext.disable(str(root), ["base"])
    assert e.value.kind is ErrorKind.CONFIGURATION
    assert "'app' depends on it" in e.value.message
    # known but not enabled: counted as failed, the rest still goes
    r = ext.disable(str(root), ["sys", "conf"])
    assert (r.done, r.failed) == (1, 1)
    assert set(_links(root)) == {"base", "app-1.0.raw"}
    r = ext.disable(str(root), ["app-1.0", "base"])  # by image name too
    assert (r.done, r.failed) == (2, 0)
    assert _links(root) == {}
    with pytest.raises(StrataError) as e:
        ext.disable(str(root), [])
    assert e.value.kind is ErrorKind.USAGE


def test_disable_all_removes_dangling_links(root: Path) -> None:
    ext.enable(str(root), ["base", "conf"])
    (root / S / "conf.raw").unlink()
    status = {s.name: s for s in ext.status(str(root))}
    assert "conf" not in status and status["base"].enabled
    r = ext.disable(str(root), all=True)
    assert (r.done, r.failed) == (2, 0)
    assert _links(root) == {}
    assert ext.disable(str(root), all=True).done == 0


def test_list_and_status_without_anything_merged(root: Path) -> None:
    infos = {i.name: i for i in ext.list_extensions(str(root))}
    assert set(infos) == {"app", "base", "conf", "old", "sys", "nothing"}
    assert (infos["app"].version, infos["app"].is_sysext, infos["app"].is_confext,
            infos["app"].is_directory) == ("1.0", True, False, False)
    assert (infos["conf"].is_sysext, infos["conf"].is_confext) == (False, True)
    assert (infos["nothing"].is_sysext, infos["nothing"].is_confext) == (False, False)
    st = {s.name: s for s in ext.status(str(root))}
    assert not any(s.is_merged or s.enabled for s in st.values())
    assert st["sys"].origin == "/var/lib/extensions" and st["base"].origin == "store"
    assert st["base"].image_id is None and len(st["app"].image_id or "") == 12


# --- atomic writes ---------------------------------------------------------------------------


def test_replace_symlink_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = tmp_path / "d"
    d.mkdir()
    fsio.replace_symlink(str(d), "x", "one")
    fsio.replace_symlink(str(d), "x", "two")  # replaces, never removes first
    assert os.readlink(d / "x") == "two"
    assert os.listdir(d) == ["x"]

    def fail(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "rename", fail)
    with pytest.raises(StrataError) as e:
        fsio.replace_symlink(str(d), "x", "three")
    assert "No space left on device" in e.value.message and str(d / "x") in e.value.message
    assert os.readlink(d / "x") == "two"  # the old link stays
    assert os.listdir(d) == ["x"]  # no temporary left behind
    with pytest.raises(StrataError):
        fsio.replace_file(str(d), "f", b"data")
    assert os.listdir(d) == ["x"]


def test_replace_file_and_make_dirs(tmp_path: Path) -> None:
    target = tmp_path / "a/b/c"
    fsio.make_dirs(str(target))
    assert target.is_dir()
    fsio.replace_file(str(target), "f", b"1")
    fsio.replace_file(str(target), "f", b"22")
    assert (target / "f").read_bytes() == b"22"
    assert os.listdir(target) == ["f"]


# --- /run/extensions and /run/confexts -------------------------------------------------------


def test_runlinks_sync(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    a = install_ext(root, "a", {"usr/share/a": "a"}, where=S)
    b = install_ext(root, "b", {"usr/share/b": "b"}, where=S, fmt="erofs")
    run = root / "run/extensions"
    run.mkdir()
    os.symlink("/nowhere", run / "stale.raw")
    (run / "mine").mkdir()  # someone's image: left alone
    (run / "taken.raw").write_text("x")
    synced = runlinks.sync(str(root), ExtClass.SYSEXT,
                           {"a": str(a), "b.raw": str(b), "taken.raw": str(b)})
    assert synced.occupied == ("taken.raw",)
    assert sorted(os.listdir(run)) == ["a", "b.raw", "mine", "taken.raw"]
    assert os.readlink(run / "a") == "../../var/lib/strata/extensions/a"
    assert (run / "b.raw").resolve() == b.resolve()
    assert synced.links["a"] == str(run / "a")
    # a smaller set: the others go
    runlinks.sync(str(root), ExtClass.SYSEXT, {"b.raw": str(b)})
    assert sorted(os.listdir(run)) == ["b.raw", "mine", "taken.raw"]
    assert runlinks.clear(str(root), ExtClass.SYSEXT) == 1
    assert sorted(os.listdir(run)) == ["mine", "taken.raw"]
    # confexts get their own directory, created when needed
    runlinks.sync(str(root), ExtClass.CONFEXT, {"a": str(a)})
    assert os.listdir(root / "run/confexts") == ["a"]


def test_links_written_by_others_are_understood(root: Path) -> None:
    """avocadoctl writes absolute targets; a link to an image outside the store counts too
    (the link is the decision); a link that leads nowhere is listed as such."""
    d = root / REL / "12"
    d.mkdir(parents=True)
    os.symlink("/var/lib/strata/extensions/base", d / "base")  # absolute, inside the root
    outside = install_ext(root, "elsewhere", {"usr/share/e": "e"}, where="srv/images")
    os.symlink("../../../../../srv/images/elsewhere", d / "elsewhere")
    os.symlink("../../extensions/vanished.raw", d / "vanished.raw")
    got = {link.link: link.real for link in enabled.read_links(str(root), "12")}
    assert got == {"base": str(root / S / "base"), "elsewhere": str(outside),
                   "vanished.raw": None}
    st = {s.name: s for s in ext.status(str(root))}
    assert st["base"].enabled and st["elsewhere"].enabled
    assert st["elsewhere"].origin == "/srv/images"
    assert "elsewhere" not in {i.name for i in ext.list_extensions(str(root))}
    r = ext.disable(str(root), ["elsewhere", "vanished"])
    assert (r.done, r.failed) == (2, 0)
    assert set(_links(root)) == {"base"}
