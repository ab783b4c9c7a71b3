"""Cause codes of Apache httpd's configuration (see lokin_doctor/causes/__init__.py and docs/local-checks.md)."""

from __future__ import annotations

from lokin_doctor.causes import Layer, Tag, cause
from lokin_doctor.i18n import N_

L = Layer.PROXY_CONFIG

APACHE_NO_WSTUNNEL = cause(
    "apache.no-wstunnel",
    L,
    N_(
        "a ProxyPass to ws:// while no module handles ws:// (mod_proxy_wstunnel not loaded, and before 2.4.47 mod_proxy_http cannot): Apache answers 500"
    ),
    N_(
        "load the module (a2enmod proxy_wstunnel, or LoadModule proxy_wstunnel_module modules/mod_proxy_wstunnel.so), then apachectl configtest && apachectl graceful"
    ),
    warn=True,
    tags=(Tag.UPGRADE_LOST,),
    doc="local-checks.md",
)
APACHE_NO_UPGRADE = cause(
    "apache.no-upgrade",
    L,
    N_(
        "a ProxyPass to http:// without upgrade=websocket: Apache forwards the request without its Upgrade header, so the backend cannot upgrade"
    ),
    N_(
        "add upgrade=websocket to the ProxyPass line (Apache 2.4.47 and later), or proxy to ws:// with mod_proxy_wstunnel, then apachectl graceful"
    ),
    warn=True,
    tags=(Tag.UPGRADE_LOST,),
    doc="local-checks.md",
)
APACHE_PROXY_TIMEOUT_SHORT = cause(
    "apache.proxy-timeout-short",
    L,
    N_(
        "the tunnel's idle timeout (the longer of Timeout, 60 s by default, and the backend's: ProxyPass timeout=, else ProxyTimeout) is not longer than the server's ping interval or the --hold asked: Apache closes idle WebSockets"
    ),
    N_(
        "raise it for the WebSocket path (ProxyPass ... timeout=3600), or make the server ping more often, then apachectl graceful"
    ),
    warn=True,
    tags=(Tag.IDLE_CUT,),
    doc="local-checks.md",
)
APACHE_NOT_PROXIED = cause(
    "apache.not-proxied",
    L,
    N_(
        "no ProxyPass, ProxyPassMatch or RewriteRule [P] of the virtual host serves the path: Apache answers it itself (a file or a 404)"
    ),
    N_(
        "add ProxyPass /ws ws://127.0.0.1:8080/ (or http://... upgrade=websocket) to the virtual host, then apachectl graceful"
    ),
    warn=True,
    doc="local-checks.md",
)
APACHE_BACKEND_DOWN = cause(
    "apache.backend-down",
    L,
    N_("the ProxyPass names a port of this machine where nothing listens: Apache answers 503"),
    N_(
        "start the WebSocket server on that port, or point the ProxyPass at the port it listens on, then apachectl graceful"
    ),
    tags=(Tag.BACKEND_DOWN,),
    doc="local-checks.md",
)
APACHE_HOST_NOT_PRESERVED = cause(
    "apache.host-not-preserved",
    L,
    N_(
        "ProxyPreserveHost is off: the backend sees Host: its own address while Origin still names the site, so a backend comparing Origin with Host refuses the upgrade"
    ),
    N_(
        "add ProxyPreserveHost On to the virtual host (or let the backend allow the site's Origin), then apachectl graceful"
    ),
    warn=True,
    doc="local-checks.md",
)
APACHE_ORIGIN_CHANGED = cause(
    "apache.origin-changed",
    L,
    N_(
        "a RequestHeader line sets, edits or removes Origin: the backend's Origin check sees something other than the browser sent"
    ),
    N_(
        "delete the RequestHeader line for Origin (or make it give the value the backend allows), then apachectl graceful"
    ),
    warn=True,
    doc="local-checks.md",
)
APACHE_NO_VIRTUALHOST = cause(
    "apache.no-virtualhost",
    L,
    N_("no Listen or VirtualHost of --proxy-config takes the target's port"),
    N_(
        "add Listen PORT and a <VirtualHost *:PORT> with the ProxyPass for the WebSocket URL, or use the port Apache listens on in the URL"
    ),
    warn=True,
    fail=False,
    doc="local-checks.md",
)
