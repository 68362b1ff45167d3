"""Run every rule over the images given together: each image is read once (ImageView), the
per-image rules run over it, then the cross-image overlap rule over all of them."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from strata.check import conflicts, elfrules, layout, perms
from strata.check.context import Context
from strata.check.findings import Finding, ImageReport, Rule, Severity, class_names, sort_key
from strata.check.host import HostView
from strata.check.view import ImageView, open_view
from strata.errors import StrataError
from strata.model import ExtClass

RuleFn = Callable[[ImageView, Context], list[Finding]]

#: every per-image rule, in the order they are documented
RULES: tuple[RuleFn, ...] = (*layout.RULES, *perms.RULES, *elfrules.RULES, *conflicts.RULES)


def check_views(views: Sequence[ImageView], ctx: Context,
                rules: Sequence[RuleFn] = RULES) -> list[list[Finding]]:
    """The findings per view (same order), sorted worst first."""
    found = [[f for rule in rules for f in rule(v, ctx)] for v in views]
    for i, extra in enumerate(conflicts.overlaps(views)):
        found[i].extend(extra)
    return [sorted(f, key=sort_key) for f in found]


def check_images(paths: Sequence[str], *, host: str | None = None,
                 cls: ExtClass | None = None,
                 packages: Callable[[Sequence[str]], Mapping[str, str]] | None = None,
                 ) -> list[ImageReport]:
    """Check the images at `paths` together, optionally against the OS tree at `host`. An
    image that cannot be read gets one UNREADABLE error and the others are still checked.
    `packages` maps library sonames to packages for hints (default: packages.lookup, which
    asks dpkg and apt on this machine). A bad --host is a StrataError."""
    if packages is None:
        from strata.check.packages import lookup

        packages = lookup
    ctx = Context(host=HostView(host) if host is not None else None, packages=packages)
    arch = ctx.host.arch if ctx.host is not None else None
    views: list[ImageView] = []
    broken: dict[int, Finding] = {}
    for i, path in enumerate(paths):
        try:
            views.append(open_view(path, cls=cls, arch=arch))
        except StrataError as e:
            broken[i] = Finding(Rule.UNREADABLE, Severity.ERROR, "/", e.message, e.hint)
    try:
        results = iter(check_views(views, ctx))
        view_iter = iter(views)
        reports = []
        for i, path in enumerate(paths):
            if i in broken:
                reports.append(ImageReport(path, "", "unreadable", (broken[i],)))
                continue
            v = next(view_iter)
            reports.append(ImageReport(path, v.name, f"{class_names(v.classes)}, {v.format}",
                                       tuple(next(results))))
        return reports
    finally:
        for v in views:
            v.close()
