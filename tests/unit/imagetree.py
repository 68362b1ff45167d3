"""What the image reader tests share: skip markers for missing tools, the reference tree the
squashfs and ext4 tests build their images from, tree comparison, and checks that damaged
images fail with one-line StrataErrors. (The EROFS tree is in erofstree.py.)"""

from __future__ import annotations

import os
import random
import shutil
import socket
import stat
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from strata.errors import ErrorKind, StrataError
from strata.images.base import FileKind, ImageFS


def needs(*tools: str) -> pytest.MarkDecorator:
    """Skip unless every one of `tools` is on PATH."""
    missing = [t for t in tools if shutil.which(t) is None]
    return pytest.mark.skipif(bool(missing), reason=f"{', '.join(missing)} not installed")


# --- the reference tree -----------------------------------------------------------------------

RELEASE = b"ID=_any\nSYSEXT_LEVEL=1.0\n"
REL = "/usr/lib/extension-release.d/extension-release.foo"  # holds RELEASE
LONG_TARGET = "/usr/share/" + "long-target-" * 8  # > 60 characters: not a fast ext4 symlink
SHARED_VALUE = b"v" * 100  # set on two files: mksquashfs stores the second out of line


def build_tree(root: Path) -> Path:
    """The test tree; returns `root`."""
    rng = random.Random(4242)
    rel_dir = root / "usr/lib/extension-release.d"
    rel_dir.mkdir(parents=True)
    (rel_dir / "extension-release.foo").write_bytes(RELEASE)
    (root / "usr/bin").mkdir()
    tool = root / "usr/bin/tool"
    tool.write_bytes(b"\x7fELF" + rng.randbytes(3000))
    (root / "usr/share").mkdir()
    (root / "usr/lib/abs-link").symlink_to("/usr/lib/extension-release.d")
    (root / "usr/share/rel-link").symlink_to("../lib/extension-release.d/extension-release.foo")
    (root / "usr/share/long-link").symlink_to(LONG_TARGET)
    (root / "loop").mkdir()
    (root / "loop/a").symlink_to("b")
    (root / "loop/b").symlink_to("a")
    data = root / "data"
    data.mkdir()
    (data / "random").write_bytes(rng.randbytes(200_000))
    line = b"the quick brown fox jumps over the lazy dog 0123456789\n"
    (data / "text").write_bytes((line * (1_000_000 // len(line) + 1))[:1_000_000])
    (data / "empty").write_bytes(b"")
    with open(data / "sparse", "wb") as f:
        f.write(b"head")
        f.seek(3 * 1024 * 1024)
        f.write(b"tail")
    os.link(data / "random", data / "hardlink")
    many = root / "many"
    many.mkdir()
    for i in range(500):
        (many / f"entry-{i:03d}").write_bytes(f"{i}\n".encode() if i % 7 == 0 else b"")
    os.mkfifo(root / "fifo")
    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.bind(str(root / "sock"))
        except OSError:
            pass  # path too long for AF_UNIX; the other types are still covered
    os.setxattr(rel_dir / "extension-release.foo", "user.extension-release.strict", b"1")
    os.setxattr(rel_dir, "user.dir-attr", b"on a directory")
    os.setxattr(data / "random", "user.shared", SHARED_VALUE)
    os.setxattr(data / "text", "user.shared", SHARED_VALUE)
    os.setxattr(data / "text", "user.empty", b"")
    if os.geteuid() == 0:
        os.chown(tool, 0, 0)
        os.chown(rel_dir / "extension-release.foo", 1000, 1001)
        os.chown(data / "random", 100_000, 200_000)
        os.lchown(root / "usr/share/rel-link", 7, 8)
    tool.chmod(0o4755)  # after chown, which clears set-user-ID
    return root


def mksquashfs(tree: Path, image: Path, *args: str) -> Path:
    from strata.run import run

    run(["mksquashfs", str(tree), str(image), "-noappend", "-quiet", "-no-progress",
         "-xattrs", *args])
    return image


def mkfs_ext(tree: Path, image: Path, *args: str, kind: str = "ext4", size: str = "8M") -> Path:
    from strata.run import run

    run([f"mkfs.{kind}", "-q", "-F", "-d", str(tree), *args, str(image), size])
    return image


# --- reading a whole image --------------------------------------------------------------------

def assert_same_tree(fs: ImageFS, root: Path, path: str = "/",
                     ignore: frozenset[str] = frozenset()) -> int:
    """Compare every entry below `path` with the source tree (names in `ignore` are left out
    of the image listing); returns the number of entries compared."""
    host = root / path.lstrip("/")
    names = [n for n in fs.listdir(path) if n not in ignore]
    assert sorted(names) == sorted(os.listdir(host)), path
    count = 0
    for name in names:
        p = path.rstrip("/") + "/" + name
        h = host / name
        hs = os.lstat(h)
        st = fs.lstat(p)
        assert st.mode == hs.st_mode, p
        assert (st.uid, st.gid) == (hs.st_uid, hs.st_gid), p
        assert st.mtime == int(hs.st_mtime), p
        count += 1
        if stat.S_ISDIR(hs.st_mode):
            assert st.kind is FileKind.DIRECTORY
            count += assert_same_tree(fs, root, p, ignore)
        elif stat.S_ISREG(hs.st_mode):
            assert st.kind is FileKind.REGULAR
            assert st.size == hs.st_size, p
            assert fs.read(p) == h.read_bytes(), p
        elif stat.S_ISLNK(hs.st_mode):
            assert st.kind is FileKind.SYMLINK
            assert fs.readlink(p) == os.readlink(h), p
            assert st.size == len(os.fsencode(os.readlink(h)))
        else:
            assert st.kind is FileKind.OTHER
        if not stat.S_ISLNK(hs.st_mode):
            for attr in os.listxattr(h):
                assert fs.getxattr(p, attr) == os.getxattr(h, attr), (p, attr)
        assert fs.getxattr(p, "user.not-there") is None
    return count


def walk_everything(fs: ImageFS, xattr: str, path: str = "/") -> None:
    """Read every entry below `path` (and its attribute `xattr`), checking nothing: for
    damaged images, where only the kind of failure matters."""
    for name in fs.listdir(path):
        p = path.rstrip("/") + "/" + name
        st = fs.lstat(p)
        fs.getxattr(p, xattr)
        if st.kind is FileKind.DIRECTORY:
            walk_everything(fs, xattr, p)
        elif st.kind is FileKind.REGULAR:
            fs.read(p, limit=1 << 20)
        elif st.kind is FileKind.SYMLINK:
            fs.readlink(p)


def assert_readable_at_offset(reader: Callable[..., ImageFS], image: Path, tree: Path,
                              disk: Path, *, padding: int) -> int:
    """`image` 1 MiB into `disk` with `padding` zero bytes after it reads as the tree, to the
    end of the file and within exactly its own size. Returns the image's size."""
    payload = image.read_bytes()
    disk.write_bytes(bytes(1 << 20) + payload + bytes(padding))
    with reader(str(disk), offset=1 << 20) as fs:
        assert fs.read(REL) == RELEASE
        assert fs.read("/data/random") == (tree / "data/random").read_bytes()
    with reader(str(disk), offset=1 << 20, size=len(payload)) as fs:
        assert fs.read("/data/text") == (tree / "data/text").read_bytes()
    return len(payload)


# --- damaged images ---------------------------------------------------------------------------

def assert_one_line(exc: StrataError, image: Path, kind: ErrorKind = ErrorKind.INVALID) -> None:
    """A user-facing failure: of `kind`, one line, naming the image first."""
    assert exc.kind is kind, exc
    assert str(exc).startswith(str(image)), exc
    assert "\n" not in str(exc)


def open_fails(reader: Callable[[str], ImageFS], image: Path,
               kind: ErrorKind = ErrorKind.INVALID) -> StrataError:
    """Opening `image` with `reader` fails with a one-line error of `kind`; returns it."""
    with pytest.raises(StrataError) as exc:
        reader(str(image))
    assert_one_line(exc.value, image, kind)
    return exc.value


def damage(pristine: bytes, positions: Callable[[random.Random], int], rng: random.Random,
           max_hits: int) -> bytes:
    """`pristine` with 1 to `max_hits` random bytes at positions(rng) overwritten."""
    raw = bytearray(pristine)
    for _ in range(rng.randint(1, max_hits)):
        raw[positions(rng)] = rng.randrange(256)
    return bytes(raw)


def count_failures(reader: Callable[[str], ImageFS], images: Iterable[bytes], bad: Path,
                   xattr: str, kinds: frozenset[ErrorKind]) -> int:
    """Open and walk each of `images` (written to `bad`): whatever breaks must surface as a
    one-line StrataError of one of `kinds` naming the image (never IndexError/struct.error/..);
    damage may also go unnoticed. Returns how many failed."""
    failures = 0
    for raw in images:
        bad.write_bytes(raw)
        try:
            with reader(str(bad)) as fs:
                walk_everything(fs, xattr)
        except StrataError as e:
            failures += 1
            assert str(bad) in str(e) and "\n" not in str(e)
            assert e.kind in kinds, e
    return failures
