"""Crash-safe writes for the management state: symlinks and small files are created under a
temporary name and renamed over the final one (rename(2) replaces atomically, so a reader or
a crash sees the old entry or the new one, never none), and the directory is fsynced so the
change survives a power cut (the device case: enable, then pull the plug)."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator

from strata.errors import StrataError


def _tmp_name(directory: str, name: str) -> str:
    # ".#" names are invalid image names (systemd skips them), so a leftover from a crash
    # between create and rename is never taken for an image or an enabled extension.
    return os.path.join(directory, f".#{name}.{secrets.token_hex(4)}")


def fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise StrataError.from_os(e, f"Failed to open '{directory}'") from e
    try:
        os.fsync(fd)
    except OSError as e:
        raise StrataError.from_os(e, f"Failed to sync '{directory}'") from e
    finally:
        os.close(fd)


def make_dirs(directory: str) -> None:
    """mkdir -p, fsyncing each parent that got a new entry."""
    missing: list[str] = []
    d = directory
    while not os.path.isdir(d):
        missing.append(d)
        parent = os.path.dirname(d)
        if parent == d:
            break
        d = parent
    for path in reversed(missing):
        try:
            os.mkdir(path, 0o755)
        except FileExistsError:
            continue
        except OSError as e:
            raise StrataError.from_os(e, f"Failed to create directory '{path}'") from e
        fsync_dir(os.path.dirname(path))


def replace_symlink(directory: str, name: str, target: str) -> None:
    """Make `directory/name` a symlink to `target`, atomically replacing what was there."""
    tmp = _tmp_name(directory, name)
    final = os.path.join(directory, name)
    try:
        os.symlink(target, tmp)
        os.rename(tmp, final)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise StrataError.from_os(e, f"Failed to create symlink '{final}'") from e


def replace_file(directory: str, name: str, data: bytes, mode: int = 0o644) -> None:
    """Write `directory/name` atomically: a synced temporary file renamed over it."""
    tmp = _tmp_name(directory, name)
    final = os.path.join(directory, name)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, final)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise StrataError.from_os(e, f"Failed to write '{final}'") from e


def remove(directory: str, name: str) -> bool:
    """Unlink `directory/name`; False if it was not there."""
    path = os.path.join(directory, name)
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    except OSError as e:
        raise StrataError.from_os(e, f"Failed to remove '{path}'") from e
    return True


@contextlib.contextmanager
def locked(path: str, waiting: str | None = None) -> Iterator[None]:
    """Hold an exclusive flock on the lock file `path` (created, with its directory), saying
    `waiting` once if another process holds it."""
    from strata.fsutil import flocked

    make_dirs(os.path.dirname(path))
    with flocked(path, waiting, create=True):
        yield
