"""What `strata publish` writes for systemd-sysupdate users, next to the TUF metadata (pure
renderers):

- `targets/SHA256SUMS`: "<sha256>  <file>" for every image, as sysupdate's url-file source
  reads it from the directory its `Path=` names;
- `sysupdate.d/<name>.transfer`: one transfer per extension, for /etc/sysupdate.d/.

sysupdate verifies SHA256SUMS only through a detached GPG signature (SHA256SUMS.gpg), which
Strata does not make: the transfers say `Verify=false`, so over plain HTTP they trust the
transport. `strata update` is the verified path (TUF: signed, fresh, consistent metadata).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from strata.model import ExtClass
from strata.update.offers import Offer, version_sort_key

#: where sysupdate puts an extension's versions, and the link to the one in use (the layout
#: of sysupdate.d(5)'s sysext example)
TARGET_DIRS = {ExtClass.SYSEXT: ("/var/lib/extensions.d/", "/var/lib/extensions/"),
               ExtClass.CONFEXT: ("/var/lib/confexts.d/", "/var/lib/confexts/")}


def sha256sums(offers: Iterable[Offer]) -> str:
    lines = sorted({(o.path, o.sha256) for o in offers})
    return "".join(f"{digest}  {path}\n" for path, digest in lines)


def match_pattern(offer: Offer) -> str | None:
    """The file name with its version replaced by sysupdate's `@v`, None when the version is
    not part of the name (or the name holds characters patterns treat specially)."""
    if "@" in offer.path or "%" in offer.path:
        return None
    head, sep, tail = offer.path[len(offer.name):].partition(offer.version)
    if not sep:
        return None
    return f"{offer.name}{head}@v{tail}"


def transfer(offer: Offer, base_url: str) -> str | None:
    """The .transfer file for the extension `offer` is the newest version of; None when its
    file name carries no version for sysupdate to match."""
    pattern = match_pattern(offer)
    if pattern is None:
        return None
    cls = ExtClass.SYSEXT if ExtClass.SYSEXT in offer.release else ExtClass.CONFEXT
    versions_dir, link_dir = TARGET_DIRS[cls]
    return (
        f"# {offer.name}: written by strata publish. SHA256SUMS carries no GPG signature;\n"
        "# use 'strata update' for TUF-verified updates.\n"
        "[Transfer]\n"
        "Verify=false\n"
        "\n"
        "[Source]\n"
        "Type=url-file\n"
        f"Path={base_url.rstrip('/')}/targets/\n"
        f"MatchPattern={pattern}\n"
        "\n"
        "[Target]\n"
        "Type=regular-file\n"
        f"Path={versions_dir}\n"
        f"MatchPattern={pattern}\n"
        f"CurrentSymlink={link_dir}{offer.name}.raw\n"
        "InstancesMax=2\n"
    )


def transfers(offers: Iterable[Offer], base_url: str) -> Mapping[str, str]:
    """transfer file name -> content, one per extension name (its newest version's pattern)."""
    newest: dict[str, Offer] = {}
    for o in offers:
        cur = newest.get(o.name)
        if cur is None or version_sort_key(o.version) > version_sort_key(cur.version):
            newest[o.name] = o
    out: dict[str, str] = {}
    for name, o in sorted(newest.items()):
        text = transfer(o, base_url)
        if text is not None:
            out[f"{name}.transfer"] = text
    return out
