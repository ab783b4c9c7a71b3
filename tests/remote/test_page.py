"""``page``: the browser's view — mixed content and the page's Content-Security-Policy, through real nginx."""

from __future__ import annotations

from typing import Any

import pytest

from lokin_doctor.checks.production.page import Origin, evaluate, source_allows
from lokin_doctor.target import parse_target
from tests.peers.fixtures import free_port
from tests.remote._util import doctor


def test_csp_self_allows_the_derived_url(nginx_proxy: Any, ws_server: Any) -> None:
    proxy = nginx_proxy("correct", ws_server.port, csp="connect-src 'self'")
    page = proxy.extra["page_url"]
    run = doctor(None, page_url=page)
    assert run.report.target == proxy.url  # derived from the page: same host, /ws
    r = run["page"]
    assert r.status.value == "ok", run.explain()
    assert r.evidence["csp"] == ["connect-src 'self'"]
    assert run["session"].status.value == "ok"
    assert run.root is None


def test_csp_connect_src_blocks(nginx_proxy: Any, ws_server: Any) -> None:
    proxy = nginx_proxy(
        "correct", ws_server.port, csp="default-src 'self'; connect-src https://api.example.com"
    )
    run = doctor(None, page_url=proxy.extra["page_url"])
    r = run["page"]
    assert r.code == "page.csp-blocks", run.explain()
    assert r.evidence["directive"] == "connect-src"
    assert r.evidence["sources"] == ["https://api.example.com"]
    assert "ws://127.0.0.1" in str(r.hint)
    # Every CLI client connects fine: only the page check sees it.
    assert run["handshake"].status.value == "ok"
    assert run.root == "page.csp-blocks"


def test_csp_default_src_fallback_blocks(nginx_proxy: Any, ws_server: Any) -> None:
    proxy = nginx_proxy("correct", ws_server.port, csp="default-src https://cdn.example.com")
    run = doctor(None, only=["page"], page_url=proxy.extra["page_url"])
    assert run["page"].code == "page.csp-blocks", run.explain()
    assert run["page"].evidence["directive"] == "default-src"


def test_mixed_content(nginx_proxy: Any, ws_server: Any, certs: Any, dns_server: Any) -> None:
    proxy = nginx_proxy("tls", ws_server.port)
    page = f"https://lokin.test:{proxy.port}/page"
    run = doctor(
        f"ws://lokin.test:{proxy.port}/ws",
        only=["page"],
        page_url=page,
        ca_file=certs.ca_file,
        dns_server=dns_server.server,
    )
    r = run["page"]
    assert r.code == "page.mixed-content", run.explain()
    assert "wss://" in str(r.hint)
    assert r.evidence["status"] == 200  # the page itself was fetched over TLS
    assert run.root == "page.mixed-content"


def test_https_page_with_wss_and_self(nginx_proxy: Any, ws_server: Any, certs: Any, dns_server: Any) -> None:
    proxy = nginx_proxy("tls", ws_server.port, csp="connect-src 'self'")
    page = f"https://lokin.test:{proxy.port}/page"
    run = doctor(None, page_url=page, ca_file=certs.ca_file, dns_server=dns_server.server)
    assert run.report.target == f"wss://lokin.test:{proxy.port}/ws"
    assert run["page"].status.value == "ok", run.explain()
    assert run["tls"].status.value == "ok"
    assert run["session"].status.value == "ok"


def test_page_unreachable_is_a_warning(ws_server: Any) -> None:
    run = doctor(ws_server.url, only=["page"], page_url=f"http://127.0.0.1:{free_port()}/")
    r = run["page"]
    assert r.code == "page.unreachable", run.explain()
    assert r.status.value == "warn"
    assert run.root is None


HTTPS_PAGE = Origin("https", "lokin.example", 443)
HTTP_PAGE = Origin("http", "lokin.example", 80)


@pytest.mark.parametrize(
    ("source", "url", "page", "allowed"),
    [
        ("'self'", "wss://lokin.example/ws", HTTPS_PAGE, True),
        ("'self'", "ws://lokin.example/ws", HTTPS_PAGE, False),
        ("'self'", "ws://lokin.example/ws", HTTP_PAGE, True),
        ("'self'", "wss://lokin.example/ws", HTTP_PAGE, True),
        ("'self'", "wss://lokin.example:8443/ws", HTTPS_PAGE, False),
        ("'self'", "wss://api.lokin.example/ws", HTTPS_PAGE, False),
        ("'none'", "wss://lokin.example/ws", HTTPS_PAGE, False),
        ("*", "wss://anything.example/ws", HTTPS_PAGE, True),
        ("wss:", "wss://anything.example/ws", HTTPS_PAGE, True),
        ("ws:", "wss://anything.example/ws", HTTPS_PAGE, True),
        ("https:", "wss://anything.example/ws", HTTPS_PAGE, False),
        ("wss://lokin.example", "wss://lokin.example/ws", HTTPS_PAGE, True),
        ("ws://lokin.example", "wss://lokin.example/ws", HTTPS_PAGE, True),
        ("https://lokin.example", "wss://lokin.example/ws", HTTPS_PAGE, False),
        ("lokin.example", "wss://lokin.example/ws", HTTPS_PAGE, False),  # takes the page's https scheme
        ("wss://*.lokin.example", "wss://api.lokin.example/ws", HTTPS_PAGE, True),
        ("wss://*.lokin.example", "wss://lokin.example/ws", HTTPS_PAGE, False),
        ("wss://lokin.example:8443", "wss://lokin.example:8443/ws", HTTPS_PAGE, True),
        ("wss://lokin.example:*", "wss://lokin.example:8443/ws", HTTPS_PAGE, True),
        ("wss://lokin.example", "wss://lokin.example:8443/ws", HTTPS_PAGE, False),
        ("wss://lokin.example/ws", "wss://lokin.example/ws", HTTPS_PAGE, True),
        ("wss://lokin.example/api/", "wss://lokin.example/ws", HTTPS_PAGE, False),
        ("'unsafe-inline'", "wss://lokin.example/ws", HTTPS_PAGE, False),
    ],
)
def test_source_matching(source: str, url: str, page: Origin, allowed: bool) -> None:
    assert source_allows(source, parse_target(url), page) is allowed


def test_every_policy_must_allow() -> None:
    url = parse_target("wss://lokin.example/ws")
    assert evaluate(["connect-src 'self'"], url, HTTPS_PAGE) is None
    assert evaluate(["img-src 'self'"], url, HTTPS_PAGE) is None  # no connect-src nor default-src
    blocked = evaluate(["connect-src 'self'", "connect-src https://api.example"], url, HTTPS_PAGE)
    assert blocked is not None and blocked[1] == "connect-src"
