"""`strata ext` on the command line: usage errors, help, tables and JSON (nothing mounted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import install_ext, make_root, strata

S = "var/lib/strata/extensions"


@pytest.mark.parametrize(("args", "stderr"), [
    (["ext", "bogus"], "Unknown command verb 'bogus'."),
    (["ext", "status", "extra"], "Too many arguments."),
    (["ext", "--json=yaml"], "Unknown argument to --json=: yaml"),
    (["ext", "list", "--priority=3"], "Option --priority is only valid with 'enable'."),
    (["ext", "merge", "--all"], "Option --all is only valid with 'disable' and 'verify'."),
    (["ext", "refresh", "--unmount"], "Option --unmount is only valid with 'unmerge'."),
    (["ext", "status", "--os-release=1"],
     "Option --os-release is only valid with 'enable' and 'disable'."),
    (["ext", "enable", "x", "--priority=high"], "Failed to parse --priority= value: high"),
    (["ext", "enable"], "No extension to enable given."),
    (["ext", "disable", "--root=/"], "No extension to disable given"),
    (["ext", "disable", "a", "--all"], "Give extension names or --all, not both."),
    (["ext", "--frobnicate"], "strata ext: unrecognized option '--frobnicate'"),
    (["ext", "list", "--root=/nonexistent/root"], "/nonexistent/root"),
])
def test_bad_usage(args: list[str], stderr: str) -> None:
    r = strata(*args)
    assert r.returncode == 1
    assert stderr in r.stderr
    assert r.stdout == ""


def test_help() -> None:
    top = strata("--help")
    assert "ext [VERB] [OPTIONS]" in top.stdout
    r = strata("ext", "--help")
    assert r.returncode == 0
    for verb in ("status", "list", "enable", "disable", "merge", "unmerge", "refresh"):
        assert f"\n  {verb}" in r.stdout
    enable = strata("ext", "enable", "--help")
    assert enable.returncode == 0 and enable.stdout.startswith("strata ext enable NAME...")
    assert "--priority=N" in enable.stdout
    assert strata("ext", "help", "unmerge").stdout.startswith("strata ext unmerge")


def test_list_status_enable_disable(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    R = f"--root={root}"  # noqa: N806
    empty = strata("ext", "list", R)
    assert empty.returncode == 0 and "No extensions found." in empty.stderr
    assert strata("ext", "status", R, "--json=short").stdout == "[]\n"

    install_ext(root, "tool-1.2", {"usr/share/t": "t"}, where=S, fmt="erofs")
    install_ext(root, "conf", {"etc/c": "c"}, where=S, confext=True)
    listing = json.loads(strata("ext", "list", R, "--json=short").stdout)
    assert listing == [
        {"name": "conf", "version": None, "path": str(root / S / "conf"), "isSysext": False,
         "isConfext": True, "isDirectory": True},
        {"name": "tool", "version": "1.2", "path": str(root / S / "tool-1.2.raw"),
         "isSysext": True, "isConfext": False, "isDirectory": False},
    ]
    table = strata("ext", "list", R).stdout.splitlines()
    assert table[0].split() == ["NAME", "VERSION", "CLASS", "PATH"]
    assert table[1].split() == ["conf", "-", "confext", str(root / S / "conf")]

    r = strata("ext", "enable", "tool", "--priority=4", R, "--json=short")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"enabled": 1, "failed": 0}
    assert "Enabled extension 'tool'" in r.stderr and "for OS release 12" in r.stderr

    bad = strata("ext", "enable", "tool", "nosuch", R)
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines() == [
        "Extension 'nosuch' not found in /var/lib/strata/extensions or the extension "
        "directories."]

    status = strata("ext", "status", R, "--no-legend").stdout.splitlines()
    assert [line.split()[:6] for line in status] == [
        ["conf", "-", "confext", "no", "no", "store"],
        ["tool", "1.2", "sysext", "yes", "no", "store"]]
    data = json.loads(strata("ext", "status", R, "--json=pretty").stdout)
    assert data[1]["isEnabled"] is True and data[1]["isMerged"] is False
    assert len(data[1]["imageId"]) == 12 and data[0]["imageId"] is None

    r = strata("ext", "disable", "conf", "tool", R, "--json=short")
    assert r.returncode == 1  # conf was not enabled
    assert json.loads(r.stdout) == {"disabled": 1, "failed": 1}
    assert "Extension 'conf' is not enabled for OS release 12." in r.stderr
