"""The host an image is checked against (`--host ROOT`): a directory tree such as "/" or an
unpacked root file system. Every lookup stays inside ROOT (symlinks are chased with ROOT as
"/"), and every answer is memoized: the rules ask the same questions for many files."""

from __future__ import annotations

import errno
import functools
import os
import stat as _stat

from strata.check.elf import IDENT_SIZE, ElfIdent, ElfInfo, parse_ident, read_info
from strata.check.libs import MULTIARCH, ld_so_conf_dirs, trusted_dirs
from strata.check.tree import chase, join
from strata.errors import ErrorKind, StrataError
from strata.model import Scope
from strata.release import HostRelease


class HostView:
    """Read-only questions about the tree at `root`."""

    def __init__(self, root: str) -> None:
        real = os.path.abspath(root)
        if not os.path.isdir(real):
            raise StrataError(f"--host: {root}: not a directory", kind=ErrorKind.USAGE,
                              errno=errno.ENOTDIR)
        self.root = real
        self._modes: dict[str, int | None] = {}
        self._idents: dict[str, ElfIdent | None] = {}
        self._infos: dict[str, ElfInfo | None] = {}
        self._found: dict[tuple[str, str, ElfIdent], str | None] = {}

    def real(self, path: str) -> str:
        """The path on this machine of image-style `path` (whose parents must be resolved)."""
        return self.root if path == "/" else self.root.rstrip("/") + path

    # -- the file tree --

    def mode(self, path: str) -> int | None:
        """st_mode of an lstat of `path`, whose parent directories are already resolved."""
        if path == "/":
            return _stat.S_IFDIR | 0o755
        if path not in self._modes:
            try:
                self._modes[path] = os.lstat(self.real(path)).st_mode
            except OSError:
                self._modes[path] = None
        return self._modes[path]

    def readlink(self, path: str) -> str:
        try:
            return os.readlink(self.real(path))
        except OSError as e:
            raise StrataError.from_os(e, f"{self.root}:{path}") from e

    def chase(self, path: str, *, follow_last: bool = True) -> str | None:
        """Where `path` leads inside the host root, or None if it does not exist."""
        return chase(path, self.mode, self.readlink, follow_last=follow_last)

    def direct_mode(self, path: str) -> int | None:
        """st_mode of `path` if it exists with no symlink in its parent directories (so an
        overlay over the host would stack on exactly this entry), else None."""
        parent = path.rsplit("/", 1)[0] or "/"
        if parent != "/" and self.chase(parent, follow_last=False) != parent:
            return None
        pmode = self.mode(parent)
        if pmode is None or not _stat.S_ISDIR(pmode):
            return None
        return self.mode(path)

    def read(self, path: str, limit: int | None = None) -> bytes | None:
        """Contents of the regular file at resolved `path`, None if it is not one."""
        try:
            fd = os.open(self.real(path), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
                         | os.O_NONBLOCK)
        except OSError:
            return None
        try:
            if not _stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            with os.fdopen(os.dup(fd), "rb") as f:
                return f.read() if limit is None else f.read(limit)
        except OSError:
            return None
        finally:
            os.close(fd)

    def digest(self, path: str) -> str | None:
        """sha256 of the regular file at resolved `path`, None if it is not one."""
        import hashlib

        try:
            fd = os.open(self.real(path), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
                         | os.O_NONBLOCK)
        except OSError:
            return None
        try:
            if not _stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            h = hashlib.sha256()
            while chunk := os.read(fd, 1 << 20):
                h.update(chunk)
            return h.hexdigest()
        except OSError:
            return None
        finally:
            os.close(fd)

    def size(self, path: str) -> int | None:
        try:
            return os.lstat(self.real(path)).st_size
        except OSError:
            return None

    def listdir(self, path: str) -> list[str]:
        resolved = self.chase(path)
        if resolved is None:
            return []
        try:
            return os.listdir(self.real(resolved))
        except OSError:
            return []

    def read_text(self, path: str) -> str | None:
        resolved = self.chase(path)
        data = None if resolved is None else self.read(resolved, 1 << 20)
        return None if data is None else data.decode("utf-8", "replace")

    # -- release data --

    @functools.cached_property
    def release(self) -> HostRelease | StrataError:
        """The host's os-release, or why it cannot be used."""
        from strata.release import load_host_release

        try:
            return load_host_release(self.root, {})
        except StrataError as e:
            return e

    @functools.cached_property
    def scope(self) -> Scope:
        from strata.release import scope_of_root

        return scope_of_root(self.root)

    @functools.cached_property
    def arch(self) -> str:
        """The host's architecture: that of its /bin/sh (or libc), else this machine's."""
        candidates = ["/bin/sh", "/usr/bin/sh"]
        for tuples in MULTIARCH.values():
            candidates += [f"/usr/lib/{t}/libc.so.6" for t in tuples]
        candidates += ["/usr/lib64/libc.so.6", "/usr/lib/libc.so.6"]
        for path in candidates:
            resolved = self.chase(path)
            ident = None if resolved is None else self.ident(resolved)
            if ident is not None and ident.arch is not None:
                return ident.arch
        from strata.arch import native

        return native()

    # -- ELF files and libraries --

    def ident(self, path: str) -> ElfIdent | None:
        """The ELF header of the file at resolved `path`, None if it is no ELF file."""
        if path not in self._idents:
            head = self.read(path, IDENT_SIZE)
            self._idents[path] = None if head is None else parse_ident(head)
        return self._idents[path]

    def elf_info(self, path: str) -> ElfInfo | None:
        """The dynamic data of the ELF file at resolved `path` (None if unreadable)."""
        if path not in self._infos:
            info = None
            try:
                with open(self.real(path), "rb") as f:
                    info = read_info(f)
            except Exception:  # whatever pyelftools raises: not this image's problem
                info = None
            self._infos[path] = info
        return self._infos[path]

    @functools.cached_property
    def conf_dirs(self) -> tuple[str, ...]:
        """The directories of the host's /etc/ld.so.conf (and the files it includes)."""
        return tuple(ld_so_conf_dirs(self.read_text, self.listdir))

    def find_library(self, name: str, ident: ElfIdent) -> str | None:
        """Where the host's loader would find library `name` for a file like `ident`, from the
        ld.so.conf and trusted directories; None if nowhere."""
        hit = None
        for d in (*self.conf_dirs, *trusted_dirs(ident)):
            hit = self.library_in(d, name, ident)
            if hit is not None:
                break
        return hit

    def library_in(self, directory: str, name: str, ident: ElfIdent) -> str | None:
        """The resolved path of `directory`/`name` if it is an ELF file `ident` can load."""
        key = (directory, name, ident)
        if key not in self._found:
            resolved = self.chase(join(directory, name))
            lib = None if resolved is None else self.ident(resolved)
            self._found[key] = resolved if lib is not None and ident.compatible(lib) else None
        return self._found[key]

    @functools.cache  # noqa: B019 - one HostView per run
    def glibc(self, ident: ElfIdent) -> tuple[tuple[int, ...], str] | None:
        """(glibc version, path of libc.so.6) for programs like `ident`, or None if the host
        has no such glibc (a musl host, another architecture)."""
        libc = self.find_library("libc.so.6", ident)
        if libc is None:
            return None
        info = self.elf_info(libc)
        version = None if info is None else info.glibc_provided()
        return None if version is None else (version, libc)
