"""The daemon's read cache (service/readcache.py): the pure decisions, table-driven; path
resolution and the stamps on scratch trees; every source of invalidation, at the cache and
through the real daemon; and the fast path's bytes against asyncvarlink's own conversion."""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from asyncvarlink import VarlinkMethodReply, varlinksignature

from strata.discover import Extension as Image
from strata.manage import ext
from strata.manage.api import ExtensionInfo, ExtensionStatus
from strata.model import ExtClass, ImageType
from strata.service import avocado, readcache, sysext
from strata.service.backend import load
from strata.service.readcache import (
    Answer,
    Entry,
    Lstats,
    ReadCache,
    Reason,
    Stale,
    Watch,
    Watched,
    chain,
    plan,
    racy_index,
    stale,
)
from tests.helpers import ext_tree, install_ext, isolated, make_root, mkfs, strata
from tests.service.fake_manage import FakeManage
from tests.service.harness import Raw, ServerThread

C, ID = Watch.CONTENT, Watch.IDENTITY
DIR, REG, LNK = stat.S_IFDIR | 0o755, stat.S_IFREG | 0o644, stat.S_IFLNK | 0o777
AV = "org.avocado.Extensions"
SX = "io.systemd.sysext"


# --- pure decisions --------------------------------------------------------------------------


@pytest.mark.parametrize(("watched", "expect"), [
    # once each, first-seen order; content wins over identity
    ([Watched("/a", ID, DIR), Watched("/b", C, REG), Watched("/a", C, DIR)],
     [Watched("/a", C, DIR), Watched("/b", C, REG)]),
    ([Watched("/a", C, DIR), Watched("/a", ID, DIR)], [Watched("/a", C, DIR)]),
    # below a directory watched for content: files and directories stay (in-place changes)...
    ([Watched("/d", C, DIR), Watched("/d/img.raw", C, REG), Watched("/d/tree", C, DIR)],
     [Watched("/d", C, DIR), Watched("/d/img.raw", C, REG), Watched("/d/tree", C, DIR)]),
    # ... symlinks, missing entries and identities go (they change the directory)
    ([Watched("/d", C, DIR), Watched("/d/link", C, LNK), Watched("/d/gone", C),
      Watched("/d/sub", ID, DIR)],
     [Watched("/d", C, DIR)]),
    # a directory watched only for identity covers nothing
    ([Watched("/d", ID, DIR), Watched("/d/link", C, LNK), Watched("/d/gone", C)],
     [Watched("/d", ID, DIR), Watched("/d/link", C, LNK), Watched("/d/gone", C)]),
    # a file watched for content covers nothing below it (it has nothing below)
    ([Watched("/f", C, REG), Watched("/f/x", C)], [Watched("/f", C, REG), Watched("/f/x", C)]),
    # only the parent counts, not an ancestor
    ([Watched("/d", C, DIR), Watched("/d/sub/link", C, LNK)],
     [Watched("/d", C, DIR), Watched("/d/sub/link", C, LNK)]),
])
def test_plan(watched: list[Watched], expect: list[Watched]) -> None:
    assert list(plan(watched)) == expect


S = 1_000_000_000
FINE, COARSE = readcache.RACY_MARGIN_NS, readcache.RACY_MARGIN_COARSE_NS


def content(ctime: int) -> tuple[int, ...]:
    return (1, 2, 3, 4, ctime)


@pytest.mark.parametrize(("kinds", "taken", "started", "expect"), [
    ([C], [content(100 * S + 5)], 200 * S, None),  # long before
    ([C], [content(200 * S - FINE - 1)], 200 * S, None),  # just outside the margin
    ([C], [content(200 * S - FINE + 7)], 200 * S, 0),  # inside it
    ([C], [content(200 * S + 3)], 200 * S, 0),  # during the computation
    ([C], [content(199 * S)], 200 * S, 0),  # whole second: the coarse margin
    ([C], [content(200 * S - COARSE - S)], 200 * S, None),  # whole second, long before
    ([ID, C], [(1, 2, stat.S_IFDIR), content(200 * S)], 200 * S, 1),  # identity: no time
    ([C, C], [None, (-1, 13)], 200 * S, None),  # missing, or an error: no time
    ([C, C], [content(1), content(200 * S + 1)], 200 * S, 1),
])
def test_racy_index(kinds: list[Watch], taken: list[readcache.Stamp], started: int,
                    expect: int | None) -> None:
    assert racy_index(kinds, taken, started) == expect


def entry(stamps: tuple[readcache.Stamp, ...] = (content(1), None)) -> Entry:
    return Entry(payload=b"x", generation=3, mounts=7, started_ns=10, paths=("/a", "/b"),
                 kinds=(C, C), stamps=stamps)


@pytest.mark.parametrize(("generation", "mounts", "now", "expect"), [
    (3, 7, (content(1), None), None),
    (4, 7, (content(1), None), Stale(Reason.CHANGE)),
    (4, 8, (content(2), None), Stale(Reason.CHANGE)),  # a change through the daemon first
    (3, 8, (content(1), None), Stale(Reason.MOUNTS)),
    (3, 8, (content(2), None), Stale(Reason.MOUNTS)),
    (3, 7, (content(2), None), Stale(Reason.FILE, "/a")),
    (3, 7, (content(1), content(5)), Stale(Reason.FILE, "/b")),  # appeared
    (3, 7, (None, None), Stale(Reason.FILE, "/a")),  # vanished
    (3, 7, (content(1), (-1, 13)), Stale(Reason.FILE, "/b")),  # became unreadable
])
def test_stale(generation: int, mounts: int, now: tuple[readcache.Stamp, ...],
               expect: Stale | None) -> None:
    assert stale(entry(), generation=generation, mounts=mounts, now=now) == expect


# --- resolving paths -------------------------------------------------------------------------


def tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "var/lib/extensions").mkdir(parents=True)
    (root / "data/images").mkdir(parents=True)
    (root / "data/images/real.raw").write_bytes(b"x")
    os.symlink("/data/images/real.raw", root / "var/lib/extensions/abs.raw")
    os.symlink("../../../data/images/real.raw", root / "var/lib/extensions/rel.raw")
    os.symlink("/nowhere/gone.raw", root / "var/lib/extensions/dangling.raw")
    os.symlink("/data", root / "var/lib/linked")
    os.symlink("loop", root / "loop")
    return root


def kinds_of(watched: list[Watched], root: Path) -> list[tuple[str, Watch]]:
    return [(os.path.relpath(w.path, root), w.kind) for w in watched]


@pytest.mark.parametrize(("path", "expect"), [
    ("/var/lib/extensions", [("var", ID), ("var/lib", ID), ("var/lib/extensions", C)]),
    # absolute and relative links resolve inside the root; the link itself is watched
    ("/var/lib/extensions/abs.raw",
     [("var", ID), ("var/lib", ID), ("var/lib/extensions", ID),
      ("var/lib/extensions/abs.raw", C), ("data", ID), ("data/images", ID),
      ("data/images/real.raw", C)]),
    ("/var/lib/extensions/rel.raw",
     [("var", ID), ("var/lib", ID), ("var/lib/extensions", ID),
      ("var/lib/extensions/rel.raw", C), ("data", ID), ("data/images", ID),
      ("data/images/real.raw", C)]),
    # a missing component is watched (its appearance matters), and ends the walk
    ("/var/lib/extensions/dangling.raw",
     [("var", ID), ("var/lib", ID), ("var/lib/extensions", ID),
      ("var/lib/extensions/dangling.raw", C), ("nowhere", C)]),
    ("/var/lib/linked/images", [("var", ID), ("var/lib", ID), ("var/lib/linked", C),
                                ("data", ID), ("data/images", C)]),
    ("/etc/os-release", [("etc", C)]),
    ("/loop/x", [("loop", C)] * (readcache.CHASE_MAX + 1)),  # gives up like chase()
])
def test_chain(tmp_path: Path, path: str, expect: list[tuple[str, Watch]]) -> None:
    root = tree(tmp_path)
    assert kinds_of(chain(str(root), path), root) == expect


def test_directory_follows_links_not_covered_already(tmp_path: Path) -> None:
    """Links into a directory that is watched anyway are not resolved again; the others
    are, up to what they lead to (missing included)."""
    root = tree(tmp_path)
    os.symlink("../extensions/x.raw", root / "var/lib/extensions/same-dir.raw")
    lstat = Lstats()
    got = readcache.directory(str(root), "/var/lib/extensions", lstat)
    paths = {os.path.relpath(w.path, root) for w in got}
    assert {"data/images/real.raw", "nowhere", "var/lib/extensions/dangling.raw"} <= paths
    assert "var/lib/extensions/x.raw" not in paths  # covered by the directory's own stamp
    assert lstat.plain_dirs == {"/var/lib/extensions"}
    through_link = Lstats()
    readcache.directory(str(root), "/var/lib/linked/images", through_link)
    assert through_link.plain_dirs == set()  # reached through a symlink: no shortcut


def test_image_of_a_directory_watches_its_release_files(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    img = install_ext(root, "tree", {"usr/bin/x": "x"}, {"ID": "_any"})
    watched, ok = readcache.image(str(root), str(img), Lstats(), {"/var/lib/extensions"})
    rel = {os.path.relpath(w.path, img) for w in watched if w.path.startswith(str(img))}
    assert ok
    assert {".", "usr", "usr/lib", "usr/lib/extension-release.d", "etc",
            "etc/extension-release.d",
            "usr/lib/extension-release.d/extension-release.tree"} <= rel
    # a symlinked release file would resolve inside the image: not cached at all
    os.symlink("extension-release.tree", img / "usr/lib/extension-release.d/other")
    assert readcache.image(str(root), str(img), Lstats())[1] is False


# --- the cache at work -----------------------------------------------------------------------


class Mounts(readcache.MountWatch):
    """A mount table that changes when the test says so."""

    def __init__(self) -> None:  # no fd
        self.value = 0

    def generation(self) -> int:
        return self.value

    def close(self) -> None:
        pass


def later() -> int:
    """A clock for computations made well after every test file was written (so that the
    racy rule leaves them cached); test_just_changed_is_not_cached covers that rule."""
    return time.time_ns() + 10 * 1_000_000_000


class Counter:
    def __init__(self, fn: Callable[[], Answer]) -> None:
        self.fn = fn
        self.calls = 0

    def __call__(self) -> Answer:
        self.calls += 1
        return self.fn()


def status_cache(root: Path) -> tuple[ReadCache, Mounts, Callable[[], bytes | None]]:
    """A cache for Status over the real management layer: returns it, its mount table and a
    function that answers from it (filling it when it misses)."""
    mounts = Mounts()
    cache = ReadCache(str(root), mounts, clock=later)
    compute = Counter(lambda: avocado.status_answer(ext.status(str(root))))

    def inputs(lstat: Lstats) -> list[Watched]:
        return readcache.manage_inputs(str(root), lstat)

    def ask() -> bytes | None:
        hit = cache.lookup("Status")
        return hit if hit is not None else cache.fill("Status", inputs, compute)

    return cache, mounts, ask


def statuses(payload: bytes | None) -> dict[str, dict[str, Any]]:
    assert payload is not None
    reply = json.loads(payload.rstrip(b"\0"))
    return {s["name"]: s for s in reply["parameters"]["extensions"]}


def scratch(tmp_path: Path) -> Path:
    root = make_root(tmp_path)
    install_ext(root, "app", {"usr/bin/app": "app"}, {"ID": "_any", "SYSEXT_VERSION_ID": "1"},
                fmt="erofs", where="var/lib/strata/extensions")
    return root


def test_hit_until_invalidated_by_a_change(tmp_path: Path) -> None:
    root = scratch(tmp_path)
    cache, _mounts, ask = status_cache(root)
    first = ask()
    assert cache.cached("Status") and cache.lookup("Status") == first
    hits = cache.hits
    assert ask() == first and cache.hits == hits + 1
    cache.invalidate()  # what the daemon does after each change it runs
    assert cache.lookup("Status") is None
    assert cache.last_miss["Status"] == Stale(Reason.CHANGE)


def test_mount_table(tmp_path: Path) -> None:
    root = scratch(tmp_path)
    cache, mounts, ask = status_cache(root)
    ask()
    mounts.value += 1
    assert cache.lookup("Status") is None
    assert cache.last_miss["Status"] == Stale(Reason.MOUNTS)


def miss(cache: ReadCache, key: str = "Status") -> str:
    """The path whose change made `key` stale (relative to nothing: absolute)."""
    assert cache.lookup(key) is None
    why = cache.last_miss[key]
    assert why is not None and why.reason is Reason.FILE and why.path is not None
    return why.path


def test_new_image_in_a_search_dir(tmp_path: Path) -> None:
    root = scratch(tmp_path)
    cache, _mounts, ask = status_cache(root)
    assert set(statuses(ask())) == {"app"}
    install_ext(root, "tool", {"usr/bin/tool": "t"}, fmt="squashfs", where="etc/extensions")
    assert miss(cache) == str(root / "etc/extensions")
    assert set(statuses(ask())) == {"app", "tool"}


def test_image_rewritten_in_place(tmp_path: Path) -> None:
    """Same file, same name, same mtime even: the new content is seen."""
    root = scratch(tmp_path)
    cache, _mounts, ask = status_cache(root)
    assert statuses(ask())["app"]["version"] == "1"
    path = root / "var/lib/strata/extensions/app.raw"
    before = path.stat()
    newer = mkfs(ext_tree(tmp_path, "app2", {"usr/bin/app": "app v2"},
                          {"ID": "_any", "SYSEXT_VERSION_ID": "2"}, release_name="app"),
                 tmp_path / "app2.raw")
    with open(path, "r+b") as f:
        f.write(newer.read_bytes())
        f.truncate()
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_ino == before.st_ino
    assert miss(cache) == str(path)
    assert statuses(ask())["app"]["version"] == "2"


def test_os_release_changed(tmp_path: Path) -> None:
    root = scratch(tmp_path)
    cache, _mounts, ask = status_cache(root)
    ask()
    (root / "etc/os-release").write_text("ID=debian\nVERSION_ID=13\n")
    assert miss(cache) == str(root / "etc/os-release")


@pytest.mark.parametrize("command", [("enable", "app"), ("disable", "app")])
def test_enabled_set_changed_by_the_cli(tmp_path: Path, command: tuple[str, str]) -> None:
    """`strata ext enable|disable` run outside the daemon: the release's link directory."""
    root = scratch(tmp_path)
    if command[0] == "disable":
        ext.enable(str(root), ["app"])
    cache, _mounts, ask = status_cache(root)
    ask()
    done = strata("ext", command[0], command[1], f"--root={root}")
    assert done.returncode == 0, done.stderr
    assert miss(cache) in {str(root / "var/lib/strata/os-releases/12"),
                           str(root / "var/lib/strata/os-releases")}


def test_dangling_link_target_appears(tmp_path: Path) -> None:
    root = scratch(tmp_path)
    (root / "var/lib/extensions").mkdir(parents=True)
    os.symlink("/srv/images/late.raw", root / "var/lib/extensions/late.raw")
    cache, _mounts, ask = status_cache(root)
    assert set(statuses(ask())) == {"app"}
    install_ext(root, "late", {"usr/bin/late": "l"}, fmt="erofs", where="srv/images")
    assert miss(cache).startswith(str(root / "srv"))
    assert set(statuses(ask())) == {"app", "late"}


def test_just_changed_is_not_cached(tmp_path: Path) -> None:
    """A store changed a moment before the computation began may change again within the
    same timestamp tick: that answer is given, not kept."""
    root = scratch(tmp_path)
    cache = ReadCache(str(root), Mounts())
    compute = Counter(lambda: avocado.status_answer(ext.status(str(root))))

    def inputs(lstat: Lstats) -> list[Watched]:
        return readcache.manage_inputs(str(root), lstat)

    cache.fill("Status", inputs, compute)
    assert not cache.cached("Status")
    old = time.time_ns() - 60 * 1_000_000_000
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.utime(os.path.join(dirpath, name), ns=(old, old), follow_symlinks=False)
    # utime() set mtimes, but ctimes are now: still too recent
    cache.fill("Status", inputs, compute)
    assert not cache.cached("Status")


def test_uncacheable_answer(tmp_path: Path) -> None:
    cache = ReadCache(str(tmp_path), Mounts(), clock=later)
    assert cache.fill("k", lambda _l: [], lambda: Answer(b"a", cacheable=False)) == b"a"
    assert not cache.cached("k")
    assert cache.fill("k", lambda _l: [], lambda: Answer(b"b")) == b"b"
    assert cache.lookup("k") == b"b"


def test_a_computation_that_began_earlier_does_not_replace_a_later_one(tmp_path: Path
                                                                       ) -> None:
    starts = iter([200 * S, 100 * S])
    cache = ReadCache(str(tmp_path), Mounts(), clock=lambda: next(starts))
    cache.fill("k", lambda _l: [], lambda: Answer(b"new"))
    cache.fill("k", lambda _l: [], lambda: Answer(b"old"))
    assert cache.lookup("k") == b"new"


@pytest.mark.privileged
@isolated
def test_mount_watch_sees_every_mount_change(tmp_path: Path) -> None:
    from strata.run import run

    watch = readcache.MountWatch()
    try:
        start = watch.generation()
        assert watch.generation() == start  # nothing happened
        (tmp_path / "m").mkdir()
        run(["mount", "-t", "tmpfs", "tmpfs", str(tmp_path / "m")])
        assert watch.generation() == start + 1
        assert watch.generation() == start + 1  # reported once
        run(["umount", str(tmp_path / "m")])
        assert watch.generation() == start + 2
    finally:
        watch.close()
    assert watch.generation() != start + 2  # closed: nothing stays valid


# --- through the daemon ----------------------------------------------------------------------


@pytest.fixture
def caches(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[ReadCache]]:
    """The caches the daemons started by the test create, with no racy margin (the test
    files are all written just before)."""
    made: list[ReadCache] = []
    original = readcache.open_cache

    def capture(root: str) -> ReadCache | None:
        cache = original(root)
        if cache is not None:
            cache.margin_ns = cache.coarse_margin_ns = -1
            made.append(cache)
        return cache

    monkeypatch.setattr(readcache, "open_cache", capture)
    yield made


def call(path: Path, method: str, **params: Any) -> dict[str, Any]:
    with Raw(path, timeout=120) as r:
        r.call(method, params)
        return r.reply()


def listed(path: Path) -> list[dict[str, Any]]:
    with Raw(path) as r:
        r.call(f"{SX}.List", {}, more=True)
        return [m["parameters"] for m in r.replies()]


def by_name(reply: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in reply["parameters"]["extensions"]}


@pytest.mark.privileged
@isolated
def test_daemon_answers_follow_every_change(tmp_path: Path, sock_dir: Path,
                                            caches: list[ReadCache]) -> None:
    root = make_root(tmp_path)
    install_ext(root, "foo", {"usr/bin/foo": "foo"}, {"ID": "_any", "SYSEXT_VERSION_ID": "1"},
                fmt="erofs")
    status, lst = f"{AV}.Status", f"{AV}.List"
    with ServerThread(sock_dir / "s.sock", load(), root=str(root)) as srv:
        (cache,) = caches
        assert call(srv.path, f"{AV}.Enable", extensions=["foo"])["parameters"]["enabled"] == 1
        assert by_name(call(srv.path, status))["foo"]["isMerged"] is False
        assert cache.cached(status)
        hits = cache.hits
        assert by_name(call(srv.path, status))["foo"]["isMerged"] is False
        assert cache.hits == hits + 1

        # a merge by the daemon
        assert call(srv.path, f"{AV}.Merge")["parameters"]["done"] is True
        assert by_name(call(srv.path, status))["foo"]["isMerged"] is True
        assert cache.last_miss[status] == Stale(Reason.CHANGE)

        # an unmerge by `strata sysext`, behind the daemon's back: the mount table
        done = strata("sysext", "unmerge", f"--root={root}")
        assert done.returncode == 0, done.stderr
        assert by_name(call(srv.path, status))["foo"]["isMerged"] is False
        assert cache.last_miss[status] == Stale(Reason.MOUNTS)

        # a new image in a search directory
        assert [e["Name"] for e in listed(srv.path)] == ["foo"]
        assert set(by_name(call(srv.path, lst))) == {"foo"}
        install_ext(root, "bar", {"usr/bin/bar": "bar"}, fmt="erofs")
        assert [e["Name"] for e in listed(srv.path)] == ["bar", "foo"]
        assert set(by_name(call(srv.path, lst))) == {"bar", "foo"}
        assert cache.last_miss[lst] == Stale(Reason.FILE, str(root / "var/lib/extensions"))

        # an image rewritten in place (same inode, same mtime)
        path = root / "var/lib/extensions/foo.raw"
        before = path.stat()
        newer = mkfs(ext_tree(tmp_path, "foo2", {"usr/bin/foo": os.urandom(256 << 10)},
                              {"ID": "_any", "SYSEXT_VERSION_ID": "2"}, release_name="foo"),
                     tmp_path / "foo2.raw")
        with open(path, "r+b") as f:
            f.write(newer.read_bytes())
            f.truncate()
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
        assert by_name(call(srv.path, lst))["foo"]["version"] == "2"
        assert cache.last_miss[lst] == Stale(Reason.FILE, str(path))
        foo = next(e for e in listed(srv.path) if e["Name"] == "foo")
        assert foo["Limit"] == path.stat().st_size != before.st_size
        assert cache.last_miss[f"{SX}.List:sysext"] == Stale(Reason.FILE, str(path))

        # enable and disable by the CLI, outside the daemon
        call(srv.path, status)
        done = strata("ext", "disable", "foo", f"--root={root}")
        assert done.returncode == 0, done.stderr
        call(srv.path, status)
        assert cache.last_miss[status] == Stale(
            Reason.FILE, str(root / "var/lib/strata/os-releases/12"))

        # a new OS release
        (root / "etc/os-release").write_text("ID=debian\nVERSION_ID=13\n")
        call(srv.path, status)
        assert cache.last_miss[status] == Stale(Reason.FILE, str(root / "etc/os-release"))


def test_fake_backend_is_not_cached(sock_dir: Path, caches: list[ReadCache]) -> None:
    """A stand-in management layer's reads depend on nothing the cache can watch."""
    fake = FakeManage()
    with ServerThread(sock_dir / "s.sock", fake) as srv:
        assert by_name(call(srv.path, f"{AV}.Status"))["app"]["isMerged"] is False
        fake.merged = ("app",)
        assert by_name(call(srv.path, f"{AV}.Status"))["app"]["isMerged"] is True
        assert not caches[0].cached(f"{AV}.Status")


def test_pipelined_reads_answer_in_order(sock_dir: Path) -> None:
    fake = FakeManage()
    with ServerThread(sock_dir / "s.sock", fake) as srv, Raw(srv.path) as r:
        calls = [f"{AV}.Status", f"{AV}.List", "org.varlink.service.GetInfo", f"{AV}.List"]
        r.send(b"".join(json.dumps({"method": m, "parameters": {}}).encode() + b"\0"
                        for m in calls))
        replies = [r.reply()["parameters"] for _ in calls]
    assert "isMerged" in replies[0]["extensions"][0]
    assert "path" in replies[1]["extensions"][0] and replies[3] == replies[1]
    assert replies[2]["vendor"] == "Strata"


def test_reply_larger_than_the_socket_buffer(sock_dir: Path) -> None:
    """Written partly at once, the rest when the socket drains."""
    store = {f"ext{i:05d}": ExtensionInfo(f"ext{i:05d}", "1.0",
                                          f"/var/lib/strata/extensions/ext{i:05d}-1.0.raw",
                                          True, False, False) for i in range(8000)}
    with ServerThread(sock_dir / "s.sock", FakeManage(store)) as srv, Raw(srv.path) as r:
        r.call(f"{AV}.List", {})
        time.sleep(0.2)  # let the daemon fill the socket before reading
        got = r.reply()
    assert len(got["parameters"]["extensions"]) == 8000


# --- the fast path's bytes -------------------------------------------------------------------


def asyncvarlink_bytes(method: Any, result: dict[str, Any]) -> bytes:
    """What asyncvarlink's ordinary path would send for `result` of `method`."""
    from strata.service.wire import complete

    signature = varlinksignature(method)
    assert signature is not None
    params = signature.return_type.tojson(result)
    reply = complete(VarlinkMethodReply(params)).tojson()
    return json.dumps(reply, separators=(",", ":")).encode() + b"\0"


STATUS_ROWS = [
    ExtensionStatus("app", "1.0", True, False, True, "store", "0123456789ab",
                    path="/var/lib/strata/extensions/app-1.0.raw"),
    ExtensionStatus("cfg", None, False, True, False, None, None, path="/etc/extensions/cfg"),
    ExtensionStatus("gone", None, True, True, True, None, None),
    ExtensionStatus("ünï", "2", False, False, False, "/run/extensions", "ffffffffffff"),
]
INFOS = [ExtensionInfo("app", "1.0", "/x/app-1.0.raw", True, False, False),
         ExtensionInfo("cfg", None, "/x/cfg", False, True, True)]


@pytest.mark.parametrize("rows", [STATUS_ROWS, STATUS_ROWS[2:3], []])
def test_status_bytes_match_asyncvarlink(rows: list[ExtensionStatus]) -> None:
    answer = avocado.status_answer(rows)
    assert answer.payload == asyncvarlink_bytes(
        avocado.AvocadoExtensions.Status,
        {"extensions": [avocado.extension_status(r) for r in rows]})
    assert answer.files == tuple(r.path for r in rows if r.path)


@pytest.mark.parametrize("infos", [INFOS, []])
def test_list_bytes_match_asyncvarlink(infos: list[ExtensionInfo]) -> None:
    answer = avocado.list_answer(infos)
    assert answer.payload == asyncvarlink_bytes(
        avocado.AvocadoExtensions.List, {"extensions": [avocado.extension(i) for i in infos]})


IMAGES = [
    Image(name="a", path="/var/lib/extensions/a.raw", type=ImageType.RAW,
          ext_class=ExtClass.SYSEXT, read_only=False, mtime_us=17, crtime_us=0,
          search_dir="/var/lib/extensions", usage_bytes=4096, limit_bytes=4000),
    Image(name="d", path="/etc/extensions/d", type=ImageType.DIRECTORY,
          ext_class=ExtClass.SYSEXT, read_only=True, mtime_us=0, crtime_us=99,
          search_dir="/etc/extensions"),
    Image(name="dev", path="/dev/sdz", type=ImageType.BLOCK, ext_class=ExtClass.CONFEXT,
          read_only=True, mtime_us=0, crtime_us=0, search_dir="/run/confexts",
          usage_bytes=4096, limit_bytes=4096),
]


@pytest.mark.parametrize("images", [IMAGES, IMAGES[1:2]])
def test_sysext_list_bytes_match_asyncvarlink(images: list[Image]) -> None:
    """The replies the ordinary path streams: notify() for all but the last, then the
    method's result."""
    from strata.service.wire import strip_nulls

    expect = b""
    for img in images[:-1]:
        params = strip_nulls(sysext._LIST_TYPE.tojson(sysext.list_entry(img)))
        expect += json.dumps({"continues": True, "parameters": params},
                             separators=(",", ":")).encode() + b"\0"
    expect += asyncvarlink_bytes(sysext.Sysext.List, sysext.list_entry(images[-1]))
    assert sysext.list_answer(images).payload == expect


def test_sysext_no_images_bytes() -> None:
    assert sysext.list_answer([]).payload == \
        b'{"error":"io.systemd.sysext.NoImagesFound","parameters":{}}\0'


def test_image_through_a_symlink_watches_the_target_tree(tmp_path: Path) -> None:
    """A directory image linked into a search directory: its release files are where the
    link leads."""
    root = make_root(tmp_path)
    img = install_ext(root, "tree", {"usr/bin/x": "x"}, {"ID": "_any"}, where="srv")
    (root / "var/lib/extensions").mkdir(parents=True)
    os.symlink("/srv/tree", root / "var/lib/extensions/tree")
    watched, ok = readcache.image(str(root), str(root / "var/lib/extensions/tree"), Lstats(),
                                  {"/var/lib/extensions"})
    assert ok
    assert Watched(str(img / "usr/lib/extension-release.d/extension-release.tree"), C,
                   REG) in watched


def test_directory_image_release_edited_in_place(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    img = install_ext(root, "tree", {"usr/bin/x": "x"}, {"ID": "_any", "SYSEXT_VERSION_ID": "1"})
    cache, _mounts, ask = status_cache(root)
    assert statuses(ask())["tree"]["version"] == "1"
    release = img / "usr/lib/extension-release.d/extension-release.tree"
    release.write_text("ID=_any\nSYSEXT_VERSION_ID=2\n")
    assert miss(cache) == str(release)
    assert statuses(ask())["tree"]["version"] == "2"
