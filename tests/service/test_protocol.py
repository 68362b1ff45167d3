"""Bad input and misbehaving clients: standard errors, limits, and a daemon that keeps
serving."""

from __future__ import annotations

import errno
import json
import os
import random
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from strata.service.core import Limits
from strata.service.protocol import bad_call_error
from strata.service.wire import strip_nulls
from tests.service.fake_manage import FakeManage
from tests.service.harness import Raw, ServerThread

SVC = "org.varlink.service"
AV = "org.avocado.Extensions"


def invalid(parameter: str) -> dict[str, Any]:
    return {"error": f"{SVC}.InvalidParameter", "parameters": {"parameter": parameter}}


@pytest.mark.parametrize(("raw", "expect"), [
    (b"{not json", invalid("")),
    (b"[1, 2]", invalid("")),
    (b'"a string"', invalid("")),
    (b"\xff\xfe", invalid("")),
    (b"{}", invalid("method")),
    (b'{"method": 5}', invalid("method")),
    (b'{"method": "NoDot"}', {"error": f"{SVC}.InterfaceNotFound",
                              "parameters": {"interface": "NoDot"}}),
    (b'{"method": "bad..iface.M"}', {"error": f"{SVC}.InterfaceNotFound",
                                     "parameters": {"interface": "bad..iface"}}),
    (b'{"method": "org.avocado.Extensions.lower"}',
     {"error": f"{SVC}.MethodNotFound", "parameters": {"method": f"{AV}.lower"}}),
    (b'{"method": "org.avocado.Extensions.List", "parameters": []}', invalid("parameters")),
    (b'{"method": "org.avocado.Extensions.List", "more": "yes"}', invalid("more")),
    (b'{"method": "org.avocado.Extensions.List", "more": true, "oneway": true}',
     invalid("more")),
    (b'{"method": "org.example.Nope.Call"}', {"error": f"{SVC}.InterfaceNotFound",
                                              "parameters": {"interface": "org.example.Nope"}}),
    (b'{"method": "org.avocado.Extensions.Frobnicate"}',
     {"error": f"{SVC}.MethodNotFound", "parameters": {"method": f"{AV}.Frobnicate"}}),
    (b'{"method": "org.avocado.Extensions.Enable", "parameters": {}}', invalid("extensions")),
    (b'{"method": "org.avocado.Extensions.Enable", "parameters": {"extensions": "app"}}',
     invalid("extensions")),
    (b'{"method": "org.avocado.Extensions.Enable", "parameters": {"extensions": ["a", 1]}}',
     invalid("extensions")),
    (b'{"method": "org.avocado.Extensions.Enable", "parameters": {"extensions": [],'
     b' "osRelease": 12}}', invalid("osRelease")),
    (b'{"method": "org.avocado.Extensions.Unmerge", "parameters": {"unmount": "yes"}}',
     invalid("unmount")),
    (b'{"method": "org.avocado.Extensions.List", "parameters": {"extra": 1}}',
     invalid("extra")),
    (b'{"method": "io.systemd.sysext.List", "parameters": {"class": "portable"},'
     b' "more": true}', invalid("class")),
    (b'{"method": "io.systemd.sysext.List", "parameters": {"class": 1}, "more": true}',
     invalid("class")),
    (b'{"method": "io.systemd.sysext.List"}', {"error": f"{SVC}.ExpectedMore",
                                               "parameters": {}}),
    (b'{"method": "org.varlink.service.GetInterfaceDescription"}', invalid("interface")),
])
def test_bad_input_gets_standard_errors(server: ServerThread, raw: bytes,
                                        expect: dict[str, Any]) -> None:
    with Raw(server.path) as r:
        r.send(raw + b"\0")
        assert r.reply() == expect
        # ... and the connection stays usable
        r.call(f"{SVC}.GetInfo")
        assert r.reply()["parameters"]["product"] == "strata"


def test_every_reply_has_parameters(server: ServerThread) -> None:
    """libvarlink's clients reject a reply without "parameters" as an invalid message."""
    with Raw(server.path) as r:
        for call in ({"method": "io.systemd.sysext.List"},
                     {"method": "io.systemd.sysext.List", "more": True},
                     {"method": f"{AV}.Merge"}):
            r.send(json.dumps(call).encode() + b"\0")
            assert "parameters" in r.reply()


def test_pipelined_and_oneway_calls_answer_in_order(server: ServerThread,
                                                    fake: FakeManage) -> None:
    with Raw(server.path) as r:
        r.send(b"".join(json.dumps(m).encode() + b"\0" for m in (
            {"method": f"{AV}.Enable", "parameters": {"extensions": ["cfg"]}, "oneway": True},
            {"method": f"{AV}.List"},
            {"method": f"{AV}.Nope"},
            {"method": f"{SVC}.GetInfo"},
        )))
        assert len(r.reply()["parameters"]["extensions"]) == 3
        assert r.reply()["error"] == f"{SVC}.MethodNotFound"
        assert r.reply()["parameters"]["vendor"] == "Strata"
    assert "cfg" in fake.enabled["12"]  # the oneway call ran, silently


@pytest.mark.parametrize(("obj", "name", "params"), [
    ({}, "InvalidParameter", {"parameter": "method"}),
    ({"method": "a.b.C", "upgrade": 1}, "InvalidParameter", {"parameter": "upgrade"}),
    ({"method": "x.Y"}, "InterfaceNotFound", {"interface": "x"}),
    ({"method": "a.b.C", "oneway": True, "upgrade": True}, "InvalidParameter",
     {"parameter": "upgrade"}),
    ({"method": ".C"}, "InterfaceNotFound", {"interface": ""}),
    ({"method": "a.b.C-d"}, "MethodNotFound", {"method": "a.b.C-d"}),
    ({"method": "a.b.Cé"}, "MethodNotFound", {"method": "a.b.Cé"}),
])
def test_bad_call_error(obj: dict[str, Any], name: str, params: dict[str, str]) -> None:
    err = bad_call_error(obj)
    assert (err.name, err.paramstojson()) == (f"{SVC}.{name}", params)


def test_strip_nulls() -> None:
    assert strip_nulls({"a": None, "b": [{"c": None, "d": 1}, None], "e": {"f": None}}) == \
        {"b": [{"d": 1}, None], "e": {}}


# --- limits ----------------------------------------------------------------------------------


def big_call(size: int) -> bytes:
    """A GetInfo call whose JSON text is exactly `size` bytes."""
    head, tail = b'{"method":"org.varlink.service.GetInfo","parameters":{"pad":"', b'"}}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


def test_message_of_8_mib_is_read(server: ServerThread) -> None:
    with Raw(server.path, timeout=30) as r:
        r.send(big_call(8 << 20) + b"\0")
        assert r.reply() == invalid("pad")  # read and parsed: the limit is inclusive
        r.call(f"{SVC}.GetInfo")
        assert "vendor" in r.reply()["parameters"]


def test_message_over_8_mib_is_an_error_then_close(server: ServerThread) -> None:
    with Raw(server.path, timeout=30) as r:
        def send() -> None:
            try:
                r.send(big_call((8 << 20) + 1) + b"\0")
            except OSError:
                pass  # the server stopped reading and closed: expected

        t = threading.Thread(target=send)
        t.start()
        assert r.reply() == {"error": "io.systemd.System",
                             "parameters": {"errno": errno.E2BIG}}
        assert r.closed()
        t.join(30)
    with Raw(server.path) as r:  # others are served as before
        r.call(f"{SVC}.GetInfo")
        assert "vendor" in r.reply()["parameters"]


def test_unterminated_message_over_limit_without_nul(sock_dir: Path, fake: FakeManage) -> None:
    """The limit holds for a message that never ends, too (checked as bytes arrive)."""
    with ServerThread(sock_dir / "s.sock", fake, limits=Limits(max_message=1000)) as srv, \
            Raw(srv.path) as r:
        r.send(b"{" + b" " * 600)
        r.send(b" " * 600)
        assert r.reply()["error"] == "io.systemd.System"
        assert r.closed()


def test_silent_client_is_dropped(sock_dir: Path, fake: FakeManage) -> None:
    limits = Limits(idle_timeout=0.5)
    with ServerThread(sock_dir / "s.sock", fake, limits=limits) as srv:
        with Raw(srv.path) as silent, Raw(srv.path) as chatty:
            t0 = time.monotonic()
            for _ in range(6):  # 1.2 s of activity every 0.2 s: never idle for 0.5 s
                chatty.call(f"{SVC}.GetInfo")
                chatty.reply()
                time.sleep(0.2)
            assert silent.closed()  # dropped meanwhile
            assert time.monotonic() - t0 >= 0.5
            chatty.call(f"{SVC}.GetInfo")
            assert "vendor" in chatty.reply()["parameters"]
        with Raw(srv.path) as partial:  # bytes without a complete message are not activity
            t0 = time.monotonic()
            try:
                for _ in range(10):
                    partial.send(b" ")
                    time.sleep(0.2)
            except BrokenPipeError:
                pass
            assert partial.closed()
            assert time.monotonic() - t0 < 1.5


def test_busy_client_is_not_idle(sock_dir: Path, fake: FakeManage) -> None:
    """A merge that outlasts the idle timeout keeps its caller connected."""
    fake.gate = threading.Event()
    with ServerThread(sock_dir / "s.sock", fake, limits=Limits(idle_timeout=0.3)) as srv, \
            Raw(srv.path) as r:
        r.call(f"{AV}.Merge", {}, more=True)
        assert r.reply()["parameters"]["message"] == "merge: 2 enabled"
        time.sleep(1.0)
        fake.gate.set()
        assert list(r.replies())[-1]["parameters"]["done"] is True


def test_connection_limit(sock_dir: Path, fake: FakeManage) -> None:
    with ServerThread(sock_dir / "s.sock", fake, limits=Limits(max_connections=3)) as srv:
        held = [Raw(srv.path) for _ in range(3)]
        for r in held:
            r.call(f"{SVC}.GetInfo")
            r.reply()
        with Raw(srv.path) as extra:
            assert extra.closed()  # turned away at once
        held.pop().close()
        time.sleep(0.2)
        with Raw(srv.path) as again:
            again.call(f"{SVC}.GetInfo")
            assert "vendor" in again.reply()["parameters"]
        for r in held:
            r.close()


def garbage(rng: random.Random) -> bytes:
    kind = rng.randrange(6)
    if kind == 0:
        return rng.randbytes(rng.randrange(1, 2000))
    if kind == 1:
        return rng.randbytes(rng.randrange(1, 200)) + b"\0"
    if kind == 2:
        return b'{"method": "org.avocado.Extensions.Merge", "parameters": {'  # cut short
    if kind == 3:
        return b"\0" * rng.randrange(1, 50)
    if kind == 4:
        return json.dumps({"method": "org.avocado.Extensions.List",
                           "parameters": {"x": [1] * 100}}).encode() + b"\0"
    return b""  # connect and hang up


def test_1000_garbage_connections(server: ServerThread, fake: FakeManage) -> None:
    rng = random.Random(1234)
    for i in range(1000):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        try:
            s.connect(str(server.path))
            data = garbage(rng)
            if data:
                s.sendall(data)
            if i % 3 == 0:
                s.shutdown(socket.SHUT_WR)
                while s.recv(65536):
                    pass
        except OSError:
            pass
        finally:
            s.close()
    assert server.alive
    with Raw(server.path) as r:
        r.call(f"{AV}.Status")
        assert len(r.reply()["parameters"]["extensions"]) == 3
    assert "merge" not in [c[0] for c in fake.calls]  # no half call reached the backend
    fds = len(os.listdir("/proc/self/fd"))
    assert fds < 200, f"{fds} fds open: connections leak"
