"""Cause codes of HAProxy's configuration (see lokin_doctor/causes/__init__.py and docs/local-checks.md)."""

from __future__ import annotations

from lokin_doctor.causes import Layer, Tag, cause
from lokin_doctor.i18n import N_

L = Layer.PROXY_CONFIG

HAPROXY_NO_TIMEOUT_TUNNEL = cause(
    "haproxy.no-timeout-tunnel",
    L,
    N_(
        "no timeout tunnel: after the upgrade HAProxy keeps applying timeout client / timeout server, and closes a WebSocket idle for that long"
    ),
    N_(
        "add timeout tunnel 1h to the backend (or the defaults section) serving the WebSocket, then reload HAProxy"
    ),
    warn=True,
    tags=(Tag.IDLE_CUT,),
    doc="local-checks.md",
)
HAPROXY_TUNNEL_TIMEOUT_SHORT = cause(
    "haproxy.tunnel-timeout-short",
    L,
    N_(
        "timeout tunnel is not longer than the server's ping interval (or the idle time asked with --hold): HAProxy closes idle WebSockets"
    ),
    N_(
        "raise timeout tunnel (e.g. timeout tunnel 1h) or make the server ping more often than that, then reload HAProxy"
    ),
    warn=True,
    tags=(Tag.IDLE_CUT,),
    doc="local-checks.md",
)
HAPROXY_BACKEND_DOWN = cause(
    "haproxy.backend-down",
    L,
    N_(
        "every server of the backend serving the WebSocket is down (stats socket) or names a port of this machine where nothing listens: HAProxy answers 503"
    ),
    N_(
        "start the WebSocket server on the port the backend's server line names, or point that server line at the port it listens on, then reload HAProxy"
    ),
    tags=(Tag.BACKEND_DOWN,),
    doc="local-checks.md",
)
HAPROXY_DENIED = cause(
    "haproxy.denied",
    L,
    N_(
        "an http-request deny/return/tarpit/reject/redirect rule matches the WebSocket request: HAProxy answers it itself"
    ),
    N_(
        "narrow the rule's condition (add unless { path_beg /ws }) or move the rule after the use_backend of the WebSocket path, then reload HAProxy"
    ),
    warn=True,
    doc="local-checks.md",
)
HAPROXY_UPGRADE_HEADER_REMOVED = cause(
    "haproxy.upgrade-header-removed",
    L,
    N_(
        "an http-request rule removes or rewrites the Upgrade or Connection header: the backend never sees the upgrade request"
    ),
    N_(
        "delete that http-request set-header/del-header/replace-header line (HAProxy forwards Upgrade and Connection by itself), then reload HAProxy"
    ),
    warn=True,
    tags=(Tag.UPGRADE_LOST,),
    doc="local-checks.md",
)
HAPROXY_HTTPCLOSE = cause(
    "haproxy.httpclose",
    L,
    N_(
        "option httpclose / http-server-close in the route: harmless for WebSockets on HAProxy 1.5 and later (after the 101 the connection is a tunnel), it only closes keep-alive HTTP connections"
    ),
    N_(
        "nothing to change for the WebSocket; remove the option only if plain HTTP clients should keep their connections alive"
    ),
    warn=True,
    fail=False,
    tags=(Tag.NOTE,),
    doc="local-checks.md",
)
HAPROXY_NOT_PROXIED = cause(
    "haproxy.not-proxied",
    L,
    N_(
        "no use_backend of the frontend matches the WebSocket request and it has no default_backend: HAProxy answers 503"
    ),
    N_(
        "add use_backend BACKEND if { path_beg /ws } (or a default_backend) to the frontend, then reload HAProxy"
    ),
    warn=True,
    doc="local-checks.md",
)
HAPROXY_NO_FRONTEND = cause(
    "haproxy.no-frontend",
    L,
    N_("no frontend or listen section of --proxy-config binds the target's port"),
    N_(
        "add a frontend with bind :PORT (and default_backend) for the WebSocket URL, or use the port HAProxy binds in the URL"
    ),
    warn=True,
    fail=False,
    doc="local-checks.md",
)
