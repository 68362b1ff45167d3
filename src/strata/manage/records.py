"""What `strata ext install` remembers about each image it put into the store, for `verify` and
`info`: one small JSON file per image,

    <root>/var/lib/strata/metadata/<image file name>.json
    {"version": 1, "image": "app-1.2.raw", "sha256": "<hex>", "size": 4096,
     "source": "https://example.com/app-1.2.raw", "sourceKind": "url",
     "installedAt": "2025-01-31T12:00:00Z", "extra": {}}

Kept beside the store rather than in it, so that nothing listing the store (Strata, avocadoctl)
ever sees a file that is not an image. Written atomically (fsio.replace_file) *before* the image
is renamed into the store: a crash in between leaves a record without an image, which every
reader ignores (`load` of an image that does not exist is None to them) and the next install or
remove deletes (`collect_garbage`). The reverse order would leave an image that verify could not
vouch for. `extra` is for later keys (issue 5's verity root hash and signature) that older
readers pass through untouched.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from strata.errors import ErrorKind, StrataError
from strata.fsutil import chase, read_optional
from strata.manage import fsio
from strata.manage.api import SourceKind
from strata.record import record

METADATA_DIR = "/var/lib/strata/metadata"
FORMAT_VERSION = 1
SUFFIX = ".json"


@record
class ImageRecord:
    image: str  # the image's file name in the store
    sha256: str
    size: int
    source: str
    kind: SourceKind
    installed_at: str
    extra: Mapping[str, Any] | None = None


def metadata_dir(root: str) -> str:
    """The host path of the metadata directory (which may not exist yet)."""
    return chase(METADATA_DIR, root, nonexistent=True)


def to_json(r: ImageRecord) -> dict[str, Any]:
    return {"version": FORMAT_VERSION, "image": r.image, "sha256": r.sha256, "size": r.size,
            "source": r.source, "sourceKind": r.kind.value, "installedAt": r.installed_at,
            "extra": dict(r.extra or {})}


def from_json(data: object, where: str) -> ImageRecord:
    """Parse a record; anything malformed is an INVALID error naming the file."""

    def bad(why: str) -> StrataError:
        return StrataError(f"Malformed install record '{where}': {why}", kind=ErrorKind.INVALID)

    if not isinstance(data, dict):
        raise bad("not a JSON object")
    if data.get("version") != FORMAT_VERSION:
        raise bad(f"unknown version {data.get('version')!r}")
    try:
        kind = SourceKind(data.get("sourceKind"))
    except ValueError:
        raise bad(f"unknown sourceKind {data.get('sourceKind')!r}") from None
    values = {k: data.get(k) for k in ("image", "sha256", "source", "installedAt")}
    for key, value in values.items():
        if not isinstance(value, str):
            raise bad(f"'{key}' must be a string")
    size, extra = data.get("size"), data.get("extra", {})
    if type(size) is not int or size < 0:
        raise bad("'size' must be a non-negative integer")
    if not isinstance(extra, dict):
        raise bad("'extra' must be an object")
    return ImageRecord(image=str(values["image"]), sha256=str(values["sha256"]), size=size,
                       source=str(values["source"]), kind=kind,
                       installed_at=str(values["installedAt"]), extra=extra)


def load(root: str, image_file: str) -> ImageRecord | None:
    """The record of the store image named `image_file`, None when there is none."""
    import json

    path = os.path.join(metadata_dir(root), image_file + SUFFIX)
    raw = read_optional(path)
    if raw is None:
        return None
    try:
        data = json.loads(raw)
    except ValueError as e:
        raise StrataError(f"Malformed install record '{path}': {e}",
                          kind=ErrorKind.INVALID) from e
    r = from_json(data, path)
    if r.image != image_file:
        raise StrataError(f"Malformed install record '{path}': it describes '{r.image}'",
                          kind=ErrorKind.INVALID)
    return r


def save(root: str, r: ImageRecord) -> None:
    """Write the record atomically (and durably: the directory is synced)."""
    import json

    directory = metadata_dir(root)
    fsio.make_dirs(directory)
    body = json.dumps(to_json(r), indent=2, sort_keys=True) + "\n"
    fsio.replace_file(directory, r.image + SUFFIX, body.encode())
    fsio.fsync_dir(directory)


def delete(root: str, image_file: str) -> bool:
    directory = metadata_dir(root)
    if not os.path.isdir(directory):
        return False
    return fsio.remove(directory, image_file + SUFFIX)


def collect_garbage(root: str, store_dir: str) -> list[str]:
    """Delete records whose image is not in `store_dir` (host path) and temporary files a crash
    left behind; returns the names deleted. Call it with the change lock held."""
    directory = metadata_dir(root)
    try:
        names = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as e:
        raise StrataError.from_os(e, f"Failed to read '{directory}'") from e
    gone: list[str] = []
    for name in sorted(names):
        if name.startswith(".#"):
            stale = True  # fsio's temporary name: a write that never finished
        elif name.endswith(SUFFIX):
            stale = not os.path.lexists(os.path.join(store_dir, name[: -len(SUFFIX)]))
        else:
            stale = False
        if stale and fsio.remove(directory, name):
            gone.append(name)
    if gone:
        fsio.fsync_dir(directory)
    return gone
