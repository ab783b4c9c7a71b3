"""``page.wrong-url`` in real headless Chromium: the page opens a WebSocket URL on another scheme or host
than the one that answers (its own origin's ``/ws``), and the report names the URL to open instead."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import CHROMIUM, RESOLVER_RULES, connect_script
from tests.browser.test_pages import doctor
from tests.helpers import run_cli

pytestmark = pytest.mark.browser


def test_page_hard_codes_wss_on_a_plain_http_site(page_server: Any) -> None:
    # The page is plain http (a staging site without TLS) but its script says wss:// to its own host
    srv = page_server()
    opened = srv.ws_url().replace("ws://", "wss://", 1)
    page = srv.page("/", connect_script(f"'{opened}'"))
    run = doctor(page, "--no-variants")  # ports 80/443/8080 of this shared machine are not the test's
    assert run.report["target"] == opened
    assert run.check("tls")["code"] == "tls.not-tls"
    b = run.check("browser")
    assert b["evidence"]["sockets"][0]["state"] == "failed"
    assert (b["status"], b["code"]) == ("fail", "page.wrong-url"), run.stdout
    assert run.root_code == "page.wrong-url"
    assert opened in b["summary"] and f"{srv.ws_url()} answers" in b["summary"], b["summary"]
    assert b["evidence"]["works"] == srv.ws_url()
    assert srv.ws_url() in b["hint"]


def test_page_opens_the_address_of_the_old_server(page_server: Any) -> None:
    # The script names the address of a server that moved: 127.0.0.2 (loopback, like the page's host),
    # where nothing listens; the page's own host answers on /ws.
    srv = page_server()
    opened = srv.ws_url(host="127.0.0.2")
    page = srv.page("/", connect_script(f"'{opened}'"))
    # Chromium connects to 127.0.0.2 too (the suite's rules resolve nothing else)
    rules = RESOLVER_RULES.replace("EXCLUDE 127.0.0.1,", "EXCLUDE 127.0.0.1, EXCLUDE 127.0.0.2,")
    run = run_cli(
        "all",
        "--page-url",
        page,
        "--browser",
        "--browser-path",
        CHROMIUM,
        "--browser-arg",
        rules,
        "--json",
        "--timeout",
        "10",
        "--no-variants",
    )
    assert run.report["target"] == opened
    assert run.check("tcp")["code"] == "tcp.refused"
    b = run.check("browser")
    assert (b["status"], b["code"]) == ("fail", "page.wrong-url"), run.stdout
    assert "ERR_CONNECTION_REFUSED" in b["summary"]
    assert opened in b["summary"] and f"{srv.ws_url()} answers" in b["summary"], b["summary"]
    assert b["evidence"]["works"] == srv.ws_url()
    assert run.root_code == "page.wrong-url"
