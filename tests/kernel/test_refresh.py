"""Atomic refresh, crash safety and serialisation of the merge engine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from strata.engine import ops
from strata.engine.settings import resolve
from strata.kernel import mountinfo
from strata.model import ExtClass
from tests.helpers import ext_tree, install_ext, isolated, make_root, mkfs, mounts_under, strata

pytestmark = pytest.mark.privileged

READER = r"""
import os, sys
path, expect, stop, host = sys.argv[1], set(sys.argv[2].split(",")), sys.argv[3], sys.argv[4]
reads = misses = 0
while not os.path.exists(stop):
    for p in (path, host):
        reads += 1
        try:
            with open(p) as f:
                data = f.read()
        except OSError:
            misses += 1
            continue
        if p == path and data not in expect:
            misses += 1
print(reads, misses)
"""


def _stack(target: Path) -> list[str]:
    return [e.source for e in mountinfo.stack_at(mountinfo.read(), str(target))]


@isolated
def test_200_refreshes_without_a_miss(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    images = {}
    for version in ("A", "B"):
        tree = ext_tree(tmp_path / version, "data", {"usr/share/data/file": version},
                        {"ID": "_any"})
        images[version] = mkfs(tree, tmp_path / f"data-{version}.raw")
    live = root / "var/lib/extensions/data.raw"
    live.parent.mkdir(parents=True, exist_ok=True)
    os.link(images["A"], live)
    settings = resolve(ExtClass.SYSEXT, {}, root=str(root))
    assert ops.merge(settings, {}).merged == ("data",)
    target = root / "usr/share/data/file"
    stop = tmp_path / "stop"
    reader = subprocess.Popen([sys.executable, "-c", READER, str(target), "A,B", str(stop),
                               str(root / "usr/bin/host-tool")],
                              stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.2)
        for i in range(200):
            nxt = images["B" if i % 2 == 0 else "A"]
            os.link(nxt, tmp_path / "next.raw")
            os.rename(tmp_path / "next.raw", live)
            ops.refresh(settings, {})
    finally:
        stop.touch()
        out, _ = reader.communicate(timeout=30)
    reads, misses = map(int, out.split())
    assert reads > 1000, f"the reader only got {reads} reads in"
    assert misses == 0, f"{misses} of {reads} reads missed during 200 refreshes"
    assert target.read_text() == "A"  # 200 swaps: back to the first version
    assert _stack(root / "usr") == ["sysext"]  # exactly one overlay left, nothing stacked


# Where a crash can happen, and whether the command itself dies (parent) or reports the
# death of its namespace worker (child).
FAULTS = [
    ("planned", "parent"),
    ("worker-image-mounted", "worker"),
    ("worker-unmerged", "worker"),
    ("worker-built", "worker"),
    ("built", "parent"),
    ("refresh-beneath", "parent"),
    ("refresh-old-detached", "parent"),
    ("attached", "parent"),
]


@pytest.mark.parametrize(("fault", "where"), FAULTS)
@isolated
def test_crash_leaves_old_or_new_state(tmp_path: Path, fault: str, where: str) -> None:
    root = make_root(tmp_path)
    install_ext(root, "v1", {"usr/bin/v1": "1", "opt/v1/f": "1"}, fmt="erofs")
    assert strata("sysext", "merge", f"--root={root}").returncode == 0
    install_ext(root, "v2", {"usr/bin/v2": "2"}, fmt="squashfs")
    old, new = ["v1"], ["v1", "v2"]

    r = strata("sysext", "refresh", f"--root={root}", env={"STRATA_FAULT": fault})
    if where == "parent":
        assert r.returncode == -9, (fault, r.returncode, r.stderr)
    else:
        assert r.returncode == 1 and "killed by signal 9" in r.stderr, r.stderr

    # Whatever is visible is one whole state, per hierarchy.
    seen = json.loads(strata("sysext", "status", f"--root={root}", "--json=short").stdout)
    usr = next(d for d in seen if d["hierarchy"] == "/usr")
    assert usr["extensions"] in (old, new), (fault, seen)
    assert (root / "usr/bin/v1").read_text() == "1"
    assert (root / "usr/bin/v2").exists() == (usr["extensions"] == new)
    assert (root / "usr/bin/host-tool").read_text() == "host\n"

    # The next command repairs everything: one overlay per hierarchy, the new state.
    r = strata("sysext", "refresh", f"--root={root}")
    assert r.returncode == 0, r.stderr
    assert _stack(root / "usr") == ["sysext"]
    assert _stack(root / "opt") == ["sysext"]
    assert (root / "usr/bin/v2").read_text() == "2"
    assert strata("sysext", "unmerge", f"--root={root}").returncode == 0
    assert mounts_under(root) == []


@pytest.mark.parametrize("fault", ["planned", "worker-built", "built", "attached"])
@isolated
def test_crash_during_first_merge(tmp_path: Path, fault: str) -> None:
    root = make_root(tmp_path)
    install_ext(root, "one", {"usr/bin/one": "1"}, fmt="erofs")
    install_ext(root, "two", {"opt/two/f": "2"})
    r = strata("sysext", "merge", f"--root={root}", env={"STRATA_FAULT": fault})
    assert r.returncode != 0
    if fault != "attached":
        assert mounts_under(root) == []  # nothing half-done before the attach step
    r = strata("sysext", "refresh", f"--root={root}")
    assert r.returncode == 0, r.stderr
    assert (root / "usr/bin/one").read_text() == "1"
    assert (root / "opt/two/f").read_text() == "2"
    assert _stack(root / "usr") == ["sysext"] and _stack(root / "opt") == ["sysext"]


@isolated
def test_concurrent_commands_are_serialised(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    install_ext(root, "x", {"usr/bin/x": "x"})
    env = {**os.environ, "STRATA_FAULT_PAUSE": "planned=1.5",
           "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    first = subprocess.Popen([sys.executable, "-m", "strata", "sysext", "merge",
                              f"--root={root}"], env=env, stderr=subprocess.PIPE, text=True)
    time.sleep(0.7)  # the first one now holds the lock, paused before building
    second = strata("sysext", "merge", f"--root={root}")
    _, err1 = first.communicate(timeout=30)
    assert first.returncode == 0, err1
    assert "Waiting for another merge" in second.stderr
    # It waited, then saw the finished merge instead of racing it.
    assert second.returncode == 1 and "already merged" in second.stderr
    assert _stack(root / "usr") == ["sysext"]


@isolated
def test_non_atomic_refresh_says_so(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    install_ext(root, "x", {"usr/bin/x": "x"})
    assert strata("sysext", "merge", f"--root={root}").returncode == 0
    r = strata("sysext", "refresh", f"--root={root}", "--atomic=no")
    assert r.returncode == 0, r.stderr
    assert "briefly absent" in r.stderr
    r = strata("sysext", "refresh", f"--root={root}",
               env={"STRATA_KERNEL_DISABLE": "move-mount-beneath"})
    assert r.returncode == 0 and "MOVE_MOUNT_BENEATH" in r.stderr
    assert (root / "usr/bin/x").read_text() == "x"
    assert _stack(root / "usr") == ["sysext"]


@isolated
def test_refresh_under_shared_propagation(tmp_path: Path) -> None:
    """On systemd hosts "/" is shared; a hierarchy bind-mounted within the same peer group
    gets propagated copies of the overlay. Refresh must still be atomic and leave one merge."""
    from tests.helpers import make_shared, run

    root = make_root(tmp_path)
    install_ext(root, "a", {"opt/a/f": "a", "usr/bin/a": "a"}, fmt="erofs")
    make_shared(root)
    run("mount", "--bind", str(root / "opt"), str(root / "opt"))
    assert strata("sysext", "merge", f"--root={root}").returncode == 0
    stop = tmp_path / "stop"
    reader = subprocess.Popen([sys.executable, "-c", READER, str(root / "opt/a/f"), "a",
                               str(stop), str(root / "opt/host/file")],
                              stdout=subprocess.PIPE, text=True)
    try:
        for _ in range(10):
            r = strata("sysext", "refresh", f"--root={root}")
            assert r.returncode == 0, r.stderr
            assert "unmerging first" not in r.stderr
    finally:
        stop.touch()
        out, _ = reader.communicate(timeout=30)
    reads, misses = map(int, out.split())
    assert reads > 100 and misses == 0, (reads, misses)
    devs = {(e.major, e.minor) for e in mountinfo.read()
            if e.mountpoint == str(root / "opt") and e.fstype == "overlay"}
    assert len(devs) == 1  # propagated copies of one merge, nothing stale
    assert strata("sysext", "unmerge", f"--root={root}").returncode == 0
    left = [e.fstype for e in mountinfo.read() if e.mountpoint == str(root / "opt")]
    assert len(left) == 1 and left != ["overlay"]  # just the bind mount
