"""Benchmark: `strata update` of 10 extensions of 20 MB each, against a plain download plus
sha256 of the same files, in the same run (as root: the update merges).

    .venv/bin/python bench/update.py [--count 10] [--size-mb 20] [--rounds 5]

A scratch root in a private mount namespace has N extensions enabled and merged; a TUF
repository (strata publish) is served by `python -m http.server` on 127.0.0.1. Each round
publishes a new version of every extension and times, on the same files:

- strata: `strata update --root=R` (the whole command: start-up, TUF refresh, download,
  hashing while streaming, fsync, install, enable, atomic refresh of the merge, health
  check, retention);
- plain: `curl -o` of each file and `sha256sum` of all of them (what a shell script with no
  verification of freshness or signatures would do; no fsync).

Prints each round and the median ratio (goal: <= 1.5x).
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
from typing import Any

HERE = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(HERE / "src"), str(HERE)]
STRATA = ([str(HERE / ".venv/bin/strata")] if (HERE / ".venv/bin/strata").exists()
          else [sys.executable, "-m", "strata"])


def make_image(base: Path, name: str, version: str, size: int) -> Path:
    tree = base / "trees" / f"{name}-{version}"
    rel = tree / "usr/lib/extension-release.d"
    rel.mkdir(parents=True)
    (rel / f"extension-release.{name}").write_text("ID=_any\n")
    data = tree / "usr/share" / name
    data.mkdir(parents=True)
    (data / "version").write_text(version + "\n")
    with open(data / "blob", "wb") as f:
        f.write(os.urandom(size))  # incompressible: the image is as big
    out = base / "images" / f"{name}_{version}.raw"
    out.parent.mkdir(exist_ok=True)
    subprocess.run(["mkfs.erofs", "--quiet", "-T0", "--all-root", str(out), str(tree)],
                   check=True)
    shutil.rmtree(tree)
    return out


def run(argv: list[str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return elapsed


def bench(count: int, size: int, rounds: int, ext_health: bool) -> dict[str, Any]:
    from strata import log
    from strata.manage import ext
    from strata.update import publish, remote

    base = Path(tempfile.mkdtemp(prefix="strata-bench-update-", dir="/var/tmp"))
    try:
        root = base / "root"
        for d in ("etc", "usr/bin", "run", "var/lib/strata/extensions"):
            (root / d).mkdir(parents=True, exist_ok=True)
        (root / "etc/os-release").write_text("ID=debian\nVERSION_ID=12\n")
        (root / "usr/bin/true").write_text("")
        (root / "etc/strata").mkdir()
        (root / "etc/strata/strata.toml").write_text(
            f"[update]\next_health = {'true' if ext_health else 'false'}\n")
        repo = base / "repo"
        names = [f"ext{i:02d}" for i in range(count)]
        first = [make_image(base, n, "1", size) for n in names]
        log.setup("warning")
        publish.publish(str(repo), [str(p) for p in first])
        for p in first:
            shutil.copy(p, root / "var/lib/strata/extensions" / p.name)
            p.unlink()
        ext.enable(str(root), names)
        ext.merge(str(root), {})
        server = subprocess.Popen(
            [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "0",
             "--directory", str(repo)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True)
        try:
            assert server.stdout is not None
            line = server.stdout.readline()  # "Serving HTTP on 127.0.0.1 port N ..."
            port = int(line.split(" port ")[1].split()[0])
            url = f"http://127.0.0.1:{port}"
            remote.init(str(root), url, str(repo / "metadata/root.json"))
            plain_dir = base / "plain"
            results = []
            for r in range(rounds):
                version = str(r + 2)
                images = [make_image(base, n, version, size) for n in names]
                report = publish.publish(str(repo), [str(p) for p in images])
                for p in images:
                    p.unlink()
                urls = [f"{url}/targets/{p.sha256}.{p.target}" for p in report.published]
                shutil.rmtree(plain_dir, ignore_errors=True)
                plain_dir.mkdir()
                subprocess.run(["sync"], check=True)
                t_plain = run(["sh", "-c", " && ".join(
                    [f"curl -sSf -o {plain_dir}/{i}.raw {u}" for i, u in enumerate(urls)]
                    + [f"sha256sum {plain_dir}/*.raw >/dev/null"])])
                subprocess.run(["sync"], check=True)
                t_strata = run([*STRATA, "update", f"--root={root}"])
                got = (root / "usr/share" / names[0] / "version").read_text().strip()
                if got != version:
                    raise SystemExit(f"round {r}: merged version {got}, expected {version}")
                results.append((t_strata, t_plain))
                print(f"round {r + 1}: strata update {t_strata:.2f}s, plain {t_plain:.2f}s, "
                      f"ratio {t_strata / t_plain:.2f}x", flush=True)
            return {"results": results}
        finally:
            server.terminate()
            server.wait()
            ext.unmerge(str(root), {})
    finally:
        shutil.rmtree(base, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--count", type=int, default=10)
    ap.add_argument("--size-mb", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=5)
    ns = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/update.py needs root (the update merges, in a private namespace)")
        return 1
    from strata.kernel.ns import run_isolated

    print(f"{ns.count} extensions of {ns.size_mb} MB each, {ns.rounds} rounds")
    for ext_health in (True, False):
        what = ("default health check (merged + strata ext health)" if ext_health
                else "[update] ext_health = false (merged check only)")
        print(f"-- {what}", flush=True)
        out = run_isolated(lambda e=ext_health: bench(ns.count, ns.size_mb * 1_000_000,
                                                      ns.rounds, e))
        results = out["results"]
        strata_med = statistics.median(t for t, _ in results)
        plain_med = statistics.median(p for _, p in results)
        ratio = statistics.median(t / p for t, p in results)
        print(f"median: strata update {strata_med:.2f}s, plain download + sha256 "
              f"{plain_med:.2f}s, ratio {ratio:.2f}x (goal <= 1.5x) "
              f"{'ok' if ratio <= 1.5 else 'MISSED'}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
