"""Hooks after merge and unmerge: planning rules (tables), content detection on real trees and
an erofs image, and the runner (recorded, injected runner, real spawner with fake commands)."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from strata import log
from strata.manage.api import HookRun, MergedExtension
from strata.manage.hooks import (
    HOOK_PATH,
    Content,
    ContentScanner,
    Exec,
    HookCommand,
    Phase,
    after_merge,
    after_unmerge,
    before_unmerge,
    is_live,
    merged_tree_pairs,
    plan_after_merge,
    plan_after_unmerge,
    plan_before_unmerge,
    run_hooks,
    scan_content,
    spawner,
    split_commands,
    unit_name_is_valid,
)
from strata.release import parse_env, parse_env_pairs
from tests.helpers import write_tree

ELF = b"\x7fELF\x02\x01\x01" + b"\0" * 57


def ext(name: str, text: str = "ID=_any\n", *, cls: str = "sysext",
        path: str = "/nonexistent") -> MergedExtension:
    return MergedExtension(name=name, cls=cls, path=path, release=parse_env(text, source=name),
                           release_pairs=tuple(parse_env_pairs(text, source=name)))


def contents(**by_name: str) -> dict[str, Content]:
    """name="ml" → modules and libraries, "m", "l", "" → neither."""
    return {n: Content(modules="m" in v, libraries="l" in v) for n, v in by_name.items()}


def scanner(table: Mapping[str, Content]) -> ContentScanner:
    return lambda e: table.get(e.name, Content(False, False))


@pytest.fixture
def warnings() -> Iterator[list[str]]:
    seen: list[str] = []
    with log.listen(lambda level, msg: seen.append(msg) if level >= log.WARNING else None):
        yield seen


def plan(exts: Sequence[MergedExtension], table: Mapping[str, Content] | None = None
         ) -> list[tuple[str, tuple[str, ...], tuple[str, ...]]]:
    cmds = plan_after_merge(exts, root="/", content=scanner(table or {}))
    return [(c.phase.value, c.argv, c.sources) for c in cmds]


# --------------------------------------------------------------------------- planning

DAEMON_RELOAD = ("systemctl", "daemon-reload")

MERGE_CASES: list[tuple[str, list[MergedExtension], dict[str, Content],
                        list[tuple[str, tuple[str, ...], tuple[str, ...]]]]] = [
    ("nothing to do", [ext("a"), ext("b")], {}, []),
    ("modules: depmod -a", [ext("a"), ext("k")], contents(k="m"),
     [("depmod", ("depmod", "-a"), ("k",))]),
    ("libraries: ldconfig", [ext("l")], contents(l="l"), [("ldconfig", ("ldconfig",), ("l",))]),
    ("depmod before ldconfig, once each, every source named",
     [ext("l1"), ext("m1"), ext("ml")], contents(l1="l", m1="m", ml="ml"),
     [("depmod", ("depmod", "-a"), ("m1", "ml")),
      ("ldconfig", ("ldconfig",), ("l1", "ml"))]),
    ("AVOCADO_ON_MERGE=depmod is the depmod -a the contents ask for",
     [ext("a", "AVOCADO_ON_MERGE=depmod\n"), ext("b")], contents(b="m"),
     [("depmod", ("depmod", "-a"), ("b", "a"))]),
    ("AVOCADO_ON_MERGE depmod/ldconfig run in phase 1 even without such contents",
     [ext("a", "AVOCADO_ON_MERGE=\"systemctl restart x.service\"\nAVOCADO_ON_MERGE=ldconfig\n"
               "AVOCADO_ON_MERGE=\"depmod -a 6.1.0\"\nEXTENSION_RELOAD_MANAGER=1\n")], {},
     [("ldconfig", ("ldconfig",), ("a",)), ("depmod", ("depmod", "-a", "6.1.0"), ("a",)),
      ("daemon-reload", DAEMON_RELOAD, ("a",)),
      ("on-merge", ("systemctl", "restart", "x.service"), ("a",))]),
    ("a phase-1 command by path is phase 1 too", [ext("a", "AVOCADO_ON_MERGE=/sbin/ldconfig\n")],
     {}, [("ldconfig", ("/sbin/ldconfig",), ("a",))]),
    ("the four phases in order",
     [ext("x", "AVOCADO_ON_MERGE=\"systemd-tmpfiles --create\"\nAVOCADO_MODPROBE=\"v4l2 uvc\"\n"
               "EXTENSION_RELOAD_MANAGER=1\nEXTENSION_RESTART_UNITS=cam.service\n"
               "EXTENSION_RELOAD_OR_RESTART_UNITS=web.service\n")], contents(x="ml"),
     [("depmod", ("depmod", "-a"), ("x",)), ("ldconfig", ("ldconfig",), ("x",)),
      ("modprobe", ("modprobe", "v4l2"), ("x",)), ("modprobe", ("modprobe", "uvc"), ("x",)),
      ("daemon-reload", DAEMON_RELOAD, ("x",)),
      ("on-merge", ("systemd-tmpfiles", "--create"), ("x",)),
      ("restart", ("systemctl", "restart", "--no-block", "cam.service"), ("x",)),
      ("reload-or-restart", ("systemctl", "reload-or-restart", "--no-block", "web.service"),
       ("x",))]),
    ("AVOCADO_ON_MERGE repeats, in order across extensions, duplicates dropped",
     [ext("a", "AVOCADO_ON_MERGE=\"systemd-sysusers\"\nAVOCADO_ON_MERGE=\"udevadm trigger\"\n"
               "AVOCADO_ON_MERGE=systemd-sysusers\n"),
      ext("b", "AVOCADO_ON_MERGE=\"udevadm   trigger\"\nAVOCADO_ON_MERGE=\"b-setup\"\n")], {},
     [("on-merge", ("systemd-sysusers",), ("a",)),
      ("on-merge", ("udevadm", "trigger"), ("a", "b")),
      ("on-merge", ("b-setup",), ("b",))]),
    ("split on ; then whitespace, no shell",
     [ext("a", "AVOCADO_ON_MERGE=\" echo  $HOME > /x ;; ls\t-l ; \"\n")], {},
     [("on-merge", ("echo", "$HOME", ">", "/x"), ("a",)), ("on-merge", ("ls", "-l"), ("a",))]),
    ("an empty AVOCADO_ON_MERGE is nothing", [ext("a", "AVOCADO_ON_MERGE=\nAVOCADO_ON_MERGE=;\n")],
     {}, []),
    ("only the first AVOCADO_MODPROBE line of each extension",
     [ext("a", "AVOCADO_MODPROBE=\"nvidia  i915\"\nAVOCADO_MODPROBE=ignored\n"),
      ext("b", "AVOCADO_MODPROBE=i915\nAVOCADO_MODPROBE=ignored_too\n"),
      ext("c", "AVOCADO_MODPROBE=\nAVOCADO_MODPROBE=not_even_this\n")], {},
     [("modprobe", ("modprobe", "nvidia"), ("a",)),
      ("modprobe", ("modprobe", "i915"), ("a", "b"))]),
    ("modprobe in AVOCADO_ON_MERGE stays in phase 4 (avocado-cli writes it there)",
     [ext("a", "AVOCADO_ON_MERGE=\"modprobe m\"\nEXTENSION_RELOAD_MANAGER=yes\n")], {},
     [("daemon-reload", DAEMON_RELOAD, ("a",)), ("on-merge", ("modprobe", "m"), ("a",))]),
    ("EXTENSION_RELOAD_MANAGER false values", [ext("a", "EXTENSION_RELOAD_MANAGER=0\n"),
                                                ext("b", "EXTENSION_RELOAD_MANAGER=no\n"),
                                                ext("c", "EXTENSION_RELOAD_MANAGER=\n")], {}, []),
    ("EXTENSION_RELOAD_MANAGER: the last line wins, as in systemd",
     [ext("a", "EXTENSION_RELOAD_MANAGER=1\nEXTENSION_RELOAD_MANAGER=0\n"),
      ext("b", "EXTENSION_RELOAD_MANAGER=0\nEXTENSION_RELOAD_MANAGER=true\n")], {},
     [("daemon-reload", DAEMON_RELOAD, ("b",))]),
    ("one reload for several extensions",
     [ext("a", "EXTENSION_RELOAD_MANAGER=1\n"), ext("b", "EXTENSION_RELOAD_MANAGER=on\n")], {},
     [("daemon-reload", DAEMON_RELOAD, ("a", "b"))]),
    ("listed units imply the reload",
     [ext("a", "EXTENSION_RELOAD_OR_RESTART_UNITS=x.service\n")], {},
     [("daemon-reload", DAEMON_RELOAD, ("a",)),
      ("reload-or-restart", ("systemctl", "reload-or-restart", "--no-block", "x.service"),
       ("a",))]),
    ("restart wins over reload-or-restart, across extensions too",
     [ext("a", "EXTENSION_RESTART_UNITS=\"  y.service x.service \"\n"
               "EXTENSION_RELOAD_OR_RESTART_UNITS=\"x.service z@1.service\"\n"),
      ext("b", "EXTENSION_RELOAD_OR_RESTART_UNITS=y.service\nEXTENSION_RESTART_UNITS=w.socket\n")],
     {},
     [("daemon-reload", DAEMON_RELOAD, ("a", "b")),
      ("restart", ("systemctl", "restart", "--no-block", "y.service", "x.service", "w.socket"),
       ("a", "b")),
      ("reload-or-restart", ("systemctl", "reload-or-restart", "--no-block", "z@1.service"),
       ("a",))]),
    ("a unit listed by two extensions is restarted once",
     [ext("a", "EXTENSION_RESTART_UNITS=x.service\n"),
      ext("b", "EXTENSION_RESTART_UNITS=\"x.service\"\n")], {},
     [("daemon-reload", DAEMON_RELOAD, ("a", "b")),
      ("restart", ("systemctl", "restart", "--no-block", "x.service"), ("a", "b"))]),
    ("invalid unit names are left out; none left means no reload",
     [ext("a", "EXTENSION_RESTART_UNITS=\"bogus/name foo@.service -.mount --force noext\"\n")],
     {}, []),
    ("a record without pairs uses its mapping",
     [MergedExtension("a", "sysext", "/x", {"AVOCADO_ON_MERGE": "a-cmd",
                                             "AVOCADO_MODPROBE": "m"})], {},
     [("modprobe", ("modprobe", "m"), ("a",)), ("on-merge", ("a-cmd",), ("a",))]),
]


@pytest.mark.parametrize(("exts", "table", "expected"), [c[1:] for c in MERGE_CASES],
                         ids=[c[0] for c in MERGE_CASES])
def test_plan_after_merge(exts: list[MergedExtension], table: dict[str, Content],
                          expected: list[tuple[str, tuple[str, ...], tuple[str, ...]]]) -> None:
    assert plan(exts, table) == expected


def test_invalid_values_are_warned_about(warnings: list[str]) -> None:
    got = plan([ext("a", "EXTENSION_RELOAD_MANAGER=maybe\n"
                         "EXTENSION_RESTART_UNITS=\"bogus/name ok.service\"\n")])
    assert got[0] == ("daemon-reload", DAEMON_RELOAD, ("a",))
    assert warnings == [
        "Invalid unit name 'bogus/name' in EXTENSION_RESTART_UNITS= of a, ignoring.",
        "Failed to parse EXTENSION_RELOAD_MANAGER= of a ('maybe'), ignoring.",
    ]


def test_hook_command_display() -> None:
    c = HookCommand(Phase.ON_MERGE, ("echo", "a b", "$x"))
    assert c.display == "echo 'a b' '$x'"


SPLIT_CASES = [
    ("depmod", [("depmod",)]),
    ("  a  b ", [("a", "b")]),
    ("a;b c;;d", [("a",), ("b", "c"), ("d",)]),
    ("a ; ; ", [("a",)]),
    ("", []),
    ("'quoted arg' x", [("'quoted", "arg'", "x")]),
    ("a\tb\nc", [("a", "b", "c")]),
]


@pytest.mark.parametrize(("value", "expected"), SPLIT_CASES)
def test_split_commands(value: str, expected: list[tuple[str, ...]]) -> None:
    assert split_commands(value) == expected


UNIT_CASES = [
    ("foo.service", True), ("foo@bar.service", True), ("a-b_c:d\\x2d.mount", True),
    ("w.socket", True), ("x.timer", True), ("-.mount", True),
    ("foo@.service", False), ("@x.service", False), ("foo", False), ("foo.unknown", False),
    (".service", False), ("foo bar.service", False), ("bogus/name.service", False),
    ("a" * 247 + ".service", True), ("a" * 248 + ".service", False), ("", False),
]


@pytest.mark.parametrize(("name", "valid"), UNIT_CASES)
def test_unit_name_is_valid(name: str, valid: bool) -> None:
    assert unit_name_is_valid(name) is valid


# --------------------------------------------------------------------------- unmerge plans


def test_plan_before_unmerge_uses_the_records_when_nothing_is_merged(tmp_path: Path) -> None:
    exts = [ext("a", "AVOCADO_ON_UNMERGE=\"systemctl stop a.service; a-clean\"\n"
                     "AVOCADO_ON_MERGE=not-this\nAVOCADO_ON_UNMERGE=a-clean\n"),
            ext("c", "AVOCADO_ON_UNMERGE=a-clean\nAVOCADO_ON_UNMERGE=\"c-clean -f\"\n",
                cls="confext"),
            ext("d")]
    got = plan_before_unmerge(exts, root=str(tmp_path))
    assert [(c.phase, c.argv, c.sources) for c in got] == [
        (Phase.ON_UNMERGE, ("systemctl", "stop", "a.service"), ("a",)),
        (Phase.ON_UNMERGE, ("a-clean",), ("a", "c")),
        (Phase.ON_UNMERGE, ("c-clean", "-f"), ("c",)),
    ]


def test_a_release_file_in_an_unmerged_tree_is_not_read(tmp_path: Path) -> None:
    """Only a live merge's tree counts: a stray file of that name in the host /usr is not the
    extension's."""
    write_tree(tmp_path, {"usr/lib/extension-release.d/extension-release.a":
                          "AVOCADO_ON_UNMERGE=stray\n"})
    a = ext("a", "AVOCADO_ON_UNMERGE=mine\n")
    assert merged_tree_pairs(str(tmp_path), a) is None
    assert [c.argv for c in plan_before_unmerge([a], root=str(tmp_path))] == [("mine",)]


UNMERGE_CASES: list[tuple[str, list[MergedExtension], dict[str, Content],
                          list[tuple[str, tuple[str, ...], tuple[str, ...]]]]] = [
    ("nothing", [ext("a", "AVOCADO_ON_MERGE=depmod\n")], {}, []),
    ("depmod and ldconfig for what was merged",
     [ext("a"), ext("b"), ext("c")], contents(a="l", b="m", c="ml"),
     [("depmod", ("depmod", "-a"), ("b", "c")), ("ldconfig", ("ldconfig",), ("a", "c"))]),
    ("daemon-reload for EXTENSION_RELOAD_MANAGER or listed units, after depmod",
     [ext("a", "EXTENSION_RELOAD_MANAGER=1\n"), ext("b", "EXTENSION_RESTART_UNITS=b.service\n"),
      ext("c", "EXTENSION_RELOAD_MANAGER=0\n")], contents(c="m"),
     [("depmod", ("depmod", "-a"), ("c",)), ("daemon-reload", DAEMON_RELOAD, ("a", "b"))]),
    ("no restarts and no AVOCADO_ON_UNMERGE after unmerge",
     [ext("a", "EXTENSION_RELOAD_OR_RESTART_UNITS=a.service\nAVOCADO_ON_UNMERGE=x\n")], {},
     [("daemon-reload", DAEMON_RELOAD, ("a",))]),
]


@pytest.mark.parametrize(("exts", "table", "expected"), [c[1:] for c in UNMERGE_CASES],
                         ids=[c[0] for c in UNMERGE_CASES])
def test_plan_after_unmerge(tmp_path: Path, exts: list[MergedExtension],
                            table: dict[str, Content],
                            expected: list[tuple[str, tuple[str, ...], tuple[str, ...]]]) -> None:
    got = plan_after_unmerge(exts, root=str(tmp_path),
                             content=scanner(table))
    assert [(c.phase.value, c.argv, c.sources) for c in got] == expected


# --------------------------------------------------------------------------- contents


def tree(tmp_path: Path, files: Mapping[str, str | bytes | int], *, cls: str = "sysext"
         ) -> MergedExtension:
    base = tmp_path / "ext"
    write_tree(base, files)
    return ext("e", cls=cls, path=str(base))


def _module_file(suffix: str) -> dict[str, str | bytes | int]:
    return {f"usr/lib/modules/6.1.0/kernel/drivers/media/x{suffix}": b"m"}


CONTENT_CASES: list[tuple[str, str, dict[str, str | bytes | int], Content]] = [
    ("empty", "sysext", {"usr/bin/x": "x"}, Content(False, False)),
    *[(f"module {suffix}", "sysext", _module_file(suffix), Content(True, False))
      for suffix in (".ko", ".ko.xz", ".ko.zst", ".ko.gz")],
    ("module in updates/, deep", "sysext",
     {"usr/lib/modules/6.1.0/updates/a/b/c/d/x.ko": b"m"}, Content(True, False)),
    ("not a module suffix", "sysext",
     {"usr/lib/modules/6.1.0/x.ko.bz2": b"m", "usr/lib/modules/6.1.0/modules.dep": ""},
     Content(False, False)),
    ("a .ko outside usr/lib/modules", "sysext", {"usr/lib/firmware/x.ko": b"m",
                                                   "opt/x.ko": b"m"}, Content(False, False)),
    ("a module symlink is not a module", "sysext",
     {"usr/lib/modules/6.1.0/x.ko": "->/usr/share/x.ko", "usr/share/x.ko": b"m"},
     Content(False, False)),
    ("usr/lib/modules reached through a symlink", "sysext",
     {"usr/lib/modules": "->../share/mods", "usr/share/mods/6.1/x.ko": b"m"},
     Content(True, False)),
    ("library in usr/lib", "sysext", {"usr/lib/libfoo.so.1.2.3": ELF}, Content(False, True)),
    ("library in a multiarch directory", "sysext",
     {"usr/lib/x86_64-linux-gnu/libfoo.so": ELF}, Content(False, True)),
    ("library in usr/lib64", "sysext", {"usr/lib64/libfoo.so.1": ELF}, Content(False, True)),
    ("library in usr/local/lib", "sysext", {"usr/local/lib/libx.so.0": ELF},
     Content(False, True)),
    ("too deep for ldconfig", "sysext", {"usr/lib/python3/dist-packages/_x.so": ELF},
     Content(False, False)),
    ("usr/libexec is not a library directory", "sysext", {"usr/libexec/x/plugin.so": ELF,
                                                          "usr/libexec/y.so": ELF},
     Content(False, False)),
    ("a linker script named .so", "sysext", {"usr/lib/libc.so": "GROUP ( /lib/libc.so.6 )\n"},
     Content(False, False)),
    ("a symlink named .so", "sysext", {"usr/lib/libz.so": "->../share/z", "usr/share/z": ELF},
     Content(False, False)),
    ("not a .so name", "sysext", {"usr/lib/x.sock": ELF, "usr/lib/x.sox": ELF,
                                  "usr/lib/so": ELF}, Content(False, False)),
    ("both", "sysext", {"usr/lib/modules/6.1/x.ko": b"m", "usr/lib/liba.so.1": ELF},
     Content(True, True)),
    ("confext with ld.so.conf.d", "confext", {"etc/ld.so.conf.d/app.conf": "/usr/lib/app\n"},
     Content(False, True)),
    ("confext with an empty ld.so.conf.d", "confext", {"etc/ld.so.conf.d": 0o755},
     Content(False, False)),
    ("a confext's usr is not merged", "confext",
     {"usr/lib/libfoo.so.1": ELF, "usr/lib/modules/6.1/x.ko": b"m"}, Content(False, False)),
    ("a sysext's etc is not merged", "sysext", {"etc/ld.so.conf.d/app.conf": "/x\n"},
     Content(False, False)),
]


@pytest.mark.parametrize(("cls", "files", "expected"), [c[1:] for c in CONTENT_CASES],
                         ids=[c[0] for c in CONTENT_CASES])
def test_scan_content_directory(tmp_path: Path, cls: str, files: dict[str, str | bytes | int],
                                expected: Content) -> None:
    assert scan_content(tree(tmp_path, files, cls=cls)) == expected


def test_scan_content_relative_path_is_below_root(tmp_path: Path) -> None:
    write_tree(tmp_path, {"var/lib/extensions/e/usr/lib/libq.so.2": ELF})
    e = ext("e", path="var/lib/extensions/e")
    assert scan_content(e, root=str(tmp_path)) == Content(False, True)


def test_unreadable_image_is_assumed_to_ship_both(tmp_path: Path, warnings: list[str]) -> None:
    junk = tmp_path / "junk.raw"
    junk.write_bytes(b"\0" * 8192)
    assert scan_content(ext("s", path=str(junk))) == Content(True, True)
    assert scan_content(ext("c", cls="confext", path=str(tmp_path / "gone"))) == \
        Content(False, True)
    assert len(warnings) == 2
    assert all("assuming it ships both" in w for w in warnings)
    assert str(junk) in warnings[0]


def _erofs(tmp_path: Path, name: str, files: Mapping[str, str | bytes | int]) -> Path:
    src = tmp_path / f"src-{name}"
    write_tree(src, files)
    image = tmp_path / f"{name}.raw"
    subprocess.run(["mkfs.erofs", "-zlz4hc", "--all-root", str(image), str(src)], check=True,
                   capture_output=True)
    return image


@pytest.mark.skipif(not any(os.access(os.path.join(d, "mkfs.erofs"), os.X_OK)
                            for d in os.environ.get("PATH", "").split(":") if d),
                    reason="mkfs.erofs is not installed")
def test_scan_content_erofs_image(tmp_path: Path) -> None:
    rel = "usr/lib/extension-release.d/extension-release."
    full = _erofs(tmp_path, "full", {
        f"{rel}full": "ID=_any\n",
        "usr/lib/modules/6.1.0/extra/v4l2loopback.ko.zst": b"\x28\xb5\x2f\xfd" + b"m" * 100,
        "usr/lib/aarch64-linux-gnu/libcam.so.3.1": ELF + b"x" * 4000,
        "usr/lib/aarch64-linux-gnu/libcam.so.3": "->libcam.so.3.1",
    })
    empty = _erofs(tmp_path, "plain", {f"{rel}plain": "ID=_any\n", "usr/bin/tool": "#!/bin/sh\n",
                                       "usr/lib/libc.so": "GROUP ( x )\n",
                                       "usr/lib/modules/6.1.0/modules.dep": "\n"})
    conf = _erofs(tmp_path, "conf", {"etc/extension-release.d/extension-release.conf": "ID=_any\n",
                                     "etc/ld.so.conf.d/cam.conf": "/usr/lib/cam\n"})
    assert scan_content(ext("full", path=str(full))) == Content(True, True)
    assert scan_content(ext("plain", path=str(empty))) == Content(False, False)
    assert scan_content(ext("conf", cls="confext", path=str(conf))) == Content(False, True)

    # and the default scanner of plan_after_merge reads the images
    got = plan_after_merge([ext("plain", path=str(empty)), ext("full", path=str(full))])
    assert [(c.argv, c.sources) for c in got] == [(("depmod", "-a"), ("full",)),
                                                  (("ldconfig",), ("full",))]


# --------------------------------------------------------------------------- runner

CMDS = (HookCommand(Phase.DEPMOD, ("depmod", "-a"), ("a",)),
        HookCommand(Phase.ON_MERGE, ("bad", "x"), ("a",)),
        HookCommand(Phase.ON_MERGE, ("missing",), ("a",)),
        HookCommand(Phase.ON_MERGE, ("slow",), ("a",)),
        HookCommand(Phase.ON_MERGE, ("killed",), ("a",)),
        HookCommand(Phase.RESTART, ("systemctl", "restart", "--no-block", "x.service"), ("a",)))


def test_not_live_records_without_running() -> None:
    def runner(argv: Sequence[str]) -> Exec:
        raise AssertionError(f"must not run {argv}")

    runs = run_hooks(CMDS, live=False, runner=runner)
    assert runs == tuple(HookRun(c.phase.value, c.argv, ran=False) for c in CMDS)


def test_live_runs_everything_and_reports_failures(warnings: list[str]) -> None:
    answers = {"depmod": Exec(True, 0), "bad": Exec(True, 3, "bad: no such thing"),
               "missing": Exec(False, message="missing: command not found"),
               "slow": Exec(True, None, "timed out after 300.0s"),
               "killed": Exec(True, -9, ""), "systemctl": Exec(True, 0, "noise")}
    called: list[tuple[str, ...]] = []

    def runner(argv: Sequence[str]) -> Exec:
        called.append(tuple(argv))
        return answers[argv[0]]

    runs = run_hooks(CMDS, live=True, runner=runner)
    assert called == [c.argv for c in CMDS]
    assert runs == (
        HookRun("depmod", ("depmod", "-a"), ran=True, status=0),
        HookRun("on-merge", ("bad", "x"), ran=True, status=3, error="bad: no such thing"),
        HookRun("on-merge", ("missing",), ran=False, error="missing: command not found"),
        HookRun("on-merge", ("slow",), ran=True, error="timed out after 300.0s"),
        HookRun("on-merge", ("killed",), ran=True, status=-9, error="killed by signal 9"),
        HookRun("restart", ("systemctl", "restart", "--no-block", "x.service"), ran=True,
                status=0),
    )
    assert warnings == [
        "Hook 'bad x' failed: bad: no such thing",
        "Hook 'missing' could not be started: missing: command not found",
        "Hook 'slow' failed: timed out after 300.0s",
        "Hook 'killed' failed: killed by signal 9",
    ]


def test_a_failure_without_stderr_names_the_status() -> None:
    runs = run_hooks(CMDS[:2], live=True, runner=lambda argv: Exec(True, 1))
    assert runs[1].error == "exit status 1"


FAKE = """#!/bin/sh
{{ printf '%s' "$0"; for a in "$@"; do printf ' [%s]' "$a"; done; echo; }} >> {log}
tr '\\0' '\\n' < /proc/$$/environ | sort > {log}.env.$(basename "$0")
pwd > {log}.cwd.$(basename "$0")
{body}
"""


def fake_bin(tmp_path: Path, bodies: Mapping[str, str]) -> tuple[Path, Path]:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    logfile = tmp_path / "calls"
    for name, body in bodies.items():
        p = bindir / name
        p.write_text(FAKE.format(log=logfile, body=body))
        p.chmod(p.stat().st_mode | stat.S_IXUSR)
    return bindir, logfile


def test_spawner_runs_fake_commands_cleanly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            warnings: list[str]) -> None:
    bindir, logfile = fake_bin(tmp_path, {
        "depmod": "exit 0", "ldconfig": "echo 'ldconfig: cannot write cache' >&2; exit 1",
        "systemctl": "exit 0", "on-merge-tool": "echo out; exit 0"})
    monkeypatch.setenv("STRATA_SECRET", "leak")
    monkeypatch.chdir(tmp_path)
    path = f"{bindir}:{HOOK_PATH}"
    merged = [ext("a", "AVOCADO_ON_MERGE=\"on-merge-tool 'two words' $X\"\n"
                       "AVOCADO_ON_MERGE=not-installed-anywhere\n"
                       "EXTENSION_RESTART_UNITS=a.service\n")]
    runs = after_merge("/", merged, live=True, runner=spawner(search_path=path),
                       content=scanner(contents(a="ml")))
    assert [(r.phase, r.argv, r.ran, r.status, r.error) for r in runs] == [
        ("depmod", ("depmod", "-a"), True, 0, None),
        ("ldconfig", ("ldconfig",), True, 1, "ldconfig: cannot write cache"),
        ("daemon-reload", ("systemctl", "daemon-reload"), True, 0, None),
        ("on-merge", ("on-merge-tool", "'two", "words'", "$X"), True, 0, None),
        ("on-merge", ("not-installed-anywhere",), False, None,
         f"not-installed-anywhere: command not found (PATH={path})"),
        ("restart", ("systemctl", "restart", "--no-block", "a.service"), True, 0, None),
    ]
    assert logfile.read_text().splitlines() == [
        f"{bindir}/depmod [-a]",
        f"{bindir}/ldconfig",
        f"{bindir}/systemctl [daemon-reload]",
        f"{bindir}/on-merge-tool ['two] [words'] [$X]",
        f"{bindir}/systemctl [restart] [--no-block] [a.service]",
    ]
    # nothing of strata's environment, only PATH; run from /
    for name in ("depmod", "ldconfig", "systemctl", "on-merge-tool"):
        assert Path(f"{logfile}.env.{name}").read_text() == f"PATH={path}\n"
        assert Path(f"{logfile}.cwd.{name}").read_text() == "/\n"
    assert len(warnings) == 2


def test_spawner_timeout(tmp_path: Path) -> None:
    bindir, _log = fake_bin(tmp_path, {"hang": "exec sleep 10"})
    spawn = spawner(search_path=f"{bindir}:{HOOK_PATH}", timeout=0.3)
    result = spawn(["hang"])
    assert result.started
    assert result.status is None
    assert "timed out after 0.3s" in result.message


def test_spawner_not_executable(tmp_path: Path) -> None:
    (tmp_path / "noexec").write_text("#!/bin/sh\n")
    result = spawner(search_path=str(tmp_path))(["noexec"])
    assert not result.started
    assert "command not found" in result.message
    absolute = spawner(search_path=str(tmp_path))([str(tmp_path / "noexec")])
    assert not absolute.started


def test_spawner_absolute_program(tmp_path: Path) -> None:
    bindir, logfile = fake_bin(tmp_path, {"tool": "exit 7"})
    result = spawner(search_path="/nonexistent")([str(bindir / "tool"), "x"])
    assert (result.started, result.status) == (True, 7)
    assert logfile.read_text() == f"{bindir}/tool [x]\n"


def test_unmerge_runners_record_when_not_live(tmp_path: Path) -> None:
    a = ext("a", "AVOCADO_ON_UNMERGE=\"a-stop\"\nEXTENSION_RELOAD_MANAGER=1\n")
    before = before_unmerge(str(tmp_path), [a], live=False)
    after = after_unmerge(str(tmp_path), [a], live=False,
                          content=scanner(contents(a="m")))
    assert before == (HookRun("on-unmerge", ("a-stop",), ran=False),)
    assert after == (HookRun("depmod", ("depmod", "-a"), ran=False),
                     HookRun("daemon-reload", ("systemctl", "daemon-reload"), ran=False))


def test_is_live(tmp_path: Path) -> None:
    assert is_live("/", systemd_dir=str(tmp_path))
    assert is_live("//", systemd_dir=str(tmp_path))
    assert not is_live(str(tmp_path), systemd_dir=str(tmp_path))
    assert not is_live("/", systemd_dir=str(tmp_path / "missing"))
