"""Pure planning: which discovered images are merged, in which order, into which hierarchies.

Nothing here touches the filesystem. `select` takes what was read from each image (without
mounting) plus the host's release data and decides, image by image, as systemd-sysext v257's
merge_subprocess() does; `layer_order` and friends build the per-hierarchy stacks.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING

from strata.discover import Extension
from strata.errors import ErrorKind, StrataError
from strata.model import ExtClass, ImageType, Scope
from strata.record import record, replace
from strata.release import HostRelease, ReleaseLookup, check_compatibility
from strata.versions import strverscmp_improved

if TYPE_CHECKING:
    from strata.images import ImageLayout
    from strata.images.verity import ImageVerity
    from strata.policy import ImagePolicy


@record
class VerityUse:
    """How one verity-protected data partition of an accepted image is to be used."""

    verity: ImageVerity
    #: the signature partition is used (the policy did not ignore it): the signature must
    #: verify before the partition is used
    signed: bool
    #: the policy does not allow the partition without verity: when the hash tree cannot be
    #: checked (no dm-verity, no --verify=userspace) the image must be refused
    required: bool


@record
class Candidate:
    """Everything the planner needs to know about one discovered image, read without mounting."""

    ext: Extension
    #: the class's extension-release lookup (strict name matching)
    release: ReleaseLookup
    #: the image ships usr/lib/os-release
    forbidden: bool = False
    #: raw images only: dissect's VALIDATE_OS_EXT would pass (no forbidden content, and a
    #: strictly matching extension-release of either class)
    valid_extension_tree: bool = True
    #: hierarchy ("/usr") -> image-relative directory it resolves to, for hierarchies where the
    #: image has a non-empty directory (systemd's "used" test)
    content: Mapping[str, str] = MappingProxyType({})
    #: hierarchy -> why the image's path for it cannot be used (not a directory, a symlink
    #: loop, ...). systemd only looks there for the images it merges (merge_hierarchy), so this
    #: fails a merge only when the image is selected; an ignored image may be broken there.
    content_problems: Mapping[str, str] = MappingProxyType({})
    #: raw images: where the filesystem is and what it is
    layout: ImageLayout | None = None
    #: GPT images: the verity setup of each data partition that has one
    verity: tuple[ImageVerity, ...] = ()
    #: set by `select` on accepted raw images: the verity setups the image policy uses (a
    #: signed image under `root=verity` is used without its signature, under
    #: `root=unprotected` without verity at all)
    verity_use: tuple[VerityUse, ...] = ()

    @property
    def name(self) -> str:
        return self.ext.name

    @property
    def is_raw(self) -> bool:
        return self.ext.type in (ImageType.RAW, ImageType.BLOCK)


@record
class Decision:
    name: str
    path: str
    accepted: bool
    reason: str = ""


@record
class Selection:
    """The images to merge (ascending by version order) and why the others were left out."""

    cls: ExtClass
    accepted: tuple[Candidate, ...]
    decisions: tuple[Decision, ...]

    @property
    def names(self) -> tuple[str, ...]:
        """The merged names as the marker lists them: ascending by version order (whatever
        the layer order)."""
        return tuple(by_version([c.name for c in self.accepted]))

    @property
    def ignored(self) -> int:
        return sum(1 for d in self.decisions if not d.accepted)

    def layers(self, hierarchy: str) -> tuple[Candidate, ...]:
        """Images contributing to `hierarchy`, top (highest name, wins conflicts) to bottom.

        Raises StrataError if a selected image's path for `hierarchy` is unusable, as v257's
        determine_used_extensions() does while merging (the whole merge then fails)."""
        for c in reversed(self.accepted):
            problem = c.content_problems.get(hierarchy)
            if problem is not None:
                raise StrataError(f"Failed to merge hierarchy '{hierarchy}': image {c.name} "
                                  f"({c.ext.path}): {problem}", kind=ErrorKind.INVALID)
        return tuple(c for c in reversed(self.accepted) if hierarchy in c.content)

    def summary(self) -> str:
        """The line systemd logs before merging, or why nothing is merged."""
        if not self.accepted:
            if self.ignored:
                return (f"No suitable extensions found ({self.ignored} ignored due to "
                        "incompatible image(s)).")
            return "No extensions found."
        files = [c.ext.path.rstrip("/").rsplit("/", 1)[-1] for c in self.accepted]
        files.sort(key=functools.cmp_to_key(strverscmp_improved))
        return "Using extensions '" + "', '".join(files) + "'."


def by_version(names: Sequence[str]) -> list[str]:
    return sorted(names, key=functools.cmp_to_key(strverscmp_improved))


def check_forbidden_directories(cls: ExtClass, candidates: Sequence[Candidate]) -> None:
    """image_read_metadata(): a sysext *directory* shipping usr/lib/os-release fails the whole
    operation, even with --force (raw images are merely ignored later)."""
    if cls is not ExtClass.SYSEXT:
        return
    for c in candidates:
        if c.forbidden and not c.is_raw:
            raise StrataError(
                f"Failed to read metadata for image {c.name}: {c.ext.path} contains "
                "/usr/lib/os-release, which is not allowed in an extension",
                hint="ship the release data as usr/lib/extension-release.d/extension-release."
                + c.name,
                kind=ErrorKind.INVALID,
            )


def found_partitions(c: Candidate) -> dict[str, int]:
    """The DPS designators a GPT image has (root, usr, their verity and signature partitions)
    with their GPT attribute bits, in partition table order. A lone generic Linux partition
    is the root partition, as with systemd's DISSECT_IMAGE_GENERIC_ROOT."""
    from strata.images.gpt import PartitionRole
    from strata.policy import VERITY_OF, VERITY_SIG_OF

    lay = c.layout
    assert lay is not None and lay.partition is not None
    parts = []
    for p in (lay.partition, lay.usr_partition):
        if p is not None:
            parts.append(("usr" if p.role is PartitionRole.USR else "root", p))
    for v in c.verity:
        parts.append((VERITY_OF[v.designator], v.hash))
        if v.signature_partition is not None:
            parts.append((VERITY_SIG_OF[v.designator], v.signature_partition))
    parts.sort(key=lambda dp: dp[1].index)
    return {d: p.flags for d, p in parts}


def dissect(c: Candidate, policy: ImagePolicy) -> tuple[str | None, tuple[VerityUse, ...]]:
    """Why the image policy refuses a raw image (dissect_image() with the policy), or None and
    how its verity partitions are then used."""
    from strata.policy import VERITY_OF, VERITY_SIG_OF, Flag, allows_unprotected, check, check_image

    lay = c.layout
    if lay is None:
        return None, ()
    if lay.partition is None:  # a naked file system is the root partition, checked alone
        return check(policy, "root", Flag.UNPROTECTED), ()
    result = check_image(policy, found_partitions(c))
    if result.refused:
        return result.refused, ()
    data = "usr" if lay.mount_point == "/usr" else "root"
    if data not in result.used:
        return (f"Partition {data} exists, but the policy says to ignore it: nothing to use, "
                "refusing."), ()
    uses = tuple(VerityUse(verity=v, signed=VERITY_SIG_OF[v.designator] in result.used,
                           required=not allows_unprotected(policy, v.designator))
                 for v in c.verity if VERITY_OF[v.designator] in result.used)
    return None, uses


def policy_violation(c: Candidate, policy: ImagePolicy) -> str | None:
    """Why the image policy refuses a raw image (dissect with the policy), or None."""
    return dissect(c, policy)[0]


def default_verity_use(c: Candidate) -> tuple[VerityUse, ...]:
    """Without a policy everything is used and nothing is required."""
    return tuple(VerityUse(verity=v, signed=v.signature_partition is not None, required=False)
                 for v in c.verity)


def select(
    candidates: Sequence[Candidate],
    host: HostRelease,
    *,
    cls: ExtClass,
    scope: Scope,
    arch: str,
    force: bool,
    policy: Callable[[Candidate], ImagePolicy] | None = None,
    order: Sequence[str] = (),
    lenient: bool = False,
) -> Selection:
    """Decide image by image (merge_subprocess): raw images must satisfy the image policy
    (else the whole operation fails, as in systemd) and pass mount validation unless --force;
    then the release data must be compatible with the host unless --force.

    `order` (bottom to top) overrides the version order of the layers for the names it lists;
    the others stay below them, in version order. `lenient` skips an image that violates the
    policy, or whose hierarchy is unusable, instead of failing everything (strata ext)."""
    version = functools.cmp_to_key(strverscmp_improved)
    rank = {name: i for i, name in enumerate(order)}
    accepted: list[Candidate] = []
    decisions: list[Decision] = []
    for c in sorted(candidates, key=lambda c: (rank.get(c.name, -1), version(c.name))):
        why, uses = (dissect(c, policy(c)) if policy is not None and c.is_raw
                     else (None, default_verity_use(c)))
        if why:
            message = f"{c.ext.path}: Image does not match image policy: {why}"
            if not lenient:
                raise StrataError(message, kind=ErrorKind.PERMISSION,
                                  hint=f"the policy in effect is '{policy(c)}'"
                                  if policy is not None else None)
            decisions.append(Decision(c.name, c.ext.path, False, message))
            continue
        if lenient and c.content_problems:
            problem = "; ".join(c.content_problems.values())
            decisions.append(Decision(c.name, c.ext.path, False,
                                      f"Image '{c.name}' cannot be merged: {problem}"))
            continue
        if c.is_raw and not force and not c.valid_extension_tree:
            why = ("it ships /usr/lib/os-release" if c.forbidden
                   else "no matching extension-release file")
            decisions.append(Decision(c.name, c.ext.path, False,
                                      f"Image '{c.name}' is not a valid extension ({why}), "
                                      "ignoring."))
            continue
        if not force and c.release.fields is None and c.release.problem:
            decisions.append(Decision(c.name, c.ext.path, False,
                                      f"Extension '{c.name}': {c.release.problem}, ignoring."))
            continue
        if not force:
            verdict = check_compatibility(host, c.release.fields, name=c.name, cls=cls,
                                          scope=scope, arch=arch)
            if not verdict.accepted:
                decisions.append(Decision(c.name, c.ext.path, False, verdict.reason))
                continue
        accepted.append(replace(c, verity_use=uses) if uses else c)
        decisions.append(Decision(c.name, c.ext.path, True))
    return Selection(cls=cls, accepted=tuple(accepted), decisions=tuple(decisions))
