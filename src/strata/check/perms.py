"""Permission rules: setuid/setgid, world-writable entries, special files, ownership, and
symlinks that lead nowhere. Only what is merged (inside the class's hierarchies) is looked at;
everything else is never seen (`outside-hierarchy` reports it)."""

from __future__ import annotations

import stat as _stat

from strata.check.context import Context
from strata.check.findings import Finding, Rule, Severity
from strata.check.view import ImageView, Layered
from strata.errors import StrataError
from strata.images.base import FileKind
from strata.model import ExtClass

ERROR, WARNING, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO


def setuid(view: ImageView, ctx: Context) -> list[Finding]:
    """Every setuid/setgid file, so that none ships by accident. systemd-sysext mounts with
    nodev only, so the bits work; systemd-confext mounts nosuid, where they do nothing."""
    nosuid = ExtClass.SYSEXT not in view.classes
    out = []
    for e in view.tree:
        if e.kind is not FileKind.REGULAR or not e.mode & (_stat.S_ISUID | _stat.S_ISGID):
            continue
        if not view.merged(e.path):
            continue
        bits = " and ".join(b for b, m in (("setuid", _stat.S_ISUID), ("setgid", _stat.S_ISGID))
                            if e.mode & m)
        who = f"owner {e.uid}:{e.gid}, mode {_stat.S_IMODE(e.mode):04o}"
        if nosuid:
            out.append(Finding(Rule.SETUID, INFO, e.path,
                               f"{bits} ({who}) has no effect: confexts are mounted nosuid"))
        else:
            out.append(Finding(Rule.SETUID, WARNING, e.path, f"{bits} ({who})",
                               "keep only what must run with raised privileges "
                               f"(chmod {'u' if e.mode & _stat.S_ISUID else 'g'}-s otherwise)"))
    return out


def world_writable(view: ImageView, ctx: Context) -> list[Finding]:
    """World-writable files, and world-writable directories without the sticky bit (anyone
    may replace anyone's files there) - writable for real with --mutable."""
    out = []
    for e in view.tree:
        if e.kind is FileKind.SYMLINK or not e.mode & _stat.S_IWOTH or not view.merged(e.path):
            continue
        if e.kind is FileKind.DIRECTORY:
            if e.mode & _stat.S_ISVTX:
                continue
            what = "world-writable directory without the sticky bit"
            fix = f"chmod o-w or +t ({_stat.S_IMODE(e.mode):04o} now)"
        else:
            what = "world-writable file"
            fix = f"chmod o-w ({_stat.S_IMODE(e.mode):04o} now)"
        out.append(Finding(Rule.WORLD_WRITABLE, WARNING, e.path, what, fix))
    return out


def special_files(view: ImageView, ctx: Context) -> list[Finding]:
    """Device nodes (useless: extensions are mounted nodev), fifos and sockets."""
    out = []
    for e in view.tree:
        if e.kind is not FileKind.OTHER or not view.merged(e.path):
            continue
        if _stat.S_ISCHR(e.mode) or _stat.S_ISBLK(e.mode):
            what = "device node: extensions are mounted nodev, it cannot be opened"
        elif _stat.S_ISFIFO(e.mode):
            what = "fifo in an extension image"
        else:
            what = "socket in an extension image"
        out.append(Finding(Rule.SPECIAL_FILE, WARNING, e.path, what,
                           "remove it; create it at run time (tmpfiles.d) if needed"))
    return out


def ownership(view: ImageView, ctx: Context) -> list[Finding]:
    """Files not owned by root:root (a tree packed as a user; sysext-bakery#176): they would
    belong to whoever has that uid on the device. One finding for all of them."""
    odd = [e for e in view.tree if (e.uid, e.gid) != (0, 0) and view.merged(e.path)]
    if not odd:
        return []
    first = odd[0]
    more = f" and {len(odd) - 1} more" if len(odd) > 1 else ""
    return [Finding(Rule.OWNERSHIP, WARNING, first.path,
                    f"owned by {first.uid}:{first.gid}, not root:root{more}",
                    "build the image with files owned by root (mkfs.erofs --all-root, "
                    "mksquashfs -all-root; strata build does this)")]


def dangling_symlinks(view: ImageView, ctx: Context) -> list[Finding]:
    """Symlinks whose target is missing: resolved inside the image (root = the image's /),
    then, with --host, in the image merged over the host. Without a host a target outside
    the image is only noted: the host may well provide it."""
    alone = Layered(view, None)
    merged = Layered(view, ctx.host) if ctx.host is not None else None
    out = []
    for e in view.tree:
        if e.kind is not FileKind.SYMLINK or not view.merged(e.path):
            continue
        try:
            if alone.chase(e.path) is not None:
                continue
            if merged is not None and merged.chase(e.path) is not None:
                continue
        except StrataError as err:
            out.append(Finding(Rule.DANGLING_SYMLINK, WARNING, e.path,
                               f"-> {e.target}: {err.message.split(': ', 1)[-1]}",
                               "break the symlink loop"))
            continue
        if merged is not None:
            out.append(Finding(Rule.DANGLING_SYMLINK, WARNING, e.path,
                               f"-> {e.target}: the target exists neither in the image nor "
                               "on the host", "ship the target, or remove the symlink"))
        else:
            out.append(Finding(Rule.DANGLING_SYMLINK, INFO, e.path,
                               f"-> {e.target}: not in the image, the host must provide it",
                               "check against the host with --host ROOT"))
    return out


RULES = (setuid, world_writable, special_files, ownership, dangling_symlinks)
