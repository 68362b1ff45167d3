"""Shared set-up for the strata check/inspect tests (no tests here): extension trees, fake ELF
headers, real programs and libraries from this machine, and fake host roots."""

from __future__ import annotations

import os
import shutil
import struct
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from strata.check.elf import ElfIdent, parse_ident, read_info
from strata.check.findings import Finding, ImageReport, Rule, Severity
from strata.check.host import HostView
from strata.check.runner import check_images
from strata.model import ExtClass
from tests.helpers import Files, release_text, write_tree

SYSEXT_REL = "usr/lib/extension-release.d"
CONFEXT_REL = "etc/extension-release.d"
ANY = {"ID": "_any"}
PACKAGES = {"libjq.so.1": "libjq1", "libonig.so.5": "libonig5"}


def make_image(base: Path, name: str, files: Files, release: Mapping[str, str] | None = ANY,
               *, confext: bool = False, release_name: str | None = None) -> Path:
    """A directory extension `base/name` with its release file (unless `release` is None)."""
    tree = base / name
    tree.mkdir(parents=True, exist_ok=True)
    all_files: dict[str, str | bytes | int] = dict(files)
    if release is not None:
        rel_dir = CONFEXT_REL if confext else SYSEXT_REL
        all_files[f"{rel_dir}/extension-release.{release_name or name}"] = \
            release_text(release)
    write_tree(tree, all_files)
    return tree


def fake_elf(machine: int, *, bits: int = 64, little: bool = True, etype: int = 3) -> bytes:
    """A valid, empty ELF file header (no segments, no sections) for `machine`."""
    order = "<" if little else ">"
    ident = b"\x7fELF" + bytes([bits // 32, 1 if little else 2, 1]) + bytes(9)
    if bits == 64:
        rest = struct.pack(order + "HHIQQQIHHHHHH", etype, machine, 1, 0, 0, 0, 0, 64, 56, 0,
                           64, 0, 0)
    else:
        rest = struct.pack(order + "HHIIIIIHHHHHH", etype, machine, 1, 0, 0, 0, 0, 52, 32, 0,
                           40, 0, 0)
    return ident + rest


def ident_of(path: str) -> ElfIdent:
    with open(path, "rb") as f:
        ident = parse_ident(f.read(20))
    assert ident is not None, path
    return ident


def this_python() -> ElfIdent:
    return ident_of(os.path.realpath(sys.executable))


def machine_lib(name: str) -> str | None:
    """Where this machine's loader finds library `name` for programs like this Python."""
    found = HostView("/").find_library(name, this_python())
    return None if found is None else found


def program() -> str:
    """A real dynamically linked program of this machine: jq if installed (it needs libjq,
    which needs libonig), else true."""
    return "/usr/bin/jq" if os.path.exists("/usr/bin/jq") else "/bin/true"


def copy_into(root: Path, src: str, dest: str | None = None) -> Path:
    """Copy the file `src` of this machine to `dest` (default: the same path) under root."""
    target = root / (dest or src).lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, target)
    shutil.copymode(src, target)
    return target


def copy_lib(root: Path, name: str) -> str:
    """Copy this machine's library `name` (as the loader finds it) into the image, under its
    own name in the directory it is in here; returns that image path."""
    path = machine_lib(name)
    assert path is not None, name
    dest = os.path.join(os.path.dirname(path), name)
    copy_into(root, path, dest)
    return dest


def patch_glibc(libc: Path, newest: tuple[int, ...]) -> None:
    """Make a copy of libc.so.6 look like an older glibc: every GLIBC_x.y version newer than
    `newest` is renamed XLIBC_x.y in place (same length, so nothing moves)."""
    with open(libc, "rb") as f:
        info = read_info(f)
    from strata.check.elf import glibc_version

    data = bytearray(libc.read_bytes())
    for name in info.version_defs:
        v = glibc_version(name)
        if v is not None and v > newest:
            old = b"\0" + name.encode() + b"\0"
            new = b"\0X" + name.encode()[1:] + b"\0"
            assert old in data, name
            data[:] = data.replace(old, new)
    libc.write_bytes(bytes(data))


def make_host(base: Path, files: Files | None = None, *,
              os_release: Mapping[str, str] | None = None, libc: bool = True,
              glibc_upto: tuple[int, ...] | None = None) -> Path:
    """A fake host root: /etc/os-release (Debian 12 unless given), this machine's glibc
    (libc.so.6, libm.so.6 and the dynamic loader, at their paths here; libc optionally made
    older), and `files`."""
    root = base / "host"
    fields = {"ID": "debian", "VERSION_ID": "12"} if os_release is None else os_release
    write_tree(root, {"etc/os-release": release_text(fields), **(files or {})})
    if libc:
        copied = root / copy_lib(root, "libc.so.6").lstrip("/")
        if glibc_upto is not None:
            patch_glibc(copied, glibc_upto)
        copy_lib(root, "libm.so.6")
        for loader in _loaders():
            copy_into(root, loader)
    return root


def _loaders() -> list[str]:
    with open(os.path.realpath(program()), "rb") as f:
        info = read_info(f)
    if info.interpreter is None:
        return []
    real = os.path.realpath(info.interpreter)
    return [real] if real == info.interpreter else [real, info.interpreter]


def run_check(paths: Sequence[Path], *, host: Path | None = None,
              cls: ExtClass | None = None,
              packages: Mapping[str, str] = PACKAGES) -> list[ImageReport]:
    return check_images([str(p) for p in paths], host=None if host is None else str(host),
                        cls=cls, packages=lambda names: {n: packages[n] for n in names
                                                         if n in packages})


def findings(path: Path, *, host: Path | None = None, cls: ExtClass | None = None,
             packages: Mapping[str, str] = PACKAGES) -> list[Finding]:
    """The findings for the one image at `path` (worst first)."""
    return list(run_check([path], host=host, cls=cls, packages=packages)[0].findings)


def by_rule(found: Sequence[Finding], rule: Rule) -> list[tuple[Severity, str]]:
    return [(f.severity, f.path) for f in found if f.rule is rule]
