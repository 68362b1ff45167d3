"""What a build tells its user: progress lines while it runs, and the report at the end (the
`--json` document, or a short summary).

Progress is plain lines on stderr (systemd's style, no `rich`); on a terminal each line starts
with the time since the build began. Warnings are printed as they happen and collected for the
report, so that a CI log and the JSON agree.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from strata import log
from strata.build.sources import PackageRecord
from strata.record import record


class Progress:
    """Steps and warnings of one build."""

    def __init__(self, *, tty: bool | None = None) -> None:
        self.start = time.monotonic()
        self.tty = sys.stderr.isatty() if tty is None else tty
        self.warnings: list[str] = []

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def step(self, message: str) -> None:
        log.info(f"[{self.elapsed():6.1f}s] {message}" if self.tty else message)

    def detail(self, message: str) -> None:
        log.debug(message)

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        log.warning(f"Warning: {message}")


@record
class OutputFile:
    """One image (or directory) the build wrote."""

    cls: str  # "sysext" | "confext"
    path: str
    format: str
    size: int  # bytes of the image file; of the files' contents for a directory
    sha256: str | None  # of the image file; None for a directory
    content_sha256: str  # of the staged tree (tree.finish_tree), the same for every format
    uuid: str | None  # the erofs file system UUID
    files: int
    directories: int
    symlinks: int
    command: tuple[str, ...] = ()  # the mkfs command, with the final paths


@record
class BuildReport:
    name: str
    version: str
    architecture: str
    source_date_epoch: int
    outputs: tuple[OutputFile, ...]
    packages: tuple[PackageRecord, ...]
    warnings: tuple[str, ...]
    seconds: float
    staging: str | None = None  # kept staging directory (--keep-staging)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "architecture": self.architecture,
            "source_date_epoch": self.source_date_epoch,
            "outputs": [{
                "class": o.cls, "path": o.path, "format": o.format, "size": o.size,
                "sha256": o.sha256, "content_sha256": o.content_sha256, "uuid": o.uuid,
                "files": o.files, "directories": o.directories, "symlinks": o.symlinks,
                "command": list(o.command),
            } for o in self.outputs],
            "packages": [{"name": p.name, "version": p.version, "arch": p.arch,
                          "kind": p.kind, "origin": p.origin} for p in self.packages],
            "warnings": list(self.warnings),
            "seconds": round(self.seconds, 3),
            **({"staging": self.staging} if self.staging is not None else {}),
        }

    def summary(self) -> str:
        lines = []
        for o in self.outputs:
            digest = f"sha256 {o.sha256}" if o.sha256 else f"content {o.content_sha256[:16]}"
            lines.append(f"{o.path}: {o.cls} {o.format}, {human(o.size)}, {o.files} files, "
                         f"{digest}\n")
        return "".join(lines)


def human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
