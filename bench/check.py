"""Benchmark: `strata check` on an image holding 500 ELF files.

    .venv/bin/python bench/check.py [--files N] [--rounds N]

Copies N ELF programs and libraries from this machine (/usr/bin, then the libraries they use)
into a sysext tree, builds an erofs image of it (when mkfs.erofs is there), and times the
whole command (start-up included, median of the rounds):

- the directory, without a host;
- the directory against this machine (--host /): every DT_NEEDED looked up, glibc compared,
  every file compared with the host's copy (they are identical: the worst case for reading);
- the erofs image against this machine (every ELF file decompressed from the image).

No privileges needed; nothing outside a temporary directory is written.
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
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
STRATA = ([str(HERE / ".venv/bin/strata")] if (HERE / ".venv/bin/strata").exists()
          else [sys.executable, "-m", "strata"])


def elf_files(limit: int) -> list[str]:
    """Up to `limit` ELF regular files of this machine: programs first, then libraries."""
    out: list[str] = []
    for d in ("/usr/bin", "/usr/sbin", "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu",
              "/usr/lib64", "/usr/lib"):
        if not os.path.isdir(d):
            continue
        for name in sorted(os.listdir(d)):
            path = os.path.join(d, name)
            if os.path.islink(path) or not os.path.isfile(path):
                continue
            try:
                with open(path, "rb") as f:
                    if f.read(4) != b"\x7fELF":
                        continue
            except OSError:
                continue
            out.append(path)
            if len(out) >= limit:
                return out
    return out


def build_tree(base: Path, files: list[str]) -> Path:
    tree = base / "bench"
    rel = tree / "usr/lib/extension-release.d"
    rel.mkdir(parents=True)
    from strata.arch import native

    (rel / "extension-release.bench").write_text(f"ID=_any\nARCHITECTURE={native()}\n")
    for src in files:
        dest = tree / src.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest)
    return tree


def timed(argv: list[str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    dt = time.perf_counter() - t0
    if proc.returncode not in (0, 1, 2):
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return dt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    files = elf_files(args.files)
    with tempfile.TemporaryDirectory(prefix="strata-bench-check-") as tmp:
        base = Path(tmp)
        tree = build_tree(base, files)
        total = sum(f.stat().st_size for f in tree.rglob("*") if f.is_file())
        print(f"{len(files)} ELF files, {total / 1e6:.0f} MB, {os.cpu_count()} CPUs")
        cases = [("directory, no host", [*STRATA, "check", str(tree)]),
                 ("directory, --host /", [*STRATA, "check", "--host", "/", str(tree)])]
        if shutil.which("mkfs.erofs"):
            image = base / "bench.raw"
            subprocess.run(["mkfs.erofs", "-zlz4hc", "--all-root", str(image), str(tree)],
                           check=True, capture_output=True)
            cases.append(("erofs lz4hc, --host /", [*STRATA, "check", "--host", "/",
                                                     str(image)]))
        for label, argv in cases:
            times = [timed(argv) for _ in range(args.rounds)]
            print(f"{label:<24} median {statistics.median(times):6.2f} s  "
                  f"(min {min(times):.2f}, max {max(times):.2f})")
        summary = subprocess.run([*STRATA, "check", "--host", "/", str(tree)],
                                 capture_output=True, text=True, check=False)
        print("last line:", summary.stdout.strip().splitlines()[-1])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
