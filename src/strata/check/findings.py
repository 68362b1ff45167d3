"""What a check reports: severities, rule identifiers, findings, and the exit status."""

from __future__ import annotations

import enum
from collections.abc import Iterable

from strata.model import ExtClass
from strata.record import record


class Severity(enum.Enum):
    """How bad a finding is. ERROR: the image will not work, or will break the host;
    WARNING: it probably works but something is wrong or risky; INFO: worth knowing."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"

    @property
    def rank(self) -> int:
        """Higher is worse; sorts findings and decides the exit status."""
        return {Severity.INFO: 0, Severity.WARNING: 1, Severity.ERROR: 2}[self]


class Rule(enum.Enum):
    """Every rule `strata check` applies; the value is the identifier in the output."""

    UNREADABLE = "unreadable"
    IMAGE_NAME = "image-name"
    OUTSIDE_HIERARCHY = "outside-hierarchy"
    ROOT_DIRECTORY = "root-directory"
    RELEASE_MISSING = "release-missing"
    RELEASE_NAME = "release-name"
    RELEASE_FIELDS = "release-fields"
    HOST_COMPATIBILITY = "host-compatibility"
    OS_RELEASE = "os-release"
    USR_SBIN = "usr-sbin"
    NO_CONTENT = "no-content"
    SETUID = "setuid"
    WORLD_WRITABLE = "world-writable"
    SPECIAL_FILE = "special-file"
    OWNERSHIP = "ownership"
    DANGLING_SYMLINK = "dangling-symlink"
    ELF_ARCH = "elf-arch"
    ELF_NEEDED = "elf-needed"
    ELF_GLIBC = "elf-glibc"
    ELF_UNREADABLE = "elf-unreadable"
    SHIPS_GLIBC = "ships-glibc"
    SHADOWS_HOST = "shadows-host"
    TYPE_CLASH = "type-clash"
    OVERLAP = "overlap"

    @property
    def description(self) -> str:
        return _DESCRIPTIONS[self]


_DESCRIPTIONS = {
    Rule.UNREADABLE: "the image cannot be read (corrupt, truncated, unknown format)",
    Rule.IMAGE_NAME: "the file name is not one systemd picks up (*.raw) or gives no valid name",
    Rule.OUTSIDE_HIERARCHY: "content outside the class's hierarchies is never merged",
    Rule.ROOT_DIRECTORY: "/bin, /sbin, /lib, /lib64 at the top level are never merged",
    Rule.RELEASE_MISSING: "no extension-release file: systemd ignores the image",
    Rule.RELEASE_NAME: "the extension-release file is not named after the image",
    Rule.RELEASE_FIELDS: "the extension-release fields are missing, malformed or unusual",
    Rule.HOST_COMPATIBILITY: "the release fields do not match the host's os-release (--host)",
    Rule.OS_RELEASE: "the image ships an os-release file",
    Rule.USR_SBIN: "a real /usr/sbin hides a merged-bin host's /usr/sbin -> bin symlink",
    Rule.NO_CONTENT: "nothing to merge besides the release file",
    Rule.SETUID: "setuid/setgid files",
    Rule.WORLD_WRITABLE: "world-writable files, and directories without the sticky bit",
    Rule.SPECIAL_FILE: "device nodes, fifos and sockets",
    Rule.OWNERSHIP: "files not owned by root",
    Rule.DANGLING_SYMLINK: "symlinks whose target is missing (in the image, or on the host)",
    Rule.ELF_ARCH: "ELF machine differs from ARCHITECTURE= (or the host's)",
    Rule.ELF_NEEDED: "DT_NEEDED libraries or the interpreter found neither in image nor host",
    Rule.ELF_GLIBC: "GLIBC_x.y symbol versions newer than the host's glibc",
    Rule.ELF_UNREADABLE: "a file with the ELF magic that cannot be parsed",
    Rule.SHIPS_GLIBC: "the image ships glibc itself (libc.so.6, the dynamic loader)",
    Rule.SHADOWS_HOST: "files that replace host files when merged (--host)",
    Rule.TYPE_CLASH: "a directory over a host symlink or file, or the reverse (--host)",
    Rule.OVERLAP: "the same path in two images checked together: the higher name wins",
}


@record
class Finding:
    """One problem in one image. `path` is the image path it concerns ("/" for the image as a
    whole); `hint` says how to fix it, when there is something to say."""

    rule: Rule
    severity: Severity
    path: str
    message: str
    hint: str | None = None


@record
class ImageReport:
    """The findings for one image, worst first. `image` is the path as given."""

    image: str
    name: str
    description: str  # e.g. "sysext, erofs"
    findings: tuple[Finding, ...]

    @property
    def worst(self) -> Severity | None:
        return worst(self.findings)


def worst(findings: Iterable[Finding]) -> Severity | None:
    ranked = [f.severity for f in findings]
    return max(ranked, key=lambda s: s.rank) if ranked else None


#: exit statuses: nothing worse than INFO, WARNING at worst, ERROR (or the check failed)
EXIT_CLEAN, EXIT_ERROR, EXIT_WARNING = 0, 1, 2


def exit_status(reports: Iterable[ImageReport]) -> int:
    """0 when no finding is worse than INFO, 2 when the worst is a WARNING, 1 for an ERROR.
    1 is also what every strata command returns when it fails, so "1" always means "do not
    ship this"; 2 lets CI choose whether warnings fail a build."""
    severities = [r.worst for r in reports]
    if Severity.ERROR in severities:
        return EXIT_ERROR
    if Severity.WARNING in severities:
        return EXIT_WARNING
    return EXIT_CLEAN


def sort_key(f: Finding) -> tuple[int, str, str]:
    return (-f.severity.rank, f.path, f.rule.value)


def class_names(classes: Iterable[ExtClass]) -> str:
    return "+".join(c.value for c in classes) or "unknown class"
