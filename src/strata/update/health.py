"""Is the device healthy after an update? Checks, in order (the first failure decides):

1. **merged**: every updated extension is merged (the engine did not skip it: broken image,
   incompatible, refused by the image policy);
2. **strata ext health** (`strata.manage.health.health(root, names)`, when installed and
   [update] ext_health is true, the default): its reports for the updated extensions
   (services active, files intact, libraries resolve);
3. **command** ([update] health_command): exits 0 within health_timeout;
4. **units** ([update] health_units): `systemctl is-active` for each after the settle time
   (only on the running system: under --root there is no service manager to ask; said so).

The settle time is waited once, before 3 and 4.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from strata import log
from strata.errors import StrataError
from strata.record import record
from strata.update.config import UpdateConfig


@record
class Check:
    what: str  # "merged", "ext-health", "command", "units"
    ok: bool
    detail: str = ""


@record
class Health:
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def reason(self) -> str | None:
        bad = [c for c in self.checks if not c.ok]
        return "; ".join(f"{c.what}: {c.detail}" for c in bad) if bad else None


def merged_names(root: str) -> set[str]:
    """Extension names merged now (either class), from the engine's markers."""
    from strata.manage import ext, store
    from strata.model import ExtClass

    out: set[str] = set()
    for cls in ExtClass:
        for lookup in ext.merged_names(root, cls):
            out.add(lookup)
            out.add(store.split_version(lookup)[0])
    return out


def _ext_health() -> Callable[..., Any] | None:
    import importlib

    try:
        module = importlib.import_module("strata.manage.health")
    except ModuleNotFoundError as e:
        if e.name in ("strata.manage.health",):
            return None
        raise
    fn = getattr(module, "health", None)
    return fn if callable(fn) else None


def _interpret(reports: Any) -> list[str]:
    """The failed parts of manage.health's answer: a list of HealthReport (name, checks,
    .healthy)."""
    failed: list[str] = []
    for r in reports if isinstance(reports, list | tuple) else [reports]:
        if getattr(r, "healthy", True):
            continue
        bad = [c for c in getattr(r, "checks", ())
               if getattr(getattr(c, "state", None), "value", "") == "failed"]
        what = ", ".join(f"{getattr(c.aspect, 'value', c.aspect)}: {c.detail}" for c in bad)
        failed.append(f"{getattr(r, 'name', '?')} ({what or 'unhealthy'})")
    return failed


def _live(root: str) -> bool:
    return root == "/" and os.path.isdir("/run/systemd/system")


def check(root: str, cfg: UpdateConfig, updated: Mapping[str, str], *,
          env: Mapping[str, str], merged: Collection[str] | None = None,
          sleep: Callable[[float], None] = time.sleep) -> Health:
    """Run the checks for the `updated` extensions (name -> new version)."""
    names = sorted(updated)
    checks: list[Check] = []
    now_merged = set(merged) if merged is not None else merged_names(root)
    missing = [n for n in names if n not in now_merged]
    checks.append(Check("merged", not missing,
                        f"not merged: {', '.join(missing)}" if missing else ""))
    if missing:
        return Health(tuple(checks))

    fn = _ext_health() if cfg.ext_health else None
    if fn is not None:
        try:
            # The images' hashes were verified moments ago: skip the byte-for-byte files
            # comparison unless configured ([update] health_files = true).
            from strata.manage.api import HealthAspect

            aspects = None if cfg.health_files else {HealthAspect.MERGED, HealthAspect.SERVICES,
                                                     HealthAspect.LIBRARIES}
            failed = _interpret(fn(root, names, env=dict(env), aspects=aspects))
            checks.append(Check("ext-health", not failed, "; ".join(failed)))
        except StrataError as e:
            checks.append(Check("ext-health", False, e.message))
        if not checks[-1].ok:
            return Health(tuple(checks))

    if (cfg.health_command or cfg.health_units) and cfg.settle_seconds > 0:
        log.info(f"Waiting {cfg.settle_seconds:g}s for the updated extensions to settle.")
        sleep(cfg.settle_seconds)
    if cfg.health_command:
        checks.append(_command(root, cfg, updated, env))
        if not checks[-1].ok:
            return Health(tuple(checks))
    if cfg.health_units:
        checks.append(_units(root, cfg.health_units))
    return Health(tuple(checks))


def _command(root: str, cfg: UpdateConfig, updated: Mapping[str, str],
             env: Mapping[str, str]) -> Check:
    from strata.run import run

    extra = {"STRATA_ROOT": root,
             "STRATA_UPDATED": " ".join(f"{n}={v}" for n, v in sorted(updated.items()))}
    argv = cfg.health_command
    try:
        proc = run(argv, check=False, env={**env, **extra}, timeout=cfg.health_timeout)
    except StrataError as e:
        return Check("command", False, e.message)
    if proc.returncode == 0:
        return Check("command", True, f"{argv[0]} exited 0")
    err = (proc.stderr or b"").decode(errors="replace").strip().splitlines()
    tail = f": {err[-1]}" if err else ""
    return Check("command", False, f"{argv[0]} exited {proc.returncode}{tail}")


def _units(root: str, units: Sequence[str]) -> Check:
    if not _live(root):
        log.warning("Cannot check units: not the running system with systemd "
                    f"(root {root}); the units check is skipped.")
        return Check("units", True, "skipped: no service manager to ask")
    from strata.run import run

    try:
        proc = run(["systemctl", "is-active", *units], check=False)
    except StrataError as e:
        return Check("units", False, e.message)
    states = (proc.stdout or b"").decode(errors="replace").split()
    bad = [f"{u} is {s}" for u, s in zip(units, states, strict=False) if s != "active"]
    if len(states) < len(units):
        bad.append("systemctl did not report every unit")
    return Check("units", not bad, "; ".join(bad))
