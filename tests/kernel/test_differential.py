"""Differential tests: each scenario runs through strata *and* systemd-sysext on identical
scratch roots, and everything observable must agree.

How one scenario runs (see run_each):

* the root is built once and kept as a pristine copy; `list --json=short` and (unmerged)
  `status --json=short` of both tools are taken on it;
* each tool then gets a fresh copy of the pristine root *at the same path* and runs the
  scenario's steps (verbs, and mutations of the root between them); after each verb the exit
  status, the merged trees of the hierarchies (paths, types, modes, contents, symlink
  targets), the markers' `extensions` (whose `dev` must match the hierarchy's st_dev), the
  mounts below the root and `status --json=short` are recorded; finally the tool unmerges its
  own merge, which must leave no mount;
* both records must be equal, and must also match what the scenario says v257 does, so that
  two tools failing the same way cannot pass.

In CI the other tool is the installed systemd-sysext 252, run inside a private mount namespace
(`isolated`). Its (sd-merge) child mounts in a namespace of its own and relies on propagation:
the parent of the roots is made a shared mount and /run gets a tmpfs (prepare_for_systemd).

Where v252 and v257 differ, strata follows v257: those tests are named `..._v257_differs_from
_v252`; they assert the v257 behaviour for strata and, when 252 is the installed version, what
252 does instead. confext (v254+) scenarios check strata against v257's behaviour alone.

Every expectation here was verified against systemd 257.13: with STRATA_DIFF_257=1 (and
../shared/tools/peers.sh set up) test_same_as_systemd_257 runs *all* scenarios, differing and
confext ones included, through strata and 257 inside the peers namespace, mount options
included. CI does not depend on it.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from strata.model import ExtClass
from strata.record import record
from tests.helpers import (
    PEERS_257,
    PEERS_WORK,
    Entry,
    Files,
    Oracle,
    installed_oracle,
    isolated,
    make_root,
    marker_state,
    mkfs,
    mounts_under,
    peers_enabled,
    prepare_for_systemd,
    release_text,
    resolve_in_root,
    run_in_peers,
    snapshot_tree,
    strata,
    write_tree,
)

pytestmark = [pytest.mark.privileged, pytest.mark.oracle]


@functools.cache
def native_arch() -> str:
    from strata.arch import native

    return native()


def foreign_arch() -> str:
    return "arm64" if native_arch() != "arm64" else "x86-64"


# --- building extensions ---------------------------------------------------------------------


def put_ext(root: Path, name: str, files: Files, release: Mapping[str, str] | None = None, *,
            fmt: str = "dir", where: str = "var/lib/extensions", filename: str | None = None,
            release_name: str | None = None, modes: Mapping[str, int] | None = None,
            xattrs: Mapping[str, bytes] | None = None, confext: bool = False) -> Path:
    """An extension in a search directory of `root`. Unlike helpers.install_ext each call
    builds in its own scratch tree (so one name may exist in several directories), `release`
    None means {"ID": "_any"} and {} means *no* release file; `modes` chmods paths of the tree
    and `xattrs` sets user.extension-release.strict on release files (path -> value)."""
    release = {"ID": "_any"} if release is None else release
    fname = filename or (name if fmt == "dir" else f"{name}.raw")
    tree = root.parent / "trees" / where.replace("/", "_") / fname
    all_files: dict[str, str | bytes | int] = dict(files)
    if release:
        rel_dir = "etc/extension-release.d" if confext else "usr/lib/extension-release.d"
        rel = f"{rel_dir}/extension-release.{release_name or name}"
        all_files[rel] = release_text(release)
    if tree.exists():  # a step re-creating an image, for the second tool
        shutil.rmtree(tree)
    tree.mkdir(parents=True)
    write_tree(tree, all_files)
    for rel, mode in (modes or {}).items():
        os.chmod(tree / rel, mode)
    for rel, value in (xattrs or {}).items():
        os.setxattr(tree / rel, "user.extension-release.strict", value)
    dest_dir = root / where
    dest_dir.mkdir(parents=True, exist_ok=True)
    if fmt == "dir":
        shutil.copytree(tree, dest_dir / fname, symlinks=True)
        return dest_dir / fname
    if fmt == "ext4":
        subprocess.run(["mkfs.ext4", "-q", "-F", "-E", "root_owner=0:0", "-d", str(tree),
                        str(dest_dir / fname), "4M"], check=True, capture_output=True)
        return dest_dir / fname
    return mkfs(tree, dest_dir / fname, fmt)


def _rm(*rels: str) -> Callable[[Path], None]:
    """A step that removes paths from the root (images, or a hierarchy)."""
    def step(root: Path) -> None:
        for rel in rels:
            p = root / rel
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
    return step


# --- the scenario table ----------------------------------------------------------------------

Step = tuple[str, ...] | Callable[[Path], None]


NOT_MERGED: Mapping[str, str | None] = MappingProxyType({"usr": None, "opt": None})


@record
class Expect:
    """What one systemd version does with a scenario."""

    #: exit status of each verb, in order
    rcs: tuple[int, ...] = (0,)
    #: the `extensions` marker of each hierarchy after the last verb (None: not merged)
    merged: Mapping[str, str | None] = NOT_MERGED
    #: path below the root -> file content, or a snapshot entry, after the last verb (None:
    #: absent)
    expect: Mapping[str, str | Entry | None] = MappingProxyType({})
    #: the NAME column of `list`, when it matters
    names: tuple[str, ...] | None = None
    #: mount point below the root -> its per-mount options after the last verb, sorted
    options: Mapping[str, tuple[str, ...]] | None = None


@record
class Scenario:
    id: str
    build: Callable[[Path], None]
    #: verbs (argument tuples; --root is added) and root mutations, run in order
    steps: tuple[Step, ...] = (("merge",),)
    #: v257's behaviour (see Expect); strata must match it
    rcs: tuple[int, ...] = (0,)
    merged: Mapping[str, str | None] = NOT_MERGED
    expect: Mapping[str, str | Entry | None] = MappingProxyType({})
    names: tuple[str, ...] | None = None
    options: Mapping[str, tuple[str, ...]] | None = None
    os_release: Mapping[str, str] | None = None
    env: Mapping[str, str] = MappingProxyType({})
    #: what v252 does instead, where it differs
    v252: Expect | None = None
    cls: ExtClass = ExtClass.SYSEXT

    def expectation(self, version: int) -> Expect | None:
        """The behaviour of systemd `version`, None when not known for it."""
        if version >= 257 or self.v252 is None:
            return Expect(self.rcs, self.merged, self.expect, self.names, self.options)
        return self.v252 if version == 252 else None


def both(names: str) -> Mapping[str, str | None]:
    return {"usr": names, "opt": names}


def usr_only(names: str) -> Mapping[str, str | None]:
    return {"usr": names, "opt": None}


def build_layers(root: Path) -> None:
    put_ext(root, "a", {"usr/bin/a": "a\n", "usr/bin/conflict": "from a\n",
                        "usr/share/doc/a/README": "read me\n", "usr/share/host/data": "a data\n",
                        "usr/lib/private": 0o700},
            modes={"usr/bin/a": 0o755})
    put_ext(root, "b", {"usr/bin/b": "b\n", "usr/bin/conflict": "from b\n",
                        "opt/b/file": "b opt\n", "usr/lib/libb.so.1": "ELF\n",
                        "usr/lib/libb.so": "->libb.so.1"}, fmt="erofs",
            modes={"usr/bin/b": 0o4755})
    put_ext(root, "c", {"usr/bin/conflict": "from c\n", "usr/bin/link": "->/usr/bin/conflict",
                        "opt/c/dir/nested": "c\n"},
            fmt="squashfs", where="run/extensions", modes={"opt/c/dir": 0o750})
    put_ext(root, "v9", {"usr/bin/conflict": "from v9\n"}, where="etc/extensions")
    put_ext(root, "v10", {"usr/bin/conflict": "from v10\n", "usr/bin/v10": "10\n"},
            fmt="erofs")


def build_shadowing(root: Path) -> None:
    put_ext(root, "dup", {"usr/share/dup": "etc\n"}, where="etc/extensions")
    put_ext(root, "dup", {"usr/share/dup": "run\n", "usr/share/run-only": "r\n"},
            where="run/extensions", fmt="erofs")
    put_ext(root, "dup", {"usr/share/dup": "var\n"})
    put_ext(root, "x", {"usr/share/x": "run\n"}, where="run/extensions", fmt="squashfs")
    put_ext(root, "x", {"usr/share/x": "var\n", "opt/x": "var\n"})


def build_masking(root: Path) -> None:
    (root / "etc/extensions/b").mkdir(parents=True)
    put_ext(root, "b", {"usr/bin/b": "b\n"})
    put_ext(root, "c", {"usr/bin/c": "c\n"}, fmt="erofs")
    # a *directory* named c.raw is an image called "c.raw" (no suffix is stripped from
    # directories); it carries no release data and does not mask c
    (root / "run/extensions/c.raw").mkdir(parents=True)
    put_ext(root, "a", {"usr/bin/a": "a\n"})


def _release_cases(root: Path, cases: Mapping[str, Mapping[str, str]]) -> None:
    for i, (name, release) in enumerate(cases.items()):
        put_ext(root, name, {f"usr/share/{name}": f"{name}\n"}, release,
                fmt=("dir", "erofs", "squashfs")[i % 3])


def build_release_debian(root: Path) -> None:
    _release_cases(root, {
        "id-ok": {"ID": "debian", "VERSION_ID": "12"},
        "id-quoted": {"ID": '"debian"', "VERSION_ID": "'12'"},
        "id-bad": {"ID": "fedora", "VERSION_ID": "12"},
        "id-missing": {"VERSION_ID": "12"},
        "ver-bad": {"ID": "debian", "VERSION_ID": "11"},
        "ver-missing": {"ID": "debian"},
        "any": {"ID": "_any", "VERSION_ID": "1"},
        "arch-ok": {"ID": "_any", "ARCHITECTURE": native_arch()},
        "arch-any": {"ID": "debian", "VERSION_ID": "12", "ARCHITECTURE": "_any"},
        "arch-bad": {"ID": "_any", "ARCHITECTURE": foreign_arch()},
        "scope-ok": {"ID": "_any", "SYSEXT_SCOPE": '"initrd system"'},
        "scope-initrd": {"ID": "_any", "SYSEXT_SCOPE": "initrd"},
        "scope-portable": {"ID": "_any", "SYSEXT_SCOPE": "portable"},
        "scope-empty": {"ID": "_any", "SYSEXT_SCOPE": ""},
        "level-only": {"ID": "debian", "SYSEXT_LEVEL": "2"},
        "sysext-id": {"SYSEXT_ID": "debian", "SYSEXT_VERSION_ID": "12"},
    })


RELEASE_DEBIAN_OK = "any\narch-any\narch-ok\nid-ok\nid-quoted\nscope-ok\n"


def build_release_level(root: Path) -> None:
    _release_cases(root, {
        "lvl-ok": {"ID": "debian", "SYSEXT_LEVEL": "1.0", "VERSION_ID": "11"},
        "lvl-bad": {"ID": "debian", "SYSEXT_LEVEL": "2", "VERSION_ID": "12"},
        "ver-ok": {"ID": "debian", "VERSION_ID": "12"},
        "ver-bad": {"ID": "debian", "VERSION_ID": "11"},
        "none": {"ID": "debian"},
    })


def build_release_rolling(root: Path) -> None:
    _release_cases(root, {
        "bare": {"ID": "arch"},
        "versioned": {"ID": "arch", "VERSION_ID": "5", "SYSEXT_LEVEL": "9"},
        "other": {"ID": "debian"},
    })


def build_release_level_host_only(root: Path) -> None:
    _release_cases(root, {
        "no-level": {"ID": "debian", "VERSION_ID": "1"},
        "lvl-ok": {"ID": "debian", "SYSEXT_LEVEL": "3"},
        "lvl-bad": {"ID": "debian", "SYSEXT_LEVEL": "4"},
    })


def build_no_release_dir(root: Path) -> None:
    put_ext(root, "bare", {"usr/bin/bare": "x\n"}, {})
    put_ext(root, "wrong-name", {"usr/bin/w": "x\n"}, release_name="other")
    put_ext(root, "ok", {"usr/bin/ok": "x\n"})


def build_no_release_raw(root: Path) -> None:
    put_ext(root, "ok", {"usr/bin/ok": "x\n"})
    put_ext(root, "bare", {"usr/bin/bare": "x\n"}, {}, fmt="erofs")


def build_strict_xattr(root: Path) -> None:
    rel = "usr/lib/extension-release.d/extension-release."
    put_ext(root, "x-false", {"usr/bin/x0": "x\n"}, release_name="other",
            xattrs={rel + "other": b"0"})
    put_ext(root, "x-true", {"usr/bin/x1": "x\n"}, release_name="other",
            xattrs={rel + "other": b"1"})
    put_ext(root, "x-none", {"usr/bin/xn": "x\n"}, release_name="other")
    put_ext(root, "x-junk", {"usr/bin/xj": "x\n"}, release_name="other",
            xattrs={rel + "other": b"maybe"})
    put_ext(root, "x-two", {"usr/bin/x2": "x\n", rel + "second": "ID=_any\n"},
            release_name="first", xattrs={rel + "first": b"no", rel + "second": b"false"})
    put_ext(root, "x-exact", {"usr/bin/xe": "x\n"}, xattrs={rel + "x-exact": b"1"})
    put_ext(root, "x-raw", {"usr/bin/xr": "x\n"}, release_name="other", fmt="squashfs",
            xattrs={rel + "other": b"off"})


def build_empty_hierarchy(root: Path) -> None:
    put_ext(root, "e", {"usr/bin/e": "e\n", "opt": 0o755})
    put_ext(root, "f", {"opt/.hidden": "hidden counts\n"}, fmt="erofs")
    put_ext(root, "g", {"opt/empty": 0o755}, fmt="squashfs")


def build_missing_opt(root: Path) -> None:
    shutil.rmtree(root / "opt")
    put_ext(root, "o", {"opt/o/file": "o\n", "usr/bin/o": "o\n"}, fmt="erofs")


def build_empty_host_opt(root: Path) -> None:
    shutil.rmtree(root / "opt/host")
    put_ext(root, "o", {"opt/o/file": "o\n"})


def build_symlinked_hierarchy(root: Path) -> None:
    shutil.move(root / "opt", root / "var/opt")
    os.symlink("/var/opt", root / "opt")
    put_ext(root, "o", {"opt/o/file": "o\n", "usr/bin/o": "o\n"}, fmt="squashfs")


def build_search_symlinks(root: Path) -> None:
    # entries that are symlinks are not followed under --root (neither 252 nor 257) ...
    put_ext(root, "target", {"usr/bin/target": "t\n"}, where="srv/store")
    put_ext(root, "rawtarget", {"usr/bin/rawtarget": "t\n"}, where="srv/store", fmt="erofs")
    d = root / "var/lib/extensions"
    d.mkdir(parents=True, exist_ok=True)
    os.symlink("/srv/store/target", d / "linked")
    os.symlink("../../../srv/store/rawtarget.raw", d / "rawlinked.raw")
    # ... but the search directories themselves are resolved inside the root
    put_ext(root, "abs", {"usr/bin/abs": "a\n"}, where="srv/etc-ext")
    put_ext(root, "rel", {"usr/bin/rel": "r\n"}, where="srv/run-ext", fmt="erofs")
    os.symlink("/srv/etc-ext", root / "etc/extensions")
    os.symlink("../srv/run-ext", root / "run/extensions")


def build_two(root: Path) -> None:
    put_ext(root, "one", {"usr/bin/one": "1\n", "opt/one/x": "1\n"}, fmt="erofs")
    put_ext(root, "two", {"usr/bin/two": "2\n"})


def refresh_change(root: Path) -> None:
    _rm("var/lib/extensions/one.raw")(root)
    put_ext(root, "three", {"usr/bin/three": "3\n", "opt/three": "3\n"}, fmt="squashfs",
            where="run/extensions")


def build_force(root: Path) -> None:
    put_ext(root, "fedora", {"usr/bin/f": "f\n"}, {"ID": "fedora"})
    put_ext(root, "old", {"usr/bin/o": "o\n"}, {"ID": "debian", "VERSION_ID": "11"},
            fmt="erofs")
    put_ext(root, "arch", {"usr/bin/a": "a\n"}, {"ID": "_any", "ARCHITECTURE": foreign_arch()},
            fmt="squashfs")
    put_ext(root, "initrd", {"opt/i": "i\n"}, {"ID": "_any", "SYSEXT_SCOPE": "initrd"})
    put_ext(root, "norelease", {"usr/bin/n": "n\n"}, {})


def build_names(root: Path) -> None:
    put_ext(root, ".hidden", {"usr/bin/hidden": "h\n"})
    put_ext(root, "with space", {"usr/bin/space": "s\n"})
    put_ext(root, "ext-1.2.3", {"usr/bin/v": "1.2.3\n"}, fmt="erofs")
    (root / "var/lib/extensions/not-an-image.img").write_text("x")
    (root / "var/lib/extensions/.#tmp").mkdir()


def build_hierarchies_env(root: Path) -> None:
    put_ext(root, "h", {"usr/bin/h": "h\n", "opt/h": "h\n", "srv/h": "h\n"})


def build_nothing(root: Path) -> None:
    (root / "var/lib/extensions").mkdir(parents=True)


def build_forbidden_raw(root: Path) -> None:
    put_ext(root, "ok", {"usr/bin/ok": "ok\n"})
    put_ext(root, "evil", {"usr/lib/os-release": "ID=evil\n", "usr/bin/evil": "e\n"},
            fmt="erofs")


def build_broken_but_ignored(root: Path) -> None:
    put_ext(root, "ok", {"usr/bin/ok": "ok\n"})
    put_ext(root, "broken", {"usr/bin/b": "b\n", "opt": "not a directory\n"}, {"ID": "fedora"})
    put_ext(root, "broken-raw", {"usr/bin/br": "b\n", "opt": "->opt"}, {"ID": "fedora"},
            fmt="erofs")


def build_inside_images(root: Path) -> None:
    """Symlinks inside images, resolved with the image as "/"; an ext4 image."""
    put_ext(root, "opt-link", {"usr/share/o/file": "o\n", "opt": "->usr/share"})
    put_ext(root, "opt-abs-link", {"srv/o2/file": "o2\n", "opt": "->/srv"}, fmt="erofs")
    put_ext(root, "opt-dangling", {"usr/bin/d": "d\n", "opt": "->/nowhere"}, fmt="squashfs")
    put_ext(root, "release-link", {"usr/bin/r": "r\n",
                                   "usr/lib/extension-release.d/extension-release.release-link":
                                   "->/usr/share/real-release",
                                   "usr/share/real-release": "ID=_any\n"}, {})
    put_ext(root, "release-dir", {"usr/bin/rd": "rd\n",
                                  "usr/lib/extension-release.d/extension-release.release-dir":
                                  0o755}, {})
    put_ext(root, "ext4", {"usr/bin/ext4": "4\n", "opt/ext4/file": "4\n"}, fmt="ext4")


def build_host_release_link(root: Path) -> None:
    (root / "usr/lib").mkdir(parents=True, exist_ok=True)
    (root / "etc/os-release").rename(root / "usr/lib/os-release")
    os.symlink("/usr/lib/os-release", root / "etc/os-release")  # resolved inside the root
    put_ext(root, "deb", {"usr/bin/deb": "d\n"}, {"ID": "debian", "VERSION_ID": "12"})
    put_ext(root, "arch", {"usr/bin/arch": "a\n"},
            {"ID": "_any", "ARCHITECTURE": native_arch().replace("-", "_")})


def build_host_usr_lib_release(root: Path) -> None:
    (root / "usr/lib").mkdir(parents=True, exist_ok=True)
    (root / "etc/os-release").rename(root / "usr/lib/os-release")
    put_ext(root, "deb", {"usr/bin/deb": "d\n"}, {"ID": "debian", "VERSION_ID": "12"},
            fmt="erofs")


def build_empty_raw(root: Path) -> None:
    put_ext(root, "ok", {"usr/bin/ok": "ok\n"})
    (root / "var/lib/extensions/empty.raw").write_bytes(b"")


def build_garbage_raw(root: Path) -> None:
    put_ext(root, "ok", {"usr/bin/ok": "ok\n"})
    (root / "run/extensions").mkdir(parents=True)
    (root / "run/extensions/garbage.raw").write_bytes(bytes(range(256)) * 256)


def build_os_image_raw(root: Path) -> None:
    """A raw image with /etc/os-release and no extension-release: an OS image, which passes
    image_read_metadata() but not the extension check when mounting."""
    put_ext(root, "ok", {"usr/bin/ok": "ok\n"})
    put_ext(root, "os", {"usr/bin/os": "os\n", "etc/os-release": "ID=other\n"}, {},
            fmt="squashfs")


SCENARIOS = [
    Scenario("layer-order-and-conflicts", build_layers,
             merged=both("a\nb\nc\nv9\nv10\n"),
             expect={"usr/bin/conflict": "from v10\n", "usr/bin/link": "from v10\n",
                     "usr/share/host/data": "a data\n", "usr/bin/host-tool": "host\n",
                     "opt/host/file": "host opt\n", "opt/c/dir/nested": "c\n"}),
    Scenario("shadowing-across-search-dirs", build_shadowing, merged=usr_only("dup\nx\n"),
             expect={"usr/share/dup": "etc\n", "usr/share/run-only": None,
                     "usr/share/x": "run\n", "opt/x": None}),
    Scenario("masking-by-empty-dir", build_masking, merged=usr_only("a\nc\n"),
             expect={"usr/bin/a": "a\n", "usr/bin/b": None, "usr/bin/c": "c\n"}),
    Scenario("release-id-version-arch-scope", build_release_debian,
             merged=usr_only(RELEASE_DEBIAN_OK),
             expect={"usr/share/id-ok": "id-ok\n", "usr/share/ver-bad": None}),
    Scenario("release-sysext-level", build_release_level,
             os_release={"ID": "debian", "VERSION_ID": "12", "SYSEXT_LEVEL": "1.0"},
             merged=usr_only("lvl-ok\nver-ok\n")),
    Scenario("release-rolling-host", build_release_rolling, os_release={"ID": "arch"},
             merged=usr_only("bare\nversioned\n")),
    Scenario("release-host-with-level-only", build_release_level_host_only,
             os_release={"ID": "debian", "SYSEXT_LEVEL": "3"},
             merged=usr_only("lvl-ok\nno-level\n")),
    Scenario("missing-release-file-directory", build_no_release_dir, merged=usr_only("ok\n")),
    Scenario("missing-release-file-raw-fails-merge", build_no_release_raw, rcs=(1,),
             expect={"usr/bin/ok": None}),
    Scenario("empty-raw-image-fails-merge", build_empty_raw, rcs=(1,),
             expect={"usr/bin/ok": None}, names=("empty", "ok")),
    Scenario("garbage-raw-image-fails-merge", build_garbage_raw, rcs=(1,),
             expect={"usr/bin/ok": None}, names=("garbage", "ok")),
    Scenario("missing-release-file-raw-fails-merge-with-force", build_no_release_raw,
             steps=(("merge", "--force"),), rcs=(1,), expect={"usr/bin/ok": None}),
    Scenario("os-image-raw-is-ignored", build_os_image_raw, merged=usr_only("ok\n"),
             expect={"usr/bin/os": None}),
    Scenario("os-image-raw-with-force", build_os_image_raw, steps=(("merge", "--force"),),
             merged=usr_only("ok\nos\n"), expect={"usr/bin/os": "os\n"}),
    Scenario("strict-xattr", build_strict_xattr, merged=usr_only("x-exact\nx-false\nx-raw\n")),
    Scenario("empty-hierarchy-in-extension", build_empty_hierarchy, merged=both("e\nf\ng\n"),
             expect={"opt/.hidden": "hidden counts\n", "opt/host/file": "host opt\n"}),
    Scenario("missing-host-opt-is-created", build_missing_opt, merged=both("o\n"),
             expect={"opt/o/file": "o\n"}),
    Scenario("empty-host-hierarchy", build_empty_host_opt, merged=both("o\n")),
    Scenario("symlinked-host-hierarchy", build_symlinked_hierarchy, merged=both("o\n"),
             expect={"var/opt/o/file": "o\n", "var/opt/host/file": "host opt\n"}),
    Scenario("search-dir-symlinks-under-root", build_search_symlinks,
             merged=usr_only("abs\nrel\n"), expect={"usr/bin/target": None}),
    Scenario("second-merge-is-ebusy", build_two, steps=(("merge",), ("merge",)), rcs=(0, 1),
             merged=both("one\ntwo\n")),
    Scenario("refresh", build_two,
             steps=(("refresh",), refresh_change, ("refresh",), _rm("var/lib/extensions/two"),
                    ("refresh",), _rm("run/extensions/three.raw"), ("refresh",)),
             rcs=(0, 0, 0, 0)),
    Scenario("refresh-keeps-merge", build_two,
             steps=(("merge",), refresh_change, ("refresh",)), rcs=(0, 0),
             merged=both("three\ntwo\n"),
             expect={"usr/bin/one": None, "opt/three": "3\n", "opt/one": None}),
    Scenario("force-ignores-release-checks", build_force, steps=(("merge", "--force"),),
             merged=both("arch\nfedora\ninitrd\nnorelease\nold\n")),
    Scenario("force-not-needed-is-harmless", build_two, steps=(("merge", "--force"),),
             merged=both("one\ntwo\n")),
    Scenario("image-names", build_names, merged=usr_only(".hidden\next-1.2.3\nwith space\n")),
    Scenario("hierarchies-from-environment", build_hierarchies_env,
             env={"SYSTEMD_SYSEXT_HIERARCHIES": "/opt:/srv"},
             merged={"usr": None, "opt": "h\n"}, expect={"srv/h": "h\n", "usr/bin/h": None}),
    Scenario("forbidden-raw-image-with-force", build_forbidden_raw,
             steps=(("merge", "--force"),), merged=usr_only("evil\nok\n"),
             expect={"usr/lib/os-release": "ID=evil\n"}),
    Scenario("broken-hierarchy-in-ignored-image", build_broken_but_ignored,
             merged=usr_only("ok\n")),
    Scenario("symlinks-and-formats-inside-images", build_inside_images,
             merged=both("ext4\nopt-abs-link\nopt-dangling\nopt-link\nrelease-link\n"),
             expect={"opt/o/file": "o\n", "opt/o2/file": "o2\n", "opt/ext4/file": "4\n",
                     "usr/bin/r": "r\n", "usr/bin/rd": None}),
    Scenario("host-os-release-symlink", build_host_release_link, merged=usr_only("deb\n")),
    Scenario("host-os-release-in-usr-lib", build_host_usr_lib_release,
             merged=usr_only("deb\n")),
    Scenario("refresh-without-changes", build_two, steps=(("merge",), ("refresh",)),
             rcs=(0, 0), merged=both("one\ntwo\n")),
    Scenario("nothing-to-merge", build_nothing,
             steps=(("merge",), ("refresh",), ("unmerge",)), rcs=(0, 0, 0)),
    Scenario("unmerge-when-not-merged", build_two, steps=(("unmerge",),)),
]


# --- where 252 and 257 differ ----------------------------------------------------------------


def build_id_like(root: Path) -> None:
    put_ext(root, "like", {"usr/bin/like": "l\n"}, {"ID": "fedora", "VERSION_ID": "12"})
    put_ext(root, "like-old", {"usr/bin/like-old": "o\n"}, {"ID": "ubuntu", "VERSION_ID": "11"},
            fmt="erofs")
    put_ext(root, "unlike", {"usr/bin/unlike": "u\n"}, {"ID": "arch", "VERSION_ID": "12"})
    put_ext(root, "same", {"usr/bin/same": "s\n"}, {"ID": "debian", "VERSION_ID": "12"},
            fmt="squashfs")


def build_class_suffix(root: Path) -> None:
    put_ext(root, "foo", {"usr/bin/foo": "f\n"}, fmt="erofs", filename="foo.sysext.raw")
    put_ext(root, "baz", {"usr/bin/baz": "b\n"}, filename="baz.sysext")
    # only the class's own suffix is stripped from the name; dissect strips both from the
    # name it matches the release file against
    put_ext(root, "qux", {"usr/bin/qux": "q\n"}, fmt="squashfs", filename="qux.confext.raw")


def build_version_suffix_dirs(root: Path) -> None:
    put_ext(root, "v_1", {"usr/bin/v": "v\n"}, release_name="v")
    put_ext(root, "w+3", {"usr/bin/w": "w\n"}, release_name="w")
    put_ext(root, "x_1", {"usr/bin/x": "x\n"}, release_name="x_1")  # exact name: both
    put_ext(root, "y_1", {"usr/bin/y": "y\n"}, release_name="y_2")  # neither
    put_ext(root, "plain", {"usr/bin/plain": "p\n"})


def build_version_suffix_raw(root: Path) -> None:
    put_ext(root, "r_2", {"usr/bin/r": "r\n"}, fmt="erofs", release_name="r")
    put_ext(root, "plain", {"usr/bin/plain": "p\n"})


def build_forbidden_dir(root: Path) -> None:
    put_ext(root, "ok", {"usr/bin/ok": "ok\n"})
    put_ext(root, "evil", {"usr/lib/os-release": "ID=evil\n", "usr/bin/evil": "e\n"})


def build_bad_hierarchy(root: Path) -> None:
    put_ext(root, "ok", {"usr/bin/ok": "ok\n"})
    put_ext(root, "bad", {"usr/bin/bad": "b\n", "opt": "not a directory\n"})


def build_no_host_release(root: Path) -> None:
    (root / "etc/os-release").unlink()
    put_ext(root, "ok", {"usr/bin/ok": "ok\n"})


def build_host_modes(root: Path) -> None:
    shutil.rmtree(root / "opt/host")
    os.chmod(root / "opt", 0o711)
    os.chmod(root / "usr", 0o750)
    put_ext(root, "m", {"opt/m": "m\n", "usr/bin/m": "m\n"})


def build_vpick(root: Path) -> None:
    where = "var/lib/extensions/tool.raw.v"
    for version in ("1", "2"):
        put_ext(root, f"tool_{version}", {"usr/bin/tool": f"{version}\n"}, fmt="erofs",
                where=where, release_name="tool")


DIFFERING = {s.id: s for s in [
    Scenario("id-like-matches", build_id_like,
             os_release={"ID": "debian", "ID_LIKE": '"ubuntu fedora"', "VERSION_ID": "12"},
             merged=usr_only("like\nsame\n"),
             v252=Expect(merged=usr_only("same\n"))),
    Scenario("class-suffix-stripped", build_class_suffix,
             merged=usr_only("baz\nfoo\nqux.confext\n"), names=("baz", "foo", "qux.confext"),
             v252=Expect(rcs=(1,), names=("baz.sysext", "foo.sysext", "qux.confext"))),
    Scenario("release-name-cut-at-version-dirs", build_version_suffix_dirs,
             merged=usr_only("plain\nv_1\nw+3\nx_1\n"),
             v252=Expect(merged=usr_only("plain\nx_1\n"))),
    Scenario("release-name-cut-at-version-raw", build_version_suffix_raw,
             merged=usr_only("plain\nr_2\n"), v252=Expect(rcs=(1,))),
    Scenario("forbidden-os-release-in-directory", build_forbidden_dir,
             steps=(("merge",), ("merge", "--force")), rcs=(1, 1),
             expect={"usr/bin/ok": None, "usr/lib/os-release": None},
             v252=Expect(rcs=(0, 0), merged=usr_only("evil\nok\n"),
                         expect={"usr/lib/os-release": "ID=evil\n"})),
    Scenario("forbidden-os-release-in-raw-image", build_forbidden_raw,
             merged=usr_only("ok\n"), expect={"usr/bin/evil": None},
             v252=Expect(expect={"usr/bin/ok": None})),
    Scenario("merge-failure-exit-status", build_bad_hierarchy, rcs=(1,),
             expect={"usr/bin/ok": None}, v252=Expect(rcs=(0,), expect={"usr/bin/ok": None})),
    Scenario("host-without-os-release", build_no_host_release, rcs=(1,),
             expect={"usr/bin/ok": None}, v252=Expect(rcs=(0,), expect={"usr/bin/ok": None})),
    Scenario("merged-root-keeps-host-mode", build_host_modes, merged=both("m\n"),
             expect={"opt": ("d", "0o711"), "usr": ("d", "0o750")},
             v252=Expect(merged=both("m\n"),
                         expect={"opt": ("d", "0o755"), "usr": ("d", "0o755")})),
    Scenario("versioned-directory", build_vpick, merged=usr_only("tool\n"),
             expect={"usr/bin/tool": "2\n"}, names=("tool",),
             v252=Expect(names=("tool.raw.v",))),
]}


# --- confext (systemd-confext appeared in v254: compared with 257 only) ----------------------


def build_confext_layers(root: Path) -> None:
    def conf(name: str, files: Files, release: Mapping[str, str] | None = None, **kw: Any
             ) -> None:
        put_ext(root, name, files, release, confext=True, **kw)

    conf("a", {"etc/a.conf": "a\n", "etc/conflict": "from a\n"}, where="run/confexts")
    conf("b", {"etc/conflict": "from b\n", "etc/b/x": "b\n"}, fmt="erofs",
         where="var/lib/confexts", modes={"etc/b": 0o700})
    conf("c", {"etc/conflict": "from c\n", "etc/c.link": "->/etc/a.conf"}, fmt="squashfs",
         where="usr/local/lib/confexts")
    conf("d", {"etc/d.conf": "d\n"}, where="usr/lib/confexts")
    conf("a", {"etc/shadowed": "x\n"}, where="usr/lib/confexts")  # run/confexts/a wins
    conf("e", {"etc/e.conf": "e\n"}, where="etc/extensions")  # not a confext directory
    put_ext(root, "sys", {"etc/sys.conf": "s\n"}, where="run/confexts")  # sysext release only
    (root / "run/confexts/masked").mkdir()
    conf("masked", {"etc/masked": "m\n"}, where="var/lib/confexts")


def build_confext_release(root: Path) -> None:
    cases: dict[str, Mapping[str, str]] = {
        "lvl-ok": {"ID": "debian", "CONFEXT_LEVEL": "7", "VERSION_ID": "1"},
        "lvl-bad": {"ID": "debian", "CONFEXT_LEVEL": "8"},
        "sysext-level": {"ID": "debian", "SYSEXT_LEVEL": "7", "VERSION_ID": "11"},
        "version-ok": {"ID": "debian", "VERSION_ID": "12"},
        "scope-initrd": {"ID": "_any", "CONFEXT_SCOPE": "initrd"},
        "sysext-scope": {"ID": "_any", "SYSEXT_SCOPE": "initrd"},  # not read by confext
        "arch-bad": {"ID": "_any", "ARCHITECTURE": foreign_arch()},
    }
    for i, (name, release) in enumerate(cases.items()):
        put_ext(root, name, {f"etc/{name}": f"{name}\n"}, release, confext=True,
                fmt=("dir", "erofs", "squashfs")[i % 3], where="var/lib/confexts")


def build_confext_forbidden(root: Path) -> None:
    put_ext(root, "ok", {"etc/ok": "ok\n"}, confext=True, where="run/confexts")
    # v257 checks a confext *directory* for usr/lib/os-release on the still empty mount point
    # (a no-op), so it is merged; a raw image is refused by dissect's validation
    put_ext(root, "evil", {"etc/evil": "e\n", "usr/lib/os-release": "ID=evil\n"},
            confext=True, where="run/confexts")
    put_ext(root, "evil-raw", {"etc/evil-raw": "e\n", "usr/lib/os-release": "ID=evil\n"},
            confext=True, where="run/confexts", fmt="erofs")


def build_confext_one(root: Path) -> None:
    put_ext(root, "one", {"etc/one.conf": "1\n", "etc/one.sh": "#!/bin/sh\n"}, confext=True,
            where="var/lib/confexts", modes={"etc/one.sh": 0o755})


CONFEXT_OPTIONS = ("nodev", "noexec", "nosuid", "relatime", "ro")

CONFEXT_SCENARIOS = [
    Scenario("confext-layers-and-search-path", build_confext_layers, cls=ExtClass.CONFEXT,
             merged={"etc": "a\nb\nc\nd\n"}, options={"etc": CONFEXT_OPTIONS},
             names=("a", "b", "c", "d", "masked", "sys"),
             expect={"etc/conflict": "from c\n", "etc/c.link": "a\n", "etc/shadowed": None,
                     "etc/host.conf": "host\n", "etc/b": ("d", "0o700"), "etc/e.conf": None,
                     "etc/masked": None, "etc/sys.conf": None}),
    Scenario("confext-release-checks", build_confext_release, cls=ExtClass.CONFEXT,
             os_release={"ID": "debian", "VERSION_ID": "12", "CONFEXT_LEVEL": "7"},
             merged={"etc": "lvl-ok\nsysext-scope\nversion-ok\n"}),
    Scenario("confext-forbidden-content", build_confext_forbidden, cls=ExtClass.CONFEXT,
             merged={"etc": "evil\nok\n"}, expect={"etc/evil-raw": None}),
    Scenario("confext-noexec-no", build_confext_one, cls=ExtClass.CONFEXT,
             steps=(("merge", "--noexec=no"),), merged={"etc": "one\n"},
             options={"etc": ("nodev", "nosuid", "relatime", "ro")}),
    Scenario("confext-refresh", build_confext_one, cls=ExtClass.CONFEXT,
             steps=(("merge",), _rm("var/lib/confexts/one"), ("refresh",)), rcs=(0, 0),
             merged={"etc": None}, expect={"etc/one.conf": None}),
]


@pytest.mark.parametrize("scenario", CONFEXT_SCENARIOS, ids=[s.id for s in CONFEXT_SCENARIOS])
@isolated
def test_confext_as_v257(tmp_path: Path, scenario: Scenario) -> None:
    """strata confext alone against v257's behaviour (verified with STRATA_DIFF_257=1)."""
    outcome = run_each(tmp_path, scenario, None)["strata"]
    check_expectations(scenario.expectation(257), outcome, "strata")


# --- running a scenario ----------------------------------------------------------------------


@record
class MountSeen:
    path: str  # relative to the root
    fstype: str
    source: str
    options: tuple[str, ...]  # per-mount options (ro, nodev, ...), sorted

    def without_options(self) -> MountSeen:
        return MountSeen(self.path, self.fstype, self.source, ())


@record
class VerbResult:
    argv: tuple[str, ...]
    rc: int
    tree: dict[str, Entry | None]
    markers: dict[str, str | None]  # hierarchy -> its `extensions` marker, None: not merged
    mounts: tuple[MountSeen, ...]
    stderr: str
    #: status --json=short right after the verb, "since" reduced to whether it is set; None
    #: when status failed (252 cannot show a merge under --root)
    status: list[dict[str, Any]] | None


@record
class Outcome:
    verbs: tuple[VerbResult, ...]
    unmerged_tree: dict[str, Entry | None]
    listing: list[dict[str, Any]]  # list --json=short on the pristine root
    status: list[dict[str, Any]]  # status --json=short on the pristine (unmerged) root
    status_after: list[dict[str, Any]]  # status --json=short after the final unmerge

    @property
    def names(self) -> list[str]:
        return [e["name"] for e in self.listing]


def _hierarchies(scenario: Scenario) -> tuple[str, ...]:
    default = tuple(h.strip("/") for h in scenario.cls.default_hierarchies)
    extra = scenario.env.get(f"{scenario.cls.env_prefix}_HIERARCHIES")
    if extra is None:
        return default
    return tuple(dict.fromkeys([*default, *(h.strip("/") for h in extra.split(":"))]))


def invoke(tool: Oracle | None, args: tuple[str, ...], root: Path, scenario: Scenario) -> Any:
    """Run a verb with strata (tool None) or with the oracle, for the scenario's class."""
    full = (*args, f"--root={root}")
    if tool is None:
        return strata(scenario.cls.value, *full, env=scenario.env)
    if scenario.cls is ExtClass.CONFEXT:
        tool = tool.confext()
    return tool(*full, env=scenario.env)


def observe(root: Path, hierarchies: tuple[str, ...], cls: ExtClass
            ) -> tuple[dict[str, str | None], tuple[MountSeen, ...]]:
    from strata.kernel import mountinfo

    markers: dict[str, str | None] = {}
    for h in hierarchies:
        resolved = resolve_in_root(root, h)
        state = marker_state(resolved, cls.marker_dir, cls.marker_list) \
            if resolved is not None and resolved.is_dir() else None
        if state is not None:
            assert state[1], f"{h}/{cls.marker_dir}/dev does not match the overlay's st_dev"
        markers[h] = state[0] if state else None
    prefix = str(root) + "/"
    seen = [MountSeen(os.path.relpath(e.mountpoint, root), e.fstype, e.source,
                      tuple(sorted(e.mount_options)))
            for e in mountinfo.read() if e.mountpoint.startswith(prefix)]
    return markers, tuple(sorted(seen, key=lambda m: (m.path, m.source)))


def queries(tool: Oracle | None, root: Path, scenario: Scenario
            ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    listing = invoke(tool, ("list", "--json=short"), root, scenario)
    status = invoke(tool, ("status", "--json=short"), root, scenario)
    assert listing.returncode == 0, f"{tool} list: {listing.stderr}"
    assert status.returncode == 0, f"{tool} status: {status.stderr}"
    return json.loads(listing.stdout), json.loads(status.stdout)


def run_tool(tool: Oracle | None, root: Path, scenario: Scenario, *,
             listing: list[dict[str, Any]], status: list[dict[str, Any]]) -> Outcome:
    """The scenario's steps, then the tool's own unmerge (which must leave no mount)."""
    hierarchies = _hierarchies(scenario)
    results: list[VerbResult] = []
    for step in scenario.steps:
        if callable(step):
            step(root)
            continue
        r = invoke(tool, step, root, scenario)
        markers, mounts = observe(root, hierarchies, scenario.cls)
        st = invoke(tool, ("status", "--json=short"), root, scenario)
        shown = [{**row, "since": row["since"] is not None} for row in json.loads(st.stdout)] \
            if st.returncode == 0 else None
        results.append(VerbResult(step, r.returncode, snapshot_tree(root, hierarchies),
                                  markers, mounts, r.stderr, shown))
    u = invoke(tool, ("unmerge",), root, scenario)
    assert u.returncode == 0, f"{tool or 'strata'} unmerge: {u.stderr}"
    assert mounts_under(root) == [], f"{tool or 'strata'} left mounts: {mounts_under(root)}"
    status_after = queries(tool, root, scenario)[1]
    return Outcome(tuple(results), snapshot_tree(root, hierarchies), listing, status,
                   status_after)


def run_each(base: Path, scenario: Scenario, oracle: Oracle | None, *, prepare: bool = True
             ) -> dict[str, Outcome]:
    """Build the scenario's root below `base` once, then give each tool a fresh copy of it at
    the same path (so paths and list times agree) and run the scenario with it."""
    work = base / "base"
    work.mkdir(parents=True)
    if prepare:
        prepare_for_systemd(work)
    root = make_root(work, scenario.os_release, files={"etc/host.conf": "host\n"})
    scenario.build(root)
    pristine = base / "pristine"
    shutil.copytree(root, pristine, symlinks=True)  # copy2: modes, times and xattrs
    tools: dict[str, Oracle | None] = {"strata": None}
    if oracle is not None:
        tools["systemd"] = oracle
    # on one copy: a directory's TIME is its birth time, which a copy does not keep
    answers = {name: queries(tool, root, scenario) for name, tool in tools.items()}
    outcomes = {}
    for name, tool in tools.items():
        if name != "strata":
            shutil.rmtree(root)
            shutil.copytree(pristine, root, symlinks=True)
        outcomes[name] = run_tool(tool, root, scenario, listing=answers[name][0],
                                  status=answers[name][1])
    return outcomes


def compare(outcomes: Mapping[str, Outcome], oracle: Oracle) -> None:
    s, d = outcomes["strata"], outcomes["systemd"]

    def mounts(v: VerbResult) -> tuple[MountSeen, ...]:
        if oracle.mount_options_comparable:
            return v.mounts
        return tuple(m.without_options() for m in v.mounts)

    assert s.listing == d.listing, "list --json=short differs"
    assert s.status == d.status, "status --json=short (unmerged) differs"
    for sv, dv in zip(s.verbs, d.verbs, strict=True):
        where = f"after '{' '.join(sv.argv)}'"
        assert sv.rc == dv.rc, (f"exit status {where}: strata {sv.rc}, systemd {dv.rc}\n"
                                f"strata: {sv.stderr}\nsystemd: {dv.stderr}")
        assert sv.markers == dv.markers, f"markers {where}"
        assert mounts(sv) == mounts(dv), f"mounts {where}"
        assert sv.tree == dv.tree, f"merged tree {where}\nstrata: {sv.stderr}"
        if oracle.merged_status_comparable or not any(sv.markers.values()):
            assert sv.status == dv.status, f"status --json=short {where}"
    assert s.unmerged_tree == d.unmerged_tree, "tree after unmerge differs"
    assert s.status_after == d.status_after, "status --json=short after unmerge differs"


def check_expectations(expected: Expect | None, outcome: Outcome, who: str) -> None:
    if expected is None:
        return
    got_rcs = tuple(v.rc for v in outcome.verbs)
    assert got_rcs == expected.rcs, (who, [(v.argv, v.rc, v.stderr) for v in outcome.verbs])
    last = outcome.verbs[-1]
    for h, names in expected.merged.items():
        assert last.markers.get(h) == names, (who, h, last.stderr)
    for rel, want in expected.expect.items():
        entry = _lookup(last.tree, rel)
        got = entry[2] if entry is not None and entry[0] == "f" and isinstance(want, str) \
            else entry
        assert got == want, (who, rel, last.stderr)
    if expected.names is not None:
        assert outcome.names == list(expected.names), who
    if expected.options is not None:
        assert {m.path: m.options for m in last.mounts} == dict(expected.options), who
    if last.status is not None:  # what status says agrees with the markers
        shown = {row["hierarchy"].lstrip("/"): row["extensions"] for row in last.status}
        for h, names in last.markers.items():
            if h in shown:
                assert shown[h] == (names.splitlines() if names else "none"), (who, h)


def _lookup(tree: Mapping[str, Entry | None], rel: str) -> Entry | None:
    """An entry of a snapshot by path, following symlinks within the snapshot (usr/bin/link);
    "var/opt/..." is looked up as the symlinked hierarchy "opt/...". """
    if rel.startswith("var/opt/") and rel not in tree:
        rel = "opt/" + rel[len("var/opt/"):]
    entry = tree.get(rel)
    if entry is not None and entry[0] == "l":
        target = entry[1].lstrip("/") if entry[1].startswith("/") else \
            os.path.normpath(os.path.join(os.path.dirname(rel), entry[1]))
        return _lookup(tree, target)
    return entry


def check_same(base: Path, scenario: Scenario, oracle: Oracle, *, prepare: bool = True
               ) -> None:
    """The scenario through strata and `oracle`: everything equal, and as expected."""
    outcomes = run_each(base, scenario, oracle, prepare=prepare)
    compare(outcomes, oracle)
    expected = scenario.expectation(oracle.version)
    for who, outcome in outcomes.items():
        check_expectations(expected, outcome, who)


def check_difference(base: Path, scenario: Scenario) -> None:
    """A scenario where 252 and 257 differ: strata must do what 257 does; the installed 252
    must do what the scenario says 252 does (a 257 would have to agree with strata)."""
    oracle = installed_oracle()
    outcomes = run_each(base, scenario, oracle)
    check_expectations(scenario.expectation(257), outcomes["strata"], "strata")
    check_expectations(scenario.expectation(oracle.version), outcomes["systemd"],
                       f"systemd {oracle.version}")


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.id for s in SCENARIOS])
@isolated
def test_same_as_systemd(tmp_path: Path, scenario: Scenario) -> None:
    check_same(tmp_path, scenario, installed_oracle())


# --- where 252 and 257 differ: strata does what 257 does -------------------------------------


@isolated
def test_id_like_matches__v257_differs_from_v252(tmp_path: Path) -> None:
    """v257.x (backported from v258) accepts an extension whose ID is one of the host's
    ID_LIKE words (its VERSION_ID must still match); 252 compares ID only."""
    check_difference(tmp_path, DIFFERING["id-like-matches"])


@isolated
def test_class_suffix_stripped__v257_differs_from_v252(tmp_path: Path) -> None:
    """v255+ names foo.sysext.raw and a directory baz.sysext "foo"/"baz"; 252 keeps the
    suffix (and then finds no extension-release.foo.sysext: the merge fails)."""
    check_difference(tmp_path, DIFFERING["class-suffix-stripped"])


@isolated
def test_release_name_cut_at_version__v257_differs_from_v252(tmp_path: Path) -> None:
    """v257 matches extension-release.X against the image name cut at the first "_" or "+"
    (path_extract_image_name): v_1 with extension-release.v is accepted; 252 ignores it."""
    check_difference(tmp_path, DIFFERING["release-name-cut-at-version-dirs"])


@isolated
def test_release_name_cut_at_version_raw__v257_differs_from_v252(tmp_path: Path) -> None:
    """The same for raw images, where 252's failing dissect validation fails the merge."""
    check_difference(tmp_path, DIFFERING["release-name-cut-at-version-raw"])


@isolated
def test_forbidden_os_release_in_directory__v257_differs_from_v252(tmp_path: Path) -> None:
    """A sysext directory shipping usr/lib/os-release fails image_read_metadata() in v257:
    the whole merge fails with exit status 1, --force or not. 252 refuses but exits 0, and
    merges it with --force."""
    check_difference(tmp_path, DIFFERING["forbidden-os-release-in-directory"])


@isolated
def test_forbidden_os_release_in_raw_image__v257_differs_from_v252(tmp_path: Path) -> None:
    """A raw image shipping usr/lib/os-release is ignored by v257 (the rest is merged); 252
    refuses the whole merge (exit status 0). With --force both merge it (SCENARIOS)."""
    check_difference(tmp_path, DIFFERING["forbidden-os-release-in-raw-image"])


@isolated
def test_merge_failure_exit_status__v257_differs_from_v252(tmp_path: Path) -> None:
    """When merging fails (an accepted image whose /opt is a file; a root without os-release)
    v257 exits 1; 252 logs the failure and exits 0. Nothing is merged either way."""
    check_difference(tmp_path / "1", DIFFERING["merge-failure-exit-status"])
    check_difference(tmp_path / "2", DIFFERING["host-without-os-release"])


@isolated
def test_merged_root_keeps_host_mode__v257_differs_from_v252(tmp_path: Path) -> None:
    """v256+ chmods the overlay's top layer to the host hierarchy's mode, so a merged /opt
    stays 0711; 252's merged hierarchies are always 0755."""
    check_difference(tmp_path, DIFFERING["merged-root-keeps-host-mode"])


@isolated
def test_versioned_directory__v257_differs_from_v252(tmp_path: Path) -> None:
    """v256+ picks the newest entry of a `.v` directory (vpick); to 252 tool.raw.v is just a
    directory image of that name without release data."""
    check_difference(tmp_path, DIFFERING["versioned-directory"])


@isolated
def test_mount_flags__v257_differs_from_v252(tmp_path: Path) -> None:
    """The overlay is mounted MS_RDONLY|MS_NODEV since v254 (read-only mode); 252 mounts it
    MS_RDONLY only. Source "sysext", type overlay in both."""
    outcomes = run_each(tmp_path, Scenario("mount-flags", build_two, merged=both("one\ntwo\n")),
                        installed_oracle())
    for who, outcome in outcomes.items():
        mounts = outcome.verbs[0].mounts
        assert [(m.path, m.fstype, m.source) for m in mounts] == \
            [("opt", "overlay", "sysext"), ("usr", "overlay", "sysext")], who
        flags = {m.path: set(m.options) for m in mounts}
        assert all({"ro", "nosuid", "noexec"} & f == {"ro"} for f in flags.values()), who
        nodev = all("nodev" in f for f in flags.values())
        if who == "strata" or installed_oracle().version >= 254:
            assert nodev, (who, flags)
        else:
            assert not nodev, (who, flags)


# --- the command line ------------------------------------------------------------------------


@record
class CliCase:
    """argv ({missing}: a path that does not exist, {file}: a regular file) and v257's exit
    status; rc252 where 252 differs; whether stdout must be identical too."""

    args: tuple[str, ...]
    rc: int
    rc252: int | None = None
    same_stdout: bool = True


CLI_CASES = (
    CliCase(("frob",), 1),
    CliCase(("merge", "extra"), 1),
    CliCase(("--json=bogus", "list"), 1),
    CliCase(("list", "--json"), 1),
    CliCase(("--root={missing}", "status"), 0),
    CliCase(("--root={missing}", "status", "--json=short"), 0),
    CliCase(("--root={missing}", "list"), 0),
    CliCase(("--root={missing}", "list", "--json=short"), 0),
    CliCase(("--root={missing}", "unmerge"), 0),
    # no os-release: the merge fails (252 exits 0 when merging fails)
    CliCase(("--root={missing}", "merge"), 1, rc252=0),
    CliCase(("--root={missing}", "refresh"), 1, rc252=0),
    CliCase(("--root={file}", "status"), 1, same_stdout=False),
    CliCase(("--root={file}", "list"), 1),
)


def check_cli(base: Path, oracle: Oracle) -> None:
    (base / "file").write_text("not a directory\n")
    paths = {"missing": str(base / "missing"), "file": str(base / "file")}
    for case in CLI_CASES:
        args = tuple(a.format(**paths) for a in case.args)
        mine, theirs = strata("sysext", *args), oracle(*args)
        assert mine.returncode == case.rc, (args, mine.stderr)
        want = case.rc252 if oracle.version == 252 and case.rc252 is not None else case.rc
        if oracle.version in (252, 257):
            assert theirs.returncode == want, (args, theirs.stderr)
        if case.same_stdout:
            assert mine.stdout == theirs.stdout, args


@isolated
def test_cli_same_as_systemd(tmp_path: Path) -> None:
    """Usage errors and a missing or non-directory --root: exit status and output."""
    prepare_for_systemd(tmp_path)
    check_cli(tmp_path, installed_oracle())


# --- systemd 257 through peers.sh (development only) ---------------------------------------


ALL_SCENARIOS = [*SCENARIOS, *DIFFERING.values(), *CONFEXT_SCENARIOS]
PEERS_IDS = [*(s.id for s in ALL_SCENARIOS), "cli"]


@pytest.mark.peers257
@pytest.mark.parametrize("scenario", PEERS_IDS if peers_enabled() else ["disabled"])
def test_same_as_systemd_257(scenario: str) -> None:
    """Every scenario, the differing ones included, through strata and systemd 257 in the
    peers namespace: everything must be equal, mount options included. Not for CI (it needs
    ../shared); run with STRATA_DIFF_257=1 while developing."""
    r = run_in_peers("tests.kernel.test_differential", scenario)
    assert r.returncode == 0, r.stdout + r.stderr


def main(argv: list[str]) -> int:
    """Inside the peers namespace: run scenarios against systemd 257 (see above)."""
    by_id = {s.id: s for s in ALL_SCENARIOS}
    PEERS_WORK.mkdir(parents=True, exist_ok=True)
    for scenario_id in argv:
        base = Path(tempfile.mkdtemp(prefix="strata-diff-", dir=PEERS_WORK))
        try:
            if scenario_id == "cli":
                check_cli(base, PEERS_257)
            else:
                check_same(base, by_id[scenario_id], PEERS_257, prepare=False)
        finally:
            # never leave a merge behind in the shared namespace (a failed check may)
            for cls in ("sysext", "confext"):
                strata(cls, "unmerge", f"--root={base / 'base/root'}")
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
