"""Unmerge hooks read the release data of what is merged from the live merged tree (in a
private mount namespace, against a scratch root)."""

from __future__ import annotations

from pathlib import Path

import pytest

from strata.manage.api import MergedExtension
from strata.manage.hooks import (
    Content,
    merged_tree_pairs,
    plan_after_unmerge,
    plan_before_unmerge,
)
from strata.release import parse_env, parse_env_pairs
from tests.helpers import install_ext, isolated, make_root, mkfs, strata, write_tree

pytestmark = pytest.mark.privileged

ON_DISK = ("ID=_any\nAVOCADO_ON_UNMERGE=\"systemctl stop a.service\"\n"
           "AVOCADO_ON_UNMERGE=a-clean\nEXTENSION_RELOAD_MANAGER=1\n")
RECORD = "ID=_any\nAVOCADO_ON_UNMERGE=stale-record\n"


def record(name: str, path: Path, text: str, cls: str = "sysext") -> MergedExtension:
    return MergedExtension(name, cls, str(path), parse_env(text, source=name),
                           tuple(parse_env_pairs(text, source=name)))


def _no_content(_ext: MergedExtension) -> Content:
    return Content(False, False)


@isolated
def test_unmerge_plans_read_the_merged_tree(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    # the release file as merged, with a repeated key; the record (e.g. built from an image
    # replaced since) says something else
    write_tree(tmp_path / "tree-a", {
        "usr/bin/a": "a\n", "usr/lib/extension-release.d/extension-release.a": ON_DISK})
    a = mkfs(tmp_path / "tree-a", root / "var/lib/extensions/a.raw")
    c = install_ext(root, "c", {"etc/c.conf": "c\n"},
                    {"ID": "_any", "AVOCADO_ON_UNMERGE": "c-clean"}, confext=True,
                    where="var/lib/confexts")
    for cls in ("sysext", "confext"):
        r = strata(cls, "merge", f"--root={root}")
        assert r.returncode == 0, r.stderr
    assert (root / "usr/bin/a").exists()

    ra = record("a", a, RECORD)
    rc = record("c", c, "ID=_any\n", cls="confext")
    assert merged_tree_pairs(str(root), ra) == tuple(parse_env_pairs(ON_DISK, source="x"))
    assert merged_tree_pairs(str(root), rc) == (("ID", "_any"), ("AVOCADO_ON_UNMERGE", "c-clean"))
    # not merged under that name: the record is used
    assert merged_tree_pairs(str(root), record("zz", a, RECORD)) is None

    before = plan_before_unmerge([ra, rc], root=str(root))
    assert [c.argv for c in before] == [("systemctl", "stop", "a.service"), ("a-clean",),
                                        ("c-clean",)]
    after = plan_after_unmerge([ra, rc], root=str(root), content=_no_content)
    assert [(c.argv, c.sources) for c in after] == [(("systemctl", "daemon-reload"), ("a",))]

    for cls in ("sysext", "confext"):
        r = strata(cls, "unmerge", f"--root={root}")
        assert r.returncode == 0, r.stderr
    # the tree is gone: the records' own data is all there is
    assert merged_tree_pairs(str(root), ra) is None
    assert [c.argv for c in plan_before_unmerge([ra, rc], root=str(root))] == [("stale-record",)]
    assert plan_after_unmerge([ra, rc], root=str(root), content=_no_content) == ()
