"""Scenario 4: the boot-time merge unit. Extensions are enabled (not merged) and
strata-merge.service is enabled; the VM reboots; in the next boot the extensions were merged
before basic.target, and the service of scenario 2's extension runs from them.

The first test runs last in boot 1 and asks for the reboot; the second runs in boot 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.system.guestlib import (
    ask,
    build_extension,
    hello_extension,
    is_merged,
    prop,
    reset_device,
    sh,
    strata,
    strata_json,
    systemctl,
    wait_active,
    wait_for,
)

pytestmark = pytest.mark.system

CONF_FILE = Path("/etc/strata-boot/conf.txt")


@pytest.mark.before_reboot
def test_enable_extensions_and_the_merge_unit_then_reboot(
        strata_units: None, request_reboot: None) -> None:
    reset_device()  # and no reset afterwards: the next boot starts from what this leaves
    hello_extension("1.0")
    build_extension("bootconf", "1.0", {"etc/strata-boot/conf.txt": "merged at boot\n"},
                    confext=True)
    strata("ext", "enable", "hello", "bootconf")
    systemctl("enable", "strata-merge.service")
    assert prop("strata-merge.service", "UnitFileState") == "enabled"
    # Not merged now: whatever is merged after the reboot, the boot merged.
    assert not is_merged("/usr") and not is_merged("/etc")


@pytest.mark.boot(2)
def test_merged_before_basic_target_with_the_service_running(strata_units: None) -> None:
    try:
        # The unit ran and finished (oneshot, RemainAfterExit) in this boot...
        assert prop("strata-merge.service", "ActiveState") == "active"
        assert prop("strata-merge.service", "Result") == "success"
        merged_at = int(prop("strata-merge.service", "ActiveEnterTimestampMonotonic"))
        sysinit_at = int(prop("sysinit.target", "ActiveEnterTimestampMonotonic"))
        basic_at = int(prop("basic.target", "ActiveEnterTimestampMonotonic"))
        print(f"merged at {merged_at / 1e6:.2f}s, sysinit.target {sysinit_at / 1e6:.2f}s, "
              f"basic.target {basic_at / 1e6:.2f}s (monotonic)")
        assert 0 < merged_at < sysinit_at < basic_at

        # ...and merged both classes of the enabled set.
        assert is_merged("/usr") and is_merged("/etc")
        assert CONF_FILE.read_text() == "merged at boot\n"
        status = {s["name"]: s for s in strata_json("ext", "status")}
        assert status["hello"]["isMerged"] and status["bootconf"]["isMerged"]

        # The extension's service was started by the boot merge and runs its binary.
        wait_active("hello-strata.service")
        pid = int(prop("hello-strata.service", "MainPID"))
        answer = wait_for("hello-strata to answer", lambda: ask("/run/hello-strata.sock"))
        assert answer == f"hello-strata 1.0 pid={pid} exe=/usr/bin/hello-strata"
        assert prop("hello-strata.service", "FragmentPath") == \
            "/usr/lib/systemd/system/hello-strata.service"
        assert sh("findmnt", "-n", "-o", "FSTYPE,SOURCE", "--target",
                  "/usr/bin/hello-strata").stdout.split() == ["overlay", "sysext"]
    finally:
        systemctl("disable", "strata-merge.service")
        reset_device()
