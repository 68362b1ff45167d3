"""`strata ext logs NAME [-f]`: the journal of an extension's units.

Its units are the services it declares (AVOCADO_ENABLE_SERVICES=, STRATA_SERVICES=), the units
its hooks restart (EXTENSION_RESTART_UNITS=, EXTENSION_RELOAD_OR_RESTART_UNITS=) and the unit
files it ships in /usr/lib/systemd/system (a confext: /etc/systemd/system), in that order.
The command is `journalctl --no-pager -u UNIT... [--follow]`; it runs only when journald runs
(its socket /run/systemd/journal/socket exists) and the root is "/". Otherwise the plan says
why, and what would have run.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from strata.errors import StrataError
from strata.manage.api import LogsPlan
from strata.manage.store import Probe, StoreEntry
from strata.model import ExtClass

JOURNAL_SOCKET = "/run/systemd/journal/socket"
RESTART_KEYS = ("EXTENSION_RESTART_UNITS", "EXTENSION_RELOAD_OR_RESTART_UNITS")
UNIT_DIRS = {ExtClass.SYSEXT: "/usr/lib/systemd/system", ExtClass.CONFEXT: "/etc/systemd/system"}
#: unit types worth a journal (not .target, .slice, .device...)
LOGGED_TYPES = (".service", ".socket", ".timer", ".mount", ".path")


def shipped_units(entry: StoreEntry, probe: Probe) -> list[str]:
    """The unit files of the types in LOGGED_TYPES directly in the image's unit directory
    (templates, "foo@.service", have no journal of their own: left out)."""
    from strata.check.view import open_image
    from strata.images.base import FileKind
    from strata.manage.hooks import unit_name_is_valid

    out: list[str] = []
    try:
        fs, _layout = open_image(entry.real)
    except StrataError:
        return out
    try:
        for r in probe.releases:
            directory = UNIT_DIRS[r.cls]
            try:
                names = sorted(fs.listdir(fs.resolve(directory)))
            except StrataError:
                continue
            for name in names:
                if not name.endswith(LOGGED_TYPES) or not unit_name_is_valid(name):
                    continue
                try:
                    kind = fs.lstat(f"{directory}/{name}").kind
                except StrataError:
                    continue
                if kind in (FileKind.REGULAR, FileKind.SYMLINK):
                    out.append(name)
    finally:
        fs.close()
    return out


def units(entry: StoreEntry, probe: Probe, name: str) -> tuple[str, ...]:
    from strata.manage import services
    from strata.manage.deps import split_names
    from strata.manage.hooks import unit_name_is_valid

    pairs = [kv for r in probe.releases for kv in (r.pairs or tuple(r.fields.items()))]
    out: dict[str, None] = dict.fromkeys(services.declared(pairs, source=name))
    for key, value in pairs:
        if key in RESTART_KEYS:
            out.update(dict.fromkeys(u for u in split_names(value)
                                     if unit_name_is_valid(u) and not u.startswith("-")))
    out.update(dict.fromkeys(shipped_units(entry, probe)))
    return tuple(out)


def command(units: Sequence[str], *, follow: bool) -> tuple[str, ...]:
    """(pure) the journalctl argv."""
    argv = ["journalctl", "--no-pager"]
    for u in units:
        argv += ["-u", u]
    if follow:
        argv.append("--follow")
    return tuple(argv)


def logs_plan(root: str, name: str, *, follow: bool = False,
              journal_socket: str = JOURNAL_SOCKET) -> LogsPlan:
    """What `strata ext logs` runs for `name` (unknown: NOT_FOUND), and whether it can."""
    from strata.manage.enabled import host_version_id
    from strata.manage.ext import _enabled, _not_found, _probe_of, _root, _scan, resolve_name

    root = _root(root)
    entries, probes = _scan(root)
    entry = next((e for link, e in _enabled(root, host_version_id(root), entries)
                  if e is not None and name in (e.name, e.image_name, link.link)), None)
    entry = entry or resolve_name(entries, probes, name)
    if entry is None:
        raise _not_found(name)
    probe = _probe_of(probes, entry)
    if probe is None or probe.problem is not None:
        return LogsPlan(argv=(), units=(), runnable=False,
                        reason=f"Cannot tell the units of '{entry.name}': "
                               f"{probe.problem if probe else 'its image is gone'}")
    found = units(entry, probe, entry.name)
    if not found:
        return LogsPlan(argv=(), units=(), runnable=False,
                        reason=f"Extension '{entry.name}' declares no services and ships no "
                               "units: it has no journal of its own.")
    argv = command(found, follow=follow)
    why = why_not(root, journal_socket, journal=os.path.exists(journal_socket))
    return LogsPlan(argv=argv, units=found, runnable=why is None, reason=why)


def why_not(root: str, journal_socket: str, *, journal: bool) -> str | None:
    """(pure) Why journalctl cannot show the root's journal here, or None."""
    if root != "/":
        return f"{root} is not the running system: its journal is not served here."
    if not journal:
        return f"journald is not running (no {journal_socket}): there is no journal to show."
    return None
