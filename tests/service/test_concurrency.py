"""Changes run one at a time; reads are answered while a merge streams."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest
import varlink

from tests.service.fake_manage import FakeManage
from tests.service.harness import Raw, ServerThread

AV = "org.avocado.Extensions"


def test_reads_answered_while_merge_streams(server: ServerThread, fake: FakeManage) -> None:
    fake.gate = threading.Event()
    with Raw(server.path) as merging, Raw(server.path) as reader, \
            Raw(server.path, timeout=0.5) as enabler, Raw(server.path) as second:
        merging.call(f"{AV}.Merge", {}, more=True)
        assert merging.reply()["parameters"] == {"message": "merge: 2 enabled", "done": False}
        assert fake.entered.wait(5)

        # The merge is held at its gate until the end of this block: reads queued behind it
        # would never be answered (the reader's socket times out after 10 s and fails).
        reader.call(f"{AV}.Status")
        rows = reader.reply()["parameters"]["extensions"]
        reader.call(f"{AV}.List")
        reader.reply()
        reader.call("org.varlink.service.GetInfo")
        reader.reply()
        assert not fake.gate.is_set() and not any(r["isMerged"] for r in rows)

        enabler.call(f"{AV}.Enable", {"extensions": ["cfg"]})
        with pytest.raises(socket.timeout):  # a change waits for the merge
            enabler.reply()
        second.call(f"{AV}.Refresh", {}, more=True)
        assert second.reply()["parameters"]["message"] == \
            "Waiting for another operation to finish..."

        fake.gate.set()
        merged = list(merging.replies())
        assert merged[-1]["parameters"]["done"] is True
        enabler.sock.settimeout(10)
        assert enabler.reply()["parameters"] == {"enabled": 1, "failed": 0}
        assert list(second.replies())[-1]["parameters"]["done"] is True
    assert fake.max_running == 1
    ops = [c[0] for c in fake.calls if c[0] in ("merge", "enable", "refresh")]
    assert ops == ["merge", "enable", "refresh"]  # in arrival order


def test_concurrent_changes_are_serialised(server: ServerThread, fake: FakeManage) -> None:
    results: list[dict[str, object]] = []
    errors: list[BaseException] = []

    def merge() -> None:
        try:
            with varlink.Client(address=f"unix:{server.path}") as client, \
                    client.open(AV) as iface:
                results.append(list(iface.Merge(_more=True))[-1])
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=merge) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert len(results) == 8 and all(r["done"] is True for r in results)
    assert fake.max_running == 1


def test_client_gone_mid_merge(server: ServerThread, fake: FakeManage) -> None:
    """The merge is finished all the same (never cut short), and the server goes on."""
    fake.gate = threading.Event()
    with Raw(server.path) as r:
        r.call(f"{AV}.Merge", {}, more=True)
        r.reply()
        assert fake.entered.wait(5)
    fake.gate.set()
    deadline = time.monotonic() + 10
    while fake.merged != ("app", "tools") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert fake.merged == ("app", "tools")
    with Raw(server.path) as r:
        r.call(f"{AV}.Status")
        assert {x["name"] for x in r.reply()["parameters"]["extensions"] if x["isMerged"]} == \
            {"app", "tools"}


def test_stop_waits_for_the_running_merge(sock_dir: Path, fake: FakeManage) -> None:
    fake.gate = threading.Event()
    srv = ServerThread(sock_dir / "s.sock", fake)
    with srv, Raw(srv.path) as r:
        r.call(f"{AV}.Merge", {}, more=True)
        r.reply()
        assert fake.entered.wait(5)
        stopper = threading.Thread(target=srv.stop)
        stopper.start()
        time.sleep(0.5)
        assert stopper.is_alive()  # still waiting for the merge
        with pytest.raises(OSError):  # no longer accepting
            Raw(srv.path, timeout=1)
        fake.gate.set()
        stopper.join(30)
        assert not stopper.is_alive()
        replies = list(r.replies())  # the caller still got the end of it
        assert replies[-1]["parameters"]["done"] is True
        assert r.closed()
    assert fake.merged == ("app", "tools")
