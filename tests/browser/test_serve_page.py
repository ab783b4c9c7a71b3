"""``serve``'s own test page is a page like any other: ``--browser`` on it connects and is all green."""

from __future__ import annotations

import re
from collections.abc import Callable

from tests.browser.conftest import BROWSER_ARGS
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
        *BROWSER_ARGS,  # Debian's chromium; no name but the test's resolves in it
        # Other servers may run on this shared machine: name this one.
        "--process",
        rf"lokin_doctor serve --host 127\.0\.0\.1 --port {port}\b",
        "--json",
        "--timeout",
        "10",
    )
    assert run.code == 0, run.stdout
    report = run.report
    # All green; the truth about how the test started it (nothing would restart this serve) is a note:
    # a server started by hand behind ws://127.0.0.1 is a developer's setup, not a warning.
    not_ok = {c["id"]: c["code"] for c in report["checks"] if c["status"] not in ("ok", "skip")}
    assert not_ok == {}, not_ok
    assert run.check("supervisor")["evidence"]["advisory"] == "supervisor.none"
    b = run.check("browser")
    assert b["status"] == "ok"
    # The page builds its URL from its location (path /) and connects on a click: the doctor calls it.
    assert b["evidence"]["called_connect"] is True
    assert b["evidence"]["opened"] == [f"ws://127.0.0.1:{port}/"]
    assert report["target"] == f"ws://127.0.0.1:{port}/"
    assert re.search(r'"clientId":\s*"user_[0-9a-f]{10}"', b["evidence"]["sockets"][0]["first_received"][0])
    assert run.check("session")["status"] == "ok"


def test_origin_the_server_refuses_is_the_chains_finding(serve_process: Callable[..., ServeProcess]) -> None:
    # The browser sends the page's Origin; serve accepts another one only. The chain's origins check
    # names the cause, the browser check says it saw the same failure.
    port = free_port()
    proc = serve_process("--host", "127.0.0.1", "--port", str(port), "--allow-origin", "https://lokin.app")
    assert proc.ready_port() == port
    run = run_cli(
        "all",
        "--page-url",
        f"http://127.0.0.1:{port}/",
        "--browser",
        *BROWSER_ARGS,  # Debian's chromium; no name but the test's resolves in it
        "--process",
        rf"lokin_doctor serve --host 127\.0\.0\.1 --port {port}\b",
        "--json",
        "--timeout",
        "10",
    )
    assert run.root_code == "origins.page-origin-rejected", run.stdout
    b = run.check("browser")
    assert (b["status"], b["code"]) == ("warn", "page.websocket-failed")
    assert f"opens ws://127.0.0.1:{port}/ and gets HTTP 403 there" in b["summary"]
    assert "origins.page-origin-rejected" in b["summary"]
