"""Each way the forward proxy itself fails has its own code, produced here by a real peer: tinyproxy with a
filter, a relay that cannot CONNECT, a web server and a WebSocket server named as the proxy, an SSH
server, proxies that hang up or stay silent, an https:// proxy URL for a plain-HTTP proxy, and (in a
namespace of the test's own: tests/peers/netns.py) a proxy whose name does not resolve or whose address
has no route. In every case the connection never reaches the target, so ``tcp`` is skipped."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import CliRun, run_cli
from tests.peers._common import LOOPBACK, LoopThread
from tests.peers.netns import NXDOMAIN, isolated_cli

from .test_forward_proxy import CLEAN


def _run(url: str, *extra: str, env: dict[str, str] | None = None, timeout: str = "5") -> CliRun:
    return run_cli(
        "all",
        url,
        "--json",
        "--no-variants",
        "--timeout",
        timeout,
        "--lang",
        "en",
        *extra,
        env={**CLEAN, **(env or {})},
    )


def _never_left(run: CliRun) -> None:
    assert run.code == 1, run.stdout
    assert run.check("tcp")["status"] == "skip"
    assert run.check("handshake")["status"] == "skip"


# --------------------------------------------------------------------------- the proxy answers CONNECT


def test_connect_to_a_filtered_host_is_forbidden(ws_server, tinyproxy) -> None:
    proxy = tinyproxy(filter_hosts=("127.0.0.1",))
    run = _run(ws_server.url, env={"HTTP_PROXY": proxy.url})
    forward = run.check("forward")
    assert forward["code"] == "forward.connect-forbidden"
    assert run.root_code == "forward.connect-forbidden"
    assert forward["evidence"]["connect"]["status_line"] == "HTTP 403 Filtered"
    # port 443 of the same host is refused too: the rule is the destination, not the port
    assert forward["evidence"]["connect_443"] == "HTTP 403 Filtered"
    assert f"CONNECT 127.0.0.1:{ws_server.port}" in forward["summary"]
    assert "tinyproxy" in forward["summary"]
    assert "NO_PROXY" in forward["hint"]
    _never_left(run)


RELAY_SERVER = "lokin-relay/1.0"


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(OSError):
        writer.close()


async def _relay_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A relay-only proxy: 405 to CONNECT; an absolute-form request to a loopback host is sent on in
    origin form (its Upgrade kept), ``Via`` added to it and to the answer's head, then bytes are piped
    both ways."""
    try:
        async with asyncio.timeout(20):
            head = await reader.readuntil(b"\r\n\r\n")
            method, uri, version = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
            if method == "CONNECT":
                body = b"CONNECT is not supported by this relay\n"
                writer.write(
                    b"HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, POST, HEAD\r\n"
                    + f"Server: {RELAY_SERVER}\r\nContent-Length: {len(body)}\r\n".encode()
                    + b"Connection: close\r\n\r\n"
                    + body
                )
                await writer.drain()
                return
            authority, _, path = uri.removeprefix("http://").partition("/")
            host, _, port = authority.rpartition(":")
            if host not in (LOOPBACK, "localhost"):  # never resolve or reach anything else
                writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                await writer.drain()
                return
            up_reader, up_writer = await asyncio.open_connection(host, int(port or 80))
            rest = head.split(b"\r\n", 1)[1]
            up_writer.write(f"{method} /{path} {version}\r\nVia: 1.1 lokin-relay\r\n".encode() + rest)
            await up_writer.drain()
            answer = await up_reader.readuntil(b"\r\n\r\n")
            status, _, headers = answer.partition(b"\r\n")
            writer.write(status + b"\r\nVia: 1.1 lokin-relay\r\n" + headers)
            await writer.drain()
        async with asyncio.timeout(30):
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
    except (TimeoutError, ConnectionError, OSError, ValueError, asyncio.IncompleteReadError):
        pass
    finally:
        with contextlib.suppress(OSError):
            writer.close()


@pytest.fixture
def relay_proxy() -> Iterator[int]:
    """A forward proxy that relays plain requests (upgrades included) but answers CONNECT with 405."""
    thread = LoopThread("relay-proxy")

    async def start() -> asyncio.Server:
        return await asyncio.start_server(_relay_client, LOOPBACK, 0)

    server = thread.run(start())
    yield server.sockets[0].getsockname()[1]

    async def stop() -> None:
        server.close()

    thread.run(stop())
    thread.stop()


def test_a_relay_that_cannot_connect(ws_server, relay_proxy: int) -> None:
    run = _run(ws_server.url, "--proxy", f"http://127.0.0.1:{relay_proxy}")
    forward = run.check("forward")
    assert forward["code"] == "forward.connect-unsupported"
    assert run.root_code == "forward.connect-unsupported"
    assert forward["evidence"]["connect"]["status_line"] == "HTTP 405 Method Not Allowed"
    # the upgrade sent without CONNECT reached the server through the relay: only CONNECT is missing
    assert forward["evidence"]["without_connect"] == "HTTP 101 Switching Protocols, Via: 1.1 lokin-relay"
    assert "only clients that do not use CONNECT get through" in forward["summary"]
    assert ws_server.requests and ws_server.requests[-1].headers.get("via") == "1.1 lokin-relay"
    _never_left(run)


METHOD_NOT_ALLOWED = (
    b"HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, HEAD\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 19\r\nConnection: close\r\n\r\nMethod Not Allowed\n"
)


def test_a_proxy_refusing_connect_and_everything_else(ws_server, bad_server) -> None:
    proxy = bad_server("replay", reply=METHOD_NOT_ALLOWED)
    run = _run(ws_server.url, "--proxy", f"http://127.0.0.1:{proxy.port}")
    forward = run.check("forward")
    assert forward["code"] == "forward.connect-unsupported"
    assert forward["evidence"]["connect_443"] == "HTTP 405 Method Not Allowed"
    assert forward["evidence"]["without_connect"] == "HTTP 405 Method Not Allowed"
    assert forward["summary"].endswith(f"HTTP 405 Method Not Allowed to CONNECT 127.0.0.1:{ws_server.port}")
    assert "enable CONNECT" in forward["hint"]
    _never_left(run)


# --------------------------------------------------------------------------- not a proxy at all


def test_a_web_server_named_as_the_proxy(ws_server, static_server) -> None:
    run = _run(ws_server.url, env={"HTTP_PROXY": f"http://127.0.0.1:{static_server.port}"})
    forward = run.check("forward")
    assert forward["code"] == "forward.not-a-proxy", forward
    assert run.root_code == "forward.not-a-proxy"
    assert forward["evidence"]["connect"]["status_line"] == "HTTP 501 Unsupported method ('CONNECT')"
    assert "from SimpleHTTP/" in forward["summary"]
    assert "not a forward proxy" in forward["summary"]
    # the same 404 for a host that resolves nowhere: python's http.server never looked at the host
    assert forward["evidence"]["nowhere"].startswith("HTTP 404 File not found")
    assert "lokin-doctor.invalid" in forward["evidence"]["nowhere"]
    assert "8888 for tinyproxy" in forward["hint"]
    _never_left(run)


def test_a_websocket_server_named_as_the_proxy(ws_server, ws_server_factory) -> None:
    other = ws_server_factory()
    run = _run(ws_server.url, "--proxy", f"http://127.0.0.1:{other.port}")
    forward = run.check("forward")
    assert forward["code"] == "forward.not-a-proxy", forward
    # websockets upgrades an absolute-form request for any host: the 101 did not come from the target
    assert forward["evidence"]["without_connect"].startswith("HTTP 101 Switching Protocols")
    assert forward["evidence"]["nowhere"].startswith("HTTP 101 Switching Protocols")
    assert "Python websockets" in forward["summary"]
    assert ws_server.requests == []  # the target never saw a request
    _never_left(run)


def test_an_ssh_server_named_as_the_proxy(ws_server, bad_server) -> None:
    ssh = bad_server("garbage")
    run = _run(ws_server.url, "--proxy", f"http://127.0.0.1:{ssh.port}")
    forward = run.check("forward")
    assert forward["code"] == "forward.not-a-proxy"
    assert "answered CONNECT with b'SSH-2.0-OpenSSH" in forward["summary"]
    assert "(the proxy came from --proxy)" in forward["hint"]
    _never_left(run)


# --------------------------------------------------------------------------- no answer to CONNECT


def test_a_proxy_that_hangs_up_on_connect(ws_server, bad_server) -> None:
    proxy = bad_server("close-no-reply")
    run = _run(ws_server.url, env={"HTTP_PROXY": f"http://127.0.0.1:{proxy.port}"})
    forward = run.check("forward")
    assert forward["code"] == "forward.proxy-closed"
    assert run.root_code == "forward.proxy-closed"
    assert (
        f"the proxy 127.0.0.1:{proxy.port} closed the connection without answering CONNECT"
        in forward["summary"]
    )
    assert proxy.requests and proxy.requests[0].path == f"127.0.0.1:{ws_server.port}"  # it got the CONNECT
    assert "(the proxy came from HTTP_PROXY)" in forward["hint"]
    _never_left(run)


def test_a_silent_proxy_times_out(ws_server, bad_server) -> None:
    proxy = bad_server("silent")
    run = _run(ws_server.url, "--proxy", f"http://127.0.0.1:{proxy.port}", timeout="1.5")
    forward = run.check("forward")
    assert forward["code"] == "forward.proxy-timeout"
    assert run.root_code == "forward.proxy-timeout"
    assert f"did not answer CONNECT 127.0.0.1:{ws_server.port} within the deadline" in forward["summary"]
    assert 1.2 < run.seconds < 8, run.seconds
    _never_left(run)


# --------------------------------------------------------------------------- reaching the proxy


def test_https_scheme_for_a_plain_http_proxy(ws_server, tinyproxy) -> None:
    proxy = tinyproxy()
    run = _run(ws_server.url, env={"HTTP_PROXY": f"https://{proxy.address}"}, timeout="2")
    forward = run.check("forward")
    assert forward["code"] == "forward.proxy-error"
    assert run.root_code == "forward.proxy-error"
    # tinyproxy takes the ClientHello for the start of a request line and waits: TCP is fine, TLS is not
    assert (
        f"TLS with the proxy {proxy.address} failed: it accepted TCP but sent no TLS answer within the deadline"
        in forward["summary"]
    )
    assert forward["evidence"]["proxy"] == f"https://{proxy.address}"
    assert "http:// for most proxies" in forward["hint"]
    _never_left(run)


def test_a_proxy_variable_no_client_can_use(ws_server) -> None:
    run = _run(ws_server.url, env={"HTTP_PROXY": "http://proxy.lokin.test:99999"})
    forward = run.check("forward")
    assert forward["code"] == "forward.invalid-variable"
    assert run.root_code == "forward.invalid-variable"
    assert forward["summary"].startswith("the proxy variable HTTP_PROXY cannot be used:")
    assert "Port out of range" in forward["summary"]
    assert "set HTTP_PROXY to http://host:port" in forward["hint"]
    assert forward["evidence"]["environment"] == {"HTTP_PROXY": "http://proxy.lokin.test:99999"}
    _never_left(run)
    # --no-proxy goes direct, as the hint says
    assert _run(ws_server.url, "--no-proxy", env={"HTTP_PROXY": "http://proxy.lokin.test:99999"}).code == 0


def _isolated(tmp_path: Path, proxy: str, **kw: object) -> Callable[[], CliRun]:
    def go() -> CliRun:
        return isolated_cli(
            ["all", "ws://127.0.0.1:9/", "--json", "--no-variants", "--timeout", "5", "--lang", "en"],
            tmp_path,
            env={**CLEAN, "HTTP_PROXY": proxy},
            **kw,  # type: ignore[arg-type]
        )

    return go


def test_a_proxy_name_that_does_not_resolve(tmp_path: Path) -> None:
    # In a namespace whose only name server is ours on 127.0.0.1:53, answering NXDOMAIN: no real DNS.
    run = _isolated(
        tmp_path,
        "http://proxy.lokin.invalid:3128",
        etc={"resolv.conf": "nameserver 127.0.0.1\n"},
        dns_rcode=NXDOMAIN,
    )()
    forward = run.check("forward")
    assert forward["code"] == "forward.proxy-unresolved", forward
    assert run.root_code == "forward.proxy-unresolved"
    assert (
        "cannot connect to the proxy proxy.lokin.invalid:3128: Name or service not known"
        in forward["summary"]
    )
    assert "fix the proxy's host name" in forward["hint"]
    _never_left(run)


def test_a_proxy_address_without_a_route(tmp_path: Path) -> None:
    # The namespace has no route but loopback: 192.0.2.10 (TEST-NET-1) fails at once, no packet sent.
    run = _isolated(tmp_path, "http://192.0.2.10:3128")()
    forward = run.check("forward")
    assert forward["code"] == "forward.proxy-error", forward
    assert "cannot connect to the proxy 192.0.2.10:3128: Network is unreachable" in forward["summary"]
    assert "the network path to it" in forward["hint"]
    _never_left(run)


APACHE_FORWARD = """ProxyRequests On
ProxyVia On
<Proxy "*">
    Require ip 127.0.0.1
</Proxy>
"""


def test_apache_forward_proxy_without_mod_proxy_connect(ws_server, tmp_path: Path) -> None:
    # Apache answers CONNECT with 500 ("No protocol handler was valid") when mod_proxy_connect is not
    # loaded: the server is reachable (the plain proxied request gets its 426), CONNECT is what is missing.
    from tests.peers._common import require_binary
    from tests.peers.apache import start_apache

    binary = require_binary("apache2", "apt-get install -y apache2")
    site = start_apache(
        binary,
        tmp_path / "apache",
        APACHE_FORWARD,
        modules=("mpm_event", "authz_core", "authz_host", "proxy", "proxy_http"),
    )
    try:
        run = _run(ws_server.url, "--proxy", f"http://127.0.0.1:{site.port}")
    finally:
        site.stop()
    forward = run.check("forward")
    assert forward["code"] == "forward.upgrade-answered", forward  # not forward.target-unreachable
    assert forward["evidence"]["connect"]["status_line"] == "HTTP 500 Internal Server Error"
    assert forward["evidence"]["without_connect"].startswith("HTTP 426 Upgrade Required, Via: 1.1 ")
    assert "the proxy does not tunnel WebSockets" in forward["summary"]
    _never_left(run)
