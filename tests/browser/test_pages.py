"""``--browser`` in real headless Chromium: each page's cause code, and the URL the page really opened."""

from __future__ import annotations

from typing import Any

from tests.browser.conftest import BROWSER_ARGS, connect_script
from tests.helpers import CliRun, run_cli


def doctor(page_url: str, *extra: str, timeout: float = 10.0) -> CliRun:
    return run_cli(
        "all", "--page-url", page_url, "--browser", *BROWSER_ARGS, "--json", "--timeout", str(timeout), *extra
    )


def test_healthy_page(page_server: Any) -> None:
    srv = page_server()
    ws = srv.ws_url()
    page = srv.page("/", connect_script(f"'{ws}'"))
    run = doctor(page)
    b = run.check("browser")
    assert b["status"] == "ok", run.stdout
    assert run.report["target"] == ws
    assert b["evidence"]["opened"] == [ws]
    sock = b["evidence"]["sockets"][0]
    assert sock["status"] == 101 and sock["frames_received"] >= 1
    assert "welcome" in sock["first_received"][0]
    assert run.code == 0 and run.root_code is None, run.stdout
