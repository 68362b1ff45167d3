"""The update journal: <root>/var/lib/strata/update/journal.json, rewritten atomically (and
synced) before each step's effects can be seen, removed when the update is over.

    {"version": 1, "id": "...", "started": "<ISO 8601>", "os_release": "12",
     "step": "enabled", "merged_before": true,
     "links_before": {"app_1.2.raw": "../../extensions/app_1.2.raw", ...},
     "priorities_before": {"app": 10} | null,
     "items": [{"name": "app", "file": "app_1.3.raw", "version": "1.3", "sha256": "...",
                "length": 123, "old_version": "1.2", "existed": false}],
     "reason": null, "reject": false}

`step` is the last step that completed. A run that finds a journal finishes what it records
before anything else (recovery_for decides how, purely from the step):

    planned, downloaded, installed  nothing the merge uses has changed (the enabled set may
                                    be half switched while installing: it is put back):
                                    discard the new store files; staged downloads stay, to
                                    be resumed
    enabled                         the enabled set names the new versions, the refresh may
                                    or may not have happened: roll back
    refreshed                       the new versions are merged (or a reboot merged them):
                                    run the health check again, then commit or roll back
    healthy                         commit: collect old versions, done
    rolling-back                    finish the roll-back (every step of it can be repeated)
"""

from __future__ import annotations

import enum
import json
import os
from collections.abc import Mapping
from typing import Any

from strata.errors import ErrorKind, StrataError
from strata.fsutil import join_root, read_optional
from strata.record import record, replace

STATE_DIR = "/var/lib/strata/update"
JOURNAL_FILE = "journal.json"
FORMAT_VERSION = 1


class Step(enum.Enum):
    PLANNED = "planned"
    DOWNLOADED = "downloaded"
    INSTALLED = "installed"
    ENABLED = "enabled"
    REFRESHED = "refreshed"
    HEALTHY = "healthy"
    ROLLING_BACK = "rolling-back"


class Recovery(enum.Enum):
    DISCARD = "discard"
    ROLL_BACK = "roll-back"
    RECHECK = "recheck"
    COMMIT = "commit"


_RECOVERY = {
    Step.PLANNED: Recovery.DISCARD,
    Step.DOWNLOADED: Recovery.DISCARD,
    Step.INSTALLED: Recovery.DISCARD,
    Step.ENABLED: Recovery.ROLL_BACK,
    Step.REFRESHED: Recovery.RECHECK,
    Step.HEALTHY: Recovery.COMMIT,
    Step.ROLLING_BACK: Recovery.ROLL_BACK,
}


def recovery_for(step: Step) -> Recovery:
    return _RECOVERY[step]


@record
class Item:
    """One extension the update changes."""

    name: str
    file: str  # the new image's file name in the store
    version: str
    sha256: str
    length: int
    old_version: str | None = None
    old_path: str | None = None  # the image enabled before (host path), if any
    existed: bool = False  # the store already had `file` (identical): not ours to delete


@record
class Journal:
    id: str
    started: str
    os_release: str
    step: Step
    merged_before: bool
    links_before: Mapping[str, str]
    priorities_before: Mapping[str, int] | None
    items: tuple[Item, ...]
    reason: str | None = None
    #: rolling back because the new versions failed (not merely interrupted): the device
    #: will not take them again
    reject: bool = False

    def at(self, step: Step, reason: str | None = None, *, reject: bool | None = None
           ) -> Journal:
        return replace(self, step=step, reason=reason if reason is not None else self.reason,
                       reject=self.reject if reject is None else reject)


def to_json(j: Journal) -> dict[str, Any]:
    return {
        "version": FORMAT_VERSION, "id": j.id, "started": j.started,
        "os_release": j.os_release, "step": j.step.value, "merged_before": j.merged_before,
        "links_before": dict(sorted(j.links_before.items())),
        "priorities_before": (dict(sorted(j.priorities_before.items()))
                              if j.priorities_before is not None else None),
        "items": [{"name": i.name, "file": i.file, "version": i.version, "sha256": i.sha256,
                   "length": i.length, "old_version": i.old_version, "old_path": i.old_path,
                   "existed": i.existed} for i in j.items],
        "reason": j.reason,
        "reject": j.reject,
    }


def _str_map(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items())


def from_json(data: Any, *, source: str) -> Journal:
    """The journal a file holds; anything unexpected is a CONFIGURATION error naming it."""
    def bad(why: str) -> StrataError:
        return StrataError(f"{source}: {why}", kind=ErrorKind.CONFIGURATION,
                           hint="an update journal this version cannot read: inspect it, "
                                "and remove it to carry on")

    if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
        raise bad(f"not an update journal of format {FORMAT_VERSION}")
    try:
        step = Step(data.get("step"))
    except ValueError:
        raise bad(f"unknown step {data.get('step')!r}") from None
    prios = data.get("priorities_before")
    if prios is not None and not (isinstance(prios, dict) and all(
            isinstance(k, str) and type(v) is int for k, v in prios.items())):
        raise bad("bad priorities_before")
    links = data.get("links_before")
    if not isinstance(links, dict) or not _str_map(links):
        raise bad("bad links_before")
    items = []
    for raw in data.get("items") or []:
        if not isinstance(raw, dict):
            raise bad("bad item")
        try:
            items.append(Item(name=str(raw["name"]), file=str(raw["file"]),
                              version=str(raw["version"]), sha256=str(raw["sha256"]),
                              length=int(raw["length"]), old_version=raw.get("old_version"),
                              old_path=raw.get("old_path"),
                              existed=bool(raw.get("existed", False))))
        except (KeyError, TypeError, ValueError) as e:
            raise bad(f"bad item ({e})") from None
        if "/" in items[-1].file or items[-1].file.startswith("."):
            raise bad(f"bad file name {items[-1].file!r}")
    for key in ("id", "started", "os_release"):
        if not isinstance(data.get(key), str):
            raise bad(f"bad {key}")
    return Journal(id=data["id"], started=data["started"], os_release=data["os_release"],
                   step=step, merged_before=bool(data.get("merged_before")),
                   links_before=dict(links), priorities_before=prios, items=tuple(items),
                   reason=data.get("reason") if isinstance(data.get("reason"), str) else None,
                   reject=data.get("reject") is True)


def state_dir(root: str) -> str:
    return join_root(root, STATE_DIR)


def path(root: str) -> str:
    return os.path.join(state_dir(root), JOURNAL_FILE)


def load(root: str) -> Journal | None:
    p = path(root)
    raw = read_optional(p)
    if raw is None:
        return None
    try:
        data = json.loads(raw)
    except ValueError as e:
        raise StrataError(f"{p}: not JSON ({e})", kind=ErrorKind.CONFIGURATION) from e
    return from_json(data, source=p)


def save(root: str, j: Journal) -> None:
    from strata.manage import fsio

    directory = state_dir(root)
    fsio.make_dirs(directory)
    fsio.replace_file(directory, JOURNAL_FILE,
                      (json.dumps(to_json(j), indent=2) + "\n").encode(), mode=0o600)
    fsio.fsync_dir(directory)


def clear(root: str) -> None:
    from strata.manage import fsio

    if fsio.remove(state_dir(root), JOURNAL_FILE):
        fsio.fsync_dir(state_dir(root))
