"""Merge options and hierarchy handling, for real, in private mount namespaces: --noexec,
$SYSTEMD_SYSEXT_HIERARCHIES / $SYSTEMD_CONFEXT_HIERARCHIES, missing, empty and symlinked host
hierarchies, submounts of a hierarchy, extensions whose /usr is a symlink, and roots whose
path has spaces, commas and colons.

Expectations were checked against systemd-sysext/-confext 257.13 on the same scenarios, except
where 257.13 itself fails (it aborts on submounts below --root and cannot mount layers whose
path has a comma or a colon); there Strata's behaviour is the one the later upstream tests ask
for.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from strata.kernel import mountinfo
from tests.helpers import (
    install_ext,
    isolated,
    make_root,
    mkfs,
    mounts_under,
    run,
    strata,
    write_tree,
)

pytestmark = pytest.mark.privileged

SCRIPT = "#!/bin/sh\necho ran\n"


def _ok(cls: str, *args: str, env: dict[str, str] | None = None) -> str:
    r = strata(cls, *args, env=env)
    assert r.returncode == 0, r.stderr
    return r.stderr


def _top(path: Path) -> mountinfo.MountEntry:
    top = mountinfo.top_mount_at(mountinfo.read(), str(path))
    assert top is not None, f"nothing mounted on {path}"
    return top


def _is_mount(path: Path) -> bool:
    return bool(mountinfo.stack_at(mountinfo.read(), str(path)))


def _lower_layers(entry: mountinfo.MountEntry) -> list[str]:
    out: list[str] = []
    for opt in entry.super_options:
        key, _, value = opt.partition("=")
        if key == "lowerdir+":
            out.append(value)
        elif key == "lowerdir":
            out.extend(value.split(":"))
    return out


def _executes(path: Path) -> bool:
    """Run `path`: True if it ran, False if the mount's noexec refused it."""
    try:
        out = subprocess.run([str(path)], capture_output=True, text=True, check=True).stdout
    except PermissionError as e:
        assert e.errno == errno.EACCES
        return False
    assert out == "ran\n"
    return True


def _count(point: Path) -> int:
    return sum(1 for e in mountinfo.read() if e.mountpoint == str(point))


# --- --noexec --------------------------------------------------------------------------------

NOEXEC = [
    # class, options, mount flags that must be there, flags that must not, script runs
    ("sysext", (), {"ro", "nodev"}, {"noexec", "nosuid"}, True),
    ("sysext", ("--noexec=yes",), {"ro", "nodev", "noexec"}, {"nosuid"}, False),
    ("sysext", ("--noexec=no",), {"ro", "nodev"}, {"noexec", "nosuid"}, True),
    ("sysext", ("--noexec=yes", "--mutable=ephemeral"), {"rw", "nodev", "noexec", "noatime"},
     {"nosuid"}, False),
    ("confext", (), {"ro", "nosuid", "nodev", "noexec"}, set(), False),
    ("confext", ("--noexec=yes",), {"ro", "nosuid", "nodev", "noexec"}, set(), False),
    ("confext", ("--noexec=no",), {"ro", "nosuid", "nodev"}, {"noexec"}, True),
    ("confext", ("--noexec=no", "--mutable=ephemeral"), {"rw", "nosuid", "nodev", "noatime"},
     {"noexec"}, True),
]


@pytest.mark.parametrize("case", NOEXEC, ids=[f"{c[0]}{''.join(c[1])}" for c in NOEXEC])
@isolated
def test_noexec(tmp_path: Path,
                case: tuple[str, tuple[str, ...], set[str], set[str], bool]) -> None:
    cls, options, present, absent, runs = case
    root = make_root(tmp_path, files={"etc/host.conf": "h\n"})
    if cls == "sysext":
        ext = install_ext(root, "x", {"usr/bin/tool": SCRIPT})
        hierarchy, script = root / "usr", root / "usr/bin/tool"
        os.chmod(ext / "usr/bin/tool", 0o755)
    else:
        ext = install_ext(root, "x", {"etc/tool": SCRIPT}, confext=True, where="run/confexts")
        hierarchy, script = root / "etc", root / "etc/tool"
        os.chmod(ext / "etc/tool", 0o755)
    _ok(cls, f"--root={root}", *options, "merge")
    flags = set(_top(hierarchy).mount_options)
    assert present <= flags, flags
    assert not absent & flags, flags
    assert _executes(script) == runs
    _ok(cls, f"--root={root}", "unmerge")
    assert mounts_under(root) == []


@isolated
def test_noexec_bad_value(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    install_ext(root, "x", {"usr/bin/x": "x"})
    r = strata("sysext", f"--root={root}", "--noexec=maybe", "merge")
    assert r.returncode == 1
    assert "Failed to parse boolean argument to --noexec: maybe." in r.stderr
    assert mounts_under(root) == []


# --- $SYSTEMD_*_HIERARCHIES ------------------------------------------------------------------


@isolated
def test_custom_hierarchies(tmp_path: Path) -> None:
    root = make_root(tmp_path, files={"usr/local/bin/host-local": "hl\n"})
    install_ext(root, "x", {"usr/local/bin/x": "x\n", "srv/data/y": "y\n", "opt/x/z": "z\n"})
    env = {"SYSTEMD_SYSEXT_HIERARCHIES": "/usr/local:/srv/data"}
    err = _ok("sysext", f"--root={root}", "merge", env=env)
    assert f"Merged extensions into '{root}/usr/local'." in err
    assert f"Merged extensions into '{root}/srv/data'." in err
    assert (root / "usr/local/bin/x").read_text() == "x\n"
    assert (root / "usr/local/bin/host-local").read_text() == "hl\n"
    assert (root / "srv/data/y").read_text() == "y\n"
    assert (root / "usr/local/.systemd-sysext/extensions").read_text() == "x\n"
    # only the configured hierarchies are touched
    assert sorted(mounts_under(root)) == [str(root / "srv/data"), str(root / "usr/local")]
    assert not (root / "opt/x").exists()
    # /srv/data did not exist: created (0755) and kept after unmerge
    assert stat.S_IMODE(os.stat(root / "srv/data").st_mode) == 0o755

    status = strata("sysext", f"--root={root}", "status", "--json=short", env=env)
    assert status.returncode == 0, status.stderr
    assert [(d["hierarchy"], d["extensions"]) for d in json.loads(status.stdout)] == \
        [("/srv/data", ["x"]), ("/usr/local", ["x"])]

    # an unmerge without the variable looks at /usr and /opt only
    _ok("sysext", f"--root={root}", "unmerge")
    assert _is_mount(root / "usr/local")
    _ok("sysext", f"--root={root}", "unmerge", env=env)
    assert mounts_under(root) == []
    assert (root / "srv/data").is_dir() and os.listdir(root / "srv/data") == []


@isolated
def test_custom_confext_hierarchies(tmp_path: Path) -> None:
    root = make_root(tmp_path, files={"etc/host.conf": "h\n"})
    install_ext(root, "c", {"etc/app.conf": "a\n", "srv/conf/b.conf": "b\n"}, confext=True,
                where="run/confexts")
    env = {"SYSTEMD_CONFEXT_HIERARCHIES": "/etc:/srv/conf"}
    _ok("confext", f"--root={root}", "merge", env=env)
    assert (root / "etc/app.conf").exists() and (root / "srv/conf/b.conf").exists()
    assert {"nosuid", "nodev", "noexec"} <= set(_top(root / "srv/conf").mount_options)
    assert (root / "srv/conf/.systemd-confext/confexts").read_text() == "c\n"
    # the sysext variable does not apply to confext
    _ok("confext", f"--root={root}", "unmerge", env={"SYSTEMD_SYSEXT_HIERARCHIES": "/srv/conf"})
    assert sorted(mounts_under(root)) == [str(root / "srv/conf")]
    _ok("confext", f"--root={root}", "unmerge", env=env)
    assert mounts_under(root) == []


BAD_HIERARCHIES = [
    ("", "Path '' is not absolute, refusing."),
    ("usr", "Path 'usr' is not absolute, refusing."),
    ("/usr:", "Path '' is not absolute, refusing."),
    ("/usr::/opt", "Path '' is not absolute, refusing."),
    ("/usr/../etc", "Path '/usr/../etc' is not normalized, refusing."),
    ("//usr", "Path '//usr' is not normalized, refusing."),
    ("/usr/.", "Path '/usr/.' is not normalized, refusing."),
    ("/", "Path '/' is the root fs, refusing."),
]


@pytest.mark.parametrize(("value", "why"), BAD_HIERARCHIES)
@pytest.mark.parametrize("cls", ["sysext", "confext"])
@isolated
def test_bad_hierarchies(tmp_path: Path, cls: str, value: str, why: str) -> None:
    root = make_root(tmp_path)
    install_ext(root, "x", {"usr/bin/x": "x", "etc/x.conf": "x"},
                confext=cls == "confext", where="run/confexts" if cls == "confext"
                else "var/lib/extensions")
    var = f"SYSTEMD_{cls.upper()}_HIERARCHIES"
    for verb in ("merge", "status"):
        r = strata(cls, f"--root={root}", verb, env={var: value})
        assert r.returncode == 1, (verb, r.stderr)
        assert r.stderr.strip().splitlines()[0] == \
            f"Failed to parse environment variable ${var}: {why}", r.stderr
    assert mounts_under(root) == []


@isolated
def test_hierarchy_with_trailing_slash(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    install_ext(root, "x", {"usr/bin/x": "x\n"})
    env = {"SYSTEMD_SYSEXT_HIERARCHIES": "/usr/"}
    _ok("sysext", f"--root={root}", "merge", env=env)
    assert (root / "usr/bin/x").exists() and mounts_under(root) == [str(root / "usr")]
    _ok("sysext", f"--root={root}", "unmerge", env=env)
    assert mounts_under(root) == []


# --- host hierarchies: missing, empty, symlinked ---------------------------------------------


@isolated
def test_missing_hierarchy_is_created_and_stays(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    (root / "opt/host/file").unlink()
    (root / "opt/host").rmdir()
    (root / "opt").rmdir()
    install_ext(root, "x", {"opt/x/file": "x\n"})
    _ok("sysext", f"--root={root}", "merge")
    assert (root / "opt/x/file").read_text() == "x\n"
    top = _top(root / "opt")
    assert str(root / "opt") not in _lower_layers(top)
    assert stat.S_IMODE(os.stat(root / "opt").st_mode) == 0o755
    _ok("sysext", f"--root={root}", "unmerge")
    assert (root / "opt").is_dir() and os.listdir(root / "opt") == []
    assert stat.S_IMODE(os.stat(root / "opt").st_mode) == 0o755


@isolated
def test_empty_hierarchy_is_not_a_layer(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    (root / "opt/host/file").unlink()
    (root / "opt/host").rmdir()
    install_ext(root, "x", {"opt/x/file": "x\n"})
    _ok("sysext", f"--root={root}", "merge")
    opt_layers = _lower_layers(_top(root / "opt"))
    usr_layers = _lower_layers(_top(root / "usr"))
    assert str(root / "opt") not in opt_layers
    assert usr_layers[-1] == str(root / "usr")  # a non-empty host is the bottom layer
    assert len(opt_layers) == len(usr_layers) - 1
    assert sorted(os.listdir(root / "opt")) == [".systemd-sysext", "x"]
    _ok("sysext", f"--root={root}", "unmerge")
    assert os.listdir(root / "opt") == []


@pytest.mark.parametrize("target", ["realopt", "/realopt"])
@isolated
def test_symlinked_hierarchy_is_merged_on_its_target(tmp_path: Path, target: str) -> None:
    root = make_root(tmp_path)
    (root / "opt").rename(root / "realopt")
    os.symlink(target, root / "opt")  # an absolute target resolves inside the root
    install_ext(root, "x", {"opt/x/file": "x\n"})
    err = _ok("sysext", f"--root={root}", "merge")
    assert f"Merged extensions into '{root}/realopt'." in err
    assert os.readlink(root / "opt") == target
    assert _is_mount(root / "realopt") and not _is_mount(root / "opt")
    real = root / "realopt"  # (an absolute link seen from outside the root points elsewhere)
    assert (real / "x/file").exists() and (real / "host/file").exists()
    status = strata("sysext", f"--root={root}", "status", "--json=short")
    assert {d["hierarchy"]: d["extensions"] for d in json.loads(status.stdout)}["/opt"] == ["x"]
    err = _ok("sysext", f"--root={root}", "unmerge")
    assert f"Unmerged '{root}/realopt'." in err
    assert mounts_under(root) == []
    assert os.readlink(root / "opt") == target
    assert sorted(os.listdir(root / "realopt")) == ["host"]


# --- submounts of a hierarchy ----------------------------------------------------------------


def _tmpfs(where: Path, name: str, content: str) -> None:
    where.mkdir(parents=True, exist_ok=True)
    run("mount", "-t", "tmpfs", "-o", "mode=0755", name, str(where))
    (where / name).write_text(content)


@pytest.mark.parametrize("mutable", ["no", "yes"])
@isolated
def test_submounts_survive_merge_refresh_unmerge(tmp_path: Path, mutable: str) -> None:
    """/usr is a plain directory of the root; tmpfs mounts below it (one nested in another)
    must show on top of the merged tree, and exactly once again after unmerge."""
    root = make_root(tmp_path)
    install_ext(root, "x", {"usr/share/x/file": "x\n", "opt/deep/from-ext": "e\n"})
    sub, outer, inner = root / "usr/share/sub", root / "opt/deep/er", root / "opt/deep/er/nested"
    _tmpfs(sub, "subfs", "sub\n")
    _tmpfs(outer, "outerfs", "outer\n")
    _tmpfs(inner, "innerfs", "inner\n")
    points = {sub: "subfs", outer: "outerfs", inner: "innerfs"}

    def visible() -> None:
        entries = mountinfo.read()
        for point, name in points.items():
            assert (point / name).read_text() == f"{name[:-2]}\n"
            top = mountinfo.top_mount_at(entries, str(point))
            assert top is not None and (top.fstype, top.source) == ("tmpfs", name)
        assert (root / "usr/share/x/file").exists() and (root / "opt/deep/from-ext").exists()

    _ok("sysext", f"--root={root}", f"--mutable={mutable}", "merge")
    visible()
    if mutable == "yes":  # writes below a submount go to the submount, not the upper dir
        (sub / "written").write_text("w\n")
        assert not (root / "var/lib/extensions.mutable/usr/share/sub/written").exists()
    install_ext(root, "y", {"usr/share/y/file": "y\n"})
    _ok("sysext", f"--root={root}", f"--mutable={mutable}", "refresh")
    visible()
    assert (root / "usr/share/y/file").exists()
    _ok("sysext", f"--root={root}", "unmerge")
    visible_after = mountinfo.read()
    for point in points:
        assert sum(1 for e in visible_after if e.mountpoint == str(point)) == 1, point
    assert not _is_mount(root / "usr") and not _is_mount(root / "opt")
    for point, name in points.items():
        assert (point / name).exists()
    assert (sub / "written").exists() == (mutable == "yes")


@isolated
def test_mount_added_while_merged_survives_unmerge(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    install_ext(root, "x", {"usr/share/x/file": "x\n"})
    _ok("sysext", f"--root={root}", "merge")
    # a mount on a directory that only the extension provides
    run("mount", "-t", "tmpfs", "late", str(root / "usr/share/x"))
    (root / "usr/share/x/late").write_text("late\n")
    _ok("sysext", f"--root={root}", "refresh")
    assert (root / "usr/share/x/late").exists()
    _ok("sysext", f"--root={root}", "unmerge")
    assert (root / "usr/share/x/late").read_text() == "late\n"  # mount point made on the host
    assert _count(root / "usr/share/x") == 1
    assert not _is_mount(root / "usr")


# --- extensions whose /usr is a symlink ------------------------------------------------------


@pytest.mark.parametrize("fmt", ["dir", "erofs"])
@pytest.mark.parametrize("link", ["data/usr", "/data/usr"])
@isolated
def test_extension_usr_is_a_symlink(tmp_path: Path, fmt: str, link: str) -> None:
    root = make_root(tmp_path)
    files = {"data/usr/lib/extension-release.d/extension-release.x": "ID=_any\n",
             "data/usr/bin/x": "x\n", "usr": f"->{link}"}
    tree = tmp_path / "tree"
    write_tree(tree, files)
    if fmt == "dir":
        (root / "var/lib/extensions").mkdir(parents=True, exist_ok=True)
        os.rename(tree, root / "var/lib/extensions/x")
    else:
        mkfs(tree, root / "var/lib/extensions/x.raw")
    err = _ok("sysext", f"--root={root}", "merge")
    assert "Using extensions 'x" in err
    assert (root / "usr/bin/x").read_text() == "x\n"
    assert (root / "usr/bin/host-tool").exists()
    assert (root / "usr/.systemd-sysext/extensions").read_text() == "x\n"
    _ok("sysext", f"--root={root}", "unmerge")
    assert mounts_under(root) == []


# --- paths with spaces, commas and colons ----------------------------------------------------


@isolated
def test_root_with_spaces_commas_and_colons(tmp_path: Path) -> None:
    base = tmp_path / "we ird,x:y"
    root = make_root(base)
    install_ext(root, "d", {"opt/d/file": "d\n"})
    install_ext(root, "i", {"opt/i/file": "i\n"}, fmt="erofs")
    for mode in ("no", "ephemeral"):
        _ok("sysext", f"--root={root}", f"--mutable={mode}", "merge")
        assert (root / "opt/d/file").exists() and (root / "opt/i/file").exists()
        assert (root / "opt/host/file").exists()
        _ok("sysext", f"--root={root}", "unmerge")

    err = _ok("sysext", f"--root={root}", "--mutable=yes", "merge")
    assert f"Merged extensions into '{root}/opt'." in err
    (root / "opt/new").write_text("n\n")
    assert (root / "var/lib/extensions.mutable/opt/new").exists()
    assert (root / "opt/.systemd-sysext/work_dir").read_text() == \
        "var/lib/extensions.mutable/.systemd-opt-workdir\n"
    status = strata("sysext", f"--root={root}", "status", "--json=short")
    assert [d["extensions"] for d in json.loads(status.stdout)] == [["d", "i"], ["d", "i"]]
    _ok("sysext", f"--root={root}", "--mutable=yes", "refresh")
    assert (root / "opt/new").exists()
    _ok("sysext", f"--root={root}", "unmerge")
    assert mounts_under(root) == []
    assert sorted(os.listdir(root / "var/lib/extensions.mutable")) == ["opt", "usr"]


@isolated
def test_hierarchy_with_space_and_comma(tmp_path: Path) -> None:
    root = make_root(tmp_path, files={"spa ce/h,1/host": "h\n"})
    install_ext(root, "x", {"spa ce/h,1/f": "f\n"})
    env = {"SYSTEMD_SYSEXT_HIERARCHIES": "/spa ce/h,1"}
    _ok("sysext", f"--root={root}", "--mutable=yes", "merge", env=env)
    h = root / "spa ce/h,1"
    assert (h / "f").exists() and (h / "host").exists()
    (h / "w").write_text("w\n")
    assert (root / "var/lib/extensions.mutable/spa ce.h,1/w").exists()
    assert (h / ".systemd-sysext/work_dir").read_text() == \
        "var/lib/extensions.mutable/.systemd-spa ce.h,1-workdir\n"
    _ok("sysext", f"--root={root}", "unmerge", env=env)
    assert mounts_under(root) == []
    assert sorted(os.listdir(root / "var/lib/extensions.mutable")) == ["spa ce.h,1"]
