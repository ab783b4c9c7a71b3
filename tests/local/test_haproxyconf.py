"""The HAProxy parser and router, pure: quoting, sections, inheritance, binds, ACLs, routes. The configs used
here are checked with the real ``haproxy -c -f`` too (skipped without haproxy, failed under CI)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from lokin_doctor.proxies.base import Facts
from lokin_doctor.proxies.haproxy import conf as hc
from lokin_doctor.proxies.haproxy import findings as hf
from lokin_doctor.proxies.haproxy import route as hr
from lokin_doctor.proxies.haproxy.reader import READER, parse_stat
from tests.peers._common import require_binary


def _valid(path: Path) -> None:
    binary = require_binary("haproxy", "apt-get install -y haproxy")
    out = subprocess.run(
        [binary, "-c", "-f", str(path)], capture_output=True, text=True, timeout=20, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("bind :80 # comment", ["bind", ":80"]),
        (r"acl a hdr(x) -m str hello\ world", ["acl", "a", "hdr(x)", "-m", "str", "hello world"]),
        ("acl a hdr(x) 'single # not a comment'", ["acl", "a", "hdr(x)", "single # not a comment"]),
        (r'acl a hdr(x) "double \"q\" \x41"', ["acl", "a", "hdr(x)", 'double "q" A']),
        (r"acl a path \#hash", ["acl", "a", "path", "#hash"]),
        ('http-request set-header X ""', ["http-request", "set-header", "X", ""]),
        ("acl a path '${HOME}' \"${LOKIN_T}\" ${LOKIN_T}", ["acl", "a", "path", "${HOME}", "v", "v"]),
    ],
)
def test_words(text: str, words: list[str]) -> None:
    assert hc.split_words(text, {"LOKIN_T": "v", "HOME": "/h"}) == words


def test_open_quote_is_an_error() -> None:
    with pytest.raises(ValueError):
        hc.split_words("acl a path 'open")


def test_times() -> None:
    assert hc.parse_time("30s") == 30
    assert hc.parse_time("500") == 0.5  # milliseconds by default
    assert hc.parse_time("1m") == 60 and hc.parse_time("2h") == 7200 and hc.parse_time("1d") == 86400
    assert hc.parse_time("abc") is None
    assert hc.format_time(3600) == "1h" and hc.format_time(90) == "90s"


CONFIG = """global
    pidfile {dir}/h.pid

defaults base
    mode http
    timeout connect 5s
    timeout client 50s
    timeout server 50s

defaults quick from base
    timeout client 2s

frontend fe from base
    bind 127.0.0.1:8001,127.0.0.1:8002 # two ports
    bind :9000-9002
    acl host_a hdr(host) -i a.test
    acl host_dom hdr_dom(host) -i b.test
    acl ws path_beg /ws
    acl api path_reg ^/api/v[0-9]+/
    http-request deny if { path_beg /private }
    use_backend be_a if host_a
    use_backend be_b if host_dom ws
    use_backend be_api if api
    use_backend be_up if { req.hdr(upgrade) -i websocket } { path /up }
    default_backend be_default

backend be_a
    server a 127.0.0.1:7001

backend be_b
    timeout tunnel 1h
    server b 127.0.0.1:7002

backend be_api
    server api 127.0.0.1:7003

backend be_up
    server up 127.0.0.1:7004

backend be_default
    server d 127.0.0.1:7005

listen quick_listen from quick
    bind 127.0.0.1:8100
    option httpclose
    server q 127.0.0.1:7006
"""


@pytest.fixture
def config(tmp_path: Path) -> hc.Config:
    path = tmp_path / "haproxy.cfg"
    path.write_text(CONFIG.replace("{dir}", str(tmp_path)))
    _valid(path)
    return hc.load(str(path))


def _route(config: hc.Config, host: str, port: int, path: str) -> hr.Path:
    found = hr.select(config, host_header=host, port=port, path=path, address="127.0.0.1", secure=False)
    assert found is not None
    return found


def test_sections_and_inheritance(config: hc.Config) -> None:
    kinds = [(s.kind, s.name) for s in config.sections]
    assert kinds[:4] == [("global", ""), ("defaults", "base"), ("defaults", "quick"), ("frontend", "fe")]
    listen = next(s for s in config.sections if s.name == "quick_listen")
    # quick inherits from base: its own timeout client, base's timeout server.
    assert config.setting(listen, "timeout", "client").text == "timeout client 2s"  # type: ignore[union-attr]
    assert config.setting(listen, "timeout", "server").text == "timeout server 50s"  # type: ignore[union-attr]
    assert config.mode(listen) == "http"
    assert config.setting(listen, "timeout", "client").line == 11  # type: ignore[union-attr]


def test_binds(config: hc.Config) -> None:
    fe = next(s for s in config.sections if s.name == "fe")
    bound = hc.binds(fe)
    assert [(b.address, b.port_low, b.port_high) for b in bound] == [
        ("127.0.0.1", 8001, 8001),
        ("127.0.0.1", 8002, 8002),
        (None, 9000, 9002),
    ]
    assert hr.select_frontend(config, 9001, "127.0.0.1") is not None
    assert hr.select_frontend(config, 8003, "127.0.0.1") is None


@pytest.mark.parametrize(
    ("host", "port", "path", "backend"),
    [
        ("a.test", 8001, "/ws", "be_a"),
        ("a.test:8001", 8001, "/ws", "be_b_or_default"),  # hdr(host) sees the port: no match
        ("x.b.test:8001", 8001, "/ws/chat", "be_b"),  # hdr_dom ignores the port
        ("x.b.test:8001", 8001, "/other", "be_default"),
        ("c.test", 8002, "/api/v2/x", "be_api"),
        ("c.test", 8002, "/api/vx/", "be_default"),
        ("c.test", 9000, "/up", "be_up"),
        ("c.test", 8100, "/ws", "quick_listen"),
    ],
)
def test_routes(config: hc.Config, host: str, port: int, path: str, backend: str) -> None:
    found = _route(config, host, port, path)
    assert found.backend is not None
    expected = "be_default" if backend == "be_b_or_default" else backend
    assert found.backend.name == expected, found.why


def test_deny_answers_first(config: hc.Config) -> None:
    found = _route(config, "a.test", 8001, "/private/ws")
    assert found.backend is None and found.answered[0].action == "deny" and found.answered[0].applies is True


def test_findings_of_the_listen(config: hc.Config) -> None:
    found = _route(config, "c.test", 8100, "/ws")
    out = hf.analyse(config, found, "/ws", Facts(ping_interval=5.0))
    codes = {str(f.code): f for f in out}
    tunnel = codes["haproxy.no-timeout-tunnel"]
    assert tunnel.severity == "warn" and tunnel.line == 11 and tunnel.seconds == 2.0
    assert tunnel.corrected == "timeout client 2s\n    timeout tunnel 1h"
    assert codes["haproxy.httpclose"].severity == "note"
    # With a tunnel longer than the pings, be_b has nothing to say about timeouts.
    b = _route(config, "x.b.test:8001", 8001, "/ws")
    assert not [f for f in hf.analyse(config, b, "/ws", Facts(ping_interval=5.0)) if f.seconds]


def test_unknown_condition_is_not_guessed(tmp_path: Path) -> None:
    path = tmp_path / "h.cfg"
    path.write_text(
        """defaults
    mode http
    timeout client 5s
    timeout server 5s
    timeout connect 5s
frontend fe
    bind 127.0.0.1:8001
    use_backend be if { src 10.0.0.0/8 }
backend be
    server s 127.0.0.1:7000
"""
    )
    _valid(path)
    config = hc.load(str(path))
    found = _route(config, "x", 8001, "/ws")
    assert found.backend is None and found.uncertain
    out = hf.analyse(config, found, "/ws", Facts())
    assert [(str(f.code), f.severity) for f in out] == [("haproxy.not-proxied", "warn")]


def test_conditional_blocks_and_directories(tmp_path: Path) -> None:
    d = tmp_path / "conf.d"
    d.mkdir()
    (d / "10-defaults.cfg").write_text("defaults\n    mode http\n    timeout client 1s\n")
    (d / "20-fe.cfg").write_text(
        "frontend fe\n    bind :80\n.if defined(LOKIN_NOPE)\n    default_backend nope\n.else\n    default_backend be\n.endif\n"
    )
    config = hc.load([str(d)], env={})
    fe = next(s for s in config.sections if s.name == "fe")
    assert [li.text for li in fe.all("default_backend")] == ["default_backend be"]
    assert config.files == (str(d / "10-defaults.cfg"), str(d / "20-fe.cfg"))
    assert config.mode(fe) == "http"


def test_recognise(tmp_path: Path) -> None:
    ha = tmp_path / "h.cfg"
    ha.write_text(CONFIG)
    ng = tmp_path / "n.conf"
    ng.write_text("events {}\nhttp { server { listen 80; } }\n")
    assert READER.recognise(str(ha)) and not READER.recognise(str(ng))


def test_show_stat_parsing() -> None:
    text = "# pxname,svname,qcur,status\nfe,FRONTEND,,OPEN\nbe,s1,,DOWN\nbe,s2,,no check\nbe,BACKEND,,DOWN\n"
    assert parse_stat(text) == {"be": [("s1", "DOWN"), ("s2", "no check")]}
