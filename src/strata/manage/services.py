"""Services shipped in an extension: started after it is merged, stopped before it goes.

An extension-release file declares them, as whitespace-separated unit names, in

    AVOCADO_ENABLE_SERVICES=   (avocado-cli writes it; every such line counts, as avocadoctl
                                accumulates them)
    STRATA_SERVICES=           (Strata's own name for the same list)

A name without a unit type ("app") means "app.service", as systemctl reads it; invalid names
are left out with a warning (hooks.unit_name_is_valid, the rule systemd applies to
EXTENSION_RESTART_UNITS=).

After a merge (strata ext merge, refresh, install --now):

    systemctl daemon-reload                 (unless a hook already reloaded in this merge)
    systemctl start --no-block UNITS        the units of every extension merged

--no-block: queue the jobs, do not wait; the boot-time merge runs before sysinit.target, where
waiting for an ordinary service would deadlock (hooks.py restarts units the same way).

Before an unmerge (strata ext unmerge; refresh, for the extensions it drops; remove):

    systemctl stop UNITS                    waits, so the files are not pulled from under them

The commands run through hooks.py's runner (no shell, clean environment, timeout) only when
systemd is PID 1 and the root is "/" (hooks.is_live); otherwise each is recorded as a HookRun
with ran=False, and logged as "Would run: ...", which is exactly what would have been done.
Planning is pure.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Collection, Iterator, Mapping, Sequence

from strata import log
from strata.manage.api import HookRun, MergedExtension

SERVICE_KEYS = ("AVOCADO_ENABLE_SERVICES", "STRATA_SERVICES")

#: units a caller already stopped (remove stops first, then refreshes): not stopped twice
_handled: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar(
    "strata_services_handled", default=frozenset())


def _unit(word: str) -> str:
    """A bare name is a service, as systemctl takes it."""
    from strata.manage.hooks import _UNIT_TYPES

    _, dot, suffix = word.rpartition(".")
    return word if dot and suffix in _UNIT_TYPES else word + ".service"


def declared(pairs: Sequence[tuple[str, str]], *, source: str = "") -> tuple[str, ...]:
    """The units an extension-release file (as (key, value) pairs, in file order) declares,
    in order, each once. An invalid name is left out with a warning."""
    from strata.manage.deps import split_names
    from strata.manage.hooks import unit_name_is_valid

    out: dict[str, None] = {}
    for key, value in pairs:
        if key not in SERVICE_KEYS:
            continue
        for word in split_names(value):
            unit = _unit(word)
            if not unit_name_is_valid(unit) or unit.startswith("-"):
                log.warning(f"Invalid unit name '{word}' in {key}= of "
                            f"{source or 'an extension'}, ignoring.")
                continue
            out[unit] = None
    return tuple(out)


def units_of(merged: Sequence[MergedExtension]) -> tuple[str, ...]:
    """Every unit the extensions declare, in their order, each once (an image that is both a
    sysext and a confext may declare the same unit in both release files)."""
    out: dict[str, None] = {}
    for ext in merged:
        pairs = ext.release_pairs or tuple(ext.release.items())
        out.update(dict.fromkeys(declared(pairs, source=ext.name)))
    return tuple(out)


# --- plans (pure) ----------------------------------------------------------------------------


def plan_start(units: Sequence[str], *, reloaded: bool = False
               ) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """(phase, argv) to run after a merge that brought `units`: a daemon-reload so that unit
    files shipped in the extensions are seen (unless one already ran), then one start."""
    if not units:
        return ()
    steps: list[tuple[str, tuple[str, ...]]] = []
    if not reloaded:
        steps.append(("daemon-reload", ("systemctl", "daemon-reload")))
    steps.append(("start", ("systemctl", "start", "--no-block", *units)))
    return tuple(steps)


def plan_stop(units: Sequence[str], *, skip: Collection[str] = ()
              ) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """(phase, argv) to run before `units` lose their files; `skip`: already stopped."""
    left = [u for u in units if u not in skip]
    return (("stop", ("systemctl", "stop", *left)),) if left else ()


# --- running ---------------------------------------------------------------------------------


def run(steps: Sequence[tuple[str, tuple[str, ...]]], *, live: bool, root: str = "/"
        ) -> tuple[HookRun, ...]:
    """Run the steps with hooks.py's runner when `live`; otherwise say what would run and
    record it (ran=False)."""
    from strata.manage import hooks

    phases = {"daemon-reload": hooks.Phase.DAEMON_RELOAD, "start": hooks.Phase.START,
              "stop": hooks.Phase.STOP}
    commands = [hooks.HookCommand(phases[phase], argv) for phase, argv in steps]
    if not live:
        why = "--root is given" if root not in ("", "/") else "systemd is not PID 1"
        for c in commands:
            log.info(f"Would run: {c.display} ({why})")
    return hooks.run_hooks(commands, live=live)


def after_merge(root: str, merged: Sequence[MergedExtension], *, live: bool,
                hook_runs: Sequence[HookRun] = ()) -> tuple[HookRun, ...]:
    """Start the services of `merged` (daemon-reload first unless `hook_runs` did one)."""
    units = units_of(merged)
    reloaded = any(h.phase == "daemon-reload" and (h.ran or not live) and not h.error
                   for h in hook_runs)
    return run(plan_start(units, reloaded=reloaded), live=live, root=root)


def before_unmerge(root: str, merged: Sequence[MergedExtension], *, live: bool
                   ) -> tuple[HookRun, ...]:
    """Stop the services of `merged`, except those a caller already stopped (`handled`)."""
    return run(plan_stop(units_of(merged), skip=_handled.get()), live=live, root=root)


@contextlib.contextmanager
def handled(units: Collection[str]) -> Iterator[None]:
    """While the block runs, before_unmerge leaves `units` alone (the caller stopped them)."""
    token = _handled.set(_handled.get() | frozenset(units))
    try:
        yield
    finally:
        _handled.reset(token)


def leaving(old: Sequence[MergedExtension], new_names: Mapping[str, Collection[str]]
            ) -> list[MergedExtension]:
    """The records of `old` that a refresh drops: class -> the lookup names merged next."""
    return [r for r in old if r.name not in new_names.get(r.cls, ())]
