"""Test helpers: scratch roots, extension trees and images made by the real mkfs tools, running
strata (and systemd-sysext) inside a private mount namespace."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from strata.kernel.ns import ChildError, run_isolated

T = TypeVar("T")

Files = Mapping[str, "str | bytes | int"]  # path -> content, or an int mode for a directory


def isolated(fn: Callable[..., T]) -> Callable[..., T]:
    """Run a test body in a forked child inside a private mount namespace; assertion failures
    come back as AssertionError with the child's traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return run_isolated(functools.partial(fn, *args, **kwargs))
        except ChildError as e:
            raise AssertionError("in the isolated child:\n" + e.text) from None

    return wrapper


def write_tree(base: Path, files: Files) -> None:
    for rel, content in files.items():
        p = base / rel.lstrip("/")
        if isinstance(content, int):
            p.mkdir(parents=True, exist_ok=True)
            os.chmod(p, content)
            continue
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            p.write_bytes(content)
        elif content.startswith("->"):
            os.symlink(content[2:], p)
        else:
            p.write_text(content)


def release_text(fields: Mapping[str, str]) -> str:
    return "".join(f"{k}={v}\n" for k, v in fields.items())


def make_root(base: Path, os_release: Mapping[str, str] | None = None,
              files: Files | None = None) -> Path:
    """A scratch OS root: /etc/os-release, a host file in /usr and /opt, /run."""
    root = base / "root"
    fields = {"ID": "debian", "VERSION_ID": "12"} if os_release is None else os_release
    write_tree(root, {
        "etc/os-release": release_text(fields),
        "usr/bin/host-tool": "host\n",
        "usr/share/host/data": "host data\n",
        "opt/host/file": "host opt\n",
        "run": 0o755,
        "var/lib": 0o755,
        **(files or {}),
    })
    return root


def ext_tree(base: Path, name: str, files: Files, release: Mapping[str, str] | None,
             *, confext: bool = False, release_name: str | None = None) -> Path:
    """An extension tree (outside any root) with its extension-release file."""
    tree = base / f"tree-{name}"
    rel_dir = "etc/extension-release.d" if confext else "usr/lib/extension-release.d"
    all_files: dict[str, str | bytes | int] = dict(files)
    if release is not None:
        all_files[f"{rel_dir}/extension-release.{release_name or name}"] = release_text(release)
    write_tree(tree, all_files)
    return tree


def mkfs(tree: Path, image: Path, fmt: str = "erofs") -> Path:
    image.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "erofs":
        argv = ["mkfs.erofs", "-zlz4hc", "-T0", "--all-root",
                "-U", "6b1c3c5e-0000-4000-8000-000000000001", str(image), str(tree)]
    elif fmt == "squashfs":
        argv = ["mksquashfs", str(tree), str(image), "-noappend", "-all-root", "-quiet",
                "-no-progress"]
    else:
        raise ValueError(fmt)
    subprocess.run(argv, check=True, capture_output=True)
    return image


def install_ext(root: Path, name: str, files: Files, release: Mapping[str, str] | None = None,
                *, fmt: str = "dir", where: str = "var/lib/extensions", confext: bool = False,
                filename: str | None = None, release_name: str | None = None) -> Path:
    """Build an extension and put it into a search directory of the root."""
    if release is None:
        release = {"ID": "_any"}
    tree = ext_tree(root.parent, name, files, release, confext=confext,
                    release_name=release_name)
    dest_dir = root / where
    dest_dir.mkdir(parents=True, exist_ok=True)
    if fmt == "dir":
        dest = dest_dir / (filename or name)
        shutil.copytree(tree, dest, symlinks=True)
        return dest
    return mkfs(tree, dest_dir / (filename or f"{name}.raw"), fmt)


def strata(*args: str, env: Mapping[str, str] | None = None, check: bool = False
           ) -> subprocess.CompletedProcess[str]:
    """Run the strata CLI (from this checkout) and capture its output."""
    full_env = {**os.environ, **(env or {})}
    src = str(Path(__file__).resolve().parent.parent / "src")
    full_env["PYTHONPATH"] = src + os.pathsep + full_env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "strata", *args], capture_output=True,
                          text=True, env=full_env, check=check)


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=check)


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below `path` in this namespace."""
    from strata.kernel import mountinfo

    p = str(path)
    return [e.mountpoint for e in mountinfo.read()
            if e.mountpoint == p or e.mountpoint.startswith(p + "/")]


def make_shared(root: Path) -> None:
    """Make `root` a shared mount point (systemd-sysext's child relies on propagation)."""
    run("mount", "--bind", str(root), str(root))
    run("mount", "--make-shared", str(root))


# --- systemd-sysext as an oracle (differential and interop tests) ----------------------------

SYSTEMD_SYSEXT = "/usr/bin/systemd-sysext"

#: an entry of a tree snapshot: ("d", mode) | ("f", mode, content) | ("l", target) | ("?", mode)
Entry = tuple[str, ...]


@functools.cache
def systemd_version() -> int | None:
    """The installed systemd-sysext's major version, None when it is not installed."""
    if not os.access(SYSTEMD_SYSEXT, os.X_OK):
        return None
    r = subprocess.run([SYSTEMD_SYSEXT, "--version"], capture_output=True, text=True,
                       check=False)
    words = r.stdout.split()
    return int(words[1]) if len(words) > 1 and words[1].isdigit() else None


def systemd_sysext(*args: str, env: Mapping[str, str] | None = None,
                   command: Sequence[str] = (SYSTEMD_SYSEXT,)
                   ) -> subprocess.CompletedProcess[str]:
    """Run the installed systemd-sysext (needs `prepare_for_systemd` in this namespace), or
    another one given as `command`."""
    return subprocess.run([*command, "--no-pager", *args], capture_output=True, text=True,
                          env={**os.environ, "SYSTEMD_LOG_COLOR": "0", **(env or {})},
                          check=False)


def prepare_for_systemd(base: Path) -> None:
    """Inside a private namespace: a tmpfs on /run (systemd-sysext mkdir's /run/systemd/sysext
    even with --root) and `base` made a shared mount, so that what systemd's (sd-merge) child
    mounts anywhere below `base` propagates back into this namespace."""
    run("mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", "/run")
    make_shared(base)


def snapshot_tree(root: Path, hierarchies: tuple[str, ...] = ("usr", "opt"),
                  skip: tuple[str, ...] = (".systemd-sysext", ".systemd-confext")
                  ) -> dict[str, Entry | None]:
    """Every entry below each hierarchy of `root` (relative path -> type, mode, content or
    symlink target), the hierarchy itself included (None when it does not exist); symlinks are
    not followed, except in the hierarchy's own path, which is resolved inside the root as
    systemd does. Marker directories are left out."""
    import stat

    out: dict[str, Entry | None] = {}
    for h in hierarchies:
        top = resolve_in_root(root, h)
        if top is None or not top.is_dir():
            out[h] = None
            continue
        out[h] = ("d", oct(stat.S_IMODE(top.stat().st_mode)))
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = [d for d in dirnames if d not in skip]
            for name in [*dirnames, *filenames]:
                p = os.path.join(dirpath, name)
                st = os.lstat(p)
                rel = os.path.join(h, os.path.relpath(p, top))
                mode = oct(stat.S_IMODE(st.st_mode))
                if stat.S_ISLNK(st.st_mode):
                    out[rel] = ("l", os.readlink(p))
                elif stat.S_ISDIR(st.st_mode):
                    out[rel] = ("d", mode)
                elif stat.S_ISREG(st.st_mode):
                    with open(p, "rb") as f:
                        out[rel] = ("f", mode, f.read().decode(errors="backslashreplace"))
                else:
                    out[rel] = ("?", mode)
    return dict(sorted(out.items()))


def resolve_in_root(root: Path, path: str) -> Path | None:
    """`path` resolved with `root` as "/" (symlinks included), None when it does not exist."""
    from strata.errors import StrataError
    from strata.fsutil import chase

    try:
        return Path(chase(path, str(root)))
    except StrataError:
        return None


def marker_state(hierarchy: Path, marker: str = ".systemd-sysext", listing: str = "extensions"
                 ) -> tuple[str, bool] | None:
    """(content of the marker's extension list, whether its `dev` equals the hierarchy's
    st_dev) of a merged hierarchy, None when there is no marker."""
    mdir = hierarchy / marker
    if not (mdir / listing).exists():
        return None
    st = os.stat(hierarchy)
    dev = (mdir / "dev").read_text()
    return (mdir / listing).read_text(), dev == f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}\n"


# --- oracles: the installed systemd-sysext, or systemd 257 through peers.sh ----------------

#: systemd 257 in a Debian trixie chroot, run in a shared test namespace by ../shared's
#: peers.sh. Development only: CI does not have it (tests using it are opt-in).
PEERS = os.environ.get("STRATA_PEERS_SH", "/work/shared/tools/peers.sh")
PEERS_WORK = Path(os.environ.get("STRATA_PEERS", "/var/tmp/strata-peers")) / "work"


class Oracle:
    """A systemd-sysext to compare with or interoperate with (and its systemd-confext, when
    that exists: v254+)."""

    def __init__(self, version: int, argv: tuple[str, ...],
                 confext_argv: tuple[str, ...] | None = None) -> None:
        self.version = version
        self.argv = argv
        self.confext_argv = confext_argv

    def confext(self) -> Oracle:
        """The systemd-confext of the same version."""
        if self.confext_argv is None:
            raise ValueError(f"systemd {self.version} has no systemd-confext here")
        return Oracle(self.version, self.confext_argv)

    def __repr__(self) -> str:
        return f"systemd-sysext {self.version}"

    def __call__(self, *args: str, env: Mapping[str, str] | None = None
                 ) -> subprocess.CompletedProcess[str]:
        return systemd_sysext(*args, env=env, command=self.argv)

    @property
    def merged_status_comparable(self) -> bool:
        """252 reads the marker of a merge under --root without the root prefix and fails."""
        return self.version >= 257

    @property
    def mount_options_comparable(self) -> bool:
        """Overlays got MS_NODEV in v254: 252's is "ro", strata's and 257's "ro,nodev"."""
        return self.version >= 254


def installed_oracle() -> Oracle:
    return Oracle(systemd_version() or 0, (SYSTEMD_SYSEXT,))


PEERS_257 = Oracle(257, (PEERS, "sysext257"), (PEERS, "confext257"))


def peers_enabled() -> bool:
    """STRATA_DIFF_257=1 and peers.sh is there: also check against systemd 257."""
    return os.environ.get("STRATA_DIFF_257") == "1" and os.access(PEERS, os.X_OK)


def run_in_peers(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m module args...` inside the peers namespace (see peers.sh), from this
    checkout; the module's main runs what it is told against PEERS_257."""
    repo = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": f"{repo}{os.pathsep}{repo / 'src'}"}
    return subprocess.run([PEERS, "exec", sys.executable, "-m", module, *args], cwd=repo,
                          env=env, capture_output=True, text=True, check=False)
