"""Helpers for the lifecycle tests (no tests here): extension images made with mkfs.erofs, and
an HTTP server on 127.0.0.1 (http.server in a thread) that serves a directory, and can also
cut a response short after announcing its full Content-Length."""

from __future__ import annotations

import contextlib
import http.server
import os
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

from tests.helpers import Files, ext_tree, mkfs

DEBIAN_12 = {"ID": "debian", "VERSION_ID": "12"}


def image(base: Path, name: str, files: Files, release: Mapping[str, str] | None = None, *,
          file_name: str | None = None, release_name: str | None = None,
          confext: bool = False) -> Path:
    """An erofs extension image `file_name` (default <name>.raw) in base/images."""
    tree = ext_tree(base / "trees", name, files, DEBIAN_12 if release is None else release,
                    release_name=release_name, confext=confext)
    return mkfs(tree, base / "images" / (file_name or f"{name}.raw"))


class _Handler(http.server.SimpleHTTPRequestHandler):
    """GET /<file>: the file; GET /cut/<file>: Content-Length of the whole file, then half of
    it and the connection closed; GET /nolength/<file>: the first half, no Content-Length."""

    directory_path = "."

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, directory=self.directory_path, **kwargs)  # type: ignore[arg-type]

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep the test output clean

    def do_GET(self) -> None:
        for prefix in ("/cut/", "/nolength/"):
            if self.path.startswith(prefix):
                data = (Path(self.directory_path) / self.path[len(prefix):]).read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                if prefix == "/cut/":
                    self.send_header("Content-Length", str(len(data)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
        super().do_GET()


@contextlib.contextmanager
def http_server(directory: Path) -> Iterator[str]:
    """Serve `directory` on 127.0.0.1; yields the base URL (no trailing slash)."""
    handler = type("Handler", (_Handler,), {"directory_path": os.fspath(directory)})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def store_state(root: Path) -> dict[str, object]:
    """Everything install and remove may change, to compare before and after: the store, the
    records and the enabled set (names and contents), and stray temporary entries."""
    out: dict[str, object] = {}
    for rel in ("var/lib/strata/extensions", "var/lib/strata/metadata",
                "var/lib/strata/os-releases"):
        base = root / rel
        if not base.exists():
            continue
        for dirpath, dirnames, filenames in os.walk(base):
            for name in [*dirnames, *filenames]:
                p = Path(dirpath) / name
                key = str(p.relative_to(root))
                if p.is_symlink():
                    out[key] = ("link", os.readlink(p))
                elif p.is_file():
                    out[key] = ("file", p.read_bytes())
                else:
                    out[key] = ("dir",)
    return out


def strays(root: Path) -> list[str]:
    """Temporary entries ('.#' names) left in the store, the records or the enabled set."""
    return sorted(k for k in store_state(root) if "/.#" in k)
