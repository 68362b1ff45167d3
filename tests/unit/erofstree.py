"""The reference tree the EROFS reader and image detection tests build their images from, and
mkfs.erofs to build them."""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path

from tests.unit.imagetree import needs

needs_mkfs = needs("mkfs.erofs")

RELEASE = "usr/lib/extension-release.d/extension-release.foo"
RELEASE_TEXT = b"ID=_any\nEXTENSION_RELOAD_MANAGER=1\n"


def _xattrs_supported(path: Path) -> bool:
    try:
        os.setxattr(path, "user.strata-probe", b"1")
        os.removexattr(path, "user.strata-probe")
    except OSError:
        return False
    return True


def make_tree(root: Path) -> Path:
    """The reference tree: release file with a strict xattr, setuid file, symlinks, random,
    repetitive and mixed data, empty files, a 300-entry directory, a fifo."""
    rng = random.Random(1234)
    (root / "usr/lib/extension-release.d").mkdir(parents=True)
    (root / "usr/bin").mkdir(parents=True)
    (root / RELEASE).write_bytes(RELEASE_TEXT)
    jq = root / "usr/bin/jq"
    jq.write_bytes(rng.randbytes(20000))
    jq.chmod(0o4755)
    (root / "usr/bin/abs").symlink_to("/usr/bin/jq")
    (root / "usr/lib/rel").symlink_to("../bin/jq")
    (root / "usr/lib/dirlink").symlink_to("extension-release.d")
    (root / "random").write_bytes(rng.randbytes(200_000))
    text = b"".join(b"line %d: the quick brown fox jumps over the lazy dog\n" % i
                    for i in range(10_000))
    (root / "text").write_bytes(text[:500_000])
    (root / "mixed").write_bytes(text[:80_000] + rng.randbytes(50_000) + text[:90_001])
    (root / "empty").write_bytes(b"")
    (root / "emptydir").mkdir()
    big = root / "big"
    big.mkdir()
    for i in range(300):
        (big / f"entry-with-a-fairly-long-name-{i:04d}").write_bytes(b"%d\n" % i)
    os.mkfifo(root / "fifo")
    if _xattrs_supported(root / RELEASE):
        os.setxattr(root / RELEASE, "user.extension-release.strict", b"false")
        for i in range(4):  # used often enough to land in the shared xattr area
            os.setxattr(big / f"entry-with-a-fairly-long-name-{i:04d}", "user.shared", b"v")
        os.setxattr(root / "text", "trusted.strata", b"t" * 100)
    return root


def mkfs(src: Path, image: Path, *options: str) -> Path:
    subprocess.run(["mkfs.erofs", "--quiet", "-x1", *options, str(image), str(src)],
                   check=True, capture_output=True)
    return image
