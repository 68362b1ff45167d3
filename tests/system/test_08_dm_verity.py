"""Scenario 8: signed verity images through the kernel's dm-verity (the path the host cannot
take: it has no device-mapper). `strata build` makes a signed DDI in the guest; with the
signer's certificate in /etc/verity.d, `strata sysext merge` opens the data partition as a
dm-verity device and merges it. A byte changed in the image is refused up front by
`--verify=userspace`, and under dm-verity the kernel refuses to read the changed block (EIO).
An image signed by a key nobody trusts is refused, and the merge that was there stays."""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.system.guestlib import BUILD_DIR, is_merged, os_release, sh, strata, wait_for

pytestmark = pytest.mark.system

EXT_DIR = Path("/var/lib/extensions")
TRUSTED = Path("/etc/verity.d/strata-system-test.crt")
WORK = BUILD_DIR / "verity"
POLICY = "--image-policy=root=signed+absent:usr=absent"
#: a file whose blocks are stored as they are (no compression), so that a byte of it can be
#: found in the image and changed
DATA = Path("/usr/share/vapp/data")
MARKER = b"strata-verity-block-"
CONTENT = MARKER * 8192  # 160 KiB: many whole blocks

SPEC = """\
name: {name}
version: "1.0"
compatibility:
  id: {id}
  version_id: "{version_id}"
  architecture: x86-64
sources:
  - tree: tree
output:
  format: ddi
  filesystem: erofs
  compression: none
  verity: signed
  key: {key}
  certificate: {cert}
"""


def make_keys(cn: str) -> tuple[Path, Path]:
    d = WORK / "keys"
    d.mkdir(parents=True, exist_ok=True)
    key, cert = d / f"{cn}.key", d / f"{cn}.crt"
    sh("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
       "-out", str(cert), "-days", "30", "-subj", f"/CN={cn}")
    return key, cert


def build_signed(name: str, keys: tuple[Path, Path]) -> Path:
    """NAME-1.0-x86-64.raw: a signed DDI made by `strata build`, installed in
    /var/lib/extensions as NAME.raw."""
    base = WORK / name
    tree = base / "tree"
    shutil.rmtree(base, ignore_errors=True)
    (tree / "usr/share" / name).mkdir(parents=True)
    (tree / "usr/share" / name / "data").write_bytes(CONTENT)
    (tree / "usr/share" / name / "hello").write_text(f"{name} from a signed image\n")
    host = os_release()
    spec = base / f"{name}.yaml"
    spec.write_text(SPEC.format(name=name, id=host["ID"], version_id=host["VERSION_ID"],
                                key=keys[0], cert=keys[1]))
    out = json.loads(strata("build", str(spec), "-o", str(base / "out"),
                            "--json=short").stdout)
    (built,) = out["outputs"]
    assert built["format"] == "ddi"
    EXT_DIR.mkdir(parents=True, exist_ok=True)
    target = EXT_DIR / f"{name}.raw"
    shutil.copyfile(built["path"], target)
    return target


def trust(cn: str) -> None:
    """Put the certificate of key `cn` where systemd (and Strata) look: /etc/verity.d."""
    TRUSTED.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(WORK / "keys" / f"{cn}.crt", TRUSTED)


def verity_devices() -> dict[str, Path]:
    """The device-mapper devices Strata opened: name -> /sys/block/dm-N."""
    found = {}
    for dev in Path("/sys/block").glob("dm-*"):
        try:
            name = (dev / "dm/name").read_text().strip()
        except OSError:  # EINVAL/ENOENT: being deleted (the deferred remove at work)
            continue
        if name.startswith("strata-"):
            found[name] = dev
    return found


def users(dev: Path) -> list[str]:
    """Who keeps a block device busy: processes with it mounted in their mount namespace or
    open as a file (for the message of a failed test)."""
    numbers = (dev / "dev").read_text().strip()
    node = f"/dev/{dev.name}"
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            comm = (proc / "comm").read_text().strip()
            if f" {numbers} " in (proc / "mountinfo").read_text():
                found.append(f"{proc.name} ({comm}): mounted in its namespace")
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd) == node:
                    found.append(f"{proc.name} ({comm}): fd {fd.name}")
            found += [f"{proc.name} ({comm}): maps {p}" for p in stale_maps(proc)]
        except OSError:
            continue
    return found


def stale_maps(proc: Path) -> set[str]:
    """Files of /usr a process has mapped from a file system that is no longer there: a
    detached overlay stays alive (and with it the devices below) while they are mapped."""
    stale = set()
    for line in (proc / "maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) < 6 or not fields[5].startswith(("/usr/", "/opt/")):
            continue
        major, minor = (int(x, 16) for x in fields[3].split(":"))
        try:
            now = os.stat(fields[5]).st_dev
        except OSError:
            now = None
        if now != os.makedev(major, minor):
            stale.add(fields[5])
    return stale


def no_verity_devices() -> None:
    """Wait for the deferred removes of the unmerged devices to finish."""
    try:
        wait_for("the dm-verity devices to go away", verity_devices, lambda d: d == {},
                 timeout=30)
    except AssertionError as e:
        left = {name: users(dev) for name, dev in verity_devices().items()}
        raise AssertionError(f"{e}; held by: {left}") from None


def backing_files(dev: Path) -> set[str]:
    """The files behind the loop devices a dm device sits on."""
    return {(Path("/sys/block") / s.name / "loop/backing_file").read_text().strip()
            for s in (dev / "slaves").iterdir()}


def tamper(image: Path) -> None:
    """Change one byte in the middle of DATA's blocks in `image`."""
    blob = bytearray(image.read_bytes())
    first = blob.find(MARKER * 4)
    assert first >= 0, f"{MARKER!r} not found in {image}"
    at = first + len(CONTENT) // 2
    assert blob[first:at + 1].count(MARKER) == (at - first) // len(MARKER), \
        "the file's blocks are not contiguous in the image"
    blob[at] ^= 0xFF
    image.write_bytes(bytes(blob))
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


@pytest.fixture
def verity(clean_device: None) -> Iterator[None]:
    def cleanup() -> None:
        if is_merged("/usr"):
            strata("sysext", "unmerge")
        for p in EXT_DIR.glob("v*.raw"):
            p.unlink()
        TRUSTED.unlink(missing_ok=True)
        shutil.rmtree(WORK, ignore_errors=True)

    cleanup()
    sh("modprobe", "dm_verity")
    yield
    cleanup()
    no_verity_devices()


def test_signed_image_merges_through_dm_verity(verity: None) -> None:
    assert Path("/dev/mapper/control").exists()
    image = build_signed("vapp", make_keys("trusted"))
    trust("trusted")

    strata("sysext", "merge", POLICY)  # --verify=auto: dm-verity, since the kernel has it
    assert Path("/usr/share/vapp/hello").read_text() == "vapp from a signed image\n"
    assert DATA.read_bytes() == CONTENT

    # The data came through a dm-verity device over a loop device of the image.
    (name, dev), = verity_devices().items()
    status = sh("veritysetup", "status", name).stdout
    assert "type:        VERITY" in status and "status:      verified" in status, status
    assert backing_files(dev) == {str(image)}
    # A process systemd starts sees it too.
    out = sh("systemd-run", "--wait", "--pipe", "--quiet", "cat",
             "/usr/share/vapp/hello").stdout
    assert out == "vapp from a signed image\n"

    # The device goes with the merge (deferred close).
    strata("sysext", "unmerge")
    assert not is_merged("/usr")
    no_verity_devices()


def test_changed_byte_is_refused_in_userspace_and_unreadable_under_dm_verity(
        verity: None) -> None:
    image = build_signed("vapp", make_keys("trusted"))
    trust("trusted")
    tamper(image)

    # --verify=userspace hashes every block first: refused, nothing merged.
    res = strata("sysext", "merge", POLICY, "--verify=userspace", check=False)
    assert res.returncode != 0
    assert f"{image}: " in res.stderr and "does not match its verity root hash" in res.stderr
    assert not is_merged("/usr") and verity_devices() == {}

    # dm-verity checks each block as it is read: the merge succeeds (as with systemd), the
    # untouched file reads, and the changed block is an I/O error, not changed data.
    strata("sysext", "merge", POLICY)
    assert Path("/usr/share/vapp/hello").read_text() == "vapp from a signed image\n"
    with pytest.raises(OSError) as caught:
        DATA.read_bytes()
    assert caught.value.errno == errno.EIO
    kernel = sh("journalctl", "-k", "-b", "--no-pager", "-g", "verity").stdout
    assert "is corrupted" in kernel, kernel


def test_untrusted_signature_is_refused_and_the_merge_kept(verity: None) -> None:
    build_signed("vapp", make_keys("trusted"))
    trust("trusted")
    strata("sysext", "merge", POLICY)
    assert Path("/usr/share/vapp/hello").exists()

    # Signed by a key that neither /etc/verity.d nor the kernel's keyring trusts.
    other = build_signed("vother", make_keys("stranger"))
    res = strata("sysext", "refresh", POLICY, check=False)
    assert res.returncode != 0
    last = res.stderr.strip().splitlines()[-1]
    assert str(other) in last, res.stderr
    # The previous merge is still there, unchanged.
    assert is_merged("/usr")
    assert Path("/usr/share/vapp/hello").read_text() == "vapp from a signed image\n"
    assert not Path("/usr/share/vother").exists()
    assert len(verity_devices()) == 1

    # After the unmerge the old devices stay busy until systemd-udevd handles its next uevent:
    # the refresh's uevents came while /usr was merged, and udevd re-read its kernel-module
    # index through the merged /usr then (it sees the files change), so its mappings hold the
    # old overlay; the next uevent makes it re-read them from the real /usr and let go.
    # (udevd checks for changed files at most every 3 s: uevents are sent until it has.)
    strata("sysext", "unmerge")
    assert not is_merged("/usr")

    def after_a_uevent() -> dict[str, Path]:
        sh("udevadm", "trigger", "--settle", "--action=change", "/sys/devices/virtual/mem/null")
        return verity_devices()

    wait_for("the old devices to go after a uevent", after_a_uevent, lambda d: d == {},
             timeout=60, interval=3.5)
