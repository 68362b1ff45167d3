"""Read what the planner needs from one image, without mounting anything.

For each discovered image: its filesystem layout (raw images), its extension-release data as
systemd would find it, whether it ships /usr/lib/os-release, whether dissect's
VALIDATE_OS_EXT would accept it, and which hierarchies it has non-empty content for.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence

from strata.discover import Extension
from strata.engine.plan import Candidate
from strata.errors import ErrorKind, StrataError
from strata.images.base import DirectoryFS, FileKind, ImageFS, Stat
from strata.model import ExtClass, ImageType
from strata.release import ReleaseLookup

_RAW_SUFFIXES = (".xz", ".gz", ".bz2", ".sysext.raw", ".confext.raw", ".raw", ".qcow2", ".img",
                 ".bin")


def raw_strip_suffixes(filename: str) -> str:
    """dissect's image name for a raw image: its file name without image suffixes (repeated)."""
    changed = True
    while changed:
        changed = False
        for sfx in _RAW_SUFFIXES:
            if filename.endswith(sfx):
                filename = filename[: -len(sfx)]
                changed = True
    return filename


class UsrOnlyFS(ImageFS):
    """A DDI with only a usr partition: systemd mounts a tmpfs root with the partition on
    /usr; this presents the same view."""

    def __init__(self, inner: ImageFS) -> None:
        self.inner = inner
        self.label = inner.label

    def _map(self, path: str) -> str | None:
        parts = [p for p in path.split("/") if p and p != "."]
        if not parts:
            return None
        if parts[0] != "usr":
            raise StrataError(f"{self.label}:{path}: No such file or directory",
                              kind=ErrorKind.NOT_FOUND, errno=errno.ENOENT)
        return "/" + "/".join(parts[1:])

    def lstat(self, path: str) -> Stat:
        inner = self._map(path)
        if inner is None:
            return Stat(FileKind.DIRECTORY, 0o40755, 0, 0, 0, 0)
        return self.inner.lstat(inner)

    def listdir(self, path: str) -> list[str]:
        inner = self._map(path)
        return ["usr"] if inner is None else self.inner.listdir(inner)

    def read(self, path: str, *, limit: int | None = None) -> bytes:
        inner = self._map(path)
        if inner is None:
            raise StrataError(f"{self.label}:/: is a directory", kind=ErrorKind.INVALID)
        return self.inner.read(inner, limit=limit)

    def readlink(self, path: str) -> str:
        inner = self._map(path)
        if inner is None:
            raise StrataError(f"{self.label}:/: not a symlink", kind=ErrorKind.INVALID)
        return self.inner.readlink(inner)

    def getxattr(self, path: str, name: str) -> bytes | None:
        inner = self._map(path)
        return None if inner is None else self.inner.getxattr(inner, name)

    def close(self) -> None:
        self.inner.close()


def _resolve(fs: ImageFS, path: str) -> str | None:
    try:
        return fs.resolve(path)
    except StrataError as e:
        if e.errno == errno.ENOENT or e.kind is ErrorKind.NOT_FOUND:
            return None
        raise


def content_of(fs: ImageFS, hierarchies: Sequence[str]) -> dict[str, str]:
    """hierarchy -> resolved image path, where the image has a non-empty directory there."""
    out: dict[str, str] = {}
    for h in hierarchies:
        resolved = _resolve(fs, h)
        if resolved is None:
            continue
        st = fs.lstat(resolved)
        if st.kind is not FileKind.DIRECTORY:
            raise StrataError(f"{fs.label}: hierarchy '{h}' in the image is not a directory",
                              kind=ErrorKind.INVALID, errno=errno.ENOTDIR)
        if fs.listdir(resolved):
            out[h] = resolved
    return out


def open_image(ext: Extension) -> tuple[ImageFS, object | None]:
    """The image's filesystem view, and its layout for raw images."""
    if ext.type in (ImageType.DIRECTORY, ImageType.SUBVOLUME):
        return DirectoryFS(ext.path), None
    from strata.arch import native
    from strata.images import open_layout, probe
    from strata.images.gpt import PartitionRole

    layout = probe(ext.path, arch=native())
    fs = open_layout(layout)
    if layout.partition is not None and layout.partition.role is PartitionRole.USR:
        fs = UsrOnlyFS(fs)
    return fs, layout


def _lookup(fs: ImageFS, cls: ExtClass, name: str) -> ReleaseLookup:
    """The release lookup; a malformed file makes the image unusable (systemd: no data), and
    the reason is kept so the user is told which file is wrong and why."""
    from strata.release import find_extension_release

    try:
        return find_extension_release(fs, cls, name)
    except StrataError as e:
        if e.kind is not ErrorKind.INVALID:
            raise
        return ReleaseLookup(path=None, fields=None, problem=e.message)


def read_candidate(ext: Extension, cls: ExtClass, hierarchies: Sequence[str]) -> Candidate:
    fs, layout = open_image(ext)
    try:
        raw = ext.type in (ImageType.RAW, ImageType.BLOCK)
        name = raw_strip_suffixes(os.path.basename(ext.path.rstrip("/"))) if raw else ext.name
        release = _lookup(fs, cls, name)
        forbidden = _resolve(fs, "/usr/lib/os-release") is not None
        valid = True
        if raw:
            other = ExtClass.CONFEXT if cls is ExtClass.SYSEXT else ExtClass.SYSEXT
            has_release = release.fields is not None or \
                _lookup(fs, other, name).fields is not None
            valid = not forbidden and has_release
        return Candidate(ext=ext, release=release, forbidden=forbidden,
                         valid_extension_tree=valid, content=content_of(fs, hierarchies),
                         layout=layout)  # type: ignore[arg-type]
    finally:
        fs.close()
