"""`strata inspect`: an image's format, size, sha256, release data and file tree, read without
mounting and without privileges (the merge engine's readers: directories, erofs, squashfs,
ext4, GPT disk images)."""

from __future__ import annotations

import stat as _stat
from typing import TYPE_CHECKING, Any

from strata.check.tree import Tree, scan
from strata.check.view import image_name, open_image
from strata.errors import StrataError
from strata.images.base import FileKind
from strata.model import ExtClass
from strata.record import record

if TYPE_CHECKING:
    from strata.images import ImageLayout
    from strata.images.gpt import Partition


@record
class ReleaseInfo:
    """One class's extension-release lookup: the file and its fields, or why there is none."""

    cls: ExtClass
    path: str | None
    fields: dict[str, str] | None
    problem: str | None


@record
class ImageInfo:
    path: str
    name: str
    layout: ImageLayout | None  # None for a directory
    #: bytes of the image file; for a directory, of the regular files in it
    size: int
    sha256: str | None  # of the image file; None for a directory
    releases: tuple[ReleaseInfo, ...]
    tree: Tree

    @property
    def classes(self) -> tuple[ExtClass, ...]:
        return tuple(r.cls for r in self.releases if r.fields is not None)

    @property
    def container(self) -> str:
        return "directory" if self.layout is None else self.layout.container.value

    @property
    def filesystem(self) -> str:
        return "directory" if self.layout is None else self.layout.fs_format.value


def sha256_file(path: str) -> tuple[str, int]:
    """(hex sha256, size) of a file or block device, read in 1 MiB pieces."""
    import hashlib

    h = hashlib.sha256()
    size = 0
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
                size += len(chunk)
    except OSError as e:
        raise StrataError.from_os(e, path) from e
    return h.hexdigest(), size


def inspect_image(path: str) -> ImageInfo:
    """Read everything `strata inspect` shows; StrataError if the image cannot be read."""
    from strata.release import find_extension_release

    fs, layout = open_image(path)
    try:
        name = image_name(path, is_dir=layout is None)
        tree = scan(fs)
        releases = []
        for cls in ExtClass:
            try:
                r = find_extension_release(fs, cls, name)
                releases.append(ReleaseInfo(cls, r.path, r.fields, r.problem))
            except StrataError as e:
                releases.append(ReleaseInfo(cls, None, None, e.message))
    finally:
        fs.close()
    if layout is None:
        digest = None
        size = sum(e.size for e in tree if e.kind is FileKind.REGULAR)
    else:
        digest, size = sha256_file(path)
    return ImageInfo(path, name, layout, size, digest, tuple(releases), tree)


def _type(kind: FileKind, mode: int) -> str:
    if kind is not FileKind.OTHER:
        return str(kind.value)
    if _stat.S_ISCHR(mode):
        return "char-device"
    if _stat.S_ISBLK(mode):
        return "block-device"
    if _stat.S_ISFIFO(mode):
        return "fifo"
    return "socket" if _stat.S_ISSOCK(mode) else "other"


def _partition_json(p: Partition | None) -> dict[str, Any] | None:
    if p is None:
        return None
    return {"number": p.index, "role": p.role.value, "arch": p.arch, "label": p.label,
            "uuid": str(p.uuid), "type": str(p.type_uuid), "offset": p.offset, "size": p.size}


def to_json(info: ImageInfo) -> dict[str, Any]:
    """The JSON shape of `strata inspect --json` (documented in strata-inspect(8))."""
    layout = info.layout
    return {
        "path": info.path,
        "name": info.name,
        "format": info.container,
        "filesystem": info.filesystem,
        "partition": _partition_json(layout.partition if layout else None),
        "usrPartition": _partition_json(layout.usr_partition if layout else None),
        "size": info.size,
        "sha256": info.sha256,
        "classes": [c.value for c in info.classes],
        "releases": {r.cls.value: {"path": r.path, "fields": r.fields, "problem": r.problem}
                     for r in info.releases},
        "files": [{"path": e.path, "type": _type(e.kind, e.mode),
                   "mode": f"{_stat.S_IMODE(e.mode):04o}", "uid": e.uid, "gid": e.gid,
                   "size": e.size, "target": e.target} for e in info.tree],
    }


def human_size(n: int) -> str:
    value = float(n)
    for unit in ("B", "K", "M", "G", "T"):
        if value < 1024 or unit == "T":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _format_line(info: ImageInfo) -> str:
    layout = info.layout
    if layout is None:
        return "directory"
    if layout.partition is None:
        return layout.fs_format.value
    p = layout.partition
    text = (f"GPT disk image, {layout.fs_format.value} in {p.describe()}, offset {p.offset}, "
            f"{human_size(p.size)}")
    if p.label:
        text += f', label "{p.label}"'
    if layout.usr_partition is not None and layout.usr_fs_format is not None:
        text += (f"; {layout.usr_fs_format.value} in {layout.usr_partition.describe()} "
                 "at /usr")
    return text


def render(info: ImageInfo) -> str:
    """`ls -l`-like text: a header of facts, then one line per file."""
    counts = {k: sum(1 for e in info.tree if e.kind is k) for k in FileKind}
    lines: list[str] = []

    def field(label: str, value: str) -> None:
        lines.append(f"{label + ':':<18} {value}")

    field("Image", info.path)
    field("Name", info.name)
    field("Format", _format_line(info))
    field("Size", f"{info.size} bytes ({human_size(info.size)})"
          + (" of regular files" if info.layout is None else ""))
    if info.sha256 is not None:
        field("SHA256", info.sha256)
    field("Class", "+".join(c.value for c in info.classes) or "none (no release file)")
    for r in info.releases:
        if r.fields is None:
            if not info.classes:
                field(f"Release ({r.cls.value})", f"none: {r.problem}")
            continue
        field(f"Release ({r.cls.value})", r.path or "")
        lines.extend(f"  {k}={v}" for k, v in r.fields.items())
    field("Files", f"{len(info.tree)} entries: {counts[FileKind.DIRECTORY]} directories, "
          f"{counts[FileKind.REGULAR]} files, {counts[FileKind.SYMLINK]} symlinks, "
          f"{counts[FileKind.OTHER]} other")
    entries = list(info.tree)
    uw = max((len(str(e.uid)) for e in entries), default=1)
    gw = max((len(str(e.gid)) for e in entries), default=1)
    sw = max((len(str(e.size)) for e in entries), default=1)
    for e in entries:
        link = f" -> {e.target}" if e.target is not None else ""
        mode: str = _stat.filemode(e.mode)
        lines.append(f"{mode} {str(e.uid).rjust(uw)} {str(e.gid).rjust(gw)} "
                     f"{str(e.size).rjust(sw)} {e.path}{link}")
    return "\n".join(lines) + "\n"
