"""The store: every extension image `strata ext` can enable, what each one is (sysext,
confext, both or neither), its version and its image id. Read without mounting anything.

Where images are found, first match of an image name wins (as in systemd's discovery):

    /var/lib/strata/extensions                  ("store", Strata's own)
    /etc/extensions /run/extensions /var/lib/extensions          (systemd-sysext's)
    /run/confexts /var/lib/confexts /usr/local/lib/confexts /usr/lib/confexts  (confext's)

An entry is a directory or a regular file named `*.raw` (`*.sysext.raw`/`*.confext.raw` too),
or a symlink to one (resolved inside the root). Symlinks in /run/extensions and /run/confexts
are Strata's own exposure of the enabled set (see runlinks.py) and are not images.

Names. The *image name* is the file name without `.raw` and the class infix, as systemd names
it. The extension's *name* is the image name without a version: `app_1.2` (systemd's `_`
convention) or `app-1.2.0` (avocadoctl's: the part after the last `-`, if it holds a digit).
Dependencies, enable and disable use the name; the image name is accepted too.

Class. Found with systemd's strict lookup (find_extension_release), first for the image name
and then for the name: `usr/lib/extension-release.d/extension-release.<n>` makes a sysext,
`etc/extension-release.d/...` a confext, both make both. An image with neither is *not* an
extension (avocadoctl would treat it as both; systemd would refuse to merge it): it is listed
with both flags false, `enable` refuses it and `merge` skips it with the reason.
"""

from __future__ import annotations

import os
import stat as _stat
from collections.abc import Mapping

from strata.errors import ErrorKind, StrataError
from strata.fsutil import chase, join_root
from strata.model import ExtClass
from strata.record import record

STORE_DIR = "/var/lib/strata/extensions"
STORE_ORIGIN = "store"

#: Strata's link farms for stock systemd (links there are ours, not images)
RUN_DIRS: Mapping[ExtClass, str] = {ExtClass.SYSEXT: "/run/extensions",
                                    ExtClass.CONFEXT: "/run/confexts"}

SEARCH_DIRS = (
    STORE_DIR,
    "/etc/extensions", "/run/extensions", "/var/lib/extensions",
    "/run/confexts", "/var/lib/confexts", "/usr/local/lib/confexts", "/usr/lib/confexts",
)

VERSION_KEYS: Mapping[ExtClass, str] = {ExtClass.SYSEXT: "SYSEXT_VERSION_ID",
                                        ExtClass.CONFEXT: "CONFEXT_VERSION_ID"}


# --- names (pure) ----------------------------------------------------------------------------


def image_stem(fname: str, *, is_dir: bool) -> str | None:
    """The image name of a store entry, or None if the entry is not an image: files must end
    in .raw; `.sysext`/`.confext` infixes (files) or suffixes (directories) are dropped;
    hidden and temporary (`.`-prefixed) entries and vpick `.v` directories are skipped."""
    if fname.startswith("."):
        return None
    stem = fname
    if is_dir:
        if stem.endswith(".v"):
            return None
    elif stem.endswith(".raw"):
        stem = stem[:-4]
    else:
        return None
    for infix in (".sysext", ".confext"):
        if stem.endswith(infix):
            stem = stem[: -len(infix)]
            break
    from strata.release import image_name_is_valid

    return stem if image_name_is_valid(stem) else None


def split_version(stem: str) -> tuple[str, str | None]:
    """(name, version from the file name): `foo_1.2` -> (foo, 1.2) at the first `_` (systemd's
    convention); else at the first `-` followed by a digit (or `v` and a digit, Dalec's
    pattern): `foo-bar-1.2` -> (foo-bar, 1.2), `tools-v0.1.0-1-azlinux3` -> (tools, ...). A
    trailing architecture (`-x86-64`, `_arm64`: strata build's default name pattern) is not
    part of the version. `my-app` and `my_app` stay whole."""
    from strata.arch import ALL

    for arch in sorted(ALL, key=len, reverse=True):
        for sep in ("-", "_"):
            if stem.endswith(sep + arch) and len(stem) > len(arch) + 1:
                stem = stem[: -len(arch) - 1]
                break
        else:
            continue
        break
    head, sep, tail = stem.partition("_")
    if sep and head and any(c.isdigit() for c in tail):
        return head, tail
    for i, ch in enumerate(stem):
        if ch == "-" and i > 0:
            rest = stem[i + 1:]
            if rest[:1].isdigit() or (rest[:1] == "v" and rest[1:2].isdigit()):
                return stem[:i], rest
    return stem, None


# --- entries ---------------------------------------------------------------------------------


@record
class StoreEntry:
    """One image in the store or a search directory."""

    name: str
    image_name: str
    path: str  # host path of the entry as listed (root prefix included)
    in_root: str  # the same path as seen inside the root
    real: str  # host path after following symlinks (inside the root): what is read
    origin: str  # "store", or the search directory, e.g. "/var/lib/extensions"
    is_directory: bool
    file_version: str | None
    #: (st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns) of `real`: a cache key
    signature: tuple[int, ...] = ()


def _signature(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _resolve_dir(root: str, directory: str) -> str | None:
    try:
        return chase(directory, root)
    except StrataError as e:
        if e.kind is ErrorKind.NOT_FOUND:
            return None
        raise


def entry_at(root: str, directory: str, host_dir: str, fname: str, origin: str
             ) -> StoreEntry | None:
    """The store entry for `host_dir/fname` (host_dir: `directory` resolved inside root), or
    None when it is not an image (or vanished)."""
    path = os.path.join(host_dir, fname)
    try:
        st = os.lstat(path)
    except OSError:
        return None  # vanished
    return _entry(root, directory, fname, origin, path=path, st=st)


def _entry(root: str, directory: str, fname: str, origin: str, *, path: str,
           st: os.stat_result) -> StoreEntry | None:
    """entry_at() for an entry already lstat()ed."""
    in_root = os.path.join(directory, fname)
    real = path
    if _stat.S_ISLNK(st.st_mode):
        try:
            real = chase(in_root, root)
            st = os.stat(real)
        except (OSError, StrataError):
            return None  # dangling: nothing to offer
    is_dir = _stat.S_ISDIR(st.st_mode)
    if not is_dir and not _stat.S_ISREG(st.st_mode):
        return None
    stem = image_stem(fname, is_dir=is_dir)
    if stem is None:
        return None
    name, version = split_version(stem)
    return StoreEntry(name=name, image_name=stem, path=path, in_root=in_root, real=real,
                      origin=origin, is_directory=is_dir, file_version=version,
                      signature=_signature(st))


def scan(root: str) -> list[StoreEntry]:
    """Every image, in search order; an image name already found shadows later ones."""
    found: dict[str, StoreEntry] = {}
    own_links = set(RUN_DIRS.values())
    for directory in SEARCH_DIRS:
        host_dir = _resolve_dir(root, directory)
        if host_dir is None:
            continue
        try:
            with os.scandir(host_dir) as it:
                listed = sorted((d.name, d) for d in it)
        except (NotADirectoryError, FileNotFoundError):
            continue
        except OSError as e:
            raise StrataError.from_os(e, f"Failed to read '{host_dir}'") from e
        origin = STORE_ORIGIN if directory == STORE_DIR else directory
        skip_links = directory in own_links
        for fname, d in listed:
            # the directory entry's type comes with it: Strata's own links cost nothing
            if skip_links and d.is_symlink():
                continue
            try:
                st = d.stat(follow_symlinks=False)
            except OSError:
                continue  # vanished
            entry = _entry(root, directory, fname, origin, path=d.path, st=st)
            if entry is not None and entry.image_name not in found:
                found[entry.image_name] = entry
    return list(found.values())


# --- what an image is ------------------------------------------------------------------------


@record
class ReleaseInfo:
    """An extension-release file found in an image for one class."""

    cls: ExtClass
    #: the name systemd's strict lookup found it under (the image name or the bare name);
    #: Strata exposes and merges the image under this name
    lookup_name: str
    path: str  # inside the image
    fields: Mapping[str, str]
    pairs: tuple[tuple[str, str], ...] = ()


@record
class Probe:
    sysext: ReleaseInfo | None = None
    confext: ReleaseInfo | None = None
    #: why nothing usable was found: unreadable image or malformed release file
    problem: str | None = None

    def release(self, cls: ExtClass) -> ReleaseInfo | None:
        return self.sysext if cls is ExtClass.SYSEXT else self.confext

    @property
    def releases(self) -> tuple[ReleaseInfo, ...]:
        return tuple(r for r in (self.sysext, self.confext) if r is not None)

    @property
    def is_extension(self) -> bool:
        return bool(self.releases)

    def version(self, fallback: str | None) -> str | None:
        """SYSEXT_VERSION_ID / CONFEXT_VERSION_ID (mkosi's keys), else `fallback`."""
        for r in self.releases:
            v = r.fields.get(VERSION_KEYS[r.cls])
            if v:
                return v
        return fallback


_probe_cache: dict[tuple[str, str, tuple[int, ...]], Probe] = {}
_CACHE_MAX = 4096

#: what a directory image's release data depends on, below the image (the daemon's read cache
#: watches them too)
RELEASE_DIRS = ("usr", "usr/lib", "usr/lib/extension-release.d", "etc",
                 "etc/extension-release.d")


def _tree_signature(entry: StoreEntry, found: Probe | None = None) -> tuple[int, ...] | None:
    """Inode and times of a directory image's release directories and release files: these
    change whenever its release data can have. None (do not cache) when one of them is a
    symlink, which would have to be resolved inside the image to know what it depends on."""
    paths = [*RELEASE_DIRS]
    if found is not None:
        paths += [r.path.lstrip("/") for r in found.releases]
    sig: list[int] = [*entry.signature]
    for rel in paths:
        try:
            st = os.lstat(os.path.join(entry.real, rel))
        except FileNotFoundError:
            sig += (0, 0, 0)
            continue
        except OSError:
            return None
        if _stat.S_ISLNK(st.st_mode):
            return None
        sig += (st.st_ino, st.st_mtime_ns, st.st_ctime_ns)
    return tuple(sig)


_tree_cache: dict[tuple[str, str], tuple[tuple[int, ...], Probe]] = {}


def probe(entry: StoreEntry) -> Probe:
    """Read the image's release files, cached: image files by inode, size and times (a
    status call then costs a stat per image), directories by the inodes and times of their
    release directories and files (a few lstats instead of a lookup)."""
    if entry.is_directory:
        return _probe_directory(entry)
    key = (entry.real, entry.image_name, entry.signature)
    hit = _probe_cache.get(key)
    if hit is not None:
        return hit
    result = _probe(entry)
    if len(_probe_cache) >= _CACHE_MAX:
        _probe_cache.clear()
    _probe_cache[key] = result
    return result


def _probe_directory(entry: StoreEntry) -> Probe:
    key = (entry.real, entry.image_name)
    cached = _tree_cache.get(key)
    if cached is not None and _tree_signature(entry, cached[1]) == cached[0]:
        return cached[1]
    before = _tree_signature(entry)
    result = _probe(entry)
    sig = _tree_signature(entry, result)
    if before is not None and sig is not None and sig[:len(before)] == before:
        if len(_tree_cache) >= _CACHE_MAX:
            _tree_cache.clear()
        _tree_cache[key] = (sig, result)
    return result


def _probe(entry: StoreEntry) -> Probe:
    from strata.images.base import DirectoryFS, ImageFS
    from strata.release import MAX_RELEASE_SIZE, find_extension_release, parse_env_pairs

    try:
        fs: ImageFS
        if entry.is_directory:
            fs = DirectoryFS(entry.real)
        else:
            from strata.images import open_fs

            fs = open_fs(entry.real)
    except StrataError as e:
        return Probe(problem=f"Failed to read image {entry.path}: {e.message}")
    found: dict[ExtClass, ReleaseInfo] = {}
    problem: str | None = None
    try:
        for cls in ExtClass:
            for candidate in dict.fromkeys((entry.image_name, entry.name)):
                try:
                    lookup = find_extension_release(fs, cls, candidate)
                    if lookup.path is None or lookup.fields is None:
                        continue
                    data = fs.read(lookup.path, limit=MAX_RELEASE_SIZE)
                    pairs = tuple(parse_env_pairs(data, source=f"{fs.label}:{lookup.path}"))
                except StrataError as e:
                    problem = problem or f"Image {entry.path}: {e.message}"
                    break
                found[cls] = ReleaseInfo(cls=cls, lookup_name=candidate, path=lookup.path,
                                         fields=lookup.fields, pairs=pairs)
                break
    finally:
        fs.close()
    return Probe(sysext=found.get(ExtClass.SYSEXT), confext=found.get(ExtClass.CONFEXT),
                 problem=None if found else problem)


# --- image ids -------------------------------------------------------------------------------

ID_CACHE = "/run/strata/image-ids.json"
_id_cache: dict[str, dict[str, list[object]]] = {}  # root -> path -> [*signature, id]


def _load_ids(root: str) -> dict[str, list[object]]:
    cached = _id_cache.get(root)
    if cached is not None:
        return cached
    import json

    ids: dict[str, list[object]] = {}
    try:
        with open(join_root(root, ID_CACHE), "rb") as f:
            loaded = json.loads(f.read())
        if isinstance(loaded, dict):
            ids = {k: v for k, v in loaded.items() if isinstance(v, list)}
    except (OSError, ValueError):
        pass
    _id_cache[root] = ids
    return ids


def _save_ids(root: str, ids: Mapping[str, list[object]]) -> None:
    """Best effort: /run is a tmpfs, so the ids survive until reboot and `strata ext status`
    hashes each image once, not on every call."""
    import json

    from strata.manage import fsio

    path = join_root(root, ID_CACHE)
    try:
        os.makedirs(os.path.dirname(path), 0o755, exist_ok=True)
        fsio.replace_file(os.path.dirname(path), os.path.basename(path),
                          json.dumps(ids, separators=(",", ":")).encode())
    except (OSError, StrataError):
        pass


def image_ids(root: str, entries: list[StoreEntry]) -> dict[str, str | None]:
    """image path -> first 12 hex digits of the sha256 of the image file (None for
    directories and unreadable files), cached by inode, size and times."""
    ids = _load_ids(root)
    out: dict[str, str | None] = {}
    changed = False
    for e in entries:
        if e.is_directory:
            out[e.path] = None
            continue
        hit = ids.get(e.real)
        if hit is not None and tuple(hit[:-1]) == e.signature and isinstance(hit[-1], str):
            out[e.path] = hit[-1]
            continue
        digest = sha256_prefix(e.real)
        out[e.path] = digest
        if digest is not None:
            ids[e.real] = [*e.signature, digest]
            changed = True
    if changed:
        live = {e.real for e in entries}
        for stale in [p for p in ids if p not in live and not os.path.exists(p)]:
            del ids[stale]
        _save_ids(root, ids)
    return out


def sha256_prefix(path: str, length: int = 12) -> str | None:
    import hashlib

    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    except OSError:
        return None
    return h.hexdigest()[:length]
