"""The VM image: a minimal Debian with systemd, Python and Strata's dependencies, built once
and cached outside the checkout.

Built without loop devices or mounts (see docs/testing.md): debootstrap into a directory,
configure it in a chroot, install the Python dependencies into a venv from wheels the host's
pip downloaded for the guest's Python (the guest never needs a network), then
`mkfs.ext4 -d` turns the tree into a raw disk image. The kernel is copied out beside it, since
QEMU boots it directly (no boot loader, no initramfs: root on NVMe, where the Debian cloud
kernel has its drivers built in).

The cache key is a hash of everything that shapes the image (the recipe below, the dependency
list from pyproject.toml and the files written into the tree), so a change to any of them
rebuilds it, and an unchanged recipe reuses it. Strata itself is not in the image: each run
installs the freshly built wheel (see guest/boot.sh), so the image survives code changes.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: bump when the way the image is made changes in a way the key cannot see
RECIPE_VERSION = 3

#: where the guest's Python environment lives; in /usr (not /opt, a sysext hierarchy of its
#: own) like a distribution's package would be; `strata` is linked into /usr/local/bin, on the
#: PATH systemd uses for the units' `ExecStart=strata ...`
GUEST_VENV = "/usr/lib/strata-venv"
GUEST_STRATA = "/usr/local/bin/strata"
#: the file that tells the scenarios they run in a throw-away VM (they change /usr and /etc)
GUEST_MARKER = "/etc/strata-system-test-vm"
WORK_LABEL = "strata-work"
ROOT_LABEL = "strata-root"
RUNNER_UNIT = "strata-system-test.service"

#: test tools the scenarios need inside the guest, taken from the project's [test] extra
GUEST_TEST_TOOLS = ("pytest", "varlink")

DEFAULT_PACKAGES = (
    "systemd", "systemd-sysv", "udev", "dbus", "kmod", "linux-image-cloud-amd64",
    "python3", "python3-venv", "erofs-utils", "squashfs-tools", "procps",
    # signed verity images: built (openssl) and opened through dm-verity (veritysetup)
    "cryptsetup-bin", "openssl", "dmsetup",
)

#: The one unit baked into the image: mount the work disk and run the runner from it. The
#: runner decides whether to power off or reboot (a clean shutdown either way); a failure of
#: this unit powers off at once so that a broken run never idles until the host's timeout.
RUNNER_UNIT_TEXT = f"""\
[Unit]
Description=Strata system tests: run boot.sh from the work disk
After=multi-user.target
FailureAction=poweroff-force

[Service]
# exec, not oneshot: the boot finishes while the tests run
Type=exec
TimeoutStartSec=infinity
RuntimeMaxSec=45min
StandardOutput=journal+console
StandardError=inherit
# the work disk is on virtio (a module); mounting by label needs no udev (libblkid scans)
ExecStartPre=/usr/sbin/modprobe virtio_blk
ExecStartPre=/bin/mount LABEL={WORK_LABEL} /mnt/work
ExecStart=/bin/bash /mnt/work/boot.sh
"""

JOURNALD_CONF = """\
[Journal]
# kept on the root disk, so that the host can read it after a hang or a crash
Storage=persistent
SyncIntervalSec=5s
"""


@dataclass(frozen=True)
class Recipe:
    """Everything the image is made from."""

    suite: str = "trixie"
    packages: tuple[str, ...] = DEFAULT_PACKAGES
    requirements: tuple[str, ...] = ()
    mirror: str = "http://deb.debian.org/debian"  # not part of the key: same packages
    size: str = "3G"

    def files(self) -> dict[str, tuple[str, int]]:
        """path in the guest -> (content, mode): what the build writes into the tree."""
        return {
            "/etc/hostname": ("strata-vm\n", 0o644),
            "/etc/hosts": ("127.0.0.1 localhost\n127.0.1.1 strata-vm\n", 0o644),
            "/etc/fstab": (f"LABEL={ROOT_LABEL} / ext4 rw 0 1\n", 0o644),
            f"/etc/systemd/system/{RUNNER_UNIT}": (RUNNER_UNIT_TEXT, 0o644),
            "/etc/systemd/journald.conf.d/50-strata-system-test.conf": (JOURNALD_CONF, 0o644),
            GUEST_MARKER: ("This VM exists to run Strata's system tests (tests/system).\n",
                           0o644),
        }

    def key(self) -> str:
        """A short hash of what shapes the image."""
        doc = {"recipe": RECIPE_VERSION, "suite": self.suite, "packages": self.packages,
               "requirements": self.requirements, "size": self.size,
               "files": sorted(self.files().items()), "venv": GUEST_VENV}
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def requirements_from(pyproject: Path) -> tuple[str, ...]:
    """The project's runtime dependencies plus the test tools the guest needs, as written in
    pyproject.toml (so the image follows the project's pins)."""
    with pyproject.open("rb") as f:
        doc = tomllib.load(f)
    project = doc["project"]
    test = project.get("optional-dependencies", {}).get("test", [])
    tools = [r for r in test if _requirement_name(r) in GUEST_TEST_TOOLS]
    return (*project.get("dependencies", []), *tools)


def _requirement_name(requirement: str) -> str:
    name = requirement
    for sep in "<>=!~[; ":
        name = name.split(sep, 1)[0]
    return name.strip().lower()


@dataclass(frozen=True)
class Image:
    """A built image: the root disk and the kernel to boot it with."""

    directory: Path
    root: Path = field(init=False)
    kernel: Path = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", self.directory / "root.img")
        object.__setattr__(self, "kernel", self.directory / "vmlinuz")

    def complete(self) -> bool:
        return (self.directory / "done").exists() and self.root.exists() \
            and self.kernel.exists()


Log = Callable[[str], None]


#: the environment of commands run in the chroot: nothing of the host's (its PIP_* settings
#: name host paths)
CHROOT_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8", "HOME": "/root",
              "PIP_CONFIG_FILE": "/dev/null", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def _run(argv: Sequence[str], log_file: Path, *, timeout: float = 1800,
         env: Mapping[str, str] | None = None) -> None:
    """Run a build step, its output appended to the build log; a failure names the step and
    shows the end of its output."""
    with log_file.open("ab") as out:
        out.write(f"\n$ {' '.join(argv)}\n".encode())
        out.flush()
        proc = subprocess.run(list(argv), stdout=out, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, timeout=timeout,
                              env=None if env is None else dict(env), check=False)
    if proc.returncode != 0:
        tail = log_file.read_text(errors="replace").splitlines()[-25:]
        raise RuntimeError(f"image build step failed (exit {proc.returncode}): "
                           f"{' '.join(argv)}\n" + "\n".join(tail))


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One build at a time per cache directory (another run waits, then reuses it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ensure_image(recipe: Recipe, cache: Path, log: Log) -> tuple[Image, float | None]:
    """The cached image for `recipe`, built first if needed. Returns it and the build time
    (None when it was cached). Older images in the cache are removed after a build."""
    image = Image(cache / f"image-{recipe.key()}")
    with _locked(cache / "lock"):
        if image.complete():
            log(f"VM image: cached {image.directory}")
            return image, None
        started = time.monotonic()
        log(f"VM image: building {image.directory} (debootstrap {recipe.suite}; "
            "a few minutes, once)")
        _build(recipe, image, log)
        for old in cache.glob("image-*"):
            if old != image.directory:
                shutil.rmtree(old, ignore_errors=True)
        took = time.monotonic() - started
        log(f"VM image: built in {took:.0f} s")
        return image, took


def _build(recipe: Recipe, image: Image, log: Log) -> None:
    work = image.directory.with_name(image.directory.name + ".build")
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(image.directory, ignore_errors=True)
    work.mkdir(parents=True)
    build_log = work / "build.log"
    root = work / "root"
    log(f"VM image: debootstrap (log: {build_log})")
    _run(["debootstrap", "--variant=minbase", "--include=" + ",".join(recipe.packages),
          recipe.suite, str(root), recipe.mirror], build_log)
    _configure(recipe, root, build_log)
    log("VM image: Python dependencies")
    _install_requirements(recipe, root, work, build_log)
    log("VM image: mkfs.ext4")
    image.directory.mkdir(parents=True)
    kernels = sorted((root / "boot").glob("vmlinuz-*"))
    if not kernels:
        raise RuntimeError(f"no kernel in {root}/boot after debootstrap")
    shutil.copyfile(kernels[-1], image.kernel)
    _run(["mkfs.ext4", "-q", "-F", "-L", ROOT_LABEL, "-d", str(root), str(image.root),
          recipe.size], build_log)
    (image.directory / "recipe.json").write_text(json.dumps(
        {"key": recipe.key(), "suite": recipe.suite, "packages": recipe.packages,
         "requirements": recipe.requirements, "kernel": kernels[-1].name}, indent=2) + "\n")
    shutil.copyfile(build_log, image.directory / "build.log")
    (image.directory / "done").write_text("")
    shutil.rmtree(work, ignore_errors=True)


def _configure(recipe: Recipe, root: Path, build_log: Path) -> None:
    for path, (content, mode) in recipe.files().items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
        target.chmod(mode)
    for d in ("mnt/work", "var/log/journal"):
        (root / d).mkdir(parents=True, exist_ok=True)

    def chroot(*argv: str) -> None:
        _run(["chroot", str(root), *argv], build_log, env=CHROOT_ENV)

    chroot("passwd", "-d", "root")  # console login, for debugging by hand
    # No timers (apt-daily, man-db, ...) firing in the middle of a scenario.
    for timer in (root / "etc/systemd/system/timers.target.wants").glob("*"):
        timer.unlink()
    # What the first boot would otherwise do (ConditionNeedsUpdate= jobs), done now.
    chroot("ldconfig")
    chroot("journalctl", "--update-catalog")
    chroot("systemd-sysusers")
    if (root / "usr/lib/systemd/systemd-update-done").exists():
        chroot("/usr/lib/systemd/systemd-update-done")
    # The serial console carries the runner's output; nobody logs in.
    chroot("systemctl", "mask", "getty@tty1.service", "serial-getty@ttyS0.service")
    chroot("apt-get", "clean")
    shutil.rmtree(root / "var/lib/apt/lists", ignore_errors=True)
    (root / "var/lib/apt/lists/partial").mkdir(parents=True, exist_ok=True)


def _install_requirements(recipe: Recipe, root: Path, work: Path, build_log: Path) -> None:
    """A venv in the guest (its own Python), filled from wheels that the host's pip fetched
    for that Python: the guest itself never needs a network or a compiler."""
    version = subprocess.run(
        ["chroot", str(root), "python3", "-c",
         "import sys; print(f'{sys.version_info[0]}{sys.version_info[1]}')"],
        capture_output=True, text=True, check=True, env=CHROOT_ENV).stdout.strip()
    wheels = work / "wheels"
    _run([sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:",
          "--python-version", version, "--implementation", "cp",
          "--abi", f"cp{version}", "--abi", "abi3", "--abi", "none",
          "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64",
          "--platform", "manylinux2014_x86_64", "--platform", "any",
          "-d", str(wheels), *recipe.requirements], build_log)
    inside = root / "tmp/wheels"
    shutil.copytree(wheels, inside)
    _run(["chroot", str(root), "python3", "-m", "venv", GUEST_VENV], build_log, env=CHROOT_ENV)
    _run(["chroot", str(root), f"{GUEST_VENV}/bin/pip", "install", "-q", "--no-index",
          "--find-links", "/tmp/wheels", *recipe.requirements], build_log, env=CHROOT_ENV)
    shutil.rmtree(inside)
    link = root / GUEST_STRATA.lstrip("/")
    link.parent.mkdir(parents=True, exist_ok=True)
    link.unlink(missing_ok=True)
    link.symlink_to(f"{GUEST_VENV}/bin/strata")  # dangling until a run installs the wheel
