"""Shared test set-up: the `privileged` marker.

Tests marked `privileged` need root, mount namespaces, loop devices, overlayfs/erofs/squashfs
and the mkfs tools. Each one runs its kernel work in a private mount namespace (see
strata.kernel.ns) against a scratch root. Where something is missing the test is skipped with
exactly what is missing, and with STRATA_REQUIRE_PRIVILEGED=1 (CI) such a skip is a failure.
"""

from __future__ import annotations

import functools
import os
import shutil

import pytest


@functools.cache
def privileged_missing() -> str | None:
    if os.geteuid() != 0:
        return "not running as root"
    if not os.path.exists("/dev/loop-control"):
        return "/dev/loop-control is missing (no loop device support)"
    try:
        with open("/proc/filesystems") as f:
            fstypes = {line.split()[-1] for line in f if line.strip()}
    except OSError:
        return "/proc/filesystems is unreadable"
    for fs in ("overlay", "erofs", "squashfs"):
        if fs not in fstypes:
            return f"the kernel lacks the {fs} filesystem"
    for tool in ("mkfs.erofs", "mksquashfs"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    try:
        from strata.kernel.ns import run_isolated

        run_isolated(lambda: None)
    except Exception as e:
        return f"cannot create a private mount namespace: {e}"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`peers257` tests compare with systemd 257 through ../shared/tools/peers.sh, a
    development aid that CI does not have: they run only with STRATA_DIFF_257=1, and are
    otherwise deselected (not skipped: nothing is missing from the product)."""
    from tests.helpers import peers_enabled

    if peers_enabled():
        return
    keep = [i for i in items if i.get_closest_marker("peers257") is None]
    if len(keep) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in keep])
        items[:] = keep


def pytest_runtest_setup(item: pytest.Item) -> None:
    missing: str | None = None
    if item.get_closest_marker("oracle") is not None and shutil.which("systemd-sysext") is None:
        missing = "systemd-sysext (the differential oracle) is not installed"
    elif item.get_closest_marker("privileged") is not None:
        missing = privileged_missing()
    if missing is None:
        return
    if os.environ.get("STRATA_REQUIRE_PRIVILEGED") == "1":
        pytest.fail(f"privileged test cannot run: {missing} (STRATA_REQUIRE_PRIVILEGED=1)")
    pytest.skip(f"privileged test skipped: {missing}")
