"""Fixtures: a scratch socket directory, the fake management layer, a server on it."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.service.fake_manage import FakeManage
from tests.service.harness import ServerThread, socket_dir


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    d = socket_dir()
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def fake() -> FakeManage:
    m = FakeManage()
    m.enabled["12"] = ["app", "tools"]
    return m


@pytest.fixture
def server(sock_dir: Path, fake: FakeManage) -> Iterator[ServerThread]:
    with ServerThread(sock_dir / "strata.sock", fake) as srv:
        yield srv


@pytest.fixture
def address(server: ServerThread) -> str:
    """The server's address as the varlink package spells it."""
    return f"unix:{server.path}"
