"""Cause codes of the http layer (see lokin_doctor/causes/__init__.py)."""

from __future__ import annotations

from lokin_doctor.causes import Layer, Tag, cause  # noqa: F401
from lokin_doctor.i18n import N_

L = Layer.HTTP

HANDSHAKE_BAD_ACCEPT = cause(
    "handshake.bad-accept",
    L,
    N_(
        "the server answered 101 with a wrong Sec-WebSocket-Accept: a proxy or a broken library rewrote the handshake"
    ),
    N_(
        "use a maintained WebSocket library on the server, and make the proxy pass the handshake headers through unchanged"
    ),
    tags=(Tag.NOT_A_URL_PROBLEM,),
)
HANDSHAKE_BAD_GATEWAY = cause(
    "handshake.bad-gateway",
    L,
    N_("HTTP 502: the proxy is up, its backend is not"),
    N_("start the backend behind the proxy, or fix the proxy's backend address (proxy_pass)"),
    tags=(
        Tag.NOT_A_URL_PROBLEM,
        Tag.BACKEND_DOWN,
    ),
)
HANDSHAKE_BAD_REQUEST = cause(
    "handshake.bad-request",
    L,
    N_(
        "HTTP 400: the server refused the upgrade request as malformed (headers mangled by the server or a proxy)"
    ),
    N_("make the proxy forward Upgrade, Connection, Sec-WebSocket-Key and Sec-WebSocket-Version unchanged"),
)
HANDSHAKE_CLOSED = cause(
    "handshake.closed",
    L,
    N_("the server closed the connection without answering the upgrade request"),
    N_(
        "read the server's log at that time: a connection limit, an Origin check or a firewall that closes the connection"
    ),
    tags=(Tag.OWNER_EXPLAINS,),
)
HANDSHAKE_CONNECT_TIMEOUT = cause(
    "handshake.connect-timeout",
    L,
    N_("the TCP connect (or the TLS handshake) gave no answer in time"),
    N_("check the host is up and the port open in its firewall, or raise --timeout"),
    tags=(Tag.DROPPED,),
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
    N_("HTTP 401/403: the server refused the Origin or the credentials"),
    N_("add the page's origin to the server's allow-list, or send the token the server expects"),
    tags=(Tag.NOT_A_URL_PROBLEM,),
)
HANDSHAKE_GATEWAY_TIMEOUT = cause(
    "handshake.gateway-timeout",
    L,
    N_("HTTP 504: the proxy got no answer from its backend in time"),
    N_("check that the backend behind the proxy is up and reachable from the proxy"),
    tags=(
        Tag.NOT_A_URL_PROBLEM,
        Tag.BACKEND_DOWN,
    ),
)
HANDSHAKE_HEADERS_TOO_LARGE = cause(
    "handshake.headers-too-large",
    L,
    N_(
        "a head too large: the server refused the request's headers (431, nginx's 400 \"Request Header Or Cookie Too Large\", 494), or the reply's head is past the client's limits (a header line past 8 KiB, more than 128 headers, a header block not over after 256 KiB)"
    ),
    N_(
        "for the request: send fewer or smaller cookies and headers to this host, or raise the server's limit (nginx large_client_header_buffers 4 32k;, Node --max-http-header-size); for the reply: find what adds the headers (a proxy or application in a loop)"
    ),
)
HANDSHAKE_HTTP10_UPSTREAM = cause(
    "handshake.http10-upstream",
    L,
    N_("HTTP 505: the proxy speaks HTTP/1.0 to the backend, which cannot upgrade"),
    N_("in nginx: proxy_http_version 1.1; with the Upgrade and Connection headers"),
    tags=(Tag.NOT_A_URL_PROBLEM,),
)
HANDSHAKE_INCOMPLETE_REPLY = cause(
    "handshake.incomplete-reply",
    L,
    N_("the server sent some bytes but never a complete HTTP reply"),
    N_("check which program holds the port (lokin-doctor check-port) and that it speaks HTTP"),
)
HANDSHAKE_INVALID_UPGRADE = cause(
    "handshake.invalid-upgrade",
    L,
    N_("the server answered 101 without proper Upgrade/Connection headers"),
    N_('fix the proxy\'s upgrade lines (Upgrade $http_upgrade, Connection "upgrade")'),
    tags=(Tag.NOT_A_URL_PROBLEM,),
)
HANDSHAKE_NO_RESPONSE = cause(
    "handshake.no-response",
    L,
    N_("the TCP connection was accepted, then nothing came back before the deadline"),
    N_(
        "check which program holds the port (lokin-doctor check-port): a stuck server, or one that speaks TLS (use wss://) or another protocol"
    ),
    tags=(Tag.OWNER_EXPLAINS,),
)
HANDSHAKE_NOT_FOUND = cause(
    "handshake.not-found",
    L,
    N_("HTTP 404: no WebSocket endpoint at this path"),
    N_("fix the path in the client URL (/ vs /ws) or the proxy's location"),
)
HANDSHAKE_NOT_HTTP = cause(
    "handshake.not-http",
    L,
    N_(
        "the port answered with bytes that are not HTTP (an SSH or SMTP banner...): another protocol's server holds it"
    ),
    N_(
        "point the client at the WebSocket server's port, or move the other program (lokin-doctor check-port names it)"
    ),
    tags=(Tag.OWNER_EXPLAINS,),
)
HANDSHAKE_NOT_WEBSOCKET = cause(
    "handshake.not-websocket",
    L,
    N_("a 2xx reply that is not an upgrade: the URL is a plain HTTP application"),
    N_("point the client at the WebSocket server's port or path"),
    tags=(Tag.OWNER_EXPLAINS,),
)
HANDSHAKE_PLAIN_TO_TLS = cause(
    "handshake.plain-to-tls",
    L,
    N_('nginx\'s 400 "plain HTTP request was sent to HTTPS port": ws:// was used on a TLS port'),
    N_("use wss:// in the client URL"),
)
HANDSHAKE_RATE_LIMITED = cause(
    "handshake.rate-limited",
    L,
    N_("HTTP 429: the server refused the connection for a rate or connection limit"),
    N_("check the server's /health and raise its per-client limits, or slow the client's retries"),
    tags=(Tag.NOT_A_URL_PROBLEM,),
)
HANDSHAKE_REDIRECT = cause(
    "handshake.redirect",
    L,
    N_("the server answered a redirect (3xx with a Location) instead of the upgrade"),
    N_("WebSocket clients do not follow redirects: use the final URL (wss:// for an https redirect)"),
    tags=(Tag.NOT_A_URL_PROBLEM,),
)
HANDSHAKE_REFUSED = cause(
    "handshake.refused",
    L,
    N_("the TCP connect was refused when the handshake started"),
    N_("start the WebSocket server, or fix the port in the client URL"),
    tags=(Tag.NOTHING_LISTENS,),
)
HANDSHAKE_RESET = cause(
    "handshake.reset",
    L,
    N_("the connection was reset without an answer to the upgrade request"),
    N_(
        "read the server's log at that time: a crash on the request, a connection limit, or a firewall that resets"
    ),
)
HANDSHAKE_SERVER_ERROR = cause(
    "handshake.server-error",
    L,
    N_("HTTP 5xx: the server failed while answering the upgrade"),
    N_("read the server's log at the time of the request"),
    tags=(Tag.NOT_A_URL_PROBLEM,),
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
    "handshake.tls-error",
    L,
    N_("the TLS handshake failed when the WebSocket handshake started"),
    N_("read the tls check's finding and fix the certificate or the server's TLS configuration"),
)
HANDSHAKE_TLS_EXPECTED = cause(
    "handshake.tls-expected",
    L,
    N_("the server answered the plain HTTP request with TLS bytes: the port speaks TLS"),
    N_("use wss:// in the client URL"),
)
HANDSHAKE_UNAVAILABLE = cause(
    "handshake.unavailable",
    L,
    N_("HTTP 503: the server or proxy is overloaded or at its connection limit"),
    N_("check the server's /health and its connection limits, then retry"),
    tags=(Tag.NOT_A_URL_PROBLEM,),
)
HANDSHAKE_UNEXPECTED_STATUS = cause(
    "handshake.unexpected-status",
    L,
    N_(
        "an HTTP status this tool has no reading for (or an interim 1xx where the 101 should be): the summary names the status, the sender and what it said, never a guess"
    ),
    N_("read the log of the server the summary names for that status and the request path"),
)
HANDSHAKE_UPGRADE_DROPPED = cause(
    "handshake.upgrade-dropped",
    L,
    N_(
        "the WebSocket server got the request without its Upgrade header: 426 Upgrade Required offering version 13 (or none), a WebSocket library's 400 about Upgrade/Connection, Envoy's 403 to an upgrade it is not configured for"
    ),
    N_(
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
    N_("200 text/html: a web site answered (static server, SPA fallback)"),
    N_("point the client at the WebSocket server's port or path"),
    tags=(Tag.OWNER_EXPLAINS,),
)
HANDSHAKE_VERSION_UNSUPPORTED = cause(
    "handshake.version-unsupported",
    L,
    N_(
        "the server speaks only other WebSocket versions: its Sec-WebSocket-Version (RFC 6455 4.4) lists no 13, the version browsers and this client speak (an old draft such as 8, hixie-76)"
    ),
    N_(
        "upgrade the server's WebSocket library to one that speaks RFC 6455 (version 13), or put a current one in front of it"
    ),
    tags=(Tag.NOT_A_URL_PROBLEM,),
)
HANDSHAKE_EVENT_STREAM = cause(
    "handshake.event-stream",
    L,
    N_(
        "200 text/event-stream: the URL is a Server-Sent Events endpoint (EventSource), not a WebSocket server"
    ),
    N_(
        "open it with new EventSource(url) in the page (it is one-way, server to client), or point the WebSocket client at the WebSocket endpoint"
    ),
    tags=(Tag.OWNER_EXPLAINS,),
)
HANDSHAKE_METHOD_NOT_ALLOWED = cause(
    "handshake.method-not-allowed",
    L,
    N_(
        "HTTP 405: this path does not take a GET: an API route for other methods (POST...) or a proxy rule that allows other methods only"
    ),
    N_("point the client at the WebSocket endpoint's path, or let the proxy pass GET with the upgrade on it"),
    tags=(Tag.NOT_A_URL_PROBLEM,),
)
HANDSHAKE_REQUEST_TIMEOUT = cause(
    "handshake.request-timeout",
    L,
    N_(
        "HTTP 408: the server or a proxy gave up waiting for the request (its client timeout), although this client sent it at once: something in between holds or slows it"
    ),
    N_(
        "look for what sits between the client and the server (an inspecting proxy, a slow link) and compare the proxy's client timeout (nginx client_header_timeout, HAProxy timeout http-request)"
    ),
)
HANDSHAKE_CLIENT_ERROR = cause(
    "handshake.client-error",
    L,
    N_(
        "a 4xx status with a reading of its own (402, 406, 407, 409, 411-417, 422, 424, 425, 428, 451, nginx's 499...): the server or a proxy refused the request for the reason the summary names"
    ),
    N_(
        "do what the summary's reading says for that status; the sender named is the one whose log tells more"
    ),
    tags=(Tag.NOT_A_URL_PROBLEM,),
)
HANDSHAKE_MISDIRECTED = cause(
    "handshake.misdirected",
    L,
    N_(
        "HTTP 421 Misdirected Request: the server does not serve this host name on this connection (the TLS name and the Host header disagree, or no server block has the name)"
    ),
    N_(
        "use the host name the server is configured for in the URL (with --resolve HOST:PORT:ADDR to reach an address), or add the name to the server's configuration (nginx server_name, the certificate)"
    ),
)
HANDSHAKE_NO_BACKEND = cause(
    "handshake.no-backend",
    L,
    N_(
        'the proxy or load balancer in front has no backend server to send the request to: none up, none registered, none healthy (HAProxy\'s 503 "No server is available", Envoy\'s "no healthy upstream", an ALB\'s 503)'
    ),
    N_(
        "start the WebSocket server, then check that the proxy's health check passes against it (its path, port and expected status) and that it is registered in the backend or target group"
    ),
    tags=(Tag.NOT_A_URL_PROBLEM, Tag.BACKEND_DOWN),
)
HANDSHAKE_CAPTIVE_PORTAL = cause(
    "handshake.captive-portal",
    L,
    N_(
        "HTTP 511 Network Authentication Required: the network this machine is on (hotel, airport, corporate Wi-Fi) intercepts connections until someone logs in"
    ),
    N_("open any http:// page in a browser on this network and log in, or test from another network"),
    tags=(Tag.NOT_A_URL_PROBLEM,),
)
