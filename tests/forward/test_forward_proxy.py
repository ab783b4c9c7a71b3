"""The forward check against a real forward proxy (tinyproxy, tests/peers/tinyproxy.py): the report says
which way the connection went, and each refusal of the proxy is its own cause naming it."""

from __future__ import annotations

from tests.helpers import run_cli
from tests.peers._common import free_port

CLEAN = {
    "HTTP_PROXY": "",
    "HTTPS_PROXY": "",
    "ALL_PROXY": "",
    "NO_PROXY": "",
    "http_proxy": "",
    "https_proxy": "",
    "all_proxy": "",
    "no_proxy": "",
}


def _run(url: str, *extra: str, env: dict[str, str] | None = None):
    return run_cli(
        "all",
        url,
        "--json",
        "--no-variants",
        "--timeout",
        "5",
        "--lang",
        "en",
        *extra,
        env={**CLEAN, **(env or {})},
    )


def test_through_the_proxy_from_the_environment(ws_server, tinyproxy) -> None:
    proxy = tinyproxy()
    run = _run(ws_server.url, env={"HTTP_PROXY": proxy.url})
    assert run.code == 0, run.stdout
    forward = run.check("forward")
    assert forward["status"] == "ok"
    assert forward["summary"].startswith(f"through proxy {proxy.address} (HTTP_PROXY): CONNECT 127.0.0.1:")
    assert "200" in forward["summary"] and "tinyproxy" in forward["summary"]
    assert f"made by the proxy {proxy.address}" in run.check("tcp")["summary"]
    assert run.check("handshake")["status"] == "ok"
    assert run.check("session")["status"] == "ok"
    assert "tinyproxy" in proxy.proc.log.read_text()  # the connection really went through it


def test_wss_goes_through_https_proxy(tls_ws_server, certs, tinyproxy) -> None:
    proxy = tinyproxy()
    peer = tls_ws_server(certs.good)
    run = _run(
        peer.url,
        "--ca-file",
        certs.ca_file,
        env={"HTTPS_PROXY": proxy.url, "HTTP_PROXY": "http://127.0.0.1:9"},
    )
    assert run.code == 0, run.stdout
    assert run.check("forward")["summary"].startswith(f"through proxy {proxy.address} (HTTPS_PROXY)")
    assert run.check("tls")["status"] == "ok"


def test_connect_allowed_to_443_only(ws_server, tinyproxy) -> None:
    proxy = tinyproxy(connect_ports=(443,))
    run = _run(ws_server.url, "--proxy", proxy.url)
    assert run.code == 1
    forward = run.check("forward")
    assert forward["code"] == "forward.connect-port"
    assert run.root_code == "forward.connect-port"
    assert f"ConnectPort {ws_server.port}" in forward["hint"]
    assert forward["evidence"]["connect"]["status_line"].startswith("HTTP 403")
    # what a client that sends the upgrade without CONNECT would get: tinyproxy strips the Upgrade
    assert "tinyproxy" in forward["evidence"]["without_connect"]
    assert run.check("tcp")["status"] == "skip"


def test_basic_auth_without_credentials(ws_server, tinyproxy) -> None:
    proxy = tinyproxy(basic_auth=("user", "secret"))
    run = _run(ws_server.url, env={"HTTP_PROXY": proxy.url})
    forward = run.check("forward")
    assert forward["code"] == "forward.auth-required"
    assert 'Basic realm="Tinyproxy"' in forward["summary"]
    assert f"http://USER:PASSWORD@{proxy.address}" in forward["hint"]
    assert run.root_code == "forward.auth-required"


def test_basic_auth_with_credentials(ws_server, tinyproxy) -> None:
    proxy = tinyproxy(basic_auth=("user", "secret"))
    run = _run(ws_server.url, env={"HTTP_PROXY": f"http://user:secret@{proxy.address}"})
    assert run.code == 0, run.stdout
    assert run.check("forward")["evidence"]["proxy"] == f"http://user:***@{proxy.address}"
    assert "secret" not in run.stdout


def test_wrong_credentials(ws_server, tinyproxy) -> None:
    proxy = tinyproxy(basic_auth=("user", "secret"))
    run = _run(ws_server.url, "--proxy", f"http://user:wrong@{proxy.address}")
    assert run.check("forward")["code"] == "forward.auth-rejected"
    assert "wrong" not in run.stdout


def test_no_proxy_goes_direct_and_says_so(ws_server, tinyproxy) -> None:
    proxy = tinyproxy(connect_ports=(443,))  # would refuse: going through it would fail
    run = _run(ws_server.url, env={"HTTP_PROXY": proxy.url, "NO_PROXY": "localhost,127.0.0.1"})
    assert run.code == 0, run.stdout
    forward = run.check("forward")
    assert forward["status"] == "ok"
    assert "direct connection: NO_PROXY entry '127.0.0.1'" in forward["summary"]
    assert "direct" in run.check("tcp")["summary"]
    run = _run(ws_server.url, "--no-proxy", env={"HTTP_PROXY": proxy.url})
    assert run.code == 0
    assert run.check("forward")["summary"].startswith("direct connection (--no-proxy)")


def test_proxy_down_is_the_proxy_not_the_target(ws_server) -> None:
    dead = free_port()
    run = _run(ws_server.url, env={"HTTP_PROXY": f"http://127.0.0.1:{dead}"})
    assert run.code == 1
    assert run.root_code == "forward.proxy-refused"
    assert f"127.0.0.1:{dead}" in run.check("forward")["summary"]
    assert run.check("tcp")["status"] == "skip"  # never tcp.refused of the target


def test_target_down_behind_the_proxy(tinyproxy) -> None:
    proxy = tinyproxy()
    port = free_port()
    run = _run(f"ws://127.0.0.1:{port}/", "--proxy", proxy.url)
    assert run.root_code == "forward.target-unreachable"
    assert "NO_PROXY" in run.report["root_cause"]["hint"]


def test_no_proxy_set_costs_nothing(ws_server) -> None:
    run = _run(ws_server.url)
    assert run.code == 0
    forward = run.check("forward")
    assert forward["status"] == "skip" and forward["evidence"]["applicable"] is False


def test_a_proxy_that_cannot_connect_and_answers_the_upgrade(ws_server, nginx_forward_proxy) -> None:
    port = nginx_forward_proxy()
    run = _run(ws_server.url, env={"HTTP_PROXY": f"http://127.0.0.1:{port}"})
    forward = run.check("forward")
    assert forward["code"] == "forward.upgrade-answered"
    assert run.root_code == "forward.upgrade-answered"
    assert forward["evidence"]["connect"]["status_line"] == "HTTP 400 Bad Request"
    # nginx relays the upgrade as HTTP/1.0 without its Upgrade header: the backend refuses it
    assert forward["evidence"]["without_connect"].startswith("HTTP 505")
    assert "squid, tinyproxy" in forward["hint"]
