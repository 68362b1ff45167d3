"""Engine settings: command line, environment and defaults resolved into one frozen value."""

from __future__ import annotations

import enum
import os
import posixpath
from collections.abc import Mapping

from strata import log
from strata.errors import ErrorKind, StrataError
from strata.model import ExtClass, MutableMode
from strata.parse import parse_boolean
from strata.record import record


class VerifyMode(enum.Enum):
    """How the hash trees of verity-protected images are checked (--verify=)."""

    #: through dm-verity where the kernel has device-mapper; without it, an image whose
    #: policy requires verity is refused, one that may be used unprotected is mounted as is
    AUTO = "auto"
    #: through dm-verity, or refuse every verity-protected image
    DM_VERITY = "dm-verity"
    #: in userspace before mounting: `veritysetup verify` of the whole hash tree through the
    #: read-only loop device that is then mounted, and the signature against the trusted
    #: certificates
    USERSPACE = "userspace"


@record
class Settings:
    cls: ExtClass
    root: str = "/"
    #: --root= was given (even "/"): systemd then does not follow symlinks in the search
    #: directories and does not reload the service manager
    root_given: bool = False
    hierarchies: tuple[str, ...] = ()
    force: bool = False
    mutable: MutableMode = MutableMode.NO
    noexec: bool | None = None
    no_reload: bool = False
    image_policy: str | None = None
    #: refresh by sliding the new overlay beneath the old one (kernel >= 6.5); False forces
    #: systemd's unmerge-then-merge
    atomic: bool = True
    verify: VerifyMode = VerifyMode.AUTO

    @property
    def discover_root(self) -> str | None:
        return self.root if self.root_given else None


def _is_normalized(path: str) -> bool:
    parts = path.split("/")
    if "//" in path or ".." in parts or "." in parts:
        return False
    return not path.endswith("/.")


def parse_hierarchies(value: str | None, cls: ExtClass) -> tuple[str, ...]:
    """$SYSTEMD_SYSEXT_HIERARCHIES / $SYSTEMD_CONFEXT_HIERARCHIES (getenv_path_list): colon
    separated, each absolute, normalized and not "/"; empty entries are errors."""
    if value is None:
        return cls.default_hierarchies
    var = f"{cls.env_prefix}_HIERARCHIES"
    paths = value.split(":")
    for p in paths:
        why = None
        if not p.startswith("/"):
            why = f"Path '{p}' is not absolute, refusing."
        elif not _is_normalized(p):
            why = f"Path '{p}' is not normalized, refusing."
        elif posixpath.normpath(p) == "/":
            why = f"Path '{p}' is the root fs, refusing."
        if why:
            raise StrataError(f"Failed to parse environment variable ${var}: {why}",
                              kind=ErrorKind.USAGE)
    return tuple(paths)


def parse_mutable(value: str) -> MutableMode | None:
    """--mutable= value: a mode name, or a boolean (yes/no words mean YES/NO)."""
    for mode in MutableMode:
        if value == mode.value:
            return mode
    b = parse_boolean(value)
    if b is None:
        return None
    return MutableMode.YES if b else MutableMode.NO


def parse_verify(value: str) -> VerifyMode:
    for mode in VerifyMode:
        if value == mode.value:
            return mode
    raise StrataError(f"Failed to parse argument to --verify=: {value}", kind=ErrorKind.USAGE,
                      hint="one of: " + ", ".join(m.value for m in VerifyMode))


def normalize_root(root: str | None) -> str:
    if not root:
        return "/"
    if not root.startswith("/"):
        root = os.path.abspath(root)
    root = posixpath.normpath(root)
    return root


def resolve(
    cls: ExtClass,
    env: Mapping[str, str],
    *,
    root: str | None = None,
    force: bool = False,
    mutable: str | None = None,
    noexec: bool | None = None,
    no_reload: bool = False,
    image_policy: str | None = None,
    verify: str | None = None,
) -> Settings:
    """Merge CLI values (None = not given) with the environment as systemd does: CLI beats
    $SYSTEMD_*_MUTABLE_MODE (an invalid env value is warned about and ignored); --root implies
    --no-reload; STRATA_REFRESH=unmerge-merge turns the atomic refresh off."""
    mode = MutableMode.NO
    env_var = f"{cls.env_prefix}_MUTABLE_MODE"
    if env_var in env:
        parsed = parse_mutable(env[env_var])
        if parsed is None:
            log.warning(f"Failed to parse {env_var} environment variable value "
                        f"'{env[env_var]}'. Ignoring.")
        else:
            mode = parsed
    if mutable is not None:
        parsed = parse_mutable(mutable)
        if parsed is None:
            raise StrataError(f"Failed to parse argument to --mutable=: {mutable}",
                              kind=ErrorKind.USAGE,
                              hint="one of: " + ", ".join(m.value for m in MutableMode))
        mode = parsed
    if image_policy is not None:
        from strata.policy import parse

        parse(image_policy)  # reject a malformed policy before doing anything
    norm_root = normalize_root(root)
    return Settings(
        cls=cls,
        root=norm_root,
        root_given=bool(root),
        hierarchies=parse_hierarchies(env.get(f"{cls.env_prefix}_HIERARCHIES"), cls),
        force=force,
        mutable=mode,
        noexec=noexec,
        no_reload=no_reload or bool(root),
        image_policy=image_policy,
        atomic=env.get("STRATA_REFRESH", "atomic") != "unmerge-merge",
        verify=parse_verify(verify) if verify is not None else VerifyMode.AUTO,
    )
