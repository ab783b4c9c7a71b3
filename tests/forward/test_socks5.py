"""--proxy socks5://: the RFC 1928 CONNECT through a small SOCKS5 server of this test (no Debian package
ships one that runs unprivileged in the foreground): it relays for real, or refuses with a given reply."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Iterator

import pytest

from tests.helpers import run_cli
from tests.peers._common import LOOPBACK, LoopThread

CLEAN = {
    k: ""
    for k in (
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "no_proxy",
    )
}


class Socks5:
    def __init__(self, reply: int = 0, credentials: tuple[str, str] | None = None) -> None:
        self.reply = reply
        self.credentials = credentials
        self.connects: list[tuple[str, int]] = []
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            __, n = await reader.readexactly(2)
            methods = await reader.readexactly(n)
            want = 2 if self.credentials else 0
            if want not in methods:
                writer.write(b"\x05\xff")
                return
            writer.write(bytes([5, want]))
            if want == 2:
                __, ulen = await reader.readexactly(2)
                user = (await reader.readexactly(ulen)).decode()
                plen = (await reader.readexactly(1))[0]
                password = (await reader.readexactly(plen)).decode()
                ok = (user, password) == self.credentials
                writer.write(b"\x01" + (b"\x00" if ok else b"\x01"))
                if not ok:
                    return
            __, cmd, __, atyp = await reader.readexactly(4)
            if atyp == 3:
                host = (await reader.readexactly((await reader.readexactly(1))[0])).decode()
            else:
                import ipaddress

                host = str(ipaddress.ip_address(await reader.readexactly(4 if atyp == 1 else 16)))
            (port,) = struct.unpack(">H", await reader.readexactly(2))
            self.connects.append((host, port))
            if self.reply != 0:
                writer.write(bytes([5, self.reply, 0, 1]) + bytes(6))
                return
            up_reader, up_writer = await asyncio.open_connection(host, port)
            writer.write(b"\x05\x00\x00\x01" + bytes(6))

            async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
                with contextlib.suppress(OSError):
                    while data := await src.read(65536):
                        dst.write(data)
                        await dst.drain()
                dst.close()

            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        except (asyncio.IncompleteReadError, OSError):
            pass
        finally:
            writer.close()


@pytest.fixture
def socks5() -> Iterator[callable]:
    loop = LoopThread("socks5")
    servers: list[asyncio.base_events.Server] = []

    def start(**opts: object) -> Socks5:
        peer = Socks5(**opts)  # type: ignore[arg-type]

        async def serve() -> int:
            server = await asyncio.start_server(peer.handle, LOOPBACK, 0)
            servers.append(server)
            return int(server.sockets[0].getsockname()[1])

        peer.port = loop.run(serve())
        return peer

    yield start
    for server in servers:
        loop.run(_close(server))
    loop.stop()


async def _close(server: asyncio.base_events.Server) -> None:
    server.close()


def _run(url: str, *extra: str):
    return run_cli("all", url, "--json", "--no-variants", "--timeout", "5", "--lang", "en", *extra, env=CLEAN)


def test_through_socks5(ws_server, socks5) -> None:
    proxy = socks5()
    run = _run(ws_server.url, "--proxy", f"socks5://127.0.0.1:{proxy.port}")
    assert run.code == 0, run.stdout
    assert run.check("forward")["summary"].startswith(f"through proxy 127.0.0.1:{proxy.port} (--proxy)")
    assert ("127.0.0.1", ws_server.port) in proxy.connects
    assert run.check("session")["status"] == "ok"


def test_socks5_with_credentials(ws_server, socks5) -> None:
    proxy = socks5(credentials=("u", "p"))
    assert _run(ws_server.url, "--proxy", f"socks5://u:p@127.0.0.1:{proxy.port}").code == 0
    run = _run(ws_server.url, "--proxy", f"socks5://127.0.0.1:{proxy.port}")
    assert run.root_code == "forward.socks-refused"
    assert "credentials required" in run.check("forward")["summary"]


def test_socks5_refusal_is_named(ws_server, socks5) -> None:
    proxy = socks5(reply=2)
    run = _run(ws_server.url, "--proxy", f"socks5://127.0.0.1:{proxy.port}")
    assert run.root_code == "forward.socks-refused"
    assert "connection not allowed by ruleset" in run.check("forward")["summary"]
    assert run.check("tcp")["status"] == "skip"
