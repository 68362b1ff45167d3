"""Everything the rules read about one image, collected once: its tree (one walk), its release
files, its class, and the dynamic data of its ELF files. Rules never touch the image again,
except to compare file contents (`read`)."""

from __future__ import annotations

import functools
import io
import os
import stat as _stat
from collections.abc import Mapping
from typing import TYPE_CHECKING, BinaryIO

from strata.check.elf import ElfIdent, ElfInfo, read_info
from strata.check.host import HostView
from strata.check.libs import ld_so_conf_dirs, search_dirs
from strata.check.tree import Tree, chase, join, scan, under
from strata.errors import ErrorKind, StrataError
from strata.images.base import DirectoryFS, FileKind, ImageFS
from strata.model import ExtClass
from strata.record import record
from strata.release import ReleaseLookup

if TYPE_CHECKING:
    from strata.images import ImageLayout

#: ELF files below these are not programs or libraries the host runs: separate debug info,
#: firmware for other processors
NOT_RUN = ("/usr/lib/debug", "/usr/lib/firmware", "/lib/firmware")


@record
class ImageView:
    """One image, read. `name` is the image name systemd would use (file name without .raw
    and class suffix); `classes` are those checked: --class, else those with a release file,
    else guessed from the content."""

    path: str
    name: str
    fs: ImageFS
    layout: ImageLayout | None
    classes: tuple[ExtClass, ...]
    #: the release lookup per class (both classes, whatever `classes` is)
    releases: Mapping[ExtClass, ReleaseLookup]
    #: a release file that exists but is malformed, per class
    release_errors: Mapping[ExtClass, str]
    tree: Tree
    elf: Mapping[str, ElfInfo]
    elf_errors: Mapping[str, str]
    #: sha256 of file contents already read (ELF files of images), filled as needed
    digests: dict[str, str]

    @functools.cached_property
    def hierarchies(self) -> tuple[str, ...]:
        return tuple(h for c in self.classes for h in c.default_hierarchies)

    @property
    def format(self) -> str:
        if self.layout is None:
            return "directory"
        if self.layout.partition is not None:
            return f"gpt/{self.layout.fs_format.value}"
        return self.layout.fs_format.value

    def merged(self, path: str) -> bool:
        """Whether `path` is inside a hierarchy this image is merged into."""
        return any(under(path, h) for h in self.hierarchies)

    def release_fields(self) -> Mapping[str, str] | None:
        """The fields of the first checked class's release file that was found."""
        for c in self.classes:
            fields = self.releases[c].fields
            if fields is not None:
                return fields
        return None

    def release_paths(self) -> set[str]:
        return {r.path for r in self.releases.values() if r.path is not None}

    def read(self, path: str) -> bytes:
        return self.fs.read(path)

    def digest(self, path: str) -> str:
        """sha256 of the regular file at `path`, reading it at most once per check: the
        readers of compressed images decompress on every read."""
        if path not in self.digests:
            import hashlib

            self.digests[path] = hashlib.sha256(self.read(path)).hexdigest()
        return self.digests[path]

    def close(self) -> None:
        self.fs.close()


def image_name(path: str, *, is_dir: bool) -> str:
    """The image name as discovery and dissect derive it: a file's name without its image
    suffixes (".raw", ".sysext.raw", ...), a directory's without ".sysext"/".confext"."""
    base = os.path.basename(path.rstrip("/")) or path
    if not is_dir:
        from strata.engine.inspect import raw_strip_suffixes

        return raw_strip_suffixes(base)
    for suffix in (".sysext", ".confext"):
        if base.endswith(suffix) and len(base) > len(suffix):
            return base[: -len(suffix)]
    return base


def open_image(path: str, arch: str | None = None) -> tuple[ImageFS, ImageLayout | None]:
    """The image's tree as systemd would mount it (directory, file system, or GPT disk)."""
    try:
        is_dir = _stat.S_ISDIR(os.stat(path).st_mode)
    except OSError as e:
        raise StrataError.from_os(e, path) from e
    if is_dir:
        return DirectoryFS(path), None
    from strata.images import open_tree, probe

    if arch is None:
        from strata.arch import native

        arch = native()
    layout = probe(path, arch=arch)
    return open_tree(layout), layout


def _lookup(fs: ImageFS, cls: ExtClass, name: str) -> tuple[ReleaseLookup, str | None]:
    from strata.release import find_extension_release

    try:
        return find_extension_release(fs, cls, name), None
    except StrataError as e:
        if e.kind is not ErrorKind.INVALID:
            raise
        return ReleaseLookup(path=None, fields=None, problem=e.message), e.message


def _guess_classes(tree: Tree) -> tuple[ExtClass, ...]:
    """Without release files or --class: what the content looks like."""
    has_sysext = any(tree.get(h) is not None for h in ExtClass.SYSEXT.default_hierarchies)
    has_confext = tree.get("/etc") is not None
    if has_confext and not has_sysext:
        return (ExtClass.CONFEXT,)
    return (ExtClass.SYSEXT,)


def _elf_stream(fs: ImageFS, path: str, size: int, digests: dict[str, str]) -> BinaryIO:
    if isinstance(fs, DirectoryFS):
        # read in place: pyelftools only touches the headers and the sections it parses
        fd = os.open(os.path.join(fs.root, path.lstrip("/")),
                     os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        return os.fdopen(fd, "rb")
    import hashlib

    data = fs.read(path, limit=size)
    digests[path] = hashlib.sha256(data).hexdigest()  # the one time it is decompressed
    return io.BytesIO(data)


def _read_elves(fs: ImageFS, tree: Tree, hierarchies: tuple[str, ...], digests: dict[str, str]
                ) -> tuple[dict[str, ElfInfo], dict[str, str]]:
    infos: dict[str, ElfInfo] = {}
    errors: dict[str, str] = {}
    for e in tree:
        if e.elf is None or not e.elf.loadable:
            continue
        if not any(under(e.path, h) for h in hierarchies) or \
                any(under(e.path, d) for d in NOT_RUN):
            continue
        try:
            with _elf_stream(fs, e.path, e.size, digests) as stream:
                infos[e.path] = read_info(stream)
        except StrataError:
            raise
        except Exception as exc:  # pyelftools raises many kinds on bad input
            errors[e.path] = f"{type(exc).__name__}: {exc}".splitlines()[0]
    return infos, errors


def open_view(path: str, *, cls: ExtClass | None = None, arch: str | None = None,
              read_elf: bool = True) -> ImageView:
    """Read the image at `path` (one walk, the release files, the ELF files); StrataError if
    it cannot be read."""
    fs, layout = open_image(path, arch)
    try:
        name = image_name(path, is_dir=layout is None)
        tree = scan(fs)
        releases: dict[ExtClass, ReleaseLookup] = {}
        errors: dict[ExtClass, str] = {}
        for c in ExtClass:
            releases[c], problem = _lookup(fs, c, name)
            if problem is not None:
                errors[c] = problem
        if cls is not None:
            classes: tuple[ExtClass, ...] = (cls,)
        else:
            classes = tuple(c for c in ExtClass if releases[c].found or c in errors)
            classes = classes or _guess_classes(tree)
        hierarchies = tuple(h for c in classes for h in c.default_hierarchies)
        digests: dict[str, str] = {}
        infos, elf_errors = _read_elves(fs, tree, hierarchies, digests) if read_elf else ({}, {})
        return ImageView(path=path, name=name, fs=fs, layout=layout, classes=classes,
                         releases=releases, release_errors=errors, tree=tree, elf=infos,
                         elf_errors=elf_errors, digests=digests)
    except BaseException:
        fs.close()
        raise


class Layered:
    """The image stacked over the host as the overlay shows it: inside the image's merged
    hierarchies the image's entries first, then the host's; elsewhere the host's alone.
    Without a host, the image's merged hierarchies alone: what the image itself provides."""

    def __init__(self, view: ImageView, host: HostView | None) -> None:
        self.view = view
        self.host = host
        self._found: dict[tuple[str, str, ElfIdent], str | None] = {}
        self._conf: tuple[str, ...] | None = None

    def _in_image(self, path: str) -> bool:
        return self.view.merged(path)

    def mode(self, path: str) -> int | None:
        if self._in_image(path):
            m = self.view.tree.mode(path)
            if m is not None:
                return m
        return None if self.host is None else self.host.mode(path)

    def readlink(self, path: str) -> str:
        if self._in_image(path):
            e = self.view.tree.get(path)
            if e is not None:
                return self.view.tree.readlink(path)
        assert self.host is not None
        return self.host.readlink(path)

    def chase(self, path: str) -> str | None:
        return chase(path, self.mode, self.readlink)

    def origin(self, resolved: str) -> str:
        """"image" or "host": where the resolved path's entry comes from."""
        if self._in_image(resolved) and self.view.tree.get(resolved) is not None:
            return "image"
        return "host"

    def ident(self, resolved: str) -> ElfIdent | None:
        if self.origin(resolved) == "image":
            e = self.view.tree.get(resolved)
            return None if e is None else e.elf
        assert self.host is not None
        return self.host.ident(resolved)

    @property
    def conf_dirs(self) -> tuple[str, ...]:
        """ld.so.conf directories of the image (a confext, or an image that is both, may
        carry /etc/ld.so.conf.d) followed by the host's. (The loader reads ld.so.cache, which
        ldconfig builds from these; strata ext runs ldconfig after a merge.)"""
        if self._conf is None:
            tree = self.view.tree

            def read(path: str) -> str | None:
                resolved = tree.chase(path)
                if resolved is None:
                    return None
                e = tree.get(resolved)
                if e is None or e.kind is not FileKind.REGULAR:
                    return None
                return self.view.read(resolved).decode("utf-8", "replace")

            def listdir(path: str) -> list[str]:
                resolved = tree.chase(path)
                if resolved is None:
                    return []
                prefix = "/" if resolved == "/" else resolved + "/"
                return [e.path[len(prefix):] for e in tree.below(resolved)
                        if "/" not in e.path[len(prefix):]]

            # the image's /etc/ld.so.conf counts only where its /etc is merged (a confext)
            dirs = ld_so_conf_dirs(read, listdir) if self.view.merged("/etc") else []
            if self.host is not None:
                dirs += self.host.conf_dirs
            self._conf = tuple(dict.fromkeys(dirs))
        return self._conf

    def find_library(self, name: str, path: str, ident: ElfIdent, info: ElfInfo) -> str | None:
        """Where the loader would find DT_NEEDED `name` of the file at `path`, or None."""
        if "/" in name:  # a path: used as it is (relative: to the working directory)
            resolved = self.chase(name) if name.startswith("/") else None
            lib = None if resolved is None else self.ident(resolved)
            return resolved if lib is not None and ident.compatible(lib) else None
        for d in search_dirs(info, ident, path, self.conf_dirs):
            key = (d, name, ident)
            if key not in self._found:
                resolved = self.chase(join(d, name))
                lib = None if resolved is None else self.ident(resolved)
                self._found[key] = resolved if lib is not None and ident.compatible(lib) \
                    else None
            hit = self._found[key]
            if hit is not None:
                return hit
        return None
