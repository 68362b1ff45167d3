"""Authorisation from SO_PEERCRED: clients running as other uids (forked children that drop
privileges), the group policy, the socket's mode and group; and [serve] configuration."""

from __future__ import annotations

import json
import os
import socket
import stat
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from strata.errors import ErrorKind, StrataError
from strata.service import auth, config
from tests.service.fake_manage import FakeManage
from tests.service.harness import Raw, ServerThread

NOBODY = 65534
GROUP = 4242  # a gid no real group needs to have
AV = "org.avocado.Extensions"
DENIED = "org.varlink.service.PermissionDenied"

CALLS: list[tuple[str, dict[str, Any], bool]] = [
    (f"{AV}.Status", {}, False),
    (f"{AV}.List", {}, False),
    (f"{AV}.Merge", {}, True),
    (f"{AV}.Refresh", {}, True),
    (f"{AV}.Unmerge", {}, False),
    (f"{AV}.Enable", {"extensions": ["cfg"]}, False),
    (f"{AV}.Disable", {"all": True}, False),
    ("io.systemd.sysext.Merge", {}, False),
    ("io.systemd.sysext.Unmerge", {}, False),
    ("io.systemd.sysext.Refresh", {}, False),
    ("io.systemd.sysext.List", {}, True),
    ("org.varlink.service.GetInfo", {}, False),
]


def as_user(uid: int, gid: int, groups: Sequence[int],
            fn: Callable[[], Any]) -> Any:
    """fn() in a forked child running as uid/gid/groups; its JSON result comes back."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(rfd)
            os.setgroups(list(groups))
            os.setgid(gid)
            os.setuid(uid)
            result = fn()
            os.write(wfd, json.dumps(result).encode())
        except BaseException as e:
            os.write(wfd, json.dumps({"child-error": repr(e)}).encode())
            code = 1
        finally:
            os._exit(code)
    os.close(wfd)
    with os.fdopen(rfd, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    value = json.loads(data)
    assert not (isinstance(value, dict) and "child-error" in value), value
    return value


def outcomes(path: Path) -> dict[str, str]:
    """Each call of CALLS on one connection: "ok" or the error name."""
    out: dict[str, str] = {}
    with Raw(path) as r:
        for method, params, more in CALLS:
            r.call(method, params, **({"more": True} if more else {}))
            last = list(r.replies())[-1]
            out[method] = last.get("error", "ok")
    return out


pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch uids")


@pytest.fixture
def open_server(sock_dir: Path, fake: FakeManage) -> Iterator[ServerThread]:
    """A server whose socket any uid may connect to (authorisation is then all ours)."""
    with ServerThread(sock_dir / "strata.sock", fake, group=str(GROUP)) as srv:
        os.chmod(srv.path, 0o666)
        yield srv


def test_unprivileged_user_may_read_only(open_server: ServerThread, fake: FakeManage) -> None:
    got = as_user(NOBODY, NOBODY, [], lambda: outcomes(open_server.path))
    privileged = {m for m, _p, _more in CALLS if m in auth.PRIVILEGED}
    assert {m for m, e in got.items() if e == DENIED} == privileged
    assert got[f"{AV}.Status"] == got[f"{AV}.List"] == "ok"
    assert got["org.varlink.service.GetInfo"] == "ok"  # still connected after refusals
    assert got["io.systemd.sysext.List"] != DENIED  # open (NoImagesFound on this host)
    assert not {c[0] for c in fake.calls} & {"merge", "refresh", "unmerge", "enable",
                                             "disable"}


@pytest.mark.parametrize(("gid", "groups"), [(GROUP, []), (NOBODY, [GROUP])])
def test_group_member_may_change(open_server: ServerThread, fake: FakeManage, gid: int,
                                 groups: list[int]) -> None:
    got = as_user(NOBODY, gid, groups, lambda: outcomes(open_server.path))
    assert got[f"{AV}.Merge"] == got[f"{AV}.Enable"] == got[f"{AV}.Disable"] == "ok"
    assert DENIED not in got.values()
    assert "merge" in {c[0] for c in fake.calls}


def test_root_may_change(server: ServerThread) -> None:
    got = outcomes(server.path)
    assert DENIED not in got.values()
    assert got[f"{AV}.Merge"] == "ok"


def test_socket_mode_and_group(sock_dir: Path, fake: FakeManage) -> None:
    with ServerThread(sock_dir / "s.sock", fake, group=str(GROUP)) as srv:
        st = os.stat(srv.path)
        assert stat.S_ISSOCK(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o660
        assert (st.st_uid, st.st_gid) == (0, GROUP)
    assert not srv.path.exists()  # removed on exit


def test_socket_without_group_is_root_only(sock_dir: Path, fake: FakeManage) -> None:
    with ServerThread(sock_dir / "s.sock", fake) as srv:
        assert stat.S_IMODE(os.stat(srv.path).st_mode) == 0o660

        def try_connect() -> str:
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.connect(str(srv.path))
            except PermissionError:
                return "EACCES"
            return "connected"

        assert as_user(NOBODY, NOBODY, [], try_connect) == "EACCES"


def test_group_from_config_file(sock_dir: Path, fake: FakeManage) -> None:
    cfg = sock_dir / "strata.toml"
    cfg.write_text(f'[serve]\ngroup = "{GROUP}"\n[ext]\nother = 1\n')
    with ServerThread(sock_dir / "s.sock", fake, config=cfg) as srv:
        assert os.stat(srv.path).st_gid == GROUP
        os.chmod(srv.path, 0o666)
        got = as_user(NOBODY, GROUP, [], lambda: outcomes(srv.path))
    assert got[f"{AV}.Merge"] == "ok"


def test_unknown_group_fails_start(sock_dir: Path, fake: FakeManage) -> None:
    with pytest.raises(StrataError, match="group 'no-such-group-here' does not exist"), \
            ServerThread(sock_dir / "s.sock", fake, group="no-such-group-here"):
        pass


# --- pure parts ------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "creds", "policy", "groups", "ok"), [
    (f"{AV}.Status", auth.PeerCreds(1, 1000, 1000), auth.Policy(), (), True),
    (f"{AV}.Status", None, auth.Policy(), (), True),
    (f"{AV}.Merge", auth.PeerCreds(1, 0, 0), auth.Policy(), (), True),
    (f"{AV}.Merge", auth.PeerCreds(1, 1000, 1000), auth.Policy(), (), False),
    (f"{AV}.Merge", None, auth.Policy(gid=5), (5,), False),
    (f"{AV}.Enable", auth.PeerCreds(1, 1000, 5), auth.Policy(gid=5), (), True),
    (f"{AV}.Disable", auth.PeerCreds(1, 1000, 1000), auth.Policy(gid=5), (4, 5), True),
    (f"{AV}.Disable", auth.PeerCreds(1, 1000, 1000), auth.Policy(gid=5), (4, 6), False),
    ("io.systemd.sysext.Refresh", auth.PeerCreds(1, 1000, 1000), auth.Policy(), (), False),
    ("io.systemd.sysext.List", auth.PeerCreds(1, 1000, 1000), auth.Policy(), (), True),
])
def test_allowed(method: str, creds: auth.PeerCreds | None, policy: auth.Policy,
                 groups: tuple[int, ...], ok: bool) -> None:
    asked: list[bool] = []

    def peer_groups() -> tuple[int, ...]:
        asked.append(True)
        return groups

    assert auth.allowed(method, creds, policy, peer_groups) is ok
    # the supplementary groups are looked up only when they decide
    decided_early = (method not in auth.PRIVILEGED or creds is None or creds.uid == 0
                     or policy.gid is None or creds.gid == policy.gid)
    assert bool(asked) is not decided_early


def test_peer_credentials_of_a_socketpair() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with a, b:
        assert auth.peer_credentials(a) == auth.PeerCreds(os.getpid(), os.geteuid(),
                                                          os.getegid())
        assert set(auth.peer_groups(a)) == set(os.getgroups())


def test_resolve_group() -> None:
    assert auth.resolve_group("root", "x") == 0
    assert auth.resolve_group("4242", "x") == 4242
    with pytest.raises(StrataError) as exc:
        auth.resolve_group("no-such-group-here", "/etc/strata/strata.toml")
    assert exc.value.kind is ErrorKind.CONFIGURATION
    assert str(exc.value).startswith("/etc/strata/strata.toml: group")


@pytest.mark.parametrize(("text", "expect"), [
    ("", config.ServeConfig()),
    ('[serve]\ngroup = "strata"\n', config.ServeConfig(group="strata")),
    ('[ext]\nmutable = "yes"\n', config.ServeConfig()),
    ('[serve]\ngroup = "g"\nfuture = 1\n', config.ServeConfig(group="g")),
    ("[serve\n", "f.toml: "),
    ("serve = 1\n", "f.toml: [serve] must be a table"),
    ("[serve]\ngroup = 5\n", "f.toml: [serve] group must be a non-empty string"),
    ('[serve]\ngroup = ""\n', "f.toml: [serve] group must be a non-empty string"),
])
def test_config_parse(text: str, expect: config.ServeConfig | str) -> None:
    if isinstance(expect, str):
        with pytest.raises(StrataError) as exc:
            config.parse(text, "f.toml")
        assert str(exc.value).startswith(expect)
        assert "\n" not in str(exc.value)
    else:
        assert config.parse(text, "f.toml") == expect


def test_config_load(tmp_path: Path) -> None:
    assert config.load(str(tmp_path / "absent.toml")) == config.ServeConfig()
    (tmp_path / "c.toml").write_text('[serve]\ngroup = "wheel"\n')
    assert config.load(str(tmp_path / "c.toml")).group == "wheel"
    assert config.config_path("/srv/root") == "/srv/root/etc/strata/strata.toml"
