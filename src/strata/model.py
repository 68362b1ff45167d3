"""Shared vocabulary: extension classes, scopes and image types, with their systemd constants."""

from __future__ import annotations

import enum


class ExtClass(enum.Enum):
    """An image class, as systemd-sysext (SYSEXT) and systemd-confext (CONFEXT) know it."""

    SYSEXT = "sysext"
    CONFEXT = "confext"

    @property
    def default_hierarchies(self) -> tuple[str, ...]:
        return ("/usr", "/opt") if self is ExtClass.SYSEXT else ("/etc",)

    @property
    def release_dir(self) -> str:
        """Directory holding extension-release.<name>, relative to the image root."""
        if self is ExtClass.SYSEXT:
            return "usr/lib/extension-release.d"
        return "etc/extension-release.d"

    @property
    def marker_dir(self) -> str:
        """Name of the marker directory written at the top of each merged hierarchy."""
        return ".systemd-sysext" if self is ExtClass.SYSEXT else ".systemd-confext"

    @property
    def marker_list(self) -> str:
        """File in the marker directory listing every merged image name."""
        return "extensions" if self is ExtClass.SYSEXT else "confexts"

    @property
    def level_key(self) -> str:
        return "SYSEXT_LEVEL" if self is ExtClass.SYSEXT else "CONFEXT_LEVEL"

    @property
    def scope_key(self) -> str:
        return "SYSEXT_SCOPE" if self is ExtClass.SYSEXT else "CONFEXT_SCOPE"

    @property
    def env_prefix(self) -> str:
        """Prefix of the environment overrides, e.g. SYSTEMD_SYSEXT_HIERARCHIES."""
        return "SYSTEMD_SYSEXT" if self is ExtClass.SYSEXT else "SYSTEMD_CONFEXT"

    @property
    def mount_source(self) -> str:
        """The overlay's source name, as shown in mountinfo."""
        return self.value

    @property
    def image_subdir(self) -> str:
        """systemd's name for the per-class workspace directory ("extensions"/"confexts")."""
        return "extensions" if self is ExtClass.SYSEXT else "confexts"

    @property
    def program(self) -> str:
        return "systemd-sysext" if self is ExtClass.SYSEXT else "systemd-confext"

    @property
    def raw_suffix(self) -> str:
        """Optional infix stripped after .raw since v255: foo.sysext.raw -> foo."""
        return ".sysext" if self is ExtClass.SYSEXT else ".confext"


class Scope(enum.Enum):
    """Where the image is being used: SYSEXT_SCOPE=/CONFEXT_SCOPE= values."""

    SYSTEM = "system"
    INITRD = "initrd"
    PORTABLE = "portable"


class ImageType(enum.Enum):
    """systemd's image types, as shown in the TYPE column of `list`."""

    DIRECTORY = "directory"
    SUBVOLUME = "subvolume"
    RAW = "raw"
    BLOCK = "block"


class MutableMode(enum.Enum):
    """--mutable= modes (v256+)."""

    NO = "no"
    AUTO = "auto"
    YES = "yes"
    IMPORT = "import"
    EPHEMERAL = "ephemeral"
    EPHEMERAL_IMPORT = "ephemeral-import"

    @property
    def has_upper(self) -> bool:
        return self in (MutableMode.AUTO, MutableMode.YES, MutableMode.EPHEMERAL,
                        MutableMode.EPHEMERAL_IMPORT)

    @property
    def ephemeral(self) -> bool:
        return self in (MutableMode.EPHEMERAL, MutableMode.EPHEMERAL_IMPORT)

    @property
    def imports(self) -> bool:
        return self in (MutableMode.IMPORT, MutableMode.EPHEMERAL_IMPORT)
