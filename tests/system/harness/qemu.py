"""Booting the VM: the accelerator decision, the QEMU command line (pure), and one boot under
a timeout that kills only the QEMU process started here.

KVM is used only where the CPU shows hardware virtualisation (vmx/svm) and /dev/kvm opens:
on machines whose /dev/kvm comes from a paravirtual hypervisor module, stock guest kernels
abort or hang under KVM (docs/testing.md), and a hang cannot be told from slowness in time,
so the choice is made up front and never retried with the other accelerator.
"""

from __future__ import annotations

import enum
import os
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.system.harness.image import RUNNER_UNIT


class Accel(enum.Enum):
    KVM = "kvm"
    TCG = "tcg"


def cpu_flags(cpuinfo: str) -> frozenset[str]:
    """The flags of the first CPU in /proc/cpuinfo's text."""
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def choose_accel(cpuinfo: str, kvm_opens: bool, override: str | None = None
                 ) -> tuple[Accel, str]:
    """(accelerator, why). `override` ("kvm"/"tcg", from STRATA_VM_ACCEL) wins."""
    if override:
        try:
            return Accel(override), f"STRATA_VM_ACCEL={override}"
        except ValueError:
            raise ValueError(f"STRATA_VM_ACCEL={override!r}: expected 'kvm' or 'tcg'") from None
    flags = cpu_flags(cpuinfo)
    if not flags & {"vmx", "svm"}:
        return Accel.TCG, "the CPU shows no vmx/svm flag (a /dev/kvm here is not usable)"
    if not kvm_opens:
        return Accel.TCG, "/dev/kvm cannot be opened"
    return Accel.KVM, "hardware virtualisation (vmx/svm) and /dev/kvm"


def kvm_opens(path: str = "/dev/kvm") -> bool:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    os.close(fd)
    return True


@dataclass(frozen=True)
class Machine:
    """One VM: its disks, kernel and size."""

    kernel: Path
    root: Path  # raw, on NVMe (built into the cloud kernel: no initramfs needed)
    work: Path  # raw, on virtio-blk (a module, loaded from the root disk by the runner unit)
    console: Path  # the serial console, written by QEMU
    accel: Accel = Accel.TCG
    memory_mb: int = 1536
    cpus: int = 2
    qemu: str = "qemu-system-x86_64"


def kernel_cmdline() -> str:
    """Root on the one NVMe disk (several NVMe disks probe in random order: the work disk
    could become root), no initramfs, a panic powers off (with -no-reboot), and the runner
    unit pulled into the boot."""
    return (f"root=/dev/nvme0n1 rootwait rw console=ttyS0 quiet panic=1 "
            f"systemd.wants={RUNNER_UNIT}")


def qemu_argv(m: Machine) -> list[str]:
    accel = (["-accel", "kvm", "-cpu", "host"] if m.accel is Accel.KVM
             else ["-accel", "tcg,thread=multi", "-cpu", "max"])
    return [
        m.qemu, *accel, "-m", str(m.memory_mb), "-smp", str(m.cpus),
        "-display", "none", "-monitor", "none", "-nic", "none",
        # a guest reboot ends this QEMU; the harness boots the same disks again, so that a
        # panic (panic=1) never loops and every boot is timed on its own
        "-no-reboot",
        "-serial", f"file:{m.console}",
        "-kernel", str(m.kernel), "-append", kernel_cmdline(),
        # cache=unsafe: both disks are throw-away copies; the guest's flushes cost the busy
        # host nothing (the data still reaches the files when QEMU exits)
        "-drive", f"file={m.root},if=none,id=root,format=raw,cache=unsafe",
        "-device", "nvme,serial=strata-root,drive=root",
        "-drive", f"file={m.work},if=virtio,format=raw,cache=unsafe",
    ]


@dataclass(frozen=True)
class BootOutcome:
    returncode: int | None  # None: killed at the timeout
    seconds: float
    timed_out: bool


def _follow(path: Path, stop: threading.Event, on_line: Callable[[str], None]) -> None:
    """Hand each complete line QEMU writes to the console file to `on_line`, until `stop`
    is set and the file is drained."""
    pos = 0
    pending = b""
    while True:
        stopping = stop.is_set()
        try:
            with path.open("rb") as f:
                f.seek(pos)
                chunk = f.read()
        except FileNotFoundError:
            chunk = b""
        pos += len(chunk)
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            on_line(line.decode(errors="replace").rstrip("\r"))
        if stopping:
            if pending:
                on_line(pending.decode(errors="replace"))
            return
        stop.wait(0.5)


def boot(m: Machine, timeout: float, on_console: Callable[[str], None], log_file: Path
         ) -> BootOutcome:
    """Run the VM until it powers off (or reboots: -no-reboot ends QEMU then) or `timeout`
    seconds pass; then SIGKILL exactly the QEMU process started here. QEMU's own exit status
    says nothing about the guest (poweroff and panic both give 0): the caller reads what the
    guest wrote to the work disk."""
    m.console.unlink(missing_ok=True)
    stop = threading.Event()
    follower = threading.Thread(target=_follow, args=(m.console, stop, on_console),
                                daemon=True)
    started = time.monotonic()
    with log_file.open("ab") as log:
        proc = subprocess.Popen(qemu_argv(m), stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT)
        follower.start()
        timed_out = False
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            if proc.poll() is None:  # timeout, or the harness itself is interrupted
                proc.kill()
                proc.wait()
            stop.set()
            follower.join(timeout=10)
    return BootOutcome(None if timed_out else proc.returncode, time.monotonic() - started,
                       timed_out)
