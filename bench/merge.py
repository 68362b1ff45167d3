"""Benchmark: strata vs systemd-sysext on the same images, measured in the same run.

    sudo .venv/bin/python bench/merge.py [--rounds N]

Everything runs in a private mount namespace against scratch roots in /tmp. Prints, for each
scenario, the median wall time of both tools and the ratio strata / systemd-sysext:

- merge of 10 erofs .raw images (goal: <= 0.3x)
- merge of 50 directory extensions (goal: <= 1.5x)
- refresh of the 10 images (strata atomic vs systemd's unmerge + merge)
- status (goal: strata under 60 ms wall)
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
STRATA = ([str(HERE / ".venv/bin/strata")] if (HERE / ".venv/bin/strata").exists()
          else [sys.executable, "-m", "strata"]) + ["sysext"]
SYSTEMD = shutil.which("systemd-sysext") or "/usr/bin/systemd-sysext"


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def timed(argv: list[str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return dt


def make_root(base: Path) -> Path:
    root = base / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/os-release").write_text("ID=debian\nVERSION_ID=12\n")
    for d in ("usr/bin", "opt", "run", "var/lib/extensions"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "usr/bin/host").write_text("host\n")
    # systemd-sysext's child relies on propagation to bring its mounts back
    sh("mount", "--bind", str(root), str(root))
    sh("mount", "--make-shared", str(root))
    return root


def ext_tree(base: Path, name: str) -> Path:
    tree = base / "trees" / name
    rel = tree / "usr/lib/extension-release.d"
    rel.mkdir(parents=True)
    (rel / f"extension-release.{name}").write_text("ID=_any\n")
    (tree / "usr/bin").mkdir(parents=True)
    for i in range(20):
        (tree / "usr/bin" / f"{name}-{i}").write_text(f"{name} {i}\n" * 50)
    return tree


def populate(base: Path, root: Path, *, images: int, dirs: int) -> None:
    dest = root / "var/lib/extensions"
    for i in range(images):
        name = f"img{i:02d}"
        sh("mkfs.erofs", "-zlz4hc", "-T0", "--all-root", str(dest / f"{name}.raw"),
           str(ext_tree(base, name)))
    for i in range(dirs):
        name = f"dir{i:02d}"
        shutil.copytree(ext_tree(base, name), dest / name)


def cycle(tool: list[str], root: Path, verb: str) -> float:
    """Time `verb`, then put the root back (unmerge) untimed."""
    dt = timed([*tool, verb, f"--root={root}"])
    if verb in ("merge", "refresh"):
        timed([*tool, "unmerge", f"--root={root}"])
    return dt


def compare(label: str, rounds: int, fn: Callable[[list[str]], float],
            goal: str = "") -> None:
    ours = [fn(STRATA) for _ in range(rounds)]
    theirs = [fn([SYSTEMD]) for _ in range(rounds)]
    a, b = statistics.median(ours), statistics.median(theirs)
    print(f"{label:34s} strata {a * 1000:8.1f} ms   systemd-sysext {b * 1000:8.1f} ms   "
          f"ratio {a / b:5.2f}x {goal}", flush=True)


def scenario(rounds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="strata-bench-") as tmp:
        base = Path(tmp)
        r10 = make_root(base / "images")
        populate(base / "images", r10, images=10, dirs=0)
        compare("merge, 10 erofs images", rounds, lambda t: cycle(t, r10, "merge"),
                "(goal <= 0.30x)")

        def refresh(tool: list[str]) -> float:
            timed([*tool, "merge", f"--root={r10}"])
            return cycle(tool, r10, "refresh")

        compare("refresh, 10 erofs images", rounds, refresh)
        # systemd-sysext 252 cannot show the status of a merged --root (it reads the marker
        # without the root prefix), so the tools are compared on the unmerged root, and strata
        # alone on the merged one.
        compare("status (not merged)", rounds, lambda t: timed([*t, "status", f"--root={r10}"]),
                "(goal: strata < 60 ms)")
        timed([*STRATA, "merge", f"--root={r10}"])
        merged = statistics.median(timed([*STRATA, "status", f"--root={r10}"])
                                   for _ in range(rounds))
        print(f"{'status (merged, 10 images)':34s} strata {merged * 1000:8.1f} ms", flush=True)
        timed([*STRATA, "unmerge", f"--root={r10}"])

        r50 = make_root(base / "dirs")
        populate(base / "dirs", r50, images=0, dirs=50)
        compare("merge, 50 directory extensions", rounds, lambda t: cycle(t, r50, "merge"),
                "(goal <= 1.50x)")
        compare("list, 50 directory extensions", rounds,
                lambda t: timed([*t, "list", f"--root={r50}"]))
        for r in (r10, r50):
            sh("umount", "-R", str(r))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/merge.py: must run as root (it mounts, in a private namespace)")
    if os.environ.get("STRATA_BENCH_INNER") != "1":
        env = {**os.environ, "STRATA_BENCH_INNER": "1"}
        os.execvpe("unshare", ["unshare", "-m", "--propagation", "private", sys.executable,
                               __file__, f"--rounds={args.rounds}"], env)
    sh("mount", "-t", "tmpfs", "tmpfs", "/run")  # systemd-sysext's workspace, private copy
    print(f"kernel {os.uname().release}; {rounds_note(args.rounds)}", flush=True)
    scenario(args.rounds)


def rounds_note(rounds: int) -> str:
    return f"median of {rounds} rounds per tool, wall time incl. process start-up"


if __name__ == "__main__":
    main()
