"""Read-only queries: status and list. Kept apart from ops.py so that they start fast (they
need neither the image readers nor the kernel layer)."""

from __future__ import annotations

import errno
import os

from strata import log
from strata.engine import marker
from strata.engine.settings import Settings
from strata.errors import StrataError
from strata.fsutil import chase, join_root
from strata.record import record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from strata.discover import Extension


@record
class StatusRow:
    hierarchy: str
    extensions: tuple[str, ...] | None  # None: not merged
    since_us: int | None


def in_initrd() -> bool:
    """systemd v257's in_initrd(): $SYSTEMD_IN_INITRD if it parses, else whether the *running*
    system has /etc/initrd-release (whatever --root says; v262 looks at the root instead)."""
    from strata.parse import parse_boolean

    forced = os.environ.get("SYSTEMD_IN_INITRD")
    if forced is not None:
        value = parse_boolean(forced)
        if value is not None:
            return value
    return os.path.exists("/etc/initrd-release")


def native_arch() -> str:
    from strata.arch import native

    return native()


def resolved(h: str, root: str) -> str | None:
    try:
        return chase(h, root)
    except StrataError as e:
        if e.errno == errno.ENOENT:
            return None
        raise StrataError(f"Failed to resolve path to hierarchy '{join_root(root, h)}': "
                          f"{e.message}", kind=e.kind, errno=e.errno) from e


# --- status and list -------------------------------------------------------------------------


def status(settings: Settings) -> list[StatusRow]:
    rows: list[StatusRow] = []
    for h in settings.hierarchies:
        target = resolved(h, settings.root)
        if target is None:
            continue
        state = marker.read_merged(settings.cls, target, settings.root)
        if state is None:
            rows.append(StatusRow(h, None, None))
        else:
            rows.append(StatusRow(h, state.extensions, state.since_us))
    rows.sort(key=lambda r: [p for p in r.hierarchy.split("/") if p])
    return rows


def list_images(settings: Settings) -> list[Extension]:
    from strata.discover import discover

    result = discover(settings.cls, root=settings.discover_root, initrd=in_initrd(),
                      arch=native_arch())
    from strata.discover import SkipReason

    for skip in result.skipped:
        # A bad name is the user's mistake worth a line; the rest is systemd's debug chatter.
        if skip.reason is SkipReason.INVALID_NAME:
            log.warning(skip.message)
        else:
            log.debug(skip.message)
    return list(result.extensions)


