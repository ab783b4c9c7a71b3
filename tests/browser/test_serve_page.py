"""``serve``'s own test page is a page like any other: ``--browser`` on it connects and is all green."""

from __future__ import annotations

import re
from collections.abc import Callable

from tests.helpers import run_cli
from tests.peers._common import free_port
from tests.server.conftest import ServeProcess


def test_serve_test_page_is_all_green(serve_process: Callable[..., ServeProcess]) -> None:
    port = free_port()
    proc = serve_process("--host", "127.0.0.1", "--port", str(port))
    assert proc.ready_port() == port
    page = f"http://127.0.0.1:{port}/"
    run = run_cli(
        "all",
        "--page-url",
        page,
        "--browser",
        "--browser-path",
        "/usr/bin/chromium",
        # Other servers may run on this shared machine: name this one.
        "--process",
        rf"lokin_doctor serve --host 127\.0\.0\.1 --port {port}\b",
        "--json",
        "--timeout",
        "10",
    )
    assert run.code == 0, run.stdout
    report = run.report
    assert report["status"] == "ok", [c for c in report["checks"] if c["status"] != "ok"]
    b = run.check("browser")
    assert b["status"] == "ok"
    # The page builds its URL from its location (path /) and connects on a click: the doctor calls it.
    assert b["evidence"]["called_connect"] is True
    assert b["evidence"]["opened"] == [f"ws://127.0.0.1:{port}/"]
    assert report["target"] == f"ws://127.0.0.1:{port}/"
    assert re.search(r'"clientId":\s*"user_[0-9a-f]{10}"', b["evidence"]["sockets"][0]["first_received"][0])
    assert run.check("session")["status"] == "ok"
