"""Cause codes of the proxyconf layer (see lokin_doctor/causes/__init__.py)."""

from __future__ import annotations

from lokin_doctor.causes import Layer, Tag, cause  # noqa: F401
from lokin_doctor.i18n import N_

L = Layer.PROXY_CONFIG

NGINX_CONNECTION_HEADER_EMPTY = cause(
    "nginx.connection-header-empty",
    L,
    N_(
        'proxy_set_header Connection "" (the keepalive recipe), or a map giving a WebSocket request something other than upgrade'
    ),
    N_(
        "proxy_set_header Connection $connection_upgrade; with map $http_upgrade $connection_upgrade { default upgrade; '' close; }"
    ),
    doc="local-checks.md",
    tags=(Tag.UPGRADE_LOST,),
)
NGINX_CONNECTION_HEADER_MISSING = cause(
    "nginx.connection-header-missing",
    L,
    N_(
        "no proxy_set_header Connection in force: nginx sends Connection: close upstream, so the backend never sees the upgrade"
    ),
    N_(
        "add proxy_set_header Connection $connection_upgrade; with map $http_upgrade $connection_upgrade { default upgrade; '' close; } in the http block"
    ),
    doc="local-checks.md",
    tags=(Tag.UPGRADE_LOST,),
)
NGINX_CONNECTION_MAP_MISSING = cause(
    "nginx.connection-map-missing",
    L,
    N_("proxy_set_header Connection uses a variable that no map defines"),
    N_("add map $http_upgrade $connection_upgrade { default upgrade; '' close; } in the http block"),
    doc="local-checks.md",
    tags=(Tag.UPGRADE_LOST,),
)
NGINX_HTTP10_UPSTREAM = cause(
    "nginx.http10-upstream",
    L,
    N_("no proxy_http_version 1.1 in the location: nginx speaks HTTP/1.0 upstream, which cannot upgrade"),
    N_("add proxy_http_version 1.1; to the location"),
    doc="local-checks.md",
    tags=(Tag.UPGRADE_LOST,),
)
NGINX_LEAF_ONLY_CERTIFICATE = cause(
    "nginx.leaf-only-certificate",
    L,
    N_(
        "the ssl_certificate file holds only the server's certificate, without its intermediate: clients that lack it refuse the chain"
    ),
    N_(
        "point ssl_certificate at the full chain (fullchain.pem with Let's Encrypt), then nginx -t && nginx -s reload"
    ),
    doc="local-checks.md",
)
NGINX_NO_SERVER = cause(
    "nginx.no-server",
    L,
    N_("no server block of --nginx-config listens on the target's port"),
    N_("add a server block with listen PORT (and server_name) for the WebSocket URL"),
    warn=True,
    fail=False,
    doc="local-checks.md",
)
NGINX_NOT_PROXIED = cause(
    "nginx.not-proxied",
    L,
    N_("the location that serves the path has no proxy_pass: nginx answers the path itself"),
    N_(
        "add proxy_pass http://127.0.0.1:8080; with the upgrade lines to that location, or use the path of a proxied location"
    ),
    doc="local-checks.md",
)
NGINX_PATH_REWRITTEN = cause(
    "nginx.path-rewritten",
    L,
    N_(
        "proxy_pass with a URI part (http://127.0.0.1:8080/) replaces the location's prefix: /ws/chat reaches the backend as /chat"
    ),
    N_(
        "write proxy_pass without the trailing URI (proxy_pass http://127.0.0.1:8080;) so the backend gets the path the client asked for"
    ),
    warn=True,
    doc="local-checks.md",
)
NGINX_PROXY_PASS_NOTHING_LISTENS = cause(
    "nginx.proxy-pass-nothing-listens",
    L,
    N_(
        "proxy_pass (or the upstream's server line) names a port of this machine where nothing listens: nginx answers 502"
    ),
    N_("start the WebSocket server on that port, or point proxy_pass at the port it listens on"),
    doc="local-checks.md",
    tags=(Tag.BACKEND_DOWN,),
)
NGINX_PROXY_PASS_WRONG_PORT = cause(
    "nginx.proxy-pass-wrong-port",
    L,
    N_("proxy_pass names a port held by another program while the WebSocket server listens elsewhere"),
    N_("point proxy_pass at the port the WebSocket server listens on"),
    warn=True,
    doc="local-checks.md",
    tags=(Tag.BACKEND_DOWN,),
)
NGINX_READ_TIMEOUT_SHORT = cause(
    "nginx.read-timeout-short",
    L,
    N_(
        "proxy_read_timeout (60 s by default) is not longer than the server's ping interval: nginx closes connections that stay quiet that long"
    ),
    N_(
        "raise proxy_read_timeout above the ping interval (e.g. proxy_read_timeout 3600s;), or make the server ping more often"
    ),
    warn=True,
    doc="local-checks.md",
    tags=(Tag.IDLE_CUT,),
)
NGINX_SEND_TIMEOUT_SHORT = cause(
    "nginx.send-timeout-short",
    L,
    N_(
        "proxy_send_timeout (60 s by default) is not longer than the server's ping interval: nginx closes connections that stay quiet that long"
    ),
    N_(
        "raise proxy_send_timeout above the ping interval (e.g. proxy_send_timeout 3600s;), or make the server ping more often"
    ),
    warn=True,
    doc="local-checks.md",
    tags=(Tag.IDLE_CUT,),
)
NGINX_UPGRADE_HEADER_MISSING = cause(
    "nginx.upgrade-header-missing",
    L,
    N_(
        "no proxy_set_header Upgrade $http_upgrade in force for the location (one in the server block is shadowed by the location's own proxy_set_header lines)"
    ),
    N_("add proxy_set_header Upgrade $http_upgrade; to the location"),
    doc="local-checks.md",
    tags=(Tag.UPGRADE_LOST,),
)
