"""`strata ext verify NAME...|--all`: is each image still what `install` put into the store?

The sha256 of the image file is computed again and compared with its install record
(records.py). Every image of each NAME is verified (NAME: an extension or image name); --all
verifies every image in the store. A mismatch, an unreadable image or a malformed record is
TAMPERED and reported by name; an image with no record (copied in by hand, or found in a
systemd extension directory) is UNRECORDED, which is reported but is no failure; a directory
image has no single digest and is SKIPPED.

The sha256 proves the image is the one installed, not that it is trustworthy: whoever can
rewrite the store can rewrite the records too. Images signed with dm-verity (issue 5, `strata
update`) are checked further by the `checks` given: each is called with the image path and
its record and returns a problem or None (the verity root hash against the signature, the
signing certificate against /etc/verity.d). That is the hook for them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from strata import log
from strata.errors import ErrorKind, StrataError
from strata.manage import records, store
from strata.manage.api import VerifyResult, VerifyState
from strata.manage.records import ImageRecord
from strata.manage.store import StoreEntry

#: a further check of an installed image: (host path, its record or None) -> a problem or None
ImageCheck = Callable[[str, ImageRecord | None], str | None]


def _targets(entries: Sequence[StoreEntry], names: Sequence[str], every: bool
             ) -> list[StoreEntry]:
    from strata.manage.ext import _not_found

    if every:
        return [e for e in entries if e.origin == store.STORE_ORIGIN]
    out: list[StoreEntry] = []
    for name in dict.fromkeys(names):
        hits = [e for e in entries if e.image_name == name] or \
               [e for e in entries if e.name == name]
        if not hits:
            raise _not_found(name)
        out += [e for e in hits if e not in out]
    return out


def verify_entry(root: str, e: StoreEntry, checks: Sequence[ImageCheck] = ()) -> VerifyResult:
    if e.is_directory:
        return VerifyResult(e.name, e.path, VerifyState.SKIPPED,
                            detail="a directory image has no single digest")
    record: ImageRecord | None = None
    if e.origin == store.STORE_ORIGIN:
        try:
            record = records.load(root, os.path.basename(e.path))
        except StrataError as err:
            return VerifyResult(e.name, e.path, VerifyState.TAMPERED, detail=err.message)
    actual = store.sha256_prefix(e.real, length=64)
    if actual is None:
        return VerifyResult(e.name, e.path, VerifyState.TAMPERED,
                            expected=record.sha256 if record else None,
                            detail="the image cannot be read")
    if record is None:
        return VerifyResult(e.name, e.path, VerifyState.UNRECORDED, actual=actual,
                            detail="not installed by 'strata ext install': no record")
    if actual != record.sha256:
        return VerifyResult(e.name, e.path, VerifyState.TAMPERED, expected=record.sha256,
                            actual=actual,
                            detail=f"sha256 {actual} differs from the {record.sha256} "
                                   f"recorded at installation ({record.installed_at})")
    for check in checks:
        problem = check(e.real, record)
        if problem:
            return VerifyResult(e.name, e.path, VerifyState.TAMPERED, expected=record.sha256,
                                actual=actual, detail=problem)
    return VerifyResult(e.name, e.path, VerifyState.OK, expected=record.sha256, actual=actual)


def verify(root: str, names: Sequence[str] = (), *, all: bool = False,
           checks: Sequence[ImageCheck] = ()) -> list[VerifyResult]:
    """Verify the images of `names` (or, with `all`, the whole store); an unknown name is
    NOT_FOUND. Tampered images are also logged as errors, by name."""
    from strata.manage.ext import _root

    root = _root(root)
    if not all and not names:
        raise StrataError("No extension to verify given (name some, or use --all).",
                          kind=ErrorKind.USAGE)
    entries = store.scan(root)
    results = [verify_entry(root, e, checks) for e in _targets(entries, names, all)]
    for r in results:
        if r.state is VerifyState.TAMPERED:
            log.error(f"Extension '{r.name}' has been tampered with: {r.path}: {r.detail}")
    return results
