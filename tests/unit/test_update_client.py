"""strata update against a real repository server on 127.0.0.1: the trust anchor, the plan,
and every attack the device must refuse with a clear error and nothing changed (the store,
the enabled set, no journal). The merge itself (refresh, health, roll-back) is in
tests/kernel/test_update.py."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from strata.errors import ErrorKind, StrataError
from strata.manage import ext
from strata.model import ExtClass
from strata.update import client, expiry, fetch, publish, remote
from strata.update.offers import custom_for
from tests.helpers import make_root, strata
from tests.unit.update_server import RepoServer, make_image, tree_state

STORE = "var/lib/strata/extensions"


class World:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.root = make_root(tmp)
        self.repo = tmp / "repo"
        self.keys = tmp / "keys"
        first = make_image(tmp, "app", "1.0")
        self.publish(first)
        store = self.root / STORE
        store.mkdir(parents=True)
        shutil.copy(first, store / first.name)
        ext.enable(str(self.root), ["app"])
        self.server = RepoServer(self.repo).start()
        remote.init(str(self.root), self.server.url,
                    str(self.repo / "metadata" / "root.json"))

    def publish(self, *images: Path, **kw: object) -> publish.Report:
        return publish.publish(str(self.repo), [str(i) for i in images],
                               keys_dir=str(self.keys), **kw)  # type: ignore[arg-type]

    def state(self) -> dict[str, object]:
        return {"store": tree_state(self.root / STORE),
                "enabled": tree_state(self.root / "var/lib/strata/os-releases"),
                "journal": (self.root / "var/lib/strata/update/journal.json").exists()}

    def config(self, text: str) -> None:
        path = self.root / "etc/strata/strata.toml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def target_url_path(self, file: str) -> str:
        t = publish.Repository(str(self.repo), str(self.keys), create=False)
        digest = t.targets_md.signed.targets[file].hashes["sha256"]
        return f"/targets/{digest}.{file}"


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    def no_merge(*_args: object) -> None:
        raise AssertionError("an attack reached the merge (unit tests never mount)")

    monkeypatch.setattr(client, "_refresh", no_merge)
    w = World(tmp_path)
    try:
        yield w
    finally:
        w.server.stop()


def _refused(w: World, match: str, kind: ErrorKind = ErrorKind.INVALID) -> StrataError:
    before = w.state()
    with pytest.raises(StrataError) as e:
        client.apply(str(w.root))
    assert e.value.kind is kind, e.value
    assert match in e.value.message, e.value.message
    assert w.state() == before, "the device changed"
    assert before["journal"] is False
    return e.value


def test_init_check_and_plan(world: World) -> None:
    plan = client.check(str(world.root))
    assert plan.updates == () and plan.current == (("app", "1.0"),)
    world.publish(make_image(world.tmp, "app", "1.1"), make_image(world.tmp, "app", "1.10"),
                  make_image(world.tmp, "app", "2.0", release={"ID": "fedora"}))
    plan = client.check(str(world.root))
    assert [(p.name, p.installed.version if p.installed else None, p.offer.version)
            for p in plan.updates] == [("app", "1.0", "1.10")]
    assert (world.root / "var/lib/strata/tuf/root.json").exists()
    # the JSON front
    r = strata("update", "--check", f"--root={world.root}", "--json=short")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["updates"] == [{"name": "app", "from": "1.0", "to": "1.10",
                               "file": "app_1.10.raw", "size": plan.updates[0].offer.length,
                               "sha256": plan.updates[0].offer.sha256}]
    r = strata("update", "--check", f"--root={world.root}")
    assert "app  1.0       1.10" in r.stdout and "update" in r.stdout, r.stdout


def test_init_refuses_bad_anchors(world: World, tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.json"
    bogus.write_text(json.dumps({"signed": {}, "signatures": []}))
    with pytest.raises(StrataError, match="not TUF root metadata"):
        remote.init(str(world.root), world.server.url, str(bogus))
    timestamp = world.repo / "metadata/timestamp.json"
    with pytest.raises(StrataError, match="it is timestamp metadata"):
        remote.init(str(world.root), world.server.url, str(timestamp))
    other = tmp_path / "other"
    publish.publish(str(other), [str(make_image(tmp_path, "x", "1"))],
                    keys_dir=str(tmp_path / "other-keys"))
    with pytest.raises(StrataError) as e:
        remote.init(str(world.root), world.server.url, str(other / "metadata/root.json"))
    assert e.value.kind is ErrorKind.BUSY
    r = strata("update", "--init", f"--root={world.root}", f"--repo={world.server.url}")
    assert r.returncode == 1 and "--init needs --repo=URL and --root-file=FILE" in r.stderr
    with pytest.raises(StrataError, match="Invalid repository URL"):
        remote.init(str(world.root), "ftp:/x", str(other / "metadata/root.json"))


def test_no_anchor(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    with pytest.raises(StrataError, match="No repository"):
        client.check(str(root))
    with pytest.raises(StrataError, match="No trust anchor"):
        client.check(str(root), url="http://127.0.0.1:1")


def test_key_rotation_is_followed(world: World) -> None:
    client.check(str(world.root))
    for role in ("root", "targets", "timestamp"):
        publish.rotate_key(str(world.repo), role, keys_dir=str(world.keys))
    world.publish(make_image(world.tmp, "app", "1.1"))
    plan = client.check(str(world.root))
    assert [p.offer.version for p in plan.updates] == ["1.1"]
    assert (world.root / "var/lib/strata/tuf/root_history/4.root.json").exists()


# --- attacks on the metadata -----------------------------------------------------------------


def test_rolled_back_metadata(world: World) -> None:
    old = (world.repo / "metadata/timestamp.json").read_bytes()
    world.publish(make_image(world.tmp, "app", "1.1"))
    client.check(str(world.root))  # the device has seen the new timestamp
    world.server.overrides["/metadata/timestamp.json"] = old
    e = _refused(world, "older metadata than this device has already seen")
    assert "rollback" in e.message


def test_expired_metadata(world: World) -> None:
    client.check(str(world.root))
    past = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=3)
    publish.refresh_timestamp(str(world.repo), keys_dir=str(world.keys), now=past)
    _refused(world, "its metadata has expired")


def test_frozen_timestamp(world: World) -> None:
    """The mirror keeps serving the timestamp the device already has, past its expiry."""
    publish.refresh_timestamp(str(world.repo), keys_dir=str(world.keys),
                              expires={**expiry.DEFAULTS,
                                       "timestamp": dt.timedelta(seconds=2)})
    client.check(str(world.root))
    time.sleep(2.5)
    _refused(world, "timestamp.json is expired")


def test_mix_and_match_snapshot(world: World) -> None:
    old_snapshot = (world.repo / "metadata/2.snapshot.json").read_bytes()
    world.publish(make_image(world.tmp, "app", "1.1"))
    world.server.overrides["/metadata/3.snapshot.json"] = old_snapshot
    _refused(world, "does not match what the signed snapshot and timestamp say")
    old_targets = (world.repo / "metadata/2.targets.json").read_bytes()
    del world.server.overrides["/metadata/3.snapshot.json"]
    world.server.overrides["/metadata/3.targets.json"] = old_targets
    _refused(world, "does not match what the signed snapshot and timestamp say")


def test_unknown_signing_key_whole_repository(world: World, tmp_path: Path) -> None:
    evil = tmp_path / "evil"
    (tmp_path / "e").mkdir()
    publish.publish(str(evil), [str(make_image(tmp_path / "e", "app", "9.9"))],
                    keys_dir=str(tmp_path / "evil-keys"))
    world.server.directory = evil
    _refused(world, "not signed by the keys this device trusts")


def test_unknown_targets_key_with_stolen_online_keys(world: World) -> None:
    """The snapshot and timestamp keys (online, on the server) are stolen; the targets key
    (offline) is not: an image signed with the attacker's targets key is refused."""
    from securesystemslib.signer import CryptoSigner

    evil_image = make_image(world.tmp, "app", "6.6.6", files={"usr/bin/backdoor": "x"})
    r = publish.Repository(str(world.repo), str(world.keys), create=False)
    r.signers["targets"] = CryptoSigner.generate_ed25519()
    publish._add_image(r, publish.describe_image(str(evil_image)))
    r.commit_targets()
    _refused(world, "not signed by the keys this device trusts")


# --- attacks on the images -------------------------------------------------------------------


def _new_version(w: World) -> str:
    w.publish(make_image(w.tmp, "app", "1.1", padding=300_000))
    return w.target_url_path("app_1.1.raw")


def test_tampered_image(world: World) -> None:
    path = _new_version(world)
    body = bytearray((world.repo / path.lstrip("/")).read_bytes())
    body[len(body) // 2] ^= 0xFF
    world.server.overrides[path] = bytes(body)
    _refused(world, "the sha256 of the download does not match the signed metadata")
    assert list((world.root / "var/lib/strata/update/staging").iterdir()) == []


def test_longer_image(world: World) -> None:
    path = _new_version(world)
    world.server.overrides[path] = (world.repo / path.lstrip("/")).read_bytes() + b"more"
    _refused(world, "the server sent more than the")


def test_truncated_download_and_resume(world: World) -> None:
    path = _new_version(world)
    size = (world.repo / path.lstrip("/")).stat().st_size
    world.config("[update]\nretries = 2\n")
    world.server.cut[path] = size // 3
    e = _refused(world, f"stopped at {2 * (size // 3)} of {size} bytes", ErrorKind.SYSTEM)
    assert "the next run resumes it" in e.message
    assert [r for p, r in world.server.requests if p == path] == [None, f"bytes={size // 3}-"]
    part = world.root / "var/lib/strata/update/staging/app_1.1.raw.part"
    assert part.stat().st_size == 2 * (size // 3)
    # the server works again: the next download asks only for the rest
    del world.server.cut[path]
    world.server.requests.clear()
    got = client.resolve_target(str(world.root), "app")
    assert Path(got).read_bytes() == (world.repo / path.lstrip("/")).read_bytes()
    assert [r for p, r in world.server.requests if p == path] == [f"bytes={2 * (size // 3)}-"]


def test_truncated_file_on_the_server(world: World) -> None:
    path = _new_version(world)
    world.config("[update]\nretries = 1\n")
    world.server.overrides[path] = (world.repo / path.lstrip("/")).read_bytes()[:1000]
    _refused(world, "stopped at 1000 of", ErrorKind.SYSTEM)


def test_server_gone(world: World) -> None:
    client.check(str(world.root))
    world.server.stop()
    _refused(world, "Cannot reach repository", ErrorKind.SYSTEM)


def test_incompatible_only(world: World) -> None:
    world.publish(make_image(world.tmp, "tool", "1.0", release={"ID": "fedora",
                                                                  "VERSION_ID": "40"}),
                  make_image(world.tmp, "app", "3.0", release={"ID": "debian",
                                                                 "VERSION_ID": "13"}))
    world.config('[update]\nextensions = ["tool"]\n')
    e = _refused(world, "The repository offers only versions of 'tool' this device cannot "
                 "take (1.0: Extension 'tool' is for OS 'fedora', but deployed on top of "
                 "'debian'.)", ErrorKind.INCOMPATIBLE)
    assert e.message.endswith("Nothing was changed.")
    # app 3.0 is for Debian 13: app stays at 1.0 without an error
    world.config("")
    assert client.check(str(world.root)).current == (("app", "1.0"),)


def test_not_offered(world: World) -> None:
    world.config('[update]\nextensions = ["ghost"]\n')
    _refused(world, "'ghost' ([update] extensions) is not offered", ErrorKind.NOT_FOUND)


def test_image_policy_refusal(world: World) -> None:
    _new_version(world)
    world.config('[update]\nimage_policy = "root=verity+signed"\n')
    e = _refused(world, "app_1.1.raw: refused: ", ErrorKind.PERMISSION)
    assert "image policy" in e.message


def test_image_not_what_the_metadata_says(world: World) -> None:
    """Signed metadata that lies about the image (a publisher bug, or a stolen targets key
    used with an existing image): the image is checked again before it is installed."""
    from tuf.api.metadata import TargetFile

    image = make_image(world.tmp, "app", "1.1")
    world.publish(image)
    r = publish.Repository(str(world.repo), str(world.keys), create=False)
    t = r.targets_md.signed.targets["app_1.1.raw"]
    digest = t.hashes["sha256"]
    # the metadata offers "tool 5", the bytes are app 1.1's
    custom = custom_for("tool", "5", {ExtClass.SYSEXT: {"ID": "_any"}}, digest)
    r.targets_md.signed.targets["tool_5.raw"] = TargetFile(
        length=t.length, hashes={"sha256": digest}, path="tool_5.raw",
        unrecognized_fields={"custom": custom})
    os.link(world.repo / "targets" / f"{digest}.app_1.1.raw",
            world.repo / "targets" / f"{digest}.tool_5.raw")
    r.commit_targets()
    world.config('[update]\nextensions = ["tool"]\n')
    _refused(world, "tool_5.raw: the downloaded image is not an extension")


def _want(server: RepoServer, dest: Path, data: bytes) -> fetch.Want:
    import hashlib

    return fetch.Want(url=f"{server.url}/f", dest=str(dest), length=len(data),
                      hashes={"sha256": hashlib.sha256(data).hexdigest()}, label="f")


def test_fetch_restarts_when_range_is_ignored(tmp_path: Path) -> None:
    """A server without Range support sends everything again: the part starts over (and
    its old bytes are not counted)."""
    data = os.urandom(50_000)
    (tmp_path / "f").write_bytes(data)
    dest = tmp_path / "out"
    (tmp_path / "out.part").write_bytes(data[:20_000])
    seen: list[tuple[int, int]] = []
    with RepoServer(tmp_path) as server:
        server.ignore_range.add("/f")
        fetch.download(_want(server, dest, data),
                       progress=lambda _label, done, total: seen.append((done, total)))
        assert server.requests == [("/f", "bytes=20000-")]
    assert dest.read_bytes() == data and not (tmp_path / "out.part").exists()
    assert seen[0] == (0, 50_000) and seen[-1] == (50_000, 50_000)


def test_fetch_poisoned_part_is_discarded(tmp_path: Path) -> None:
    """A part whose bytes are not the file's (tampered while cut off): the finished file
    fails its hash and is deleted, so the next run starts clean instead of resuming it."""
    data = os.urandom(50_000)
    (tmp_path / "f").write_bytes(data)
    dest = tmp_path / "out"
    (tmp_path / "out.part").write_bytes(b"\0" * 20_000)
    with RepoServer(tmp_path) as server:
        with pytest.raises(StrataError, match="sha256 of the download does not match"):
            fetch.download(_want(server, dest, data))
        assert not (tmp_path / "out.part").exists() and not dest.exists()
        fetch.download(_want(server, dest, data))
        assert server.requests == [("/f", "bytes=20000-"), ("/f", None)]
    assert dest.read_bytes() == data


def test_fetch_reuses_a_verified_file(tmp_path: Path) -> None:
    data = os.urandom(1000)
    dest = tmp_path / "out"
    dest.write_bytes(data)
    with RepoServer(tmp_path) as server:
        fetch.download(_want(server, dest, data))
        assert server.requests == []
        dest.write_bytes(data[:-1] + b"x")  # not the file any more: fetched again
        (tmp_path / "f").write_bytes(data)
        fetch.download(_want(server, dest, data))
        assert server.requests == [("/f", None)]
    assert dest.read_bytes() == data
