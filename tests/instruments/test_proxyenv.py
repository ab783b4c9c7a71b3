"""proxyenv: the route (direct or which proxy, and why) as curl/requests/websockets decide it, and the
reading of a proxy's CONNECT answer."""

from __future__ import annotations

import pytest

from lokin_doctor.instruments import proxyenv as pe
from tests.helpers import run_cli


@pytest.mark.parametrize(
    ("host", "port", "no_proxy", "entry"),
    [
        ("example.com", 443, "*", "*"),
        ("example.com", 443, "example.com", "example.com"),
        ("api.example.com", 443, "example.com", "example.com"),
        ("api.example.com", 443, ".example.com", ".example.com"),
        ("example.com", 443, ".example.com", ".example.com"),
        ("api.example.com", 443, "*.example.com", "*.example.com"),
        ("notexample.com", 443, "example.com", None),
        ("10.1.2.3", 80, "10.0.0.0/8", "10.0.0.0/8"),
        ("11.1.2.3", 80, "10.0.0.0/8", None),
        ("127.0.0.1", 8080, "localhost, 127.0.0.1", "127.0.0.1"),
        ("localhost", 8080, "127.0.0.1", None),  # names are not resolved
        ("example.com", 8080, "example.com:8080", "example.com:8080"),
        ("example.com", 443, "example.com:8080", None),
        ("::1", 8080, "[::1]:8080", "[::1]:8080"),
        ("::1", 8080, "::1", "::1"),
        ("fd00::5", 80, "fd00::/8", "fd00::/8"),
        ("EXAMPLE.com", 443, "Example.COM", "Example.COM"),
        ("example.com", 443, "", None),
    ],
)
def test_no_proxy_rules(host: str, port: int, no_proxy: str, entry: str | None) -> None:
    assert pe.no_proxy_match(host, port, no_proxy) == entry


def test_choose_from_the_environment() -> None:
    env = {"HTTP_PROXY": "http://p:3128", "HTTPS_PROXY": "http://s:3128", "ALL_PROXY": "socks5://a:1080"}
    ws = pe.choose("example.com", 80, False, env)
    assert ws.proxy is not None and (ws.proxy.host, ws.proxy.source) == ("p", "HTTP_PROXY")
    wss = pe.choose("example.com", 443, True, env)
    assert wss.proxy is not None and wss.proxy.host == "s"
    only_all = pe.choose("example.com", 443, True, {"ALL_PROXY": "socks5://a"})
    assert only_all.proxy is not None and (only_all.proxy.scheme, only_all.proxy.port) == ("socks5", 1080)
    lower_first = pe.choose("x", 80, False, {"http_proxy": "lower:1", "HTTP_PROXY": "upper:2"})
    assert lower_first.proxy is not None and (lower_first.proxy.host, lower_first.proxy.scheme) == (
        "lower",
        "http",
    )
    assert pe.choose("x", 80, False, {"HTTP_PROXY": ""}).why == "no proxy set"
    bypass = pe.choose("x.internal", 80, False, {"HTTP_PROXY": "p:1", "no_proxy": ".internal"})
    assert bypass.direct and (bypass.why, bypass.bypass) == ("no_proxy", ".internal")
    assert pe.choose("x", 80, False, env, disabled=True).why == "--no-proxy"
    explicit = pe.choose("x", 80, False, {}, explicit="http://u:p%40ss@q:8888")
    assert explicit.proxy is not None and (explicit.proxy.username, explicit.proxy.password) == ("u", "p@ss")
    assert explicit.proxy.url == "http://u:***@q:8888"
    invalid = pe.choose("x", 80, False, {"HTTP_PROXY": "ftp://q"})
    assert invalid.invalid is not None and invalid.invalid[0] == "HTTP_PROXY"


@pytest.mark.parametrize(
    "url", ["q:8080", "ftp://q:1", "socks4://q:1", "http://", "http://q:1/path", "http://q:x"]
)
def test_bad_proxy_urls(url: str) -> None:
    with pytest.raises(pe.ProxyUrlError):
        pe.parse_proxy_url(url)


def test_connect_request_and_answer() -> None:
    proxy = pe.parse_proxy_url("http://user:secret@127.0.0.1:3128")
    request = pe.connect_request(proxy, "::1", 8080)
    assert request.startswith(b"CONNECT [::1]:8080 HTTP/1.1\r\nHost: [::1]:8080\r\n")
    assert b"Proxy-Authorization: Basic dXNlcjpzZWNyZXQ=\r\n" in request
    raw = (
        b"HTTP/1.0 407 Proxy Authentication Required\r\nServer: tinyproxy/1.11.1\r\nContent-Type: text/html\r\n"
        b'Proxy-Authenticate: Basic realm="Tinyproxy"\r\nConnection: close\r\n\r\n'
        b"<html><head><title>407 Proxy Authentication Required</title></head></html>"
    )
    answer = pe.parse_connect_answer(raw)
    assert answer is not None and answer.status == 407 and not answer.ok
    assert [str(c) for c in answer.challenges] == ['Basic realm="Tinyproxy"']
    assert answer.text() == "407 Proxy Authentication Required"
    assert pe.parse_connect_answer(b"HTTP/1.1 200 Connection established\r\n") is None  # head not over
    assert pe.parse_connect_answer(b"SSH-2.0-OpenSSH\r\n\r\n") is None


def test_challenges() -> None:
    found = pe.challenges(["Negotiate, NTLM", 'Digest realm="corp", nonce="abc", qop="auth"'])
    assert [(c.scheme, c.realm) for c in found] == [("Negotiate", None), ("NTLM", None), ("Digest", "corp")]


def test_environment_hides_passwords() -> None:
    shown = pe.proxy_environment({"HTTPS_PROXY": "http://u:secret@p:1", "no_proxy": "localhost"})
    assert shown == {"HTTPS_PROXY": "http://u:***@p:1", "no_proxy": "localhost"}


@pytest.mark.parametrize("value", ["ftp://p:1", "p:3128", "http://p:1/x"])
def test_proxy_option_is_validated_before_traffic(value: str) -> None:
    run = run_cli("all", "ws://127.0.0.1:9/", "--proxy", value, "--lang", "en")
    assert run.code == 2
    assert "--proxy" in run.stderr and run.stderr.count("\n") == 1


def test_proxy_and_no_proxy_together() -> None:
    run = run_cli("handshake", "ws://127.0.0.1:9/", "--proxy", "http://p:1", "--no-proxy", "--lang", "en")
    assert run.code == 2 and "--no-proxy" in run.stderr
