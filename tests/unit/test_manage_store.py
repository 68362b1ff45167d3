"""The store (manage/store.py): names, versions, classes, image ids; and the [ext] config."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from strata.errors import ErrorKind, StrataError
from strata.manage import config, store
from strata.model import ExtClass, MutableMode
from tests.helpers import install_ext, make_root, write_tree

S = "var/lib/strata/extensions"


@pytest.mark.parametrize(("fname", "is_dir", "stem"), [
    ("app.raw", False, "app"),
    ("app-1.2.raw", False, "app-1.2"),
    ("app.sysext.raw", False, "app"),
    ("app.confext.raw", False, "app"),
    ("app", True, "app"),
    ("app.sysext", True, "app"),
    ("app.img", False, None),  # files must be .raw
    ("app", False, None),
    (".hidden.raw", False, None),
    (".#app.raw.1234", False, None),  # a temporary file
    ("app.v", True, None),  # vpick directories are not offered
    ("bad\x01name.raw", False, None),
])
def test_image_stem(fname: str, is_dir: bool, stem: str | None) -> None:
    assert store.image_stem(fname, is_dir=is_dir) == stem


@pytest.mark.parametrize(("stem", "name", "version"), [
    ("app", "app", None),
    ("app_1.2", "app", "1.2"),
    ("app-1.2.0", "app", "1.2.0"),
    ("my-app-2", "my-app", "2"),
    ("my-app", "my-app", None),
    ("my_app", "my_app", None),
    ("python3-lib", "python3-lib", None),
    ("app-v2", "app", "v2"),
    ("app_1.0-rc1", "app", "1.0-rc1"),
    ("-1.0", "-1.0", None),
    ("tools-1.0-x86-64", "tools", "1.0"),  # strata build's default name
    ("tools-1.0_arm64", "tools", "1.0"),
    ("python3-tools-1.0", "python3-tools", "1.0"),
    ("my-sysext-v0.1.0-1-azlinux3-x86-64", "my-sysext", "v0.1.0-1-azlinux3"),  # Dalec's
    ("lib2-foo", "lib2-foo", None),
])
def test_split_version(stem: str, name: str, version: str | None) -> None:
    assert store.split_version(stem) == (name, version)


def _root(tmp_path: Path) -> Path:
    return make_root(tmp_path)


def test_scan_finds_store_and_search_directories(tmp_path: Path) -> None:
    root = _root(tmp_path)
    install_ext(root, "dir", {"usr/share/d": "d"}, where=S)
    install_ext(root, "img-1.0", {"usr/share/i": "i"}, where=S, fmt="erofs")
    install_ext(root, "inf", {"usr/share/f": "f"}, where=S, fmt="erofs",
                filename="inf.sysext.raw")
    install_ext(root, "sys", {"usr/share/s": "s"})  # /var/lib/extensions
    install_ext(root, "conf", {"etc/c": "c"}, confext=True, where="var/lib/confexts")
    # the store wins over a search directory for the same image name
    install_ext(root, "dir", {"usr/share/other": "o"}, where="var/lib/extensions",
                release_name="dir")
    # a real image in /run/extensions counts; our links there do not
    install_ext(root, "runimg", {"usr/share/r": "r"}, where="run/extensions")
    os.symlink("../../var/lib/strata/extensions/dir", root / "run/extensions/linked")
    # a symlink elsewhere is followed inside the root
    (root / "etc/extensions").mkdir(parents=True)
    os.symlink("/var/lib/strata/extensions/dir", root / "etc/extensions/alias")
    write_tree(root, {f"{S}/notes.txt": "x", f"{S}/.hidden": 0o755})

    entries = store.scan(str(root))
    got = {(e.image_name, e.name, e.file_version, e.origin, e.is_directory) for e in entries}
    assert got == {
        ("dir", "dir", None, "store", True),
        ("img-1.0", "img", "1.0", "store", False),
        ("inf", "inf", None, "store", False),
        ("alias", "alias", None, "/etc/extensions", True),
        ("runimg", "runimg", None, "/run/extensions", True),
        ("sys", "sys", None, "/var/lib/extensions", True),
        ("conf", "conf", None, "/var/lib/confexts", True),
    }
    by = {e.image_name: e for e in entries}
    assert by["dir"].path == str(root / S / "dir")
    assert by["dir"].in_root == "/" + S + "/dir"
    assert by["alias"].path == str(root / "etc/extensions/alias")
    assert by["alias"].real == str(root / S / "dir")  # resolved inside the root


def test_scan_of_an_empty_root(tmp_path: Path) -> None:
    assert store.scan(str(_root(tmp_path))) == []


def _probe(root: Path, image_name: str) -> store.Probe:
    entry = next(e for e in store.scan(str(root)) if e.image_name == image_name)
    return store.probe(entry)


@pytest.mark.parametrize("fmt", ["dir", "erofs", "squashfs"])
def test_class_detection(tmp_path: Path, fmt: str) -> None:
    root = _root(tmp_path)
    install_ext(root, "sys", {"usr/share/s": "s"}, where=S, fmt=fmt)
    install_ext(root, "conf", {"etc/c": "c"}, where=S, fmt=fmt, confext=True)
    install_ext(root, "both", {"usr/share/b": "b",
                               "etc/extension-release.d/extension-release.both": "ID=_any\n"},
                where=S, fmt=fmt)
    install_ext(root, "neither", {"usr/share/n": "n"}, where=S, fmt=fmt,
                release_name="somethingelse")
    p = _probe(root, "sys")
    assert (p.sysext is not None, p.confext is not None, p.problem) == (True, False, None)
    p = _probe(root, "conf")
    assert (p.sysext is not None, p.confext is not None) == (False, True)
    p = _probe(root, "both")
    assert (p.sysext is not None, p.confext is not None) == (True, True)
    p = _probe(root, "neither")
    assert (p.sysext, p.confext, p.problem, p.is_extension) == (None, None, None, False)


def test_release_found_under_the_bare_name(tmp_path: Path) -> None:
    """app-1.0.raw with extension-release.app: systemd's strict lookup fails for the image
    name; Strata finds it under the name and exposes the image under that name."""
    root = _root(tmp_path)
    install_ext(root, "app", {"usr/share/a": "a"}, where=S, fmt="erofs",
                filename="app-1.0.raw")
    install_ext(root, "exact", {"usr/share/e": "e"}, where=S, fmt="erofs",
                filename="exact-2.raw", release_name="exact-2")
    install_ext(root, "us", {"usr/share/u": "u"}, where=S, filename="us_3")
    p = _probe(root, "app-1.0")
    assert p.sysext is not None and p.sysext.lookup_name == "app"
    assert p.sysext.path == "/usr/lib/extension-release.d/extension-release.app"
    p = _probe(root, "exact-2")
    assert p.sysext is not None and p.sysext.lookup_name == "exact-2"
    # systemd's own fallback: us_3 finds extension-release.us under the image name
    p = _probe(root, "us_3")
    assert p.sysext is not None and p.sysext.lookup_name == "us_3"


@pytest.mark.parametrize(("release", "filename", "confext", "version"), [
    ({"ID": "_any", "SYSEXT_VERSION_ID": "4.5"}, "v-1.0", False, "4.5"),
    ({"ID": "_any"}, "v-1.0", False, "1.0"),
    ({"ID": "_any"}, "v_7", False, "7"),
    ({"ID": "_any"}, "v", False, None),
    ({"ID": "_any", "CONFEXT_VERSION_ID": "9"}, "v", True, "9"),
    # the other class's key does not count
    ({"ID": "_any", "CONFEXT_VERSION_ID": "9"}, "v", False, None),
])
def test_version(tmp_path: Path, release: dict[str, str], filename: str, confext: bool,
                 version: str | None) -> None:
    root = _root(tmp_path)
    install_ext(root, "v", {"usr/share/v": "v"}, release, where=S, confext=confext,
                filename=filename)
    entry = store.scan(str(root))[0]
    assert store.probe(entry).version(entry.file_version) == version


def test_broken_images_and_release_files_are_problems(tmp_path: Path) -> None:
    root = _root(tmp_path)
    (root / S).mkdir(parents=True)
    (root / S / "junk.raw").write_bytes(os.urandom(70_000))
    bad = install_ext(root, "badrel", {"usr/share/b": "b"}, where=S)
    (bad / "usr/lib/extension-release.d/extension-release.badrel").write_bytes(
        b"ID=_any\nVERSION_ID=\xff\n")
    p = _probe(root, "junk")
    assert not p.is_extension and p.problem is not None and "junk.raw" in p.problem
    p = _probe(root, "badrel")
    assert not p.is_extension and p.problem is not None and "UTF-8" in p.problem


def test_release_pairs_keep_repeated_keys(tmp_path: Path) -> None:
    root = _root(tmp_path)
    install_ext(root, "h", {"usr/share/h": "h"}, where=S, fmt="erofs")
    tree = root.parent / "tree-h"
    (tree / "usr/lib/extension-release.d/extension-release.h").write_text(
        'ID=_any\nAVOCADO_ON_MERGE="a 1"\nAVOCADO_ON_MERGE=b\n')
    from tests.helpers import mkfs

    mkfs(tree, root / S / "h.raw")
    p = _probe(root, "h")
    assert p.sysext is not None
    assert p.sysext.pairs == (("ID", "_any"), ("AVOCADO_ON_MERGE", "a 1"),
                              ("AVOCADO_ON_MERGE", "b"))
    assert p.sysext.fields["AVOCADO_ON_MERGE"] == "b"


def test_probe_cache_follows_the_file(tmp_path: Path) -> None:
    root = _root(tmp_path)
    install_ext(root, "c", {"usr/share/c": "c"}, where=S, fmt="erofs")
    assert _probe(root, "c").sysext is not None
    # replaced by an image without release data: the cache must not answer
    install_ext(root, "c2", {"usr/share/c": "c"}, where=S, fmt="erofs", filename="c.raw",
                release_name="zz")
    assert _probe(root, "c").sysext is None


def test_image_ids(tmp_path: Path) -> None:
    root = _root(tmp_path)
    raw = install_ext(root, "i", {"usr/share/i": "i"}, where=S, fmt="erofs")
    install_ext(root, "d", {"usr/share/d": "d"}, where=S)
    entries = store.scan(str(root))
    ids = store.image_ids(str(root), entries)
    assert ids[str(raw)] == hashlib.sha256(raw.read_bytes()).hexdigest()[:12]
    assert ids[str(root / S / "d")] is None
    cache = json.loads((root / "run/strata/image-ids.json").read_text())
    assert cache[str(raw)][-1] == ids[str(raw)]
    # a new image under the same name gets a new id
    store._id_cache.clear()
    install_ext(root, "i", {"usr/share/i": "changed"}, where=S, fmt="erofs")
    again = store.image_ids(str(root), store.scan(str(root)))
    assert again[str(raw)] == hashlib.sha256(raw.read_bytes()).hexdigest()[:12]
    assert again[str(raw)] != ids[str(raw)]


# --- config ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "sysext", "confext"), [
    (None, MutableMode.EPHEMERAL, MutableMode.EPHEMERAL),
    ("", MutableMode.EPHEMERAL, MutableMode.EPHEMERAL),
    ('[ext]\nsysext_mutable = "no"\n', MutableMode.NO, MutableMode.EPHEMERAL),
    ('[ext]\nconfext_mutable = "import"\nsysext_mutable = "yes"\n', MutableMode.YES,
     MutableMode.IMPORT),
    ('[other]\nx = 1\n[ext]\nconfext_mutable = "false"\n', MutableMode.EPHEMERAL,
     MutableMode.NO),
])
def test_config(tmp_path: Path, text: str | None, sysext: MutableMode,
                confext: MutableMode) -> None:
    root = _root(tmp_path)
    if text is not None:
        write_tree(root, {"etc/strata/strata.toml": text})
    cfg = config.load(str(root))
    assert (cfg.mutable(ExtClass.SYSEXT), cfg.mutable(ExtClass.CONFEXT)) == (sysext, confext)


@pytest.mark.parametrize(("text", "message"), [
    ('[ext]\nsysext_mutable = "sometimes"\n', "sysext_mutable = 'sometimes' is not a mutable"),
    ("[ext]\nconfext_mutable = 3\n", "confext_mutable = 3 is not a mutable"),
    ("[ext\n", "strata.toml"),
    ("ext = 1\n", "[ext] must be a table"),
])
def test_bad_config(tmp_path: Path, text: str, message: str) -> None:
    root = _root(tmp_path)
    write_tree(root, {"etc/strata/strata.toml": text})
    with pytest.raises(StrataError) as e:
        config.load(str(root))
    assert e.value.kind is ErrorKind.CONFIGURATION
    assert message in e.value.message
    assert str(root / "etc/strata/strata.toml") in e.value.message


def test_directory_probe_cache_sees_release_changes(tmp_path: Path) -> None:
    root = _root(tmp_path)
    d = install_ext(root, "d", {"usr/share/d": "d"}, {"ID": "_any", "SYSEXT_VERSION_ID": "1"},
                    where=S)
    rel = d / "usr/lib/extension-release.d/extension-release.d"
    assert _probe(root, "d").version(None) == "1"
    assert _probe(root, "d").version(None) == "1"  # from the cache
    rel.write_text("ID=_any\nSYSEXT_VERSION_ID=2\n")  # rewritten in place
    os.utime(rel, ns=(1, 1))  # even with an old mtime: ctime moved
    assert _probe(root, "d").version(None) == "2"
    (d / "etc/extension-release.d").mkdir(parents=True)  # gains a confext release
    (d / "etc/extension-release.d/extension-release.d").write_text("ID=_any\n")
    assert _probe(root, "d").confext is not None
    rel.unlink()
    assert _probe(root, "d").sysext is None
