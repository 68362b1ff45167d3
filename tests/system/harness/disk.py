"""The disks of one run, made and read without mounting anything on the host: the work disk
is an ext4 image made with `mkfs.ext4 -d` from a staging directory, and what the guest wrote
is read back with `debugfs` (from the work disk, and from the root disk for a post-mortem
journal)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.system.harness.image import WORK_LABEL


def make_work_disk(source: Path, image: Path, size: str = "1G") -> None:
    image.unlink(missing_ok=True)
    proc = subprocess.run(["mkfs.ext4", "-q", "-F", "-L", WORK_LABEL, "-d", str(source),
                           str(image), size], stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"mkfs.ext4 of the work disk {image} failed: "
                           f"{(proc.stderr or proc.stdout).strip()}")


def copy_sparse(source: Path, target: Path) -> None:
    """A private copy of the cached root disk (mostly holes: `cp --sparse=always`)."""
    target.unlink(missing_ok=True)
    subprocess.run(["cp", "--sparse=always", "--reflink=auto", str(source), str(target)],
                   check=True, stdin=subprocess.DEVNULL)


def rdump(image: Path, path: str, dest: Path) -> Path | None:
    """Copy directory `path` of the ext4 `image` into `dest` (as dest/<basename>); None when
    it is not there. debugfs opens the image read-only (no -w)."""
    name = path.rstrip("/").rsplit("/", 1)[-1]
    target = dest / name
    shutil.rmtree(target, ignore_errors=True)
    dest.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["debugfs", "-R", f"rdump {path} {dest}", str(image)],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          check=False)
    if proc.returncode != 0 or not target.is_dir():
        return None
    return target


def read_text(image: Path, path: str) -> str | None:
    """File `path` of the ext4 `image`, or None when it is not there."""
    stat = subprocess.run(["debugfs", "-R", f"stat {path}", str(image)], capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, check=False)
    if stat.returncode != 0 or "Inode:" not in stat.stdout:
        return None
    proc = subprocess.run(["debugfs", "-R", f"cat {path}", str(image)], capture_output=True,
                          stdin=subprocess.DEVNULL, check=False)
    return proc.stdout.decode(errors="replace") if proc.returncode == 0 else None


def post_mortem_journal(root_image: Path, dest: Path) -> str:
    """The guest's persistent journal of its last boot, read from its root disk after a hang
    or crash, or why it cannot be shown."""
    journal = rdump(root_image, "/var/log/journal", dest)
    if journal is None:
        return "(no journal on the root disk)"
    proc = subprocess.run(["journalctl", "--no-pager", "-o", "short-monotonic",
                           f"--directory={d}" if (d := _machine_dir(journal)) else
                           f"--directory={journal}", "-b"],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          check=False)
    text = proc.stdout.strip()
    if not text:
        return f"(the journal could not be read: {proc.stderr.strip() or 'empty'})"
    return text


def _machine_dir(journal: Path) -> Path | None:
    dirs = [d for d in journal.iterdir() if d.is_dir()]
    return dirs[0] if len(dirs) == 1 else None
