"""`strata update` settings: the [update] section of <root>/etc/strata/strata.toml.

    [update]
    repository = "https://updates.example.com/fleet"  # else the one `strata update --init` set
    extensions = ["app", "tools"]  # also keep these (installed and enabled if missing)
    keep = 2                        # old versions kept per extension in the store
    health_command = "/usr/libexec/app-selftest --quick"   # exit 0 = healthy
    health_units = ["app.service"]  # must be active after the settle time
    settle = 10                     # seconds to wait before checking (default: 10 with units)
    health_timeout = 300            # seconds the command may take
    ext_health = true               # also `strata ext health` of the updated extensions
    health_files = false            # ...including its files aspect, which reads every byte
                                    # (the images' hashes were just verified anyway)
    image_policy = "root=signed"    # downloaded images must satisfy it (systemd's syntax)
    timeout = 30                    # network timeout, seconds
    retries = 3                     # attempts per download (each resumes the last)

A missing file or section gives the defaults; a bad value is a CONFIGURATION error naming the
file and the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from strata.errors import ErrorKind, StrataError
from strata.record import record

DEFAULT_KEEP = 2
DEFAULT_SETTLE_WITH_UNITS = 10.0


@record
class UpdateConfig:
    repository: str | None = None
    extensions: tuple[str, ...] = ()
    keep: int = DEFAULT_KEEP
    health_command: tuple[str, ...] = ()
    health_units: tuple[str, ...] = ()
    settle: float | None = None  # None: 10 s when units are to be checked, else none
    health_timeout: float = 300.0
    image_policy: str | None = None
    ext_health: bool = True
    health_files: bool = False
    timeout: float = 30.0
    retries: int = 3

    @property
    def settle_seconds(self) -> float:
        if self.settle is not None:
            return self.settle
        return DEFAULT_SETTLE_WITH_UNITS if self.health_units else 0.0


def _bad(source: str, key: str, value: Any, what: str) -> StrataError:
    return StrataError(f"{source}: [update] {key} = {value!r} is not {what}",
                       kind=ErrorKind.CONFIGURATION)


def parse(doc: Mapping[str, Any], *, source: str) -> UpdateConfig:
    """The [update] table of a parsed TOML document (pure)."""
    section = doc.get("update", {})
    if not isinstance(section, dict):
        raise StrataError(f"{source}: [update] must be a table", kind=ErrorKind.CONFIGURATION)
    values: dict[str, Any] = {}
    known = set(UpdateConfig.__record_fields__)  # type: ignore[attr-defined]
    for key, value in section.items():
        if key not in known:
            raise StrataError(f"{source}: [update] has no setting '{key}'",
                              kind=ErrorKind.CONFIGURATION,
                              hint="settings: " + ", ".join(sorted(known)))
        values[key] = _value(source, key, value)
    return UpdateConfig(**values)


def _value(source: str, key: str, value: Any) -> Any:
    if key in ("repository", "image_policy"):
        if not isinstance(value, str) or not value:
            raise _bad(source, key, value, "a non-empty string")
        if key == "image_policy":
            from strata.policy import parse as parse_policy

            try:
                parse_policy(value)
            except StrataError as e:
                raise StrataError(f"{source}: [update] image_policy: {e.message}",
                                  kind=ErrorKind.CONFIGURATION) from e
        return value
    if key in ("extensions", "health_units"):
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise _bad(source, key, value, "a list of names")
        return tuple(value)
    if key == "health_command":
        if isinstance(value, str):
            import shlex

            argv = shlex.split(value)
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            argv = list(value)
        else:
            argv = []
        if not argv:
            raise _bad(source, key, value, "a command (a string or a list of arguments)")
        return tuple(argv)
    if key in ("ext_health", "health_files"):
        if not isinstance(value, bool):
            raise _bad(source, key, value, "true or false")
        return value
    if key in ("keep", "retries"):
        low = 0 if key == "keep" else 1
        if type(value) is not int or value < low:
            raise _bad(source, key, value, f"an integer >= {low}")
        return value
    # settle, health_timeout, timeout
    if type(value) not in (int, float) or value < 0 or (key != "settle" and value == 0):
        raise _bad(source, key, value, "a number of seconds")
    return float(value)


def load(root: str) -> UpdateConfig:
    from strata.manage.config import read_document

    found = read_document(root)
    if found is None:
        return UpdateConfig()
    path, doc = found
    return parse(doc, source=path)
