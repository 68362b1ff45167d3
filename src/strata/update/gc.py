"""Retention: after a successful update, keep the version in use and the `keep` newest older
versions of each updated extension in the store, and delete the rest.

Only Strata's store (/var/lib/strata/extensions) is touched, never systemd's directories, and
an image that any OS release's enabled set links to is always kept (an A/B peer slot may
still boot into it).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from strata import log
from strata.errors import StrataError
from strata.record import record
from strata.update.offers import version_sort_key


@record
class Version:
    path: str
    version: str | None
    protected: bool  # in use, or enabled for some OS release


def select(versions: Sequence[Version], keep: int) -> list[str]:
    """The paths to delete (pure): everything unprotected beyond the `keep` newest
    unprotected versions (an unversioned image counts as the oldest)."""
    spare = [v for v in versions if not v.protected]
    spare.sort(key=lambda v: (v.version is not None, version_sort_key(v.version or "")),
               reverse=True)
    return [v.path for v in spare[keep:]]


def enabled_anywhere(root: str) -> set[str]:
    """Host paths of every image some OS release's enabled set links to."""
    from strata.fsutil import join_root
    from strata.manage import enabled

    base = join_root(root, enabled.OS_RELEASES_DIR)
    try:
        releases = [d for d in os.listdir(base) if enabled.release_problem(d) is None]
    except OSError:
        return set()
    out: set[str] = set()
    for release in releases:
        try:
            links = enabled.read_links(root, release)
        except StrataError:
            continue
        out.update(link.real for link in links if link.real is not None)
    return out


def collect(root: str, names: Iterable[str], keep: int) -> list[str]:
    """Delete old versions of `names` from the store; returns the deleted paths."""
    from strata.manage import fsio, store

    wanted = set(names)
    protected = enabled_anywhere(root)
    by_name: dict[str, list[Version]] = {}
    for e in store.scan(root):
        if e.origin != store.STORE_ORIGIN or e.name not in wanted or e.is_directory:
            continue
        if os.path.dirname(e.path) != os.path.dirname(e.real):
            continue  # a symlink in the store: leave it and what it points to alone
        version = store.probe(e).version(e.file_version)
        by_name.setdefault(e.name, []).append(
            Version(path=e.path, version=version, protected=e.real in protected))
    deleted: list[str] = []
    for name in sorted(by_name):
        for path in select(by_name[name], keep):
            if fsio.remove(os.path.dirname(path), os.path.basename(path)):
                deleted.append(path)
                log.info(f"Removed old version {os.path.basename(path)} of '{name}'.")
    if deleted:
        fsio.fsync_dir(os.path.dirname(deleted[0]))
    return deleted
