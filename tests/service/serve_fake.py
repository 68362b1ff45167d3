"""`strata serve` with the fake management layer, as a process of its own (socket activation
and signal tests): python -m tests.service.serve_fake --socket PATH [--idle SECONDS]."""

from __future__ import annotations

import argparse
import asyncio

from strata.service.core import Limits
from strata.service.server import ServeOptions, serve
from tests.service.fake_manage import FakeManage


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--socket", required=True)
    p.add_argument("--config")
    p.add_argument("--group")
    p.add_argument("--idle", type=float, default=30.0)
    ns = p.parse_args()
    manage = FakeManage()
    manage.enabled["12"] = ["app", "tools"]
    options = ServeOptions(socket_path=ns.socket, config=ns.config, group=ns.group,
                           limits=Limits(idle_timeout=ns.idle))
    asyncio.run(serve(options, manage=manage))


if __name__ == "__main__":
    main()
