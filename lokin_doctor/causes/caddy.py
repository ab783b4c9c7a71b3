"""Cause codes of Caddy's configuration (see lokin_doctor/causes/__init__.py and docs/local-checks.md)."""

from __future__ import annotations

from lokin_doctor.causes import Layer, Tag, cause
from lokin_doctor.i18n import N_

L = Layer.PROXY_CONFIG

CADDY_RELOAD_CUTS = cause(
    "caddy.reload-cuts",
    L,
    N_(
        "a Caddy config reload closes every proxied WebSocket at once (before 2.7 always; from 2.7 unless reverse_proxy sets stream_close_delay): clients must reconnect"
    ),
    N_(
        "on Caddy 2.7 or later add stream_close_delay 5m to the reverse_proxy block; on 2.6 make the clients reconnect with backoff and reload outside busy hours"
    ),
    warn=True,
    fail=False,
    tags=(Tag.NOTE,),
    doc="local-checks.md",
)
CADDY_STREAM_TIMEOUT = cause(
    "caddy.stream-timeout",
    L,
    N_("reverse_proxy's stream_timeout closes every WebSocket that old, busy or not"),
    N_(
        "remove stream_timeout from the reverse_proxy block, or raise it well above a session's length (e.g. 24h), then caddy reload"
    ),
    warn=True,
    tags=(Tag.IDLE_CUT,),
    doc="local-checks.md",
)
CADDY_STRIP_PREFIX = cause(
    "caddy.strip-prefix",
    L,
    N_(
        "handle_path (or uri strip_prefix) removes the path prefix before reverse_proxy: the backend receives another path than the client asked for"
    ),
    N_("use handle instead of handle_path when the backend serves the full path, then caddy reload"),
    warn=True,
    doc="local-checks.md",
)
CADDY_UPSTREAM_DOWN = cause(
    "caddy.upstream-down",
    L,
    N_("reverse_proxy names a port of this machine where nothing listens: Caddy answers 502"),
    N_(
        "start the WebSocket server on that port, or point reverse_proxy at the port it listens on, then caddy reload"
    ),
    tags=(Tag.BACKEND_DOWN,),
    doc="local-checks.md",
)
CADDY_NOT_PROXIED = cause(
    "caddy.not-proxied",
    L,
    N_("no route of the site sends the path to reverse_proxy: Caddy answers it itself (often an empty 200)"),
    N_(
        "add reverse_proxy /ws* 127.0.0.1:8080 (or a handle /ws* block with it) to the site, then caddy reload"
    ),
    warn=True,
    doc="local-checks.md",
)
CADDY_NO_SITE = cause(
    "caddy.no-site",
    L,
    N_("no site of --proxy-config listens on the target's port"),
    N_(
        "add a site block for the WebSocket URL's host and port (e.g. example.com:8443 { reverse_proxy 127.0.0.1:8080 }), or use the port Caddy listens on in the URL"
    ),
    warn=True,
    fail=False,
    doc="local-checks.md",
)
