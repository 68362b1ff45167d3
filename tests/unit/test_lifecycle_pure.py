"""The lifecycle's pure decisions: SOURCE kinds, declared services and their plans, what a
removal breaks, reverse dependencies, the `merged` health aspect, the journalctl command, and
install records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from strata.errors import ErrorKind, StrataError
from strata.manage import deps, records
from strata.manage.api import (
    CheckState,
    HealthAspect,
    HealthCheck,
    HealthReport,
    MergedExtension,
    SourceKind,
)
from strata.manage.fetch import classify
from strata.manage.health import merged_check
from strata.manage.info import reverse_dependencies
from strata.manage.logs import command
from strata.manage.remove import dependents
from strata.manage.services import declared, leaving, plan_start, plan_stop, units_of
from strata.manage.store import Probe, ReleaseInfo, StoreEntry
from strata.model import ExtClass

# --- SOURCE kinds ------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "exists", "kind", "location"), [
    ("https://example.com/app-1.0.raw", False, SourceKind.URL,
     "https://example.com/app-1.0.raw"),
    ("HTTP://example.com/a.raw", False, SourceKind.URL, "HTTP://example.com/a.raw"),
    ("file:///srv/app%201.raw", False, SourceKind.FILE, "/srv/app 1.raw"),
    ("/srv/app.raw", False, SourceKind.FILE, "/srv/app.raw"),  # looks like a path: a file
    ("app.raw", False, SourceKind.FILE, "app.raw"),
    ("out/app", False, SourceKind.FILE, "out/app"),
    ("app", True, SourceKind.FILE, "app"),  # a file of that name in the working directory
    ("app", False, SourceKind.REPOSITORY, "app"),
    ("my-app_1", False, SourceKind.REPOSITORY, "my-app_1"),
])
def test_classify(text: str, exists: bool, kind: SourceKind, location: str) -> None:
    s = classify(text, exists=lambda _p: exists)
    assert (s.kind, s.location) == (kind, location)


@pytest.mark.parametrize(("text", "name"), [
    ("https://example.com/dl/app-1.0.raw?token=x", "app-1.0.raw"),
    ("https://example.com/dl/app%2B1.raw", "app+1.raw"),
    ("https://example.com/", ""),
    ("/srv/images/tools.raw", "tools.raw"),
])
def test_source_file_name(text: str, name: str) -> None:
    assert classify(text, exists=lambda _p: False).file_name == name


@pytest.mark.parametrize("text", ["ftp://example.com/a.raw", "s3://bucket/a.raw", ""])
def test_classify_refuses(text: str) -> None:
    with pytest.raises(StrataError) as e:
        classify(text, exists=lambda _p: False)
    assert e.value.kind is ErrorKind.USAGE


# --- services ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("pairs", "units"), [
    ([], ()),
    ([("AVOCADO_ENABLE_SERVICES", "nginx.service prometheus.service")],
     ("nginx.service", "prometheus.service")),
    # every line counts (avocadoctl accumulates them), both keys, each unit once
    ([("AVOCADO_ENABLE_SERVICES", "a.service"), ("STRATA_SERVICES", "b c.socket"),
      ("AVOCADO_ENABLE_SERVICES", "a.service b")],
     ("a.service", "b.service", "c.socket")),
    # a bare name is a service; templates and bad names are left out
    ([("STRATA_SERVICES", "app foo@.service -.mount x/y ok@i.service")],
     ("app.service", "ok@i.service")),
    ([("EXTENSION_RESTART_UNITS", "other.service")], ()),  # not a declaration
])
def test_declared(pairs: list[tuple[str, str]], units: tuple[str, ...]) -> None:
    assert declared(pairs) == units


def _rec(name: str, cls: str = "sysext", **release: str) -> MergedExtension:
    return MergedExtension(name=name, cls=cls, path=f"/s/{name}.raw", release=release,
                           release_pairs=tuple(release.items()))


def test_units_of_joins_extensions_in_order() -> None:
    recs = [_rec("a", STRATA_SERVICES="a.service shared"),
            _rec("b", "confext", AVOCADO_ENABLE_SERVICES="shared.service b.timer")]
    assert units_of(recs) == ("a.service", "shared.service", "b.timer")


@pytest.mark.parametrize(("units", "reloaded", "steps"), [
    ((), False, ()),
    (("a.service",), False, (("daemon-reload", ("systemctl", "daemon-reload")),
                             ("start", ("systemctl", "start", "--no-block", "a.service")))),
    (("a.service", "b.socket"), True,
     (("start", ("systemctl", "start", "--no-block", "a.service", "b.socket")),)),
])
def test_plan_start(units: tuple[str, ...], reloaded: bool,
                    steps: tuple[tuple[str, tuple[str, ...]], ...]) -> None:
    assert plan_start(units, reloaded=reloaded) == steps


@pytest.mark.parametrize(("units", "skip", "steps"), [
    ((), (), ()),
    (("a.service", "b.service"), (), (("stop", ("systemctl", "stop", "a.service",
                                                "b.service")),)),
    (("a.service", "b.service"), ("a.service",), (("stop", ("systemctl", "stop",
                                                            "b.service")),)),
    (("a.service",), ("a.service",), ()),
])
def test_plan_stop(units: tuple[str, ...], skip: tuple[str, ...],
                   steps: tuple[tuple[str, tuple[str, ...]], ...]) -> None:
    assert plan_stop(units, skip=skip) == steps


def test_leaving_is_what_a_refresh_drops() -> None:
    old = [_rec("a"), _rec("b"), _rec("c", "confext")]
    assert [r.name for r in leaving(old, {"sysext": {"a"}, "confext": set()})] == ["b", "c"]


def test_services_not_live_are_recorded(capsys: pytest.CaptureFixture[str]) -> None:
    from strata.manage import services

    runs = services.after_merge("/", [_rec("a", STRATA_SERVICES="a")], live=False)
    assert [(h.phase, h.argv, h.ran) for h in runs] == [
        ("daemon-reload", ("systemctl", "daemon-reload"), False),
        ("start", ("systemctl", "start", "--no-block", "a.service"), False)]
    err = capsys.readouterr().err
    assert "Would run: systemctl start --no-block a.service (systemd is not PID 1)" in err
    with services.handled(["a.service"]):
        assert services.before_unmerge("/r", [_rec("a", STRATA_SERVICES="a")],
                                       live=False) == ()
    assert [h.argv for h in services.before_unmerge(
        "/r", [_rec("a", STRATA_SERVICES="a")], live=False)] == [
        ("systemctl", "stop", "a.service")]


# --- what a removal breaks ---------------------------------------------------------------------


def N(name: str, depends: str = "", provides: str = "") -> deps.Node:  # noqa: N802
    return deps.Node(name=name, depends=deps.split_names(depends),
                     provides=deps.split_names(provides))


@pytest.mark.parametrize(("removed", "nodes", "broken"), [
    ({"base"}, [N("base"), N("app", "base")], [("app", "base")]),
    ({"base", "app"}, [N("base"), N("app", "base")], []),  # removed together
    ({"app"}, [N("base"), N("app", "base")], []),
    # through a capability
    ({"postfix"}, [N("postfix", provides="mta"), N("cron", "mta")], [("cron", "postfix")]),
    # another provider stays
    ({"postfix"}, [N("postfix", provides="mta"), N("exim", provides="mta"),
                   N("cron", "mta")], []),
    # already unmet before: not this removal's doing
    ({"base"}, [N("base"), N("app", "nothere")], []),
])
def test_dependents(removed: set[str], nodes: list[deps.Node],
                    broken: list[tuple[str, str]]) -> None:
    assert dependents(removed, nodes) == broken


@pytest.mark.parametrize(("node", "others", "expected"), [
    (N("base"), [N("app", "base"), N("tools"), N("x", "base other")], ["app", "x"]),
    (N("postfix", provides="mta"), [N("cron", "mta"), N("postfix", "mta")], ["cron"]),
    (N("lonely"), [N("a", "b")], []),
])
def test_reverse_dependencies(node: deps.Node, others: list[deps.Node],
                              expected: list[str]) -> None:
    assert reverse_dependencies(node, others) == expected


# --- the `merged` health aspect ----------------------------------------------------------------


def _entry(image: str) -> StoreEntry:
    return StoreEntry(name=image.split("-", maxsplit=1)[0], image_name=image,
                      path=f"/s/{image}.raw", in_root=f"/s/{image}.raw",
                      real=f"/s/{image}.raw", origin="store", is_directory=False,
                      file_version=None)


def _probe(lookup: str, *classes: ExtClass) -> Probe:
    infos = {c: ReleaseInfo(cls=c, lookup_name=lookup, path="/x", fields={"ID": "_any"})
             for c in classes}
    return Probe(sysext=infos.get(ExtClass.SYSEXT), confext=infos.get(ExtClass.CONFEXT))


SYS, CONF = ExtClass.SYSEXT, ExtClass.CONFEXT


@pytest.mark.parametrize(("probe", "enabled", "merged", "others", "state", "detail"), [
    (_probe("app", SYS), True, {SYS: ["app"]}, [], CheckState.OK, "merged as sysext"),
    (_probe("app-2", SYS, CONF), True, {SYS: ["app-2"], CONF: ["app-2"]}, [],
     CheckState.OK, "merged as sysext+confext"),
    (_probe("app-2", SYS, CONF), True, {SYS: ["app-2"]}, [], CheckState.FAILED,
     "enabled, but not merged (as confext)"),
    (_probe("app-2", SYS), True, {SYS: ["app-1"]}, ["app-1"], CheckState.FAILED,
     "app-1 is merged, but app-2 is enabled: run 'strata ext refresh'"),
    (_probe("app-2", SYS), False, {}, [], CheckState.OK, "not enabled, not merged"),
    (_probe("app-2", SYS), False, {SYS: ["app-2"]}, [], CheckState.FAILED,
     "merged, but not enabled: run 'strata ext refresh'"),
    (Probe(problem="broken"), True, {}, [], CheckState.FAILED,
     "not an extension image: broken"),
])
def test_merged_check(probe: Probe, enabled: bool, merged: dict[ExtClass, list[str]], *,
                      others: list[str], state: CheckState, detail: str) -> None:
    c = merged_check("app", _entry("app-2"), probe, enabled=enabled, merged=merged,
                     others=others)
    assert (c.aspect, c.state, c.detail) == (HealthAspect.MERGED, state, detail)


def test_dangling_link_is_unhealthy() -> None:
    c = merged_check("gone", None, None, enabled=True, merged={})
    assert c.state is CheckState.FAILED and "leads to no image" in c.detail


@pytest.mark.parametrize(("states", "healthy"), [
    ((CheckState.OK, CheckState.SKIPPED, CheckState.UNKNOWN), True),
    ((CheckState.OK, CheckState.FAILED), False),
    ((), True),
])
def test_healthy_means_nothing_failed(states: tuple[CheckState, ...], healthy: bool) -> None:
    r = HealthReport("x", tuple(HealthCheck(HealthAspect.FILES, s) for s in states))
    assert r.healthy is healthy


# --- logs --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("units", "follow", "argv"), [
    (("a.service",), False, ("journalctl", "--no-pager", "-u", "a.service")),
    (("a.service", "b.timer"), True, ("journalctl", "--no-pager", "-u", "a.service", "-u",
                                      "b.timer", "--follow")),
])
def test_journalctl_command(units: tuple[str, ...], follow: bool,
                            argv: tuple[str, ...]) -> None:
    assert command(units, follow=follow) == argv


@pytest.mark.parametrize(("root", "journal", "reason"), [
    ("/", True, None),
    ("/", False, "journald is not running (no /run/systemd/journal/socket): there is no "
                 "journal to show."),
    ("/mnt/os", True, "/mnt/os is not the running system: its journal is not served here."),
])
def test_when_journalctl_can_run(root: str, journal: bool, reason: str | None) -> None:
    from strata.manage.logs import JOURNAL_SOCKET, why_not

    assert why_not(root, JOURNAL_SOCKET, journal=journal) == reason


# --- install records ---------------------------------------------------------------------------


def _record(image: str = "app-1.0.raw") -> records.ImageRecord:
    return records.ImageRecord(image=image, sha256="ab" * 32, size=4096,
                               source="https://example.com/app-1.0.raw", kind=SourceKind.URL,
                               installed_at="2025-01-31T12:00:00Z", extra={"roothash": "x"})


def test_record_round_trip(tmp_path: Path) -> None:
    r = _record()
    records.save(str(tmp_path), r)
    path = tmp_path / "var/lib/strata/metadata/app-1.0.raw.json"
    assert json.loads(path.read_text())["sourceKind"] == "url"
    assert records.load(str(tmp_path), "app-1.0.raw") == r
    assert records.load(str(tmp_path), "other.raw") is None
    assert records.delete(str(tmp_path), "app-1.0.raw")
    assert records.load(str(tmp_path), "app-1.0.raw") is None


@pytest.mark.parametrize(("change", "why"), [
    ({"version": 2}, "unknown version"),
    ({"sourceKind": "carrier-pigeon"}, "unknown sourceKind"),
    ({"size": -1}, "'size' must be"),
    ({"sha256": 5}, "'sha256' must be a string"),
    ({"extra": []}, "'extra' must be an object"),
    ({"image": "other.raw"}, "it describes 'other.raw'"),
])
def test_malformed_records_are_refused(tmp_path: Path, change: dict[str, object],
                                       why: str) -> None:
    body = {**records.to_json(_record()), **change}
    d = tmp_path / "var/lib/strata/metadata"
    d.mkdir(parents=True)
    (d / "app-1.0.raw.json").write_text(json.dumps(body))
    with pytest.raises(StrataError) as e:
        records.load(str(tmp_path), "app-1.0.raw")
    assert e.value.kind is ErrorKind.INVALID and why in e.value.message
    assert "app-1.0.raw.json" in e.value.message


def test_garbage_collection_keeps_records_of_images(tmp_path: Path) -> None:
    store_dir = tmp_path / "var/lib/strata/extensions"
    store_dir.mkdir(parents=True)
    (store_dir / "app-1.0.raw").write_bytes(b"x")
    records.save(str(tmp_path), _record("app-1.0.raw"))
    records.save(str(tmp_path), _record("gone.raw"))
    d = tmp_path / "var/lib/strata/metadata"
    (d / ".#gone.raw.json.1234").write_text("{")  # an interrupted atomic write
    gone = records.collect_garbage(str(tmp_path), str(store_dir))
    assert sorted(gone) == [".#gone.raw.json.1234", "gone.raw.json"]
    assert sorted(p.name for p in d.iterdir()) == ["app-1.0.raw.json"]
