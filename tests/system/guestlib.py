"""What the scenarios do inside the VM: run commands (each printed with its output, so a
failure shows what happened), ask systemd about units, wait for a state with a bound, build
extension images with the real mkfs tools, talk varlink to the daemon, and put the device back
into a known state. Runs as root in the guest only (see conftest.py)."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

STORE = Path("/var/lib/strata/extensions")
SOCKET = "/run/strata/strata.sock"
AVOCADO = "org.avocado.Extensions"
SYSEXT = "io.systemd.sysext"
BUILD_DIR = Path("/var/tmp/strata-system-test")
UNIT_DIR = Path("/etc/systemd/system")


# --- commands --------------------------------------------------------------------------------


def sh(*argv: str, check: bool = True, timeout: float = 180.0, input: str | None = None,
       env: Mapping[str, str] | None = None, user: str | None = None
       ) -> subprocess.CompletedProcess[str]:
    """Run argv (as `user` through runuser), print it with its output and time; with `check`
    a non-zero exit fails the test naming the command and its stderr."""
    full = ["runuser", "-u", user, "--", *argv] if user else list(argv)
    started = time.monotonic()
    proc = subprocess.run(full, capture_output=True, text=True, timeout=timeout, input=input,
                          env=None if env is None else {**os.environ, **env}, check=False)
    took = time.monotonic() - started
    print(f"$ {shlex.join(full)}    # exit {proc.returncode}, {took:.1f}s")
    for stream in (proc.stdout, proc.stderr):
        if stream.strip():
            print("  " + stream.rstrip("\n").replace("\n", "\n  "))
    if check and proc.returncode != 0:
        raise AssertionError(f"{shlex.join(full)} exited {proc.returncode}: "
                             f"{proc.stderr.strip()[-2000:]}")
    return proc


def strata(*args: str, check: bool = True, env: Mapping[str, str] | None = None,
           timeout: float = 180.0) -> subprocess.CompletedProcess[str]:
    """The installed `strata` (the wheel's entry point, on the PATH systemd uses too)."""
    return sh("strata", *args, check=check, env=env, timeout=timeout)


def strata_json(*args: str) -> Any:
    return json.loads(strata(*args, "--json=short").stdout)


def systemctl(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return sh("systemctl", *args, check=check)


def prop(unit: str, name: str) -> str:
    """One property of a unit as systemctl shows it (no printing: it is polled)."""
    return subprocess.run(["systemctl", "show", "-P", name, unit], capture_output=True,
                          text=True, check=True, timeout=60).stdout.strip()


def wait_for(what: str, probe: Callable[[], T], ok: Callable[[T], bool] = bool,
             timeout: float = 90.0, interval: float = 0.25) -> T:
    """Poll `probe` until ok(value); the value. After `timeout` seconds the test fails naming
    `what` and the last value seen."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if ok(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; "
                                 f"last seen: {value!r}")
        time.sleep(interval)


def wait_active(unit: str, timeout: float = 90.0) -> None:
    wait_for(f"{unit} to be active", lambda: prop(unit, "ActiveState"),
             lambda s: s == "active", timeout)


def wait_inactive(unit: str, timeout: float = 90.0) -> None:
    wait_for(f"{unit} to be inactive", lambda: prop(unit, "ActiveState"),
             lambda s: s in ("inactive", "failed"), timeout)


def ask(path: str, timeout: float = 10.0) -> str | None:
    """What the service listening on unix socket `path` answers (one line), or None when
    nothing listens there."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(path)
        except (FileNotFoundError, ConnectionRefusedError):
            return None
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    return data.decode().strip()


def cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").decode().split("\0")


# --- mounts ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mount:
    mount_id: int
    fstype: str
    source: str
    options: str


def top_mount(path: str) -> Mount:
    """The mount visible at `path` (the last one listed for it in this namespace)."""
    found: Mount | None = None
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        sep = fields.index("-")
        if fields[4] == path:
            found = Mount(int(fields[0]), fields[sep + 1], fields[sep + 2], fields[sep + 3])
    if found is None:
        # not a mount point: the file system of its parent
        return Mount(0, "", "", "")
    return found


def is_merged(path: str) -> bool:
    """An extension overlay (source "sysext" or "confext", as systemd names it) at `path`."""
    m = top_mount(path)
    return m.fstype == "overlay" and m.source in ("sysext", "confext")


# --- extension images ------------------------------------------------------------------------


def os_release() -> dict[str, str]:
    out: dict[str, str] = {}
    for line in Path("/etc/os-release").read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key] = value.strip().strip('"')
    return out


def _release_text(fields: Mapping[str, str]) -> str:
    return "".join(f"{k}={shlex.quote(v) if v and ' ' in v else v}\n" for k, v in fields.items())


def build_extension(name: str, version: str, files: Mapping[str, str],
                    *, release: Mapping[str, str] | None = None, confext: bool = False,
                    executable: Collection[str] = (), fmt: str = "erofs",
                    into: Path = STORE, copies: Mapping[str, str] | None = None) -> Path:
    """An extension image `into`/NAME-VERSION.raw, made with mkfs.erofs (or mksquashfs) from
    `files` (path -> text), `copies` (path -> a file of the guest) and a release file
    compatible with this OS: ID and VERSION_ID of /etc/os-release, the class's *_VERSION_ID,
    then `release`."""
    tree = BUILD_DIR / f"{name}-{version}{'.confext' if confext else ''}"
    shutil.rmtree(tree, ignore_errors=True)
    for rel, content in files.items():
        p = tree / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(content)
        p.chmod(0o755 if rel in executable else 0o644)
    for rel, source in (copies or {}).items():  # files of the guest, e.g. an ELF program
        p = tree / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, p)
    host = os_release()
    fields = {"ID": host["ID"], "VERSION_ID": host.get("VERSION_ID", ""),
              ("CONFEXT_VERSION_ID" if confext else "SYSEXT_VERSION_ID"): version,
              **(release or {})}
    rel_dir = tree / ("etc/extension-release.d" if confext else "usr/lib/extension-release.d")
    rel_dir.mkdir(parents=True, exist_ok=True)
    (rel_dir / f"extension-release.{name}").write_text(_release_text(fields))
    into.mkdir(parents=True, exist_ok=True)
    out = into / f"{name}-{version}.raw"
    out.unlink(missing_ok=True)
    if fmt == "erofs":
        sh("mkfs.erofs", str(out), str(tree))
    elif fmt == "squashfs":
        sh("mksquashfs", str(tree), str(out), "-quiet", "-all-root", "-noappend")
    else:
        raise ValueError(fmt)
    return out


def versiond(name: str, version: str) -> str:
    """A small daemon (the extension's "binary"): prints one line to its journal, then answers
    every connection on /run/NAME.sock with "NAME VERSION pid=PID exe=PATH", PATH being the
    file it was started from."""
    return f'''#!/usr/bin/python3
# {name} {version}, shipped in a Strata system-test extension
import os, signal, socket, sys

PATH = "/run/{name}.sock"
ANSWER = f"{name} {version} pid={{os.getpid()}} exe={{os.path.abspath(sys.argv[0])}}\\n"


def bye(*_):
    try:
        os.unlink(PATH)
    except FileNotFoundError:
        pass
    sys.exit(0)


signal.signal(signal.SIGTERM, bye)
try:
    os.unlink(PATH)
except FileNotFoundError:
    pass
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(PATH)
server.listen(16)
print(f"{name} {version} listening on {{PATH}} as pid {{os.getpid()}}", flush=True)
while True:
    conn, _ = server.accept()
    with conn:
        conn.sendall(ANSWER.encode())
'''


def service_unit(description: str, exec_start: str, *, kind: str = "simple",
                 extra: str = "") -> str:
    return (f"[Unit]\nDescription={description}\n\n[Service]\nType={kind}\n"
            f"ExecStart={exec_start}\n{extra}")


def hello_extension(version: str = "1.0") -> Path:
    """The extension of scenarios 2 and 4: it ships two services and asks for them
    (AVOCADO_ENABLE_SERVICES=, STRATA_SERVICES=) and for a manager reload."""
    mark = ("#!/bin/sh\n"
            f"echo 'hello-strata-mark {version}: started from the extension'\n"
            f"echo {version} > /run/hello-strata-mark\n")
    return build_extension("hello", version, {
        "usr/bin/hello-strata": versiond("hello-strata", version),
        "usr/lib/hello-strata/mark": mark,
        "usr/lib/systemd/system/hello-strata.service": service_unit(
            "Hello from a Strata extension", "/usr/bin/hello-strata"),
        "usr/lib/systemd/system/hello-strata-mark.service": service_unit(
            "Oneshot from a Strata extension", "/usr/lib/hello-strata/mark", kind="oneshot",
            extra="RemainAfterExit=yes\n"),
    }, release={"EXTENSION_RELOAD_MANAGER": "1",
                "AVOCADO_ENABLE_SERVICES": "hello-strata",
                "STRATA_SERVICES": "hello-strata-mark"},
        executable={"usr/bin/hello-strata", "usr/lib/hello-strata/mark"})


# --- the daemon ------------------------------------------------------------------------------


@contextlib.contextmanager
def varlink_iface(interface: str = AVOCADO, address: str = f"unix:{SOCKET}"
                  ) -> Iterator[Any]:
    """A connection to the daemon through the `varlink` package (the client the reference
    documents), opened on `interface`."""
    import varlink

    with varlink.Client(address=address) as client, client.open(interface) as iface:
        yield iface


def install_units() -> None:
    """The units shipped in the package, installed as docs/reference.md says: copied to
    /etc/systemd/system, strata.socket enabled and started. Idempotent."""
    import importlib.resources

    units = importlib.resources.files("strata") / "service" / "units"
    changed = False
    for name in ("strata.socket", "strata.service", "strata-merge.service"):
        text = (units / name).read_text()
        target = UNIT_DIR / name
        if not target.exists() or target.read_text() != text:
            target.write_text(text)
            changed = True
    if changed:
        systemctl("daemon-reload")
    if prop("strata.socket", "UnitFileState") != "enabled" \
            or prop("strata.socket", "ActiveState") != "active":
        systemctl("enable", "--now", "strata.socket")


def reset_device() -> None:
    """No merge, nothing enabled, an empty store: the state every scenario starts from."""
    if is_merged("/usr") or is_merged("/etc") or is_merged("/opt"):
        strata("ext", "unmerge")
    strata("ext", "disable", "--all", check=False)
    if STORE.exists():
        for p in STORE.iterdir():
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
    assert not is_merged("/usr") and not is_merged("/etc")
