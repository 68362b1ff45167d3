"""What a repository offers, as signed custom metadata on each TUF target, and the pure choice
of the version a device takes.

A target's `custom` field (signed by the targets role like its length and hashes):

    {"strata": {"name": "app", "version": "1.3", "classes": ["sysext"],
                "release": {"sysext": {"ID": "debian", "VERSION_ID": "12", ...}},
                "sha256": "<hex>"}}

`release` holds, per class, the fields of the image's extension-release file that decide
compatibility (systemd's extension_release_validate()): enough for a device to choose without
downloading anything. The device checks the image itself again once it has it.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from strata.model import ExtClass, Scope
from strata.record import record
from strata.release import HostRelease, check_compatibility, image_name_is_valid

CUSTOM_KEY = "strata"

#: the release fields a target carries, per class (the class's level, scope and version keys)
COMMON_KEYS = ("ID", "VERSION_ID", "ARCHITECTURE")


def compat_keys(cls: ExtClass) -> tuple[str, ...]:
    return (*COMMON_KEYS, cls.level_key, cls.scope_key, f"{cls.value.upper()}_VERSION_ID")


def compat_fields(cls: ExtClass, fields: Mapping[str, str]) -> dict[str, str]:
    return {k: fields[k] for k in compat_keys(cls) if k in fields}


@record
class Offer:
    """One target: an extension image at a version, and what it needs of the host."""

    path: str  # the TUF target path: a plain image file name, e.g. "app_1.3.raw"
    name: str
    version: str
    release: Mapping[ExtClass, Mapping[str, str]]  # compatibility fields per class
    sha256: str
    length: int

    @property
    def classes(self) -> tuple[ExtClass, ...]:
        return tuple(c for c in ExtClass if c in self.release)


def custom_for(name: str, version: str, release: Mapping[ExtClass, Mapping[str, str]],
               sha256: str) -> dict[str, Any]:
    """The custom metadata `strata publish` puts on a target."""
    return {CUSTOM_KEY: {
        "name": name,
        "version": version,
        "classes": [c.value for c in ExtClass if c in release],
        "release": {c.value: compat_fields(c, release[c]) for c in ExtClass if c in release},
        "sha256": sha256,
    }}


def target_path_problem(path: str) -> str | None:
    """Why a target path cannot become a file in the store, or None: a plain `.raw` file
    name (no directories: a path from the repository never walks the device's tree)."""
    if "/" in path or "\\" in path or not path.endswith(".raw"):
        return "not a plain .raw file name"
    if path.startswith(".") or not image_name_is_valid(path):
        return "not a valid image file name"
    return None


def offer_from(path: str, length: int, hashes: Mapping[str, str], custom: Any
               ) -> Offer | str:
    """The Offer a target describes, or why it describes none (not Strata's, malformed)."""
    why = target_path_problem(path)
    if why is not None:
        return f"target '{path}': {why}"
    meta = custom.get(CUSTOM_KEY) if isinstance(custom, dict) else None
    if not isinstance(meta, dict):
        return f"target '{path}': no '{CUSTOM_KEY}' custom metadata"
    name, version, release = meta.get("name"), meta.get("version"), meta.get("release")
    if not isinstance(name, str) or not image_name_is_valid(name):
        return f"target '{path}': bad name {name!r}"
    if not isinstance(version, str) or not version:
        return f"target '{path}': bad version {version!r}"
    if not isinstance(release, dict) or not release:
        return f"target '{path}': no release fields"
    fields: dict[ExtClass, dict[str, str]] = {}
    for key, value in release.items():
        try:
            cls = ExtClass(key)
        except ValueError:
            return f"target '{path}': unknown class {key!r}"
        if not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            return f"target '{path}': bad release fields for {key}"
        fields[cls] = dict(value)
    sha256 = hashes.get("sha256")
    if not isinstance(sha256, str) or meta.get("sha256") not in (None, sha256):
        return f"target '{path}': no sha256, or not the one the custom metadata names"
    return Offer(path=path, name=name, version=version, release=fields, sha256=sha256,
                 length=length)


# --- choosing --------------------------------------------------------------------------------


@record
class Choice:
    """The version of one extension a device should have, or why there is none."""

    name: str
    offer: Offer | None
    #: (version, why) of each version offered that this host cannot take
    refused: tuple[tuple[str, str], ...] = ()
    #: versions left out because this device rolled them back before
    excluded: tuple[str, ...] = ()

    @property
    def problem(self) -> str | None:
        """Why nothing can be taken, when that is an error: nothing offered at all, or only
        versions this host cannot merge (versions rolled back before are no error: the
        device keeps what it has)."""
        if self.offer is not None or (self.excluded and not self.refused):
            return None
        if not self.refused:
            return f"The repository offers no version of '{self.name}'."
        reasons = "; ".join(f"{v}: {why}" for v, why in self.refused)
        return (f"The repository offers only versions of '{self.name}' this device cannot "
                f"take ({reasons}).")


def incompatibility(offer: Offer, host: HostRelease, *, scope: Scope, arch: str) -> str | None:
    """Why the host cannot merge the offered image (every class it has must fit), or None."""
    for cls in offer.classes:
        verdict = check_compatibility(host, offer.release[cls], name=offer.name, cls=cls,
                                      scope=scope, arch=arch)
        if not verdict.accepted:
            return verdict.reason
    return None


def version_sort_key(version: str) -> Any:
    from strata.versions import strverscmp_improved

    return functools.cmp_to_key(strverscmp_improved)(version)


def choose(name: str, offers: Sequence[Offer], host: HostRelease, *, scope: Scope, arch: str,
           exclude: Collection[str] = ()) -> Choice:
    """The newest version (strverscmp_improved, as systemd orders versions) of `name` the host
    can merge. `exclude`: sha256 of images this device already tried and rolled back (not
    taken again)."""
    refused: list[tuple[str, str]] = []
    excluded: list[str] = []
    fit: list[Offer] = []
    for o in offers:
        if o.name != name:
            continue
        why = incompatibility(o, host, scope=scope, arch=arch)
        if why is not None:
            refused.append((o.version, why))
        elif o.sha256 in exclude:
            excluded.append(o.version)
        else:
            fit.append(o)
    refused.sort(key=lambda r: version_sort_key(r[0]), reverse=True)
    best = max(fit, key=lambda o: (version_sort_key(o.version), o.path)) if fit else None
    return Choice(name=name, offer=best, refused=tuple(refused), excluded=tuple(excluded))


def is_newer(candidate: str, installed: str | None) -> bool:
    """Updates only go forward: a version equal to or older than the installed one is not
    taken (a repository that drops its newest version does not downgrade the fleet)."""
    if installed is None:
        return True
    from strata.versions import strverscmp_improved

    return strverscmp_improved(candidate, installed) > 0
