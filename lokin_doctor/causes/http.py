"""Cause codes of the http layer (see lokin_doctor/causes/__init__.py)."""

from __future__ import annotations

from lokin_doctor.causes import Layer, Tag, cause  # noqa: F401
from lokin_doctor.i18n import N_

L = Layer.HTTP

HANDSHAKE_BAD_ACCEPT = cause(
    "handshake.bad-accept",
    L,
    N_("101 with a wrong `Sec-WebSocket-Accept`"),
    N_("a proxy or a broken library rewrites the handshake"),
)
HANDSHAKE_BAD_GATEWAY = cause(
    "handshake.bad-gateway",
    L,
    N_("502: the proxy is up, its backend is not"),
    N_("start the backend, check `proxy_pass`"),
)
HANDSHAKE_BAD_REQUEST = cause(
    "handshake.bad-request", L, N_("400"), N_("headers mangled by the server or a proxy")
)
HANDSHAKE_CLOSED = cause(
    "handshake.closed",
    L,
    N_("closed or reset without a reply"),
    N_("read the server's log; limits; firewall"),
)
HANDSHAKE_CONNECT_TIMEOUT = cause(
    "handshake.connect-timeout", L, N_("the connection itself failed at the handshake"), N_("see the message")
)
HANDSHAKE_EXTENSION_NOT_OFFERED = cause(
    "handshake.extension-not-offered",
    L,
    N_("101 with a `Sec-WebSocket-Extensions` the client never offered (e.g. `x-webkit-deflate-frame`)"),
    N_("disable that extension on the server or proxy; permessage-deflate is what browsers offer"),
)
HANDSHAKE_EXTENSION_PARAMS = cause(
    "handshake.extension-params",
    L,
    N_(
        "101 with permessage-deflate parameters the client cannot accept (window bits outside 8-15, `client_max_window_bits` not offered...)"
    ),
    N_("use the library's default compression settings"),
)
HANDSHAKE_FORBIDDEN = cause(
    "handshake.forbidden",
    L,
    N_("401/403: Origin or credentials refused"),
    N_("add the page's origin to the allow-list, or send the token"),
)
HANDSHAKE_GATEWAY_TIMEOUT = cause(
    "handshake.gateway-timeout", L, N_("504"), N_("the backend is stuck or unreachable from the proxy")
)
HANDSHAKE_HEADERS_TOO_LARGE = cause(
    "handshake.headers-too-large",
    L,
    N_(
        "the reply's head is too large: a header line past 8 KiB, more than 128 headers, or a header block not over after 256 KiB; the check ends at once"
    ),
    N_("find what adds the headers (a proxy or application in a loop, huge cookies)"),
)
HANDSHAKE_HTTP10_UPSTREAM = cause(
    "handshake.http10-upstream",
    L,
    N_("505: the proxy speaks HTTP/1.0 to the backend"),
    N_("`proxy_http_version 1.1;` and the upgrade lines"),
)
HANDSHAKE_INCOMPLETE_REPLY = cause(
    "handshake.incomplete-reply", L, N_("some bytes, never a complete reply"), N_("check what holds the port")
)
HANDSHAKE_INVALID_UPGRADE = cause(
    "handshake.invalid-upgrade",
    L,
    N_("101 without proper Upgrade/Connection headers"),
    N_("fix the proxy's upgrade lines"),
)
HANDSHAKE_NO_RESPONSE = cause(
    "handshake.no-response",
    L,
    N_("TCP accepted, then silence until the deadline"),
    N_("the program is stuck or does not speak HTTP (a TLS-only port waits silently)"),
)
HANDSHAKE_NOT_FOUND = cause(
    "handshake.not-found",
    L,
    N_("404: no endpoint at this path"),
    N_("fix the path (`/` vs `/ws`) or the proxy location"),
)
HANDSHAKE_NOT_HTTP = cause(
    "handshake.not-http",
    L,
    N_("bytes that are not HTTP (an SSH banner...)"),
    N_("the port belongs to another protocol"),
)
HANDSHAKE_NOT_WEBSOCKET = cause(
    "handshake.not-websocket", L, N_("another 2xx"), N_("the URL is a plain HTTP application")
)
HANDSHAKE_PLAIN_TO_TLS = cause(
    "handshake.plain-to-tls",
    L,
    N_('nginx\'s 400 "plain HTTP request was sent to HTTPS port"'),
    N_("use `wss://`"),
)
HANDSHAKE_RATE_LIMITED = cause(
    "handshake.rate-limited", L, N_("503 / 429: connection limits"), N_("check `/health`, raise the limits")
)
HANDSHAKE_REDIRECT = cause(
    "handshake.redirect",
    L,
    N_("3xx with its Location"),
    N_("WebSocket clients do not follow redirects: use the final URL (`wss://` for an https redirect)"),
)
HANDSHAKE_REFUSED = cause(
    "handshake.refused", L, N_("the connection itself failed at the handshake"), N_("see the message")
)
HANDSHAKE_RESET = cause(
    "handshake.reset", L, N_("closed or reset without a reply"), N_("read the server's log; limits; firewall")
)
HANDSHAKE_SERVER_ERROR = cause(
    "handshake.server-error", L, N_("other 5xx / other status"), N_("read the server's log")
)
HANDSHAKE_SUBPROTOCOL_NOT_OFFERED = cause(
    "handshake.subprotocol-not-offered",
    L,
    N_(
        "101 selecting a `Sec-WebSocket-Protocol` the client did not offer (or several): a browser fails the connection"
    ),
    N_(
        "offer it from the page (`new WebSocket(url, ['chat'])`) and retry with `--subprotocol chat` (the hint names the value), or make the server select only what was offered"
    ),
)
HANDSHAKE_SUBPROTOCOL_REQUIRED = cause(
    "handshake.subprotocol-required",
    L,
    N_(
        'a 4xx whose body says a subprotocol is missing or wrong (websockets: "missing subprotocol", "invalid subprotocol; expected one of ...")'
    ),
    N_("retry with `--subprotocol NAME`: the hint names it when the body does"),
)
HANDSHAKE_TLS_ERROR = cause(
    "handshake.tls-error", L, N_("the connection itself failed at the handshake"), N_("see the message")
)
HANDSHAKE_TLS_EXPECTED = cause(
    "handshake.tls-expected", L, N_("TLS bytes in reply to plain HTTP"), N_("use `wss://`")
)
HANDSHAKE_UNAVAILABLE = cause(
    "handshake.unavailable", L, N_("503 / 429: connection limits"), N_("check `/health`, raise the limits")
)
HANDSHAKE_UNEXPECTED_STATUS = cause(
    "handshake.unexpected-status", L, N_("other 5xx / other status"), N_("read the server's log")
)
HANDSHAKE_UPGRADE_DROPPED = cause(
    "handshake.upgrade-dropped",
    L,
    N_(
        "426 (or 400 naming Upgrade/Connection through a proxy): the server got the request without its Upgrade header"
    ),
    N_(
        'in nginx: `proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection "upgrade";`'
    ),
)
HANDSHAKE_WEB_PAGE = cause(
    "handshake.web-page",
    L,
    N_("200 text/html: a web site answered (static server, SPA fallback)"),
    N_("point the client at the WebSocket server's port or path"),
)
