"""Benchmark: `strata build` against bare mkfs.erofs on the same staged tree, and image sizes.

    .venv/bin/python bench/build.py [--tree DIR] [--rounds N] [--no-sizes]

One run, on a copy of DIR (default /usr/lib/python3.11: a few thousand files, text and ELF):

- build time: `strata build` (the whole command: start-up, staging, normalising, digest,
  mkfs, sha256) against the bare `mkfs.erofs` command the build ran, with the same options,
  on the tree the build staged (kept with --keep-staging). Goal: <= 1.2x. The bare command's
  image must be byte-identical to strata's, which also checks that nothing but the options
  decides the output;
- reproducibility: every round's image has the same sha256;
- image size of that tree: strata's default (lz4hc), sysext-bakery's erofs options
  (-zlz4hc,12 -C65536 -Efragments,ztailpacking; erofs-utils 1.5 ignores -Efragments and calls
  ztailpacking experimental), squashfs with gzip (sysext-bakery's and mksquashfs's default)
  and with zstd, and uncompressed erofs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent.parent
STRATA = ([str(HERE / ".venv/bin/strata")] if (HERE / ".venv/bin/strata").exists()
          else [sys.executable, "-m", "strata"])
UUID = "00000000-0000-4000-8000-000000000000"


def timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, env=env)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return dt, proc.stdout


def sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", default="/usr/lib/python3.11")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--no-sizes", action="store_true", help="skip the (slow) size comparison")
    args = ap.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    # as installed (scripts/setup.sh): byte-compiled, or every run compiles the build modules
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(HERE / "src")], check=True,
                   capture_output=True)

    with tempfile.TemporaryDirectory(prefix="strata-bench-build-") as tmp:
        base = Path(tmp)
        src = base / "src"
        shutil.copytree(args.tree, src, symlinks=True)
        spec = base / "bench.yaml"
        spec.write_text(f"name: bench\nversion: '1'\nsources:\n  - tree: {src}\n"
                        "    to: /usr/lib/bench\n")

        # rounds alternate strata and the bare command, so that drift in the machine's load
        # hits both alike; the first round of each warms the page cache and is not counted
        strata_times, bare_times, digests = [], [], set()
        bare = base / "bare.raw"
        identical = True
        report: dict[str, Any] = {}
        for i in range(args.rounds + 1):
            out = base / f"out{i}"
            dt, stdout = timed([*STRATA, "build", str(spec), "-o", str(out), "--json=short",
                                "--keep-staging"], env)
            report = json.loads(stdout)
            output = report["outputs"][0]
            image = Path(output["path"])
            digests.add(sha256(image))
            command: list[str] = list(output["command"])
            bt, _ = timed([str(bare) if a == str(image) else a for a in command], env)
            identical = identical and sha256(bare) == sha256(image)
            if i:
                strata_times.append(dt)
                bare_times.append(bt)
            if i < args.rounds:
                shutil.rmtree(report["staging"])
                shutil.rmtree(out)
        tree = Path(report["staging"]) / "sysext"

        s, b = statistics.median(strata_times), statistics.median(bare_times)
        print(f"tree: {args.tree} ({output['files']} files, {output['directories']} "
              f"directories, {output['symlinks']} symlinks)")
        print(f"\nbuild time, median of {args.rounds} (wall, start-up included):")
        print(f"  strata build          {s:7.3f} s")
        print(f"  bare {command[0]:<16} {b:7.3f} s   ({' '.join(command[1:-2])})")
        print(f"  ratio                 {s / b:7.2f}x   goal <= 1.2x "
              f"{'ok' if s / b <= 1.2 else 'MISSED'}")
        print(f"  same bytes as the bare command: {'yes' if identical else 'NO'}; "
              f"{len(digests)} distinct sha256 over {args.rounds + 1} builds")

        if args.no_sizes:
            shutil.rmtree(report["staging"])
            return 0 if identical and len(digests) == 1 else 1
        print("\nimage size of the same staged tree:")
        variants: list[tuple[str, list[str]]] = [
            ("strata default: erofs -zlz4hc", command),
            ("sysext-bakery: erofs -zlz4hc,12 -C65536 -Efragments,ztailpacking",
             ["mkfs.erofs", "-zlz4hc,12", "-C65536", "-Efragments,ztailpacking", "-T0", "-U",
              UUID, "--all-root", "-x-1", "--quiet", "OUT", str(tree)]),
            ("erofs -zlz4hc,12 -C65536",
             ["mkfs.erofs", "-zlz4hc,12", "-C65536", "-T0", "-U", UUID, "--all-root", "-x-1",
              "--quiet", "OUT", str(tree)]),
            ("squashfs gzip (sysext-bakery, mksquashfs default)",
             ["mksquashfs", str(tree), "OUT", "-noappend", "-all-root", "-mkfs-time", "0",
              "-all-time", "0", "-comp", "gzip", "-no-xattrs", "-no-progress", "-quiet"]),
            ("squashfs zstd",
             ["mksquashfs", str(tree), "OUT", "-noappend", "-all-root", "-mkfs-time", "0",
              "-all-time", "0", "-comp", "zstd", "-no-xattrs", "-no-progress", "-quiet"]),
            ("erofs uncompressed",
             ["mkfs.erofs", "-T0", "-U", UUID, "--all-root", "-x-1", "--quiet", "OUT",
              str(tree)]),
        ]
        sizes = {}
        for label, argv in variants:
            out = base / "variant.img"
            out.unlink(missing_ok=True)
            real = [str(out) if a in ("OUT", str(image)) else a for a in argv]
            dt, _ = timed(real, env)
            sizes[label] = out.stat().st_size
            ref = sizes[variants[0][0]]
            print(f"  {label:<66} {mib(sizes[label]):>10}  {sizes[label] / ref:5.2f}x  "
                  f"{dt:6.2f} s")
        shutil.rmtree(report["staging"])
    return 0 if identical and len(digests) == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
