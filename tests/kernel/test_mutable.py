"""The --mutable= modes, for real, in private mount namespaces against scratch roots.

Cases follow systemd v257's TEST-50-DISSECT.sysext.sh ("R" cases, --root variant) plus what
only a reimplementation can get wrong: the mode check on a freshly created directory, the
`work_dir` marker, the marker's mount flags, and refreshing a mutable merge atomically (the
upper directory is shared for an instant, so the new overlay takes the other workdir name).
Expectations on what systemd also does were checked against systemd-sysext 257.13 on the
same scenarios (messages, modes, layers, mount flags, marker files); the workdir alternation is
Strata's own (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from pathlib import Path
from typing import NamedTuple

import pytest

from strata.kernel import mountinfo
from tests.helpers import install_ext, isolated, make_root, mounts_under, run, strata

pytestmark = pytest.mark.privileged

MUTABLE = "var/lib/extensions.mutable"


# --- helpers ---------------------------------------------------------------------------------


def _root(base: Path) -> Path:
    """A root with host files in /usr and /opt and one extension "e" shipping /opt/e/ext-file
    (its extension-release file makes /usr contribute too, as in TEST-50)."""
    root = make_root(base)
    install_ext(root, "e", {"opt/e/ext-file": "ext\n"})
    return root


def _sysext(*args: str, env: dict[str, str] | None = None, ok: bool = True
            ) -> tuple[int, str]:
    r = strata("sysext", *args, env=env)
    if ok:
        assert r.returncode == 0, r.stderr
    return r.returncode, r.stderr


def _ro_bind(path: Path) -> None:
    """A read-only bind mount of `path` onto itself (TEST-50's make_read_only)."""
    run("mount", "--bind", str(path), str(path))
    run("mount", "-o", "remount,bind,ro", str(path), str(path))


def _writable(path: Path) -> bool:
    """Create `path`: True if that worked, False on EROFS (anything else is a failure)."""
    try:
        path.write_text("written\n")
    except OSError as e:
        assert e.errno == errno.EROFS, e
        return False
    return True


def _top(path: Path) -> mountinfo.MountEntry:
    top = mountinfo.top_mount_at(mountinfo.read(), str(path))
    assert top is not None, f"nothing mounted on {path}"
    return top


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _leftovers(root: Path) -> set[str]:
    base = root / MUTABLE
    return set(os.listdir(base)) if base.is_dir() else set()


def _lower_layers(entry: mountinfo.MountEntry) -> list[str]:
    """An overlay's lower layers, top to bottom, from its superblock options (lowerdir+= one
    per layer on Linux >= 6.8, else one colon-separated lowerdir=)."""
    out: list[str] = []
    for opt in entry.super_options:
        key, _, value = opt.partition("=")
        if key == "lowerdir+":
            out.append(value)
        elif key == "lowerdir":
            out.extend(value.split(":"))
    return out


# --- every mode, via --mutable= and via $SYSTEMD_SYSEXT_MUTABLE_MODE --------------------------


class Expect(NamedTuple):
    writable: bool  # writes to the merged /opt succeed
    persistent: bool  # ... and land in /var/lib/extensions.mutable/opt
    sees_mutable: bool  # the mutable directory's content shows in the merged /opt


MODES = {
    "no": Expect(writable=False, persistent=False, sees_mutable=False),
    "yes": Expect(writable=True, persistent=True, sees_mutable=True),
    "auto": Expect(writable=True, persistent=True, sees_mutable=True),
    "import": Expect(writable=False, persistent=False, sees_mutable=True),
    "ephemeral": Expect(writable=True, persistent=False, sees_mutable=False),
    "ephemeral-import": Expect(writable=True, persistent=False, sees_mutable=True),
}


@pytest.mark.parametrize("via", ["cli", "env"])
@pytest.mark.parametrize("mode", list(MODES))
@isolated
def test_mode(tmp_path: Path, mode: str, via: str) -> None:
    """TEST-50: extension data in extensions.mutable/opt, read-only host /opt."""
    expect = MODES[mode]
    root = _root(tmp_path)
    mdir = root / MUTABLE / "opt"
    mdir.mkdir(parents=True)
    (mdir / "from-mutable").write_text("m\n")
    _ro_bind(root / "opt")
    args = [f"--root={root}", "merge"]
    env = None
    if via == "cli":
        args.append(f"--mutable={mode}")
    else:
        env = {"SYSTEMD_SYSEXT_MUTABLE_MODE": mode}
    _sysext(*args, env=env)

    opt = root / "opt"
    assert (opt / "e/ext-file").read_text() == "ext\n"
    assert (opt / "host/file").read_text() == "host opt\n"
    assert (opt / "from-mutable").exists() == expect.sees_mutable
    assert _writable(opt / "now-is-mutable") == expect.writable
    assert (mdir / "now-is-mutable").exists() == expect.persistent
    top = _top(opt)
    assert (top.fstype, top.source) == ("overlay", "sysext")
    assert top.read_only != expect.writable
    marker = opt / ".systemd-sysext"
    assert (marker / "work_dir").exists() == expect.persistent
    if expect.writable:
        # the marker is a read-only bind mount keeping the overlay's flags
        assert {"ro", "nodev", "noatime"} <= set(_top(marker).mount_options)
        assert not _writable(marker / "extensions")
    if mode in {"ephemeral", "ephemeral-import"}:
        assert not (root / MUTABLE / ".systemd-opt-workdir").exists()
        assert (mdir / "from-mutable").exists()  # imported or not, never written

    _sysext(f"--root={root}", "unmerge")
    assert not (opt / "now-is-mutable").exists()
    assert not (opt / "e").exists()
    assert (mdir / "now-is-mutable").exists() == expect.persistent
    assert mounts_under(root) == [str(opt)]  # only the read-only bind is left
    assert not _writable(opt / "x")
    assert _leftovers(root) <= {"opt", "usr"}  # no workdir left behind


@isolated
def test_cli_overrides_env_and_bad_values(tmp_path: Path) -> None:
    root = _root(tmp_path)
    mdir = root / MUTABLE / "opt"
    mdir.mkdir(parents=True)
    _sysext(f"--root={root}", "--mutable=no", "merge",
            env={"SYSTEMD_SYSEXT_MUTABLE_MODE": "yes"})
    assert _top(root / "opt").read_only
    assert not (root / MUTABLE / "usr").exists()  # yes would have created it
    _sysext(f"--root={root}", "unmerge")

    _sysext(f"--root={root}", "--mutable=ephemeral", "merge",
            env={"SYSTEMD_SYSEXT_MUTABLE_MODE": "import"})
    assert _writable(root / "opt/eph")
    assert not (mdir / "eph").exists()
    _sysext(f"--root={root}", "unmerge")

    # an invalid environment value is warned about and ignored: a read-only merge
    _, err = _sysext(f"--root={root}", "merge", env={"SYSTEMD_SYSEXT_MUTABLE_MODE": "bogus"})
    assert ("Failed to parse SYSTEMD_SYSEXT_MUTABLE_MODE environment variable value 'bogus'. "
            "Ignoring.") in err
    assert _top(root / "opt").read_only
    _sysext(f"--root={root}", "unmerge")

    # booleans are accepted as yes/no, and only the class's own variable counts
    _sysext(f"--root={root}", "merge", env={"SYSTEMD_SYSEXT_MUTABLE_MODE": "1"})
    assert _writable(root / "usr/bool-yes")
    assert (root / MUTABLE / "usr/bool-yes").exists()
    _sysext(f"--root={root}", "unmerge")
    _sysext(f"--root={root}", "merge", env={"SYSTEMD_CONFEXT_MUTABLE_MODE": "yes"})
    assert _top(root / "opt").read_only
    _sysext(f"--root={root}", "unmerge")

    # an invalid --mutable= value is an error, before anything happens
    code, err = _sysext(f"--root={root}", "--mutable=bogus", "merge", ok=False)
    assert code == 1
    assert "Failed to parse argument to --mutable=: bogus" in err
    assert mounts_under(root) == []


# --- yes / auto ------------------------------------------------------------------------------


@isolated
def test_yes_creates_directories_with_the_hierarchy_mode(tmp_path: Path) -> None:
    root = _root(tmp_path)
    os.chmod(root / "opt", 0o750)
    assert not (root / MUTABLE).exists()
    _sysext(f"--root={root}", "--mutable=yes", "merge")
    base = root / MUTABLE
    assert _mode(base / "opt") == 0o750 and _mode(base / "usr") == 0o755
    assert _mode(root / "opt") == 0o750
    assert _writable(root / "opt/now-is-mutable")
    assert _writable(root / "usr/bin/new-tool")
    assert (base / "opt/now-is-mutable").exists() and (base / "usr/bin/new-tool").exists()
    # work_dir: relative to the root, no leading slash, newline-terminated (as v257 writes it)
    assert (root / "opt/.systemd-sysext/work_dir").read_text() == \
        "var/lib/extensions.mutable/.systemd-opt-workdir\n"
    assert (root / "usr/.systemd-sysext/work_dir").read_text() == \
        "var/lib/extensions.mutable/.systemd-usr-workdir\n"
    assert {".systemd-opt-workdir", ".systemd-usr-workdir"} <= _leftovers(root)
    top = _top(root / "opt")
    assert not top.read_only and "noatime" in top.mount_options
    assert top.super_option("upperdir") == str(base / "opt")
    assert top.super_option("workdir") == str(base / ".systemd-opt-workdir")

    _sysext(f"--root={root}", "unmerge")
    assert _leftovers(root) == {"opt", "usr"}  # unmerge removed the workdirs
    assert (base / "opt/now-is-mutable").exists()
    assert not (root / "opt/now-is-mutable").exists()
    assert _mode(root / "opt") == 0o750

    # a second merge reuses the directories (their mode now matches)
    _sysext(f"--root={root}", "--mutable=yes", "merge")
    assert (root / "opt/now-is-mutable").exists()
    _sysext(f"--root={root}", "unmerge")


@pytest.mark.parametrize("host", ["missing", "empty"])
@isolated
def test_auto_with_missing_or_empty_hierarchy(tmp_path: Path, host: str) -> None:
    root = _root(tmp_path)
    shutil.rmtree(root / "opt")
    if host == "empty":
        (root / "opt").mkdir()
    mdir = root / MUTABLE / "opt"
    mdir.mkdir(parents=True)
    (mdir / "from-mutable").write_text("m\n")
    _sysext(f"--root={root}", "--mutable=auto", "merge")
    assert (root / "opt/e/ext-file").exists() and (root / "opt/from-mutable").exists()
    assert _writable(root / "opt/now-is-mutable")
    assert (mdir / "now-is-mutable").exists()
    # neither a missing nor an empty host directory is a layer
    assert str(root / "opt") not in _lower_layers(_top(root / "opt"))
    assert _mode(root / "opt") == 0o755
    _sysext(f"--root={root}", "unmerge")
    assert (root / "opt").is_dir() and os.listdir(root / "opt") == []
    assert (mdir / "now-is-mutable").exists()


@isolated
def test_auto_without_directory_is_read_only(tmp_path: Path) -> None:
    root = _root(tmp_path)
    _ro_bind(root / "opt")
    _sysext(f"--root={root}", "--mutable=auto", "merge")
    assert not _writable(root / "opt/x")
    assert not _writable(root / "usr/x")
    assert not (root / MUTABLE).exists()
    assert not (root / "opt/.systemd-sysext/work_dir").exists()
    _sysext(f"--root={root}", "unmerge")


@isolated
def test_auto_only_where_a_directory_exists(tmp_path: Path) -> None:
    root = _root(tmp_path)
    (root / MUTABLE / "opt").mkdir(parents=True)
    _sysext(f"--root={root}", "--mutable=auto", "merge")
    assert _writable(root / "opt/x")
    assert not _writable(root / "usr/x")
    assert not (root / MUTABLE / "usr").exists()
    _sysext(f"--root={root}", "unmerge")


@isolated
def test_mode_mismatch_fails(tmp_path: Path) -> None:
    root = _root(tmp_path)
    mdir = root / MUTABLE / "opt"
    mdir.mkdir(parents=True)
    os.chmod(mdir, 0o700)
    for mode in ("yes", "auto"):
        code, err = _sysext(f"--root={root}", f"--mutable={mode}", "merge", ok=False)
        assert code == 1
        assert f"Mutable directory '{mdir}' has mode 0700, ought to have mode 0755" in err
        assert mounts_under(root) == []
    # the other modes do not check
    for mode in ("import", "ephemeral", "ephemeral-import"):
        _sysext(f"--root={root}", f"--mutable={mode}", "merge")
        _sysext(f"--root={root}", "unmerge")
    assert _mode(mdir) == 0o700


@pytest.mark.parametrize("mode", list(MODES))
@isolated
def test_permissions_of_the_hierarchy_unchanged(tmp_path: Path, mode: str) -> None:
    """TEST-50 perm-checks: the merged root has the host's mode, before and after."""
    root = _root(tmp_path)
    os.chmod(root / "opt", 0o750)
    mdir = root / MUTABLE / "opt"
    mdir.mkdir(parents=True)
    os.chmod(mdir, 0o750)
    _ro_bind(root / "opt")
    _sysext(f"--root={root}", f"--mutable={mode}", "merge")
    assert _mode(root / "opt") == 0o750
    assert _mode(root / "usr") == 0o755
    _sysext(f"--root={root}", "unmerge")
    assert _mode(root / "opt") == 0o750


# --- symlinked mutable directories -----------------------------------------------------------


@isolated
def test_mutable_dir_symlink_to_other_dir(tmp_path: Path) -> None:
    root = _root(tmp_path)
    upper = root / "upperdir"
    upper.mkdir()
    (upper / "from-mutable").write_text("m\n")
    (root / MUTABLE).mkdir(parents=True)
    os.symlink("../../../upperdir", root / MUTABLE / "opt")
    _ro_bind(root / "opt")
    _sysext(f"--root={root}", "--mutable=auto", "merge")
    assert (root / "opt/from-mutable").exists() and (root / "opt/host/file").exists()
    assert _writable(root / "opt/now-is-mutable")
    assert (upper / "now-is-mutable").exists()
    # the workdir sits next to the resolved upper directory
    assert (root / ".systemd-opt-workdir").is_dir()
    assert (root / "opt/.systemd-sysext/work_dir").read_text() == ".systemd-opt-workdir\n"
    _sysext(f"--root={root}", "unmerge")
    assert not (root / ".systemd-opt-workdir").exists()
    assert (upper / "now-is-mutable").exists() and not (root / "opt/now-is-mutable").exists()


@isolated
def test_mutable_dir_symlink_to_writable_hierarchy(tmp_path: Path) -> None:
    """The hierarchy itself is the upper directory and not a lower layer."""
    root = _root(tmp_path)
    (root / MUTABLE).mkdir(parents=True)
    os.symlink("../../../opt", root / MUTABLE / "opt")
    _sysext(f"--root={root}", "--mutable=auto", "merge")
    top = _top(root / "opt")
    assert top.super_option("upperdir") == str(root / "opt")
    assert str(root / "opt") not in _lower_layers(top)
    assert (root / "opt/host/file").exists() and (root / "opt/e/ext-file").exists()
    assert _writable(root / "opt/now-is-mutable")
    _sysext(f"--root={root}", "unmerge")
    assert (root / "opt/now-is-mutable").exists()  # written straight into the host /opt
    assert not (root / "opt/e").exists()
    assert not (root / ".systemd-opt-workdir").exists()


@isolated
def test_mutable_dir_symlink_to_read_only_hierarchy_fails(tmp_path: Path) -> None:
    root = _root(tmp_path)
    (root / MUTABLE).mkdir(parents=True)
    os.symlink("../../../opt", root / MUTABLE / "opt")
    _ro_bind(root / "opt")
    code, err = _sysext(f"--root={root}", "--mutable=auto", "merge", ok=False)
    assert code == 1
    assert f"Can't use '{root}/opt' as an upperdir as it is read-only." in err
    assert mounts_under(root) == [str(root / "opt")]


@isolated
def test_dangling_mutable_symlink(tmp_path: Path) -> None:
    root = _root(tmp_path)
    (root / MUTABLE).mkdir(parents=True)
    os.symlink("/should/not/exist/", root / MUTABLE / "opt")
    _ro_bind(root / "opt")
    _sysext(f"--root={root}", "--mutable=auto", "merge")  # counts as absent: read-only
    assert not _writable(root / "opt/x")
    assert (root / "opt/e/ext-file").exists()
    _sysext(f"--root={root}", "unmerge")
    code, err = _sysext(f"--root={root}", "--mutable=yes", "merge", ok=False)
    assert code == 1
    assert f"Failed to create a directory '{root}/{MUTABLE}/opt': File exists" in err
    assert mounts_under(root) == [str(root / "opt")]


@pytest.mark.parametrize("mode", ["import", "ephemeral-import"])
@isolated
def test_import_of_the_hierarchy_itself_fails(tmp_path: Path, mode: str) -> None:
    root = _root(tmp_path)
    (root / MUTABLE).mkdir(parents=True)
    os.symlink("../../../opt", root / MUTABLE / "opt")
    code, err = _sysext(f"--root={root}", f"--mutable={mode}", "merge", ok=False)
    assert code == 1
    assert ("Not importing mutable directory for hierarchy /opt as a lower dir, because it "
            "points to the hierarchy itself") in err
    assert mounts_under(root) == []


@isolated
def test_import_is_read_only(tmp_path: Path) -> None:
    root = _root(tmp_path)
    mdir = root / MUTABLE / "opt"
    mdir.mkdir(parents=True)
    os.chmod(mdir, 0o700)  # import does not care about the mode
    (mdir / "from-mutable").write_text("m\n")
    _sysext(f"--root={root}", "--mutable=import", "merge")
    top = _top(root / "opt")
    assert top.read_only and top.super_option("upperdir") is None
    assert _lower_layers(top)[1] == str(mdir)  # just below the meta directory
    assert (root / "opt/from-mutable").read_text() == "m\n"
    assert not _writable(root / "opt/from-mutable")
    assert not (root / MUTABLE / "usr").exists()
    _sysext(f"--root={root}", "unmerge")
    assert os.listdir(mdir) == ["from-mutable"]


# --- ephemeral -------------------------------------------------------------------------------


@isolated
def test_ephemeral_writes_vanish_on_refresh_and_unmerge(tmp_path: Path) -> None:
    root = _root(tmp_path)
    _sysext(f"--root={root}", "--mutable=ephemeral", "merge")
    upper = _top(root / "opt").super_option("upperdir")
    assert upper is not None and upper.endswith("/mh_workspace/opt/opt")  # on the worker tmpfs
    assert _writable(root / "opt/first") and _writable(root / "usr/first")
    assert not (root / "opt/.systemd-sysext/work_dir").exists()  # nothing to clean up later
    assert not (root / MUTABLE).exists()

    _sysext(f"--root={root}", "--mutable=ephemeral", "refresh")
    assert not (root / "opt/first").exists() and not (root / "usr/first").exists()
    assert (root / "opt/e/ext-file").exists()
    assert _writable(root / "opt/second")

    _sysext(f"--root={root}", "unmerge")
    assert not (root / "opt/second").exists()
    assert mounts_under(root) == []
    assert not (root / MUTABLE).exists()
    assert sorted(os.listdir(root / "opt")) == ["host"]


@isolated
def test_confext_ephemeral_marker_keeps_its_flags(tmp_path: Path) -> None:
    root = make_root(tmp_path, files={"etc/host.conf": "h\n"})
    install_ext(root, "c", {"etc/app.conf": "app\n"}, confext=True, where="run/confexts")
    r = strata("confext", f"--root={root}", "merge",
               env={"SYSTEMD_CONFEXT_MUTABLE_MODE": "ephemeral"})
    assert r.returncode == 0, r.stderr
    etc = root / "etc"
    assert _writable(etc / "new.conf")
    assert {"rw", "nosuid", "nodev", "noexec", "noatime"} <= set(_top(etc).mount_options)
    marker = _top(etc / ".systemd-confext")
    assert {"ro", "nosuid", "nodev", "noexec"} <= set(marker.mount_options)
    assert not _writable(etc / ".systemd-confext/confexts")
    assert strata("confext", f"--root={root}", "unmerge").returncode == 0
    assert not (etc / "new.conf").exists() and (etc / "host.conf").exists()


# --- refresh of a mutable merge --------------------------------------------------------------


@pytest.mark.parametrize("mode", ["yes", "auto"])
@isolated
def test_mutable_refresh_keeps_data(tmp_path: Path, mode: str) -> None:
    """An atomic refresh mounts the new overlay beneath the old one, both on the same upper
    directory for an instant: the new one takes the other workdir name, the old one's workdir
    is removed afterwards, and every write survives."""
    root = _root(tmp_path)
    base = root / MUTABLE
    (base / "opt").mkdir(parents=True)
    (base / "usr").mkdir(parents=True)
    work_dir = root / "opt/.systemd-sysext/work_dir"
    _sysext(f"--root={root}", f"--mutable={mode}", "merge")
    assert _writable(root / "opt/before")
    assert work_dir.read_text() == f"{MUTABLE}/.systemd-opt-workdir\n"

    install_ext(root, "f", {"opt/f/ext-file": "f\n"})
    _sysext(f"--root={root}", f"--mutable={mode}", "refresh")
    assert (root / "opt/before").read_text() == "written\n"
    assert (root / "opt/f/ext-file").exists()
    assert work_dir.read_text() == f"{MUTABLE}/.strata-opt-workdir\n"
    assert _leftovers(root) == {"opt", "usr", ".strata-opt-workdir", ".strata-usr-workdir"}
    assert _writable(root / "opt/after")
    assert len([m for m in mounts_under(root) if m == str(root / "opt")]) == 1

    _sysext(f"--root={root}", f"--mutable={mode}", "refresh")  # and back again
    assert work_dir.read_text() == f"{MUTABLE}/.systemd-opt-workdir\n"
    assert _leftovers(root) == {"opt", "usr", ".systemd-opt-workdir", ".systemd-usr-workdir"}
    assert (root / "opt/before").exists() and (root / "opt/after").exists()
    assert _writable(root / "opt/third")

    _sysext(f"--root={root}", "unmerge")
    assert _leftovers(root) == {"opt", "usr"}
    assert sorted(os.listdir(base / "opt")) == ["after", "before", "third"]
    assert mounts_under(root) == []


@isolated
def test_mutable_refresh_unmerge_first(tmp_path: Path) -> None:
    """--atomic=no takes systemd's way (unmerge, then attach): the new overlay is still built
    while the old one is live, so it takes the other workdir too; writes survive."""
    root = _root(tmp_path)
    _sysext(f"--root={root}", "--mutable=yes", "merge")
    assert _writable(root / "opt/before")
    _, err = _sysext(f"--root={root}", "--mutable=yes", "--atomic=no", "refresh")
    assert "by unmerging first (--atomic=no)" in err
    assert (root / "opt/before").exists() and _writable(root / "opt/after")
    assert _leftovers(root) == {"opt", "usr", ".strata-opt-workdir", ".strata-usr-workdir"}
    assert (root / "opt/.systemd-sysext/work_dir").read_text() == \
        f"{MUTABLE}/.strata-opt-workdir\n"
    _sysext(f"--root={root}", "unmerge")
    assert _leftovers(root) == {"opt", "usr"}


@isolated
def test_refresh_from_mutable_to_read_only_removes_workdirs(tmp_path: Path) -> None:
    root = _root(tmp_path)
    _sysext(f"--root={root}", "--mutable=yes", "merge")
    assert _writable(root / "opt/kept")
    _sysext(f"--root={root}", "refresh")  # no --mutable: read-only now
    assert not _writable(root / "opt/x")
    assert not (root / "opt/kept").exists()  # the mutable layer is not part of a ro merge
    assert _leftovers(root) == {"opt", "usr"}
    _sysext(f"--root={root}", "unmerge")
    assert (root / MUTABLE / "opt/kept").exists()

