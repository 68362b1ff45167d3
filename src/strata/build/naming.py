"""Output file names, and the names the extension-release file must also answer to. Pure.

systemd looks the release file up under the *image* name, which is the file name without
".raw" (and, since v255, without a ".sysext"/".confext" infix). A versioned file name such as
`tools-1.0-x86-64.raw` therefore needs `extension-release.tools-1.0-x86-64`; Dalec solves this
with a symlink to the file named after the extension, and so does Strata (release.py): the
image then also works renamed to `<name>.raw`, the name sysupdate's `CurrentSymlink=` and
Flatcar give it.
"""

from __future__ import annotations

from strata.build.spec import ClassChoice, NamePattern, OutputFormat
from strata.model import ExtClass


def arch_label(architecture: str) -> str:
    """The architecture as it appears in file names ("_any" reads badly there)."""
    return "any" if architecture == "_any" else architecture


def stem(pattern: NamePattern, *, name: str, version: str, revision: str, architecture: str,
         target: str | None = None) -> str:
    """The file name without ".raw": `<name>-<version>-<arch>` by default, Dalec's
    `<name>-v<version>-<revision>-<target>-<arch>`, or the bare `<name>`."""
    arch = arch_label(architecture)
    if pattern is NamePattern.BARE:
        return name
    if pattern is NamePattern.DALEC:
        if target is None:
            raise ValueError("the dalec pattern needs a target")
        return f"{name}-v{version}-{revision}-{target}-{arch}"
    return f"{name}-{version}-{arch}"


def file_names(stem_: str, choice: ClassChoice, fmt: OutputFormat) -> dict[ExtClass, str]:
    """One output name per class. With class both the confext gets a ".confext" infix (so
    both fit in one directory; systemd v255+ strips it again, giving both the same image
    name, each in its own class)."""
    suffix = "" if fmt is OutputFormat.DIRECTORY else ".raw"
    out = {}
    for cls in choice.classes:
        infix = ".confext" if cls is ExtClass.CONFEXT and choice is ClassChoice.BOTH else ""
        out[cls] = f"{stem_}{infix}{suffix}"
    return out


def image_name(file_name: str) -> str:
    """The image name systemd v255+ gives `file_name` (".raw" and the class infix dropped;
    directories keep their name except for the infix, as Strata's store reads them)."""
    base = file_name[:-4] if file_name.endswith(".raw") else file_name
    for infix in (".sysext", ".confext"):
        if base.endswith(infix):
            return base[: -len(infix)]
    return base


def release_aliases(name: str, file_name: str) -> tuple[str, ...]:
    """Names other than `name` under which the release file must be found for `file_name`:
    its image name, and (for systemd < 255, which keeps the infix) the name with the infix."""
    base = file_name[:-4] if file_name.endswith(".raw") else file_name
    return tuple(n for n in dict.fromkeys((image_name(file_name), base)) if n != name)
