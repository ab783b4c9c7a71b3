"""Self-test of the real peers: each one shows the behaviour its fixture documents, as a client sees it."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import signal
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any

import dns.resolver
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidHeaderValue,
    InvalidMessage,
    InvalidStatus,
    InvalidURI,
)
from websockets.typing import Origin

from tests.peers.bad import accept_key
from tests.peers.fixtures import Certs, DnsPeer, Peer, free_port, wait_port

KEY = base64.b64encode(b"lokin-doctor-key").decode()


def raw_exchange(
    port: int,
    path: str = "/",
    *,
    upgrade: bool = True,
    tls: ssl.SSLContext | None = None,
    server_hostname: str = "localhost",
    timeout: float = 2.0,
) -> bytes:
    """Send one request head; return what comes back until the head is complete (and the body if sized)."""
    sock: socket.socket = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if tls is not None:
        sock = tls.wrap_socket(sock, server_hostname=server_hostname)
    with sock:
        head = f"GET {path} HTTP/1.1\r\nHost: localhost:{port}\r\n"
        if upgrade:
            head += (
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n"
            )
        sock.sendall((head + "\r\n").encode())
        data = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if b"\r\n\r\n" in data:
                head_part, _, body = data.partition(b"\r\n\r\n")
                m = re.search(rb"(?i)content-length: *(\d+)", head_part)
                if head_part.startswith(b"HTTP/1.1 101") or (m and len(body) >= int(m.group(1))):
                    break
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            data += chunk
        return data


def status_of(data: bytes) -> int:
    return int(data.split(b" ", 2)[1])


# --------------------------------------------------------------------------- helpers


def test_free_port_has_nothing_listening() -> None:
    port = free_port()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_wait_port(ws_server: Peer) -> None:
    assert wait_port("127.0.0.1", ws_server.port, 1) is True
    with pytest.raises(TimeoutError):
        wait_port("127.0.0.1", free_port(), 0.2)


# --------------------------------------------------------------------------- websockets servers


async def test_ws_server_welcome_and_echo(ws_server: Peer) -> None:
    assert ws_server.host == "127.0.0.1" and ws_server.pid is None
    assert ws_server.url == f"ws://127.0.0.1:{ws_server.port}/"
    async with connect(ws_server.url) as ws:
        welcome = json.loads(await ws.recv())
        assert welcome["type"] == "welcome"
        assert re.fullmatch(r"user_[0-9a-f]+", welcome["clientId"])
        await ws.send("ping?")
        assert await ws.recv() == "ping?"
    assert ws_server.requests[0].headers["upgrade"] == "websocket"


def test_ws_server_usable_from_sync_code(ws_server: Peer) -> None:
    reply = raw_exchange(ws_server.port, "/anything")
    assert reply.startswith(b"HTTP/1.1 101")
    assert f"Sec-WebSocket-Accept: {accept_key(KEY)}".encode() in reply


async def test_ws_server_factory_options(ws_server_factory: Callable[..., Peer]) -> None:
    peer = ws_server_factory(
        paths=["/ws"], origins=["https://lokin.test"], greeting=False, ping_interval=None
    )
    with pytest.raises(InvalidStatus) as exc:
        await connect(f"ws://127.0.0.1:{peer.port}/", origin=Origin("https://lokin.test"))
    assert exc.value.response.status_code == 404
    with pytest.raises(InvalidStatus) as exc:
        await connect(f"ws://127.0.0.1:{peer.port}/ws", origin=Origin("https://evil.example"))
    assert exc.value.response.status_code == 403
    async with connect(f"ws://127.0.0.1:{peer.port}/ws", origin=Origin("https://lokin.test")) as ws:
        await ws.send("first")  # no welcome: the first thing back is the echo
        assert await ws.recv() == "first"
    peer.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", peer.port), timeout=1).close()


def test_ws_server_page(ws_server_factory: Callable[..., Peer]) -> None:
    peer = ws_server_factory(pages={"/": "<html>hi</html>"}, page_headers={"X-Test": "1"})
    reply = raw_exchange(peer.port, "/", upgrade=False)
    assert status_of(reply) == 200 and b"text/html" in reply and b"<html>hi</html>" in reply
    assert raw_exchange(peer.port, "/").startswith(b"HTTP/1.1 101")


async def test_tls_ws_server(tls_ws_server: Callable[..., Peer], certs: Certs) -> None:
    peer = tls_ws_server(certs.good)
    assert peer.url == f"wss://localhost:{peer.port}/"
    async with connect(peer.url, ssl=certs.client_context()) as ws:
        assert json.loads(await ws.recv())["type"] == "welcome"
    with pytest.raises(ssl.SSLCertVerificationError):
        await connect(peer.url)  # system CAs do not know the test CA


# --------------------------------------------------------------------------- certificates


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("good", None),
        ("expired", 10),
        ("not_yet_valid", 9),
        ("wrong_host", 62),
        ("self_signed", 18),
        ("missing_intermediate", 20),
        ("full_chain", None),
    ],
)
async def test_certs(tls_ws_server: Callable[..., Peer], certs: Certs, name: str, code: int | None) -> None:
    peer = tls_ws_server(getattr(certs, name))
    if code is None:
        async with connect(peer.url, ssl=certs.client_context()) as ws:
            await ws.recv()
    else:
        with pytest.raises(ssl.SSLCertVerificationError) as exc:
            await connect(peer.url, ssl=certs.client_context())
        assert exc.value.verify_code == code


# --------------------------------------------------------------------------- node server


async def test_node_server(node_server: Peer) -> None:
    assert node_server.pid is not None
    import psutil

    assert psutil.Process(node_server.pid).cmdline() == ["node", "server.js", str(node_server.port)]
    async with (
        connect(node_server.url, origin=Origin("https://lokin.test")) as a,
        connect(node_server.url) as b,
    ):
        welcome = json.loads(await a.recv())
        assert welcome["type"] == "welcome" and welcome["clientId"].startswith("user_")
        await b.recv()
        await a.send("bonjour")
        assert await a.recv() == "bonjour"
        broadcast = json.loads(await b.recv())
        assert broadcast == {
            "type": "broadcast",
            "from": welcome["clientId"],
            "to": broadcast["to"],
            "data": "bonjour",
        }
    assert "Serveur prêt à recevoir des connexions" in node_server.log_text()
    assert "connexion depuis: https://lokin.test" in node_server.log_text()
    plain = raw_exchange(node_server.port, upgrade=False)
    assert status_of(plain) == 426


async def test_node_server_sigterm_closes_clients(node_server: Peer) -> None:
    async with connect(node_server.url) as ws:
        await ws.recv()
        assert node_server.pid is not None
        os.kill(node_server.pid, signal.SIGTERM)  # the fixture's own subprocess
        with pytest.raises(ConnectionClosedOK):  # 1001 going away counts as a normal close
            await asyncio.wait_for(ws.recv(), 5)
    assert ws.close_code == 1001 and ws.close_reason == "Server shutting down"
    node_server.stop()
    assert "arrêté proprement" in node_server.log_text()


async def test_ipv6_only_peers(
    node_server_factory: Callable[..., Peer], ws_server_factory: Callable[..., Peer]
) -> None:
    for peer in (node_server_factory(host="::1"), ws_server_factory(host="::1")):
        assert peer.url == f"ws://[::1]:{peer.port}/"
        async with connect(peer.url) as ws:
            assert json.loads(await ws.recv())["type"] == "welcome"
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", peer.port), timeout=1).close()


# --------------------------------------------------------------------------- static site


def test_static_server(static_server: Peer) -> None:
    assert static_server.pid is not None
    assert static_server.url == f"ws://127.0.0.1:{static_server.port}/"
    assert static_server.http_url == f"http://127.0.0.1:{static_server.port}/"
    reply = raw_exchange(static_server.port)
    assert status_of(reply) == 200
    assert b"text/html" in reply and b"Directory listing" in reply


# --------------------------------------------------------------------------- bad servers


async def _open(peer: Peer, open_timeout: float = 2.0, **kwargs: Any) -> ClientConnection:
    return await connect(peer.url, open_timeout=open_timeout, **kwargs)


async def test_bad_silent(bad_server: Callable[..., Peer]) -> None:
    with pytest.raises(TimeoutError):
        await _open(bad_server("silent"), open_timeout=0.3)


async def test_bad_garbage(bad_server: Callable[..., Peer]) -> None:
    peer = bad_server("garbage")
    with pytest.raises(InvalidMessage) as exc:
        await _open(peer)
    assert "SSH-2.0-OpenSSH" in str(exc.value.__cause__)
    with socket.create_connection(("127.0.0.1", peer.port), timeout=2) as sock:
        assert sock.recv(100).startswith(b"SSH-2.0-OpenSSH_9.2")


async def test_bad_accept(bad_server: Callable[..., Peer]) -> None:
    peer = bad_server("bad-accept")
    with pytest.raises(InvalidHeaderValue, match="Sec-WebSocket-Accept"):
        await _open(peer)
    reply = raw_exchange(peer.port)
    assert reply.startswith(b"HTTP/1.1 101") and accept_key(KEY).encode() not in reply


@pytest.mark.parametrize(("kind", "status"), [("not-found", 404), ("unauthorized", 401), ("web-page", 200)])
async def test_bad_http_status(bad_server: Callable[..., Peer], kind: str, status: int) -> None:
    with pytest.raises(InvalidStatus) as exc:
        await _open(bad_server(kind))
    assert exc.value.response.status_code == status
    if kind == "web-page":
        assert exc.value.response.headers["Content-Type"].startswith("text/html")
        assert exc.value.response.body.startswith(b"<!DOCTYPE html>")
    if kind == "unauthorized":
        assert "Basic" in exc.value.response.headers["WWW-Authenticate"]


async def test_bad_redirect(bad_server: Callable[..., Peer]) -> None:
    peer = bad_server("redirect")
    with pytest.raises(InvalidURI, match="example.invalid"):
        await _open(peer)
    reply = raw_exchange(peer.port)
    assert status_of(reply) == 301 and b"Location: https://example.invalid/ws" in reply


async def test_bad_close_after_101(bad_server: Callable[..., Peer]) -> None:
    async with await _open(bad_server("close-after-101")) as ws:
        with pytest.raises(ConnectionClosedError) as exc:
            await ws.recv()
    assert exc.value.rcvd is not None
    assert (exc.value.rcvd.code, exc.value.rcvd.reason) == (1011, "bye")


async def test_bad_reset(bad_server: Callable[..., Peer]) -> None:
    peer = bad_server("reset")
    with pytest.raises(InvalidMessage):
        await _open(peer)
    with socket.create_connection(("127.0.0.1", peer.port), timeout=2) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        with pytest.raises(ConnectionResetError):
            sock.recv(100)


async def test_bad_close_no_reply(bad_server: Callable[..., Peer]) -> None:
    peer = bad_server("close-no-reply")
    with pytest.raises(InvalidMessage) as exc:
        await _open(peer)
    assert isinstance(exc.value.__cause__, EOFError)
    with socket.create_connection(("127.0.0.1", peer.port), timeout=2) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(100) == b""


async def test_bad_no_pong(bad_server: Callable[..., Peer]) -> None:
    async with await _open(
        bad_server("no-pong"), ping_interval=0.2, ping_timeout=0.2, close_timeout=0.2
    ) as ws:
        assert json.loads(await ws.recv())["type"] == "welcome"
        with pytest.raises(ConnectionClosedError, match="keepalive ping timeout"):
            await asyncio.wait_for(ws.recv(), 3)


async def test_bad_slow(bad_server: Callable[..., Peer]) -> None:
    peer = bad_server("slow", delay=0.5)
    with pytest.raises(TimeoutError):
        await _open(peer, open_timeout=0.2)
    started = time.monotonic()
    async with await _open(peer) as ws:
        assert time.monotonic() - started >= 0.45
        assert json.loads(await ws.recv())["type"] == "welcome"
        await ws.send("echo")
        assert await ws.recv() == "echo"
        await ws.ping()
    assert ws.close_code == 1000


async def test_bad_http_no_length(bad_server: Callable[..., Peer]) -> None:
    peer = bad_server("http-no-length")
    with pytest.raises(TimeoutError):
        await _open(peer, open_timeout=0.3)
    reply = raw_exchange(peer.port, timeout=0.5)
    assert status_of(reply) == 200 and b"content-length" not in reply.lower()


def test_bad_server_rejects_unknown_kind(bad_server: Callable[..., Peer]) -> None:
    with pytest.raises(ValueError, match="unknown bad_server kind"):
        bad_server("teapot")


# --------------------------------------------------------------------------- nginx


async def test_nginx_correct(ws_server: Peer, nginx_proxy: Callable[..., Peer]) -> None:
    proxy = nginx_proxy("correct", ws_server.port)
    assert proxy.url == f"ws://127.0.0.1:{proxy.port}/ws" and proxy.pid is not None
    for url in (proxy.url, proxy.url[: -len("ws")]):
        async with connect(url) as ws:
            assert json.loads(await ws.recv())["type"] == "welcome"
            await ws.send("through nginx")
            assert await ws.recv() == "through nginx"
    assert [r.path for r in ws_server.requests] == ["/", "/"]


async def test_nginx_no_upgrade(ws_server: Peer, nginx_proxy: Callable[..., Peer]) -> None:
    proxy = nginx_proxy("no-upgrade", ws_server.port)
    with pytest.raises(InvalidStatus) as exc:
        await connect(proxy.url)
    response = exc.value.response
    assert response.status_code == 426
    assert response.headers["Upgrade"] == "websocket"
    assert b"invalid Connection header: close" in response.body
    assert response.headers["Server"].startswith("nginx")


async def test_nginx_http10(ws_server: Peer, nginx_proxy: Callable[..., Peer]) -> None:
    proxy = nginx_proxy("http10", ws_server.port)
    with pytest.raises(InvalidStatus) as exc:
        await connect(proxy.url)
    assert exc.value.response.status_code == 505
    assert b"unsupported HTTP version: HTTP/1.0" in exc.value.response.body


async def test_nginx_upstream_down(nginx_proxy: Callable[..., Peer]) -> None:
    proxy = nginx_proxy("upstream-down")
    with pytest.raises(InvalidStatus) as exc:
        await connect(proxy.url)
    assert exc.value.response.status_code == 502
    assert exc.value.response.headers["Server"].startswith("nginx/")
    assert exc.value.response.headers["Content-Type"] == "text/html"


async def test_nginx_read_timeout(ws_server: Peer, nginx_proxy: Callable[..., Peer]) -> None:
    proxy = nginx_proxy("read-timeout", ws_server.port)
    assert "proxy_read_timeout 2s;" in proxy.extra["config_text"]
    started = time.monotonic()
    async with connect(proxy.url, ping_interval=None) as ws:
        await ws.recv()
        with pytest.raises(ConnectionClosedError) as exc:
            await asyncio.wait_for(ws.recv(), 6)
    assert exc.value.rcvd is None  # no close frame: close code 1006
    assert 1.5 < time.monotonic() - started < 5


async def test_nginx_tls(ws_server: Peer, nginx_proxy: Callable[..., Peer], certs: Certs) -> None:
    proxy = nginx_proxy("tls", ws_server.port)
    assert proxy.url == f"wss://localhost:{proxy.port}/ws"
    async with connect(proxy.url, ssl=certs.client_context()) as ws:
        assert json.loads(await ws.recv())["type"] == "welcome"
    with pytest.raises(ssl.SSLCertVerificationError):
        await connect(proxy.url)
    with pytest.raises(InvalidStatus) as exc:
        await connect(f"ws://127.0.0.1:{proxy.port}/ws")
    assert exc.value.response.status_code == 400
    assert b"plain HTTP request was sent to HTTPS port" in exc.value.response.body


def test_nginx_tls_other_cert_and_page_csp(
    ws_server: Peer, nginx_proxy: Callable[..., Peer], certs: Certs
) -> None:
    proxy = nginx_proxy("tls", ws_server.port, cert=certs.missing_intermediate, csp=True)
    ctx = certs.client_context()
    with pytest.raises(ssl.SSLCertVerificationError):
        raw_exchange(proxy.port, "/page", upgrade=False, tls=ctx)
    loose = ssl.create_default_context(cafile=certs.ca_file)
    loose.load_verify_locations(certs.intermediate_ca_file)
    page = raw_exchange(proxy.port, "/page", upgrade=False, tls=loose)
    assert status_of(page) == 200
    assert b"Content-Security-Policy: connect-src 'self'" in page
    assert b"new WebSocket(url)" in page


# --------------------------------------------------------------------------- dnsmasq


def _answers(dns_peer: DnsPeer, name: str, rdtype: str) -> list[str] | str:
    try:
        return sorted(r.to_text() for r in dns_peer.resolver().resolve(name, rdtype))
    except dns.resolver.NXDOMAIN:
        return "NXDOMAIN"
    except dns.resolver.NoAnswer:
        return "NoAnswer"
    except dns.resolver.NoNameservers:
        return "REFUSED"


def test_dns_server(dns_server: DnsPeer) -> None:
    assert dns_server.server == f"127.0.0.1:{dns_server.port}" and dns_server.pid is not None
    expected = {
        ("lokin.test", "A"): ["127.0.0.1"],
        ("lokin.test", "AAAA"): "NoAnswer",
        ("www.lokin.test", "A"): ["127.0.0.1"],
        ("multi.lokin.test", "A"): ["127.0.0.1", "127.0.0.2", "127.0.0.3"],
        ("v6.lokin.test", "AAAA"): ["::1"],
        ("v6.lokin.test", "A"): "NoAnswer",
        ("alias.lokin.test", "A"): ["127.0.0.1"],
        ("alias.lokin.test", "CNAME"): ["lokin.test."],
        ("override.lokin.test", "A"): ["127.0.0.5"],
        ("nx.test", "A"): "NXDOMAIN",
        ("deep.nx.test", "AAAA"): "NXDOMAIN",
        ("unknown.example", "A"): "REFUSED",
    }
    got = {key: _answers(dns_server, *key) for key in expected}
    assert got == expected
    chain = dns_server.resolver().resolve("alias.lokin.test", "A").response.answer
    assert [rrset.rdtype.name for rrset in chain] == ["CNAME", "A"]


def test_dnsmasq_custom_records(dnsmasq: Callable[..., DnsPeer]) -> None:
    peer = dnsmasq({"a.example.test": ["127.0.0.7", "::1"]}, extra_args=["--local=/example.test/"])
    assert _answers(peer, "a.example.test", "A") == ["127.0.0.7"]
    assert _answers(peer, "a.example.test", "AAAA") == ["::1"]
    assert _answers(peer, "b.example.test", "A") == "NXDOMAIN"


# --------------------------------------------------------------------------- missing tools


def test_missing_binary_skips_locally_and_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.peers._common import require_binary

    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no-such-peer-binary is not installed"):
        require_binary("no-such-peer-binary", "apt-get install -y it")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="apt-get install -y it"):
        require_binary("no-such-peer-binary", "apt-get install -y it")
