"""/proc/<pid>/mountinfo: a pure parser and the few queries the engine needs.

Line format (proc(5)):
    36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
    ID PARENT MAJ:MIN ROOT MOUNTPOINT MOUNT-OPTS [OPTIONAL...] - FSTYPE SOURCE SUPER-OPTS

The kernel escapes space, tab, newline and backslash in paths (and in the source) as 3-digit
octal (\\040 \\011 \\012 \\134). Paths are decoded to str with the filesystem encoding
(surrogateescape), so non-UTF-8 names round-trip through os.fsencode.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from strata.errors import ErrorKind, StrataError
from strata.record import record


def unescape(field: str) -> str:
    """Undo the kernel's octal escapes (\\040 -> " ")."""
    if "\\" not in field:
        return field
    raw = os.fsencode(field)
    out = bytearray()
    i = 0
    while i < len(raw):
        if raw[i] == 0x5C and _is_octal(raw[i + 1 : i + 4]):
            out.append(int(raw[i + 1 : i + 4], 8) & 0xFF)
            i += 4
        else:
            out.append(raw[i])
            i += 1
    return os.fsdecode(bytes(out))


def _is_octal(b: bytes) -> bool:
    return len(b) == 3 and all(0x30 <= c <= 0x37 for c in b)


@record
class Propagation:
    """The optional fields that describe mount propagation (shared subtrees)."""

    shared: int | None = None  # peer group this mount shares events with
    master: int | None = None  # peer group this mount receives events from (a slave)
    propagate_from: int | None = None  # closest dominant peer group, for slaves
    unbindable: bool = False

    @property
    def private(self) -> bool:
        return self.shared is None and self.master is None and not self.unbindable

    def __str__(self) -> str:
        parts = []
        if self.shared is not None:
            parts.append(f"shared:{self.shared}")
        if self.master is not None:
            parts.append(f"master:{self.master}")
        if self.propagate_from is not None:
            parts.append(f"propagate_from:{self.propagate_from}")
        if self.unbindable:
            parts.append("unbindable")
        return " ".join(parts) or "private"


@record
class MountEntry:
    """One line of mountinfo, with paths unescaped."""

    mount_id: int
    parent_id: int
    major: int
    minor: int
    root: str  # the path inside the filesystem that is mounted (not "/" for bind mounts)
    mountpoint: str
    mount_options: tuple[str, ...]  # per-mount: rw/ro, nosuid, nodev, relatime, ...
    optional_fields: tuple[str, ...]  # "shared:1", "master:2", ...
    fstype: str
    source: str
    super_options: tuple[str, ...]  # per-superblock, incl. filesystem-specific ones

    @property
    def read_only(self) -> bool:
        return "ro" in self.mount_options

    @property
    def propagation(self) -> Propagation:
        values: dict[str, int] = {}
        unbindable = False
        for field in self.optional_fields:
            tag, _, value = field.partition(":")
            if tag == "unbindable":
                unbindable = True
            elif tag in ("shared", "master", "propagate_from") and value.isdigit():
                values[tag] = int(value)
        return Propagation(values.get("shared"), values.get("master"),
                           values.get("propagate_from"), unbindable)

    def super_option(self, key: str) -> str | None:
        """The value of "key=value" in the superblock options ("" for a bare flag)."""
        for opt in self.super_options:
            k, sep, v = opt.partition("=")
            if k == key:
                return v if sep else ""
        return None


def _options(field: str) -> tuple[str, ...]:
    return tuple(unescape(o) for o in field.split(",") if o) if field else ()


def parse_line(line: str, lineno: int = 1) -> MountEntry:
    fields = line.split(" ")
    try:
        sep = fields.index("-", 6)
    except ValueError:
        raise _malformed(line, lineno, "no '-' separator after the optional fields") from None
    if sep < 6 or len(fields) - sep - 1 < 2:
        raise _malformed(line, lineno, "too few fields")
    tail = fields[sep + 1 :]
    if len(tail) > 3:
        raise _malformed(line, lineno, "too many fields after '-'")
    try:
        mount_id = int(fields[0])
        parent_id = int(fields[1])
        major_s, colon, minor_s = fields[2].partition(":")
        if not colon:
            raise ValueError(fields[2])
        major, minor = int(major_s), int(minor_s)
    except ValueError:
        raise _malformed(line, lineno, "bad mount ID or device number") from None
    return MountEntry(
        mount_id=mount_id,
        parent_id=parent_id,
        major=major,
        minor=minor,
        root=unescape(fields[3]),
        mountpoint=unescape(fields[4]),
        mount_options=_options(fields[5]),
        optional_fields=tuple(f for f in fields[6:sep] if f),
        fstype=unescape(tail[0]),
        source=unescape(tail[1]),
        super_options=_options(tail[2]) if len(tail) == 3 else (),
    )


def _malformed(line: str, lineno: int, why: str) -> StrataError:
    shown = line if len(line) <= 120 else line[:117] + "..."
    return StrataError(f"mountinfo line {lineno}: {why}: {shown!r}", kind=ErrorKind.INVALID)


def parse(text: str) -> list[MountEntry]:
    """Parse the whole of a mountinfo file; a malformed line is a StrataError."""
    return [parse_line(line, n) for n, line in enumerate(text.split("\n"), 1) if line.strip()]


def read(pid: int | str = "self") -> list[MountEntry]:
    path = f"/proc/{pid}/mountinfo"
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise StrataError.from_os(e, f"reading {path}") from e
    return parse(os.fsdecode(data))


def _norm(path: str) -> str:
    norm = os.path.normpath(path)
    return "/" if norm == "//" else norm


def _stack(entries: Sequence[MountEntry], mountpoint: str) -> list[MountEntry]:
    """The visible stack of mounts on `mountpoint`, bottom -> top.

    A mount stacked on another at the same mountpoint has that one as its parent, so a stack's
    bottom is the one whose parent mounts elsewhere. The same mountpoint string can carry
    several stacks when a parent got overmounted along with its submounts (e.g. /a/b exists
    on the old, covered /a and on the new /a); the visible one sits on the mount that is
    visible at the parent directory."""
    here = [e for e in entries if e.mountpoint == mountpoint]
    if not here:
        return []
    ids = {e.mount_id for e in here}
    bottoms = [e for e in here if e.parent_id not in ids or e.parent_id == e.mount_id]
    if not bottoms:  # a cycle; cannot happen in a real mount table
        bottoms = here[:1]
    bottom = bottoms[-1]
    if len(bottoms) > 1 and mountpoint != "/":
        holder = _container(entries, os.path.dirname(mountpoint))
        if holder is not None:
            bottom = next((b for b in bottoms if b.parent_id == holder.mount_id), bottom)
    stack = [bottom]
    seen = {bottom.mount_id}
    while True:
        nxt = next((e for e in here if e.parent_id == stack[-1].mount_id
                    and e.mount_id not in seen), None)
        if nxt is None:
            return stack
        stack.append(nxt)
        seen.add(nxt.mount_id)


def _container(entries: Sequence[MountEntry], path: str) -> MountEntry | None:
    """The visible mount that holds `path` (the top mount on its nearest mounted ancestor)."""
    while True:
        stack = _stack(entries, path)
        if stack:
            return stack[-1]
        if path == "/":
            return None
        path = os.path.dirname(path)


def stack_at(entries: Sequence[MountEntry], path: str) -> list[MountEntry]:
    """All mounts visibly stacked on `path`, bottom -> top ([] if it is no mountpoint)."""
    return _stack(entries, _norm(path))


def top_mount_at(entries: Sequence[MountEntry], path: str) -> MountEntry | None:
    """The mount visible at mountpoint `path`: the top of its stack, the one that no other
    mount on the same mountpoint has as its parent."""
    stack = _stack(entries, _norm(path))
    return stack[-1] if stack else None


def submounts(entries: Sequence[MountEntry], mount_id: int) -> list[MountEntry]:
    """Every mount below `mount_id` (children, their children, ...), in mountinfo order."""
    kids: dict[int, list[int]] = {}
    for e in entries:
        if e.mount_id != e.parent_id:
            kids.setdefault(e.parent_id, []).append(e.mount_id)
    found: set[int] = set()
    todo = list(kids.get(mount_id, ()))
    while todo:
        mid = todo.pop()
        if mid in found or mid == mount_id:
            continue
        found.add(mid)
        todo.extend(kids.get(mid, ()))
    return [e for e in entries if e.mount_id in found]


def by_id(entries: Iterable[MountEntry], mount_id: int) -> MountEntry | None:
    return next((e for e in entries if e.mount_id == mount_id), None)
