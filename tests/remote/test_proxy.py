"""``proxy``: real nginx in front of a real backend, compared with the backend directly."""

from __future__ import annotations

from typing import Any

from lokin_doctor.checks.chain.handshake import NGINX_UPGRADE_LINES
from tests.peers.fixtures import free_port
from tests.remote._util import doctor


def test_upgrade_not_forwarded(nginx_proxy: Any, ws_server: Any) -> None:
    proxy = nginx_proxy("no-upgrade", ws_server.port)
    run = doctor(proxy.url, backend=ws_server.url)
    r = run["proxy"]
    assert r.code == "proxy.upgrade-not-forwarded", run.explain()
    assert "backend" in r.summary and "101" in r.summary and "426" in r.summary
    assert NGINX_UPGRADE_LINES in str(r.hint)
    assert r.evidence["backend"]["url"] == ws_server.url
    # The proxy is the root cause, not the generic handshake failure.
    assert run["handshake"].code == "handshake.upgrade-dropped"
    # On this machine the nginx config line that causes it is the root cause (tests/local/test_nginx.py).
    assert run.root == "nginx.upgrade-header-missing"
    assert run.data["root_cause"]["check"] == "nginx"


def test_http10_upstream(nginx_proxy: Any, ws_server: Any) -> None:
    proxy = nginx_proxy("http10", ws_server.port)
    run = doctor(proxy.url, backend=ws_server.url)
    assert run["proxy"].code == "proxy.http10-upstream", run.explain()
    assert "proxy_http_version 1.1;" in str(run["proxy"].hint)
    assert run.root == "nginx.http10-upstream"


def test_backend_down(nginx_proxy: Any) -> None:
    proxy = nginx_proxy("upstream-down")
    run = doctor(proxy.url, backend=f"ws://127.0.0.1:{proxy.backend_port}/")
    r = run["proxy"]
    assert r.code == "proxy.backend-down", run.explain()
    assert "either" in r.summary  # the backend does not answer us directly either
    assert run.root == "nginx.proxy-pass-nothing-listens"


def test_backend_answers_but_proxy_points_elsewhere(nginx_proxy: Any, ws_server: Any) -> None:
    proxy = nginx_proxy("upstream-down")
    run = doctor(proxy.url, backend=ws_server.url)
    r = run["proxy"]
    assert r.code == "proxy.backend-down", run.explain()
    assert "proxy_pass" in r.summary and ws_server.url in str(r.hint)


def test_path_mismatch(nginx_proxy: Any, ws_server_factory: Any) -> None:
    # nginx's `location /ws { proxy_pass http://backend/; }` strips /ws; the backend serves only /ws.
    backend = ws_server_factory(paths=["/ws"])
    proxy = nginx_proxy("correct", backend.port)
    run = doctor(proxy.url, backend=f"ws://127.0.0.1:{backend.port}/ws")
    r = run["proxy"]
    assert r.code == "proxy.path-mismatch", run.explain()
    assert "/ws" in str(r.hint)
    assert run.root == "nginx.path-rewritten"


def test_correct_proxy_is_ok(nginx_proxy: Any, ws_server: Any) -> None:
    proxy = nginx_proxy("correct", ws_server.port)
    run = doctor(proxy.url, only=["proxy", "session"])
    assert run["proxy"].status.value == "ok", run.explain()
    assert "nginx" in run["proxy"].summary
    assert run.root is None


def test_no_proxy_is_not_applicable(ws_server: Any) -> None:
    run = doctor(ws_server.url, only=["proxy"])
    assert run["proxy"].status.value == "skip"


def test_plain_http_to_nginx_tls_port(nginx_proxy: Any, ws_server: Any, certs: Any) -> None:
    proxy = nginx_proxy("tls", ws_server.port)
    plain = proxy.url.replace("wss://", "ws://")
    run = doctor(plain, only=["handshake"])
    assert run["handshake"].code == "handshake.plain-to-tls", run.explain()
    assert "wss://" in str(run["handshake"].hint)
    # And through TLS with the CA, nginx forwards the upgrade.
    ok_run = doctor(proxy.url, only=["tls", "proxy", "session"], ca_file=certs.ca_file)
    assert ok_run["tls"].status.value == "ok", ok_run.explain()
    assert ok_run["proxy"].status.value == "ok"
    assert ok_run.root is None


def test_backend_not_given_and_nothing_on_8080_still_names_the_proxy(nginx_proxy: Any) -> None:
    # no-upgrade toward a backend port with nothing: nginx answers 502 before any upgrade question.
    proxy = nginx_proxy("no-upgrade", free_port())
    run = doctor(proxy.url, only=["proxy"])
    assert run["proxy"].code == "proxy.backend-down", run.explain()


def test_local_all_includes_the_proxy(nginx_proxy: Any, ws_server: Any) -> None:
    # nginx on this machine in front of the server is the LOK IN layout: `all` checks the proxy too.
    proxy = nginx_proxy("no-upgrade", ws_server.port)
    run = doctor(proxy.url)
    assert run["proxy"].code == "proxy.upgrade-not-forwarded", run.explain()
    assert run.root == "nginx.upgrade-header-missing"
