"""The daemon's settings from strata.toml, table [serve]:

    [serve]
    group = "strata"    # members may Merge/Unmerge/Refresh/Enable/Disable (default: root only)

The file belongs to the root being managed (<root>/etc/strata/strata.toml); a missing file
means the defaults. Keys of other tables are other commands' business and are not looked at.
"""

from __future__ import annotations

from strata import log
from strata.errors import ErrorKind, StrataError
from strata.fsutil import join_root
from strata.record import record

CONFIG_FILE = "/etc/strata/strata.toml"
_KNOWN = ("group",)


@record
class ServeConfig:
    group: str | None = None


def config_path(root: str) -> str:
    return join_root(root, CONFIG_FILE)


def parse(text: str, source: str) -> ServeConfig:
    """[serve] of a strata.toml text; `source` names the file in errors (one line each)."""
    import tomllib

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise StrataError(f"{source}: {e}", kind=ErrorKind.CONFIGURATION) from None
    table = data.get("serve", {})
    if not isinstance(table, dict):
        raise StrataError(f"{source}: [serve] must be a table", kind=ErrorKind.CONFIGURATION)
    for key in table:
        if key not in _KNOWN:
            log.warning(f"{source}: unknown key '{key}' in [serve], ignoring")
    group = table.get("group")
    if group is not None and (not isinstance(group, str) or not group):
        raise StrataError(f"{source}: [serve] group must be a non-empty string",
                          kind=ErrorKind.CONFIGURATION)
    return ServeConfig(group=group)


def load(path: str) -> ServeConfig:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return ServeConfig()
    except (OSError, UnicodeDecodeError) as e:
        raise StrataError(f"{path}: cannot read: {e}", kind=ErrorKind.CONFIGURATION) from None
    return parse(text, path)
