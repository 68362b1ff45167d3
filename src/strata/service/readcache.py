"""The daemon's cache of read replies (Status, List, io.systemd.sysext.List): the last reply,
already encoded for the wire, reused for as long as nothing it was computed from changed.

A reply depends on three kinds of state, and each is checked before a cached reply is reused:

* changes the daemon runs itself (Merge, Unmerge, Refresh, Enable, Disable): they bump
  `ReadCache.generation`, and an entry computed under another generation is stale (including
  one whose computation overlapped a change);
* the mount table (what is merged, which file systems are read-only): the kernel flags an open
  /proc/self/mountinfo with POLLPRI|POLLERR after every mount or unmount in this namespace,
  whoever made it (`strata sysext`, systemd-sysext...); `MountWatch` polls it without waiting;
* files and directories: the search directories, the enabled set's directory, os-release,
  strata.toml, and every image the reply describes. Each is "stamped" with lstat(): a
  directory's mtime changes with any entry added, removed or renamed in it, an image rewritten
  in place changes its own mtime, size or ctime. An entry is stale when any stamp differs (a
  missing path is a stamp too, so its appearance counts).

Stamps are taken when the reply is computed: the directories and files the reply is read from
before the computation, the images it names (known only afterwards) after it. File times
are coarse (a clock tick, a second on some file systems): two changes within one tick leave the
same mtime, so a stamp taken just after the first change would match one taken after the second.
Like git's "racily clean" index, a reply is therefore only cached when every stamped path's
ctime is older than the computation's start by a margin (RACY_MARGIN_NS, more for whole-second
times); a change during or shortly before the computation makes the daemon recompute on the
next call instead. (ctime, not mtime: ctime cannot be set from user space, so it is never in the
future by someone's choice.) The margin assumes the file system's clock is this machine's: a
network file system whose server clock lags by more is not covered.

Paths are resolved inside the root as the readers resolve them (`chain`): symlinks on the way
are stamped too, so re-pointing one is seen. Not seen: a block device resized in place, a
directory in the middle of an image's path replaced between the computation and the stamps
taken after it.

The decisions (`plan`, `stale`, `racy_index`) are pure; `ReadCache` does the I/O around them.
"""

from __future__ import annotations

import enum
import errno
import os
import posixpath
import select
import stat as _stat
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

from strata import log
from strata.fsutil import join_root
from strata.record import record

#: what an lstat() of a watched path said: None when it is missing
Stamp = tuple[int, ...] | None

#: a change within this long before a computation began may not show in the stamps: file
#: times come from a clock that ticks every few milliseconds (a jiffy)...
RACY_MARGIN_NS = 50_000_000
#: ... or, on file systems with whole-second times (FAT: two seconds), every second or two
RACY_MARGIN_COARSE_NS = 2_500_000_000
#: symlinks followed while resolving one path (systemd's CHASE_MAX)
CHASE_MAX = 32
#: where a directory image keeps its release files (store.RELEASE_DIRS: what they depend on)
RELEASE_FILE_DIRS = ("usr/lib/extension-release.d", "etc/extension-release.d")


class Watch(enum.Enum):
    CONTENT = "content"  # (dev, ino, size, mtime, ctime): the entry and what is in it
    IDENTITY = "identity"  # (dev, ino, type): a directory on the way to something watched


class Reason(enum.Enum):
    CHANGE = "a change ran through the daemon"
    MOUNTS = "the mount table changed"
    FILE = "a file or directory it was read from changed"


class Watched(NamedTuple):
    """A path an answer depends on (host path) and its file type when the answer was
    computed (0: missing). A NamedTuple rather than a record: a computation makes hundreds,
    and this is 10x cheaper to create."""

    path: str
    kind: Watch
    mode: int = 0


@record
class Stale:
    reason: Reason
    path: str | None = None


@record
class Answer:
    """A computed reply: the bytes to send, and the images it describes (host paths), which
    are watched besides the inputs."""

    payload: bytes
    files: tuple[str, ...] = ()
    #: False: something it depends on cannot be watched (e.g. a symlink inside a directory
    #: image); answer this call, cache nothing
    cacheable: bool = True


@record
class Entry:
    payload: bytes
    generation: int  # ReadCache.generation when the computation began
    mounts: int  # MountWatch generation when it began
    started_ns: int
    paths: tuple[str, ...]
    kinds: tuple[Watch, ...]
    stamps: tuple[Stamp, ...]


# --- stamps ----------------------------------------------------------------------------------


def stamp_of(st: os.stat_result | None, kind: Watch) -> Stamp:
    if st is None:
        return None
    if kind is Watch.IDENTITY:
        return (st.st_dev, st.st_ino, _stat.S_IFMT(st.st_mode))
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def stamps(paths: Sequence[str], kinds: Sequence[Watch]) -> tuple[Stamp, ...]:
    """The stamps of `paths` now. An lstat error other than "missing" is a stamp too (it
    compares equal to the same error next time)."""
    out: list[Stamp] = []
    content = Watch.CONTENT
    for path, kind in zip(paths, kinds, strict=True):
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            out.append(None)
            continue
        except OSError as e:
            out.append((-1, e.errno or 0))
            continue
        if kind is content:
            out.append((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
        else:
            out.append((st.st_dev, st.st_ino, _stat.S_IFMT(st.st_mode)))
    return tuple(out)


# --- decisions (pure) ------------------------------------------------------------------------


def plan(watched: Iterable[Watched]) -> tuple[Watched, ...]:
    """The paths worth stamping, once each, in first-seen order. A path watched for content
    and for identity is watched for content. Below a directory watched for content, only
    regular files and directories are kept: they alone can change without their directory
    changing (a file rewritten in place, entries added to a subdirectory); a symlink cannot
    be changed in place, and a missing entry appearing or an entry being replaced shows in
    the directory's own mtime."""
    chosen: dict[str, Watched] = {}
    for w in watched:
        prev = chosen.get(w.path)
        if prev is None or (prev.kind is Watch.IDENTITY and w.kind is Watch.CONTENT):
            chosen[w.path] = w
    content_dirs = {p for p, w in chosen.items()
                    if w.kind is Watch.CONTENT and _stat.S_ISDIR(w.mode)}

    def needed(w: Watched) -> bool:
        if _parent(w.path) not in content_dirs or w.path == "/":
            return True
        return w.kind is Watch.CONTENT and (_stat.S_ISREG(w.mode) or _stat.S_ISDIR(w.mode))

    return tuple(w for w in chosen.values() if needed(w))


def racy_index(kinds: Sequence[Watch], taken: Sequence[Stamp], started_ns: int, *,
               margin_ns: int = RACY_MARGIN_NS,
               coarse_margin_ns: int = RACY_MARGIN_COARSE_NS) -> int | None:
    """The index of the first content stamp whose ctime is too close to `started_ns` (or
    after it): a change then may be followed by another within the same timestamp tick, which
    the stamps would not tell apart. A ctime of a whole second may come from a file system
    with coarse times, and gets the coarse margin. None when no stamp is that recent."""
    for i, (kind, st) in enumerate(zip(kinds, taken, strict=True)):
        if kind is not Watch.CONTENT or st is None or len(st) != 5:
            continue
        ctime = st[4]
        margin = coarse_margin_ns if ctime % 1_000_000_000 == 0 else margin_ns
        if ctime >= started_ns - margin:
            return i
    return None


def stale(entry: Entry, *, generation: int, mounts: int, now: Sequence[Stamp]
          ) -> Stale | None:
    """Why `entry` may no longer be served, given the daemon's change generation, the mount
    table's generation and the stamps of entry.paths now; None when it may."""
    if entry.generation != generation:
        return Stale(Reason.CHANGE)
    if entry.mounts != mounts:
        return Stale(Reason.MOUNTS)
    if tuple(now) != entry.stamps:
        for path, before, after in zip(entry.paths, entry.stamps, now, strict=True):
            if before != after:
                return Stale(Reason.FILE, path)
    return None


# --- resolving paths -------------------------------------------------------------------------


class Lstats:
    """One computation's look at the file system: lstat() results memoised (the links of one
    directory lead into the same few directories, and the stamps come from the same calls),
    and `plain_dirs`, the directories watched for content that were reached without a symlink
    on the way (as seen inside the root): a path lexically in one of them needs no resolving,
    as its appearance, disappearance or replacement changes that directory."""

    def __init__(self) -> None:
        self._seen: dict[str, os.stat_result | int] = {}
        self.plain_dirs: set[str] = set()

    def raw(self, path: str) -> os.stat_result | int:
        """The result, or the errno of the failure."""
        hit = self._seen.get(path)
        if hit is None:
            try:
                hit = os.lstat(path)
            except OSError as e:
                hit = e.errno or -1
            self._seen[path] = hit
        return hit

    def __call__(self, path: str) -> os.stat_result | None:
        hit = self.raw(path)
        return None if isinstance(hit, int) else hit

    def stamp(self, path: str, kind: Watch) -> Stamp:
        """As stamps() would say."""
        hit = self.raw(path)
        if isinstance(hit, int):
            return None if hit in (errno.ENOENT, errno.ENOTDIR) else (-1, hit)
        return stamp_of(hit, kind)


def chain(root: str, path: str, lstat: Lstats | None = None, base: Sequence[str] = ()
          ) -> list[Watched]:
    """Everything `path` (inside `root`, as seen from it) resolves through, as chase() resolves
    it with `root` as "/": the directories on the way (identity), each symlink met (content),
    and what it leads to (content; missing included, where the walk stops). With `base` (the
    components of a directory inside the root, already resolved), `path` is relative to it."""
    lstat = lstat or Lstats()
    todo = [c for c in reversed(path.split("/")) if c and c != "."]
    done: list[str] = list(base)
    out: list[Watched] = []
    hops = 0
    while todo:
        c = todo.pop()
        if c == "..":
            if done:
                done.pop()
            continue
        host = join_root(root, "/".join((*done, c)))
        st = lstat(host)
        if st is None:
            out.append(Watched(host, Watch.CONTENT))
            return out
        mode = st.st_mode
        if _stat.S_ISLNK(mode):
            out.append(Watched(host, Watch.CONTENT, mode))
            hops += 1
            try:
                target = os.readlink(host)
            except OSError:
                return out
            if hops > CHASE_MAX:
                return out
            if target.startswith("/"):
                done = []
            todo.extend(p for p in reversed(target.split("/")) if p and p != ".")
            continue
        if todo:
            out.append(Watched(host, Watch.IDENTITY, mode))
            if not _stat.S_ISDIR(mode):
                return out
            done.append(c)
            continue
        out.append(Watched(host, Watch.CONTENT, mode))
    return out


def in_root(root: str, host_path: str) -> str:
    """`host_path` as seen inside `root` (it is below it)."""
    if root in ("", "/"):
        return host_path
    prefix = root.rstrip("/")
    if host_path.startswith(prefix) and host_path[len(prefix):len(prefix) + 1] in ("", "/"):
        return host_path[len(prefix):] or "/"
    return "/" + os.path.relpath(host_path, root)


def _parent(path: str) -> str:
    """posixpath.dirname() for a normalised absolute path, at a fraction of its cost."""
    head = path.rpartition("/")[0]
    return head or "/"


def directory(root: str, path: str, lstat: Lstats, *, links: bool = True) -> list[Watched]:
    """A directory that is read (`path` inside root), and with `links`, what each symlink in
    it leads to: a link whose target is missing now offers an image once the target appears,
    and its own directory does not change then."""
    out = chain(root, path, lstat)
    if not out or not _stat.S_ISDIR(out[-1].mode):
        return out
    host = out[-1].path
    seen_as = in_root(root, host)
    if all(w.kind is Watch.IDENTITY for w in out[:-1]):
        lstat.plain_dirs.add(seen_as)
    if not links:
        return out
    base = [c for c in seen_as.split("/") if c]
    try:
        with os.scandir(host) as it:
            names = [e.name for e in it if e.is_symlink()]
    except OSError:
        return out
    for name in sorted(names):
        try:
            target = os.readlink(os.path.join(host, name))
        except OSError:
            continue
        lexical = posixpath.normpath(posixpath.join(seen_as, target))
        if _parent(lexical) in lstat.plain_dirs:
            continue  # covered by that directory's stamp (and the image's, if it is one)
        out += chain(root, name, lstat, base)
    return out


def image(root: str, host_path: str, lstat: Lstats, plain_dirs: Iterable[str] = ()
          ) -> tuple[list[Watched], bool]:
    """An image an answer describes: its path resolved inside the root, its directory (a
    vpick `.v` directory gains entries), and for a directory image its release directories and
    files; an image directly in one of `plain_dirs` is just stamped. The flag is False when a
    release path is a symlink (it would resolve inside the image; not worth following here),
    so that the answer is not cached."""
    seen_as = in_root(root, host_path)
    st = lstat(host_path) if _parent(seen_as) in plain_dirs else None
    if st is not None and not _stat.S_ISLNK(st.st_mode):
        own = [Watched(host_path, Watch.CONTENT, st.st_mode)]
    else:
        own = chain(root, seen_as, lstat)
    if not own:
        return own, True
    last = own[-1]
    if len(own) == 1:
        out = own
    elif all(w.kind is Watch.IDENTITY for w in own[:-1]):
        # no symlink on the way: the directory is the step before
        out = [*own, Watched(own[-2].path, Watch.CONTENT, own[-2].mode)]
    else:
        out = own + chain(root, _parent(seen_as), lstat)
    if not _stat.S_ISDIR(last.mode):
        return out, True
    from strata.manage.store import RELEASE_DIRS

    for rel in RELEASE_DIRS:
        p = os.path.join(last.path, rel)
        st = lstat(p)
        if st is not None and _stat.S_ISLNK(st.st_mode):
            return out, False
        out.append(Watched(p, Watch.CONTENT, st.st_mode if st is not None else 0))
    for rel in RELEASE_FILE_DIRS:
        d = os.path.join(last.path, rel)
        try:
            with os.scandir(d) as it:
                entries = [(e.path, e.is_symlink()) for e in it]
        except OSError:
            continue
        for p, is_link in entries:
            if is_link:
                return out, False
            st = lstat(p)
            out.append(Watched(p, Watch.CONTENT, st.st_mode if st is not None else 0))
    return out, True


# --- what the replies are read from ----------------------------------------------------------


def manage_inputs(root: str, lstat: Lstats | None = None) -> list[Watched]:
    """What org.avocado.Extensions Status and List are read from (manage/ext.py): the store
    and the search directories (symlinks there lead to images, except Strata's own links in
    /run/extensions and /run/confexts), the enabled set's directory for the running OS release
    and what its links lead to, the os-release files that name the release, and strata.toml."""
    from strata.manage import enabled, store

    lstat = lstat or Lstats()
    out: list[Watched] = []
    own = set(store.RUN_DIRS.values())
    for d in store.SEARCH_DIRS:
        out += directory(root, d, lstat, links=d not in own)
    for f in ("/etc/os-release", "/usr/lib/os-release", "/etc/strata/strata.toml"):
        out += chain(root, f, lstat)
    version = enabled.host_version_id(root)
    out += chain(root, enabled.OS_RELEASES_DIR, lstat)
    out += directory(root, f"{enabled.OS_RELEASES_DIR}/{version}", lstat)
    return out


def discover_inputs(root: str, search_dirs: Sequence[str], *, follow: bool,
                    lstat: Lstats | None = None) -> list[Watched]:
    """What io.systemd.sysext.List is read from (discover.py): the class's search directories
    (inside `root`) and, when discovery follows symlinks (no --root), what the links there
    lead to; and /etc/initrd-release, which picks the search path."""
    lstat = lstat or Lstats()
    out: list[Watched] = []
    for d in search_dirs:
        out += directory(root, d, lstat, links=follow)
    out += chain("/", "/etc/initrd-release", lstat)
    return out


# --- the mount table -------------------------------------------------------------------------


class MountWatch:
    """Counts changes of this mount namespace's mount table: poll() on /proc/self/mountinfo
    reports POLLPRI|POLLERR once after each change (and the poll itself resets that)."""

    def __init__(self, path: str = "/proc/self/mountinfo") -> None:
        self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self._poll = select.poll()
        self._poll.register(self._fd, select.POLLPRI | select.POLLERR)
        self._lock = threading.Lock()
        self._generation = 0

    def generation(self) -> int:
        with self._lock:
            if self._fd >= 0 and self._poll.poll(0):
                self._generation += 1
            return self._generation

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                self._poll.unregister(self._fd)
                os.close(self._fd)
                self._fd = -1
                self._generation += 1  # nothing is watched any more: nothing stays valid


# --- the cache -------------------------------------------------------------------------------


class ReadCache:
    """Encoded replies by key ("Status", "List", "sysext.List:confext"...). `lookup` runs on
    the event loop, `fill` on the read threads; `invalidate` after every change the daemon
    runs."""

    def __init__(self, root: str, mounts: MountWatch, *, margin_ns: int = RACY_MARGIN_NS,
                 coarse_margin_ns: int = RACY_MARGIN_COARSE_NS,
                 clock: Callable[[], int] = time.time_ns) -> None:
        self.root = root
        self.mounts = mounts
        self.margin_ns = margin_ns
        self.coarse_margin_ns = coarse_margin_ns
        self._clock = clock
        self._entries: dict[str, Entry] = {}
        self.generation = 0
        #: for tests and debugging: lookups answered, and why the last miss of a key missed
        #: (None: nothing was cached)
        self.hits = 0
        self.last_miss: dict[str, Stale | None] = {}

    def invalidate(self) -> None:
        self.generation += 1

    def lookup(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            self.last_miss[key] = None
            return None
        why = stale(entry, generation=self.generation, mounts=self.mounts.generation(),
                    now=stamps(entry.paths, entry.kinds))
        if why is None:
            self.hits += 1
            return entry.payload
        self.last_miss[key] = why
        log.debug(f"Cached {key} reply is stale: {why.reason.value}"
                  + (f" ({why.path})" if why.path else ""))
        if self._entries.get(key) is entry:
            del self._entries[key]
        return None

    def fill(self, key: str, inputs: Callable[[Lstats], Iterable[Watched]],
             compute: Callable[[], Answer]) -> bytes:
        """Compute the reply and keep it if it can be validated later. `inputs` says what
        it is read from; it is resolved and stamped before `compute` runs, the images the
        answer names after."""
        generation = self.generation
        mounts = self.mounts.generation()
        started = self._clock()
        early = Lstats()
        before = plan(inputs(early))
        answer = compute()
        if not answer.cacheable:
            return answer.payload
        late = Lstats()
        watched: list[Watched] = list(before)
        for f in answer.files:
            more, ok = image(self.root, f, late, early.plain_dirs)
            if not ok:
                return answer.payload
            watched += more
        chosen = plan(watched)
        taken_early = {(w.path, w.kind) for w in before}
        paths = tuple(w.path for w in chosen)
        kinds = tuple(w.kind for w in chosen)
        taken = tuple((early if (w.path, w.kind) in taken_early else late).stamp(w.path, w.kind)
                      for w in chosen)
        racy = racy_index(kinds, taken, started, margin_ns=self.margin_ns,
                          coarse_margin_ns=self.coarse_margin_ns)
        if racy is not None:
            log.debug(f"Not caching the {key} reply: {paths[racy]} changed a moment ago")
            return answer.payload
        entry = Entry(payload=answer.payload, generation=generation, mounts=mounts,
                      started_ns=started, paths=paths, kinds=kinds, stamps=taken)
        current = self._entries.get(key)
        if current is None or current.started_ns <= started:
            self._entries[key] = entry
        return answer.payload

    def cached(self, key: str) -> bool:
        """Whether a reply for `key` is kept (valid or not)."""
        return key in self._entries

    def close(self) -> None:
        self._entries.clear()
        self.mounts.close()


def open_cache(root: str) -> ReadCache | None:
    """A cache for `root`, or None (no caching) when the mount table cannot be watched."""
    try:
        mounts = MountWatch()
    except OSError as e:
        log.debug(f"Not caching read replies: cannot watch the mount table: {e}")
        return None
    return ReadCache(root, mounts)
