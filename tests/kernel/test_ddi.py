"""Signed disk images end to end: `strata build` with `format: ddi` (a throwaway key and
certificate made with openssl here), read back by Strata and by systemd-dissect 252 (and 257
with STRATA_DIFF_257=1), reproducibility, and merging them under image policies with
`--verify=userspace` in a private namespace: accepted when signed by a trusted certificate,
refused when unsigned, tampered with, or signed by someone else, with nothing mounted."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from strata.images import probe
from strata.images.gpt import PartitionRole
from strata.images.verity import dm_available, read_verity, verify_signature
from tests.helpers import (
    PEERS,
    PEERS_WORK,
    isolated,
    make_root,
    mounts_under,
    strata,
    write_tree,
)
from tests.unit.test_verity_policy import ORACLE_257

TOOLS = ("mkfs.erofs", "mksquashfs", "veritysetup", "openssl")
POLICY = "--image-policy=root=signed+absent:usr=absent"
DM_MESSAGE = "dm-verity is not available (/dev/mapper/control missing); use --verify=userspace"


@pytest.fixture(autouse=True)
def _tools() -> None:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if not missing:
        return
    if os.environ.get("STRATA_REQUIRE_PRIVILEGED") == "1":
        pytest.fail(f"{', '.join(missing)} not installed")
    pytest.skip(f"{', '.join(missing)} not installed (apt-get install cryptsetup-bin openssl)")


def make_keys(base: Path, cn: str) -> tuple[Path, Path]:
    base.mkdir(parents=True, exist_ok=True)
    key, cert = base / f"{cn}.key", base / f"{cn}.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(key), "-out", str(cert), "-days", "3650", "-subj", f"/CN={cn}"],
                   capture_output=True, check=True)
    return key, cert


SPEC = """\
name: app
version: "1.0"
compatibility:
  architecture: x86-64
sources:
  - tree: tree
output:
  format: ddi
  filesystem: {fs}
  verity: {verity}
{keys}"""


def build_ddi(base: Path, verity: str = "signed", fs: str = "erofs", *,
              keys: tuple[Path, Path] | None = None, out: str = "out") -> tuple[Path, str]:
    """Build app-1.0-x86-64.raw with `strata build`; the image and the build's stderr."""
    tree = base / "tree"
    if not tree.exists():
        write_tree(tree, {"usr/bin/app": "#!/bin/sh\necho signed app\n",
                          "usr/share/app/data": "x" * 100_000})
        os.chmod(tree / "usr/bin/app", 0o755)
    key_lines = ""
    if verity == "signed":
        key, cert = keys or make_keys(base / "keys", "builder")
        key_lines = f"  key: {key}\n  certificate: {cert}\n"
    spec = base / "app.yaml"
    spec.write_text(SPEC.format(fs=fs, verity=verity, keys=key_lines))
    r = strata("build", str(spec), "-o", str(base / out), "--json=short")
    assert r.returncode == 0, r.stderr
    (output,) = json.loads(r.stdout)["outputs"]
    assert output["format"] == "ddi"
    image = Path(output["path"])
    assert output["sha256"] == hashlib.sha256(image.read_bytes()).hexdigest()
    return image, r.stderr


def root_hash_from_log(stderr: str) -> str | None:
    for line in stderr.splitlines():
        if line.startswith("Root hash of the sysext image: "):
            return line.rsplit(" ", 1)[1]
    return None


# --------------------------------------------------------------------------------------------
# Building


@pytest.mark.parametrize("verity", ["signed", "hash", "none"])
@pytest.mark.parametrize("fs", ["erofs", "squashfs"])
def test_build_and_read_back(tmp_path: Path, verity: str, fs: str) -> None:
    image, log = build_ddi(tmp_path, verity, fs)
    layout = probe(str(image), arch="x86-64")
    assert layout.fs_format.value == fs and layout.partition is not None
    roles = [p.role for p in layout.partitions]
    want = [PartitionRole.ROOT, PartitionRole.ROOT_VERITY, PartitionRole.ROOT_VERITY_SIG]
    assert roles == want[:{"signed": 3, "hash": 2, "none": 1}[verity]]
    found = read_verity(layout)
    if verity == "none":
        assert found == () and root_hash_from_log(log) is None
        return
    (v,) = found
    assert v.root_hash_hex == root_hash_from_log(log)
    # the data and hash partition UUIDs are the two halves of the root hash (repart's rule)
    assert v.data.uuid.hex + v.hash.uuid.hex == v.root_hash_hex
    # the hash tree checks out with veritysetup, the data partition read from a copy
    data = tmp_path / "data.img"
    with open(image, "rb") as f:
        f.seek(v.data.offset)
        data.write_bytes(f.read(v.superblock.data_size))
    ok = subprocess.run(["veritysetup", "verify", f"--hash-offset={v.hash.offset}", str(data),
                         str(image), v.root_hash_hex], capture_output=True, text=True,
                        check=False)
    assert ok.returncode == 0, ok.stderr
    if verity == "signed":
        assert v.signature is not None
        cert = tmp_path / "keys/builder.crt"
        der = subprocess.run(["openssl", "x509", "-in", str(cert), "-outform", "DER"],
                             capture_output=True, check=True).stdout
        assert v.signature.certificate_fingerprint == hashlib.sha256(der).hexdigest()
        assert verify_signature(v.signature, [str(cert)]) is None


@pytest.mark.parametrize("verity", ["signed", "hash", "none"])
def test_reproducible(tmp_path: Path, verity: str) -> None:
    keys = make_keys(tmp_path / "keys", "builder") if verity == "signed" else None
    first, _ = build_ddi(tmp_path, verity, keys=keys, out="one")
    time.sleep(1.1)
    for p in (tmp_path / "tree").rglob("*"):
        os.utime(p)  # new mtimes, another output directory: the same bytes
    second, _ = build_ddi(tmp_path, verity, keys=keys, out="two")
    assert first.read_bytes() == second.read_bytes()


def test_bad_keys_are_refused_before_building(tmp_path: Path) -> None:
    (tmp_path / "tree").mkdir()
    (tmp_path / "app.yaml").write_text(SPEC.format(
        fs="erofs", verity="signed", keys="  key: nowhere.key\n  certificate: nowhere.crt\n"))
    r = strata("build", str(tmp_path / "app.yaml"), "-o", str(tmp_path / "out"))
    assert r.returncode == 1 and "output.key:" in r.stderr and "No such file" in r.stderr
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------------------
# systemd-dissect reads them


def dissect_fields(data: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [(m["designator"], m["partition_uuid"], m["partition_label"], m["fstype"],
             m["architecture"], m["verity"], m["rw"], m["growfs"]) for m in data["mounts"]]


def expected_fields(image: Path, verity: str, fs: str) -> list[tuple[Any, ...]]:
    layout = probe(str(image), arch="x86-64")
    kinds = {PartitionRole.ROOT: (fs, {"signed": "signed", "hash": "no", "none": "no"}[verity]),
             PartitionRole.ROOT_VERITY: ("DM_verity_hash", None),
             PartitionRole.ROOT_VERITY_SIG: ("verity_hash_signature", None)}
    return [(p.role.value, str(p.uuid), p.label, kinds[p.role][0], "x86-64", kinds[p.role][1],
             "ro", False) for p in layout.partitions]


@pytest.mark.privileged
@pytest.mark.parametrize("verity", ["signed", "hash", "none"])
@pytest.mark.parametrize("fs", ["erofs", "squashfs"])
@isolated
def test_systemd_dissect_252(tmp_path: Path, verity: str, fs: str) -> None:
    if shutil.which("systemd-dissect") is None:
        if os.environ.get("STRATA_REQUIRE_PRIVILEGED") == "1":
            pytest.fail("systemd-dissect is not installed (apt-get install systemd-container)")
        pytest.skip("systemd-dissect is not installed (apt-get install systemd-container)")
    image, log = build_ddi(tmp_path, verity, fs)
    r = subprocess.run(["systemd-dissect", "--json=short", str(image)], capture_output=True,
                       text=True, check=False)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert dissect_fields(data) == expected_fields(image, verity, fs)
    if verity != "none":
        # systemd reads the root hash from the partition UUIDs: the same as ours
        (root, hashp) = data["mounts"][:2]
        assert (root["partition_uuid"] + hashp["partition_uuid"]).replace("-", "") == \
            root_hash_from_log(log)
    assert data["useSystemExtension"] is True
    assert "SYSEXT_VERSION_ID=1.0" in data["extensionRelease"]


def peers_dissect(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PEERS, "chroot", "systemd-dissect", *args], capture_output=True,
                          text=True, check=False)


@pytest.mark.peers257
@pytest.mark.parametrize("verity", ["signed", "hash", "none"])
def test_systemd_dissect_257(tmp_path: Path, verity: str) -> None:
    """systemd-dissect 257 (../shared's trixie chroot, with systemd-container installed)
    reads the same partitions, and decides every policy of the recorded table as Strata
    does."""
    from strata.discover import Extension
    from strata.engine.inspect import read_candidate
    from strata.engine.plan import dissect
    from strata.model import ExtClass, ImageType
    from strata.policy import parse

    image, log = build_ddi(tmp_path, verity)
    shared_dir = Path(PEERS_WORK) / f"strata-ddi-{os.getpid()}-{verity}"
    shared_dir.mkdir(parents=True, exist_ok=True)
    shared = shared_dir / image.name  # the image name must match its release file
    shutil.copy(image, shared)
    try:
        r = peers_dissect("--json=short", str(shared))
        assert r.returncode == 0, r.stderr
        data = json.loads(r.stdout)
        assert dissect_fields(data) == expected_fields(image, verity, "erofs")
        assert data["useSystemExtension"] is True
        if verity != "none":
            (root, hashp) = data["mounts"][:2]
            assert (root["partition_uuid"] + hashp["partition_uuid"]).replace("-", "") == \
                root_hash_from_log(log)
        ext = Extension(name="app", path=str(image), type=ImageType.RAW,
                        ext_class=ExtClass.SYSEXT, read_only=True, mtime_us=0, crtime_us=0,
                        search_dir="/var/lib/extensions")
        c = read_candidate(ext, ExtClass.SYSEXT, ("/usr", "/opt"))
        for kind, text, _recorded in ORACLE_257:
            if kind != verity:
                continue
            v = peers_dissect("--validate", f"--image-policy={text}", str(shared))
            ours, _uses = dissect(c, parse(text))
            assert (v.returncode == 0) == (ours is None), (text, v.stderr, ours)
    finally:
        shutil.rmtree(shared_dir)


# --------------------------------------------------------------------------------------------
# Merging under a policy


def install(root: Path, image: Path, name: str = "app.raw") -> Path:
    dest = root / "var/lib/extensions" / name
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(image, dest)
    return dest


def trust(root: Path, cert: Path, name: str = "builder.crt") -> None:
    (root / "etc/verity.d").mkdir(parents=True, exist_ok=True)
    shutil.copy(cert, root / "etc/verity.d" / name)


def flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0xFF]))


@pytest.mark.privileged
@pytest.mark.parametrize("fs", ["erofs", "squashfs"])
@isolated
def test_signed_image_merges_with_userspace_verification(tmp_path: Path, fs: str) -> None:
    image, _ = build_ddi(tmp_path, "signed", fs)
    root = make_root(tmp_path)
    install(root, image)
    trust(root, tmp_path / "keys/builder.crt")
    r = strata("sysext", "merge", f"--root={root}", POLICY, "--verify=userspace")
    assert r.returncode == 0, r.stderr
    run = subprocess.run([str(root / "usr/bin/app")], capture_output=True, text=True,
                         check=True)
    assert run.stdout == "signed app\n"
    assert (root / "usr/bin/host-tool").read_text() == "host\n"
    assert strata("sysext", "unmerge", f"--root={root}").returncode == 0
    assert mounts_under(root) == []


@pytest.mark.privileged
@pytest.mark.parametrize(("verity", "found"), [("hash", "verity"), ("none", "unprotected")])
@isolated
def test_unsigned_images_are_refused_by_a_signed_policy(tmp_path: Path, verity: str,
                                                        found: str) -> None:
    image, _ = build_ddi(tmp_path, verity)
    root = make_root(tmp_path)
    path = install(root, image)
    r = strata("sysext", "merge", f"--root={root}", POLICY, "--verify=userspace")
    assert r.returncode == 1
    assert (f"{path}: Image does not match image policy: Partition root discovered with "
            f"policy '{found}' but 'signed+absent' was required, refusing.") in r.stderr
    assert mounts_under(root) == []
    # a policy that allows them merges them
    r = strata("sysext", "merge", f"--root={root}", "--verify=userspace",
               f"--image-policy=root={found}+absent:usr=absent")
    assert r.returncode == 0, r.stderr
    assert (root / "usr/bin/app").exists()


@pytest.mark.privileged
@pytest.mark.parametrize("where", ["data", "hash"])
@isolated
def test_tampered_image_is_refused(tmp_path: Path, where: str) -> None:
    image, _ = build_ddi(tmp_path, "signed")
    root = make_root(tmp_path)
    path = install(root, image)
    trust(root, tmp_path / "keys/builder.crt")
    (v,) = read_verity(probe(str(path), arch="x86-64"))
    # a byte in the middle of the file system, or of the hash tree (past its superblock)
    flip(path, v.data.offset + v.superblock.data_size // 2 if where == "data"
         else v.hash.offset + 4096 + 7)
    r = strata("sysext", "merge", f"--root={root}", POLICY, "--verify=userspace")
    assert r.returncode == 1
    assert f"{path}: partition 1 (root-x86-64) does not match its verity root hash " \
        f"{v.root_hash_hex}" in r.stderr
    assert "not mounting it" in r.stderr
    assert mounts_under(root) == []
    assert not (root / "usr/bin/app").exists()


@pytest.mark.privileged
@isolated
def test_hash_only_image_checked_against_its_partition_uuids(tmp_path: Path) -> None:
    image, _ = build_ddi(tmp_path, "hash")
    root = make_root(tmp_path)
    path = install(root, image)
    policy = "--image-policy=root=verity+absent:usr=absent"
    r = strata("sysext", "merge", f"--root={root}", policy, "--verify=userspace")
    assert r.returncode == 0, r.stderr
    assert strata("sysext", "unmerge", f"--root={root}").returncode == 0
    (v,) = read_verity(probe(str(path), arch="x86-64"))
    flip(path, v.data.offset + 100)
    r = strata("sysext", "merge", f"--root={root}", policy, "--verify=userspace")
    assert r.returncode == 1 and "does not match its verity root hash" in r.stderr
    assert mounts_under(root) == []


@pytest.mark.privileged
@isolated
def test_unknown_certificate_is_refused(tmp_path: Path) -> None:
    image, _ = build_ddi(tmp_path, "signed")
    root = make_root(tmp_path)
    path = install(root, image)
    r = strata("sysext", "merge", f"--root={root}", POLICY, "--verify=userspace")
    assert r.returncode == 1
    assert f"{path}: no trusted certificate (*.crt) in /etc/verity.d" in r.stderr
    assert mounts_under(root) == []
    _key, other = make_keys(tmp_path / "other", "someone-else")
    trust(root, other, "someone-else.crt")
    r = strata("sysext", "merge", f"--root={root}", POLICY, "--verify=userspace")
    assert r.returncode == 1
    assert f"{path}: its signature does not verify with any trusted certificate " \
        f"({root}/etc/verity.d/someone-else.crt): signer certificate not found" in r.stderr
    assert mounts_under(root) == []
    # a forged signature partition: another root hash under the same signature
    trust(root, tmp_path / "keys/builder.crt")
    layout = probe(str(path), arch="x86-64")
    sig = next(p for p in layout.partitions if p.role is PartitionRole.ROOT_VERITY_SIG)
    flip(path, sig.offset + len('{"rootHash":"') + 3)  # one hex digit of the root hash
    r = strata("sysext", "merge", f"--root={root}", POLICY, "--verify=userspace")
    assert r.returncode == 1, r.stderr
    assert mounts_under(root) == []


@pytest.mark.privileged
@isolated
def test_without_device_mapper(tmp_path: Path) -> None:
    if dm_available():
        pytest.skip("this machine has device-mapper: the refusal is not reachable")
    image, _ = build_ddi(tmp_path, "signed")
    root = make_root(tmp_path)
    path = install(root, image)
    trust(root, tmp_path / "keys/builder.crt")
    r = strata("sysext", "merge", f"--root={root}", POLICY)
    assert r.returncode == 1
    assert f"{path}: {DM_MESSAGE}" in r.stderr
    assert mounts_under(root) == []
    r = strata("sysext", "merge", f"--root={root}", "--verify=dm-verity")
    assert r.returncode == 1 and DM_MESSAGE in r.stderr
    # the default policy allows the partition unprotected: it is mounted, and that is said
    r = strata("sysext", "merge", f"--root={root}")
    assert r.returncode == 0, r.stderr
    assert "mounting it without checking it" in r.stderr
    assert (root / "usr/bin/app").exists()


@pytest.mark.privileged
@isolated
def test_one_bad_image_fails_the_merge_and_mounts_nothing(tmp_path: Path) -> None:
    """As systemd: a refused image fails the whole operation (strata ext skips instead)."""
    image, _ = build_ddi(tmp_path, "signed")
    root = make_root(tmp_path)
    install(root, image, "app.raw")
    bad = install(root, image, "app-1.0-x86-64.raw")  # another name the image answers to
    trust(root, tmp_path / "keys/builder.crt")
    (v,) = read_verity(probe(str(bad), arch="x86-64"))
    flip(bad, v.data.offset + 5000)
    r = strata("sysext", "merge", f"--root={root}", POLICY, "--verify=userspace")
    assert r.returncode == 1 and f"{bad}: partition 1" in r.stderr
    assert mounts_under(root) == []


def test_verify_option_is_checked(tmp_path: Path) -> None:
    r = strata("sysext", "merge", f"--root={tmp_path}", "--verify=maybe")
    assert r.returncode == 1
    assert "Failed to parse argument to --verify=: maybe" in r.stderr


STAND_IN = """#!/bin/sh
# veritysetup for test_dm_verity_path: records its arguments; "open" checks the tree with the
# real veritysetup and links /dev/mapper/NAME to the data device instead of making a dm device
echo "$*" >> "$VERITYSETUP_LOG"
case "$1" in
  open)
    shift
    case "$1" in --root-hash-signature=*) shift;; esac
    {real} verify "$1" "$3" "$4" || exit 1
    ln -s "$1" "/dev/mapper/$2";;
  close)
    shift
    [ "$1" = --deferred ] && shift
    rm -f "/dev/mapper/$1";;
  *) exec {real} "$@";;
esac
"""


@pytest.mark.privileged
@isolated
def test_dm_verity_path_with_a_stand_in(tmp_path: Path) -> None:
    """The dm-verity path (these machines have no device-mapper): a private /dev with a
    /dev/mapper/control, and a stand-in veritysetup that checks the tree with the real one and
    links the data device where the dm device would be. Checks what Strata asks for: the
    kernel gets the signature only when userspace could not verify it, the device is closed
    deferred, and a failed open mounts nothing."""
    from tests.helpers import run

    image, _ = build_ddi(tmp_path, "signed")
    root = make_root(tmp_path)
    path = install(root, image)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "veritysetup"
    fake.write_text(STAND_IN.replace("{real}", shutil.which("veritysetup") or "veritysetup"))
    fake.chmod(0o755)
    log = tmp_path / "veritysetup.log"
    run("mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", "/dev")
    run("mknod", "-m", "0600", "/dev/loop-control", "c", "10", "237")
    for node, minor in (("null", 3), ("zero", 5), ("random", 8), ("urandom", 9)):
        run("mknod", "-m", "0666", f"/dev/{node}", "c", "1", str(minor))
    os.mkdir("/dev/mapper")
    Path("/dev/mapper/control").touch()
    env = {"PATH": f"{bindir}:{os.environ['PATH']}", "VERITYSETUP_LOG": str(log)}
    (v,) = read_verity(probe(str(path), arch="x86-64"))

    r = strata("sysext", "merge", f"--root={root}", POLICY, env=env)
    assert r.returncode == 0, r.stderr
    assert "leaving it to the kernel's keyring" in r.stderr  # no trusted certificate
    opened, closed = log.read_text().splitlines()
    assert opened.startswith("open --root-hash-signature=") and opened.endswith(v.root_hash_hex)
    name = opened.split()[3]
    assert closed == f"close --deferred {name}"
    assert (root / "usr/bin/app").exists()
    assert strata("sysext", "unmerge", f"--root={root}").returncode == 0

    trust(root, tmp_path / "keys/builder.crt")
    log.unlink()
    r = strata("sysext", "merge", f"--root={root}", POLICY, env=env)
    assert r.returncode == 0, r.stderr
    assert log.read_text().splitlines()[0].startswith("open /dev/loop")  # no signature
    assert strata("sysext", "unmerge", f"--root={root}").returncode == 0

    flip(path, v.data.offset + v.superblock.data_size // 2)
    r = strata("sysext", "merge", f"--root={root}", POLICY, env=env)
    assert r.returncode == 1
    assert f"{path}: cannot open partition 1 (root-x86-64) through dm-verity" in r.stderr
    assert mounts_under(root) == []


@pytest.mark.privileged
@isolated
def test_lenient_merge_skips_an_untrusted_image(tmp_path: Path) -> None:
    """strata ext's merges are lenient: an image whose signature does not verify is left out
    and reported, and the rest still merge."""
    from strata.discover import discover
    from strata.engine import ops
    from strata.engine.settings import resolve
    from strata.model import ExtClass
    from tests.helpers import install_ext

    image, _ = build_ddi(tmp_path, "signed")
    root = make_root(tmp_path)
    install(root, image)  # no certificate is trusted
    install_ext(root, "plain", {"usr/bin/plain": "plain\n"})
    found = discover(ExtClass.SYSEXT, root=str(root), arch="x86-64").by_name()
    settings = resolve(ExtClass.SYSEXT, {}, root=str(root), verify="userspace",
                       image_policy="root=signed+absent:usr=absent")
    outcome = ops.merge(settings, {}, images=ops.ImageSet((found["app"], found["plain"])))
    assert outcome.merged == ("plain",)
    assert [name for name, _ in outcome.skipped] == ["app"]
    assert "no trusted certificate" in outcome.skipped[0][1]
    assert (root / "usr/bin/plain").read_text() == "plain\n"
    assert not (root / "usr/bin/app").exists()
