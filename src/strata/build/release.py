"""The files the builder writes into an image: extension-release, the tmpfiles lines for a
Dalec-style /etc, the Upholds= drop-in for services started with the system. Pure text.

extension-release keys, in this order:

    ID=, VERSION_ID=, SYSEXT_LEVEL= / CONFEXT_LEVEL=, ARCHITECTURE=, SYSEXT_SCOPE= / ...
                              compatibility, as systemd matches it
    SYSEXT_VERSION_ID= / CONFEXT_VERSION_ID=
                              the spec's version (mkosi's key; `strata ext` shows it)
    EXTENSION_RELOAD_MANAGER=1
                              when the image ships units, or the spec says so
    EXTENSION_RESTART_UNITS=, EXTENSION_RELOAD_OR_RESTART_UNITS=
    AVOCADO_MODPROBE=, AVOCADO_ON_MERGE= (one line per command), AVOCADO_ON_UNMERGE=
    STRATA_DEPENDS=, STRATA_CONFLICTS=, STRATA_PROVIDES=
    the spec's `release:` keys

Automatic AVOCADO_ON_MERGE= lines (hooks.auto): `depmod` when the image ships kernel modules
(what avocado-cli writes; `strata ext` runs it once with its own depmod -a), and
`systemd-tmpfiles --create <file>` when /etc content is copied by tmpfiles, since a merge at
runtime does not run tmpfiles (and one at boot may run after systemd-tmpfiles-setup,
systemd#26882). No automatic `ldconfig`: libraries in the default directories load without the
cache, and the cache in /etc would outlive the unmerge (`strata ext` runs it anyway when an
image ships libraries).

With class both, the sysext carries the service, hook and relation keys, the confext only its
compatibility and version: each hook then runs once.
"""

from __future__ import annotations

from collections.abc import Sequence

from strata.build.spec import ClassChoice, Spec
from strata.model import ExtClass
from strata.record import record
from strata.release import quote_env_value


@record
class Content:
    """What the finished tree of one image ships, as far as its release file cares."""

    units: bool = False  # unit files or drop-ins below usr/lib/systemd/system (etc/... confext)
    modules: bool = False  # kernel modules below usr/lib/modules
    tmpfiles: str | None = None  # the generated tmpfiles.d file (image path), if any


def tmpfiles_path(name: str) -> str:
    return f"usr/lib/tmpfiles.d/10-{name}.conf"


def upholds_path(name: str, cls: ExtClass) -> str:
    base = "usr/lib/systemd/system" if cls is ExtClass.SYSEXT else "etc/systemd/system"
    return f"{base}/multi-user.target.d/10-{name}.conf"


def tmpfiles_text(name: str, entries: Sequence[str]) -> str:
    """Dalec's lines: copy each top-level entry of /usr/share/<name>/etc to /etc (`C+`:
    recursively, into an existing directory too)."""
    lines = [f"C+ /etc/{e} - - - - /usr/share/{name}/etc/{e}\n" for e in sorted(entries)]
    return f"# Written by strata build: /etc content of the {name} extension\n" + "".join(lines)


def upholds_text(units: Sequence[str]) -> str:
    return "[Unit]\nUpholds=" + " ".join(units) + "\n"


def _primary(spec: Spec, cls: ExtClass) -> bool:
    """Whether `cls`'s image carries the service, hook and relation keys."""
    return spec.cls is not ClassChoice.BOTH or cls is ExtClass.SYSEXT


def release_pairs(spec: Spec, cls: ExtClass, *, architecture: str, content: Content
                  ) -> list[tuple[str, str]]:
    """The extension-release assignments of `cls`'s image, in file order (keys may repeat)."""
    c = spec.compatibility
    out: list[tuple[str, str]] = [("ID", c.id)]
    if c.version_id is not None:
        out.append(("VERSION_ID", c.version_id))
    if c.level is not None:
        out.append((cls.level_key, c.level))
    out.append(("ARCHITECTURE", architecture))
    if c.scope is not None:
        out.append((cls.scope_key, " ".join(s.value for s in c.scope)))
    out.append((f"{cls.value.upper()}_VERSION_ID", spec.version))

    s = spec.services
    reload = s.reload_manager if s.reload_manager is not None else content.units
    if not _primary(spec, cls):
        if reload and content.units:
            out.append(("EXTENSION_RELOAD_MANAGER", "1"))
        return out
    if reload:
        out.append(("EXTENSION_RELOAD_MANAGER", "1"))
    if s.restart:
        out.append(("EXTENSION_RESTART_UNITS", " ".join(s.restart)))
    if s.reload_or_restart:
        out.append(("EXTENSION_RELOAD_OR_RESTART_UNITS", " ".join(s.reload_or_restart)))

    h = spec.hooks
    if h.modprobe:
        out.append(("AVOCADO_MODPROBE", " ".join(h.modprobe)))
    on_merge: list[str] = []
    if h.auto and content.modules:
        on_merge.append("depmod")
    if h.auto and content.tmpfiles is not None:
        on_merge.append(f"systemd-tmpfiles --create /{content.tmpfiles}")
    on_merge += [cmd for cmd in h.on_merge if cmd not in on_merge]
    out += [("AVOCADO_ON_MERGE", cmd) for cmd in on_merge]
    out += [("AVOCADO_ON_UNMERGE", cmd) for cmd in h.on_unmerge]

    r = spec.relations
    for key, names in (("STRATA_DEPENDS", r.depends), ("STRATA_CONFLICTS", r.conflicts),
                       ("STRATA_PROVIDES", r.provides)):
        if names:
            out.append((key, " ".join(names)))
    out += list(spec.release_extra)
    return out


def render(pairs: Sequence[tuple[str, str]]) -> str:
    """KEY=VALUE lines, quoted as systemd writes env files (strata.release reads them back)."""
    return "".join(f"{k}={quote_env_value(v)}\n" for k, v in pairs)
