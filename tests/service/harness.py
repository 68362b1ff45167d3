"""Running `strata serve` for tests: in this process (a thread with its own event loop) or as
a subprocess, on a socket in a scratch directory; plus small raw-socket and client helpers."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from strata.service.backend import Manage
from strata.service.core import Limits
from strata.service.server import ServeOptions, serve

REPO = Path(__file__).resolve().parent.parent.parent


def socket_dir() -> Path:
    """A directory any uid can reach (pytest's tmp_path is 0700: no good for the tests that
    connect as an unprivileged user)."""
    d = Path(tempfile.mkdtemp(prefix="strata-vl-"))
    d.chmod(0o755)
    return d


class ServerThread:
    """`strata serve` on `path`, in a thread of this process, with `manage` as the backend."""

    def __init__(self, path: Path, manage: Manage, *, root: str | None = None,
                 limits: Limits | None = None, group: str | None = None,
                 config: Path | None = None, env: dict[str, str] | None = None) -> None:
        self.path = path
        self.options = ServeOptions(socket_path=str(path), root=root, group=group,
                                    config=str(config or path.parent / "no-config.toml"),
                                    limits=limits or Limits())
        self.manage = manage
        self.env = dict(env or {})
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        async def go() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            await serve(self.options, manage=self.manage, environ=self.env, stop=self._stop,
                        ready=lambda _where: self._ready.set())

        try:
            asyncio.run(go())
        except BaseException as e:
            self._error = e
            self._ready.set()

    def __enter__(self) -> ServerThread:
        self._thread.start()
        if not self._ready.wait(20):
            raise TimeoutError("server did not start")
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
        if self._error is not None and exc is None:
            raise self._error

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()


def spawn(path: Path, *args: str, env: dict[str, str] | None = None,
          pass_fds: tuple[int, ...] = ()) -> subprocess.Popen[str]:
    """tests/service/serve_fake.py (strata serve with the fake backend) as a subprocess."""
    full_env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'src'}",
                **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "tests.service.serve_fake",
                             "--socket", str(path), *args], cwd=REPO, env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            pass_fds=pass_fds)


def wait_for_socket(path: Path, proc: subprocess.Popen[str] | None = None,
                    timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited {proc.returncode}: {proc.communicate()[1]}")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.connect(str(path))
            return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listens on {path}")


# --- raw wire --------------------------------------------------------------------------------


class Raw:
    """A varlink connection spoken by hand: send bytes, read NUL-terminated JSON replies."""

    def __init__(self, path: Path | str, timeout: float = 10) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def call(self, method: str, parameters: dict[str, Any] | None = None,
             **flags: bool) -> None:
        msg: dict[str, Any] = {"method": method, **flags}
        if parameters is not None:
            msg["parameters"] = parameters
        self.send(json.dumps(msg).encode() + b"\0")

    def reply(self) -> dict[str, Any]:
        while b"\0" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            self.buf += chunk
        msg, _, self.buf = self.buf.partition(b"\0")
        value: dict[str, Any] = json.loads(msg)
        return value

    def replies(self) -> Iterator[dict[str, Any]]:
        """Replies up to and including the one without "continues"."""
        while True:
            r = self.reply()
            yield r
            if not r.get("continues"):
                return

    def closed(self) -> bool:
        """Whether the server closed the connection (after any pending replies)."""
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Raw:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
