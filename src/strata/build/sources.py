"""Staging the sources: every source goes into a fresh layer directory, which is then merged
into the staging tree (later sources win; a replaced file is a warning). Order: Dalec's
`dependencies.sysext` packages, then `sources:` as listed, then `services.units`.

Packages are extracted (strata.build.packages), never installed: no maintainer scripts, no
dependency resolution (as in Dalec). Names are fetched with one `apt-get download` into a
private temporary directory; which file is which package is read from the files themselves.
A package built for another architecture than the image's is refused.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Callable, Sequence
from pathlib import Path

from strata.build.spec import AptSource, FileSource, PackageSource, Source, Spec, TreeSource
from strata.build.tree import copy_tree, merge_into, owner_writable
from strata.errors import ErrorKind, StrataError
from strata.model import ExtClass
from strata.record import record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from strata.build.packages import PackageInfo

#: systemd architecture -> Debian architecture
DEB_ARCH = {
    "x86-64": "amd64", "x86": "i386", "arm64": "arm64", "arm": "armhf", "ppc64-le": "ppc64el",
    "s390x": "s390x", "riscv64": "riscv64", "mips64-le": "mips64el", "mips-le": "mipsel",
    "loongarch64": "loong64", "alpha": "alpha", "ia64": "ia64", "m68k": "m68k",
    "sparc64": "sparc64", "ppc64": "ppc64", "sh": "sh4",
}

#: systemd architecture -> rpm architectures
RPM_ARCH = {
    "x86-64": ("x86_64",), "x86": ("i686", "i586", "i486", "i386"), "arm64": ("aarch64",),
    "arm": ("armv7hl", "armhfp", "armv7l"), "ppc64-le": ("ppc64le",), "ppc64": ("ppc64",),
    "s390x": ("s390x",), "riscv64": ("riscv64",), "loongarch64": ("loongarch64",),
}

ARCH_INDEPENDENT = {"deb": "all", "rpm": "noarch"}


@record
class PackageRecord:
    """A package whose payload went into the image."""

    name: str
    version: str
    arch: str
    kind: str  # "deb" | "rpm"
    origin: str  # the file, or "apt-get download"


@record
class Staged:
    """What staging produced besides the tree."""

    packages: tuple[PackageRecord, ...]
    #: real modes of staged directories made owner-writable for the build (by relative path)
    dir_modes: dict[str, int]
    entries: int  # entries copied or extracted


Warn = Callable[[str], None]
Step = Callable[[str], None]


def arch_fits(kind: str, package_arch: str, architecture: str) -> bool | None:
    """Whether a package for `package_arch` belongs in an image for systemd `architecture`:
    True, False, or None when we cannot tell (no mapping for the architecture)."""
    if package_arch == ARCH_INDEPENDENT.get(kind):
        return True
    if kind == "deb":
        want = DEB_ARCH.get(architecture)
        return None if want is None else package_arch == want
    wants = RPM_ARCH.get(architecture)
    return None if wants is None else package_arch in wants


def apt_names(sources: Sequence[AptSource], architecture: str, host_architecture: str
              ) -> list[str]:
    """apt-get download arguments: `name[:arch][=version]`; the arch qualifier only when the
    image is for another architecture than the host's (apt then needs that architecture
    configured: dpkg --add-architecture)."""
    qualifier = ""
    if architecture not in ("_any", host_architecture):
        deb = DEB_ARCH.get(architecture)
        if deb is None:
            raise StrataError(f"no Debian architecture is known for {architecture}",
                              kind=ErrorKind.UNSUPPORTED)
        qualifier = f":{deb}"
    return [f"{s.name}{qualifier}" + (f"={s.version}" if s.version else "") for s in sources]


def effective_sources(spec: Spec) -> tuple[Source, ...]:
    """The spec's sources plus its unit files, in staging order."""
    base = ("etc/systemd/system" if spec.cls.classes == (ExtClass.CONFEXT,)
            else "usr/lib/systemd/system")
    units = tuple(FileSource(path=u, to=f"/{base}/{u.name}") for u in spec.services.units)
    return (*spec.sources, *units)


def wanted_apt(spec: Spec, architecture: str, step: Step) -> list[AptSource]:
    """The apt sources to fetch, without those Dalec's `arch:` restricts to other arches."""
    deb = DEB_ARCH.get(architecture)
    out = []
    for s in effective_sources(spec):
        if not isinstance(s, AptSource):
            continue
        if s.arches is not None and deb not in s.arches:
            step(f"Skipping {s.name}: only for {', '.join(s.arches)}")
            continue
        out.append(s)
    return out


def download(sources: Sequence[AptSource], dest: Path, *, architecture: str,
             host_architecture: str) -> dict[str, Path]:
    """Fetch the packages with one `apt-get download` into `dest`; name -> .deb file."""
    from strata.build import packages
    from strata.build.mkfs import apt_download_argv, require_tool
    from strata.run import run

    require_tool("apt-get", "download packages (sources of kind apt, dependencies.sysext)")
    names = apt_names(sources, architecture, host_architecture)
    argv = apt_download_argv(names, as_root=os.geteuid() == 0)
    try:
        run(argv, cwd=str(dest), env={"LC_ALL": "C"}, timeout=1800)
    except StrataError as e:
        raise StrataError(f"cannot download {', '.join(names)}: {e.message}",
                          kind=ErrorKind.NOT_FOUND if "Unable to locate" in e.message
                          else ErrorKind.SYSTEM,
                          hint="check the package names and versions, that apt-get update has "
                               "run, and that the repositories can be reached") from e
    found: dict[str, Path] = {}
    for f in sorted(dest.glob("*.deb")):
        found.setdefault(packages.package_info(str(f)).name, f)
    missing = [s.name for s in sources if s.name not in found]
    if missing:
        raise StrataError(f"apt-get download gave no package file for {', '.join(missing)}",
                          kind=ErrorKind.NOT_FOUND)
    return found


def stage(spec: Spec, raw: Path, work: Path, *, architecture: str, host_architecture: str,
          step: Step, warn: Warn, link: bool = False) -> Staged:
    """Stage every source of `spec` into the empty directory `raw`, using `work` for layers
    and downloads. With `link`, files of tree sources may be hard links to the originals
    (tree.copy_tree): only for builds whose staged files are never changed in place."""
    from strata.build import packages

    apt = wanted_apt(spec, architecture, step)
    fetched: dict[str, Path] = {}
    if apt:
        dl = work / "apt"
        dl.mkdir()
        step(f"Downloading {len(apt)} package{'s' if len(apt) != 1 else ''} with apt-get: "
             + ", ".join(s.name for s in apt))
        fetched = download(apt, dl, architecture=architecture,
                           host_architecture=host_architecture)

    records: list[PackageRecord] = []
    dir_modes: dict[str, int] = {}
    as_root = os.geteuid() == 0
    entries = 0
    wanted = set(id(s) for s in apt)
    for i, source in enumerate(effective_sources(spec)):
        if isinstance(source, AptSource) and id(source) not in wanted:
            continue
        layer = work / f"layer-{i}"
        layer.mkdir()
        label = _label(source)

        def on_special(member: str, kind: str, label: str = label) -> None:
            warn(f"{label}: {member.lstrip('/')}: {kind} left out (device nodes, fifos and "
                 "sockets cannot be shipped)")

        if isinstance(source, TreeSource):
            entries += _stage_tree(source, layer, on_special, link=link)
        elif isinstance(source, FileSource):
            _stage_file(source, layer)
            entries += 1
        else:
            path = source.path if isinstance(source, PackageSource) else fetched[source.name]
            step(f"Extracting {path.name}")
            info = packages.extract_package(str(path), str(layer), on_special=on_special)
            _check_arch(info, path.name, architecture, warn)
            records.append(PackageRecord(
                name=info.name, version=info.version, arch=info.arch, kind=info.kind,
                origin=str(path) if isinstance(source, PackageSource) else "apt-get download"))
            entries += sum(len(d) + len(f) for _, d, f in os.walk(layer))
        if not as_root:  # root moves entries through 0555 directories anyway
            for rel, mode in owner_writable(layer).items():
                if not os.path.lexists(raw / rel):
                    dir_modes.setdefault(rel, mode)

        def replaced(rel: str, label: str = label) -> None:
            warn(f"{label}: {rel} replaces the file an earlier source put there")

        merge_into(layer, raw, label, replaced)
    return Staged(packages=tuple(records), dir_modes=dir_modes, entries=entries)


def _label(source: Source) -> str:
    if isinstance(source, AptSource):
        return f"package {source.name}"
    return str(source.path)


def _check_arch(info: PackageInfo, label: str, architecture: str, warn: Warn) -> None:
    kind, arch = info.kind, info.arch
    if architecture == "_any":
        if arch != ARCH_INDEPENDENT.get(kind):
            warn(f"{label} is built for {arch}, but the image claims ARCHITECTURE=_any")
        return
    if arch_fits(kind, arch, architecture) is False:
        raise StrataError(f"{label} is built for {arch}, not for the image's architecture "
                          f"{architecture}", kind=ErrorKind.INVALID,
                          hint="use the package for the right architecture, or set "
                               "compatibility.architecture")


def _dest(layer: Path, image_path: str) -> Path:
    return layer / image_path.lstrip("/")


def _makedirs(layer: Path, path: Path) -> None:
    """mkdir -p below `layer`, mode 0755 whatever the umask (these modes reach the image)."""
    d = layer
    for part in path.relative_to(layer).parts:
        d = d / part
        if not d.is_dir():
            d.mkdir()
            os.chmod(d, 0o755)


def _stat_source(path: Path, what: str) -> os.stat_result:
    """stat() of a tree or file source, a missing one named as such."""
    try:
        return os.stat(path)
    except FileNotFoundError:
        raise StrataError(f"{path}: source {what} not found", kind=ErrorKind.NOT_FOUND) from None
    except OSError as e:
        raise StrataError.from_os(e, str(path)) from e


def _stage_tree(source: TreeSource, layer: Path, on_special: Callable[[str, str], None], *,
                link: bool) -> int:
    st = _stat_source(source.path, "tree")
    if not stat.S_ISDIR(st.st_mode):
        raise StrataError(f"{source.path}: a tree source must be a directory",
                          kind=ErrorKind.INVALID)
    dest = _dest(layer, source.to)
    _makedirs(layer, dest)
    return copy_tree(source.path, dest, on_special, link=link)


def _stage_file(source: FileSource, layer: Path) -> None:
    st = _stat_source(source.path, "file")
    if not stat.S_ISREG(st.st_mode):
        raise StrataError(f"{source.path}: a file source must be a regular file",
                          kind=ErrorKind.INVALID)
    dest = _dest(layer, source.to)
    _makedirs(layer, dest.parent)
    try:
        shutil.copyfile(source.path, dest)
    except OSError as e:
        raise StrataError.from_os(e, f"cannot copy {source.path}") from e
    os.chmod(dest, source.mode if source.mode is not None else stat.S_IMODE(st.st_mode))
