"""Cause codes of the forward-proxy layer (see lokin_doctor/causes/__init__.py): the way out through a
proxy of HTTPS_PROXY / HTTP_PROXY / ALL_PROXY or ``--proxy``, read by the ``forward`` check."""

from __future__ import annotations

from lokin_doctor.causes import Layer, Tag, cause  # noqa: F401
from lokin_doctor.i18n import N_

L = Layer.FORWARD_PROXY
T = (Tag.FORWARD_PROXY,)

FORWARD_PROXY_REFUSED = cause(
    "forward.proxy-refused",
    L,
    N_("the forward proxy refuses TCP connections: nothing listens at the proxy's address and port"),
    N_(
        "start the proxy, fix its address in HTTPS_PROXY/HTTP_PROXY/ALL_PROXY (or --proxy), or bypass it for this host with NO_PROXY / --no-proxy"
    ),
    tags=T,
)
FORWARD_PROXY_TIMEOUT = cause(
    "forward.proxy-timeout",
    L,
    N_("the forward proxy does not answer in time (dropped packets, a proxy that is down or overloaded)"),
    N_(
        "check that the proxy is up and reachable from this machine (firewall, VPN), or bypass it with NO_PROXY / --no-proxy"
    ),
    tags=T,
)
FORWARD_PROXY_UNRESOLVED = cause(
    "forward.proxy-unresolved",
    L,
    N_("the forward proxy's host name does not resolve"),
    N_("fix the proxy's host name in HTTPS_PROXY/HTTP_PROXY/ALL_PROXY (or --proxy), or unset the variable"),
    tags=T,
)
FORWARD_PROXY_ERROR = cause(
    "forward.proxy-error",
    L,
    N_("connecting to the forward proxy failed (no route, a TLS failure with an https:// proxy...)"),
    N_("check the proxy's address and scheme (http:// for most proxies) and the network path to it"),
    tags=T,
)
FORWARD_PROXY_CLOSED = cause(
    "forward.proxy-closed",
    L,
    N_(
        "the forward proxy closed the connection without answering CONNECT (a client it does not allow, or a crash)"
    ),
    N_(
        "allow this machine in the proxy's access list (tinyproxy Allow, squid http_access), and read the proxy's log"
    ),
    tags=T,
)
FORWARD_NOT_A_PROXY = cause(
    "forward.not-a-proxy",
    L,
    N_("what answers at the proxy's address is not a forward proxy: it does not speak HTTP CONNECT"),
    N_(
        "point HTTPS_PROXY/HTTP_PROXY/ALL_PROXY (or --proxy) at the forward proxy's port (3128 for squid, 8888 for tinyproxy), not a web server or a reverse proxy"
    ),
    tags=T,
)
FORWARD_AUTH_REQUIRED = cause(
    "forward.auth-required",
    L,
    N_("the forward proxy wants credentials (407 Proxy Authentication Required) and none were given"),
    N_(
        "put the credentials in the proxy URL (http://user:password@proxy:port in HTTPS_PROXY or --proxy), or have this machine added to the proxy's allow-list"
    ),
    tags=T,
)
FORWARD_AUTH_REJECTED = cause(
    "forward.auth-rejected",
    L,
    N_("the forward proxy rejects the credentials of the proxy URL (407 again)"),
    N_(
        "fix the user name and password in the proxy URL (percent-encode @ : / in them), or use the scheme the proxy asks for"
    ),
    tags=T,
)
FORWARD_CONNECT_PORT = cause(
    "forward.connect-port",
    L,
    N_(
        "the forward proxy allows CONNECT to port 443 only (tinyproxy ConnectPort, squid SSL_ports), not to the server's port"
    ),
    N_(
        "serve the WebSocket on port 443 (wss:// behind a TLS proxy), or allow the port in the proxy (tinyproxy: ConnectPort PORT; squid: acl SSL_ports port PORT), or bypass the proxy with NO_PROXY"
    ),
    tags=T,
)
FORWARD_CONNECT_FORBIDDEN = cause(
    "forward.connect-forbidden",
    L,
    N_("the forward proxy refuses CONNECT to this host (403: its access rules, a blocked destination)"),
    N_(
        "ask for the destination to be allowed in the proxy (squid http_access / dstdomain, tinyproxy Filter), or bypass the proxy for it with NO_PROXY"
    ),
    tags=T,
)
FORWARD_CONNECT_UNSUPPORTED = cause(
    "forward.connect-unsupported",
    L,
    N_("the forward proxy does not accept the CONNECT method (405/501): it cannot tunnel WebSockets"),
    N_(
        "enable CONNECT in the proxy, or use a proxy that tunnels (squid, tinyproxy), or bypass it with NO_PROXY"
    ),
    tags=T,
)
FORWARD_TARGET_UNREACHABLE = cause(
    "forward.target-unreachable",
    L,
    N_(
        "the forward proxy accepted CONNECT but could not reach the server (its 5xx answer: refused, no route, its DNS)"
    ),
    N_(
        "start the WebSocket server, or check that the proxy can reach it: a name only this machine resolves, or localhost (the proxy's own), needs NO_PROXY"
    ),
    tags=T,
)
FORWARD_UPGRADE_ANSWERED = cause(
    "forward.upgrade-answered",
    L,
    N_(
        "the forward proxy answers the WebSocket upgrade itself (it does not tunnel it to the server, or strips the Upgrade header)"
    ),
    N_(
        "use a forward proxy that tunnels with CONNECT (squid, tinyproxy) instead of one that only relays plain requests (nginx proxy_pass http://$http_host), or bypass it with NO_PROXY"
    ),
    tags=T,
)
FORWARD_INVALID_VARIABLE = cause(
    "forward.invalid-variable",
    L,
    N_("a proxy variable (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY) holds a value no client can use"),
    N_(
        "set it to http://host:port (or https://, socks5://), or unset it; curl and websockets fail on it too"
    ),
    tags=T,
)
FORWARD_SOCKS_REFUSED = cause(
    "forward.socks-refused",
    L,
    N_(
        "the SOCKS5 proxy refused the connection to the server (its ruleset, the server down, its credentials)"
    ),
    N_(
        "read the SOCKS reply in the summary: allow the destination in the proxy, fix the credentials, or start the server"
    ),
    tags=T,
)
