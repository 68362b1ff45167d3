"""strata update end to end, in private mount namespaces on scratch roots, against a real
repository server on 127.0.0.1: publish -> update -> health check -> roll-back, retention,
and an update killed at every step of its journal (strata.faults) and then resumed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from strata.manage import ext
from strata.update import client, publish, remote
from tests.helpers import isolated, make_root, strata
from tests.unit.update_server import RepoServer, make_image

pytestmark = pytest.mark.privileged

STORE = "var/lib/strata/extensions"
HEALTHY = {"usr/share/app/healthy": "yes\n"}


def _device(tmp: Path, *, health: bool = True, keep: int = 2) -> tuple[Path, Path, RepoServer]:
    """A root with app 1.0 enabled and merged, trusting a repository that offers it; the
    health command checks that the merged app is a healthy one."""
    root = make_root(tmp)
    repo = tmp / "repo"
    first = make_image(tmp, "app", "1.0", files=HEALTHY)
    publish.publish(str(repo), [str(first)])
    (root / STORE).mkdir(parents=True)
    shutil.copy(first, root / STORE / first.name)
    ext.enable(str(root), ["app"])
    ext.merge(str(root), {})
    server = RepoServer(repo).start()
    remote.init(str(root), server.url, str(repo / "metadata/root.json"))
    check = f"test -e {root}/usr/share/app/healthy" if health else "true"
    (root / "etc/strata").mkdir(parents=True, exist_ok=True)
    (root / "etc/strata/strata.toml").write_text(
        f'[update]\nkeep = {keep}\nhealth_command = ["sh", "-c", "{check}"]\n')
    return root, repo, server


def _merged_version(root: Path) -> str:
    return (root / "usr/share/app/version").read_text().strip()


def _store(root: Path) -> list[str]:
    return sorted(p.name for p in (root / STORE).iterdir())


def _enabled_links(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "var/lib/strata/os-releases/12").iterdir()
                  if not p.name.startswith("."))


def _journal(root: Path) -> Path:
    return root / "var/lib/strata/update/journal.json"


@isolated
def test_update_health_rollback_and_retention(tmp_path: Path) -> None:
    root, repo, server = _device(tmp_path, keep=1)
    publish.publish(str(repo), [str(make_image(tmp_path, "app", "1.1", files=HEALTHY))])
    result = client.apply(str(root))
    assert result.updated == (("app", "1.0", "1.1"),) and not result.rolled_back
    assert result.health is not None and result.health.ok
    assert [c.what for c in result.health.checks if c.what != "ext-health"] == [
        "merged", "command"]
    assert _merged_version(root) == "1.1"
    assert _enabled_links(root) == ["app_1.1.raw"]
    assert not _journal(root).exists()
    assert _store(root) == ["app_1.0.raw", "app_1.1.raw"]

    # retention: keep = 1 old version
    publish.publish(str(repo), [str(make_image(tmp_path, "app", "1.2", files=HEALTHY))])
    result = client.apply(str(root))
    assert _merged_version(root) == "1.2"
    assert _store(root) == ["app_1.1.raw", "app_1.2.raw"]
    assert [Path(p).name for p in result.removed] == ["app_1.0.raw"]
    assert client.apply(str(root)).updated == ()  # up to date

    # an unhealthy version is rolled back, forgotten and not taken again
    publish.publish(str(repo), [str(make_image(tmp_path, "app", "1.3"))])
    result = client.apply(str(root))
    assert result.rolled_back and result.reason is not None
    assert "health check failed: command: sh exited 1" in result.reason
    assert _merged_version(root) == "1.2"
    assert _enabled_links(root) == ["app_1.2.raw"]
    assert _store(root) == ["app_1.1.raw", "app_1.2.raw"]
    assert not _journal(root).exists()
    rejected = json.loads((root / "var/lib/strata/update/rejected.json").read_text())
    assert [v["version"] for v in rejected.values()] == ["1.3"]
    again = client.apply(str(root))
    assert again.updated == () and not again.rolled_back
    r = strata("update", f"--root={root}", "--retry-rejected")
    assert r.returncode == 1 and "The update was rolled back: health check failed" in r.stderr
    assert _merged_version(root) == "1.2"

    # a fixed version comes through
    publish.publish(str(repo), [str(make_image(tmp_path, "app", "1.4", files=HEALTHY))])
    r = strata("update", f"--root={root}", "--json=short")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["updated"] == [{"name": "app", "from": "1.2", "to": "1.4"}]
    assert _merged_version(root) == "1.4"
    server.stop()


@isolated
def test_refused_by_the_merge_is_rolled_back(tmp_path: Path) -> None:
    """The engine skips the new image at merge time (here: a release file naming the wrong
    OS version, which the signed metadata hid): not merged -> roll-back."""
    root, repo, server = _device(tmp_path, health=False)
    image = make_image(tmp_path, "app", "2.0", files=HEALTHY)
    publish.publish(str(repo), [str(image)])
    # the repository's metadata is right, the image's release file says Debian 11
    r = publish.Repository(str(repo), None, create=False)
    t = r.targets_md.signed.targets["app_2.0.raw"]
    (tmp_path / "bad").mkdir()
    bad = make_image(tmp_path / "bad", "app", "2.0", release={"ID": "debian", "VERSION_ID": "11"})
    from tuf.api.metadata import TargetFile

    digest = publish._digest_file(str(bad))[0]
    shutil.copy(bad, repo / "targets" / f"{digest}.app_2.0.raw")
    r.targets_md.signed.targets["app_2.0.raw"] = TargetFile(
        length=bad.stat().st_size, hashes={"sha256": digest}, path="app_2.0.raw",
        unrecognized_fields={"custom": {"strata": {**t.custom["strata"], "sha256": digest}}})
    r.commit_targets()
    from strata.errors import StrataError

    with pytest.raises(StrataError, match="is for OS '11', but deployed on top of '12'"):
        client.apply(str(root))
    assert _merged_version(root) == "1.0" and _store(root) == ["app_1.0.raw"]
    server.stop()


STEPS = ["update-planned", "update-downloaded", "update-installed", "update-enabled",
         "update-refreshed", "update-healthy"]


@pytest.mark.parametrize("point", STEPS)
@isolated
def test_killed_at_each_step_then_resumed(tmp_path: Path, point: str) -> None:
    root, repo, server = _device(tmp_path)
    publish.publish(str(repo), [str(make_image(tmp_path, "app", "1.1", files=HEALTHY))])
    r = strata("update", f"--root={root}", env={"STRATA_FAULT": point})
    assert r.returncode == -9, r.stderr
    j = json.loads(_journal(root).read_text())
    assert j["step"] == point.removeprefix("update-")
    if STEPS.index(point) < STEPS.index("update-refreshed"):
        assert _merged_version(root) == "1.0"  # nothing merged has changed yet
    else:
        assert _merged_version(root) == "1.1"
    r = strata("update", f"--root={root}")
    assert r.returncode == 0, r.stderr
    assert "Found an interrupted update (step" in r.stderr
    assert _merged_version(root) == "1.1"
    assert _enabled_links(root) == ["app_1.1.raw"]
    assert _store(root) == ["app_1.0.raw", "app_1.1.raw"]
    assert not _journal(root).exists()
    assert not (root / "var/lib/strata/update/rejected.json").exists()
    assert list((root / "var/lib/strata/update/staging").iterdir()) == []
    server.stop()


@pytest.mark.parametrize("point", ["update-rolling-back", "update-restored"])
@isolated
def test_killed_while_rolling_back(tmp_path: Path, point: str) -> None:
    root, repo, server = _device(tmp_path)
    publish.publish(str(repo), [str(make_image(tmp_path, "app", "1.1"))])  # unhealthy
    r = strata("update", f"--root={root}", env={"STRATA_FAULT": point})
    assert r.returncode == -9, r.stderr
    assert json.loads(_journal(root).read_text())["step"] == "rolling-back"
    r = strata("update", f"--root={root}")
    assert r.returncode == 0, r.stderr
    assert "rolling-back" in r.stderr and "Rolled back to app 1.0" in r.stderr
    assert _merged_version(root) == "1.0"
    assert _enabled_links(root) == ["app_1.0.raw"] and _store(root) == ["app_1.0.raw"]
    assert not _journal(root).exists()
    server.stop()


@isolated
def test_new_extension_from_config_and_check(tmp_path: Path) -> None:
    root, repo, server = _device(tmp_path)
    publish.publish(str(repo), [str(make_image(tmp_path, "tool", "3", files=HEALTHY))])
    cfg = root / "etc/strata/strata.toml"
    cfg.write_text(cfg.read_text() + 'extensions = ["tool"]\n')
    r = strata("update", "--check", f"--root={root}")
    assert r.returncode == 0 and "tool" in r.stdout and "update" in r.stdout, r.stdout
    r = strata("update", f"--root={root}")
    assert r.returncode == 0, r.stderr
    assert (root / "usr/share/tool/version").read_text() == "3\n"
    assert _merged_version(root) == "1.0"
    status: Any = {s.name: s for s in ext.status(str(root))}
    assert status["tool"].enabled and status["tool"].is_merged
    server.stop()
