"""`strata build`: spec -> staged sources -> normalised trees -> generated files -> images.

All work happens in a staging directory inside the output directory (so that directory
outputs are one rename away and nothing crosses file systems); images are written to hidden
temporary files there and renamed into place only when every image of the build succeeded.
A failed build leaves no output file and no staging directory behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from strata.build import naming
from strata.build.mkfs import (
    PLACEHOLDER_UUID,
    MkfsOptions,
    mkfs_argv,
    require_tool,
    set_erofs_uuid,
    uuid_from_digest,
)
from strata.build.normalize import Dropped, Rules, Target, merged_bin_for, normalize_tree
from strata.build.release import (
    Content,
    release_pairs,
    render,
    tmpfiles_path,
    tmpfiles_text,
    upholds_path,
    upholds_text,
)
from strata.build.report import BuildReport, OutputFile, Progress
from strata.build.spec import EPOCH_MAX, EtcMode, OutputFormat, PackageSource, Spec
from strata.build.tree import TreeInfo, finish_tree, remove_tree
from strata.errors import ErrorKind, StrataError
from strata.model import ExtClass
from strata.record import record, replace

if TYPE_CHECKING:
    from strata.build.ddi import DdiInfo

_MODULE_SUFFIXES = (".ko", ".ko.xz", ".ko.zst", ".ko.gz")


@record
class BuildRequest:
    spec: Spec
    output_dir: Path
    source_date_epoch: int | None = None  # from the command line: beats the rest
    keep_staging: bool = False  # debugging and benchmarks: leave the staged trees


def resolve_epoch(cli: int | None, env: Mapping[str, str], spec: int | None) -> int:
    """SOURCE_DATE_EPOCH: the command line, else the environment (reproducible-builds.org: a
    build tool must honour it), else the spec, else 0."""
    if cli is not None:
        return cli
    raw = env.get("SOURCE_DATE_EPOCH")
    if raw is not None and raw != "":
        if not raw.isdigit() or int(raw) > EPOCH_MAX:
            raise StrataError(f"SOURCE_DATE_EPOCH={raw}: not a number of seconds between 0 and "
                              f"{EPOCH_MAX}", kind=ErrorKind.USAGE)
        return int(raw)
    return spec if spec is not None else 0


def _mkdirs(root: Path, rel: str) -> Path:
    d = root
    for part in rel.split("/"):
        d = d / part
        if not d.is_dir():
            d.mkdir()
            os.chmod(d, 0o755)
    return d


def _write_new(root: Path, rel: str, text: str, why: str) -> None:
    """Write a generated file; the sources must not have shipped one there."""
    path = root / rel
    if os.path.lexists(path):
        raise StrataError(f"{rel}: the sources ship this file, which the build writes itself "
                          f"({why})", kind=ErrorKind.INVALID)
    _mkdirs(root, os.path.dirname(rel))
    path.write_text(text, encoding="utf-8")
    os.chmod(path, 0o644)


def _any_below(root: Path, rel: str, accept: tuple[str, ...] | None = None) -> bool:
    top = root / rel
    if not top.is_dir() or top.is_symlink():
        return False
    for _dirpath, _dirs, files in os.walk(top):
        for f in files:
            if accept is None or f.endswith(accept):
                return True
    return False


def _content(tree: Path, cls: ExtClass, tmpfiles: str | None) -> Content:
    unit_dir = "usr/lib/systemd/system" if cls is ExtClass.SYSEXT else "etc/systemd/system"
    return Content(units=_any_below(tree, unit_dir),
                   modules=cls is ExtClass.SYSEXT
                   and _any_below(tree, "usr/lib/modules", _MODULE_SUFFIXES),
                   tmpfiles=tmpfiles)


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _generate(spec: Spec, cls: ExtClass, tree: Path, *, architecture: str, file_name: str,
              progress: Progress) -> None:
    """Write the builder's own files into `cls`'s tree: tmpfiles lines for a Dalec-style /etc,
    the Upholds= drop-in, and the extension-release file with its aliases."""
    tmpfiles = None
    if cls is ExtClass.SYSEXT and spec.etc_mode is EtcMode.TMPFILES:
        etc = tree / "usr/share" / spec.name / "etc"
        if etc.is_dir():
            entries = sorted(os.listdir(etc))
            if entries:
                tmpfiles = tmpfiles_path(spec.name)
                _write_new(tree, tmpfiles, tmpfiles_text(spec.name, entries),
                           "tmpfiles lines for /etc")
    primary = spec.cls.classes[0] is cls
    if spec.services.upholds and primary:
        _write_new(tree, upholds_path(spec.name, cls), upholds_text(spec.services.upholds),
                   "services.upholds")
    content = _content(tree, cls, tmpfiles)
    unit_dir = "usr/lib/systemd/system" if cls is ExtClass.SYSEXT else "etc/systemd/system"
    for unit in dict.fromkeys((*spec.services.restart, *spec.services.reload_or_restart,
                               *spec.services.upholds)):
        if primary and not os.path.lexists(tree / unit_dir / unit):
            progress.warn(f"{unit} is not in the image ({unit_dir}): the host must have it")
    pairs = release_pairs(spec, cls, architecture=architecture, content=content)
    rel_dir = cls.release_dir
    _write_new(tree, f"{rel_dir}/extension-release.{spec.name}", render(pairs),
               "extension-release")
    for alias in naming.release_aliases(spec.name, file_name):
        os.symlink(f"extension-release.{spec.name}", tree / rel_dir / f"extension-release.{alias}")


def build(request: BuildRequest, progress: Progress | None = None) -> BuildReport:
    """Build the images of `request.spec` into `request.output_dir`."""
    from strata import arch
    from strata.build import sources

    spec = request.spec
    progress = progress or Progress()
    host_arch = arch.native()
    architecture = spec.compatibility.architecture or host_arch
    epoch = resolve_epoch(request.source_date_epoch, os.environ, spec.source_date_epoch)
    fmt = spec.output.format
    stem = naming.stem(spec.output.name, name=spec.name, version=spec.version,
                       revision=spec.revision, architecture=architecture,
                       target=spec.output.target)
    names = naming.file_names(stem, spec.cls, fmt)

    # tools first: a missing one should not cost a download
    if fmt is not OutputFormat.DIRECTORY:
        from strata.build.mkfs import TOOLS

        fs = spec.output.fs_format
        require_tool(TOOLS[fs], f"build {fs.value} images")
    if fmt is OutputFormat.DDI:
        _check_ddi(spec, architecture, host_arch, progress)
    if any(isinstance(s, PackageSource) and s.path.suffix == ".rpm"
           for s in sources.effective_sources(spec)):
        require_tool("rpm2cpio", "extract .rpm packages")

    out_dir = Path(os.path.abspath(request.output_dir))
    created = not os.path.lexists(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".strata-build-", dir=out_dir))
    except OSError as e:
        raise StrataError.from_os(e, f"cannot use output directory {out_dir}") from e
    progress.step(f"Building {spec.name} {spec.version} for {architecture} "
                  f"(SOURCE_DATE_EPOCH={epoch}) in {out_dir}")
    c = spec.compatibility
    if c.id == "_any" and (c.version_id is not None or c.level is not None):
        progress.warn("compatibility.version_id and .level are not checked by systemd when "
                      "the ID is _any: set compatibility.id")
    temps: dict[ExtClass, Path] = {}
    outputs: list[OutputFile] = []
    try:
        raw, work = staging / "raw", staging / "work"
        raw.mkdir()
        work.mkdir()
        # images: the tools only read the staged files, and set owners and times themselves,
        # so tree files may be hard links; a directory output is the staged tree itself
        is_image = fmt is not OutputFormat.DIRECTORY
        staged = sources.stage(spec, raw, work, architecture=architecture,
                               host_architecture=host_arch, step=progress.step,
                               warn=progress.warn, link=is_image)
        remove_tree(work)
        progress.step(f"Staged {staged.entries} entries; normalising the tree")
        trees: dict[Target, Path] = {}
        for cls in spec.cls.classes:
            t = Target.SYSEXT if cls is ExtClass.SYSEXT else Target.CONFEXT
            trees[t] = staging / cls.value
            trees[t].mkdir()
        rules = Rules(name=spec.name, cls=spec.cls, etc=spec.etc_mode,
                      merged_bin=merged_bin_for(spec.normalize.merged_bin,
                                                spec.compatibility.id),
                      exclude=spec.normalize.exclude)
        quiet = 0

        def dropped(d: Dropped) -> None:
            nonlocal quiet
            if d.quiet:
                quiet += d.count
                progress.detail(f"{d.path}: left out: {d.reason}")
                return
            many = f" ({d.count} entries)" if d.count > 1 else ""
            progress.warn(f"{d.path}: left out{many}: {d.reason}")

        placed = normalize_tree(raw, trees, rules, dropped, staged.dir_modes)
        remove_tree(raw)
        if quiet:
            progress.step(f"Left out {quiet} entries (exclude patterns, compatibility links)")
        if placed == 0:
            progress.warn("the sources put nothing into the image")

        for cls in spec.cls.classes:
            tree = trees[Target.SYSEXT if cls is ExtClass.SYSEXT else Target.CONFEXT]
            if placed and not os.listdir(tree):
                progress.warn(f"the {cls.value} image gets nothing from the sources")
            _generate(spec, cls, tree, architecture=architecture, file_name=names[cls],
                      progress=progress)
            outputs.append(_write_image(spec, cls, tree, out_dir=out_dir,
                                        name=names[cls], epoch=epoch, temps=temps,
                                        progress=progress,
                                        architecture=_ddi_arch(architecture, host_arch)))

        _commit(temps, out_dir, names)
        temps.clear()
    except BaseException:
        for tmp in temps.values():
            remove_tree(tmp)
        if not request.keep_staging:
            remove_tree(staging)
            if created:
                with contextlib.suppress(OSError):
                    out_dir.rmdir()  # only if empty: what we made for this build
        raise
    kept = None
    if request.keep_staging:
        kept = str(staging)
    else:
        remove_tree(staging)
    for o in outputs:
        progress.step(f"Wrote {o.path}")
    return BuildReport(name=spec.name, version=spec.version, architecture=architecture,
                       source_date_epoch=epoch, outputs=tuple(outputs),
                       packages=staged.packages, warnings=tuple(progress.warnings),
                       seconds=progress.elapsed(), staging=kept)


def _ddi_arch(architecture: str, host_arch: str) -> str:
    """The architecture of a DDI's partition types: an `_any` extension gets the build
    host's (the DPS has no architecture-independent root partition type with verity)."""
    return host_arch if architecture == "_any" else architecture


def _check_ddi(spec: Spec, architecture: str, host_arch: str, progress: Progress) -> None:
    """Before any work: the verity tools, the key files, a known partition type."""
    from strata.build.ddi import require_tools
    from strata.images.gpt import PartitionRole, type_uuid_for

    o = spec.output
    require_tools(o.verity)
    for what, path in (("key", o.key), ("certificate", o.certificate)):
        if path is not None and not path.is_file():
            raise StrataError(f"output.{what}: {path}: No such file", kind=ErrorKind.NOT_FOUND)
    arch = _ddi_arch(architecture, host_arch)
    try:
        type_uuid_for(PartitionRole.ROOT, arch)
    except KeyError:
        raise StrataError(f"no Discoverable Partitions root partition type for architecture "
                          f"{arch}", kind=ErrorKind.INVALID) from None
    if architecture == "_any":
        progress.warn(f"a disk image's partition types are per architecture: the root "
                      f"partition is typed for {arch} (set compatibility.architecture)")


def _write_image(spec: Spec, cls: ExtClass, tree: Path, *, out_dir: Path, name: str,
                 epoch: int, temps: dict[ExtClass, Path], progress: Progress,
                 architecture: str) -> OutputFile:
    """Make `cls`'s output from its finished tree. For images the tool runs on a thread while
    this one digests the tree (the tool only reads it; mkfs.erofs uses one core): the erofs
    UUID derived from the digest is written into the image afterwards (mkfs.set_erofs_uuid),
    giving the same bytes as the reported command. A DDI wraps that image (build/ddi.py)."""
    fmt = spec.output.format
    final = out_dir / name

    def output(info: TreeInfo, size: int, sha256: str | None, uuid: str | None,
               command: tuple[str, ...] = ()) -> OutputFile:
        return OutputFile(cls=cls.value, path=str(final), format=fmt.value, size=size,
                          sha256=sha256, content_sha256=info.digest, uuid=uuid,
                          files=info.files, directories=info.directories,
                          symlinks=info.symlinks, command=command)

    if fmt is OutputFormat.DIRECTORY:
        info = finish_tree(tree, epoch, clamp_times=True)
        temps[cls] = tree
        if os.geteuid() == 0:
            _all_root(tree)
        else:
            progress.warn("not running as root: the directory keeps the builder's owner "
                          "instead of root:root")
        return output(info, info.size, None, None)

    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=out_dir)
    os.close(fd)
    temps[cls] = Path(tmp)
    if fmt is OutputFormat.DDI:
        fs_tmp = tmp + ".fs"
        try:
            out = _write_fs(spec, tree, fs_tmp, final=str(final), name=name, epoch=epoch,
                            progress=progress, what=cls.value)
            progress.step(f"Wrapping the {cls.value} image in a disk image "
                          f"(verity: {spec.output.verity.value})")
            ddi = _make_ddi(spec, fs_tmp, tmp, architecture)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(fs_tmp)
        if ddi.root_hash is not None:
            progress.step(f"Root hash of the {cls.value} image: {ddi.root_hash}")
        os.chmod(tmp, 0o644)
        return replace(out(fmt), size=os.path.getsize(tmp), sha256=_sha256(Path(tmp)))
    return _write_fs(spec, tree, tmp, final=str(final), name=name, epoch=epoch,
                     progress=progress, what=cls.value)(fmt)


def _make_ddi(spec: Spec, fs_image: str, out: str, architecture: str) -> DdiInfo:
    from strata.build.ddi import make_ddi

    o = spec.output
    return make_ddi(fs_image, out, architecture=architecture, verity=o.verity,
                    key=str(o.key) if o.key is not None else None,
                    certificate=str(o.certificate) if o.certificate is not None else None)


def _write_fs(spec: Spec, tree: Path, tmp: str, *, final: str, name: str, epoch: int,
              progress: Progress, what: str) -> Callable[[OutputFormat], OutputFile]:
    """Make the file system image at `tmp`; a function giving its OutputFile under a format
    (the image's own, or ddi)."""
    import threading

    from strata.run import run

    fs = spec.output.fs_format
    opts = MkfsOptions(format=fs, compression=spec.output.effective_compression, epoch=epoch,
                       level=spec.output.level, cluster_size=spec.output.cluster_size,
                       uuid=PLACEHOLDER_UUID if fs is OutputFormat.EROFS else None,
                       xattrs=spec.output.xattrs)
    argv = mkfs_argv(str(tree), tmp, opts)
    progress.step(f"Writing the {what} image with {argv[0]}")
    failure: list[BaseException] = []

    def make() -> None:
        try:
            run(argv, timeout=None)
        except BaseException as e:  # handed to the main thread
            failure.append(e)

    with _without_env("SOURCE_DATE_EPOCH"):
        worker = threading.Thread(target=make, name="mkfs")
        worker.start()
        try:
            info = finish_tree(tree, epoch, clamp_times=False)
        finally:
            worker.join()
    if failure:
        raise failure[0]
    image_uuid = None
    if fs is OutputFormat.EROFS:
        image_uuid = uuid_from_digest(bytes.fromhex(info.digest) + name.encode())
        set_erofs_uuid(tmp, image_uuid)
        opts = replace(opts, uuid=image_uuid)
    os.chmod(tmp, 0o644)
    shown = tuple(final if a == tmp else a for a in mkfs_argv(str(tree), tmp, opts))
    size, digest = os.path.getsize(tmp), _sha256(Path(tmp))

    def out(fmt: OutputFormat) -> OutputFile:
        return OutputFile(cls=what, path=final, format=fmt.value, size=size, sha256=digest,
                          content_sha256=info.digest, uuid=image_uuid, files=info.files,
                          directories=info.directories, symlinks=info.symlinks,
                          command=shown)
    return out


@contextlib.contextmanager
def _without_env(name: str) -> Iterator[None]:
    """Hide an environment variable from the tools run in the block. SOURCE_DATE_EPOCH is
    given to them as options; from the environment mksquashfs refuses it next to those options
    ("can't be used at the same time") and mkfs.erofs clamps with it on top of -T. strata.run
    passes the whole environment, so it is taken out of it for the call."""
    saved = os.environ.pop(name, None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ[name] = saved


def _all_root(tree: Path) -> None:
    """chown -R 0:0 for a directory output, keeping setuid/setgid bits (chown clears them)."""
    import stat

    paths = [str(tree)]
    for dirpath, dirnames, filenames in os.walk(tree):
        paths += [os.path.join(dirpath, n) for n in (*dirnames, *filenames)]
    for p in paths:
        st = os.lstat(p)
        if st.st_uid == 0 and st.st_gid == 0:
            continue
        os.lchown(p, 0, 0)
        if not stat.S_ISLNK(st.st_mode):
            os.chmod(p, stat.S_IMODE(st.st_mode))


def _commit(temps: dict[ExtClass, Path], out_dir: Path, names: dict[ExtClass, str]) -> None:
    """Move every finished output into place; a directory output replaces an old one."""
    done: list[Path] = []
    try:
        for cls, tmp in temps.items():
            final = out_dir / names[cls]
            if tmp.is_dir() and os.path.lexists(final):
                old = Path(tempfile.mkdtemp(prefix=f".{names[cls]}.old-", dir=out_dir))
                os.rename(final, old / "tree")
                os.rename(tmp, final)
                remove_tree(old)
            else:
                os.replace(tmp, final)
            done.append(final)
    except OSError as e:
        for path in done:
            remove_tree(path)
        raise StrataError.from_os(e, f"cannot move the output into {out_dir}") from e
