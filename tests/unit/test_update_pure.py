"""The pure decisions of strata publish / strata update: durations, custom metadata, the choice
of version, sysupdate patterns, configuration, the journal and its recovery, retention."""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

import pytest

from strata.errors import ErrorKind, StrataError
from strata.model import ExtClass, Scope
from strata.release import HostRelease
from strata.update import config, expiry, gc, journal, offers, sysupdate
from strata.update.journal import Recovery, Step

DEBIAN12 = HostRelease(path="/etc/os-release",
                       fields={"ID": "debian", "VERSION_ID": "12", "ID_LIKE": ""})


@pytest.mark.parametrize(("text", "seconds"), [
    ("1d", 86400), ("12h", 43200), ("90d", 90 * 86400), ("1y", 365 * 86400), ("30s", 30),
    ("1d12h", 86400 + 43200), ("2w", 14 * 86400), ("5m", 300), (" 7D ", 7 * 86400),
])
def test_parse_duration(text: str, seconds: int) -> None:
    assert expiry.parse_duration(text) == dt.timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "0d", "d", "1x", "1.5d", "-1d", "1d garbage"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(StrataError) as e:
        expiry.parse_duration(text)
    assert e.value.kind is ErrorKind.USAGE


def test_parse_expires() -> None:
    got = expiry.parse_expires(["timestamp=2h,snapshot=1d", "root=2y"])
    assert got == {"root": dt.timedelta(days=730), "targets": dt.timedelta(days=90),
                   "snapshot": dt.timedelta(days=1), "timestamp": dt.timedelta(hours=2)}
    with pytest.raises(StrataError, match="Invalid --expires 'mirror=1d'"):
        expiry.parse_expires(["mirror=1d"])


def _offer(version: str, *, name: str = "app", release: dict[str, str] | None = None,
           sha: str | None = None, path: str | None = None,
           cls: ExtClass = ExtClass.SYSEXT) -> offers.Offer:
    fields = {"ID": "debian", "VERSION_ID": "12"} if release is None else release
    return offers.Offer(path=path or f"{name}_{version}.raw", name=name, version=version,
                        release={cls: fields}, sha256=sha or (version * 64)[:64], length=10)


def test_custom_metadata_round_trip() -> None:
    release = {ExtClass.SYSEXT: {"ID": "debian", "VERSION_ID": "12", "SYSEXT_LEVEL": "1",
                                 "ARCHITECTURE": "x86-64", "EXTRA": "not carried",
                                 "SYSEXT_VERSION_ID": "1.2"}}
    custom = offers.custom_for("app", "1.2", release, "ab" * 32)
    got = offers.offer_from("app_1.2.raw", 99, {"sha256": "ab" * 32}, custom)
    assert got == offers.Offer(
        path="app_1.2.raw", name="app", version="1.2", sha256="ab" * 32, length=99,
        release={ExtClass.SYSEXT: {"ID": "debian", "VERSION_ID": "12", "SYSEXT_LEVEL": "1",
                                   "ARCHITECTURE": "x86-64", "SYSEXT_VERSION_ID": "1.2"}})


GOOD = {"strata": {"name": "app", "version": "1", "release": {"sysext": {"ID": "_any"}},
                   "sha256": "aa"}}


@pytest.mark.parametrize(("path", "hashes", "custom", "why"), [
    ("../etc/passwd.raw", {"sha256": "aa"}, GOOD, "not a plain .raw file name"),
    ("sub/app.raw", {"sha256": "aa"}, GOOD, "not a plain .raw file name"),
    ("app.img", {"sha256": "aa"}, GOOD, "not a plain .raw file name"),
    (".#app.raw", {"sha256": "aa"}, GOOD, "not a valid image file name"),
    ("app.raw", {"sha256": "aa"}, {}, "no 'strata' custom metadata"),
    ("app.raw", {"sha256": "aa"}, None, "no 'strata' custom metadata"),
    ("app.raw", {"sha256": "aa"}, {"strata": {**GOOD["strata"], "name": "a/b"}}, "bad name"),
    ("app.raw", {"sha256": "aa"}, {"strata": {**GOOD["strata"], "version": ""}},
     "bad version"),
    ("app.raw", {"sha256": "aa"}, {"strata": {**GOOD["strata"], "release": {}}},
     "no release fields"),
    ("app.raw", {"sha256": "aa"},
     {"strata": {**GOOD["strata"], "release": {"portable": {"ID": "x"}}}}, "unknown class"),
    ("app.raw", {"sha256": "aa"},
     {"strata": {**GOOD["strata"], "release": {"sysext": {"ID": 1}}}}, "bad release fields"),
    ("app.raw", {"sha512": "aa"}, GOOD, "no sha256"),
    ("app.raw", {"sha256": "bb"}, GOOD, "not the one the custom metadata names"),
])
def test_offer_from_refuses(path: str, hashes: dict[str, str], custom: Any, why: str) -> None:
    got = offers.offer_from(path, 1, hashes, custom)
    assert isinstance(got, str) and why in got, got


def test_choose_newest_compatible() -> None:
    available = [_offer("1.9"), _offer("1.10"), _offer("2.0", release={"ID": "fedora"}),
                 _offer("1.11", release={"ID": "debian", "VERSION_ID": "13"}),
                 _offer("0.5", name="other")]
    c = offers.choose("app", available, DEBIAN12, scope=Scope.SYSTEM, arch="x86-64")
    assert c.offer is not None and c.offer.version == "1.10"  # strverscmp: 1.10 > 1.9
    assert [v for v, _ in c.refused] == ["2.0", "1.11"]
    assert c.problem is None


def test_choose_incompatible_only_is_a_problem() -> None:
    c = offers.choose("app", [_offer("2.0", release={"ID": "fedora"})], DEBIAN12,
                      scope=Scope.SYSTEM, arch="x86-64")
    assert c.offer is None
    assert c.problem is not None and "only versions of 'app' this device cannot take" in c.problem
    assert "is for OS 'fedora'" in c.problem
    nothing = offers.choose("app", [], DEBIAN12, scope=Scope.SYSTEM, arch="x86-64")
    assert nothing.problem == "The repository offers no version of 'app'."


def test_choose_checks_every_class_scope_and_architecture() -> None:
    both = offers.Offer(path="app_1.raw", name="app", version="1", sha256="a" * 64, length=1,
                        release={ExtClass.SYSEXT: {"ID": "_any"},
                                 ExtClass.CONFEXT: {"ID": "fedora"}})
    assert offers.incompatibility(both, DEBIAN12, scope=Scope.SYSTEM, arch="x86-64")
    arm = _offer("1", release={"ID": "_any", "ARCHITECTURE": "arm64"})
    assert "architecture 'arm64'" in (offers.incompatibility(arm, DEBIAN12, scope=Scope.SYSTEM,
                                                             arch="x86-64") or "")
    initrd = _offer("1", release={"ID": "_any", "SYSEXT_SCOPE": "initrd"})
    assert offers.incompatibility(initrd, DEBIAN12, scope=Scope.SYSTEM, arch="x86-64")
    assert offers.incompatibility(initrd, DEBIAN12, scope=Scope.INITRD, arch="x86-64") is None


def test_choose_excludes_rolled_back_images() -> None:
    bad = _offer("2.0", sha="b" * 64)
    c = offers.choose("app", [_offer("1.0"), bad], DEBIAN12, scope=Scope.SYSTEM,
                      arch="x86-64", exclude={"b" * 64})
    assert c.offer is not None and c.offer.version == "1.0" and c.excluded == ("2.0",)
    only = offers.choose("app", [bad], DEBIAN12, scope=Scope.SYSTEM, arch="x86-64",
                         exclude={"b" * 64})
    assert only.offer is None and only.problem is None  # keep what is installed


@pytest.mark.parametrize(("candidate", "installed", "newer"), [
    ("1.1", "1.0", True), ("1.0", "1.0", False), ("0.9", "1.0", False),
    ("1.10", "1.9", True), ("1.0", None, True), ("2.0~rc1", "2.0", False),
])
def test_is_newer(candidate: str, installed: str | None, newer: bool) -> None:
    assert offers.is_newer(candidate, installed) is newer


@pytest.mark.parametrize(("path", "name", "version", "pattern"), [
    ("app_1.2.raw", "app", "1.2", "app_@v.raw"),
    ("my-sysext-0.1.0-x86-64.raw", "my-sysext", "0.1.0", "my-sysext-@v-x86-64.raw"),
    ("tools-v0.1.0-1.raw", "tools", "v0.1.0-1", "tools-@v.raw"),
    ("app.raw", "app", "1.2", None),
    ("a@b_1.raw", "a@b", "1", None),
])
def test_match_pattern(path: str, name: str, version: str, pattern: str | None) -> None:
    o = _offer(version, name=name, path=path)
    assert sysupdate.match_pattern(o) == pattern


def test_transfers_and_sums() -> None:
    conf = _offer("3", name="conf", cls=ExtClass.CONFEXT, sha="c" * 64)
    got = sysupdate.transfers([_offer("1.0"), _offer("1.2"), conf], "https://u.example/r/")
    assert set(got) == {"app.transfer", "conf.transfer"}
    assert "Path=https://u.example/r/targets/\nMatchPattern=app_@v.raw\n" in got["app.transfer"]
    assert "CurrentSymlink=/var/lib/extensions/app.raw" in got["app.transfer"]
    assert "Path=/var/lib/confexts.d/" in got["conf.transfer"]
    assert "Verify=false" in got["app.transfer"]
    sums = sysupdate.sha256sums([_offer("1.0", sha="f" * 64), conf])
    assert sums == f"{'f' * 64}  app_1.0.raw\n{'c' * 64}  conf_3.raw\n"


def test_config_parse() -> None:
    cfg = config.parse({"update": {
        "repository": "https://r", "extensions": ["a", "b"], "keep": 0,
        "health_command": "/bin/check --quick 'a b'", "health_units": ["x.service"],
        "settle": 0, "health_timeout": 5, "image_policy": "root=signed", "timeout": 2.5,
        "retries": 1}}, source="t.toml")
    assert cfg.extensions == ("a", "b") and cfg.keep == 0 and cfg.settle_seconds == 0
    assert cfg.health_command == ("/bin/check", "--quick", "a b")
    assert config.parse({}, source="t").settle_seconds == 0
    assert config.parse({"update": {"health_units": ["u"]}}, source="t").settle_seconds == 10
    assert config.parse({"update": {"health_command": ["x", "y"]}},
                        source="t").health_command == ("x", "y")


@pytest.mark.parametrize(("section", "message"), [
    ({"keep": -1}, "keep = -1 is not an integer >= 0"),
    ({"keep": True}, "keep = True is not an integer"),
    ({"retries": 0}, "retries = 0 is not an integer >= 1"),
    ({"extensions": "app"}, "extensions = 'app' is not a list of names"),
    ({"health_command": ""}, "health_command = '' is not a command"),
    ({"timeout": 0}, "timeout = 0 is not a number of seconds"),
    ({"settle": -1}, "settle = -1 is not a number of seconds"),
    ({"repository": ""}, "repository = '' is not a non-empty string"),
    ({"image_policy": "root=bogus"}, "image_policy"),
    ({"keeep": 1}, "has no setting 'keeep'"),
    ({"ext_health": "no"}, "ext_health = 'no' is not true or false"),
])
def test_config_refuses(section: dict[str, Any], message: str) -> None:
    with pytest.raises(StrataError) as e:
        config.parse({"update": section}, source="/etc/strata/strata.toml")
    assert e.value.kind is ErrorKind.CONFIGURATION
    assert message in e.value.message and "/etc/strata/strata.toml" in e.value.message


@pytest.mark.parametrize(("step", "action"), [
    (Step.PLANNED, Recovery.DISCARD), (Step.DOWNLOADED, Recovery.DISCARD),
    (Step.INSTALLED, Recovery.DISCARD), (Step.ENABLED, Recovery.ROLL_BACK),
    (Step.REFRESHED, Recovery.RECHECK), (Step.HEALTHY, Recovery.COMMIT),
    (Step.ROLLING_BACK, Recovery.ROLL_BACK),
])
def test_recovery_for(step: Step, action: Recovery) -> None:
    assert journal.recovery_for(step) is action


def _journal() -> journal.Journal:
    return journal.Journal(
        id="1", started="2026-01-01T00:00:00+00:00", os_release="12", step=Step.ENABLED,
        merged_before=True, links_before={"app_1.0.raw": "../../extensions/app_1.0.raw"},
        priorities_before={"app": 5},
        items=(journal.Item(name="app", file="app_1.1.raw", version="1.1", sha256="a" * 64,
                            length=3, old_version="1.0", old_path="/x/app_1.0.raw"),))


def test_journal_round_trip() -> None:
    j = _journal()
    assert journal.from_json(journal.to_json(j), source="j") == j
    assert journal.from_json(journal.to_json(j.at(Step.ROLLING_BACK, "bad")),
                             source="j").reason == "bad"


@pytest.mark.parametrize(("change", "why"), [
    ({"version": 2}, "not an update journal of format 1"),
    ({"step": "flying"}, "unknown step 'flying'"),
    ({"links_before": ["x"]}, "bad links_before"),
    ({"priorities_before": {"a": "1"}}, "bad priorities_before"),
    ({"items": [{"name": "a"}]}, "bad item"),
    ({"items": [{"name": "a", "file": "../x.raw", "version": "1", "sha256": "a",
                 "length": 1}]}, "bad file name"),
    ({"os_release": 12}, "bad os_release"),
])
def test_journal_refuses(change: dict[str, Any], why: str) -> None:
    data = {**journal.to_json(_journal()), **change}
    with pytest.raises(StrataError) as e:
        journal.from_json(data, source="/var/lib/strata/update/journal.json")
    assert e.value.kind is ErrorKind.CONFIGURATION and why in e.value.message


def test_journal_file(tmp_path: Any) -> None:
    root = str(tmp_path)
    assert journal.load(root) is None
    journal.save(root, _journal())
    assert journal.load(root) == _journal()
    assert os.stat(journal.path(root)).st_mode & 0o777 == 0o600  # links and names: private
    journal.clear(root)
    assert journal.load(root) is None


V = gc.Version


@pytest.mark.parametrize(("versions", "keep", "deleted"), [
    ([V("a1", "1", False), V("a2", "2", False), V("a3", "3", True)], 2, []),
    ([V("a1", "1", False), V("a2", "2", False), V("a3", "3", True)], 1, ["a1"]),
    ([V("a1", "1", False), V("a2", "2", False), V("a3", "3", True)], 0, ["a2", "a1"]),
    ([V("a9", "1.9", False), V("a10", "1.10", False), V("c", "2", True)], 1, ["a9"]),
    ([V("x", None, False), V("a1", "1", False), V("c", "2", True)], 1, ["x"]),
    ([V("p", "1", True), V("q", "0.1", True)], 0, []),
])
def test_gc_select(versions: list[gc.Version], keep: int, deleted: list[str]) -> None:
    assert gc.select(versions, keep) == deleted
