"""One run of the system tests: image (cached), wheel, work disk, boots, results, report.

    python -m tests.system.harness [--build-only] [--keep-disks] [-- PYTEST-ARGS...]

(scripts/system-test.sh installs the tools first, then runs exactly that.)

The guest runs the scenarios of tests/system with its own pytest (guest/boot.sh); a scenario
that needs a reboot asks for one, and the harness boots the same disks again. Every boot is
bounded by a timeout that kills only the QEMU process started for it. A boot that does not
reach the end of the runner (hang, panic, crash) is a failure, reported with the end of the
serial console and of the guest's journal; so is a failed or missing test result.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tests.system.harness import disk, qemu, results
from tests.system.harness.image import Image, Recipe, ensure_image, requirements_from

DEFAULT_CACHE = "/var/cache/strata-vm"
#: a boot that has not powered off after this long is killed (TCG on a busy 2-core machine:
#: the whole suite takes about 6 minutes on a quiet one)
DEFAULT_BOOT_TIMEOUT = 600.0
#: and the whole run, image build included, is bounded too
DEFAULT_TOTAL_TIMEOUT = 900.0
MAX_BOOTS = 2
HOST_TOOLS = ("qemu-system-x86_64", "debootstrap", "mkfs.ext4", "debugfs", "chroot", "cp")
KEEP_RUNS = 5


def say(message: str) -> None:
    print(f"system-test: {message}", flush=True)


def missing_host_tools() -> list[str]:
    return [t for t in HOST_TOOLS if shutil.which(t) is None]


@dataclass
class BootReport:
    number: int
    qemu_seconds: float
    timed_out: bool
    next: str | None  # what the guest's runner asked for: reboot, poweroff; else it died
    runner_started_at: float | None  # guest uptime when the runner started: the boot time
    systemd_analyze: str = ""
    pytest_exit: int | None = None
    pip_ms: int | None = None


@dataclass
class RunReport:
    directory: str
    image_build_seconds: float | None = None
    wheel_seconds: float = 0.0
    boots: list[BootReport] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    total_seconds: float = 0.0


def build_wheel(project: Path, out: Path) -> Path:
    """The project's wheel, built from a copy of its sources (the checkout stays untouched:
    no build/ or egg-info appears in it)."""
    src = out / "src-copy"
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    shutil.copytree(project / "src", src / "src", ignore=ignore)
    for name in ("pyproject.toml", "README.md", "LICENSE", "COPYING"):
        if (project / name).exists():
            shutil.copy2(project / name, src / name)
    wheels = out / "wheel"
    wheels.mkdir(parents=True, exist_ok=True)
    # An isolated build: pyproject.toml's build requirements, whatever the venv holds.
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                           "-w", str(wheels), str(src)], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, check=False)
    (out / "wheel.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise RuntimeError(f"building the wheel failed (exit {proc.returncode}):\n"
                           + results.tail(proc.stdout + proc.stderr, 30))
    shutil.rmtree(src)
    found = sorted(wheels.glob("strata-*.whl"))
    if len(found) != 1:
        raise RuntimeError(f"expected one strata wheel in {wheels}, found {found}")
    return found[0]


def config_env(pytest_args: Sequence[str]) -> str:
    """The runner's settings, sourced by guest/boot.sh: the guest pytest's arguments as a
    bash array (each argument kept whole: `-k "a or b"`)."""
    import shlex

    return (f"PYTEST_ARGS=({' '.join(shlex.quote(a) for a in pytest_args)})\n"
            f"MAX_BOOTS={MAX_BOOTS}\n")


def stage(project: Path, wheel_dir: Path, target: Path, pytest_args: Sequence[str]) -> None:
    """The work disk's contents: the runner, its settings, the wheel and the scenarios."""
    here = Path(__file__).resolve().parent.parent  # tests/system
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    shutil.copy2(here / "guest" / "boot.sh", target / "boot.sh")
    (target / "config.env").write_text(config_env(pytest_args))
    shutil.copytree(wheel_dir, target / "wheel")
    proj = target / "project"
    (proj / "tests").mkdir(parents=True)
    shutil.copy2(project / "pyproject.toml", proj / "pyproject.toml")
    shutil.copy2(project / "tests" / "__init__.py", proj / "tests" / "__init__.py")
    shutil.copytree(here, proj / "tests" / "system",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def _float(text: str | None) -> float | None:
    try:
        return float(text.strip()) if text else None
    except ValueError:
        return None


def _int(text: str | None) -> int | None:
    try:
        return int(text.strip()) if text else None
    except ValueError:
        return None


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return None


def _prune(runs: Path) -> None:
    old = sorted(p for p in runs.iterdir() if p.is_dir() and p.name != "latest")
    for p in old[:-KEEP_RUNS]:
        shutil.rmtree(p, ignore_errors=True)


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    deadline = started + args.total_timeout
    project = Path(args.project).resolve()
    cache = Path(args.cache)
    missing = missing_host_tools()
    if missing:
        say(f"cannot boot a VM: missing {', '.join(missing)} (scripts/system-test.sh "
            "installs them)")
        return 2
    if os.geteuid() != 0:
        say("cannot build the VM image: debootstrap and the chroot steps need root")
        return 2

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"
    runs = cache / "runs"
    out = Path(args.results) if args.results else runs / stamp
    out.mkdir(parents=True, exist_ok=True)
    if not args.results:
        latest = runs / "latest"
        latest.unlink(missing_ok=True)
        latest.symlink_to(out.name)
        _prune(runs)
    report = RunReport(directory=str(out))
    say(f"results in {out}")

    work = out / "work.img"
    root = out / "root.img"
    try:
        recipe = Recipe(requirements=requirements_from(project / "pyproject.toml"))
        image, report.image_build_seconds = ensure_image(recipe, cache, say)
        if args.build_only:
            return 0
        t = time.monotonic()
        wheel = build_wheel(project, out / "build")
        report.wheel_seconds = time.monotonic() - t
        say(f"wheel {wheel.name} built in {report.wheel_seconds:.1f} s")
        stage(project, wheel.parent, out / "stage", args.pytest_args)
        disk.make_work_disk(out / "stage", work)
        disk.copy_sparse(image.root, root)
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        report.problems.append(f"preparing the VM failed: {e}")
        report.total_seconds = time.monotonic() - started
        _final_report(report, [], out)
        return 1

    accel, why = qemu.choose_accel(Path("/proc/cpuinfo").read_text(), qemu.kvm_opens(),
                                   os.environ.get("STRATA_VM_ACCEL") or None)
    say(f"accelerator: {accel.value} ({why})")
    cases = _boots(args, image, accel, out=out, root=root, work=work, deadline=deadline,
                   report=report)

    report.total_seconds = time.monotonic() - started
    _final_report(report, cases, out)
    if not args.keep_disks:
        root.unlink(missing_ok=True)
        work.unlink(missing_ok=True)
    failed = results.counts(cases)
    bad = failed[results.Outcome.FAILED] + failed[results.Outcome.ERROR]
    return 1 if report.problems or bad or not cases else 0


def _boots(args: argparse.Namespace, image: Image, accel: qemu.Accel, *, out: Path,
           root: Path, work: Path, deadline: float, report: RunReport) -> list[results.Case]:
    cases: list[results.Case] = []
    for n in range(1, MAX_BOOTS + 1):
        left = deadline - time.monotonic()
        if left < 60:
            report.problems.append(f"boot {n}: no time left within the total timeout "
                                   f"({args.total_timeout:.0f} s)")
            break
        timeout = min(args.boot_timeout, left)
        m = qemu.Machine(kernel=image.kernel, root=root, work=work,
                         console=out / f"console-boot{n}.log", accel=accel,
                         memory_mb=args.memory, cpus=args.cpus, qemu=args.qemu)
        say(f"boot {n}: starting QEMU (timeout {timeout:.0f} s)")
        outcome = qemu.boot(m, timeout, lambda line: print(f"  vm| {line}", flush=True),
                            out / "qemu.log")
        got = disk.rdump(work, "/results", out)
        state = disk.rdump(work, "/state", out)
        bdir = (got / f"boot{n}") if got else out / f"results-missing-boot{n}"
        b = BootReport(
            number=n, qemu_seconds=outcome.seconds, timed_out=outcome.timed_out,
            next=((_read(state / "next") or "").strip() or None) if state else None,
            runner_started_at=_float(_read(bdir / "uptime-at-runner")),
            systemd_analyze=(_read(bdir / "systemd-analyze") or "").strip().split("\n")[0],
            pytest_exit=_int(_read(bdir / "pytest-exit")),
            pip_ms=_int(_read(bdir / "pip-ms")))
        report.boots.append(b)
        junit = _read(bdir / "junit.xml")
        if junit:
            try:
                cases += results.parse_junit(junit, n)
            except Exception as e:  # a truncated file from a dying guest
                report.problems.append(f"boot {n}: unreadable junit.xml: {e}")
        death = verdict(n, timed_out=outcome.timed_out, timeout=timeout,
                        runner_boots=_int(_read(state / "boots")) if state else None,
                        next_step=b.next)
        if death is not None:
            report.problems.append(death)
            _show_death(n, m.console, root, out)
            break
        if junit is None:
            report.problems.append(f"boot {n}: the guest wrote no test results "
                                   f"(see {bdir}/pytest.log)")
        if b.next != "reboot":
            break
    else:
        report.problems.append(f"the guest asked for more than {MAX_BOOTS} boots")
    return cases


def verdict(n: int, *, timed_out: bool, timeout: float, runner_boots: int | None,
            next_step: str | None) -> str | None:
    """Why boot `n` counts as dead (None: it ran its runner to the end and shut down). The
    runner counts boots on the work disk and says what comes next; a count that is not `n`
    means the runner never started in this boot (what the disk says is from the last one)."""
    if timed_out:
        return f"boot {n} did not power off within {timeout:.0f} s (QEMU killed)"
    if runner_boots != n:
        return (f"boot {n} never started the test runner (kernel panic, no root file system, "
                "or a failed start of the runner unit)")
    if next_step not in ("reboot", "poweroff"):
        return (f"boot {n} stopped before its runner finished (crash or forced power-off; "
                f"the runner's last word: {next_step!r})")
    return None


def _show_death(n: int, console: Path, root: Path, out: Path) -> None:
    qemu_log = (_read(out / "qemu.log") or "").strip()
    if qemu_log:
        say(f"boot {n}: QEMU said ({out / 'qemu.log'}):")
        print(results.tail(qemu_log, 20), flush=True)
    say(f"boot {n}: end of the serial console ({console}):")
    print(results.console_excerpt(_read(console) or "(empty)"), flush=True)
    say(f"boot {n}: end of the guest's journal (read from its root disk):")
    journal = disk.post_mortem_journal(root, out / f"post-mortem-boot{n}")
    (out / f"post-mortem-boot{n}.txt").write_text(journal + "\n")
    print(results.tail(journal, 80), flush=True)
    running = results.unfinished_test(journal)
    if running is not None:
        say(f"boot {n}: the test running when it stopped: {running}")


def _final_report(report: RunReport, cases: list[results.Case], out: Path) -> None:
    bad = [c for c in cases if c.outcome in (results.Outcome.FAILED, results.Outcome.ERROR)]
    for c in bad:
        say(f"FAILED (boot {c.boot}) {c.name}: {c.message}")
        print(results.tail(c.details, 60), flush=True)
        journal = _read(out / "results" / f"boot{c.boot}" / "journal.txt") or ""
        say(f"journal of the guest during {c.name}:")
        print(results.journal_excerpt(journal, [c.name]), flush=True)
    skipped = [c for c in cases if c.outcome is results.Outcome.SKIPPED]
    say("results:")
    print(results.table(cases) or "  (no test ran)", flush=True)
    for b in report.boots:
        boot_time = (f"{b.runner_started_at:.1f} s to the runner"
                     if b.runner_started_at is not None else "runner never started")
        extra = f"; wheel install {b.pip_ms / 1000:.1f} s" if b.pip_ms else ""
        say(f"boot {b.number}: {boot_time} ({b.systemd_analyze or 'no systemd-analyze'}); "
            f"QEMU ran {b.qemu_seconds:.0f} s{extra}")
    build = (f"built in {report.image_build_seconds:.0f} s"
             if report.image_build_seconds is not None else "cached")
    say(f"image {build}; wheel {report.wheel_seconds:.1f} s; "
        f"total wall time {report.total_seconds:.0f} s")
    for p in report.problems:
        say(f"PROBLEM: {p}")
    if skipped:
        say(f"{len(skipped)} skipped: " + "; ".join(f"{c.name} ({c.message})" for c in skipped))
    (out / "summary.json").write_text(json.dumps(
        {"report": asdict(report),
         "cases": [{"boot": c.boot, "name": c.name, "outcome": c.outcome.value,
                    "seconds": c.seconds, "message": c.message} for c in cases]},
        indent=2) + "\n")
    print(results.summary_line(cases, problems=len(report.problems)), flush=True)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="scripts/system-test.sh",
        description="Boot a Debian VM with systemd as PID 1 and run tests/system in it.")
    p.add_argument("--project", default=str(Path(__file__).resolve().parents[3]))
    p.add_argument("--cache", default=os.environ.get("STRATA_VM_CACHE", DEFAULT_CACHE),
                   help="where the image and the runs' results are kept "
                        "(default $STRATA_VM_CACHE or %(default)s)")
    p.add_argument("--results", help="results directory (default CACHE/runs/<time>)")
    p.add_argument("--boot-timeout", type=float, default=float(
        os.environ.get("STRATA_VM_BOOT_TIMEOUT", DEFAULT_BOOT_TIMEOUT)))
    p.add_argument("--total-timeout", type=float, default=float(
        os.environ.get("STRATA_VM_TIMEOUT", DEFAULT_TOTAL_TIMEOUT)))
    p.add_argument("--memory", type=int, default=1536, help="guest memory, MiB")
    p.add_argument("--cpus", type=int, default=2)
    p.add_argument("--qemu", default="qemu-system-x86_64", help=argparse.SUPPRESS)
    p.add_argument("--build-only", action="store_true", help="build (or find) the image only")
    p.add_argument("--keep-disks", action="store_true",
                   help="keep root.img and work.img in the results directory")
    p.add_argument("pytest_args", nargs="*",
                   help="passed to the guest's pytest (e.g. -- -k socket)")
    return p.parse_args(list(argv))


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse_args(sys.argv[1:] if argv is None else argv))
