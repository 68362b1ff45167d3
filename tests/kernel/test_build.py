"""`strata build` end to end with the real tools: trees, .deb files made with dpkg-deb and .rpm
files made with rpmbuild inside the test, every output format read back without mounting,
reproducibility, failures that leave nothing behind, and a built image merged with
`strata sysext merge` in a private namespace with its programs run from the merged tree."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from strata.images import open_fs
from strata.images.base import FileKind, ImageFS
from strata.model import ExtClass
from strata.release import find_extension_release, image_name_from_path, parse_env_pairs
from tests.helpers import Files, install_ext, isolated, make_root, strata, write_tree


def need(*tools: str) -> None:
    """Skip (fail under STRATA_REQUIRE_PRIVILEGED=1, as CI runs) without the tools."""
    missing = [t for t in tools if shutil.which(t) is None]
    if not missing:
        return
    message = f"{', '.join(missing)} not installed"
    if os.environ.get("STRATA_REQUIRE_PRIVILEGED") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(autouse=True)
def _tools() -> None:
    need("mkfs.erofs", "mksquashfs")


def build(spec: Path, out: Path, *args: str, env: Mapping[str, str] | None = None,
          ok: bool = True) -> subprocess.CompletedProcess[str]:
    r = strata("build", str(spec), "-o", str(out), "--json=short", *args, env=env)
    if ok:
        assert r.returncode == 0, r.stderr
    return r


def report(r: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(r.stdout)
    return data


def sha256(path: Path | str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def listing(fs: ImageFS, path: str = "/") -> Iterator[tuple[str, int, int, int, str]]:
    """(path, mode, uid, gid, link target or content digest) of every entry, sorted."""
    for name in sorted(fs.listdir(path)):
        p = f"{path.rstrip('/')}/{name}"
        st = fs.lstat(p)
        extra = ""
        if st.kind is FileKind.SYMLINK:
            extra = fs.readlink(p)
        elif st.kind is FileKind.REGULAR:
            extra = hashlib.sha256(fs.read(p)).hexdigest()[:12]
        yield p, st.mode, st.uid, st.gid, extra
        if st.kind is FileKind.DIRECTORY:
            yield from listing(fs, p)


HELLO = "#!/bin/sh\necho hello from the extension\n"

TREE: Files = {
    "usr/bin/hello": HELLO,
    "bin/legacy": "#!/bin/sh\necho legacy\n",
    "sbin/admin": "#!/bin/sh\necho admin\n",
    "usr/lib/app/data": "data\n",
    "usr/lib/app/su-helper": "setuid\n",
    "opt/app/readme": "opt\n",
    "etc/app/app.conf": "key=value\n",
    "var/lib/app/state": "state\n",
}


def make_sources(base: Path, files: Files = TREE) -> Path:
    tree = base / "tree"
    write_tree(tree, files)
    for f in ("usr/bin/hello", "bin/legacy", "sbin/admin"):
        if (tree / f).exists():
            os.chmod(tree / f, 0o755)
    if (tree / "usr/lib/app/su-helper").exists():
        os.chmod(tree / "usr/lib/app/su-helper", 0o4755)
    units = base / "units"
    units.mkdir(exist_ok=True)
    (units / "app.service").write_text("[Service]\nExecStart=/usr/bin/hello\n")
    return tree


SPEC = """\
name: app
version: "1.0"
sources:
  - tree: tree
  - file: units/app.service
    to: /usr/lib/systemd/system/app-extra.service
    mode: "0600"
services:
  units: [units/app.service]
  restart: [app.service]
{extra}"""


def write_spec(base: Path, extra: str = "", text: str | None = None) -> Path:
    spec = base / "app.yaml"
    spec.write_text(text if text is not None else SPEC.format(extra=extra))
    return spec


def test_build_from_a_tree(tmp_path: Path) -> None:
    make_sources(tmp_path)
    os.mkfifo(tmp_path / "tree/usr/lib/app/fifo")
    spec = write_spec(tmp_path)
    r = build(spec, tmp_path / "out")
    data = report(r)
    (out,) = data["outputs"]
    image = tmp_path / "out/app-1.0-x86-64.raw"
    assert out["path"] == str(image)
    assert out["sha256"] == sha256(image)
    assert out["size"] == image.stat().st_size
    assert stat.S_IMODE(image.stat().st_mode) == 0o644
    assert out["format"] == "erofs" and out["class"] == "sysext"
    assert out["command"][:2] == ["mkfs.erofs", "-zlz4hc"]
    assert out["command"][out["command"].index("-U") + 1] == out["uuid"]
    raw_uuid = image.read_bytes()[1024 + 48: 1024 + 64]  # erofs superblock: uuid[16] at 48
    assert str(uuid.UUID(bytes=raw_uuid)) == out["uuid"]
    assert any("fifo left out" in w for w in data["warnings"])
    assert any(w.startswith("var: left out") for w in data["warnings"])
    assert os.listdir(tmp_path / "out") == ["app-1.0-x86-64.raw"]  # no staging left

    with open_fs(str(image)) as fs:
        entries = {p: (mode, uid, gid, extra) for p, mode, uid, gid, extra in listing(fs)}
        assert {p.split("/")[1] for p in entries} == {"usr", "opt"}
        assert all(uid == 0 and gid == 0 for _m, uid, gid, _x in entries.values())
        assert stat.S_IMODE(entries["/usr/lib/app/su-helper"][0]) == 0o4755
        assert stat.S_IMODE(entries["/usr/bin/legacy"][0]) == 0o755
        assert "/usr/bin/admin" in entries and "/usr/sbin" not in entries  # merged-bin
        assert stat.S_IMODE(entries["/usr/lib/systemd/system/app-extra.service"][0]) == 0o600
        assert "/usr/lib/systemd/system/app.service" in entries
        assert "/usr/share/app/etc/app/app.conf" in entries
        tmpfiles = fs.read("/usr/lib/tmpfiles.d/10-app.conf").decode()
        assert "C+ /etc/app - - - - /usr/share/app/etc/app\n" in tmpfiles
        # systemd's strict lookup finds the release file under the image's file name
        found = find_extension_release(fs, ExtClass.SYSEXT, image_name_from_path(str(image)))
        assert found.found
        assert found.path == "/usr/lib/extension-release.d/extension-release.app"
        pairs = parse_env_pairs(fs.read(found.path), source="x")
    assert pairs == [
        ("ID", "_any"), ("ARCHITECTURE", "x86-64"), ("SYSEXT_VERSION_ID", "1.0"),
        ("EXTENSION_RELOAD_MANAGER", "1"), ("EXTENSION_RESTART_UNITS", "app.service"),
        ("AVOCADO_ON_MERGE", "systemd-tmpfiles --create /usr/lib/tmpfiles.d/10-app.conf"),
    ]


def test_formats_hold_the_same_tree(tmp_path: Path) -> None:
    make_sources(tmp_path)
    results = {}
    for fmt, extra in (("erofs", ""), ("squashfs", "output:\n  format: squashfs\n"),
                       ("zstd", "output:\n  format: squashfs\n  compression: zstd\n"
                                "  level: 3\n"),
                       ("directory", "output:\n  format: directory\n")):
        spec = write_spec(tmp_path, extra)
        results[fmt] = report(build(spec, tmp_path / f"out-{fmt}"))["outputs"][0]
    assert len({o["content_sha256"] for o in results.values()}) == 1
    assert results["squashfs"]["command"][:1] == ["mksquashfs"]
    assert "gzip" in results["squashfs"]["command"]
    assert results["directory"]["sha256"] is None
    trees = []
    for fmt, o in results.items():
        with open_fs(o["path"]) as fs:
            trees.append([(p, m, x) for p, m, _u, _g, x in listing(fs)])
        assert (fmt == "directory") == Path(o["path"]).is_dir()
    assert all(t == trees[0] for t in trees)


def test_reproducible_in_other_directories_at_other_times(tmp_path: Path) -> None:
    """Two builds from separate copies of the sources (created in a different order, with
    different times), into different directories, a second apart: the same bytes."""
    files = dict(TREE)
    a, b = tmp_path / "a", tmp_path / "b"
    make_sources(a, files)
    time.sleep(1.1)
    make_sources(b, dict(reversed(list(files.items()))))
    os.utime(b / "tree/usr/bin/hello", (1e9, 1e9))
    for fmt in ("erofs", "squashfs"):
        extra = f"output:\n  format: {fmt}\n"
        one = report(build(write_spec(a, extra), a / f"out-{fmt}"))["outputs"][0]
        time.sleep(1.1)
        two = report(build(write_spec(b, extra), b / "elsewhere" / f"out-{fmt}"))["outputs"][0]
        assert one["sha256"] == two["sha256"], fmt
        assert sha256(one["path"]) == sha256(two["path"])
        assert one["uuid"] == two["uuid"]

    # a different epoch or different content gives a different image
    spec = write_spec(a)
    base = report(build(spec, a / "e0"))["outputs"][0]
    other_epoch = report(build(spec, a / "e1", env={"SOURCE_DATE_EPOCH": "1700000000"}))
    assert other_epoch["source_date_epoch"] == 1700000000
    assert other_epoch["outputs"][0]["sha256"] != base["sha256"]
    assert other_epoch["outputs"][0]["content_sha256"] == base["content_sha256"]
    cli = report(build(spec, a / "e2", "--source-date-epoch=1700000000",
                       env={"SOURCE_DATE_EPOCH": "5"}))
    assert cli["outputs"][0]["sha256"] == other_epoch["outputs"][0]["sha256"]
    # mksquashfs refuses SOURCE_DATE_EPOCH next to its time options: it must not see it
    sq = write_spec(a, "output:\n  format: squashfs\n")
    sq_env = report(build(sq, a / "sq", env={"SOURCE_DATE_EPOCH": "1700000000"}))
    sq_cli = report(build(sq, a / "sq2", "--source-date-epoch=1700000000"))
    assert sq_env["outputs"][0]["sha256"] == sq_cli["outputs"][0]["sha256"]
    (a / "tree/usr/lib/app/data").write_text("changed\n")
    changed = report(build(spec, a / "e3"))["outputs"][0]
    assert changed["sha256"] != base["sha256"]
    assert changed["uuid"] != base["uuid"]


def test_sources_are_never_changed(tmp_path: Path) -> None:
    """Image builds stage tree files as hard links: nothing may change them in place."""
    tree = make_sources(tmp_path)
    os.utime(tree / "usr/bin/hello", (2e9, 2e9))  # newer than any epoch: would be clamped

    def snapshot() -> dict[str, tuple[int, int, int, int, bytes]]:
        out = {}
        for d, _dirs, files in os.walk(tree):
            for n in files:
                p = Path(d, n)
                st = p.lstat()
                out[str(p)] = (st.st_mode, st.st_uid, st.st_mtime_ns, st.st_nlink, p.read_bytes())
        return out

    before = snapshot()
    for fmt in ("erofs", "squashfs", "directory"):
        spec = write_spec(tmp_path, f"output:\n  format: {fmt}\n")
        build(spec, tmp_path / f"out-{fmt}", env={"SOURCE_DATE_EPOCH": "1700000000"})
        assert snapshot() == before, fmt
    staged = Path(report(build(write_spec(tmp_path), tmp_path / "kept", "--keep-staging"))
                  ["staging"])
    assert (staged / "sysext/usr/bin/hello").read_text() == HELLO
    assert staged.parent == tmp_path / "kept"


@pytest.mark.parametrize("options", [["-zlz4hc"], ["-zlz4hc,12", "-C65536"], []])
def test_erofs_uuid_written_afterwards_equals_mkfs_with_it(tmp_path: Path,
                                                           options: list[str]) -> None:
    """The build makes erofs images with a placeholder UUID and writes the real one into the
    superblock later: that must give exactly what mkfs.erofs -U gives."""
    from strata.build.mkfs import PLACEHOLDER_UUID, set_erofs_uuid

    tree = make_sources(tmp_path)
    want = "6ac5dd58-f3fb-44a5-b57a-ec30b60760cc"
    images = {}
    for fs_uuid in (PLACEHOLDER_UUID, want):
        images[fs_uuid] = tmp_path / f"{fs_uuid}.raw"
        subprocess.run(["mkfs.erofs", *options, "-T0", "-U", fs_uuid, "--all-root", "-x-1",
                        "--quiet", str(images[fs_uuid]), str(tree)], check=True)
    assert sha256(images[PLACEHOLDER_UUID]) != sha256(images[want])
    set_erofs_uuid(str(images[PLACEHOLDER_UUID]), want)
    assert images[PLACEHOLDER_UUID].read_bytes() == images[want].read_bytes()
    check = subprocess.run(["fsck.erofs", str(images[PLACEHOLDER_UUID])], capture_output=True,
                           text=True, check=False)
    assert check.returncode == 0, check.stderr


# --------------------------------------------------------------------------- packages

def make_deb(base: Path, name: str, version: str, arch: str, files: Files, *,
             modes: Mapping[str, int] | None = None) -> Path:
    need("dpkg-deb")
    root = base / f"deb-{name}"
    write_tree(root, {"DEBIAN/control": f"Package: {name}\nVersion: {version}\n"
                                        f"Architecture: {arch}\nMaintainer: t <t@e>\n"
                                        f"Description: test\n", **files})
    for p, m in (modes or {}).items():
        os.chmod(root / p, m)
    out = base / f"{name}_{version}_{arch}.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(root), str(out)],
                   check=True, capture_output=True)
    return out


def make_rpm(base: Path) -> Path:
    need("rpmbuild", "rpm2cpio")
    top = base / "rpmbuild"
    spec = base / "hello.spec"
    spec.write_text("""\
Name: hello-rpm
Version: 2.0
Release: 1
Summary: test package
License: MIT
BuildArch: noarch
%define __os_install_post %{nil}
%description
test
%install
mkdir -p %{buildroot}/usr/bin %{buildroot}/sbin %{buildroot}/etc/hello
printf '#!/bin/sh\\necho hello from rpm\\n' > %{buildroot}/usr/bin/hello-rpm
chmod 0755 %{buildroot}/usr/bin/hello-rpm
printf 'x\\n' > %{buildroot}/sbin/hello-helper
printf 'greeting=hi\\n' > %{buildroot}/etc/hello/hello.conf
%files
/usr/bin/hello-rpm
%attr(4755, root, root) /sbin/hello-helper
%dir /etc/hello
%config /etc/hello/hello.conf
""")
    subprocess.run(["rpmbuild", "-bb", "--define", f"_topdir {top}", str(spec)], check=True,
                   capture_output=True)
    (rpm,) = (top / "RPMS/noarch").glob("*.rpm")
    return rpm


def test_build_from_deb_and_rpm(tmp_path: Path) -> None:
    deb = make_deb(tmp_path, "hello-deb", "1.0-1", "amd64", {
        "bin/hello-deb": "#!/bin/sh\necho hello from deb\n",
        "usr/bin/hello-deb-link": "->../../bin/hello-deb",
        "lib/x86_64-linux-gnu/libhello.so.1.0": "elf?",
        "lib/x86_64-linux-gnu/libhello.so.1": "->libhello.so.1.0",
        "etc/hello-deb.conf": "x=1\n",
        "usr/share/doc/hello-deb/copyright": "MIT\n",
        # Debian 12 packages still ship units and modules below /lib
        "lib/systemd/system/hello-deb.service": "[Service]\nExecStart=/usr/bin/hello-deb\n",
        "lib/modules/6.1.0-1-amd64/extra/hello.ko": "not really a module",
    }, modes={"bin/hello-deb": 0o4755})
    rpm = make_rpm(tmp_path)
    spec = write_spec(tmp_path, text=f"""\
name: pkgs
version: "3"
class: both
sources:
  - package: {deb}
  - package: {rpm.relative_to(tmp_path)}
normalize:
  exclude: [usr/share/doc]
""")
    data = report(build(spec, tmp_path / "out"))
    assert [(p["name"], p["version"], p["arch"], p["kind"]) for p in data["packages"]] == [
        ("hello-deb", "1.0-1", "amd64", "deb"), ("hello-rpm", "2.0-1", "noarch", "rpm")]
    sysext, confext = data["outputs"]
    assert (sysext["class"], Path(sysext["path"]).name) == ("sysext", "pkgs-3-x86-64.raw")
    assert (confext["class"], Path(confext["path"]).name) == (
        "confext", "pkgs-3-x86-64.confext.raw")
    with open_fs(sysext["path"]) as fs:
        e = {p: (m, x) for p, m, _u, _g, x in listing(fs)}
        assert stat.S_IMODE(e["/usr/bin/hello-deb"][0]) == 0o4755
        assert e["/usr/bin/hello-deb-link"][1] == "hello-deb"  # relocation fixed the link
        assert e["/usr/lib/x86_64-linux-gnu/libhello.so.1"][1] == "libhello.so.1.0"
        assert stat.S_IMODE(e["/usr/bin/hello-helper"][0]) == 0o4755  # rpm %attr kept
        assert "/usr/bin/hello-rpm" in e
        assert not any(p.startswith("/usr/share/doc") for p in e)
        assert not any(p.startswith(("/etc", "/usr/share/pkgs")) for p in e)
        rel = parse_env_pairs(fs.read("/usr/lib/extension-release.d/extension-release.pkgs"),
                              source="x")
        assert rel == [("ID", "_any"), ("ARCHITECTURE", "x86-64"), ("SYSEXT_VERSION_ID", "3"),
                       ("EXTENSION_RELOAD_MANAGER", "1"), ("AVOCADO_ON_MERGE", "depmod")]
        assert "/usr/lib/systemd/system/hello-deb.service" in e
        assert "/usr/lib/modules/6.1.0-1-amd64/extra/hello.ko" in e
    with open_fs(confext["path"]) as fs:
        e = {p: (m, x) for p, m, _u, _g, x in listing(fs)}
        assert set(e) == {
            "/etc", "/etc/hello-deb.conf", "/etc/hello", "/etc/hello/hello.conf",
            "/etc/extension-release.d", "/etc/extension-release.d/extension-release.pkgs",
            "/etc/extension-release.d/extension-release.pkgs-3-x86-64",
            "/etc/extension-release.d/extension-release.pkgs-3-x86-64.confext"}
        found = find_extension_release(fs, ExtClass.CONFEXT,
                                       image_name_from_path(confext["path"]))
        assert found.fields is not None
        assert found.fields["CONFEXT_VERSION_ID"] == "3"


def test_warnings_for_ignored_compatibility(tmp_path: Path) -> None:
    make_sources(tmp_path)
    data = report(build(write_spec(tmp_path, "compatibility:\n  level: '1.0'\n"),
                        tmp_path / "out"))
    assert ("compatibility.version_id and .level are not checked by systemd when the ID is "
            "_any: set compatibility.id") in data["warnings"]


def test_package_for_another_architecture_is_refused(tmp_path: Path) -> None:
    deb = make_deb(tmp_path, "armthing", "1", "arm64", {"usr/bin/armthing": "x"})
    spec = write_spec(tmp_path, text=f"name: a\nversion: '1'\nsources:\n  - package: {deb}\n")
    r = build(spec, tmp_path / "out", ok=False)
    assert r.returncode == 1
    assert (f"{deb.name} is built for arm64, not for the image's architecture x86-64"
            in r.stderr)
    assert not (tmp_path / "out").exists()  # made for the build, removed with it


# --------------------------------------------------------------------------- failures

def test_spec_error_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, text="name: a\nversion: '1'\ncompatibility:\n  levle: '1'\n")
    r = build(spec, tmp_path / "out", ok=False)
    assert r.returncode == 1
    assert r.stdout == ""
    assert r.stderr.splitlines()[0] == (
        f"{spec}:4: compatibility.levle: unknown key (expected one of: id, version_id, level, "
        "architecture, scope)")
    assert not (tmp_path / "out").exists()


def _fake_tool(bindir: Path, name: str, script: str) -> dict[str, str]:
    bindir.mkdir(exist_ok=True)
    (bindir / name).write_text("#!/bin/sh\n" + script)
    os.chmod(bindir / name, 0o755)
    return {"PATH": f"{bindir}:{os.environ['PATH']}"}


def test_failures_leave_no_output(tmp_path: Path) -> None:
    make_sources(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "app-1.0-x86-64.raw").write_bytes(b"the previous build")

    # the tool fails after writing part of an image
    env = _fake_tool(tmp_path / "bin1", "mkfs.erofs",
                     'for a; do last2="$last"; last="$a"; done\n'
                     'echo partial > "$last2"; echo "mkfs.erofs: disk on fire" >&2; exit 1\n')
    r = build(write_spec(tmp_path), out, env=env, ok=False)
    assert r.returncode == 1
    assert "mkfs.erofs failed: mkfs.erofs: disk on fire" in r.stderr
    assert os.listdir(out) == ["app-1.0-x86-64.raw"]
    assert (out / "app-1.0-x86-64.raw").read_bytes() == b"the previous build"

    # class both: the second image fails, so the first one is not kept either
    env = _fake_tool(tmp_path / "bin2", "mkfs.erofs",
                     'for a; do last="$a"; done\n'
                     'case "$last" in */confext) exit 3;; esac\nexec /usr/bin/mkfs.erofs "$@"\n')
    r = build(write_spec(tmp_path, "class: both\n"), out, env=env, ok=False)
    assert r.returncode == 1
    assert os.listdir(out) == ["app-1.0-x86-64.raw"]

    # a normalisation conflict
    (tmp_path / "tree/usr/bin/legacy").write_text("a different legacy\n")
    r = build(write_spec(tmp_path), out, ok=False)
    assert "bin/legacy and usr/bin/legacy both become usr/bin/legacy" in r.stderr
    assert os.listdir(out) == ["app-1.0-x86-64.raw"]


def test_missing_tool_names_the_package(tmp_path: Path) -> None:
    make_sources(tmp_path)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    os.symlink(shutil.which("python3") or "/usr/bin/python3", bindir / "python3")
    r = build(write_spec(tmp_path, "output:\n  format: squashfs\n"), tmp_path / "out",
              env={"PATH": str(bindir)}, ok=False)
    assert r.returncode == 1
    assert "mksquashfs not found: it is needed to build squashfs images" in r.stderr
    assert "install the Debian package squashfs-tools" in r.stderr
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- merged

@pytest.mark.privileged
@isolated
def test_built_images_merge_and_run(tmp_path: Path) -> None:
    make_sources(tmp_path)
    spec = write_spec(tmp_path, "class: both\n")
    data = report(build(spec, tmp_path / "out"))
    sysext, confext = (Path(o["path"]) for o in data["outputs"])
    root = make_root(tmp_path)
    (root / "var/lib/extensions").mkdir(parents=True)
    (root / "var/lib/confexts").mkdir(parents=True)
    shutil.copy(sysext, root / "var/lib/extensions" / sysext.name)
    shutil.copy(confext, root / "var/lib/confexts" / confext.name)
    install_ext(root, "unrelated", {"usr/bin/other": "other\n"})

    r = strata("sysext", "merge", f"--root={root}")
    assert r.returncode == 0, r.stderr
    assert f"Using extensions '{sysext.name}', 'unrelated'." in r.stderr
    for prog, text in (("hello", "hello from the extension"), ("legacy", "legacy"),
                       ("admin", "admin")):
        run = subprocess.run([str(root / "usr/bin" / prog)], capture_output=True, text=True,
                             check=True)
        assert run.stdout == text + "\n"
    assert (root / "usr/bin/host-tool").read_text() == "host\n"
    assert (root / "opt/app/readme").read_text() == "opt\n"

    r = strata("confext", "merge", f"--root={root}")
    assert r.returncode == 0, r.stderr
    assert (root / "etc/app/app.conf").read_text() == "key=value\n"
    assert (root / "etc/os-release").exists()  # the host's /etc is still underneath
    for cls in ("sysext", "confext"):
        assert strata(cls, "unmerge", f"--root={root}").returncode == 0
    assert not (root / "usr/bin/hello").exists()
