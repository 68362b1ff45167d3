"""Read what the planner needs from one image, without mounting anything.

For each discovered image: its filesystem layout (raw images) with its verity and signature
partitions (GPT images), its extension-release data as systemd would find it, whether it ships
/usr/lib/os-release, whether dissect's VALIDATE_OS_EXT would accept it, and which hierarchies
it has non-empty content for.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from strata.discover import Extension
from strata.engine.plan import Candidate
from strata.errors import ErrorKind, StrataError
from strata.images.base import DirectoryFS, FileKind, ImageFS
from strata.model import ExtClass, ImageType

if TYPE_CHECKING:
    from strata.images import ImageLayout
    from strata.images.verity import ImageVerity
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


def _resolve(fs: ImageFS, path: str) -> str | None:
    try:
        return fs.resolve(path)
    except StrataError as e:
        if e.errno == errno.ENOENT or e.kind is ErrorKind.NOT_FOUND:
            return None
        raise


def content_of(fs: ImageFS, hierarchies: Sequence[str]
               ) -> tuple[dict[str, str], dict[str, str]]:
    """(hierarchy -> resolved image path, where the image has a non-empty directory there;
    hierarchy -> problem, where its path exists but cannot be used). A problem is not raised
    here: systemd only notices it if the image is selected (see Selection.layers)."""
    out: dict[str, str] = {}
    problems: dict[str, str] = {}
    for h in hierarchies:
        try:
            resolved = _resolve(fs, h)
        except StrataError as e:
            if e.errno != errno.ELOOP:
                raise
            problems[h] = f"cannot resolve {h} in the image: {e.message}"
            continue
        if resolved is None:
            continue
        st = fs.lstat(resolved)
        if st.kind is not FileKind.DIRECTORY:
            problems[h] = f"{h} in the image is not a directory"
            continue
        if fs.listdir(resolved):
            out[h] = resolved
    return out, problems


def _has_os_release(fs: ImageFS) -> bool:
    """path_is_os_tree(): the image carries /etc/os-release or /usr/lib/os-release."""
    return any(_resolve(fs, p) is not None for p in ("/etc/os-release", "/usr/lib/os-release"))


def open_image(ext: Extension) -> tuple[ImageFS, ImageLayout | None]:
    """The image's tree as systemd would mount it, and its layout for raw images."""
    if ext.type in (ImageType.DIRECTORY, ImageType.SUBVOLUME):
        return DirectoryFS(ext.path), None
    from strata.arch import native
    from strata.images import open_tree, probe

    layout = probe(ext.path, arch=native())
    return open_tree(layout), layout


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
            if not valid and not forbidden and not _has_os_release(fs):
                # image_read_metadata() dissects raw images with VALIDATE_OS|VALIDATE_OS_EXT:
                # neither an extension nor an OS image fails the whole merge (ENOMEDIUM), even
                # with --force; only an OS image is merely ignored later.
                raise StrataError(
                    f"{ext.path} is neither an extension (no usr/lib/extension-release.d/"
                    f"extension-release.{name} or etc/extension-release.d/extension-release."
                    f"{name}, nor one marked user.extension-release.strict=false) nor an OS "
                    "image (no os-release)", kind=ErrorKind.INVALID, errno=errno.ENOMEDIUM,
                    hint=f"name the release file after the image ({name}) or remove the image")
        content, problems = content_of(fs, hierarchies)
        verity: tuple[ImageVerity, ...] = ()
        if layout is not None and layout.partition is not None:
            from strata.images.verity import read_verity

            verity = read_verity(layout)
        return Candidate(ext=ext, release=release, forbidden=forbidden,
                         valid_extension_tree=valid, content=content, content_problems=problems,
                         layout=layout, verity=verity)
    finally:
        fs.close()
