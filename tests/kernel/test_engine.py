"""Real merges in a private mount namespace against scratch roots."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from strata.errors import StrataError
from tests.helpers import install_ext, isolated, make_root, mounts_under, strata

pytestmark = pytest.mark.privileged


def _three_extensions(root: Path) -> None:
    install_ext(root, "a", {"usr/bin/a": "a\n", "usr/bin/conflict": "from a\n"})
    install_ext(root, "b", {"usr/bin/b": "b\n", "usr/bin/conflict": "from b\n",
                            "opt/b/file": "b opt\n"}, fmt="erofs")
    install_ext(root, "c", {"usr/bin/conflict": "from c\n"}, fmt="squashfs",
                where="run/extensions")


@isolated
def test_merge_status_unmerge(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    _three_extensions(root)
    r = strata("sysext", "merge", f"--root={root}")
    assert r.returncode == 0, r.stderr
    assert "Using extensions 'a', 'b.raw', 'c.raw'." in r.stderr
    assert f"Merged extensions into '{root}/usr'." in r.stderr
    assert (root / "usr/bin/a").read_text() == "a\n"
    assert (root / "usr/bin/b").read_text() == "b\n"
    assert (root / "usr/bin/host-tool").read_text() == "host\n"
    assert (root / "usr/bin/conflict").read_text() == "from c\n"  # highest name wins
    assert (root / "opt/b/file").read_text() == "b opt\n"
    assert (root / "opt/host/file").read_text() == "host opt\n"
    with pytest.raises(OSError) as e:
        (root / "usr/bin/new").write_text("x")
    assert e.value.errno == errno.EROFS

    marker = root / "usr/.systemd-sysext"
    assert (marker / "extensions").read_text() == "a\nb\nc\n"
    st = os.stat(root / "usr")
    assert (marker / "dev").read_text() == f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}\n"
    # every merged name is listed in every hierarchy, even those an image does not touch
    assert (root / "opt/.systemd-sysext/extensions").read_text() == "a\nb\nc\n"

    s = strata("sysext", "status", f"--root={root}", "--json=short")
    assert s.returncode == 0, s.stderr
    data = json.loads(s.stdout)
    assert [d["hierarchy"] for d in data] == ["/opt", "/usr"]
    assert all(d["extensions"] == ["a", "b", "c"] for d in data)
    assert all(isinstance(d["since"], int) for d in data)

    again = strata("sysext", "merge", f"--root={root}")
    assert again.returncode == 1
    assert "Hierarchy '/usr' is already merged." in again.stderr

    u = strata("sysext", "unmerge", f"--root={root}")
    assert u.returncode == 0, u.stderr
    assert f"Unmerged '{root}/usr'." in u.stderr
    assert not (root / "usr/bin/a").exists()
    assert (root / "usr/bin/host-tool").read_text() == "host\n"
    assert mounts_under(root) == []
    s = strata("sysext", "status", f"--root={root}", "--json=short")
    assert json.loads(s.stdout) == [{"hierarchy": "/opt", "extensions": "none", "since": None},
                                    {"hierarchy": "/usr", "extensions": "none", "since": None}]


@isolated
def test_incompatible_images_are_ignored(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    install_ext(root, "fedora", {"usr/bin/f": "f"}, {"ID": "fedora"})
    install_ext(root, "oldver", {"usr/bin/o": "o"}, {"ID": "debian", "VERSION_ID": "11"},
                fmt="erofs")
    r = strata("sysext", "merge", f"--root={root}")
    assert r.returncode == 0, r.stderr
    assert "No suitable extensions found (2 ignored due to incompatible image(s))." in r.stderr
    assert "fedora" in r.stderr and "oldver" in r.stderr
    assert mounts_under(root) == []
    forced = strata("sysext", "merge", f"--root={root}", "--force")
    assert forced.returncode == 0, forced.stderr
    assert (root / "usr/bin/f").read_text() == "f"


@isolated
def test_no_extensions(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    r = strata("sysext", "merge", f"--root={root}")
    assert r.returncode == 0
    assert "No extensions found." in r.stderr
    listing = strata("sysext", "list", f"--root={root}")
    assert listing.returncode == 0 and "No OS extensions found." in listing.stderr
    assert strata("sysext", "list", f"--root={root}", "--json=short").stdout == "[]\n"


@isolated
def test_bad_inputs_fail_cleanly(tmp_path: Path) -> None:
    root = make_root(tmp_path, files={"usr/bin/x": "x"})
    (root / "etc/os-release").unlink()
    install_ext(root, "ok", {"usr/bin/ok": "ok"})
    r = strata("sysext", "merge", f"--root={root}")
    assert r.returncode == 1
    assert str(root) in r.stderr and "os-release" in r.stderr
    assert len(r.stderr.strip().splitlines()) <= 2
    assert mounts_under(root) == []

    root2 = make_root(tmp_path / "2")
    garbage = root2 / "var/lib/extensions/garbage.raw"
    garbage.parent.mkdir(parents=True, exist_ok=True)
    garbage.write_bytes(os.urandom(64 * 1024))
    r = strata("sysext", "merge", f"--root={root2}")
    assert r.returncode == 1
    assert "garbage" in r.stderr
    assert mounts_under(root2) == []

    root3 = make_root(tmp_path / "3")
    install_ext(root3, "forbidden", {"usr/lib/os-release": "ID=evil\n", "usr/bin/e": "e"})
    r = strata("sysext", "merge", f"--root={root3}", "--force")
    assert r.returncode == 1
    assert "forbidden" in r.stderr and "os-release" in r.stderr
    assert mounts_under(root3) == []


@isolated
def test_confext_merge(tmp_path: Path) -> None:
    root = make_root(tmp_path, files={"etc/host.conf": "host\n"})
    install_ext(root, "conf", {"etc/app.conf": "app\n"}, confext=True, where="run/confexts",
                fmt="erofs")
    r = strata("confext", "merge", f"--root={root}")
    assert r.returncode == 0, r.stderr
    assert (root / "etc/app.conf").read_text() == "app\n"
    assert (root / "etc/host.conf").read_text() == "host\n"
    assert (root / "etc/.systemd-confext/confexts").read_text() == "conf\n"
    from strata.kernel import mountinfo

    top = mountinfo.top_mount_at(mountinfo.read(), str(root / "etc"))
    assert top is not None and top.fstype == "overlay" and top.source == "confext"
    assert {"ro", "nosuid", "nodev", "noexec"} <= set(top.mount_options)
    assert strata("confext", "unmerge", f"--root={root}").returncode == 0
    assert not (root / "etc/app.conf").exists()


@isolated
def test_refresh_replaces_and_unmerges(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    install_ext(root, "one", {"usr/bin/one": "1", "opt/one/x": "1"}, fmt="erofs")
    assert strata("sysext", "merge", f"--root={root}").returncode == 0
    (root / "var/lib/extensions/one.raw").unlink()
    install_ext(root, "two", {"usr/bin/two": "2"})
    r = strata("sysext", "refresh", f"--root={root}")
    assert r.returncode == 0, r.stderr
    assert (root / "usr/bin/two").read_text() == "2"
    assert not (root / "usr/bin/one").exists()
    # /opt got no content from the new set: it is unmerged
    assert not (root / "opt/one").exists()
    assert (root / "usr/.systemd-sysext/extensions").read_text() == "two\n"
    assert [m for m in mounts_under(root) if m.endswith("/usr")] == [str(root / "usr")]
    (root / "var/lib/extensions/two").rename(root / "two-gone")
    r = strata("sysext", "refresh", f"--root={root}")
    assert r.returncode == 0, r.stderr
    assert mounts_under(root) == []


@isolated
def test_image_policy(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    install_ext(root, "dir", {"usr/bin/d": "d"})
    r = strata("sysext", "merge", f"--root={root}", "--image-policy=root=verity+signed")
    assert r.returncode == 0, r.stderr  # directories are not subject to image policies
    assert strata("sysext", "unmerge", f"--root={root}").returncode == 0
    raw = install_ext(root, "img", {"usr/bin/i": "i"}, fmt="erofs")
    r = strata("sysext", "merge", f"--root={root}", "--image-policy=root=verity+signed")
    assert r.returncode == 1
    assert str(raw) in r.stderr and "Image does not match image policy" in r.stderr
    assert "'unprotected' but 'verity+signed' was required" in r.stderr
    assert mounts_under(root) == []
    ok = strata("sysext", "merge", f"--root={root}", "--image-policy=root=unprotected")
    assert ok.returncode == 0, ok.stderr
    assert (root / "usr/bin/i").read_text() == "i"
    bad = strata("sysext", "refresh", f"--root={root}", "--image-policy=root=bogus")
    assert bad.returncode == 1 and "Unknown partition policy flag: bogus" in bad.stderr


@isolated
def test_scope_follows_the_running_system__v257(tmp_path: Path) -> None:
    """v257 takes the scope from in_initrd() of the running system ($SYSTEMD_IN_INITRD
    overrides), not from <root>/etc/initrd-release as v262 does."""
    root = make_root(tmp_path, files={"etc/initrd-release": "ID=debian\n"})
    install_ext(root, "sys", {"usr/bin/s": "s"}, {"ID": "_any", "SYSEXT_SCOPE": "system"})
    install_ext(root, "ird", {"usr/bin/i": "i"}, {"ID": "_any", "SYSEXT_SCOPE": "initrd"})
    r = strata("sysext", "merge", f"--root={root}")
    assert r.returncode == 0, r.stderr
    assert (root / "usr/bin/s").exists() and not (root / "usr/bin/i").exists()
    assert strata("sysext", "unmerge", f"--root={root}").returncode == 0
    r = strata("sysext", "merge", f"--root={root}", env={"SYSTEMD_IN_INITRD": "1"})
    assert r.returncode == 0, r.stderr
    assert (root / "usr/bin/i").exists() and not (root / "usr/bin/s").exists()


def _ddi(path: Path, parts: list[tuple[str, Path]]) -> Path:
    """A GPT disk image made by sfdisk, each file system in its own partition."""
    import subprocess

    from strata.arch import native
    from strata.images.gpt import PartitionRole, type_uuid_for

    lines, start, placed = ["label: gpt"], 2048, []
    for role, fs in parts:
        sectors = -(-fs.stat().st_size // 512) + 8
        guid = type_uuid_for(PartitionRole(role), native())
        lines.append(f"start={start}, size={sectors}, type={guid}")
        placed.append((start, fs))
        start += -(-sectors // 2048) * 2048
    with open(path, "wb") as f:
        f.truncate((start + 2048) * 512)
    subprocess.run(["sfdisk", "--quiet", str(path)], input="\n".join(lines) + "\n", text=True,
                   check=True, capture_output=True)
    with open(path, "r+b") as f:
        for sector, fs in placed:
            f.seek(sector * 512)
            f.write(fs.read_bytes())
    return path


@isolated
def test_gpt_disk_images(tmp_path: Path) -> None:
    from tests.helpers import ext_tree, mkfs

    root = make_root(tmp_path)
    dest = root / "var/lib/extensions"
    dest.mkdir(parents=True, exist_ok=True)
    # a DDI with a root partition (erofs)
    tree = ext_tree(tmp_path, "rootddi", {"usr/bin/rootddi": "r", "opt/rootddi/f": "r"},
                    {"ID": "_any"})
    _ddi(dest / "rootddi.raw", [("root", mkfs(tree, tmp_path / "rootddi.erofs"))])
    # a usr-only DDI (squashfs): systemd mounts it on /usr of an empty root
    usr = tmp_path / "usrtree"
    (usr / "lib/extension-release.d").mkdir(parents=True)
    (usr / "lib/extension-release.d/extension-release.usrddi").write_text("ID=_any\n")
    (usr / "bin").mkdir()
    (usr / "bin/usrddi").write_text("u")
    _ddi(dest / "usrddi.raw", [("usr", mkfs(usr, tmp_path / "usr.sqfs", "squashfs"))])
    listing = json.loads(strata("sysext", "list", f"--root={root}", "--json=short").stdout)
    assert [(d["name"], d["type"]) for d in listing] == [("rootddi", "raw"), ("usrddi", "raw")]
    r = strata("sysext", "merge", f"--root={root}")
    assert r.returncode == 0, r.stderr
    assert (root / "usr/bin/rootddi").read_text() == "r"
    assert (root / "opt/rootddi/f").read_text() == "r"
    assert (root / "usr/bin/usrddi").read_text() == "u"
    assert (root / "usr/.systemd-sysext/extensions").read_text() == "rootddi\nusrddi\n"
    assert strata("sysext", "unmerge", f"--root={root}").returncode == 0
    assert mounts_under(root) == []


@isolated
def test_names_with_control_characters_are_reported(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    install_ext(root, "good", {"usr/bin/g": "g"})
    install_ext(root, "bad", {"usr/bin/b": "b"}, filename="bad\x01name")
    install_ext(root, "raw", {"usr/bin/r": "r"}, fmt="erofs", filename="tab\tname.raw")
    for verb in ("list", "merge"):
        r = strata("sysext", verb, f"--root={root}")
        assert r.returncode == 0, r.stderr
        lines = [x for x in r.stderr.splitlines() if "not a valid image name" in x]
        assert len(lines) == 2, r.stderr
        assert any("bad\\x01name" in x and "control characters" in x for x in lines)
        assert any("tab\\tname" in x for x in lines)
    assert (root / "usr/bin/g").exists() and not (root / "usr/bin/b").exists()


@isolated
def test_truncated_image_and_malformed_release(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    install_ext(root, "ok", {"usr/bin/ok": "ok"})
    raw = install_ext(root, "cut", {"usr/bin/big": os.urandom(300_000).hex()}, fmt="erofs")
    data = raw.read_bytes()
    raw.write_bytes(data[: len(data) // 3])
    r = strata("sysext", "merge", f"--root={root}")
    assert r.returncode == 1
    errors = [line for line in r.stderr.splitlines() if str(raw) in line]
    assert len(errors) == 1 and "truncated" in errors[0], r.stderr
    assert mounts_under(root) == []
    raw.unlink()

    bad = install_ext(root, "badrel", {"usr/bin/b": "b"})
    (bad / "usr/lib/extension-release.d/extension-release.badrel").write_bytes(
        b"ID=_any\nVERSION_ID=\xff\xfe\n")
    r = strata("sysext", "merge", f"--root={root}")
    assert r.returncode == 0, r.stderr  # systemd ignores such an image, and so do we...
    line = next(x for x in r.stderr.splitlines() if "badrel" in x and "ignoring" in x)
    assert "extension-release.badrel" in line and "UTF-8" in line  # ...but say why
    assert (root / "usr/bin/ok").exists() and not (root / "usr/bin/b").exists()


@isolated
def test_explicit_image_set_with_order_and_lenience(tmp_path: Path) -> None:
    """strata ext's use of the engine: exactly these images, in this order, broken ones
    skipped and reported while the rest merge."""
    from strata.discover import discover
    from strata.engine import ops
    from strata.engine.settings import resolve
    from strata.model import ExtClass

    root = make_root(tmp_path)
    install_ext(root, "alpha", {"usr/share/x": "alpha"})
    install_ext(root, "beta", {"usr/share/x": "beta"}, fmt="erofs")
    install_ext(root, "gamma", {"usr/share/g": "g"})  # found by discovery, but not in the set
    garbage = root / "var/lib/extensions/junk.raw"
    garbage.write_bytes(os.urandom(70_000))
    found = discover(ExtClass.SYSEXT, root=str(root), arch="x86-64").by_name()
    chosen = (found["alpha"], found["beta"], found["junk"])
    settings = resolve(ExtClass.SYSEXT, {}, root=str(root))
    outcome = ops.merge(settings, {}, images=ops.ImageSet(chosen, order=("beta", "alpha")))
    assert outcome.merged == ("alpha", "beta")
    assert [name for name, _ in outcome.skipped] == ["junk"]
    assert "junk" in outcome.skipped[0][1]
    assert (root / "usr/share/x").read_text() == "alpha"  # alpha is on top, by the order
    assert not (root / "usr/share/g").exists()
    # the marker still lists names by version order, as systemd writes them
    assert (root / "usr/.systemd-sysext/extensions").read_text() == "alpha\nbeta\n"
    outcome = ops.refresh(settings, {}, images=ops.ImageSet(chosen[:2]))
    assert (root / "usr/share/x").read_text() == "beta"  # default: highest name on top
    strict = ops.ImageSet(chosen, lenient=False)
    with pytest.raises(StrataError):
        ops.refresh(settings, {}, images=strict)
    assert (root / "usr/share/x").read_text() == "beta"  # a failed refresh changes nothing
