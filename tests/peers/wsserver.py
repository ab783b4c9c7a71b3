"""In-process websockets 17 servers (plain and TLS) running on a background event loop."""

from __future__ import annotations

import json
import secrets
import ssl
from collections.abc import Iterable, Mapping
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from tests.peers._common import LOOPBACK, LoopThread, ensure_loopback, url_host
from tests.peers.peer import Peer, SeenRequest


def welcome_message() -> str:
    """The greeting of the LOK IN server: ``{"type": "welcome", "clientId": "user_<hex>"}``."""
    return json.dumps({"type": "welcome", "clientId": "user_" + secrets.token_hex(4)})


def server_ssl_context(certfile: str, keyfile: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certfile, keyfile)
    return ctx


def _is_upgrade(request: Request) -> bool:
    return "websocket" in request.headers.get("Upgrade", "").lower()


def _html(conn: ServerConnection, body: str, headers: Mapping[str, str]) -> Response:
    response = conn.respond(HTTPStatus.OK, body)
    del response.headers["Content-Type"]
    response.headers["Content-Type"] = "text/html; charset=utf-8"
    for name, value in headers.items():
        response.headers[name] = value
    return response


def start_ws_server(
    *,
    host: str = LOOPBACK,
    port: int = 0,
    paths: Iterable[str] | None = None,
    origins: Iterable[str | None] | None = None,
    greeting: bool = True,
    echo: bool = True,
    ping_interval: float | None = 20,
    ping_timeout: float | None = 20,
    compression: str | None = "deflate",
    pages: Mapping[str, str] | None = None,
    page_headers: Mapping[str, str] | None = None,
    server_header: str | None = "Python websockets (lokin-doctor test peer)",
    ssl_context: ssl.SSLContext | None = None,
    url_hostname: str | None = None,
    kind: str = "ws",
    **serve_kwargs: Any,
) -> Peer:
    """Start a websockets server on its own loop thread and return its :class:`Peer`.

    Args:
        host: loopback address to bind ("127.0.0.1" or "::1").
        port: port to bind, 0 for any free one.
        paths: only these request paths (query string ignored) upgrade; others get 404.
        origins: accepted ``Origin`` values (websockets answers 403 to the others; put None in the list
            to accept requests without an Origin).
        greeting: send the welcome message on connect.
        echo: echo every message back.
        ping_interval, ping_timeout, compression: passed to :func:`websockets.asyncio.server.serve`.
        pages: path -> HTML served with 200 to plain (non-upgrade) GET requests, e.g. a test page.
        page_headers: extra headers on those pages (e.g. a Content-Security-Policy).
        server_header: the ``Server`` header (None: none).
        ssl_context: serve wss:// with this context.
        url_hostname: host name to put in ``Peer.url`` (default: the bind address, "localhost" with TLS).
    """
    ensure_loopback(host)
    allowed_paths = None if paths is None else set(paths)
    pages = dict(pages or {})
    page_headers = dict(page_headers or {})
    peer_holder: list[Peer] = []

    def process_request(conn: ServerConnection, request: Request) -> Response | None:
        headers: dict[str, str] = {}
        for name, value in request.headers.raw_items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        if peer_holder:
            peer_holder[0].requests.append(SeenRequest(request.path, headers))
        path = request.path.split("?", 1)[0]
        if path in pages and not _is_upgrade(request):
            return _html(conn, pages[path], page_headers)
        if allowed_paths is not None and path not in allowed_paths:
            return conn.respond(HTTPStatus.NOT_FOUND, "Not Found\n")
        return None

    async def handler(conn: ServerConnection) -> None:
        try:
            if greeting:
                await conn.send(welcome_message())
            async for message in conn:
                if echo:
                    await conn.send(message)
        except ConnectionClosed:
            pass

    thread = LoopThread(f"peer-{kind}")

    async def start() -> Server:
        return await serve(
            handler,
            host,
            port,
            origins=None if origins is None else list(origins),  # type: ignore[arg-type]
            process_request=process_request,
            server_header=server_header,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            compression=compression,
            ssl=ssl_context,
            **serve_kwargs,
        )

    try:
        server = thread.run(start())
    except BaseException:
        thread.stop()
        raise
    bound = server.sockets[0].getsockname()[1]

    def stop() -> None:
        async def close() -> None:
            server.close()
            await server.wait_closed()

        try:
            thread.run(close(), timeout=10)
        finally:
            thread.stop()

    scheme = "wss" if ssl_context is not None else "ws"
    name = url_hostname or ("localhost" if ssl_context is not None else url_host(host))
    peer = Peer(
        host=host,
        port=bound,
        url=f"{scheme}://{name}:{bound}/",
        kind=kind,
        extra={"server": server, "loop": thread.loop},
        _stop=stop,
    )
    peer_holder.append(peer)
    return peer
