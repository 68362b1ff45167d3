"""`strata ext` settings from <root>/etc/strata/strata.toml:

    [ext]
    sysext_mutable = "ephemeral"    # no|auto|yes|import|ephemeral|ephemeral-import
    confext_mutable = "ephemeral"
    image_policy = "root=signed+absent:usr=signed+absent"   # optional, systemd's syntax

Both default to avocadoctl's `ephemeral`: writes to the merged /usr, /opt and /etc land in a
tmpfs and vanish on unmerge. The values are passed to the engine as --mutable= would be, so
they take precedence over $SYSTEMD_SYSEXT_MUTABLE_MODE / $SYSTEMD_CONFEXT_MUTABLE_MODE.
`image_policy` (default: the engine's, systemd's class defaults) is the image policy images
must satisfy to be merged and to be installed (`strata ext install` refuses, `merge` skips what
it refuses), as --image-policy= would be. Other sections and keys are left to the commands that
own them.
"""

from __future__ import annotations

from typing import Any

from strata.errors import ErrorKind, StrataError
from strata.fsutil import join_root, read_optional
from strata.model import ExtClass, MutableMode
from strata.record import record

CONFIG_FILE = "/etc/strata/strata.toml"
DEFAULT_MUTABLE = MutableMode.EPHEMERAL


@record
class ExtConfig:
    sysext_mutable: MutableMode = DEFAULT_MUTABLE
    confext_mutable: MutableMode = DEFAULT_MUTABLE
    image_policy: str | None = None

    def mutable(self, cls: ExtClass) -> MutableMode:
        return self.sysext_mutable if cls is ExtClass.SYSEXT else self.confext_mutable


def read_document(root: str) -> tuple[str, dict[str, Any]] | None:
    """(path, parsed TOML) of <root>/etc/strata/strata.toml, None when there is none; an
    unreadable or malformed file is an error naming it. Shared by the commands that keep
    their sections in it."""
    path = join_root(root, CONFIG_FILE)
    data = read_optional(path)
    if data is None:
        return None
    import tomllib

    try:
        return path, tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise StrataError(f"{path}: {e}", kind=ErrorKind.CONFIGURATION) from e


def load(root: str) -> ExtConfig:
    """The [ext] settings; a missing file gives the defaults, a malformed one or a bad value
    is a CONFIGURATION error naming the file."""
    found = read_document(root)
    if found is None:
        return ExtConfig()
    path, doc = found
    section = doc.get("ext", {})
    if not isinstance(section, dict):
        raise StrataError(f"{path}: [ext] must be a table", kind=ErrorKind.CONFIGURATION)
    values: dict[str, MutableMode] = {}
    for key in ("sysext_mutable", "confext_mutable"):
        if key not in section:
            continue
        raw = section[key]
        mode = _mode(raw) if isinstance(raw, str) else None
        if mode is None:
            raise StrataError(
                f"{path}: [ext] {key} = {raw!r} is not a mutable mode",
                hint="one of: " + ", ".join(m.value for m in MutableMode),
                kind=ErrorKind.CONFIGURATION)
        values[key] = mode
    if "image_policy" in section:
        raw = section["image_policy"]
        if not isinstance(raw, str):
            raise StrataError(f"{path}: [ext] image_policy must be a string",
                              kind=ErrorKind.CONFIGURATION)
        from strata.policy import parse

        try:
            parse(raw)
        except StrataError as e:
            raise StrataError(f"{path}: [ext] image_policy: {e.message}",
                              kind=ErrorKind.CONFIGURATION) from e
        image_policy: str | None = raw
    else:
        image_policy = None
    return ExtConfig(sysext_mutable=values.get("sysext_mutable", DEFAULT_MUTABLE),
                     confext_mutable=values.get("confext_mutable", DEFAULT_MUTABLE),
                     image_policy=image_policy)


def _mode(value: str) -> MutableMode | None:
    from strata.engine.settings import parse_mutable

    return parse_mutable(value)
