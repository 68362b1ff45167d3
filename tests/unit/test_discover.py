"""Image discovery on fake roots (tmp_path trees), checked against systemd v257's rules."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
from pathlib import Path

import pytest

from strata import discover as d
from strata.discover import (
    DiscoveryResult,
    Extension,
    SkipReason,
    discover,
    extract_image_basename,
    image_name_is_valid,
    search_path,
)
from strata.errors import StrataError
from strata.model import ExtClass, ImageType

ARCH = "x86-64"
SYSEXT_DIRS = ("etc/extensions", "run/extensions", "var/lib/extensions")


def make_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    for sub in SYSEXT_DIRS:
        (root / sub).mkdir(parents=True)
    return root


def raw(path: Path, content: bytes = b"junk") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def run(
    root: Path | str | None,
    cls: ExtClass = ExtClass.SYSEXT,
    *,
    search_dirs: list[str] | None = None,
) -> DiscoveryResult:
    return discover(cls, root=None if root is None else str(root), search_dirs=search_dirs,
                    arch=ARCH)


def names(res: DiscoveryResult) -> list[str]:
    return [e.name for e in res.extensions]


def skipped(res: DiscoveryResult) -> dict[str, SkipReason]:
    return {os.path.basename(s.path): s.reason for s in res.skipped}


# --- pure parts ----------------------------------------------------------------------------


def test_search_path_v257() -> None:
    assert search_path(ExtClass.SYSEXT) == (
        "/etc/extensions", "/run/extensions", "/var/lib/extensions")
    assert search_path(ExtClass.SYSEXT, initrd=True) == (
        "/etc/extensions", "/run/extensions", "/var/lib/extensions", "/.extra/sysext")
    assert search_path(ExtClass.CONFEXT) == (
        "/run/confexts", "/var/lib/confexts", "/usr/local/lib/confexts", "/usr/lib/confexts")
    assert search_path(ExtClass.CONFEXT, initrd=True) == (
        "/run/confexts", "/var/lib/confexts", "/usr/local/lib/confexts", "/.extra/confext")


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("foo", True), (".hidden", True), ("a b", True), ("é", True), ("\u0085", True),
        ("", False), (".", False), ("..", False), ("a/b", False), (".#foo", False),
        ("a\x01b", False), ("a\x7fb", False), ("a\tb", False), ("a\nb", False),
        ("\ufdd0", False), ("\ufffe", False), ("\U0001ffff", False),
        (b"\xff".decode("utf-8", "surrogateescape"), False),
        (b"\xc0\xaf".decode("utf-8", "surrogateescape"), False),  # overlong
        (b"\xed\xa0\x80".decode("utf-8", "surrogateescape"), False),  # surrogate
        ("x" * 255, True), ("x" * 256, False), ("é" * 127, True), ("é" * 128, False),
    ],
)
def test_image_name_is_valid(name: str, valid: bool) -> None:
    assert image_name_is_valid(name) is valid


@pytest.mark.parametrize(
    ("fname", "class_suffix", "formats", "expected"),
    [
        ("foo.raw", ".sysext", (".raw",), ("foo", ".raw")),
        ("foo.sysext.raw", ".sysext", (".raw",), ("foo", ".sysext.raw")),
        ("foo.confext.raw", ".sysext", (".raw",), ("foo.confext", ".raw")),
        ("foo.confext.raw", ".confext", (".raw",), ("foo", ".confext.raw")),
        ("foo.sysext.sysext.raw", ".sysext", (".raw",), ("foo.sysext", ".sysext.raw")),
        ("foo.img", ".sysext", (".raw",), None),
        (".raw", ".sysext", (".raw",), None),
        ("..raw", ".sysext", (".raw",), None),
        (".sysext.raw", ".sysext", (".raw",), None),
        ("foo", ".sysext", (".raw", ""), ("foo", "")),
        ("foo.raw", ".sysext", (".raw", ""), ("foo", ".raw")),
        ("foo.sysext", ".sysext", (".raw", ""), ("foo", ".sysext")),
        ("dir.raw", ".sysext", None, ("dir.raw", "")),
        ("dir.sysext", ".sysext", None, ("dir", ".sysext")),
        ("blk.sysext", None, None, ("blk.sysext", "")),
    ],
)
def test_extract_image_basename(
    fname: str, class_suffix: str | None, formats: tuple[str, ...] | None,
    expected: tuple[str, str] | None,
) -> None:
    assert extract_image_basename(fname, class_suffix, formats) == expected


def test_path_helpers() -> None:
    assert d.path_startswith("/usr/lib/confexts", "/usr")
    assert d.path_startswith("//usr//x", "/usr/")
    assert d.path_startswith("/usr", "/usr")
    assert not d.path_startswith("/usrx/lib", "/usr")
    assert not d.path_startswith("/tmp/root/usr/lib", "/usr")
    assert d.path_simplify("//a/./b//c/") == "/a/b/c"
    assert d.path_simplify("/a/../b") == "/a/../b"


# --- basic discovery -------------------------------------------------------------------------


def test_types_names_and_sorting(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    raw(root / "var/lib/extensions/zeta.raw")
    raw(root / "var/lib/extensions/alpha.sysext.raw")
    raw(root / "var/lib/extensions/beta.confext.raw")
    (root / "run/extensions/gamma").mkdir()
    (root / "run/extensions/delta.sysext").mkdir()
    (root / "etc/extensions/.hidden").mkdir()
    res = run(root)
    assert names(res) == [".hidden", "alpha", "beta.confext", "delta", "gamma", "zeta"]
    by = res.by_name()
    assert by["alpha"].type is ImageType.RAW
    assert by["alpha"].path == str(root / "var/lib/extensions/alpha.sysext.raw")
    assert by["alpha"].search_dir == "/var/lib/extensions"
    assert by["gamma"].type is ImageType.DIRECTORY
    assert by["delta"].path == str(root / "run/extensions/delta.sysext")
    assert all(e.ext_class is ExtClass.SYSEXT for e in res.extensions)


def test_confext_class(tmp_path: Path) -> None:
    root = tmp_path / "root"
    raw(root / "run/confexts/a.confext.raw")
    raw(root / "usr/lib/confexts/b.sysext.raw")
    raw(root / "etc/confexts/not-searched.raw")  # confext has no /etc/confexts
    res = run(root, ExtClass.CONFEXT)
    assert names(res) == ["a", "b.sysext"]
    assert res.by_name()["b.sysext"].search_dir == "/usr/lib/confexts"
    # under --root the path carries the root prefix, so it is not a vendor (/usr) path
    assert res.by_name()["b.sysext"].read_only is False


def test_missing_search_dirs_are_fine(tmp_path: Path) -> None:
    res = run(tmp_path)
    assert res.extensions == ()
    assert res.skipped == ()


def test_raw_metadata(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    p = raw(root / "var/lib/extensions/img.raw", b"x" * 5000)
    os.utime(p, ns=(1_700_000_000_123_456_789, 1_700_000_000_123_456_789))
    os.setxattr(p, "user.crtime_usec", (1_600_000_000_000_001).to_bytes(8, "little"))
    ro = raw(root / "var/lib/extensions/ro.raw")
    ro.chmod(0o444)
    res = run(root).by_name()
    img = res["img"]
    assert img.mtime_us == 1_700_000_000_123_456
    assert img.crtime_us == 1_600_000_000_000_001
    assert img.time_us == img.mtime_us
    assert img.read_only is False
    assert img.limit_bytes == 5000
    assert img.usage_bytes == os.stat(p).st_blocks * 512
    assert res["ro"].read_only is True


def test_directory_time_is_crtime(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    dpath = root / "var/lib/extensions/dir"
    dpath.mkdir()
    os.setxattr(dpath, "user.crtime_usec", (1_234_567).to_bytes(8, "little"))
    ext = run(root).by_name()["dir"]
    assert ext.mtime_us == 0
    assert ext.crtime_us == 1_234_567
    assert ext.time_us == 1_234_567


def _stat_btime_us(path: Path) -> int:
    """Birth time as GNU stat reports it (statx underneath), in µs."""
    out = subprocess.run(["stat", "-c", "%.9W", str(path)], check=True, capture_output=True,
                         text=True).stdout.strip()
    sec, _, frac = out.partition(".")
    return int(sec) * 1_000_000 + int(frac.ljust(9, "0")[:6])


def test_crtime_is_statx_btime(tmp_path: Path) -> None:
    p = raw(tmp_path / "f")
    expected = _stat_btime_us(p)
    if expected == 0:
        pytest.skip("this file system reports no birth time")
    assert d.crtime_us(str(p)) == expected
    # a symlink: followed by default, its own birth time otherwise
    (tmp_path / "l").symlink_to("f")
    assert d.crtime_us(str(tmp_path / "l")) == expected
    assert d.crtime_us(str(tmp_path / "l"), follow=False) == _stat_btime_us(tmp_path / "l")


def test_crtime_is_the_older_of_btime_and_xattr(tmp_path: Path) -> None:
    p = raw(tmp_path / "f")
    btime = _stat_btime_us(p)
    if btime == 0:
        pytest.skip("this file system reports no birth time")
    os.setxattr(p, "user.crtime_usec", (btime + 10).to_bytes(8, "little"))
    assert d.crtime_us(str(p)) == btime
    os.setxattr(p, "user.crtime_usec", (btime - 10).to_bytes(8, "little"))
    assert d.crtime_us(str(p)) == btime - 10


@pytest.mark.parametrize("bad", [b"\x00" * 8, b"\xff" * 8, b"\x01\x02"])
def test_crtime_ignores_invalid_xattr(tmp_path: Path, bad: bytes) -> None:
    p = raw(tmp_path / "f")
    os.setxattr(p, "user.crtime_usec", bad)
    assert d.crtime_us(str(p)) == _stat_btime_us(p)


def test_directory_time_matches_birth_time(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    dpath = root / "var/lib/extensions/dir"
    dpath.mkdir()
    ext = run(root).by_name()["dir"]
    assert ext.mtime_us == 0
    assert ext.time_us == ext.crtime_us == _stat_btime_us(dpath)


# --- entries that are skipped ----------------------------------------------------------------


def test_invalid_names_and_types_are_skipped(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    ext = root / "var/lib/extensions"
    raw(ext / "notes.txt")
    raw(ext / ".raw")
    raw(ext / ".#tmp.raw")
    raw(ext / "ctl\x01.raw")
    (ext / ".#tmpdir").mkdir()
    os.mkfifo(ext / "fifo.raw")
    os.mknod(ext / "sock.raw", stat.S_IFSOCK | 0o600)
    bad_utf8 = os.path.join(os.fsencode(ext), b"bad\xff.raw")
    with open(bad_utf8, "wb"):
        pass
    raw(ext / "good.raw")
    res = run(root)
    assert names(res) == ["good"]
    sk = skipped(res)
    assert sk["notes.txt"] is SkipReason.NOT_AN_IMAGE
    assert sk[".raw"] is SkipReason.NOT_AN_IMAGE
    assert sk[".#tmp.raw"] is SkipReason.NOT_AN_IMAGE
    assert sk["ctl\x01.raw"] is SkipReason.INVALID_NAME
    assert sk[".#tmpdir"] is SkipReason.NOT_AN_IMAGE
    assert sk["fifo.raw"] is SkipReason.UNSUPPORTED_TYPE
    assert sk["sock.raw"] is SkipReason.UNSUPPORTED_TYPE
    assert sk[os.fsdecode(b"bad\xff.raw")] is SkipReason.INVALID_NAME
    msg = next(s.message for s in res.skipped if s.path.endswith("notes.txt"))
    assert msg == "Skipping directory entry 'notes.txt', which doesn't look like an image."


# --- precedence, shadowing, masking ----------------------------------------------------------


def test_earlier_directory_wins(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    raw(root / "run/extensions/v9.raw")
    raw(root / "var/lib/extensions/v9.raw")
    raw(root / "var/lib/extensions/v10.raw")
    res = run(root)
    assert names(res) == ["v10", "v9"]
    assert res.by_name()["v9"].path == str(root / "run/extensions/v9.raw")
    shadow = [s for s in res.skipped if s.reason is SkipReason.SHADOWED]
    assert [s.path for s in shadow] == [str(root / "var/lib/extensions/v9.raw")]
    assert shadow[0].name == "v9"


def test_empty_directory_masks_later_image(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    (root / "etc/extensions/b").mkdir()
    raw(root / "var/lib/extensions/b.raw")
    ext = run(root).by_name()["b"]
    assert ext.type is ImageType.DIRECTORY
    assert ext.path == str(root / "etc/extensions/b")


def test_same_name_in_one_directory_follows_readdir_order(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    ext = root / "var/lib/extensions"
    (ext / "x").mkdir()
    raw(ext / "x.raw")
    raw(ext / "x.sysext.raw")
    first = next(n for n in os.listdir(ext) if n in ("x", "x.raw", "x.sysext.raw"))
    res = run(root)
    assert res.by_name()["x"].path == str(ext / first)
    assert sum(s.reason is SkipReason.SHADOWED for s in res.skipped) == 2


def test_explicit_search_dirs(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    raw(root / "a/one.raw")
    raw(root / "b/one.raw")
    raw(root / "b/two.raw")
    raw(root / "var/lib/extensions/three.raw")
    res = run(root, search_dirs=["/b", "/a"])
    assert names(res) == ["one", "two"]
    assert res.by_name()["one"].path == str(root / "b/one.raw")
    assert res.by_name()["one"].search_dir == "/b"


# --- symlinks --------------------------------------------------------------------------------


def _symlink_tree(tmp_path: Path) -> Path:
    store = tmp_path / "store"
    (store / "tree").mkdir(parents=True)
    raw(store / "img-1.2.raw", b"y" * 100)
    ext = tmp_path / "ext"
    ext.mkdir()
    (ext / "absdir").symlink_to(store / "tree")
    (ext / "reldir").symlink_to("../store/tree")
    (ext / "absimg.raw").symlink_to(store / "img-1.2.raw")
    (ext / "relimg.raw").symlink_to("../store/img-1.2.raw")
    (ext / "dangling.raw").symlink_to("../store/missing.raw")
    (ext / "masked.raw").symlink_to("/dev/null")
    return ext


def test_symlinks_followed_without_root(tmp_path: Path) -> None:
    ext = _symlink_tree(tmp_path)
    res = run(None, search_dirs=[str(ext)])
    by = res.by_name()
    assert sorted(by) == ["absdir", "absimg", "reldir", "relimg"]
    assert by["absdir"].type is ImageType.DIRECTORY
    assert by["reldir"].path == str(ext / "reldir")  # the entry, not the target
    assert by["relimg"].type is ImageType.RAW
    assert by["relimg"].limit_bytes == 100  # stat of the target
    target_mtime = os.stat(tmp_path / "store/img-1.2.raw").st_mtime_ns // 1000
    assert by["absimg"].mtime_us == target_mtime
    sk = skipped(res)
    assert sk["dangling.raw"] is SkipReason.DANGLING
    assert sk["masked.raw"] is SkipReason.UNSUPPORTED_TYPE  # a character device


@pytest.mark.parametrize("root", ["/", "//", "ROOT"])
def test_symlinks_not_followed_under_any_root(tmp_path: Path, root: str) -> None:
    ext = _symlink_tree(tmp_path)
    raw(ext / "plain.raw")
    real_root = str(tmp_path) if root == "ROOT" else root
    search = "/ext" if root == "ROOT" else str(ext)
    res = run(real_root, search_dirs=[search])
    assert names(res) == ["plain"]
    sk = skipped(res)
    for link in ("absdir", "reldir", "absimg.raw", "relimg.raw", "dangling.raw", "masked.raw"):
        assert sk[link] is SkipReason.SYMLINK_NOT_FOLLOWED
    msg = next(s.message for s in res.skipped if s.path.endswith("absdir"))
    assert msg == ("Skipping directory entry 'absdir', which is neither regular file, "
                   "directory nor block device.")


def test_search_dir_symlinks_resolve_inside_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    raw(root / "srv/ext/a.raw")
    (root / "etc").mkdir()
    (root / "etc/extensions").symlink_to("/srv/ext")  # absolute: inside the root
    (root / "run").mkdir()
    (root / "run/extensions").symlink_to("../../../../../../srv/ext2")  # '..' stops at root
    raw(root / "srv/ext2/b.raw")
    res = run(root)
    assert res.by_name()["a"].path == str(root / "srv/ext/a.raw")
    assert res.by_name()["a"].search_dir == "/etc/extensions"
    assert res.by_name()["b"].path == str(root / "srv/ext2/b.raw")


def test_chase(tmp_path: Path) -> None:
    (tmp_path / "a/b").mkdir(parents=True)
    (tmp_path / "a/up").symlink_to("..")
    (tmp_path / "loop").symlink_to("loop")
    (tmp_path / "file").write_bytes(b"")
    root = str(tmp_path)
    assert d.chase("/a/up/a/b", root) == f"{root}/a/b"
    assert d.chase("/../../a", root) == f"{root}/a"
    assert d.chase("/", root) == root
    with pytest.raises(OSError) as exc:
        d.chase("/loop", root)
    assert exc.value.errno == errno.ELOOP
    with pytest.raises(OSError) as exc:
        d.chase("/file/x", root)
    assert exc.value.errno == errno.ENOTDIR
    with pytest.raises(FileNotFoundError):
        d.chase("/nope", root)


def test_search_dir_that_is_a_file_fails(tmp_path: Path) -> None:
    root = tmp_path / "root"
    raw(root / "etc/extensions")
    with pytest.raises(StrataError) as exc:
        run(root)
    assert "Failed to discover images" in exc.value.message
    assert exc.value.errno == errno.ENOTDIR


def test_symlink_loop_entry_fails_without_root(tmp_path: Path) -> None:
    ext = tmp_path / "ext"
    ext.mkdir()
    (ext / "loop.raw").symlink_to("loop.raw")
    with pytest.raises(StrataError) as exc:
        run(None, search_dirs=[str(ext)])
    assert exc.value.errno == errno.ELOOP
    assert str(ext / "loop.raw") in exc.value.message
    # under a root the link is not followed, so it is merely skipped
    res = run(tmp_path, search_dirs=["/ext"])
    assert skipped(res)["loop.raw"] is SkipReason.SYMLINK_NOT_FOLLOWED


# --- versioned .v directories ----------------------------------------------------------------


def test_v_directories(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    ext = root / "var/lib/extensions"
    raw(ext / "app.raw.v/app_1.raw")
    raw(ext / "app.raw.v/app_2.raw")
    raw(ext / "app.raw.v/app_3+0.raw")  # no tries left
    raw(ext / "app.raw.v/app_9_arm64.raw")  # foreign architecture
    (ext / "tree.v/tree_1.0").mkdir(parents=True)
    (ext / "tree.v/tree_1.1_x86-64").mkdir()
    raw(ext / "sx.sysext.raw.v/sx_5.sysext.raw")
    raw(ext / "sx.sysext.raw.v/sx_6.raw")  # wrong suffix for this .v
    res = run(root)
    by = res.by_name()
    assert by["app"].path == str(ext / "app.raw.v/app_2.raw")
    assert by["app"].type is ImageType.RAW
    assert by["tree"].path == str(ext / "tree.v/tree_1.1_x86-64")
    assert by["tree"].type is ImageType.DIRECTORY
    assert by["sx"].path == str(ext / "sx.sysext.raw.v/sx_5.sysext.raw")


def test_v_directory_without_match_does_not_mask(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    (root / "etc/extensions/app.raw.v").mkdir()
    raw(root / "etc/extensions/app.raw.v/other_1.raw")
    raw(root / "var/lib/extensions/app.raw")
    res = run(root)
    assert res.by_name()["app"].path == str(root / "var/lib/extensions/app.raw")
    assert skipped(res)["app.raw.v"] is SkipReason.NO_MATCHING_VERSION


def test_v_directory_wrong_type_or_dangling_winner_skips_whole_dir(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    ext = root / "var/lib/extensions"
    raw(ext / "a.v/a_1.raw")  # "a.v" wants directories; a_1.raw is a file
    raw(ext / "b.raw.v/b_1.raw")
    (ext / "b.raw.v/b_2.raw").symlink_to("gone")
    res = run(root)
    assert names(res) == []
    sk = skipped(res)
    assert sk["a.v"] is SkipReason.PICK_FAILED
    assert sk["b.raw.v"] is SkipReason.PICK_FAILED
    msg = next(s.message for s in res.skipped if s.path.endswith("a.v"))
    assert msg.startswith(f"Failed to pick versioned image on '{ext / 'a.v'}', skipping: ")


def test_v_directory_symlinked_entries_are_followed_even_under_root(tmp_path: Path) -> None:
    # v257 opens the vpick winner relative to the host, following symlinks (v259+: inside root)
    root = make_root(tmp_path)
    store = raw(tmp_path / "store/app-7.raw", b"z" * 7)
    ext = root / "var/lib/extensions"
    (ext / "app.raw.v").mkdir()
    (ext / "app.raw.v/app_7.raw").symlink_to(store)
    res = run(root)
    app = res.by_name()["app"]
    assert app.path == str(ext / "app.raw.v/app_7.raw")
    assert app.limit_bytes == 7


def test_v_directory_name_must_be_valid(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    (root / "var/lib/extensions/.v").mkdir()
    (root / "var/lib/extensions/.raw.v").mkdir()
    res = run(root)
    assert skipped(res) == {".v": SkipReason.NOT_AN_IMAGE, ".raw.v": SkipReason.NOT_AN_IMAGE}
    assert "versioned image" in res.skipped[0].message


def test_shadowed_v_directory_is_still_picked_first(tmp_path: Path) -> None:
    # systemd runs vpick before the shadowing check, so a broken .v reports its pick failure
    root = make_root(tmp_path)
    (root / "etc/extensions/app").mkdir()
    raw(root / "var/lib/extensions/app.v/app_1.raw")
    res = run(root)
    assert skipped(res)["app.v"] is SkipReason.PICK_FAILED


# --- read-only detection ---------------------------------------------------------------------


def test_immutable_directory_is_read_only(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    dpath = root / "var/lib/extensions/imm"
    dpath.mkdir()
    (root / "var/lib/extensions/plain").mkdir()
    try:
        subprocess.run(["chattr", "+i", str(dpath)], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"cannot set the immutable flag here: {e}")
    try:
        by = run(root).by_name()
        assert by["imm"].read_only is True
        assert by["plain"].read_only is False
    finally:
        subprocess.run(["chattr", "-i", str(dpath)], check=True)


def _ro_bind_discovery(root: str) -> list[tuple[str, bool]]:
    from strata.kernel import libc

    ext = os.path.join(root, "var/lib/extensions")
    libc.mount(ext, ext, None, libc.MS_BIND)
    libc.mount(None, ext, None, libc.MS_BIND | libc.MS_REMOUNT | libc.MS_RDONLY)
    res = discover(ExtClass.SYSEXT, root=root, arch=ARCH)
    return [(e.name, e.read_only) for e in res.extensions]


@pytest.mark.privileged
def test_read_only_mount_makes_images_read_only(tmp_path: Path) -> None:
    from strata.kernel.ns import run_isolated

    root = make_root(tmp_path)
    raw(root / "var/lib/extensions/r.raw")
    (root / "var/lib/extensions/t").mkdir()
    (root / "etc/extensions/w").mkdir()
    got = run_isolated(_ro_bind_discovery, str(root))
    assert got == [("r", True), ("t", True), ("w", False)]


def test_block_device_keeps_its_name(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("creating a device node needs root")
    root = make_root(tmp_path)
    node = root / "var/lib/extensions/blk.sysext.raw"
    os.mknod(node, stat.S_IFBLK | 0o600, os.makedev(7, 255))
    res = run(root)
    ext = res.by_name()["blk.sysext.raw"]
    assert ext.type is ImageType.BLOCK
    assert ext.mtime_us == 0
    assert ext.crtime_us == 0
    assert ext.time_us == 0


def test_extension_time_us_prefers_mtime() -> None:
    e = Extension(name="a", path="/a", type=ImageType.DIRECTORY, ext_class=ExtClass.SYSEXT,
                  read_only=False, mtime_us=0, crtime_us=5, search_dir="/x")
    assert e.time_us == 5
    e2 = Extension(name="a", path="/a.raw", type=ImageType.RAW, ext_class=ExtClass.SYSEXT,
                   read_only=False, mtime_us=7, crtime_us=5, search_dir="/x")
    assert e2.time_us == 7
