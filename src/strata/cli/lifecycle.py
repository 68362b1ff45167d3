"""The lifecycle verbs of `strata ext` (install, remove, info, verify, health, logs): what they
print and the exit status. cli/ext.py parses the command line and calls `run`."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from strata import log
from strata.cli.output import dump_json, render_table, write
from strata.errors import ErrorKind, StrataError

if TYPE_CHECKING:
    from strata.manage.api import (
        ExtensionDetails,
        HealthReport,
        HookRun,
        InstallResult,
        Outcome,
        RemoveResult,
        VerifyResult,
    )

VERBS = ("install", "remove", "info", "verify", "health", "logs")

HELP = {
    "install": """\
strata ext install SOURCE... [--enable] [--now] [--image-policy=POLICY] [--root=PATH]

Install extension images into /var/lib/strata/extensions. SOURCE is an image
file (*.raw), an http:// or https:// URL, or a name looked up in the configured
extension repository (strata update). Each image is validated before it enters
the store: it must be an extension image, pass the error rules of strata check
against the root, be compatible with the root's os-release and satisfy the image
policy (--image-policy=, else [ext] image_policy in /etc/strata/strata.toml).
A truncated download is refused. One bad SOURCE and nothing is installed.
The same version with the same content is a no-op that says so; a new version
is installed beside the old ones, which are kept for rollback.
  --enable   also enable the images for the running OS release
  --now      also refresh, so that they are merged now (implies --enable)
""",
    "remove": """\
strata ext remove NAME... [--keep-files] [--force] [--root=PATH]

Stop the services the extension declares, disable it (for every OS release),
refresh so that it is no longer merged, and delete its images and install
records from the store. NAME is an extension name (all its versions) or an image
name (that version). Refused when an enabled extension depends on it
(STRATA_DEPENDS=), naming that extension, unless --force.
  --keep-files  keep the images in the store (they can be enabled again)
""",
    "info": """\
strata ext info NAME [--json=pretty|short|off] [--root=PATH]

Everything about one extension: version, class, every release field, its images
on disk with size and sha256 (and what install recorded), the services and
hooks it declares, its dependencies and reverse dependencies, whether it is
enabled, where it is merged, and where it came from.
""",
    "verify": """\
strata ext verify NAME...|--all [--json=pretty|short|off] [--root=PATH]

Compute the sha256 of each image again and compare it with what install
recorded. A changed image is reported by name and the exit status is 1; an image
that install did not put there has no record and is reported as unrecorded.
""",
    "health": """\
strata ext health [NAME...] [--json=pretty|short|off] [--root=PATH]

For each extension (default: every one enabled for the running OS release):
whether it is merged as the enabled set says, whether its declared services are
active (only where systemd runs), whether the merged tree shows its files
unchanged (content compared), and whether its programs' libraries resolve on the
merged root. The exit status is 1 when one of them is unhealthy.
""",
    "logs": """\
strata ext logs NAME [-f] [--root=PATH]

The journal of the extension's units (declared services, units its hooks
restart, unit files it ships): journalctl -u UNIT... Needs journald; with
--root, prints the command instead.
  -f --follow  follow the journal
""",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--enable", action="store_true")
    p.add_argument("--now", action="store_true")
    p.add_argument("--image-policy")
    p.add_argument("--keep-files", action="store_true")
    p.add_argument("--force", action="store_true")
    p.add_argument("-f", "--follow", action="store_true")


#: options that only some of these verbs take
ONLY = {"enable": ("install",), "now": ("install",), "image_policy": ("install",),
        "keep_files": ("remove",), "force": ("remove",), "follow": ("logs",)}
OPTION_NAMES = {"enable": "--enable", "now": "--now", "image_policy": "--image-policy",
                "keep_files": "--keep-files", "force": "--force", "follow": "--follow"}


# --- JSON shapes -------------------------------------------------------------------------------


def _hook_json(h: HookRun) -> dict[str, Any]:
    return {"phase": h.phase, "argv": list(h.argv), "ran": h.ran, "status": h.status,
            "error": h.error}


def _outcome_json(o: Outcome | None) -> dict[str, Any] | None:
    if o is None:
        return None
    return {"merged": list(o.merged), "unmerged": list(o.unmerged),
            "skipped": [{"name": n, "reason": r} for n, r in o.skipped],
            "hooks": [_hook_json(h) for h in o.hooks]}


def install_json(r: InstallResult) -> dict[str, Any]:
    return {"installed": [{"name": i.name, "version": i.version, "path": i.path,
                           "sha256": i.sha256, "size": i.size, "source": i.source,
                           "sourceKind": i.kind.value, "action": i.action.value,
                           "enabled": i.enabled} for i in r.installed],
            "outcome": _outcome_json(r.outcome)}


def remove_json(r: RemoveResult) -> dict[str, Any]:
    return {"removed": list(r.names), "deleted": list(r.deleted), "kept": list(r.kept),
            "services": [_hook_json(h) for h in r.services],
            "outcome": _outcome_json(r.outcome), "forced": list(r.forced)}


def info_json(d: ExtensionDetails) -> dict[str, Any]:
    return {
        "name": d.name, "version": d.version, "image": d.image, "classes": list(d.classes),
        "release": {cls: dict(pairs) for cls, pairs in d.release.items()},
        "images": [{"path": i.path, "imageName": i.image_name, "version": i.version,
                    "origin": i.origin, "isDirectory": i.is_directory, "size": i.size,
                    "sha256": i.sha256, "recordedSha256": i.recorded_sha256,
                    "source": i.source, "sourceKind": i.source_kind,
                    "installedAt": i.installed_at, "enabled": i.enabled} for i in d.images],
        "services": list(d.services), "hooks": [{"key": k, "value": v} for k, v in d.hooks],
        "depends": list(d.depends), "conflicts": list(d.conflicts),
        "provides": list(d.provides), "requiredBy": list(d.required_by),
        "requiredByEnabled": list(d.required_by_enabled), "enabled": d.enabled,
        "mergedInto": list(d.merged_into), "origin": d.origin,
    }


def verify_json(r: VerifyResult) -> dict[str, Any]:
    return {"name": r.name, "path": r.path, "state": r.state.value, "expected": r.expected,
            "actual": r.actual, "detail": r.detail}


def health_json(r: HealthReport) -> dict[str, Any]:
    return {"name": r.name, "healthy": r.healthy,
            "checks": [{"aspect": c.aspect.value, "state": c.state.value, "detail": c.detail}
                       for c in r.checks]}


# --- human output ------------------------------------------------------------------------------


def _size(n: int) -> str:
    for unit in ("B", "K", "M", "G"):
        if n < 1024 or unit == "G":
            return f"{n}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def info_text(d: ExtensionDetails) -> str:
    def words(items: tuple[str, ...]) -> str:
        return ", ".join(items) or "-"

    by_enabled = set(d.required_by_enabled)
    lines = [
        f"{d.name}" + (f" {d.version}" if d.version else ""),
        f"      Class: {'+'.join(d.classes) or '-'}",
        f"      Image: {d.image}",
        f"    Enabled: {'yes' if d.enabled else 'no'}",
        f"     Merged: {words(d.merged_into) if d.merged_into else 'no'}",
        f"     Origin: {d.origin or '-'}",
        f"    Depends: {words(d.depends)}",
        f"   Provides: {words(d.provides)}",
        f"  Conflicts: {words(d.conflicts)}",
        "Required by: " + (", ".join(n + (" (enabled)" if n in by_enabled else "")
                                     for n in d.required_by) or "-"),
        f"   Services: {words(d.services)}",
        "      Hooks: " + ("; ".join(f"{k}={v}" for k, v in d.hooks) or "-"),
        "     Images:",
    ]
    for i in d.images:
        mark = "*" if i.enabled else " "
        check = ""
        if i.recorded_sha256 is not None:
            check = " (as installed)" if i.recorded_sha256 == i.sha256 else " (CHANGED since " \
                "installation)"
        lines.append(f"           {mark} {i.path}  {i.version or '-'}  {_size(i.size)}  "
                     f"{i.origin}")
        lines.append(f"               sha256 {i.sha256 or '-'}{check}")
        if i.source:
            lines.append(f"               from {i.source} ({i.installed_at})")
    for cls, pairs in d.release.items():
        lines.append(f"    Release ({cls}):")
        lines += [f"             {k}={v}" for k, v in pairs]
    return "\n".join(lines) + "\n"


def _report_outcome(o: Outcome | None) -> None:
    if o is None:
        return
    if o.merged:
        log.info(f"Merged {len(o.merged)} extension(s): {', '.join(o.merged)}.")
    for name, why in o.skipped:
        log.info(f"Skipped {name}: {why}")
    failed = [h for h in o.hooks if h.error]
    if failed:
        log.warning(f"{len(failed)} hook(s) failed; the extensions stay merged.")


# --- the verbs ---------------------------------------------------------------------------------


def run(verb: str, root: str, ns: argparse.Namespace, env: Mapping[str, str]) -> int:
    if verb == "install":
        from strata.manage.install import default_resolver, install

        r = install(root, ns.names, enable=ns.enable, now=ns.now, env=env,
                    image_policy=ns.image_policy, resolver=default_resolver())
        if ns.json != "off":
            write(dump_json(install_json(r), ns.json))
        else:
            _report_outcome(r.outcome)
        return 0
    if verb == "remove":
        from strata.manage.remove import remove

        rr = remove(root, ns.names, keep_files=ns.keep_files, force=ns.force, env=env)
        if ns.json != "off":
            write(dump_json(remove_json(rr), ns.json))
        return 0
    if verb == "info":
        from strata.manage.info import info

        if len(ns.names) != 1:
            raise StrataError("'info' takes exactly one extension name.", kind=ErrorKind.USAGE)
        d = info(root, ns.names[0], env=env)
        write(dump_json(info_json(d), ns.json) if ns.json != "off" else info_text(d))
        return 0
    if verb == "verify":
        from strata.manage.api import VerifyState
        from strata.manage.verify import verify

        if ns.all and ns.names:
            raise StrataError("Give extension names or --all, not both.", kind=ErrorKind.USAGE)
        results = verify(root, ns.names, all=ns.all)
        if ns.json != "off":
            write(dump_json([verify_json(v) for v in results], ns.json))
        elif results:
            rows = [[v.name, v.state.value, v.path, v.detail or None] for v in results]
            write(render_table(["name", "state", "path", "detail"], rows,
                               legend=not ns.no_legend))
        else:
            log.info("No images to verify.")
        return 1 if any(v.state is VerifyState.TAMPERED for v in results) else 0
    if verb == "health":
        from strata.manage.health import health

        reports = health(root, ns.names, env=env)
        if ns.json != "off":
            write(dump_json([health_json(h) for h in reports], ns.json))
        elif reports:
            rows = []
            for h in reports:
                for c in h.checks:
                    rows.append([h.name if c is h.checks[0] else "",
                                 ("healthy" if h.healthy else "UNHEALTHY")
                                 if c is h.checks[0] else "",
                                 c.aspect.value, c.state.value, c.detail or None])
            write(render_table(["name", "health", "aspect", "state", "detail"], rows,
                               legend=not ns.no_legend))
        else:
            log.info("No extension is enabled.")
        bad = [h.name for h in reports if not h.healthy]
        if bad and ns.json == "off":
            log.error(f"Unhealthy: {', '.join(bad)}.")
        return 1 if bad else 0
    if verb == "logs":
        from strata.manage.logs import logs_plan

        if len(ns.names) != 1:
            raise StrataError("'logs' takes exactly one extension name.", kind=ErrorKind.USAGE)
        plan = logs_plan(root, ns.names[0], follow=ns.follow)
        if ns.json != "off":
            write(dump_json({"argv": list(plan.argv), "units": list(plan.units),
                             "runnable": plan.runnable, "reason": plan.reason}, ns.json))
            return 0
        if plan.runnable:
            from strata.run import run as spawn

            return spawn(plan.argv, check=False, capture=False).returncode
        import shlex

        if not plan.argv:
            raise StrataError(plan.reason or "nothing to show", kind=ErrorKind.NOT_FOUND)
        log.info(f"{plan.reason} Would run: {shlex.join(plan.argv)}")
        return 0 if os.path.realpath(root) != "/" else 1
    raise AssertionError(verb)
