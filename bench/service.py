"""Benchmark: `strata serve` under load, with 100 extensions enabled and merged.

    sudo .venv/bin/python bench/service.py [--seconds 10] [--calls 400]

Runs in a private mount namespace against a scratch root (100 erofs images, enabled for the
root's OS release and merged). The daemon is the real `strata serve` in a process of its own;
the clients are raw varlink connections from this process (asyncio; replies are not parsed
beyond telling an error from a result, so the figures are the daemon's). Prints:

- org.avocado.Extensions Status and List latency, p50/p99, with 1 client and with 50
  concurrent clients (goal: p99 <= 5 ms);
- idle RSS of the daemon, fresh and after the load (goal: <= 35 MB);
- calls per second over --seconds of load (Status and List alternating, 8 clients), and the
  number of error replies (must be 0);
- io.systemd.sysext.List (more) latency, strata's and systemd 257's own (systemd-sysext in
  varlink mode under systemd-socket-activate --accept, through ../shared/tools/peers.sh), as
  a ratio. Skipped, saying so, when peers.sh or its chroot is not there.
"""

from __future__ import annotations

import argparse
import asyncio
import json
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
PEERS = Path(os.environ.get("STRATA_PEERS_SH", HERE.parent / "shared/tools/peers.sh"))
PEERS_DIR = Path(os.environ.get("STRATA_PEERS", "/var/tmp/strata-peers"))
N_EXT = 100

Request = bytes


def call(method: str, params: dict[str, object] | None = None, *, more: bool = False
         ) -> Request:
    msg: dict[str, object] = {"method": method, "parameters": params or {}}
    if more:
        msg["more"] = True
    return json.dumps(msg).encode() + b"\0"


STATUS = call("org.avocado.Extensions.Status")
LIST = call("org.avocado.Extensions.List")
SYSEXT_LIST = call("io.systemd.sysext.List", more=True)


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


# --- the scratch root ------------------------------------------------------------------------


def make_root(base: Path) -> Path:
    root = base / "root"
    for d in ("etc", "usr/bin", "opt", "run", "var/lib/extensions", "var/lib/strata"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "etc/os-release").write_text("ID=debian\nVERSION_ID=12\n")
    (root / "usr/bin/host").write_text("host\n")
    trees = base / "trees"
    for i in range(N_EXT):
        name = f"ext{i:03d}"
        tree = trees / name
        (tree / "usr/lib/extension-release.d").mkdir(parents=True)
        (tree / f"usr/lib/extension-release.d/extension-release.{name}").write_text(
            "ID=_any\n")
        (tree / f"usr/share/{name}").mkdir(parents=True)
        for j in range(5):
            (tree / f"usr/share/{name}/f{j}").write_text(f"{name} {j}\n" * 20)
        sh("mkfs.erofs", "-zlz4hc", "-T0", "--all-root",
           str(root / f"var/lib/extensions/{name}.raw"), str(tree))
    shutil.rmtree(trees)
    return root


def enable_and_merge(root: Path) -> None:
    sys.path.insert(0, str(HERE / "src"))
    from strata import log
    from strata.manage import ext

    log.setup("warning")
    names = [f"ext{i:03d}" for i in range(N_EXT)]
    result = ext.enable(str(root), names)
    assert result.done == N_EXT, result
    outcome = ext.merge(str(root), dict(os.environ))
    assert len(outcome.merged) == N_EXT, outcome


# --- clients ---------------------------------------------------------------------------------


class Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, path: str) -> Conn:
        r, w = await asyncio.open_unix_connection(path, limit=64 << 20)
        return cls(r, w)

    async def roundtrip(self, request: Request) -> tuple[float, bool]:
        """Seconds until the last reply of `request`; whether any reply was an error."""
        t0 = time.perf_counter()
        self.writer.write(request)
        error = False
        while True:
            reply = await self.reader.readuntil(b"\0")
            error = error or reply.startswith(b'{"error"')
            # both servers write compact JSON; the key is first (strata) or last (systemd)
            if b'"continues":true' not in reply:
                return time.perf_counter() - t0, error

    def close(self) -> None:
        self.writer.close()


async def latencies(path: str, request: Request, clients: int, calls: int) -> list[float]:
    conns = [await Conn.open(path) for _ in range(clients)]
    out: list[float] = []
    errors = 0

    async def run(c: Conn) -> None:
        nonlocal errors
        for _ in range(calls):
            dt, err = await c.roundtrip(request)
            out.append(dt)
            errors += err

    for c in conns:  # warm up
        await c.roundtrip(request)
    await asyncio.gather(*(run(c) for c in conns))
    for c in conns:
        c.close()
    if errors:
        raise SystemExit(f"{errors} error replies")
    return out


async def fresh_connections(path: str, calls: int) -> list[float]:
    """io.systemd.sysext.List latency with a new connection for each call."""
    out = []
    for _ in range(calls):
        t0 = time.perf_counter()
        c = await Conn.open(path)
        await c.roundtrip(SYSEXT_LIST)
        out.append(time.perf_counter() - t0)
        c.close()
    return out


async def load(path: str, seconds: float, clients: int) -> tuple[int, int]:
    conns = [await Conn.open(path) for _ in range(clients)]
    deadline = time.perf_counter() + seconds
    done = errors = 0

    async def run(c: Conn, i: int) -> None:
        nonlocal done, errors
        while time.perf_counter() < deadline:
            _dt, err = await c.roundtrip(STATUS if i % 2 else LIST)
            done += 1
            errors += err
            i += 1

    await asyncio.gather(*(run(c, i) for i, c in enumerate(conns)))
    for c in conns:
        c.close()
    return done, errors


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def show(label: str, values: list[float], goal: str = "") -> None:
    print(f"{label:44s} p50 {pct(values, 50) * 1000:7.2f} ms   p99 {pct(values, 99) * 1000:7.2f}"
          f" ms   ({len(values)} calls) {goal}", flush=True)


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def wait_for(path: str, proc: subprocess.Popen[bytes] | None = None, tries: int = 1500
             ) -> None:
    import socket

    for _ in range(tries):
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(path)
            return
        except OSError:
            time.sleep(0.02)
    raise SystemExit(f"nothing listens on {path}")


# --- the systemd 257 comparison --------------------------------------------------------------


def peers_available() -> str | None:
    """None if systemd 257 can be run through peers.sh, else why not."""
    if not os.access(PEERS, os.X_OK):
        return f"{PEERS} not found"
    if not (PEERS_DIR / "trixie/usr/bin/systemd-sysext").exists():
        return f"no systemd 257 chroot in {PEERS_DIR} (run peers.sh setup)"
    return None


def systemd_list(root: Path, rounds: int) -> tuple[list[float], list[float]] | None:
    """systemd-sysext 257 serving io.systemd.sysext for `root`, one process per connection as
    systemd-sysext.socket (Accept=yes) runs it: List latency on one connection, and with a
    new connection (a new systemd-sysext) per call."""
    sock = PEERS_DIR / "work" / f"bench-{os.getpid()}.sock"
    proc = subprocess.Popen([str(PEERS), "chroot", "systemd-socket-activate", "--accept",
                             "--fdname=varlink", "-l", str(sock), "/usr/bin/systemd-sysext",
                             f"--root={root}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        try:
            wait_for(str(sock), proc)
        except SystemExit as e:
            proc.kill()
            _out, err = proc.communicate()
            print(f"systemd 257 comparison skipped: {e} ({err.decode().strip()[-300:]})")
            return None

        async def go() -> tuple[list[float], list[float]]:
            same = await latencies(str(sock), SYSEXT_LIST, 1, rounds)
            return same, await fresh_connections(str(sock), max(rounds // 10, 10))

        return asyncio.run(go())
    finally:
        proc.terminate()
        proc.wait(10)
        sock.unlink(missing_ok=True)


# --- main ------------------------------------------------------------------------------------


def scenario(base: Path, seconds: float, calls: int) -> None:
    t0 = time.perf_counter()
    root = make_root(base)
    enable_and_merge(root)
    print(f"scratch root with {N_EXT} erofs extensions, enabled and merged "
          f"({time.perf_counter() - t0:.1f} s to set up)", flush=True)
    path = str(base / "strata.sock")
    env = {**os.environ, "PYTHONPATH": str(HERE / "src")}
    log = open(base / "serve.log", "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen([sys.executable, "-m", "strata", "serve", f"--socket={path}",
                               f"--root={root}"], env=env, stdout=log, stderr=log)
    try:
        wait_for(path, server)
        time.sleep(1.0)
        fresh_rss = rss_mb(server.pid)

        def measure(label: str, request: Request, clients: int, n: int,
                    goal: str = "") -> list[float]:
            values = asyncio.run(latencies(path, request, clients, n))
            show(label, values, goal)
            return values

        goal = "(goal: p99 <= 5 ms)"
        measure("Status, 1 client", STATUS, 1, calls, goal)
        measure("List, 1 client", LIST, 1, calls, goal)
        measure("Status, 50 concurrent clients", STATUS, 50, max(calls // 10, 20), goal)
        measure("List, 50 concurrent clients", LIST, 50, max(calls // 10, 20), goal)
        ours = measure("io.systemd.sysext.List (more), 1 connection", SYSEXT_LIST, 1, calls)
        ours_fresh = asyncio.run(fresh_connections(path, max(calls // 10, 10)))
        show("io.systemd.sysext.List, new connection each", ours_fresh)
        done, errors = asyncio.run(load(path, seconds, 8))
        print(f"{'load: Status+List, 8 clients':44s} {done / seconds:8.0f} calls/s over "
              f"{seconds:.0f} s, {errors} errors", flush=True)
        time.sleep(1.0)
        print(f"{'idle RSS of strata serve':44s} {fresh_rss:6.1f} MB fresh, "
              f"{rss_mb(server.pid):6.1f} MB after the load (goal: <= 35 MB)", flush=True)
        why = peers_available()
        if why is not None:
            print(f"systemd 257 comparison skipped: {why}", flush=True)
            return
        theirs = systemd_list(root, calls)
        if theirs is None:
            return
        same, fresh = theirs
        show("systemd-sysext 257 List (more), 1 connection", same)
        show("systemd-sysext 257 List, new connection each", fresh)
        print(f"{'ratio strata / systemd 257, p50, 1 connection':44s} "
              f"{statistics.median(ours) / statistics.median(same):6.2f}x", flush=True)
        print(f"{'ratio strata / systemd 257, p50, new conn. each':44s} "
              f"{statistics.median(ours_fresh) / statistics.median(fresh):6.2f}x", flush=True)
    finally:
        server.terminate()
        server.wait(30)
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--calls", type=int, default=400)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/service.py: must run as root (it merges, in a private "
                         "namespace)")
    if os.environ.get("STRATA_BENCH_INNER") != "1":
        env = {**os.environ, "STRATA_BENCH_INNER": "1"}
        os.execvpe("unshare", ["unshare", "-m", "--propagation", "private", sys.executable,
                               __file__, f"--seconds={args.seconds}",
                               f"--calls={args.calls}"], env)
    sh("mount", "-t", "tmpfs", "tmpfs", "/run")  # private copy for the engine's workspace
    # Under peers.sh's work directory when it is there, so that systemd 257 in its chroot
    # sees the same root at the same path.
    where = PEERS_DIR / "work" if peers_available() is None else None
    tmp = Path(tempfile.mkdtemp(prefix="strata-bench-svc-", dir=where))
    cleanup: Callable[[], None] = lambda: shutil.rmtree(tmp, ignore_errors=True)  # noqa: E731
    try:
        print(f"kernel {os.uname().release}, python {sys.version.split()[0]}", flush=True)
        scenario(tmp, args.seconds, args.calls)
    finally:
        subprocess.run(["umount", "-R", "-l", str(tmp / "root" / "usr")], capture_output=True,
                       check=False)
        subprocess.run(["umount", "-R", "-l", str(tmp / "root" / "opt")], capture_output=True,
                       check=False)
        cleanup()


if __name__ == "__main__":
    main()
