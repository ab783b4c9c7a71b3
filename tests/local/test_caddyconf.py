"""The Caddy reader, pure where it can be: routes walked by Caddy's rules over the JSON that the real
``caddy adapt`` gives for a Caddyfile, the Caddyfile lines found back, and the 2.7+ settings
(``stream_timeout``, ``stream_close_delay``) that Debian's 2.6 cannot run, on JSON as 2.7 writes it."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from lokin_doctor.proxies.base import Facts
from lokin_doctor.proxies.caddy import conf as cc
from lokin_doctor.proxies.caddy.reader import READER
from tests.peers._common import require_binary

CADDYFILE = """{
	admin off
	auto_https off
}
http://ws.test:8080, http://alt.test:8080 {
	@websockets {
		header Connection *Upgrade*
		header Upgrade websocket
	}
	handle_path /strip/* {
		reverse_proxy @websockets 127.0.0.1:9001
	}
	handle /ws* {
		reverse_proxy 127.0.0.1:9002 127.0.0.1:9003 {
			lb_policy first
		}
	}
	respond "site"
}
http://*.wild.test:8080 {
	reverse_proxy 127.0.0.1:9004
}
"""


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> cc.Config:
    binary = require_binary("caddy", "apt-get install -y caddy")
    path = tmp_path_factory.mktemp("caddy") / "Caddyfile"
    path.write_text(CADDYFILE)
    return cc.load(str(path), binary, 30.0)


def _walk(config: cc.Config, host: str, path: str) -> cc.Walk:
    walk = cc.select(config, host=host, port=8080, path=path, address="127.0.0.1")
    assert walk is not None
    return walk


@pytest.mark.parametrize(
    ("host", "path", "dials", "sent"),
    [
        ("ws.test", "/ws", ["127.0.0.1:9002", "127.0.0.1:9003"], "/ws"),
        ("alt.test", "/ws/chat", ["127.0.0.1:9002", "127.0.0.1:9003"], "/ws/chat"),
        ("ws.test", "/strip/room", ["127.0.0.1:9001"], "/room"),
        ("a.wild.test", "/anything", ["127.0.0.1:9004"], "/anything"),
    ],
)
def test_routes(config: cc.Config, host: str, path: str, dials: list[str], sent: str) -> None:
    walk = _walk(config, host, path)
    assert walk.terminal is not None and walk.terminal.handler["handler"] == "reverse_proxy"
    assert [u["dial"] for u in walk.terminal.handler["upstreams"]] == dials
    assert walk.path == sent


def test_no_proxy_for_other_paths_and_hosts(config: cc.Config) -> None:
    walk = _walk(config, "ws.test", "/other")
    assert walk.terminal is not None and walk.terminal.handler["handler"] == "static_response"
    assert _walk(config, "b.a.wild.test", "/x").terminal is None  # one label for the wildcard
    assert cc.select(config, host="ws.test", port=9999, path="/", address=None) is None


def test_lines_found_back(config: cc.Config) -> None:
    route = READER.route(
        config, host="ws.test", port=8080, path="/strip/room", address="127.0.0.1", secure=False
    )
    assert route is not None and route.line == 11 and route.sent_path == "/room"
    found = READER.findings(route, Facts(version=(2, 6, 2)))
    strip = next(f for f in found if str(f.code) == "caddy.strip-prefix")
    assert (strip.line, strip.current, strip.corrected) == (10, "handle_path /strip/* {", "handle /strip/* {")
    assert "receives /room instead of /strip/room" in strip.message
    reload = next(f for f in found if str(f.code) == "caddy.reload-cuts")
    assert reload.severity == "note" and "Caddy 2.6.2" in reload.message
    route = READER.route(config, host="ws.test", port=8080, path="/ws", address="127.0.0.1", secure=False)
    assert route is not None and route.line == 14
    assert [u.url() for u in route.upstreams] == ["http://127.0.0.1:9002", "http://127.0.0.1:9003"]
    # Nothing listens on either upstream: Caddy has no server to take the request.
    down = READER.findings(route, Facts(listening_ports=frozenset({22}), is_local=lambda h: True))
    assert "caddy.upstream-down" in {str(f.code) for f in down}


def _with(config: cc.Config, **settings: object) -> cc.Config:
    data = copy.deepcopy(dict(config.data))
    walk = _walk(config, "ws.test", "/ws")
    assert walk.terminal is not None
    node: object = data
    for key in walk.terminal.pointer.strip("/").split("/"):
        node = node[int(key)] if isinstance(node, list) else node[key]  # type: ignore[index]
    node.update(settings)  # type: ignore[union-attr]
    return cc.Config(config.main, config.files, data, "json", config.caddyfile)


def test_stream_settings_of_2_7(config: cc.Config) -> None:
    # JSON durations are nanoseconds (or Go duration strings).
    short = _with(config, stream_timeout=30_000_000_000)
    route = READER.route(short, host="ws.test", port=8080, path="/ws", address="127.0.0.1", secure=False)
    assert route is not None
    found = {str(f.code): f for f in READER.findings(route, Facts(version=(2, 7, 6)))}
    timeout = found["caddy.stream-timeout"]
    assert timeout.severity == "warn" and "stream_timeout 30 s" in timeout.message
    reload = found["caddy.reload-cuts"]
    assert reload.corrected == "reverse_proxy 127.0.0.1:9002 127.0.0.1:9003 {\n\tstream_close_delay 5m"
    kept = _with(config, stream_close_delay="5m", stream_timeout="24h")
    route = READER.route(kept, host="ws.test", port=8080, path="/ws", address="127.0.0.1", secure=False)
    assert route is not None
    found = {str(f.code): f for f in READER.findings(route, Facts(version=(2, 7, 6)))}
    assert "caddy.reload-cuts" not in found and found["caddy.stream-timeout"].severity == "note"


def test_durations() -> None:
    assert (
        cc.duration_s(30_000_000_000) == 30 and cc.duration_s("1h30m") == 5400 and cc.duration_s("x") is None
    )


def test_recognise(tmp_path: Path) -> None:
    caddyfile = tmp_path / "Caddyfile"
    caddyfile.write_text(CADDYFILE)
    nginx = tmp_path / "n.conf"
    nginx.write_text("http {\n  server {\n    listen 80;\n  }\n}\n")
    apache = tmp_path / "a.conf"
    apache.write_text("<VirtualHost *:80>\n  ProxyPass / http://x/\n</VirtualHost>\n")
    assert READER.recognise(str(caddyfile))
    assert not READER.recognise(str(nginx)) and not READER.recognise(str(apache))
