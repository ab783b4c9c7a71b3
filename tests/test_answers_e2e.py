"""The whole answer, end to end: the CLI against real peers and a raw peer replaying exact bytes.

* every canned reply of tests/instruments/answers.py (proxies, CDNs, load balancers, platforms, WebSocket
  libraries) replayed byte for byte by the ``replay`` bad server, diagnosed by ``lokin-doctor handshake``;
* real programs answering for a backend that is not there or a request they refuse: nginx (400 "Request
  Header Or Cookie Too Large" with a small large_client_header_buffers), Node.js (431 with a small
  --max-http-header-size), HAProxy (503 NOSRV), Apache (503 from mod_proxy), Caddy (502), nginx without
  the upgrade lines in front of the Python websockets server (426 through nginx).

Each asserts the exact code and that the summary names who answered.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import run_cli
from tests.instruments.answers import CORPUS, Canned
from tests.peers._common import LOOPBACK, ManagedProcess, free_port, port_accepts, require_binary


def _handshake(url: str, *extra: str) -> dict[str, Any]:
    run = run_cli("handshake", url, "--json", "--timeout", "4", *extra)
    assert run.code == 1, run.stdout
    return run.check("handshake")


@pytest.mark.parametrize("canned", CORPUS, ids=[c.name for c in CORPUS])
def test_replayed_answer_is_read_for_what_it_says(bad_server: Any, canned: Canned) -> None:
    peer = bad_server("replay", reply=canned.raw)
    check = _handshake(peer.url.rstrip("/") + "/ws")
    assert check["code"] == canned.code, (check["summary"], check["hint"])
    answer = check["evidence"]["answer"]
    assert answer["sender"] == canned.sender, answer
    assert answer["sender_name"] in check["summary"]
    text = f"{check['summary']}\n{check['hint']}"
    for words in canned.says:
        assert words in text, (words, text)
    # The request reached the peer whole: what it replayed answered this very request.
    assert peer.requests and peer.requests[0].headers.get("upgrade") == "websocket"


@pytest.mark.parametrize("name", ["version-8-only", "cloudflare-521", "haproxy-503"])
def test_the_whole_checklist_names_the_answer_as_root_cause(bad_server: Any, name: str) -> None:
    canned = next(c for c in CORPUS if c.name == name)
    peer = bad_server("replay", reply=canned.raw)
    run = run_cli("all", peer.url, "--json", "--timeout", "4", "--no-variants")
    assert run.code == 1
    assert run.root_code == canned.code, run.report["root_cause"]
    assert run.check("handshake")["evidence"]["answer"]["sender_name"] in run.report["root_cause"]["summary"]


# -- real programs ----------------------------------------------------------------------------------------


def test_real_nginx_request_header_or_cookie_too_large(nginx_proxy: Any, ws_server: Any) -> None:
    proxy = nginx_proxy("correct", ws_server.port, extra_server_conf="large_client_header_buffers 2 1k;")
    check = _handshake(proxy.url, "--header", "X-Session: " + "a" * 1500)
    assert check["code"] == "handshake.headers-too-large", check["summary"]
    assert "from nginx" in check["summary"] and "Request Header Or Cookie Too Large" in check["summary"]
    assert "large_client_header_buffers" in check["hint"]
    # Without the big header the same nginx upgrades: the size was the problem, not the route.
    ok = run_cli("handshake", proxy.url, "--json")
    assert ok.check("handshake")["status"] == "ok", ok.stdout


def test_real_nginx_without_upgrade_lines_names_the_websockets_server_behind_it(
    nginx_proxy: Any, ws_server: Any
) -> None:
    check = _handshake(nginx_proxy("no-upgrade", ws_server.port).url)
    assert check["code"] == "handshake.upgrade-dropped"
    assert check["evidence"]["answer"]["sender"] == "websockets"
    assert [t["sender"] for t in check["evidence"]["answer"]["through"]] == ["nginx"]
    assert "from the Python websockets server through nginx" in check["summary"]
    assert "proxy_set_header Upgrade $http_upgrade;" in check["hint"]


def _start(argv: list[str], tmp_path: Path, port: int, name: str, **kw: Any) -> ManagedProcess:
    proc = ManagedProcess(argv, log=tmp_path / f"{name}.log", cwd=tmp_path, name=name, **kw).start()
    if not proc.wait_ready(partial(port_accepts, LOOPBACK, port), timeout=10):
        proc.fail_start(f"port {port} not accepting")
    return proc


@pytest.fixture
def started() -> Any:
    procs: list[ManagedProcess] = []
    yield procs
    for p in procs:
        p.stop()


def test_real_node_431(tmp_path: Path, started: list[ManagedProcess]) -> None:
    node = require_binary("node", "apt-get install -y nodejs")
    port = free_port()
    script = f"require('http').createServer((q, s) => s.end('hi')).listen({port}, '{LOOPBACK}')"
    started.append(_start([node, "--max-http-header-size=1024", "-e", script], tmp_path, port, "node"))
    check = _handshake(f"ws://{LOOPBACK}:{port}/ws", "--header", "Cookie: " + "c" * 2000)
    assert check["code"] == "handshake.headers-too-large", check["summary"]
    assert check["summary"].startswith("HTTP 431 Request Header Fields Too Large from ")
    assert "--max-http-header-size" in check["hint"]


def test_real_haproxy_with_no_server_up(tmp_path: Path, started: list[ManagedProcess]) -> None:
    haproxy = require_binary("haproxy", "apt-get install -y haproxy")
    port, dead = free_port(), free_port()
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(
        f"global\n  pidfile {tmp_path}/h.pid\ndefaults\n  mode http\n  timeout connect 1s\n"
        f"  timeout client 5s\n  timeout server 2s\nfrontend f\n  bind {LOOPBACK}:{port}\n  default_backend b\n"
        f"backend b\n  server s1 {LOOPBACK}:{dead} check inter 200ms fall 1\n"
    )
    started.append(_start([haproxy, "-db", "-f", str(cfg)], tmp_path, port, "haproxy"))
    # The health check marks s1 down within a few hundred ms; until then HAProxy tries it (a 503 too).
    check = _handshake(f"ws://{LOOPBACK}:{port}/ws")
    assert check["code"] in ("handshake.no-backend", "handshake.bad-gateway"), check["summary"]
    assert "from HAProxy" in check["summary"]
    assert check["evidence"]["answer"]["sender"] == "haproxy"


def test_real_apache_with_its_backend_down(tmp_path: Path, started: list[ManagedProcess]) -> None:
    apache = require_binary("apache2", "apt-get install -y apache2")
    modules = Path("/usr/lib/apache2/modules")
    port, dead = free_port(), free_port()
    conf = tmp_path / "httpd.conf"
    mods = "".join(
        f"LoadModule {m}_module {modules}/mod_{m}.so\n"
        for m in ("mpm_event", "authz_core", "proxy", "proxy_http")
    )
    conf.write_text(
        f"ServerRoot {tmp_path}\nServerName localhost\nListen {LOOPBACK}:{port}\nPidFile {tmp_path}/httpd.pid\n"
        f"ErrorLog {tmp_path}/error.log\nUser nobody\nGroup nogroup\n{mods}"
        f"ProxyPass /ws http://{LOOPBACK}:{dead}/\n"
    )
    started.append(_start([apache, "-f", str(conf), "-DFOREGROUND"], tmp_path, port, "apache2"))
    check = _handshake(f"ws://{LOOPBACK}:{port}/ws")
    assert check["code"] == "handshake.bad-gateway", check["summary"]
    assert "from Apache httpd" in check["summary"] and "ProxyPass" in check["hint"]


def test_real_caddy_with_its_backend_down(tmp_path: Path, started: list[ManagedProcess]) -> None:
    caddy = require_binary("caddy", "apt-get install -y caddy")
    port, dead = free_port(), free_port()
    (tmp_path / "Caddyfile").write_text(
        f"{{\n  admin off\n  auto_https off\n}}\nhttp://{LOOPBACK}:{port} {{\n  reverse_proxy {LOOPBACK}:{dead}\n}}\n"
    )
    env = {
        "HOME": str(tmp_path),
        "XDG_DATA_HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path),
        "PATH": "/usr/bin:/bin",
    }
    started.append(
        _start(
            [caddy, "run", "--config", "Caddyfile", "--adapter", "caddyfile"],
            tmp_path,
            port,
            "caddy",
            env=env,
        )
    )
    check = _handshake(f"ws://{LOOPBACK}:{port}/ws")
    assert check["code"] == "handshake.bad-gateway", check["summary"]
    assert check["summary"].startswith("HTTP 502 Bad Gateway from Caddy")
    assert "reverse_proxy" in check["hint"]
