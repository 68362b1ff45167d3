"""strata check and strata inspect on real images (erofs, squashfs, ext4, GPT) made from one
crafted tree with the real tools: the same findings as for the directory, the same file tree;
and the command line (exit statuses, --json shapes, usage errors)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from strata.check.findings import Rule
from strata.check.inspect import inspect_image, render, to_json
from tests.helpers import strata
from tests.unit.imagetree import mkfs_ext, mksquashfs, needs
from tests.unit.test_check_support import copy_into, fake_elf, make_image, program, run_check

FORMATS = ["erofs", "squashfs", "ext4", "gpt"]
TOOLS = {"erofs": ("mkfs.erofs",), "squashfs": ("mksquashfs",), "ext4": ("mkfs.ext4",),
         "gpt": ("mkfs.erofs", "sfdisk")}


def bad_tree(base: Path) -> Path:
    """One tree with a finding for many rules."""
    img = make_image(base, "bad", {
        "usr/bin/su": "setuid\n",
        "usr/share/bad/world": "w\n",
        "usr/share/bad/gone": "->nowhere",
        "usr/sbin/daemon": "d\n",
        "usr/lib/bad/libarm.so.1": fake_elf(183),
        "usr/lib/os-release": "ID=debian\n",
        "lib/legacy.so": "x\n",
        "etc/bad.conf": "x\n",
    }, {"ID": "debian"})
    os.chmod(img / "usr/bin/su", 0o4755)
    os.chmod(img / "usr/share/bad/world", 0o666)
    copy_into(img, program(), "/usr/bin/prog")
    return img


def build(fmt: str, tree: Path, out: Path) -> Path:
    missing = [t for t in TOOLS[fmt] if needs(t).args[0]]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed")
    image = out / f"{tree.name}.raw"
    if fmt == "erofs":
        subprocess.run(["mkfs.erofs", "-zlz4hc", str(image), str(tree)], check=True,
                       capture_output=True)
    elif fmt == "squashfs":
        mksquashfs(tree, image)
    elif fmt == "ext4":
        mkfs_ext(tree, image, size="16M")
    else:
        from strata.arch import native
        from strata.images.gpt import PartitionRole, type_uuid_for
        from tests.unit.gptdisk import sfdisk

        fs = out / "fs.erofs"
        subprocess.run(["mkfs.erofs", str(fs), str(tree)], check=True, capture_output=True)
        sectors = -(-fs.stat().st_size // 512)
        kind = type_uuid_for(PartitionRole.ROOT, native())
        sfdisk(image, (2048 + sectors + 2048) * 512,
               f'label: gpt\nstart=2048, size={sectors}, type={kind}, name="bad"\n')
        subprocess.run(["dd", f"if={fs}", f"of={image}", "bs=512", "seek=2048",
                        "conv=notrunc", "status=none"], check=True)
    return image


def keyed(path: Path) -> list[tuple[str, str, str]]:
    return [(f.rule.value, f.severity.value, f.path) for f in run_check([path])[0].findings]


@pytest.mark.parametrize("fmt", FORMATS)
def test_same_findings_as_the_directory(tmp_path: Path, fmt: str) -> None:
    tree = bad_tree(tmp_path / "src")
    image = build(fmt, tree, tmp_path)
    expected = keyed(tree)
    got = keyed(image)
    if fmt == "ext4":  # mkfs.ext4 -d adds /lost+found
        expected.append(("outside-hierarchy", "warning", "/lost+found"))
        got = [g for g in got if g[2] != "/lost+found"]
        expected.pop()
    assert got == expected
    rules = {r for r, _, _ in got}
    assert {"setuid", "world-writable", "dangling-symlink", "usr-sbin", "elf-arch",
            "os-release", "root-directory", "outside-hierarchy", "release-fields"} <= rules
    report = run_check([image])[0]
    assert report.description.startswith("sysext, ")
    assert fmt.replace("gpt", "gpt/erofs") in report.description


@pytest.mark.parametrize("fmt", FORMATS)
def test_inspect_formats(tmp_path: Path, fmt: str) -> None:
    tree = bad_tree(tmp_path / "src")
    image = build(fmt, tree, tmp_path)
    info = to_json(inspect_image(str(image)))
    assert info["format"] == ("gpt" if fmt == "gpt" else fmt)
    assert info["filesystem"] == ("erofs" if fmt == "gpt" else fmt)
    assert info["sha256"] == hashlib.sha256(image.read_bytes()).hexdigest()
    assert info["size"] == image.stat().st_size
    assert info["classes"] == ["sysext"]
    assert info["releases"]["sysext"]["fields"] == {"ID": "debian"}
    assert info["releases"]["confext"]["fields"] is None
    if fmt == "gpt":
        part = info["partition"]
        assert part["number"] == 1 and part["role"] == "root" and part["label"] == "bad"
    else:
        assert info["partition"] is None
    directory = to_json(inspect_image(str(tree)))
    assert directory["format"] == "directory" and directory["sha256"] is None

    def comparable(files: list[dict[str, object]]) -> list[tuple[object, ...]]:
        return [(f["path"], f["type"], f["mode"], f["target"],
                 f["size"] if f["type"] != "directory" else None)
                for f in files if f["path"] != "/lost+found"]

    assert comparable(info["files"]) == comparable(directory["files"])
    su = next(f for f in info["files"] if f["path"] == "/usr/bin/su")
    assert su == {"path": "/usr/bin/su", "type": "regular", "mode": "4755", "uid": 0, "gid": 0,
                  "size": 7, "target": None}
    gone = next(f for f in info["files"] if f["path"] == "/usr/share/bad/gone")
    assert gone["type"] == "symlink" and gone["target"] == "nowhere"


def test_inspect_human(tmp_path: Path) -> None:
    tree = bad_tree(tmp_path)
    text = render(inspect_image(str(tree)))
    lines = text.splitlines()
    assert lines[0] == f"Image:             {tree}"
    assert "Format:            directory" in lines
    assert "Release (sysext):  /usr/lib/extension-release.d/extension-release.bad" in lines
    assert "  ID=debian" in lines
    assert any(line.startswith("-rwsr-xr-x 0 0") and line.endswith(" /usr/bin/su")
               for line in lines)
    assert any(line.endswith(" /usr/share/bad/gone -> nowhere") for line in lines)


def test_inspect_without_release(tmp_path: Path) -> None:
    tree = make_image(tmp_path, "bare", {"usr/share/x": "x"}, release=None)
    info = inspect_image(str(tree))
    assert info.classes == ()
    assert "Class:             none (no release file)" in render(info)


# --- the command line ------------------------------------------------------------------------


def test_cli_exit_statuses(tmp_path: Path) -> None:
    clean = make_image(tmp_path, "clean", {"usr/share/clean/x": "x"})
    warn = make_image(tmp_path, "warn", {"usr/share/w/x": "x"})
    os.chmod(warn / "usr/share/w/x", 0o666)
    error = make_image(tmp_path, "error", {"usr/share/e/x": "x"}, release=None)
    r = strata("check", str(clean))
    assert (r.returncode, r.stdout) == (0, f"{clean} (sysext, directory): no findings\n"
                                           "1 image: 0 errors, 0 warnings, 0 info\n")
    r = strata("check", str(warn))
    assert r.returncode == 2
    assert "  warning /usr/share/w/x: world-writable file (chmod o-w (0666 now))" in r.stdout
    r = strata("check", str(clean), str(warn), str(error))
    assert r.returncode == 1
    assert r.stdout.splitlines()[-1] == "3 images: 1 error, 1 warning, 0 info"


def test_cli_json(tmp_path: Path) -> None:
    img = make_image(tmp_path, "j", {"usr/share/j/x": "x", "usr/share/j/l": "->nope"})
    os.chmod(img / "usr/share/j/x", 0o666)
    r = strata("check", "--json", str(img))
    assert r.returncode == 2
    data = json.loads(r.stdout)
    assert data == [
        {"image": str(img), "rule": "world-writable", "severity": "warning",
         "path": "/usr/share/j/x", "message": "world-writable file",
         "hint": "chmod o-w (0666 now)"},
        {"image": str(img), "rule": "dangling-symlink", "severity": "info",
         "path": "/usr/share/j/l", "message": "-> nope: not in the image, the host must "
         "provide it", "hint": "check against the host with --host ROOT"},
    ]
    pretty = strata("check", "--json=pretty", str(img))
    assert json.loads(pretty.stdout) == data and "\n\t" in pretty.stdout
    clean = make_image(tmp_path, "c", {"usr/share/c/x": "x"})
    assert json.loads(strata("check", "--json=short", str(clean)).stdout) == []


def test_cli_usage_errors(tmp_path: Path) -> None:
    r = strata("check")
    assert r.returncode == 1 and "no image given" in r.stderr
    r = strata("check", "--class=usr", str(tmp_path))
    assert r.returncode == 1 and "Unknown argument to --class=: usr" in r.stderr
    r = strata("check", "--host", str(tmp_path / "nope"), str(tmp_path))
    assert r.returncode == 1 and "not a directory" in r.stderr
    r = strata("check", "--bogus", str(tmp_path))
    assert r.returncode == 1 and "unrecognized option '--bogus'" in r.stderr
    r = strata("inspect")
    assert r.returncode == 1 and "exactly one image" in r.stderr
    r = strata("inspect", str(tmp_path / "nope"))
    assert r.returncode == 1 and "No such file or directory" in r.stderr


def test_cli_help_and_rules() -> None:
    r = strata("check", "--help")
    assert r.returncode == 0 and "Exit status: 0 no findings" in r.stdout
    r = strata("check", "--list-rules")
    assert r.returncode == 0
    listed = [line.split()[0] for line in r.stdout.splitlines()]
    assert listed == [rule.value for rule in Rule]
    assert "check [OPTIONS] IMAGE" in strata("--help").stdout
    assert strata("inspect", "--help").returncode == 0


def test_cli_class_option(tmp_path: Path) -> None:
    """--class confext on a sysext: its /usr is outside, and it has no confext release."""
    img = make_image(tmp_path, "s", {"usr/share/s/x": "x"})
    data = json.loads(strata("check", "--json", "--class=confext", str(img)).stdout)
    assert {(d["rule"], d["path"]) for d in data} >= {
        ("outside-hierarchy", "/usr"),
        ("release-missing", "/etc/extension-release.d/extension-release.s")}


def test_cli_inspect_json(tmp_path: Path) -> None:
    img = make_image(tmp_path, "i", {"usr/share/i/x": "x"})
    r = strata("inspect", "--json", str(img))
    assert r.returncode == 0
    data = json.loads(r.stdout)
    assert set(data) == {"path", "name", "format", "filesystem", "partition", "usrPartition",
                         "size", "sha256", "classes", "releases", "files"}
    assert data["name"] == "i" and data["size"] == len("x") + len("ID=_any\n")
