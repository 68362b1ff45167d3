"""Interoperation with systemd-sysext: a merge made by one tool is recognised, shown,
refreshed and undone by the other, and the tree is right after every step.

The bodies take the oracle as a parameter: in CI they run against the installed systemd-sysext
(252) in a private namespace; with STRATA_DIFF_257=1 the same bodies also run against
systemd 257 inside the peers namespace (development only, see tests/helpers.py).

systemd-sysext 252's `status --root=` finds the merge (is_our_mount_point() on the rooted
path) but then reads the marker *without* the root prefix and fails; its root-less status,
pointed at the scratch hierarchies with $SYSTEMD_SYSEXT_HIERARCHIES, shows it in full.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import (
    PEERS_257,
    PEERS_WORK,
    Oracle,
    install_ext,
    installed_oracle,
    isolated,
    make_root,
    marker_state,
    mounts_under,
    peers_enabled,
    prepare_for_systemd,
    run_in_peers,
    snapshot_tree,
    strata,
)

pytestmark = [pytest.mark.privileged, pytest.mark.oracle]

Body = Callable[[Path, Oracle], None]


# --- a root with three extensions, and what its merged tree looks like ----------------------


def build(base: Path, *, prepare: bool) -> Path:
    work = base / "base"
    work.mkdir()
    if prepare:
        prepare_for_systemd(work)
    root = make_root(work)
    install_ext(root, "a", {"usr/bin/a": "a\n", "usr/bin/conflict": "from a\n",
                            "opt/a/file": "a opt\n"})
    install_ext(root, "b", {"usr/bin/b": "b\n", "usr/bin/conflict": "from b\n"}, fmt="erofs")
    install_ext(root, "c", {"usr/lib/c.so": "c\n", "usr/bin/conflict": "from c\n"},
                fmt="squashfs", where="run/extensions")
    return root


def swap_extensions(root: Path) -> None:
    """b goes, d (with /opt content) comes: the set a, c, d."""
    (root / "var/lib/extensions/b.raw").unlink()
    install_ext(root, "d", {"usr/bin/d": "d\n", "opt/d/file": "d opt\n",
                            "usr/bin/conflict": "from d\n"}, fmt="erofs")


#: files each extension adds (paths below the root)
FILES = {"a": ("usr/bin/a", "opt/a/file"), "b": ("usr/bin/b",), "c": ("usr/lib/c.so",),
         "d": ("usr/bin/d", "opt/d/file")}


def assert_merged(root: Path, names: list[str]) -> None:
    """Exactly `names` are merged into /usr and /opt, on top of the host's files, each
    hierarchy one overlay with a valid marker."""
    for name, paths in FILES.items():
        for rel in paths:
            assert (root / rel).exists() == (name in names), (rel, names)
    assert (root / "usr/bin/conflict").read_text() == f"from {names[-1]}\n"
    assert (root / "usr/bin/host-tool").read_text() == "host\n"
    assert (root / "opt/host/file").read_text() == "host opt\n"
    listing = "".join(n + "\n" for n in names)
    for h in ("usr", "opt"):
        assert marker_state(root / h) == (listing, True), h
    assert sorted(mounts_under(root)) == [str(root / "opt"), str(root / "usr")]
    with pytest.raises(OSError) as e:
        (root / "usr/bin/new").write_text("x")
    assert e.value.errno == errno.EROFS


def assert_unmerged(root: Path, pristine: dict[str, Any]) -> None:
    assert mounts_under(root) == []
    assert snapshot_tree(root) == pristine


def status_rootless(tool: Callable[..., Any], root: Path) -> list[dict[str, Any]]:
    """status --json=short without --root, pointed at the scratch hierarchies."""
    env = {"SYSTEMD_SYSEXT_HIERARCHIES": f"{root}/usr:{root}/opt"}
    r = tool("status", "--json=short", env=env)
    assert r.returncode == 0, r.stderr
    data: list[dict[str, Any]] = json.loads(r.stdout)
    return data


def strata_sysext(*args: str, env: dict[str, str] | None = None) -> Any:
    return strata("sysext", *args, env=env)


def status_rooted(root: Path) -> dict[str, Any]:
    r = strata("sysext", "status", "--json=short", f"--root={root}")
    assert r.returncode == 0, r.stderr
    return {row["hierarchy"]: row["extensions"] for row in json.loads(r.stdout)}


def check_systemd_sees_strata_merge(root: Path, oracle: Oracle) -> None:
    """systemd recognises a merge made by strata as its own."""
    rooted = oracle("status", "--json=short", f"--root={root}")
    if oracle.merged_status_comparable:
        assert rooted.returncode == 0, rooted.stderr
        shown = {row["hierarchy"]: row["extensions"] for row in json.loads(rooted.stdout)}
        assert shown == status_rooted(root)
    else:
        # is_our_mount_point() said yes, then the unprefixed marker path was read
        assert rooted.returncode == 1
        assert "Failed to open '/usr/.systemd-sysext/extensions'" in rooted.stderr \
            or "Failed to open '/opt/.systemd-sysext/extensions'" in rooted.stderr, rooted.stderr
    theirs = status_rootless(oracle, root)
    assert theirs == status_rootless(strata_sysext, root)  # hierarchies, names and since
    assert all(isinstance(row["since"], int) for row in theirs)


# --- the scenarios ---------------------------------------------------------------------------


def systemd_unmerges_strata_merge(base: Path, oracle: Oracle, *, prepare: bool = True) -> None:
    root = build(base, prepare=prepare)
    pristine = snapshot_tree(root)
    r = strata("sysext", "merge", f"--root={root}")
    assert r.returncode == 0, r.stderr
    assert_merged(root, ["a", "b", "c"])
    check_systemd_sees_strata_merge(root, oracle)

    again = oracle("merge", f"--root={root}")
    assert again.returncode == 1
    assert "Hierarchy '/usr' is already merged." in again.stderr \
        or "Hierarchy '/opt' is already merged." in again.stderr
    assert_merged(root, ["a", "b", "c"])

    u = oracle("unmerge", f"--root={root}")
    assert u.returncode == 0, u.stderr
    assert f"Unmerged '{root}/usr'." in u.stderr and f"Unmerged '{root}/opt'." in u.stderr
    assert_unmerged(root, pristine)
    assert status_rooted(root) == {"/opt": "none", "/usr": "none"}


def strata_unmerges_systemd_merge(base: Path, oracle: Oracle, *, prepare: bool = True) -> None:
    root = build(base, prepare=prepare)
    pristine = snapshot_tree(root)
    r = oracle("merge", f"--root={root}")
    assert r.returncode == 0, r.stderr
    assert_merged(root, ["a", "b", "c"])

    assert status_rooted(root) == {"/opt": ["a", "b", "c"], "/usr": ["a", "b", "c"]}
    s = strata("sysext", "status", "--json=short", f"--root={root}")
    since = {row["hierarchy"]: row["since"] for row in json.loads(s.stdout)}
    for h in ("usr", "opt"):  # when the merge was made: the merged root's mtime
        assert since[f"/{h}"] == os.stat(root / h).st_mtime_ns // 1000
    assert status_rootless(strata_sysext, root) == status_rootless(oracle, root)

    again = strata("sysext", "merge", f"--root={root}")
    assert again.returncode == 1
    assert "Hierarchy '/usr' is already merged." in again.stderr
    assert_merged(root, ["a", "b", "c"])

    u = strata("sysext", "unmerge", f"--root={root}")
    assert u.returncode == 0, u.stderr
    assert f"Unmerged '{root}/usr'." in u.stderr and f"Unmerged '{root}/opt'." in u.stderr
    assert_unmerged(root, pristine)
    assert oracle("unmerge", f"--root={root}").returncode == 0  # nothing left for it either
    assert_unmerged(root, pristine)


def strata_refreshes_systemd_merge(base: Path, oracle: Oracle, *, prepare: bool = True) -> None:
    root = build(base, prepare=prepare)
    pristine = snapshot_tree(root)
    assert oracle("merge", f"--root={root}").returncode == 0
    swap_extensions(root)
    for atomic in ("--atomic=yes", "--atomic=no"):
        r = strata("sysext", "refresh", f"--root={root}", atomic)
        assert r.returncode == 0, r.stderr
        # the old overlay is gone, not stacked beneath: one mount per hierarchy
        assert_merged(root, ["a", "c", "d"])
    check_systemd_sees_strata_merge(root, oracle)
    u = oracle("unmerge", f"--root={root}")
    assert u.returncode == 0, u.stderr
    assert_unmerged(root, pristine)


def systemd_refreshes_strata_merge(base: Path, oracle: Oracle, *, prepare: bool = True) -> None:
    root = build(base, prepare=prepare)
    pristine = snapshot_tree(root)
    assert strata("sysext", "merge", f"--root={root}").returncode == 0
    swap_extensions(root)
    r = oracle("refresh", f"--root={root}")
    assert r.returncode == 0, r.stderr
    assert_merged(root, ["a", "c", "d"])
    assert status_rooted(root) == {"/opt": ["a", "c", "d"], "/usr": ["a", "c", "d"]}

    # down to one extension without /opt content: systemd's refresh leaves /opt unmerged
    (root / "var/lib/extensions/a").rename(root / "a-gone")
    (root / "var/lib/extensions/d.raw").unlink()
    r = oracle("refresh", f"--root={root}")
    assert r.returncode == 0, r.stderr
    assert sorted(mounts_under(root)) == [str(root / "usr")]
    assert status_rooted(root) == {"/opt": "none", "/usr": ["c"]}
    r = strata("sysext", "refresh", f"--root={root}")
    assert r.returncode == 0, r.stderr
    assert sorted(mounts_under(root)) == [str(root / "usr")]
    assert (root / "usr/lib/c.so").read_text() == "c\n"

    (root / "run/extensions/c.raw").unlink()  # nothing left: refresh unmerges
    r = strata("sysext", "refresh", f"--root={root}")
    assert r.returncode == 0, r.stderr
    assert_unmerged(root, pristine)


def systemd_unmerges_strata_mutable_merge(base: Path, oracle: Oracle, *,
                                          prepare: bool = True) -> None:
    """A writable (ephemeral) strata merge has a read-only bind mount on its marker; systemd's
    unmerge takes the whole tree down."""
    root = build(base, prepare=prepare)
    pristine = snapshot_tree(root)
    r = strata("sysext", "merge", f"--root={root}", "--mutable=ephemeral")
    assert r.returncode == 0, r.stderr
    (root / "usr/bin/scratch").write_text("gone after unmerge\n")
    with pytest.raises(OSError) as e:
        (root / "usr/.systemd-sysext/extensions").write_text("x")
    assert e.value.errno == errno.EROFS
    assert marker_state(root / "usr") == ("a\nb\nc\n", True)
    u = oracle("unmerge", f"--root={root}")
    assert u.returncode == 0, u.stderr
    assert_unmerged(root, pristine)


def mutable_merges_both_ways(base: Path, oracle: Oracle, *, prepare: bool = True) -> None:
    """--mutable=yes (v256+, so 257 only): each tool unmerges the other's writable merge and
    removes the workdir the marker's work_dir names, keeping what was written."""
    root = build(base, prepare=prepare)
    mutable = root / "var/lib/extensions.mutable"
    workdir = mutable / ".systemd-usr-workdir"

    r = strata("sysext", "merge", f"--root={root}", "--mutable=yes")
    assert r.returncode == 0, r.stderr
    (root / "usr/bin/written").write_text("by strata\n")
    assert (mutable / "usr/bin/written").read_text() == "by strata\n"
    # relative to the root, as v257 writes it
    assert (root / "usr/.systemd-sysext/work_dir").read_text() == \
        "var/lib/extensions.mutable/.systemd-usr-workdir\n"
    assert workdir.is_dir()
    u = oracle("unmerge", f"--root={root}")
    assert u.returncode == 0, u.stderr
    assert mounts_under(root) == [] and not workdir.exists()
    assert not (root / "usr/bin/written").exists()

    r = oracle("merge", f"--root={root}", "--mutable=yes")
    assert r.returncode == 0, r.stderr
    assert (root / "usr/bin/written").read_text() == "by strata\n"  # the upper dir is reused
    swap_extensions(root)
    # strata refreshes systemd's writable merge: the new overlay may not share the live
    # workdir, so it uses the other name and records it in work_dir
    r = strata("sysext", "refresh", f"--root={root}", "--mutable=yes")
    assert r.returncode == 0, r.stderr
    assert (root / "usr/bin/d").read_text() == "d\n"
    wd = (root / "usr/.systemd-sysext/work_dir").read_text().strip()
    assert (root / wd.lstrip("/")).is_dir()
    check_systemd_sees_strata_merge(root, oracle)
    u = oracle("unmerge", f"--root={root}")
    assert u.returncode == 0, u.stderr
    assert mounts_under(root) == []
    assert not (root / wd.lstrip("/")).exists() and not workdir.exists()
    assert (mutable / "usr/bin/written").read_text() == "by strata\n"


#: bodies only systemd >= 256 can run
BODIES_257 = {f.__name__: f for f in (mutable_merges_both_ways,)}

BODIES: dict[str, Callable[..., None]] = {f.__name__: f for f in (
    systemd_unmerges_strata_merge,
    strata_unmerges_systemd_merge,
    strata_refreshes_systemd_merge,
    systemd_refreshes_strata_merge,
    systemd_unmerges_strata_mutable_merge,
)}


@isolated
def test_systemd_sees_and_unmerges_a_strata_merge(tmp_path: Path) -> None:
    systemd_unmerges_strata_merge(tmp_path, installed_oracle())


@isolated
def test_strata_sees_and_unmerges_a_systemd_merge(tmp_path: Path) -> None:
    strata_unmerges_systemd_merge(tmp_path, installed_oracle())


@isolated
def test_strata_refreshes_a_systemd_merge(tmp_path: Path) -> None:
    strata_refreshes_systemd_merge(tmp_path, installed_oracle())


@isolated
def test_systemd_refreshes_a_strata_merge(tmp_path: Path) -> None:
    systemd_refreshes_strata_merge(tmp_path, installed_oracle())


@isolated
def test_systemd_unmerges_a_mutable_strata_merge(tmp_path: Path) -> None:
    systemd_unmerges_strata_mutable_merge(tmp_path, installed_oracle())


@pytest.mark.peers257
@pytest.mark.parametrize("body", sorted([*BODIES, *BODIES_257]) if peers_enabled()
                         else ["disabled"])
def test_interop_with_systemd_257(body: str) -> None:
    r = run_in_peers("tests.kernel.test_interop", body)
    assert r.returncode == 0, r.stdout + r.stderr


def main(argv: list[str]) -> int:
    """Inside the peers namespace: run the named bodies against systemd 257."""
    PEERS_WORK.mkdir(parents=True, exist_ok=True)
    for name in argv:
        base = Path(tempfile.mkdtemp(prefix="strata-interop-", dir=PEERS_WORK))
        try:
            {**BODIES, **BODIES_257}[name](base, PEERS_257, prepare=False)
        finally:
            # never leave a merge behind in the shared namespace
            strata("sysext", "unmerge", f"--root={base / 'base/root'}")
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
