"""The image tools' argv builders (osbuild-style tables: options -> exact argv), UUIDs derived
from content, missing tools naming their Debian package, and output names."""

from __future__ import annotations

import re

import pytest

from strata.build import naming
from strata.build.mkfs import (
    MkfsOptions,
    apt_download_argv,
    crc32c,
    erofs_argv,
    erofs_superblock_with_uuid,
    mkfs_argv,
    require_tool,
    squashfs_argv,
    uuid_from_digest,
)
from strata.build.spec import ClassChoice, Compression, NamePattern, OutputFormat
from strata.errors import ErrorKind, StrataError
from strata.model import ExtClass

U = "6ac5dd58-f3fb-44a5-b57a-ec30b60760cc"
E, S = OutputFormat.EROFS, OutputFormat.SQUASHFS

EROFS_CASES: list[tuple[MkfsOptions, list[str]]] = [
    (MkfsOptions(E, Compression.LZ4HC, 0, uuid=U),
     ["mkfs.erofs", "-zlz4hc", "-T0", "-U", U, "--all-root", "-x-1", "--quiet", "o", "t"]),
    (MkfsOptions(E, Compression.LZ4HC, 1700000000, level=12, cluster_size=65536, uuid=U),
     ["mkfs.erofs", "-zlz4hc,12", "-C65536", "-T1700000000", "-U", U, "--all-root", "-x-1",
      "--quiet", "o", "t"]),
    (MkfsOptions(E, Compression.LZ4, 5, uuid=U, xattrs=True),
     ["mkfs.erofs", "-zlz4", "-T5", "-U", U, "--all-root", "--quiet", "o", "t"]),
    (MkfsOptions(E, Compression.NONE, 0, uuid=U),
     ["mkfs.erofs", "-T0", "-U", U, "--all-root", "-x-1", "--quiet", "o", "t"]),
]


@pytest.mark.parametrize(("opts", "argv"), EROFS_CASES)
def test_erofs_argv(opts: MkfsOptions, argv: list[str]) -> None:
    assert erofs_argv("t", "o", opts) == argv
    assert mkfs_argv("t", "o", opts) == argv


def test_erofs_needs_a_uuid() -> None:
    with pytest.raises(ValueError, match="UUID"):
        erofs_argv("t", "o", MkfsOptions(E, Compression.LZ4HC, 0))


SQUASHFS_CASES: list[tuple[MkfsOptions, list[str]]] = [
    (MkfsOptions(S, Compression.GZIP, 0),
     ["mksquashfs", "t", "o", "-noappend", "-all-root", "-mkfs-time", "0", "-all-time", "0",
      "-comp", "gzip", "-no-xattrs", "-no-progress", "-quiet"]),
    (MkfsOptions(S, Compression.ZSTD, 42, level=19, xattrs=True),
     ["mksquashfs", "t", "o", "-noappend", "-all-root", "-mkfs-time", "42", "-all-time", "42",
      "-comp", "zstd", "-Xcompression-level", "19", "-no-progress", "-quiet"]),
    (MkfsOptions(S, Compression.XZ, 0),
     ["mksquashfs", "t", "o", "-noappend", "-all-root", "-mkfs-time", "0", "-all-time", "0",
      "-comp", "xz", "-no-xattrs", "-no-progress", "-quiet"]),
    (MkfsOptions(S, Compression.NONE, 0),
     ["mksquashfs", "t", "o", "-noappend", "-all-root", "-mkfs-time", "0", "-all-time", "0",
      "-noI", "-noD", "-noF", "-noX", "-no-xattrs", "-no-progress", "-quiet"]),
]


@pytest.mark.parametrize(("opts", "argv"), SQUASHFS_CASES)
def test_squashfs_argv(opts: MkfsOptions, argv: list[str]) -> None:
    assert squashfs_argv("t", "o", opts) == argv
    assert mkfs_argv("t", "o", opts) == argv


def test_directory_is_not_an_image_format() -> None:
    with pytest.raises(ValueError, match="not an image format"):
        mkfs_argv("t", "o", MkfsOptions(OutputFormat.DIRECTORY, Compression.NONE, 0))


@pytest.mark.parametrize(("names", "root", "argv"), [
    (["jq"], False, ["apt-get", "download", "-q", "jq"]),
    (["jq", "zsh=5.9"], True,
     ["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", "jq", "zsh=5.9"]),
])
def test_apt_download_argv(names: list[str], root: bool, argv: list[str]) -> None:
    assert apt_download_argv(names, as_root=root) == argv


def test_crc32c_check_value() -> None:
    # the standard check value 0xE3069283 is with the final inversion erofs does not do
    assert crc32c(0xFFFFFFFF, b"123456789") ^ 0xFFFFFFFF == 0xE3069283


def test_superblock_patch_refuses_other_data() -> None:
    with pytest.raises(ValueError, match="not an erofs superblock"):
        erofs_superblock_with_uuid(b"\0" * 4096, U)
    with pytest.raises(ValueError, match="not an erofs superblock"):
        erofs_superblock_with_uuid(b"short", U)


def test_uuid_from_digest_is_stable_and_content_bound() -> None:
    a = uuid_from_digest(b"\x01" * 32)
    assert a == uuid_from_digest(b"\x01" * 32)
    assert a != uuid_from_digest(b"\x02" * 32)
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", a)


@pytest.mark.parametrize(("tool", "package"), [
    ("mkfs.erofs", "erofs-utils"), ("mksquashfs", "squashfs-tools"), ("apt-get", "apt"),
    ("rpm2cpio", "rpm2cpio"),
])
def test_missing_tool_names_the_package(tool: str, package: str,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(StrataError) as e:
        require_tool(tool, "do things")
    assert e.value.kind is ErrorKind.NOT_FOUND
    assert e.value.message == f"{tool} not found: it is needed to do things"
    assert e.value.hint == f"install the Debian package {package} (apt-get install {package})"


# --------------------------------------------------------------------------- names

@pytest.mark.parametrize(("pattern", "arch", "target", "stem"), [
    (NamePattern.DEFAULT, "x86-64", None, "tools-1.2-x86-64"),
    (NamePattern.DEFAULT, "_any", None, "tools-1.2-any"),
    (NamePattern.DALEC, "x86-64", "azlinux3", "tools-v1.2-3-azlinux3-x86-64"),
    (NamePattern.BARE, "arm64", None, "tools"),
])
def test_stem(pattern: NamePattern, arch: str, target: str | None, stem: str) -> None:
    assert naming.stem(pattern, name="tools", version="1.2", revision="3", architecture=arch,
                       target=target) == stem


@pytest.mark.parametrize(("choice", "fmt", "names"), [
    (ClassChoice.SYSEXT, E, {ExtClass.SYSEXT: "s.raw"}),
    (ClassChoice.CONFEXT, S, {ExtClass.CONFEXT: "s.raw"}),
    (ClassChoice.BOTH, E, {ExtClass.SYSEXT: "s.raw", ExtClass.CONFEXT: "s.confext.raw"}),
    (ClassChoice.BOTH, OutputFormat.DIRECTORY,
     {ExtClass.SYSEXT: "s", ExtClass.CONFEXT: "s.confext"}),
])
def test_file_names(choice: ClassChoice, fmt: OutputFormat, names: dict[ExtClass, str]) -> None:
    assert naming.file_names("s", choice, fmt) == names


@pytest.mark.parametrize(("file_name", "aliases"), [
    ("tools.raw", ()),
    ("tools", ()),
    ("tools-1.2-x86-64.raw", ("tools-1.2-x86-64",)),
    ("tools-1.2-x86-64.confext.raw", ("tools-1.2-x86-64", "tools-1.2-x86-64.confext")),
    ("tools.confext.raw", ("tools.confext",)),
])
def test_release_aliases(file_name: str, aliases: tuple[str, ...]) -> None:
    assert naming.release_aliases("tools", file_name) == aliases


def test_release_aliases_match_systemds_image_name() -> None:
    """The alias is exactly what strata.release (systemd's rules) derives from the file."""
    from strata.release import image_name_from_path

    for f in ("tools-1.2-x86-64.raw", "tools-1.2-x86-64.confext.raw"):
        assert image_name_from_path(f"/var/lib/extensions/{f}") in \
            (*naming.release_aliases("tools", f), "tools")
