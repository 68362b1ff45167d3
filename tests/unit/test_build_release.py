"""The generated extension-release, tmpfiles and Upholds= files, and SOURCE_DATE_EPOCH's
precedence."""

from __future__ import annotations

from pathlib import Path

import pytest

from strata.build.image import resolve_epoch
from strata.build.release import (
    Content,
    release_pairs,
    render,
    tmpfiles_text,
    upholds_path,
    upholds_text,
)
from strata.build.spec import Spec, parse_spec
from strata.errors import ErrorKind, StrataError
from strata.model import ExtClass
from strata.release import parse_env_pairs


def _spec(extra: str = "") -> Spec:
    return parse_spec("name: app\nversion: '1.2'\n" + extra, Path("/s/app.yaml"))


CASES: list[tuple[str, str, ExtClass, Content, list[tuple[str, str]]]] = [
    ("minimal", "", ExtClass.SYSEXT, Content(),
     [("ID", "_any"), ("ARCHITECTURE", "x86-64"), ("SYSEXT_VERSION_ID", "1.2")]),
    ("compatibility", "compatibility:\n  id: debian\n  version_id: '12'\n  level: '1.0'\n"
     "  scope: [system, portable]\n", ExtClass.SYSEXT, Content(),
     [("ID", "debian"), ("VERSION_ID", "12"), ("SYSEXT_LEVEL", "1.0"),
      ("ARCHITECTURE", "x86-64"), ("SYSEXT_SCOPE", "system portable"),
      ("SYSEXT_VERSION_ID", "1.2")]),
    ("confext keys", "class: confext\ncompatibility:\n  level: '2'\n  scope: initrd\n",
     ExtClass.CONFEXT, Content(),
     [("ID", "_any"), ("CONFEXT_LEVEL", "2"), ("ARCHITECTURE", "x86-64"),
      ("CONFEXT_SCOPE", "initrd"), ("CONFEXT_VERSION_ID", "1.2")]),
    ("units shipped: reload the manager", "", ExtClass.SYSEXT, Content(units=True),
     [("ID", "_any"), ("ARCHITECTURE", "x86-64"), ("SYSEXT_VERSION_ID", "1.2"),
      ("EXTENSION_RELOAD_MANAGER", "1")]),
    ("reload forced off", "services:\n  reload_manager: false\n", ExtClass.SYSEXT,
     Content(units=True),
     [("ID", "_any"), ("ARCHITECTURE", "x86-64"), ("SYSEXT_VERSION_ID", "1.2")]),
    ("services and hooks", "services:\n  restart: [a.service]\n  reload_or_restart: [b.socket]\n"
     "hooks:\n  on_merge: ['udevadm trigger', depmod]\n  on_unmerge: ['systemctl stop a.service']\n"
     "  modprobe: [v4l2loopback, uvc]\nrelations:\n  depends: [base]\n  conflicts: [old]\n"
     "  provides: [tool]\nrelease:\n  VENDOR_URL: https://example.org/a b\n",
     ExtClass.SYSEXT, Content(units=True, modules=True, tmpfiles="usr/lib/tmpfiles.d/10-app.conf"),
     [("ID", "_any"), ("ARCHITECTURE", "x86-64"), ("SYSEXT_VERSION_ID", "1.2"),
      ("EXTENSION_RELOAD_MANAGER", "1"), ("EXTENSION_RESTART_UNITS", "a.service"),
      ("EXTENSION_RELOAD_OR_RESTART_UNITS", "b.socket"),
      ("AVOCADO_MODPROBE", "v4l2loopback uvc"),
      ("AVOCADO_ON_MERGE", "depmod"),
      ("AVOCADO_ON_MERGE", "systemd-tmpfiles --create /usr/lib/tmpfiles.d/10-app.conf"),
      ("AVOCADO_ON_MERGE", "udevadm trigger"),
      ("AVOCADO_ON_UNMERGE", "systemctl stop a.service"),
      ("STRATA_DEPENDS", "base"), ("STRATA_CONFLICTS", "old"), ("STRATA_PROVIDES", "tool"),
      ("VENDOR_URL", "https://example.org/a b")]),
    ("hooks.auto off", "hooks:\n  auto: false\n", ExtClass.SYSEXT,
     Content(modules=True, tmpfiles="usr/lib/tmpfiles.d/10-app.conf"),
     [("ID", "_any"), ("ARCHITECTURE", "x86-64"), ("SYSEXT_VERSION_ID", "1.2")]),
    ("class both: the confext gets no hooks", "class: both\nservices:\n  restart: [a.service]\n"
     "hooks:\n  on_merge: [x]\nrelations:\n  depends: [base]\n", ExtClass.CONFEXT,
     Content(units=True),
     [("ID", "_any"), ("ARCHITECTURE", "x86-64"), ("CONFEXT_VERSION_ID", "1.2"),
      ("EXTENSION_RELOAD_MANAGER", "1")]),
]


@pytest.mark.parametrize(("extra", "cls", "content", "pairs"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_release_pairs(extra: str, cls: ExtClass, content: Content,
                       pairs: list[tuple[str, str]]) -> None:
    got = release_pairs(_spec(extra), cls, architecture="x86-64", content=content)
    assert got == pairs
    # what is written reads back exactly, with systemd's parser (repeated keys included)
    assert parse_env_pairs(render(got), source="x") == got


def test_render_quotes_like_systemd() -> None:
    assert render([("A", "plain"), ("B", "two words"), ("C", 'q"$')]) == (
        'A=plain\nB="two words"\nC="q\\"\\$"\n')


def test_tmpfiles_and_upholds_text() -> None:
    assert tmpfiles_text("app", ["profile.d", "app"]).splitlines()[1:] == [
        "C+ /etc/app - - - - /usr/share/app/etc/app",
        "C+ /etc/profile.d - - - - /usr/share/app/etc/profile.d",
    ]
    assert upholds_text(["a.service", "b.service"]) == "[Unit]\nUpholds=a.service b.service\n"
    assert upholds_path("app", ExtClass.SYSEXT) == \
        "usr/lib/systemd/system/multi-user.target.d/10-app.conf"
    assert upholds_path("app", ExtClass.CONFEXT) == \
        "etc/systemd/system/multi-user.target.d/10-app.conf"


@pytest.mark.parametrize(("cli", "env", "spec", "epoch"), [
    (None, {}, None, 0),
    (None, {}, 5, 5),
    (None, {"SOURCE_DATE_EPOCH": "7"}, 5, 7),
    (None, {"SOURCE_DATE_EPOCH": ""}, 5, 5),
    (9, {"SOURCE_DATE_EPOCH": "7"}, 5, 9),
])
def test_resolve_epoch(cli: int | None, env: dict[str, str], spec: int | None,
                       epoch: int) -> None:
    assert resolve_epoch(cli, env, spec) == epoch


@pytest.mark.parametrize("bad", ["-1", "yesterday", "4294967296"])
def test_resolve_epoch_refuses_garbage(bad: str) -> None:
    with pytest.raises(StrataError) as e:
        resolve_epoch(None, {"SOURCE_DATE_EPOCH": bad}, None)
    assert e.value.kind is ErrorKind.USAGE
    assert e.value.message.startswith(f"SOURCE_DATE_EPOCH={bad}: ")
