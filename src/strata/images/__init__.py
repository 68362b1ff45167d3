"""Reading extension images without mounting them.

- `base`: the ImageFS interface and DirectoryFS.
- `detect`: ImageFormat, detect/detect_bytes, probe (ImageLayout), open_layout/open_tree/open_fs.
- `gpt`: GPT parsing and the Discoverable Partitions Specification.
- `erofs`, `squashfs`, `ext4`: the file system readers (imported only when an image needs one).

The names below are re-exported from `detect` lazily, so that importing `strata.images.base`
(which every command does) does not pay for GPT tables and dataclasses it may never use. The
function `detect.detect` is not re-exported: `strata.images.detect` is the module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from strata.images.detect import (
        ImageFormat,
        ImageLayout,
        MountView,
        detect_bytes,
        open_fs,
        open_layout,
        open_tree,
        probe,
    )

__all__ = [
    "ImageFormat",
    "ImageLayout",
    "MountView",
    "detect_bytes",
    "open_fs",
    "open_layout",
    "open_tree",
    "probe",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        import importlib

        return getattr(importlib.import_module("strata.images.detect"), name)
    raise AttributeError(f"module 'strata.images' has no attribute {name!r}")
