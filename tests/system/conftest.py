"""System tests: scenarios that run inside a throw-away VM with systemd as PID 1, where Strata
merges onto the real /usr and /etc (docs/testing.md; run them with scripts/system-test.sh).

Markers (registered here):

- `system`: a scenario. Deselected unless STRATA_SYSTEM_TESTS=1, which only the VM's runner
  sets; in that run everything else is deselected. A scenario that somehow runs outside the
  VM fails at once: it would change the machine's own /usr and /etc.
- `boot(N)`: runs in the N-th boot of the VM (default 1), after a scenario asked for a reboot.
- `before_reboot`: runs last in its boot (it prepares what the next boot checks).

Each scenario's start and end are written to the guest's journal ("BEGIN name"/"END name"),
so that the harness can show the journal of exactly the test that failed.
"""

from __future__ import annotations

import os
import socket
import syslog
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from tests.system.harness.image import GUEST_MARKER

SYSTEM_ENV = "STRATA_SYSTEM_TESTS"


def pytest_configure(config: pytest.Config) -> None:
    if in_system_run():
        # varlink calls and sockets of the scenarios never wait forever; the harness's boot
        # timeout is the last resort, this the first
        socket.setdefaulttimeout(300)
    config.addinivalue_line(
        "markers", "system: runs only inside the system-test VM (scripts/system-test.sh); "
        "deselected unless STRATA_SYSTEM_TESTS=1")
    config.addinivalue_line("markers", "boot(n): runs in the n-th boot of the VM (default 1)")
    config.addinivalue_line("markers", "before_reboot: runs last in its boot")


def in_system_run() -> bool:
    return os.environ.get(SYSTEM_ENV) == "1"


def current_boot() -> int:
    return int(os.environ.get("STRATA_SYSTEM_BOOT", "1"))


def boot_of(item: pytest.Item) -> int:
    marker = item.get_closest_marker("boot")
    return int(marker.args[0]) if marker is not None else 1


def select(items: list[pytest.Item], *, system_run: bool, boot: int
           ) -> tuple[list[pytest.Item], list[pytest.Item]]:
    """(kept, deselected): scenarios only in the VM's run and only in their boot, ordered with
    the `before_reboot` ones last; everything else only outside it."""
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        is_system = item.get_closest_marker("system") is not None
        wanted = is_system == system_run and (not is_system or boot_of(item) == boot)
        (keep if wanted else drop).append(item)
    keep.sort(key=lambda i: i.get_closest_marker("before_reboot") is not None)  # stable
    return keep, drop


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    keep, drop = select(items, system_run=in_system_run(), boot=current_boot())
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def guest_problem(marker: str = GUEST_MARKER) -> str | None:
    """Why this is not the system-test VM (None when it is)."""
    if not os.path.exists(marker):
        return (f"{marker} is missing: system tests change /usr and /etc of the machine "
                "they run on, so they run only inside the VM of scripts/system-test.sh")
    if os.geteuid() != 0:
        return "system tests run as root"
    try:
        comm = Path("/proc/1/comm").read_text().strip()
    except OSError as e:
        return f"cannot read /proc/1/comm: {e}"
    if comm != "systemd":
        return f"PID 1 is {comm!r}, not systemd"
    return None


def scenario_name(item: pytest.Item) -> str:
    """module::test, as the harness names the test from its JUnit record."""
    module = item.nodeid.split("::", 1)[0].rsplit("/", 1)[-1].removesuffix(".py")
    return f"{module}::{item.name}"


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("system") is None:
        return
    problem = guest_problem()
    if problem is not None:
        pytest.fail(f"not in the system-test VM: {problem}", pytrace=False)


@pytest.fixture(autouse=True)
def _journal_marks(request: pytest.FixtureRequest) -> Iterator[None]:
    if request.node.get_closest_marker("system") is None or guest_problem() is not None:
        yield
        return
    name = scenario_name(request.node)
    syslog.openlog("strata-system-test")
    syslog.syslog(syslog.LOG_NOTICE, f"BEGIN {name}")
    try:
        yield
    finally:
        syslog.syslog(syslog.LOG_NOTICE, f"END {name}")


@pytest.fixture
def request_reboot(request: pytest.FixtureRequest) -> Iterator[None]:
    """Ask the runner to reboot the VM after this boot's tests, if the test passes (the
    tests of the next boot check what this one prepared)."""
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.passed:
        state = Path(os.environ.get("STRATA_SYSTEM_STATE", "/mnt/work/state"))
        (state / "reboot-requested").write_text(scenario_name(request.node) + "\n")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report


@pytest.fixture(scope="session")
def strata_units() -> None:
    """strata.socket, strata.service and strata-merge.service installed from the package and
    the socket listening (as docs/reference.md tells users to install them)."""
    from tests.system.guestlib import install_units

    problem = guest_problem()
    if problem is not None:  # never touch the units of a machine that is not the VM
        pytest.fail(f"not in the system-test VM: {problem}", pytrace=False)
    install_units()


@pytest.fixture
def clean_device(strata_units: None) -> Iterator[None]:
    """Nothing merged, nothing enabled, an empty store, before and after the test."""
    from tests.system.guestlib import reset_device

    reset_device()
    yield
    reset_device()
