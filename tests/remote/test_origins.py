"""``origins``: no Origin, the page's Origin and a foreign Origin against real servers."""

from __future__ import annotations

from typing import Any

from lokin_doctor.checks.production.origins import FOREIGN_ORIGIN
from tests.remote._util import doctor


def test_any_origin_on_loopback_is_fine(ws_server: Any) -> None:
    run = doctor(ws_server.url, only=["origins"])
    r = run["origins"]
    assert r.status.value == "ok", run.explain()
    assert "loopback" in r.summary


def test_any_origin_in_production_is_a_warning(tls_ws_server: Any, certs: Any) -> None:
    peer = tls_ws_server(certs.good)
    run = doctor(peer.url, only=["origins"], ca_file=certs.ca_file, origin="https://lokin.example")
    r = run["origins"]
    assert r.code == "origins.any-origin", run.explain()
    assert r.status.value == "warn"
    assert FOREIGN_ORIGIN in r.summary
    assert "https://lokin.example" in str(r.hint)


def test_page_origin_rejected(ws_server_factory: Any) -> None:
    peer = ws_server_factory(origins=[None, "https://other.example"])
    page = f"http://127.0.0.1:{peer.port}/"
    run = doctor(peer.url, only=["origins"], page_url=page)
    r = run["origins"]
    assert r.code == "origins.page-origin-rejected", run.explain()
    assert f"http://127.0.0.1:{peer.port}" in str(r.hint)
    assert "--allow-origin" in str(r.hint)
    assert run.root == "origins.page-origin-rejected"
    seen = {req.headers.get("origin") for req in peer.requests}
    assert {None, f"http://127.0.0.1:{peer.port}", FOREIGN_ORIGIN} <= seen


def test_target_own_origin_is_the_default_page_origin(ws_server_factory: Any) -> None:
    peer = ws_server_factory(origins=[None])
    run = doctor(peer.url, only=["origins"])
    assert run["origins"].code == "origins.page-origin-rejected", run.explain()


def test_filtering_server_is_ok(tls_ws_server: Any, certs: Any) -> None:
    peer = tls_ws_server(certs.good, origins=[None, "https://lokin.example"])
    run = doctor(peer.url, only=["origins"], ca_file=certs.ca_file, origin="https://lokin.example")
    r = run["origins"]
    assert r.status.value == "ok", run.explain()
    assert "filters" in r.summary


def test_skipped_when_the_handshake_fails(bad_server: Any) -> None:
    run = doctor(bad_server("not-found").url, only=["origins"])
    assert run["origins"].status.value == "skip"
