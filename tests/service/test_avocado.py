"""org.avocado.Extensions over a real socket, against the fake management layer: every method,
streaming, the errors; with the `varlink` package, an asyncvarlink client and the raw wire."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import varlink
from asyncvarlink import VarlinkClientProtocol, VarlinkMethodCall, connect_unix_varlink

from strata.errors import ErrorKind, StrataError
from strata.manage.api import HookRun, Outcome
from strata.service import avocado
from strata.service.avocado import Op
from tests.service.fake_manage import FakeManage
from tests.service.harness import Raw, ServerThread

IFACE = "org.avocado.Extensions"


def open_iface(address: str) -> tuple[varlink.Client, Any]:
    client = varlink.Client(address=address)
    return client, client.open(IFACE)


# --- the varlink package as client -----------------------------------------------------------


def test_list(address: str) -> None:
    client, iface = open_iface(address)
    with client, iface:
        exts = iface.List()["extensions"]
    assert [e["name"] for e in exts] == ["app", "cfg", "tools"]
    assert exts[0] == {"name": "app", "version": "1.0",
                       "path": "/var/lib/strata/extensions/app-1.0.raw", "isSysext": True,
                       "isConfext": False, "isDirectory": False}
    assert "version" not in exts[1]  # null fields are left out, not sent as null
    assert exts[1]["isDirectory"] is True


def test_status(address: str, fake: FakeManage) -> None:
    fake.merged = ("app",)
    client, iface = open_iface(address)
    with client, iface:
        rows = iface.Status()["extensions"]
    by_name = {r["name"]: r for r in rows}
    assert by_name["app"] == {"name": "app", "version": "1.0", "isSysext": True,
                              "isConfext": False, "isMerged": True, "origin": "store",
                              "imageId": "0123456789ab"}
    assert by_name["tools"]["isMerged"] is False
    assert "origin" not in by_name["tools"] and "imageId" not in by_name["cfg"]


def test_merge_streams_progress(address: str, fake: FakeManage) -> None:
    client, iface = open_iface(address)
    with client, iface:
        replies = list(iface.Merge(_more=True))
    messages = [r["message"] for r in replies]
    assert messages == [
        "merge: 2 enabled",
        "Merging app",  # logged and reported: streamed once
        "Merging tools",
        "Skipped broken: not an extension",
        "Hook 'false' failed with exit status 1",
        "Merged 2 extensions: app, tools (1 skipped).",
    ]
    assert [r["done"] for r in replies] == [False] * 5 + [True]
    assert fake.merged == ("app", "tools")


def test_merge_without_more_is_one_reply(server: ServerThread) -> None:
    with Raw(server.path) as r:
        r.call(f"{IFACE}.Merge")
        reply = r.reply()
        assert reply == {"parameters": {"message": "Merged 2 extensions: app, tools "
                                                   "(1 skipped).", "done": True}}
        r.call(f"{IFACE}.Status")  # nothing else was queued on the connection
        assert "extensions" in r.reply()["parameters"]


def test_streamed_wire_format(server: ServerThread) -> None:
    """All but the last reply carry continues: true; the last carries none."""
    with Raw(server.path) as r:
        r.call(f"{IFACE}.Refresh", {}, more=True)
        replies = list(r.replies())
    assert all(x["continues"] is True for x in replies[:-1])
    assert "continues" not in replies[-1]
    assert replies[-1]["parameters"]["done"] is True
    assert replies[-1]["parameters"]["message"].startswith("Refreshed 2 extensions")


def test_unmerge(address: str, fake: FakeManage) -> None:
    fake.merged = ("app",)
    client, iface = open_iface(address)
    with client, iface:
        replies = list(iface.Unmerge(True, _more=True))
        again = iface.Unmerge()
    assert [r["message"] for r in replies] == ["Unmerging", "Unmerged 1 extension: app."]
    assert ("unmount", True) in fake.calls
    assert ("unmount", False) in fake.calls
    assert again == {"message": "Unmerged.", "done": True}


def test_enable_disable(address: str, fake: FakeManage) -> None:
    client, iface = open_iface(address)
    with client, iface:
        assert iface.Enable(["cfg"], "13") == {"enabled": 1, "failed": 0}
        assert fake.enabled["13"] == ["cfg"]
        assert iface.Disable(["cfg", "app"], None, "13") == {"disabled": 1, "failed": 1}
        assert iface.Disable(None, True, None) == {"disabled": 2, "failed": 0}
        assert fake.enabled["12"] == []


def test_enable_unknown_is_extension_not_found(address: str, fake: FakeManage) -> None:
    client, iface = open_iface(address)
    with client, iface, pytest.raises(varlink.VarlinkError) as exc:
        iface.Enable(["app", "nope"], None)
    assert exc.value.error() == f"{IFACE}.ExtensionNotFound"
    assert exc.value.parameters()["name"] == "nope"


def test_disable_needs_extensions_or_all(server: ServerThread) -> None:
    with Raw(server.path) as r:
        r.call(f"{IFACE}.Disable", {"osRelease": "12"})
        assert r.reply() == {"error": "org.varlink.service.InvalidParameter",
                             "parameters": {"parameter": "extensions"}}


ErrorCase = tuple[str, str, StrataError, tuple[str, dict[str, str]]]


@pytest.mark.parametrize("case", [
    ("merge", "Merge", StrataError("a needs b", kind=ErrorKind.CONFIGURATION),
     ("ConfigurationError", {"message": "a needs b"})),
    ("merge", "Merge", StrataError("ldconfig: exit status 1", kind=ErrorKind.COMMAND,
                                   subject="ldconfig"),
     ("CommandFailed", {"command": "ldconfig", "message": "ldconfig: exit status 1"})),
    ("merge", "Merge", StrataError("mount failed", kind=ErrorKind.SYSTEM),
     ("MergeFailed", {"reason": "mount failed"})),
    ("refresh", "Refresh", StrataError("locked", kind=ErrorKind.BUSY),
     ("MergeFailed", {"reason": "locked"})),
    ("unmerge", "Unmerge", StrataError("umount failed", kind=ErrorKind.SYSTEM),
     ("UnmergeFailed", {"reason": "umount failed"})),
    ("status", "Status", StrataError("cannot read", kind=ErrorKind.SYSTEM),
     ("ConfigurationError", {"message": "cannot read"})),
])
def test_errors_on_the_wire(server: ServerThread, fake: FakeManage, case: ErrorCase) -> None:
    op, method, error, expect = case
    fake.fail[op] = error
    with Raw(server.path) as r:
        r.call(f"{IFACE}.{method}", {}, more=method != "Status")
        replies = list(r.replies())
    assert replies[-1] == {"error": f"{IFACE}.{expect[0]}", "parameters": expect[1]}


def test_internal_error_is_typed_and_server_survives(server: ServerThread,
                                                     fake: FakeManage) -> None:
    fake.fail["list"] = ValueError("boom")  # type: ignore[assignment]
    with Raw(server.path) as r:
        r.call(f"{IFACE}.List")
        reply = r.reply()
        assert reply["error"] == f"{IFACE}.ConfigurationError"
        assert "internal error: ValueError: boom" in reply["parameters"]["message"]
        del fake.fail["list"]
        r.call(f"{IFACE}.List")
        assert len(r.reply()["parameters"]["extensions"]) == 3


# --- asyncvarlink as client ------------------------------------------------------------------


def test_asyncvarlink_client(server: ServerThread, fake: FakeManage) -> None:
    async def go() -> tuple[Any, ...]:
        transport, proto = await connect_unix_varlink(VarlinkClientProtocol, server.path)
        try:
            proxy = proto.make_proxy(avocado.AvocadoExtensions)
            listed = await proxy.List()
            enabled = await proxy.Enable(extensions=["cfg"])
            try:
                await proxy.Enable(extensions=["nope"])
                missing = None
            except avocado.ExtensionNotFound as e:
                missing = e.p_name
            streamed = [reply.parameters async for reply, _fds in proto.call_more(
                VarlinkMethodCall(f"{IFACE}.Merge", {}, more=True))]
            status = await proxy.Status()
            return listed, enabled, missing, streamed, status
        finally:
            transport.close()

    listed, enabled, missing, streamed, status = asyncio.run(go())
    assert [e.name for e in listed["extensions"]] == ["app", "cfg", "tools"]
    assert listed["extensions"][1] == avocado.Extension(
        name="cfg", version=None, path="/var/lib/strata/extensions/cfg", isSysext=False,
        isConfext=True, isDirectory=True)
    assert enabled == {"enabled": 1, "failed": 0}
    assert missing == "nope"
    assert streamed[0] == {"message": "merge: 3 enabled", "done": False}
    assert streamed[-1] == {"message": "Merged 3 extensions: app, tools, cfg (1 skipped).",
                            "done": True}
    assert {s.name for s in status["extensions"] if s.isMerged} == {"app", "tools", "cfg"}


# --- pure parts ------------------------------------------------------------------------------


@pytest.mark.parametrize(("exc", "op", "name", "params"), [
    (StrataError("x", kind=ErrorKind.NOT_FOUND, subject="foo"), Op.ENABLE,
     "ExtensionNotFound", {"name": "foo"}),
    (StrataError("no root", kind=ErrorKind.NOT_FOUND), Op.MERGE, "MergeFailed",
     {"reason": "no root"}),
    (StrataError("cycle a b", kind=ErrorKind.CONFIGURATION), Op.UNMERGE,
     "ConfigurationError", {"message": "cycle a b"}),
    (StrataError("depmod failed", kind=ErrorKind.COMMAND), Op.REFRESH, "CommandFailed",
     {"command": "", "message": "depmod failed"}),
    (StrataError("busy", kind=ErrorKind.BUSY), Op.UNMERGE, "UnmergeFailed",
     {"reason": "busy"}),
    (StrataError("read-only", kind=ErrorKind.PERMISSION), Op.DISABLE, "ConfigurationError",
     {"message": "read-only"}),
    (KeyError("k"), Op.MERGE, "MergeFailed", {"reason": "internal error: KeyError: 'k'"}),
])
def test_to_error(exc: BaseException, op: Op, name: str, params: dict[str, str]) -> None:
    err = avocado.to_error(exc, op)
    assert err.name == f"{IFACE}.{name}"
    assert err.paramstojson() == params


@pytest.mark.parametrize(("op", "outcome", "text"), [
    (Op.MERGE, Outcome(("a",), ()), "Merged 1 extension: a."),
    (Op.MERGE, Outcome((), (("b", "why"),)), "Nothing to merge (1 skipped)."),
    (Op.REFRESH, Outcome(("a", "b"), ()), "Refreshed 2 extensions: a, b."),
    (Op.REFRESH, Outcome((), ()), "Refreshed: nothing to merge."),
    (Op.UNMERGE, Outcome((), ()), "Unmerged."),
    (Op.UNMERGE, Outcome(("a",), ()), "Unmerged 1 extension: a."),
])
def test_summary(op: Op, outcome: Outcome, text: str) -> None:
    assert avocado.summary(op, outcome) == text


def test_outcome_lines() -> None:
    outcome = Outcome(("a",), (("b", "incompatible"),), hooks=(
        HookRun("ldconfig", ("ldconfig",), True, 0),
        HookRun("on-merge", ("svc", "--x"), True, 2),
        HookRun("modprobe", ("modprobe", "m"), False, None, "not found"),
        HookRun("restart", ("systemctl", "restart", "x"), False),
    ))
    assert avocado.outcome_lines(outcome) == [
        "Skipped b: incompatible",
        "Hook 'svc --x' failed with exit status 2",
        "Hook 'modprobe m' failed: not found",
    ]

