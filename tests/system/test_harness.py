"""The VM harness itself, on the host (part of the default test run; no VM is booted): the
accelerator decision, the QEMU command line, reading results and excerpts, scenario selection,
the image recipe's cache key, disks made and read back without mounting, and the bad-input
paths — a boot that times out is killed (only it), a guest that dies is reported with its
console and journal."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, cast

import pytest

from tests.system.conftest import select
from tests.system.harness import disk, qemu, results, run
from tests.system.harness.image import RUNNER_UNIT, Image, Recipe, requirements_from

CPUINFO_PLAIN = "processor\t: 0\nflags\t\t: fpu vme sse sse2 avx2 hypervisor\n"
CPUINFO_VMX = "processor\t: 0\nflags\t\t: fpu vme vmx sse sse2\n"
CPUINFO_SVM = "processor\t: 0\nflags\t\t: fpu svm sse\n"


@pytest.mark.parametrize(("cpuinfo", "opens", "override", "accel"), [
    (CPUINFO_PLAIN, True, None, qemu.Accel.TCG),   # /dev/kvm without vmx/svm: PVM, unusable
    (CPUINFO_PLAIN, False, None, qemu.Accel.TCG),
    (CPUINFO_VMX, True, None, qemu.Accel.KVM),
    (CPUINFO_SVM, True, None, qemu.Accel.KVM),
    (CPUINFO_VMX, False, None, qemu.Accel.TCG),    # no usable /dev/kvm
    (CPUINFO_VMX, True, "tcg", qemu.Accel.TCG),
    (CPUINFO_PLAIN, False, "kvm", qemu.Accel.KVM),  # the user's word wins
    ("", True, None, qemu.Accel.TCG),
])
def test_choose_accel(cpuinfo: str, opens: bool, override: str | None,
                      accel: qemu.Accel) -> None:
    got, why = qemu.choose_accel(cpuinfo, opens, override)
    assert got is accel and why


def test_choose_accel_rejects_an_unknown_override() -> None:
    with pytest.raises(ValueError, match="STRATA_VM_ACCEL"):
        qemu.choose_accel(CPUINFO_VMX, True, "xen")


def machine(tmp_path: Path, accel: qemu.Accel = qemu.Accel.TCG, **kw: Any) -> qemu.Machine:
    return qemu.Machine(kernel=tmp_path / "vmlinuz", root=tmp_path / "root.img",
                        work=tmp_path / "work.img", console=tmp_path / "console.log",
                        accel=accel, **kw)


def test_qemu_argv(tmp_path: Path) -> None:
    argv = qemu.qemu_argv(machine(tmp_path))
    joined = " ".join(argv)
    assert argv[0] == "qemu-system-x86_64"
    assert "-accel tcg,thread=multi -cpu max" in joined and "kvm" not in joined
    assert "-no-reboot" in argv and "-nic none" in joined
    assert f"-serial file:{tmp_path}/console.log" in joined
    # root alone on NVMe, the work disk on virtio
    assert f"file={tmp_path}/root.img,if=none,id=root" in joined
    assert "nvme,serial=strata-root,drive=root" in joined
    assert f"file={tmp_path}/work.img,if=virtio" in joined
    cmdline = argv[argv.index("-append") + 1]
    assert "root=/dev/nvme0n1" in cmdline and "panic=1" in cmdline
    assert f"systemd.wants={RUNNER_UNIT}" in cmdline
    kvm = qemu.qemu_argv(machine(tmp_path, qemu.Accel.KVM))
    assert "-accel kvm -cpu host" in " ".join(kvm)


JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" tests="4">
<testcase classname="tests.system.test_01_socket_activation" name="test_a" time="12.5"/>
<testcase classname="tests.system.test_05_atomic_refresh" name="test_b" time="3.0">
  <failure message="AssertionError: 3 misses&#10;more">Traceback...
E   AssertionError: 3 misses</failure></testcase>
<testcase classname="tests.system.test_06_update_rollback" name="test_c" time="0.1">
  <skipped message="strata publish/update are not in this build (issue 5)"/></testcase>
<testcase classname="tests.system.test_07_unprivileged" name="test_d" time="1">
  <error message="fixture failed">boom</error></testcase>
</testsuite></testsuites>
"""


def test_parse_junit_and_summary() -> None:
    cases = results.parse_junit(JUNIT, boot=1)
    assert [(c.name, c.outcome, c.seconds) for c in cases] == [
        ("test_01_socket_activation::test_a", results.Outcome.PASSED, 12.5),
        ("test_05_atomic_refresh::test_b", results.Outcome.FAILED, 3.0),
        ("test_06_update_rollback::test_c", results.Outcome.SKIPPED, 0.1),
        ("test_07_unprivileged::test_d", results.Outcome.ERROR, 1.0),
    ]
    assert cases[1].message == "AssertionError: 3 misses"
    assert "E   AssertionError: 3 misses" in cases[1].details
    assert results.summary_line(cases) == "system-tests: 1 passed, 2 failed, 1 skipped"
    table = results.table(cases)
    assert "FAILED" in table and "-- AssertionError: 3 misses" in table
    assert results.summary_line([]) == "system-tests: 0 passed, 0 failed, 0 skipped"
    assert results.summary_line(cases[:1], problems=1) == \
        "system-tests: 1 passed, 1 failed, 0 skipped"


def test_journal_excerpt_is_the_failing_test_s_window() -> None:
    journal = "\n".join([
        "[1.0] a: before",
        "[2.0] strata-system-test[9]: BEGIN test_05_x::test_b",
        "[2.5] strata[10]: Merged extensions into '/usr'.",
        "[3.0] strata-system-test[9]: END test_05_x::test_b",
        "[4.0] b: after",
    ])
    got = results.journal_excerpt(journal, ["test_05_x::test_b"])
    assert got.splitlines() == journal.splitlines()[1:4]
    # an unknown test: the end of the journal
    assert results.journal_excerpt(journal, ["nope"], n=2).splitlines() == \
        journal.splitlines()[-2:]


def test_unfinished_test() -> None:
    journal = ("x: BEGIN t::a\nx: END t::a\nx: BEGIN t::b\nother\n")
    assert results.unfinished_test(journal) == "t::b"
    assert results.unfinished_test(journal + "x: END t::b\n") is None
    assert results.unfinished_test("") is None


def test_console_excerpt_drops_escape_sequences() -> None:
    console = "x\n\x1b[0;1;31mFAILED\x1b[0m to start\n" + "\n".join(f"l{i}" for i in range(3))
    assert results.console_excerpt(console, 4) == "FAILED to start\nl0\nl1\nl2"


@pytest.mark.parametrize(("kw", "problem"), [
    ({"timed_out": False, "runner_boots": 1, "next_step": "poweroff"}, None),
    ({"timed_out": False, "runner_boots": 1, "next_step": "reboot"}, None),
    ({"timed_out": True, "runner_boots": 1, "next_step": "crashed"}, "did not power off"),
    ({"timed_out": False, "runner_boots": 1, "next_step": "crashed"}, "stopped before"),
    ({"timed_out": False, "runner_boots": None, "next_step": None}, "never started"),
    # boot 2 that never reached its runner: the disk still says what boot 1 asked for
    ({"timed_out": False, "runner_boots": 1, "next_step": "reboot", "n": 2},
     "never started"),
])
def test_verdict(kw: dict[str, Any], problem: str | None) -> None:
    n = kw.pop("n", 1)
    got = run.verdict(n, timeout=60, **kw)
    assert (got is None) if problem is None else (got is not None and problem in got)


class FakeItem:
    """What select() looks at in a pytest item: its markers."""

    def __init__(self, name: str, *markers: tuple[str, tuple[Any, ...]]) -> None:
        self.name = name
        self.markers = dict(markers)

    def get_closest_marker(self, name: str) -> Any:
        if name not in self.markers:
            return None
        return argparse.Namespace(args=self.markers[name])


@pytest.mark.parametrize(("system_run", "boot", "names"), [
    (False, 1, ["unit"]),
    (True, 1, ["s1", "s3", "prep"]),  # prep (before_reboot) last
    (True, 2, ["after"]),
])
def test_select(system_run: bool, boot: int, names: list[str]) -> None:
    items = [FakeItem("unit"),
             FakeItem("s1", ("system", ())),
             FakeItem("prep", ("system", ()), ("before_reboot", ())),
             FakeItem("after", ("system", ()), ("boot", (2,))),
             FakeItem("s3", ("system", ()), ("boot", (1,)))]
    keep, drop = select(cast(list[pytest.Item], items), system_run=system_run, boot=boot)
    assert [i.name for i in keep] == names
    assert len(keep) + len(drop) == len(items)


def test_recipe_key_follows_what_shapes_the_image(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(textwrap.dedent("""\
        [project]
        name = "x"
        dependencies = ["lz4>=4.3", "tuf>=7,<8"]
        [project.optional-dependencies]
        test = ["pytest>=8", "ruff>=0.6", "varlink>=31.0.0", "mypy"]
        """))
    reqs = requirements_from(pyproject)
    assert reqs == ("lz4>=4.3", "tuf>=7,<8", "pytest>=8", "varlink>=31.0.0")
    base = Recipe(requirements=reqs)
    assert base.key() == Recipe(requirements=reqs).key()
    assert base.key() == Recipe(requirements=reqs, mirror="http://mirror.example/").key()
    assert base.key() != Recipe(requirements=(*reqs, "extra")).key()
    assert base.key() != Recipe(requirements=reqs, suite="bookworm").key()
    assert base.key() != Recipe(requirements=reqs, packages=(*base.packages, "jq")).key()


def test_work_disk_round_trip_without_mounting(tmp_path: Path) -> None:
    src = tmp_path / "stage"
    (src / "results" / "boot1").mkdir(parents=True)
    (src / "results" / "boot1" / "junit.xml").write_text(JUNIT)
    (src / "state").mkdir()
    (src / "state" / "next").write_text("poweroff\n")
    img = tmp_path / "work.img"
    disk.make_work_disk(src, img, size="16M")
    assert disk.read_text(img, "/state/next") == "poweroff\n"
    assert disk.read_text(img, "/state/missing") is None
    got = disk.rdump(img, "/results", tmp_path / "out")
    assert got is not None and (got / "boot1" / "junit.xml").read_text() == JUNIT
    assert disk.rdump(img, "/nothing", tmp_path / "out") is None
    copy = tmp_path / "copy.img"
    disk.copy_sparse(img, copy)
    assert disk.read_text(copy, "/state/next") == "poweroff\n"
    assert "no journal" in disk.post_mortem_journal(img, tmp_path / "pm")


FAKE_QEMU = """\
#!{python}
# Stands in for qemu-system-x86_64: writes to the console file it is given, then runs for
# {seconds} seconds (a hung guest) or exits at once (a guest that died).
import os, sys, time
argv = sys.argv[1:]
console = argv[argv.index("-serial") + 1].removeprefix("file:")
with open(console, "w") as f:
    f.write("Booting the fake kernel\\r\\nKernel panic - not syncing: VFS: no root\\n")
    f.write("[ pid %d ]\\n" % os.getpid())
time.sleep({seconds})
"""


def fake_qemu(tmp_path: Path, seconds: float) -> str:
    path = tmp_path / f"fake-qemu-{seconds}"
    path.write_text(FAKE_QEMU.format(python=sys.executable, seconds=seconds))
    path.chmod(0o755)
    return str(path)


def test_a_timeout_kills_only_the_qemu_it_started(tmp_path: Path) -> None:
    bystander = subprocess.Popen([fake_qemu(tmp_path, 60), "-serial",
                                  f"file:{tmp_path}/other.log"])
    try:
        lines: list[str] = []
        m = machine(tmp_path, qemu=fake_qemu(tmp_path, 60))
        started = time.monotonic()
        outcome = qemu.boot(m, 2.0, lines.append, tmp_path / "qemu.log")
        assert outcome.timed_out and outcome.returncode is None
        assert time.monotonic() - started < 20
        assert "Kernel panic - not syncing: VFS: no root" in lines
        pid = int(next(x for x in lines if x.startswith("[ pid")).split()[2])
        assert not Path(f"/proc/{pid}").exists()  # killed and reaped
        assert bystander.poll() is None  # the other "QEMU" (same program) still runs
    finally:
        bystander.kill()
        bystander.wait()


def test_a_guest_that_dies_is_reported_with_console_and_journal(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stage = tmp_path / "stage"
    stage.mkdir()
    work, root = tmp_path / "work.img", tmp_path / "root.img"
    disk.make_work_disk(stage, work, size="16M")
    disk.make_work_disk(stage, root, size="16M")  # a root disk without a journal
    (tmp_path / "vmlinuz").write_text("")
    args = argparse.Namespace(boot_timeout=30.0, total_timeout=600.0, memory=256, cpus=1,
                              qemu=fake_qemu(tmp_path, 0))
    report = run.RunReport(directory=str(tmp_path))
    cases = run._boots(args, Image(tmp_path), qemu.Accel.TCG, out=tmp_path, root=root,
                       work=work, deadline=time.monotonic() + 600, report=report)
    assert cases == []
    assert len(report.problems) == 1 and "never started the test runner" in report.problems[0]
    out = capsys.readouterr().out
    assert "end of the serial console" in out
    assert "Kernel panic - not syncing: VFS: no root" in out
    assert "end of the guest's journal" in out and "no journal" in out
    assert os.path.exists(tmp_path / "console-boot1.log")


@pytest.mark.parametrize("args", [[], ["-k", "guest or verity"], ["-x", "it's", "$HOME", "a\tb"]])
def test_config_env_keeps_each_pytest_argument_whole(tmp_path: Path, args: list[str]) -> None:
    env = tmp_path / "config.env"
    env.write_text(run.config_env(args))
    out = subprocess.run(["bash", "-c", '. "$1"; for a in "${PYTEST_ARGS[@]}"; do '
                          'printf "%s\\0" "$a"; done; echo "$MAX_BOOTS"', "-", str(env)],
                         capture_output=True, text=True, check=True).stdout
    *got, boots = out.split("\0")
    assert (got, boots) == (args, f"{run.MAX_BOOTS}\n")
