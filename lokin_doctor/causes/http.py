"""Cause codes of the http layer (see lokin_doctor/causes/__init__.py)."""

from __future__ import annotations

from lokin_doctor.causes import Layer, Tag, cause  # noqa: F401

L = Layer.HTTP

HANDSHAKE_BAD_ACCEPT = cause(
    "handshake.bad-accept",
    L,
    (
        "the server answered 101 with a wrong Sec-WebSocket-Accept: a proxy or a broken library rewrote the handshake"
    ),
    (
        "use a maintained WebSocket library on the server, and make the proxy pass the handshake headers through unchanged"
    ),
    tags=(Tag.NOT_A_URL_PROBLEM,),
)
HANDSHAKE_BAD_GATEWAY = cause(
    "handshake.bad-gateway",
    L,
    ("HTTP 502: the proxy is up, its backend is not"),
    ("start the backend behind the proxy, or fix the proxy's backend address (proxy_pass)"),
    tags=(
        Tag.NOT_A_URL_PROBLEM,
        Tag.BACKEND_DOWN,
    ),
)
HANDSHAKE_BAD_REQUEST = cause(
    "handshake.bad-request",
    L,
    (
        "HTTP 400: the server refused the upgrade request as malformed (headers mangled by the server or a proxy)"
    ),
    ("make the proxy forward Upgrade, Connection, Sec-WebSocket-Key and Sec-WebSocket-Version unchanged"),
)
HANDSHAKE_CLOSED = cause(
    "handshake.closed",
    L,
    ("closed or reset without a reply"),
    ("read the server's log; limits; firewall"),
    tags=(Tag.OWNER_EXPLAINS,),
)
HANDSHAKE_CONNECT_TIMEOUT = cause(
    "handshake.connect-timeout",
    L,
    ("the TCP connect (or the TLS handshake) gave no answer in time"),
    ("check the host is up and the port open in its firewall, or raise --timeout"),
    tags=(Tag.DROPPED,),
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
    ("HTTP 401/403: the server refused the Origin or the credentials"),
    ("add the page's origin to the server's allow-list, or send the token the server expects"),
    tags=(Tag.NOT_A_URL_PROBLEM,),
)
HANDSHAKE_GATEWAY_TIMEOUT = cause(
    "handshake.gateway-timeout",
    L,
    ("HTTP 504: the proxy got no answer from its backend in time"),
    ("check that the backend behind the proxy is up and reachable from the proxy"),
    tags=(Tag.NOT_A_URL_PROBLEM,),
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
    ("HTTP 505: the proxy speaks HTTP/1.0 to the backend, which cannot upgrade"),
    ("in nginx: proxy_http_version 1.1; with the Upgrade and Connection headers"),
    tags=(
        Tag.NOT_A_URL_PROBLEM,
        Tag.UPGRADE_LOST,
    ),
)
HANDSHAKE_INCOMPLETE_REPLY = cause(
    "handshake.incomplete-reply",
    L,
    ("the server sent some bytes but never a complete HTTP reply"),
    ("check which program holds the port (lokin-doctor check-port) and that it speaks HTTP"),
)
HANDSHAKE_INVALID_UPGRADE = cause(
    "handshake.invalid-upgrade",
    L,
    ("the server answered 101 without proper Upgrade/Connection headers"),
    ('fix the proxy\'s upgrade lines (Upgrade $http_upgrade, Connection "upgrade")'),
    tags=(Tag.NOT_A_URL_PROBLEM,),
)
HANDSHAKE_NO_RESPONSE = cause(
    "handshake.no-response",
    L,
    ("TCP accepted, then silence until the deadline"),
    ("the program is stuck or does not speak HTTP (a TLS-only port waits silently)"),
    tags=(Tag.OWNER_EXPLAINS,),
)
HANDSHAKE_NOT_FOUND = cause(
    "handshake.not-found",
    L,
    ("HTTP 404: no WebSocket endpoint at this path"),
    ("fix the path in the client URL (/ vs /ws) or the proxy's location"),
)
HANDSHAKE_NOT_HTTP = cause(
    "handshake.not-http",
    L,
    ("bytes that are not HTTP (an SSH banner...)"),
    ("the port belongs to another protocol"),
    tags=(Tag.OWNER_EXPLAINS,),
)
HANDSHAKE_NOT_WEBSOCKET = cause(
    "handshake.not-websocket",
    L,
    ("a 2xx reply that is not an upgrade: the URL is a plain HTTP application"),
    ("point the client at the WebSocket server's port or path"),
    tags=(Tag.OWNER_EXPLAINS,),
)
HANDSHAKE_PLAIN_TO_TLS = cause(
    "handshake.plain-to-tls",
    L,
    ('nginx\'s 400 "plain HTTP request was sent to HTTPS port": ws:// was used on a TLS port'),
    ("use wss:// in the client URL"),
)
HANDSHAKE_RATE_LIMITED = cause(
    "handshake.rate-limited",
    L,
    ("HTTP 429: the server refused the connection for a rate or connection limit"),
    ("check the server's /health and raise its per-client limits, or slow the client's retries"),
    tags=(Tag.NOT_A_URL_PROBLEM,),
)
HANDSHAKE_REDIRECT = cause(
    "handshake.redirect",
    L,
    ("3xx with its Location"),
    ("WebSocket clients do not follow redirects: use the final URL (`wss://` for an https redirect)"),
    tags=(Tag.NOT_A_URL_PROBLEM,),
)
HANDSHAKE_REFUSED = cause(
    "handshake.refused",
    L,
    ("the TCP connect was refused when the handshake started"),
    ("start the WebSocket server, or fix the port in the client URL"),
    tags=(Tag.NOTHING_LISTENS,),
)
HANDSHAKE_RESET = cause(
    "handshake.reset", L, ("closed or reset without a reply"), ("read the server's log; limits; firewall")
)
HANDSHAKE_SERVER_ERROR = cause(
    "handshake.server-error",
    L,
    ("HTTP 5xx: the server failed while answering the upgrade"),
    ("read the server's log at the time of the request"),
    tags=(Tag.NOT_A_URL_PROBLEM,),
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
    "handshake.tls-error",
    L,
    ("the TLS handshake failed when the WebSocket handshake started"),
    ("read the tls check's finding and fix the certificate or the server's TLS configuration"),
)
HANDSHAKE_TLS_EXPECTED = cause(
    "handshake.tls-expected",
    L,
    ("the server answered plain HTTP with TLS bytes: the port speaks TLS"),
    ("use wss:// in the client URL"),
)
HANDSHAKE_UNAVAILABLE = cause(
    "handshake.unavailable",
    L,
    ("HTTP 503: the server or proxy is overloaded or at its connection limit"),
    ("check the server's /health and its connection limits, then retry"),
    tags=(Tag.NOT_A_URL_PROBLEM,),
)
HANDSHAKE_UNEXPECTED_STATUS = cause(
    "handshake.unexpected-status",
    L,
    ("an HTTP status that is not an upgrade and has no reading of its own"),
    ("read the server's or proxy's log for that status and the request path"),
)
HANDSHAKE_UPGRADE_DROPPED = cause(
    "handshake.upgrade-dropped",
    L,
    (
        "HTTP 426 (or a 400 naming Upgrade/Connection through a proxy): the server got the request without its Upgrade header"
    ),
    (
        'in nginx: proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection "upgrade";'
    ),
    tags=(
        Tag.NOT_A_URL_PROBLEM,
        Tag.UPGRADE_LOST,
    ),
)
HANDSHAKE_WEB_PAGE = cause(
    "handshake.web-page",
    L,
    ("200 text/html: a web site answered (static server, SPA fallback)"),
    ("point the client at the WebSocket server's port or path"),
    tags=(Tag.OWNER_EXPLAINS,),
)
