"""strata publish: the repository it writes (checked with python-tuf itself), keys, expiry,
re-signing, key rotation, and the images it refuses."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
from pathlib import Path
from typing import Any

import pytest

from strata.errors import ErrorKind, StrataError
from strata.update import publish
from tests.helpers import strata
from tests.unit.update_server import make_image

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _md(repo: Path, name: str) -> Any:
    from tuf.api.metadata import Metadata

    return Metadata.from_file(str(repo / "metadata" / name))


def _verify_chain(repo: Path) -> None:
    """Each top-level role signed by the keys the newest root names; versions linked."""
    roots = sorted(int(p.name.split(".")[0]) for p in (repo / "metadata").glob("*.root.json"))
    root = _md(repo, f"{roots[-1]}.root.json")
    ts = _md(repo, "timestamp.json")
    root.verify_delegate("timestamp", ts)
    snap = _md(repo, f"{ts.signed.snapshot_meta.version}.snapshot.json")
    root.verify_delegate("snapshot", snap)
    targets = _md(repo, f"{snap.signed.meta['targets.json'].version}.targets.json")
    root.verify_delegate("targets", targets)
    for previous, current in itertools.pairwise(roots):
        old = _md(repo, f"{previous}.root.json")
        new = _md(repo, f"{current}.root.json")
        old.verify_delegate("root", new)  # a device can walk from one to the next
        new.verify_delegate("root", new)


def test_publish_creates_a_tuf_repository(tmp_path: Path) -> None:
    image = make_image(tmp_path, "app", "1.0")
    repo = tmp_path / "repo"
    report = publish.publish(str(repo), [str(image)], url="https://updates.example/fleet",
                             now=NOW)
    keys = tmp_path / "repo.keys"
    assert sorted(p.name for p in keys.iterdir()) == ["root.key", "snapshot.key",
                                                       "targets.key", "timestamp.key"]
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in keys.iterdir())
    assert keys.stat().st_mode & 0o777 == 0o700
    assert report.created_keys and not (repo / "root.key").exists()
    _verify_chain(repo)
    root = _md(repo, "1.root.json").signed
    assert root.consistent_snapshot is True
    assert _md(repo, "root.json").signed == root
    ts = _md(repo, "timestamp.json").signed
    assert ts.expires == NOW + dt.timedelta(days=1) and ts.version == 2
    targets = _md(repo, "2.targets.json").signed
    assert targets.expires == NOW + dt.timedelta(days=90)
    digest = report.published[0].sha256
    t = targets.targets["app_1.0.raw"]
    assert t.hashes == {"sha256": digest} and t.length == image.stat().st_size
    assert t.custom == {"strata": {"name": "app", "version": "1.0", "classes": ["sysext"],
                                   "release": {"sysext": {"ID": "debian", "VERSION_ID": "12"}},
                                   "sha256": digest}}
    # consistent snapshots: content-addressed image, a hard link under its own name
    content = repo / "targets" / f"{digest}.app_1.0.raw"
    assert content.read_bytes() == image.read_bytes()
    assert os.path.samefile(content, repo / "targets" / "app_1.0.raw")
    assert (repo / "targets" / "SHA256SUMS").read_text() == f"{digest}  app_1.0.raw\n"
    transfer = (repo / "sysupdate.d" / "app.transfer").read_text()
    assert "Path=https://updates.example/fleet/targets/" in transfer
    assert json.loads((repo / ".strata-publish.json").read_text()) == {
        "url": "https://updates.example/fleet"}


def test_publish_again_and_conflicts(tmp_path: Path) -> None:
    repo = str(tmp_path / "repo")
    one = make_image(tmp_path, "app", "1.0")
    publish.publish(repo, [str(one)], now=NOW)
    again = publish.publish(repo, [str(one)], now=NOW)
    assert [p.added for p in again.published] == [False]
    assert again.changed == () and again.roles["targets"][0] == 2  # nothing re-signed
    two = make_image(tmp_path, "app", "1.1")
    report = publish.publish(repo, [str(two)], now=NOW)
    assert report.roles["targets"][0] == 3 and report.roles["snapshot"][0] == 3
    assert (tmp_path / "repo/metadata/2.targets.json").exists()  # old versions stay
    # the same file name with other bytes
    other = tmp_path / "other"
    other.mkdir()
    changed = make_image(other, "app", "1.0", files={"usr/share/app/x": "different"})
    with pytest.raises(StrataError) as e:
        publish.publish(repo, [str(changed)], now=NOW)
    assert e.value.kind is ErrorKind.BUSY and "already published with other content" in str(e.value)
    # the same version under another file name
    renamed = make_image(other, "app", "1.1", file_name="app-1.1.raw",
                         files={"usr/share/app/y": "y"})
    with pytest.raises(StrataError, match=r"Version 1.1 of 'app' is already published as "
                                          r"app_1.1.raw"):
        publish.publish(repo, [str(renamed)], now=NOW)


def test_publish_names_unversioned_images(tmp_path: Path) -> None:
    repo = str(tmp_path / "repo")
    image = make_image(tmp_path, "tool", "ignored", file_name="tool.raw",
                       release={"ID": "_any", "SYSEXT_VERSION_ID": "2.5"})
    report = publish.publish(repo, [str(image)], now=NOW)
    assert [(p.name, p.version, p.target) for p in report.published] == [
        ("tool", "2.5", "tool_2.5.raw")]
    bare = make_image(tmp_path, "bare", "x", file_name="bare.raw", release={"ID": "_any"})
    with pytest.raises(StrataError, match="no version: set SYSEXT_VERSION_ID"):
        publish.publish(repo, [str(bare)], now=NOW)


def _file(base: Path, name: str, data: bytes) -> Path:
    (base / name).write_bytes(data)
    return base / name


@pytest.mark.parametrize(("make", "message"), [
    (lambda t: t / "nothing.raw", "No such file"),
    (lambda t: t, "is a directory"),
    (lambda t: _file(t, "x.img", b"x"), "must end in .raw"),
    (lambda t: _file(t, "junk_1.raw", b"\0" * 8192), "junk_1.raw"),
])
def test_publish_refuses_non_images(tmp_path: Path, make: Any, message: str) -> None:
    with pytest.raises(StrataError, match=message):
        publish.publish(str(tmp_path / "repo"), [str(make(tmp_path))], now=NOW)
    assert not (tmp_path / "repo" / "metadata").exists()


def test_refresh_timestamp_and_resign(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    publish.publish(str(repo), [str(make_image(tmp_path, "app", "1"))], now=NOW)
    later = NOW + dt.timedelta(hours=20)
    r = publish.refresh_timestamp(str(repo), now=later)
    assert r.changed == ("timestamp",) and r.roles["timestamp"][0] == 3
    assert _md(repo, "timestamp.json").signed.expires == later + dt.timedelta(days=1)
    # the snapshot would expire before the next timestamp: re-signed too
    late = NOW + dt.timedelta(days=6, hours=12)
    r = publish.refresh_timestamp(str(repo), now=late)
    assert r.changed == ("snapshot", "timestamp") and r.roles["snapshot"][0] == 3
    r = publish.resign(str(repo), now=late)
    assert r.changed == ("targets", "snapshot", "timestamp")
    _verify_chain(repo)


def test_rotate_keys(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    keys = tmp_path / "keys"
    publish.publish(str(repo), [str(make_image(tmp_path, "app", "1"))], keys_dir=str(keys),
                    now=NOW)
    old_root = _md(repo, "1.root.json").signed.roles["root"].keyids
    publish.rotate_key(str(repo), "root", keys_dir=str(keys), now=NOW)
    two = _md(repo, "2.root.json")
    assert two.signed.roles["root"].keyids != old_root
    assert set(two.signatures) == set(old_root) | set(two.signed.roles["root"].keyids)
    r = publish.rotate_key(str(repo), "targets", keys_dir=str(keys), now=NOW)
    assert r.roles["root"][0] == 3 and r.changed[0] == "root"
    assert sorted(p.name.split("-")[0] for p in (keys / "retired").iterdir()) == [
        "root", "targets"]
    _verify_chain(repo)
    with pytest.raises(StrataError, match="Unknown role 'mirror'"):
        publish.rotate_key(str(repo), "mirror", keys_dir=str(keys))


def test_keys_must_be_the_repositorys(tmp_path: Path) -> None:
    repo = str(tmp_path / "repo")
    image = make_image(tmp_path, "app", "1")
    publish.publish(repo, [str(image)], now=NOW)
    with pytest.raises(StrataError) as e:
        publish.refresh_timestamp(repo, keys_dir=str(tmp_path / "elsewhere"))
    assert e.value.kind is ErrorKind.NOT_FOUND and "No root key" in e.value.message
    other = tmp_path / "other"
    publish.publish(str(other), [str(image)], keys_dir=str(tmp_path / "other-keys"), now=NOW)
    with pytest.raises(StrataError, match="is not the repository's root key"):
        publish.refresh_timestamp(repo, keys_dir=str(tmp_path / "other-keys"))
    with pytest.raises(StrataError, match="not a Strata/TUF repository"):
        publish.refresh_timestamp(str(tmp_path / "none"))


def test_interrupted_rotation_is_finished(tmp_path: Path) -> None:
    """A crash after the new root was written but before the key files were swapped: the
    pending key the root names is taken and put in place."""
    from strata.update import keys

    repo = tmp_path / "repo"
    kd = tmp_path / "keys"
    publish.publish(str(repo), [str(make_image(tmp_path, "app", "1"))], keys_dir=str(kd),
                    now=NOW)
    r = publish.Repository(str(repo), str(kd), create=False, now=NOW)
    new = keys.generate_pending(str(kd), "timestamp")
    root = r.root_md.signed
    root.revoke_key(r.signers["timestamp"].public_key.keyid, "timestamp")
    root.add_key(new.public_key, "timestamp")
    r.bump("root")
    r._write_root()
    # ... crash here
    report = publish.refresh_timestamp(str(repo), keys_dir=str(kd), now=NOW)
    assert report.roles["timestamp"][0] == 3
    assert not (kd / "timestamp.key.new").exists()
    assert keys.load(str(kd), "timestamp") is not None
    _verify_chain(repo)


def test_cli(tmp_path: Path) -> None:
    image = make_image(tmp_path, "app", "1.0")
    repo = tmp_path / "repo"
    r = strata("publish", str(image), f"--repo={repo}", "--expires=timestamp=2h",
               "--json=short")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["published"][0]["target"] == "app_1.0.raw"
    assert out["roles"]["timestamp"]["version"] == 2
    assert "Generated a new root key" in r.stderr
    r = strata("publish", f"--repo={repo}", "--refresh-timestamp")
    assert r.returncode == 0 and "Signed timestamp v3" in r.stderr, r.stderr
    r = strata("publish", f"--repo={repo}")
    assert r.returncode == 1 and "Nothing to publish" in r.stderr
    r = strata("publish", str(image))
    assert r.returncode == 1 and "--repo=DIR is required" in r.stderr
    r = strata("publish", f"--repo={repo}", "--expires=forever=1d", str(image))
    assert r.returncode == 1 and "Invalid --expires" in r.stderr
