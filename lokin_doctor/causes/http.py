"""Cause codes of the http layer (see lokin_doctor/causes/__init__.py)."""

from __future__ import annotations

from lokin_doctor.causes import Layer, Tag, cause  # noqa: F401

L = Layer.HTTP

HANDSHAKE_BAD_ACCEPT = cause(
    "handshake.bad-accept",
    L,
    ("101 with a wrong `Sec-WebSocket-Accept`"),
    ("a proxy or a broken library rewrites the handshake"),
)
HANDSHAKE_BAD_GATEWAY = cause(
    "handshake.bad-gateway",
    L,
    ("502: the proxy is up, its backend is not"),
    ("start the backend, check `proxy_pass`"),
)
HANDSHAKE_BAD_REQUEST = cause(
    "handshake.bad-request", L, ("400"), ("headers mangled by the server or a proxy")
)
HANDSHAKE_CLOSED = cause(
    "handshake.closed",
    L,
    ("closed or reset without a reply"),
    ("read the server's log; limits; firewall"),
)
HANDSHAKE_CONNECT_TIMEOUT = cause(
    "handshake.connect-timeout", L, ("the connection itself failed at the handshake"), ("see the message")
)
HANDSHAKE_EXTENSION_NOT_OFFERED = cause(
    "handshake.extension-not-offered",
    L,
    ("101 with a `Sec-WebSocket-Extensions` the client never offered (e.g. `x-webkit-deflate-frame`)"),
    ("disable that extension on the server or proxy; permessage-deflate is what browsers offer"),
)
HANDSHAKE_EXTENSION_PARAMS = cause(
    "handshake.extension-params",
    L,
    (
        "101 with permessage-deflate parameters the client cannot accept (window bits outside 8-15, `client_max_window_bits` not offered...)"
    ),
    ("use the library's default compression settings"),
)
HANDSHAKE_FORBIDDEN = cause(
    "handshake.forbidden",
    L,
    ("401/403: Origin or credentials refused"),
    ("add the page's origin to the allow-list, or send the token"),
)
HANDSHAKE_GATEWAY_TIMEOUT = cause(
    "handshake.gateway-timeout", L, ("504"), ("the backend is stuck or unreachable from the proxy")
)
HANDSHAKE_HEADERS_TOO_LARGE = cause(
    "handshake.headers-too-large",
    L,
    (
        "the reply's head is too large: a header line past 8 KiB, more than 128 headers, or a header block not over after 256 KiB; the check ends at once"
    ),
    ("find what adds the headers (a proxy or application in a loop, huge cookies)"),
)
HANDSHAKE_HTTP10_UPSTREAM = cause(
    "handshake.http10-upstream",
    L,
    ("505: the proxy speaks HTTP/1.0 to the backend"),
    ("`proxy_http_version 1.1;` and the upgrade lines"),
)
HANDSHAKE_INCOMPLETE_REPLY = cause(
    "handshake.incomplete-reply", L, ("some bytes, never a complete reply"), ("check what holds the port")
)
HANDSHAKE_INVALID_UPGRADE = cause(
    "handshake.invalid-upgrade",
    L,
    ("101 without proper Upgrade/Connection headers"),
    ("fix the proxy's upgrade lines"),
)
HANDSHAKE_NO_RESPONSE = cause(
    "handshake.no-response",
    L,
    ("TCP accepted, then silence until the deadline"),
    ("the program is stuck or does not speak HTTP (a TLS-only port waits silently)"),
)
HANDSHAKE_NOT_FOUND = cause(
    "handshake.not-found",
    L,
    ("404: no endpoint at this path"),
    ("fix the path (`/` vs `/ws`) or the proxy location"),
)
HANDSHAKE_NOT_HTTP = cause(
    "handshake.not-http",
    L,
    ("bytes that are not HTTP (an SSH banner...)"),
    ("the port belongs to another protocol"),
)
HANDSHAKE_NOT_WEBSOCKET = cause(
    "handshake.not-websocket", L, ("another 2xx"), ("the URL is a plain HTTP application")
)
HANDSHAKE_PLAIN_TO_TLS = cause(
    "handshake.plain-to-tls",
    L,
    ('nginx\'s 400 "plain HTTP request was sent to HTTPS port"'),
    ("use `wss://`"),
)
HANDSHAKE_RATE_LIMITED = cause(
    "handshake.rate-limited", L, ("503 / 429: connection limits"), ("check `/health`, raise the limits")
)
HANDSHAKE_REDIRECT = cause(
    "handshake.redirect",
    L,
    ("3xx with its Location"),
    ("WebSocket clients do not follow redirects: use the final URL (`wss://` for an https redirect)"),
)
HANDSHAKE_REFUSED = cause(
    "handshake.refused", L, ("the connection itself failed at the handshake"), ("see the message")
)
HANDSHAKE_RESET = cause(
    "handshake.reset", L, ("closed or reset without a reply"), ("read the server's log; limits; firewall")
)
HANDSHAKE_SERVER_ERROR = cause(
    "handshake.server-error", L, ("other 5xx / other status"), ("read the server's log")
)
HANDSHAKE_SUBPROTOCOL_NOT_OFFERED = cause(
    "handshake.subprotocol-not-offered",
    L,
    (
        "101 selecting a `Sec-WebSocket-Protocol` the client did not offer (or several): a browser fails the connection"
    ),
    (
        "offer it from the page (`new WebSocket(url, ['chat'])`) and retry with `--subprotocol chat` (the hint names the value), or make the server select only what was offered"
    ),
)
HANDSHAKE_SUBPROTOCOL_REQUIRED = cause(
    "handshake.subprotocol-required",
    L,
    (
        'a 4xx whose body says a subprotocol is missing or wrong (websockets: "missing subprotocol", "invalid subprotocol; expected one of ...")'
    ),
    ("retry with `--subprotocol NAME`: the hint names it when the body does"),
)
HANDSHAKE_TLS_ERROR = cause(
    "handshake.tls-error", L, ("the connection itself failed at the handshake"), ("see the message")
)
HANDSHAKE_TLS_EXPECTED = cause(
    "handshake.tls-expected", L, ("TLS bytes in reply to plain HTTP"), ("use `wss://`")
)
HANDSHAKE_UNAVAILABLE = cause(
    "handshake.unavailable", L, ("503 / 429: connection limits"), ("check `/health`, raise the limits")
)
HANDSHAKE_UNEXPECTED_STATUS = cause(
    "handshake.unexpected-status", L, ("other 5xx / other status"), ("read the server's log")
)
HANDSHAKE_UPGRADE_DROPPED = cause(
    "handshake.upgrade-dropped",
    L,
    (
        "426 (or 400 naming Upgrade/Connection through a proxy): the server got the request without its Upgrade header"
    ),
    (
        'in nginx: `proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection "upgrade";`'
    ),
)
HANDSHAKE_WEB_PAGE = cause(
    "handshake.web-page",
    L,
    ("200 text/html: a web site answered (static server, SPA fallback)"),
    ("point the client at the WebSocket server's port or path"),
)
