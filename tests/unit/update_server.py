"""A repository server for the update tests: http.server on 127.0.0.1 in a thread, serving a
directory with HTTP Range support, and knobs for the attacks: replace what a path serves
(tampered images, stale or mixed metadata), cut a transfer after N bytes (a server that stops
mid-transfer), and a log of every request (to see resumes)."""

from __future__ import annotations

import http.server
import os
import posixpath
import shutil
import socket
import threading
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any


class RepoServer:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        #: URL path ("/metadata/timestamp.json") -> bytes served instead of the file
        self.overrides: dict[str, bytes] = {}
        #: URL path -> send only this many bytes of the body, then drop the connection
        self.cut: dict[str, int] = {}
        #: URL paths served whole even when a Range is asked for (a server without ranges)
        self.ignore_range: set[str] = set()
        #: (path, Range header or None) of every GET
        self.requests: list[tuple[str, str | None]] = []
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> RepoServer:
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
                owner.requests.append((path, self.headers.get("Range")))
                body = owner.overrides.get(path)
                if body is None:
                    rel = posixpath.normpath(path).lstrip("/")
                    file = owner.directory / rel
                    if rel.startswith("..") or not file.is_file():
                        self.send_error(404)
                        return
                    body = file.read_bytes()
                start = 0
                rng = self.headers.get("Range")
                if path in owner.ignore_range:
                    rng = None
                if rng and rng.startswith("bytes=") and rng.endswith("-"):
                    start = int(rng[6:-1])
                    if start >= len(body):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range",
                                     f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                limit = owner.cut.get(path)
                data = body[start:]
                if limit is not None:
                    self.wfile.write(data[:limit])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(data)

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> RepoServer:
        return self.start()

    def __exit__(self, typ: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def copy_repo(src: Path, dest: Path) -> Path:
    """A snapshot of a repository's files (to serve an old state later)."""
    shutil.copytree(src, dest, symlinks=True)
    return dest


def tree_state(path: Path) -> dict[str, str]:
    """Every entry below `path`: relative name -> symlink target or file size (to show that
    nothing changed)."""
    out: dict[str, str] = {}
    if not path.exists():
        return out
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, path)
            if os.path.islink(p):
                out[rel] = "-> " + os.readlink(p)
            elif os.path.isfile(p):
                out[rel] = str(os.path.getsize(p))
            else:
                out[rel] = "dir"
    return out


def make_image(base: Path, name: str, version: str, *,
               release: Mapping[str, str] | None = None,
               files: Mapping[str, str | bytes] | None = None, file_name: str | None = None,
               padding: int = 0) -> Path:
    """An erofs extension image `<name>_<version>.raw` (made by mkfs.erofs) whose release file
    is extension-release.<name>; usr/share/<name>/version says the version. `padding` adds a
    file of that many random bytes (incompressible: the image grows by as much)."""
    import subprocess

    tree = base / f"tree-{name}-{version}"
    fields = {"ID": "debian", "VERSION_ID": "12"} if release is None else release
    content: dict[str, str | bytes] = {
        f"usr/lib/extension-release.d/extension-release.{name}":
            "".join(f"{k}={v}\n" for k, v in fields.items()),
        f"usr/share/{name}/version": version + "\n",
        **(files or {}),
    }
    if padding:
        content[f"usr/share/{name}/blob"] = os.urandom(padding)
    for rel, data in content.items():
        p = tree / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, bytes):
            p.write_bytes(data)
        else:
            p.write_text(data)
    out = base / "images"
    out.mkdir(exist_ok=True)
    image = out / (file_name or f"{name}_{version}.raw")
    subprocess.run(["mkfs.erofs", "--quiet", "-T0", "--all-root", str(image), str(tree)],
                   check=True, capture_output=True)
    return image
