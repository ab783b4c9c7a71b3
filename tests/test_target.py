"""Target parsing: every accepted form, and a one-line reason for each bad one."""

from __future__ import annotations

import pytest

from lokin_doctor.settings import SettingsError, build_settings
from lokin_doctor.target import TargetError, page_websocket_url, parse_target


@pytest.mark.parametrize(
    ("raw", "url", "port"),
    [
        ("ws://localhost:8080/", "ws://localhost:8080/", 8080),
        ("wss://example.com/ws", "wss://example.com/ws", 443),
        ("http://example.com", "ws://example.com/", 80),
        ("https://example.com:8443/ws?room=1", "wss://example.com:8443/ws?room=1", 8443),
        ("localhost:9000", "ws://localhost:9000/", 9000),
        ("localhost", "ws://localhost:8080/", 8080),
        ("9001", "ws://localhost:9001/", 9001),
        ("ws://[::1]:8080/", "ws://[::1]:8080/", 8080),
        ("[::1]:8080", "ws://[::1]:8080/", 8080),
        ("WS://LOKIN.Test:8080/ws", "ws://lokin.test:8080/ws", 8080),
    ],
)
def test_accepted_forms(raw: str, url: str, port: int) -> None:
    target = parse_target(raw)
    assert target.url == url
    assert target.port == port


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ("ftp://example.com/", "unsupported scheme"),
        ("mailto:x@example.com", "unsupported scheme"),
        ("ws://localhost:99999/", "out of range"),
        ("ws://localhost:0/", "out of range"),
        ("ws://localhost:abc/", "invalid port"),
        ("ws://:8080/", "no host"),
        ("ws://exa mple.com/", "spaces"),
        ("ws://bad_host!.com/", "invalid host"),
        ("ws://[::1/", "IPv6"),
        ("ws://::1:8080/", "brackets"),
        ("ws://example.com/#frag", "fragment"),
        ("", "empty"),
    ],
)
def test_rejected_forms_say_why(raw: str, says: str) -> None:
    with pytest.raises(TargetError) as err:
        parse_target(raw)
    message = str(err.value)
    assert says in message
    assert "\n" not in message


def test_page_url_gives_the_client_url() -> None:
    assert page_websocket_url("https://lokin.example/app").url == "wss://lokin.example/ws"
    assert page_websocket_url("http://lokin.example:8000/").url == "ws://lokin.example:8000/ws"
    # script.js: on localhost the client talks to localhost:8080
    assert page_websocket_url("http://localhost:3000/").url == "ws://localhost:8080/"


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"timeout": 0}, "--timeout"),
        ({"timeout": float("nan")}, "--timeout"),
        ({"headers": ["NoColon"]}, "--header"),
        ({"expect": "x"}, "--expect needs --send"),
        ({"send": "a", "expect": "("}, "regular expression"),
        ({"process_patterns": ["["]}, "regular expression"),
        ({"dns_server": "127.0.0.1:abc"}, "--dns-server"),
        ({"ca_file": "/nonexistent.pem"}, "--ca-file"),
        ({"hold": -1}, "--hold"),
        ({"origin": "not an origin"}, "--origin"),
        ({"linger": float("nan")}, "--linger"),
        ({"linger": -1.0}, "--linger"),
        ({"timeout": float("inf")}, "--timeout"),
        ({"hold": float("inf")}, "--hold"),
        ({"headers": ["X-A: b\r\nX-Injected: 1"]}, "--header"),
        ({"headers": ["X-A: b\x00"]}, "--header"),
        ({"headers": ["X-A: caf\u00e9"]}, "--header"),
        ({"subprotocols": ["a b"]}, "--subprotocol"),
        ({"dns_server": "dns.example.com"}, "not an IP address"),
        ({"dns_server": "[::1"}, "--dns-server"),
        ({"dns_server": "[127.0.0.1]"}, "brackets are for IPv6"),
        ({"dns_server": "10.0.0.1:0"}, "from 1 to 65535"),
        ({"client_key": "/etc/hostname"}, "--client-key needs --client-cert"),
        ({"client_cert": "/etc/hostname"}, "--client-cert"),
        ({"backend": " "}, "--backend"),
    ],
)
def test_bad_options_are_usage_errors(kwargs: dict[str, object], says: str) -> None:
    with pytest.raises(SettingsError, match=says):
        build_settings("ws://localhost:8080/", **kwargs)  # type: ignore[arg-type]


def test_dns_server_forms() -> None:
    assert build_settings(None, dns_server="127.0.0.1").dns_server == ("127.0.0.1", 53)
    assert build_settings(None, dns_server="127.0.0.1:5354").dns_server == ("127.0.0.1", 5354)
    assert build_settings(None, dns_server="[::1]:5354").dns_server == ("::1", 5354)


def test_empty_url_argument_is_an_error() -> None:
    with pytest.raises(SettingsError, match="empty URL"):
        build_settings("")
    with pytest.raises(SettingsError, match="empty URL"):
        build_settings("   ")
    assert build_settings(None).target.url == "ws://localhost:8080/"


def test_linger_default_and_off() -> None:
    assert build_settings(None).linger == 1.0
    assert build_settings(None, linger=0).linger == 0
