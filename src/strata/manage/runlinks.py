"""The enabled set exposed where stock systemd looks: links in <root>/run/extensions and
<root>/run/confexts, rebuilt before every merge (as avocadoctl does), so that
`systemd-sysext merge` would pick up the same images Strata merges.

A link is named after the name its release file is found under (`app.raw`, or `app` for a
directory), which is the name systemd's strict lookup needs; it points at the image with a
relative path. Each link is replaced atomically; links that are no longer wanted are removed.
Only symlinks are touched: an image someone put there is left alone (and is itself a store
entry, see store.py).
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping

from strata.errors import StrataError
from strata.fsutil import chase
from strata.manage import fsio
from strata.manage.store import RUN_DIRS
from strata.model import ExtClass
from strata.record import record


@record
class Synced:
    links: Mapping[str, str]  # link name -> host path of the link (or of the image itself)
    occupied: tuple[str, ...] = ()  # wanted names taken by something that is not our link


def run_dir(root: str, cls: ExtClass) -> str:
    return chase(RUN_DIRS[cls], root, nonexistent=True)


def sync(root: str, cls: ExtClass, wanted: Mapping[str, str]) -> Synced:
    """Make the class's link directory hold exactly `wanted` (link name -> host path of the
    image) as links."""
    directory = run_dir(root, cls)
    fsio.make_dirs(directory)
    links: dict[str, str] = {}
    occupied: list[str] = []
    for name, image in wanted.items():
        path = os.path.join(directory, name)
        if os.path.realpath(image) == os.path.realpath(path) and not os.path.islink(path):
            links[name] = path  # the image itself lives here under that name
            continue
        if os.path.lexists(path) and not os.path.islink(path):
            occupied.append(name)
            continue
        target = os.path.relpath(os.path.realpath(image), os.path.realpath(directory))
        try:
            current: str | None = os.readlink(path)
        except OSError:
            current = None
        if current != target:
            fsio.replace_symlink(directory, name, target)
        links[name] = path
    clear(root, cls, keep=links.keys())
    return Synced(links=links, occupied=tuple(occupied))


def clear(root: str, cls: ExtClass, *, keep: Collection[str] = ()) -> int:
    """Remove our links (every symlink) from the class's link directory, except `keep`."""
    directory = run_dir(root, cls)
    try:
        names = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return 0
    except OSError as e:
        raise StrataError.from_os(e, f"Failed to read '{directory}'") from e
    keep_names = set(keep)
    n = 0
    for name in names:
        if name in keep_names or not os.path.islink(os.path.join(directory, name)):
            continue
        if fsio.remove(directory, name):
            n += 1
    return n
