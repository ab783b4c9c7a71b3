"""The HTTP side of ``serve``: answers to requests without an upgrade (the test page, /health,
/metrics, 405, 426 elsewhere) and the /health document."""

from __future__ import annotations

import base64
import email.utils
import functools
import hashlib
import http
import json
import os
import re
from importlib import resources
from typing import TYPE_CHECKING, Any

from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from lokin_doctor import __version__
from lokin_doctor.server.metrics import CONTENT_TYPE_LATEST, render
from lokin_doctor.server.policy import peer

if TYPE_CHECKING:
    from lokin_doctor.server.app import LokinServer
    from lokin_doctor.server.connection import LokinConnection

#: Paths that serve the test page (the last one is the write-up's file name).
PAGE_PATHS = frozenset({"/", "/test", "/test.html", "/test-websocket.html"})


def is_handshake(headers: Headers) -> bool:
    """Whether a request asks for a WebSocket upgrade (else it is plain HTTP)."""
    # Sec-WebSocket-Key too: a proxy that drops the hop-by-hop Upgrade/Connection headers
    # still forwards it, and the client must get websockets' precise 426, not the test page.
    return "Upgrade" in headers or "Sec-WebSocket-Key" in headers


@functools.cache
def load_page() -> tuple[bytes, str]:
    """The test page's bytes and a Content-Security-Policy allowing exactly its inline code."""
    html = resources.files("lokin_doctor.server").joinpath("static/test.html").read_text(encoding="utf-8")

    def hashes(tag: str) -> str:
        blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.S)
        return " ".join(
            "'sha256-" + base64.b64encode(hashlib.sha256(b.encode()).digest()).decode() + "'" for b in blocks
        )

    # connect-src lets the URL field point at any ws:// or wss:// server, as the original page did.
    csp = (
        f"default-src 'none'; script-src {hashes('script')}; style-src {hashes('style')}; "
        "connect-src 'self' ws: wss:; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )
    return html.encode(), csp


def plain_response(
    status: http.HTTPStatus, body: bytes, content_type: str, extra: dict[str, str] | None = None
) -> Response:
    """An HTTP answer that closes the connection, with the headers every answer of serve carries."""
    headers = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Length", str(len(body))),
            ("Content-Type", content_type),
            ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"),
        ]
    )
    for name, value in (extra or {}).items():
        headers[name] = value
    return Response(status.value, status.phrase, headers, body)


def http_response(app: LokinServer, conn: LokinConnection, request: Request) -> Response:
    """A request without upgrade: the test page, /health, /metrics, 405, or 426 elsewhere."""
    path = request.path.partition("?")[0]
    if request.method != "GET":
        route, response = (
            "bad_method",
            plain_response(
                http.HTTPStatus.METHOD_NOT_ALLOWED,
                b"Only GET is supported here.\n",
                "text/plain; charset=utf-8",
                {"Allow": "GET"},
            ),
        )
    elif path == "/health":
        body = json.dumps(app.health(), indent=2).encode() + b"\n"
        route, response = "health", plain_response(http.HTTPStatus.OK, body, "application/json")
    elif path == "/metrics":
        route, response = (
            "metrics",
            plain_response(http.HTTPStatus.OK, render(app.registry), CONTENT_TYPE_LATEST),
        )
    elif path in PAGE_PATHS:
        page, csp = load_page()
        route, response = (
            "page",
            plain_response(
                http.HTTPStatus.OK,
                page,
                "text/html; charset=utf-8",
                {
                    "Content-Security-Policy": csp,
                    "Referrer-Policy": "no-referrer",
                    "X-Frame-Options": "DENY",
                },
            ),
        )
    elif path == "/favicon.ico":
        route, response = "favicon", plain_response(http.HTTPStatus.NO_CONTENT, b"", "image/x-icon")
    else:
        # What Node ws answers to a plain GET, with a body that says what to do instead.
        body = (
            "426 Upgrade Required: this is the LOK IN WebSocket endpoint (lokin-doctor serve).\n"
            f"Connect with a WebSocket client to {app.scheme}://<this host>{path}, "
            "not with a plain HTTP request.\n"
            "The test page is at /, the health check at /health, metrics at /metrics.\n"
        ).encode()
        route, response = (
            "upgrade_required",
            plain_response(
                http.HTTPStatus.UPGRADE_REQUIRED,
                body,
                "text/plain; charset=utf-8",
                {"Upgrade": "websocket"},
            ),
        )
    app.stats.http(route)
    if route not in ("health", "metrics", "favicon"):  # scrapes every few seconds would drown the log
        app.log.emit(
            "http",
            f"{request.method} {path} -> {response.status_code}",
            remote=peer(conn.transport.get_extra_info("peername")),
        )
    return response


def health(app: LokinServer) -> dict[str, Any]:
    """The /health document: status, version, uptime, connections, limits and counters."""
    cfg = app.config
    return {
        "status": "ok" if app.serving else "stopping",
        "server": "lokin-doctor",
        "version": __version__,
        "uptime_s": round(app.uptime, 3),
        "pid": os.getpid(),
        "url": app.url,
        "connections": app.open_connections,
        "handshaking": app.handshaking,
        "connections_total": app.stats.accepted,
        "handshakes_incomplete": app.stats.handshakes_incomplete,
        "messages_in": app.stats.msgs_in,
        "messages_out": app.stats.msgs_out,
        "rejections": dict(app.stats.rejections),
        "limits": {
            "max_connections": cfg.max_connections,
            "max_per_ip": cfg.max_per_ip,
            "max_message_size": cfg.max_message_size,
            "open_timeout_s": cfg.open_timeout,
            "ping_interval_s": cfg.ping_interval,
            "ping_timeout_s": cfg.ping_timeout,
            "max_fragments": cfg.max_fragments,
        },
        "origins": list(app.origins.allowed) or "any",
        "tls": cfg.tls,
        "compression": cfg.compression,
        "protocol": cfg.protocol,
    }
