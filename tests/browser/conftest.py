"""Pages served on loopback for the ``--browser`` tests, over http and https (trustme certificates).

A :class:`PageServer` is a websockets server in a thread of its own (the doctor runs as a subprocess,
as a user would run it): it answers the pages it is given (HTML plus headers) and WebSocket upgrades on
the paths it is told to (an echo that greets first and closes with 1008 on the message "forbidden");
anything else gets 404, upgrades included.
Chromium resolves the test name ``lokin.test`` to 127.0.0.1 and nothing else (``BROWSER_ARGS``); the
chain resolves it with the suite's dnsmasq (``--dns-server``). All traffic stays on loopback.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import ssl
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.peers.certs import CertPair
from tests.server.conftest import serve_process  # noqa: F401  (the serve subprocess fixture)

CHROMIUM = "/usr/bin/chromium"
#: Maps the test names to loopback and keeps every other name from resolving in the browser.
RESOLVER_RULES = (
    "--host-resolver-rules=MAP lokin.test 127.0.0.1, MAP *.lokin.test 127.0.0.1, "
    "EXCLUDE localhost, EXCLUDE 127.0.0.1, MAP * ~NOTFOUND"
)
BROWSER_ARGS = ("--browser-path", CHROMIUM, "--browser-arg", RESOLVER_RULES)


def _missing() -> str | None:
    if not os.access(CHROMIUM, os.X_OK):
        return f"{CHROMIUM} not found (apt-get install -y chromium)"
    import importlib.util

    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is not installed (pip install playwright)"
    if shutil.which("certutil") is None:
        return "certutil not found (apt-get install -y libnss3-tools)"
    return None


@pytest.fixture(autouse=True)
def _need_browser() -> None:
    reason = _missing()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


@dataclass
class PageServer:
    """One loopback server: ``pages`` (path -> (html, headers)) and WebSocket ``ws_paths``.

    Attributes:
        port: the port it listens on (127.0.0.1).
        secure: https/wss (with the certificate it was started with).
        upgrades: paths of the upgrade requests it received (101 or not).
    """

    port: int
    secure: bool
    pages: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)
    ws_paths: tuple[str, ...] = ("/ws",)
    upgrades: list[str] = field(default_factory=list)

    def url(self, path: str = "/", host: str = "127.0.0.1") -> str:
        return f"{'https' if self.secure else 'http'}://{host}:{self.port}{path}"

    def ws_url(self, path: str = "/ws", host: str = "127.0.0.1") -> str:
        return f"{'wss' if self.secure else 'ws'}://{host}:{self.port}{path}"

    def page(self, path: str, script: str, headers: dict[str, str] | None = None) -> str:
        """Serve a page whose inline script is ``script``; return its http(s) URL on 127.0.0.1."""
        html = (
            "<!doctype html><html><head><meta charset='utf-8'><title>LOK IN</title></head><body>"
            "<p id='status'>…</p><script>" + script + "</script></body></html>"
        )
        self.pages[path] = (html, headers or {})
        return self.url(path)


def connect_script(url_expr: str) -> str:
    """The write-up's page logic: open ``url_expr``, say "Impossible de se connecter…" on failure."""
    return (
        "var ws = new WebSocket(" + url_expr + ");"
        "ws.onmessage = function (e) { document.getElementById('status').textContent = 'connected'; };"
        "ws.onerror = function () { console.error('Impossible de se connecter au serveur'); };"
    )


class _Loop:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, coro: Any) -> Any:
        fut: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(10)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def page_server() -> Iterator[Callable[..., PageServer]]:
    """``page_server(cert=None, ws_paths=("/ws",))``: a started :class:`PageServer` (stopped at teardown)."""
    from websockets.asyncio.server import ServerConnection, serve
    from websockets.datastructures import Headers
    from websockets.http11 import Request, Response

    runner = _Loop()
    servers: list[Any] = []

    def start(cert: CertPair | None = None, ws_paths: tuple[str, ...] = ("/ws",)) -> PageServer:
        state = PageServer(port=0, secure=cert is not None, ws_paths=ws_paths)

        async def handler(ws: ServerConnection) -> None:
            await ws.send('{"type":"welcome","clientId":"user_0123456789"}')
            async for message in ws:
                if message == "forbidden":  # what a server does with a message it refuses
                    await ws.close(1008, "message not allowed")
                    return
                await ws.send(message)

        def process_request(conn: ServerConnection, request: Request) -> Response | None:
            path = request.path.split("?", 1)[0]
            if "websocket" in request.headers.get("Upgrade", "").lower():
                state.upgrades.append(path)
                return None if path in state.ws_paths else conn.respond(404, "no WebSocket here\n")
            if path in state.pages:
                html, extra = state.pages[path]
                headers = Headers([("Content-Type", "text/html; charset=utf-8"), *extra.items()])
                return Response(200, "OK", headers, html.encode())
            return conn.respond(404, "not found\n")

        ssl_ctx = None
        if cert is not None:
            ssl_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ssl_ctx.load_cert_chain(cert.certfile, cert.keyfile)

        async def begin() -> Any:
            return await serve(handler, "127.0.0.1", 0, process_request=process_request, ssl=ssl_ctx)

        server = runner.call(begin())
        servers.append(server)
        state.port = server.sockets[0].getsockname()[1]
        return state

    yield start

    async def end() -> None:
        for server in servers:
            server.close()
            await server.wait_closed()

    runner.call(end())
    runner.stop()
