"""The status reading table: what a non-101 answer means, as data.

:data:`READINGS` holds one :class:`Reading` per (status, sender, what it said) worth its own words: the
cause code, the clause the summary adds after "HTTP 502 Bad Gateway from nginx 1.22.1, page title
'502 Bad Gateway'", and the hint. :func:`reading_for` takes the first row that fits an
:class:`~lokin_doctor.instruments.answer.Answer` (rows naming a sender or a body come before the plain
status rows); a status no row takes is reported as what it is ("HTTP 418 from a server that says it is
X, page title Y"), never as a guess. docs/checks.md lists the table and where each signature comes from.

Templates are English msgids (``N_``), translated when a result is built; their fields are those of
:func:`fields` (``{who}``, ``{edge}``, ``{location}``, ``{versions}``, ``{upgrade_fix}``...).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lokin_doctor.causes.http import (
    HANDSHAKE_BAD_GATEWAY,
    HANDSHAKE_BAD_REQUEST,
    HANDSHAKE_CAPTIVE_PORTAL,
    HANDSHAKE_CLIENT_ERROR,
    HANDSHAKE_EVENT_STREAM,
    HANDSHAKE_FORBIDDEN,
    HANDSHAKE_GATEWAY_TIMEOUT,
    HANDSHAKE_HEADERS_TOO_LARGE,
    HANDSHAKE_HTTP10_UPSTREAM,
    HANDSHAKE_METHOD_NOT_ALLOWED,
    HANDSHAKE_MISDIRECTED,
    HANDSHAKE_NO_BACKEND,
    HANDSHAKE_NOT_FOUND,
    HANDSHAKE_NOT_WEBSOCKET,
    HANDSHAKE_PLAIN_TO_TLS,
    HANDSHAKE_RATE_LIMITED,
    HANDSHAKE_REDIRECT,
    HANDSHAKE_REQUEST_TIMEOUT,
    HANDSHAKE_SERVER_ERROR,
    HANDSHAKE_UNAVAILABLE,
    HANDSHAKE_UNEXPECTED_STATUS,
    HANDSHAKE_UPGRADE_DROPPED,
    HANDSHAKE_VERSION_UNSUPPORTED,
    HANDSHAKE_WEB_PAGE,
)
from lokin_doctor.causes.platform import (
    PLATFORM_DIRECT_IP_REFUSED,
    PLATFORM_EDGE_BLOCKED,
    PLATFORM_LB_AUTH_ERROR,
    PLATFORM_LB_CLIENT_CLOSED,
    PLATFORM_LB_FORWARDED_FOR,
    PLATFORM_LB_PROTOCOL_MISMATCH,
    PLATFORM_NO_WEBSOCKET,
    PLATFORM_ORIGIN_CERT_INVALID,
    PLATFORM_ORIGIN_CONNECT_TIMEOUT,
    PLATFORM_ORIGIN_DNS,
    PLATFORM_ORIGIN_ERROR,
    PLATFORM_ORIGIN_REFUSED,
    PLATFORM_ORIGIN_TIMEOUT,
    PLATFORM_ORIGIN_TLS_FAILED,
    PLATFORM_ORIGIN_UNREACHABLE,
    PLATFORM_TUNNEL_DOWN,
)
from lokin_doctor.causes.tls import TLS_CLIENT_CERT_REJECTED, TLS_CLIENT_CERT_REQUIRED
from lokin_doctor.i18n import N_, _
from lokin_doctor.instruments.answer import Answer
from lokin_doctor.instruments.senders import Kind

if TYPE_CHECKING:
    from lokin_doctor.causes import Cause
    from lokin_doctor.target import Target

NGINX_UPGRADE_LINES = (
    'proxy_http_version 1.1;\nproxy_set_header Upgrade $http_upgrade;\nproxy_set_header Connection "upgrade";'
)

#: How each proxy or edge is made to forward a WebSocket upgrade (the hint of handshake.upgrade-dropped).
UPGRADE_FIX: dict[str, str] = {
    "nginx": N_("in nginx's location block for {resource} add:\n{lines}"),
    "openresty": N_("in OpenResty's (nginx) location block for {resource} add:\n{lines}"),
    "apache": N_(
        "in Apache, proxy the path with the upgrade: ProxyPass {resource} http://BACKEND:PORT{resource} upgrade=websocket (Apache 2.4.47+; older: mod_proxy_wstunnel and ProxyPass {resource} ws://BACKEND:PORT{resource})"
    ),
    "haproxy": N_(
        "HAProxy forwards upgrades in mode http: check that the frontend and backend are mode http and that no http-request del-header removes Upgrade or Connection; add timeout tunnel 1h"
    ),
    "envoy": N_(
        "enable the upgrade in Envoy: upgrade_configs: [{{upgrade_type: websocket}}] in the HttpConnectionManager (Contour: enableWebsockets: true on the route)"
    ),
    "caddy": N_(
        "Caddy's reverse_proxy forwards upgrades by default: look for a header_up rule that removes Upgrade or Connection"
    ),
    "traefik": N_(
        "Traefik forwards upgrades by default: look for a middleware that removes the Upgrade or Connection header"
    ),
    "cloudflare": N_("turn WebSockets on in the Cloudflare zone (Network settings)"),
    "iis": N_(
        "install IIS's WebSocket Protocol feature (and with ARR, keep the Upgrade header on the rewrite rule)"
    ),
    "azure-app-gateway": N_(
        "Application Gateway forwards WebSocket natively: check the rewrite rules for the Upgrade and Connection headers and the backend's HTTP settings"
    ),
}
#: Where each proxy names its backend (the hints of 502/504).
BACKEND_DIRECTIVE = {
    "nginx": "proxy_pass",
    "openresty": "proxy_pass",
    "apache": "ProxyPass",
    "haproxy": "backend's server line",
    "caddy": "reverse_proxy",
    "traefik": "service's url",
    "envoy": "cluster's endpoints",
    "iis": "rewrite rule (ARR)",
}
DEFAULT_UPGRADE_FIX = N_(
    "make {culprit} forward the Upgrade and Connection headers with HTTP/1.1; in nginx, in the location block for {resource}:\n{lines}"
)


@dataclass(frozen=True)
class Reading:
    """One row: which answers it fits, and what the doctor says of them.

    ``statuses``: the statuses it fits (empty: any). ``senders``: the sender or a sender on the way must
    be one of these ids (empty: any). ``origin``: the sender itself must be one of these ids.
    ``kinds``: the sender's kind must be one of these. ``body``: a regular expression searched in the
    body and title (case-insensitive). ``versions``: ``"no-13"`` when the Sec-WebSocket-Version offered
    lacks 13, ``"13"`` when it has it. ``ctype``: the Content-Type starts with it. ``empty``: the body is
    empty (True) or not (False). ``says``: the clause after "{line} from {who}{said}: ". ``hint``: the fix.
    """

    cause: Cause
    says: str
    hint: str
    statuses: frozenset[int] = frozenset()
    senders: frozenset[str] = frozenset()
    origin: frozenset[str] = frozenset()
    kinds: frozenset[Kind] = frozenset()
    body: str | None = None
    versions: str | None = None
    ctype: str | None = None
    empty: bool | None = None
    test: Callable[[Answer], bool] | None = None

    def fits(self, a: Answer) -> bool:
        if self.statuses and a.status not in self.statuses:
            return False
        if self.senders and not a.involves(*self.senders):
            return False
        if self.origin and a.sender.id not in self.origin:
            return False
        if self.kinds and a.sender.kind not in self.kinds:
            return False
        if self.versions == "no-13" and (not a.versions or "13" in a.versions):
            return False
        if self.versions == "13" and "13" not in a.versions:
            return False
        if self.ctype is not None and not (a.content_type or "").lower().startswith(self.ctype):
            return False
        if self.empty is not None and (not a.body_text.strip()) != self.empty:
            return False
        if self.body is not None and not re.search(self.body, f"{a.title or ''}\n{a.body_text}", re.I | re.S):
            return False
        return self.test is None or self.test(a)


def _s(*statuses: int) -> frozenset[int]:
    return frozenset(statuses)


def _r(lo: int, hi: int) -> frozenset[int]:
    return frozenset(range(lo, hi + 1))


def _ids(*ids: str) -> frozenset[str]:
    return frozenset(ids)


def _ws_library_refused_upgrade(a: Answer) -> bool:
    """A 400 from a WebSocket server (or through a proxy) whose words are about Upgrade/Connection."""
    worded = re.search(r"upgrade|connection", a.body_text, re.I) is not None
    return worded and (a.sender.kind is Kind.WEBSOCKET_SERVER or a.edge is not None)


def _spa(a: Answer) -> bool:
    return a.sender.id == "spa"


PROXY_KINDS = frozenset({Kind.PROXY, Kind.CDN, Kind.LOAD_BALANCER, Kind.PLATFORM})
R = Reading

#: The table, most specific rows first.
READINGS: tuple[Reading, ...] = (
    # -- the request's headers are too large ---------------------------------------------------------------
    R(
        HANDSHAKE_HEADERS_TOO_LARGE,
        N_("the request's headers or cookies are larger than nginx accepts (large_client_header_buffers)"),
        N_(
            "send fewer or smaller cookies and headers to {host} (the page's cookies go with its WebSocket request), or raise nginx's limit in the http or server block: large_client_header_buffers 4 32k;"
        ),
        statuses=_s(400, 494),
        body=r"Request Header Or Cookie Too Large",
    ),
    R(
        HANDSHAKE_HEADERS_TOO_LARGE,
        N_("nginx refuses the request's headers as too large (its code 494)"),
        N_(
            "send fewer or smaller cookies and headers to {host}, or raise nginx's limit: large_client_header_buffers 4 32k;"
        ),
        statuses=_s(494),
    ),
    R(
        HANDSHAKE_HEADERS_TOO_LARGE,
        N_("the server refuses the request's header fields as too large"),
        N_(
            "send fewer or smaller cookies and headers to {host} (the page's cookies go with its WebSocket request), or raise the server's limit (Node.js: --max-http-header-size, 16 KiB by default; nginx: large_client_header_buffers)"
        ),
        statuses=_s(431),
    ),
    R(
        HANDSHAKE_HEADERS_TOO_LARGE,
        N_(
            "the server refuses the request as too large: a WebSocket request has no body, so its headers or URL are what it counts"
        ),
        N_("send fewer or smaller cookies and headers to {host}, or raise the server's header limits"),
        statuses=_s(413),
    ),
    # -- TLS said in HTTP --------------------------------------------------------------------------------
    R(
        HANDSHAKE_PLAIN_TO_TLS,
        N_("plain HTTP was sent to a TLS port"),
        N_("use {wss_url} (this port speaks TLS)"),
        statuses=_s(400, 497),
        body=r"plain HTTP request was sent to HTTPS port",
    ),
    R(
        HANDSHAKE_PLAIN_TO_TLS,
        N_("plain HTTP was sent to a TLS port (nginx's code 497)"),
        N_("use {wss_url} (this port speaks TLS)"),
        statuses=_s(497),
    ),
    R(
        TLS_CLIENT_CERT_REQUIRED,
        N_("the server requires a client certificate (mutual TLS, nginx's code 496) and none was offered"),
        N_(
            "retry with --client-cert client.pem --client-key client.key (a certificate of the CA the server trusts)"
        ),
        statuses=_s(496),
    ),
    R(
        TLS_CLIENT_CERT_REJECTED,
        N_("the server refused the client certificate (nginx's code 495)"),
        N_(
            "offer a certificate issued by the CA the server trusts (nginx ssl_client_certificate), valid now"
        ),
        statuses=_s(495),
    ),
    # -- the WebSocket version -------------------------------------------------------------------------
    R(
        HANDSHAKE_VERSION_UNSUPPORTED,
        N_(
            "the server speaks WebSocket version {versions} only, not 13 (RFC 6455), which browsers and this client speak"
        ),
        N_(
            "upgrade the server's WebSocket library to one that speaks RFC 6455 (version 13), or put a current WebSocket server in front of it; no browser speaks version {versions}"
        ),
        statuses=_s(400, 426),
        versions="no-13",
    ),
    # -- the upgrade did not reach the WebSocket server ----------------------------------------------------
    R(
        HANDSHAKE_UPGRADE_DROPPED,
        N_("Envoy refuses the upgrade: WebSocket is not enabled on this route"),
        N_("{upgrade_fix}"),
        statuses=_s(403),
        origin=_ids("envoy"),
        empty=True,
    ),
    R(
        HANDSHAKE_UPGRADE_DROPPED,
        N_(
            "the WebSocket server got the request without its Upgrade header; {culprit} does not forward the upgrade"
        ),
        N_("{upgrade_fix}"),
        statuses=_s(426),
    ),
    R(
        HANDSHAKE_UPGRADE_DROPPED,
        N_(
            "the WebSocket server got the request without a valid Upgrade/Connection; {culprit} does not forward the upgrade"
        ),
        N_("{upgrade_fix}"),
        statuses=_s(400),
        test=_ws_library_refused_upgrade,
    ),
    R(
        HANDSHAKE_UPGRADE_DROPPED,
        N_(
            "a WebSocket server (it offers version 13) refused the request as not a valid upgrade: the Upgrade/Connection headers did not reach it"
        ),
        N_("{upgrade_fix}"),
        statuses=_s(400),
        versions="13",
    ),
    # -- platforms: Cloudflare ---------------------------------------------------------------------------
    R(
        PLATFORM_ORIGIN_ERROR,
        N_("Cloudflare got an empty, unknown or invalid reply from the origin server"),
        N_(
            "read the origin server's log at that time{rid}; compare by connecting to the origin directly (--resolve {host}:{port}:ORIGIN_IP) and keep its response headers under 32 KiB"
        ),
        statuses=_s(520, 527),
        senders=_ids("cloudflare"),
    ),
    R(
        PLATFORM_ORIGIN_REFUSED,
        N_("the origin server refused Cloudflare's connection (down, or its firewall blocks Cloudflare)"),
        N_(
            "start the WebSocket server on the origin's port (80 for SSL mode Flexible, 443 for Full) and allow Cloudflare's IP ranges (https://www.cloudflare.com/ips) in its firewall{rid}"
        ),
        statuses=_s(521),
        senders=_ids("cloudflare"),
    ),
    R(
        PLATFORM_ORIGIN_CONNECT_TIMEOUT,
        N_("Cloudflare's connection to the origin server timed out"),
        N_(
            "allow Cloudflare's IP ranges in the origin's firewall or security group, and check that the DNS record points at the origin's address{rid}"
        ),
        statuses=_s(522),
        senders=_ids("cloudflare"),
    ),
    R(
        PLATFORM_ORIGIN_UNREACHABLE,
        N_("Cloudflare cannot reach the origin server's address"),
        N_(
            "fix the origin's address in the Cloudflare DNS record (A/AAAA) and check the origin's network{rid}"
        ),
        statuses=_s(523),
        senders=_ids("cloudflare"),
    ),
    R(
        PLATFORM_ORIGIN_TIMEOUT,
        N_(
            "the origin server accepted Cloudflare's connection but sent no reply to the upgrade within 100 s"
        ),
        N_("make the server answer the upgrade at once (do slow work after the 101) and read its log{rid}"),
        statuses=_s(524),
        senders=_ids("cloudflare"),
    ),
    R(
        PLATFORM_ORIGIN_TLS_FAILED,
        N_("the TLS handshake between Cloudflare and the origin server failed"),
        N_(
            "serve TLS on the origin's port 443 (a certificate, TLS 1.2+), or set the zone's SSL/TLS mode to what the origin speaks{rid}"
        ),
        statuses=_s(525),
        senders=_ids("cloudflare"),
    ),
    R(
        PLATFORM_ORIGIN_CERT_INVALID,
        N_("the origin server's certificate is not valid for Cloudflare (SSL mode Full strict)"),
        N_(
            "install a valid certificate for {host} on the origin (a public CA or a Cloudflare Origin CA certificate){rid}"
        ),
        statuses=_s(526),
        senders=_ids("cloudflare"),
    ),
    R(
        PLATFORM_TUNNEL_DOWN,
        N_("the Cloudflare Tunnel for {host} has no connector running (error 1033)"),
        N_("start cloudflared on the origin machine (cloudflared tunnel run NAME) and read its log{rid}"),
        statuses=_s(530),
        senders=_ids("cloudflare"),
        body=r"\b1033\b",
    ),
    R(
        PLATFORM_ORIGIN_DNS,
        N_("Cloudflare cannot resolve the origin's host name"),
        N_("fix the origin record in the Cloudflare DNS: the CNAME target must resolve{rid}"),
        statuses=_s(530),
        senders=_ids("cloudflare"),
    ),
    R(
        PLATFORM_DIRECT_IP_REFUSED,
        N_("Cloudflare refuses a URL that names its address instead of the site (error 1003)"),
        N_("use the site's host name in the URL, not an IP address"),
        senders=_ids("cloudflare"),
        body=r"Error(?:</span>\s*<span[^>]*>|\s*)1003\b|Direct IP access not allowed",
    ),
    R(
        HANDSHAKE_RATE_LIMITED,
        N_("Cloudflare's rate limiting refused the request{retry}"),
        N_("slow the client's reconnections, or raise the zone's rate-limiting rule for this path{rid}"),
        statuses=_s(429),
        origin=_ids("cloudflare"),
    ),
    R(
        PLATFORM_EDGE_BLOCKED,
        N_("Cloudflare's firewall refused the request before the server saw it"),
        N_(
            "find the rule in the zone's Security events{rid} and let WebSocket requests to {resource} through, or test from an allowed network"
        ),
        statuses=_s(403, 409),
        origin=_ids("cloudflare"),
    ),
    # -- platforms: CloudFront, Akamai, AWS WAF -------------------------------------------------------------
    R(
        PLATFORM_EDGE_BLOCKED,
        N_("CloudFront refused the request itself"),
        N_(
            "check the distribution's AWS WAF web ACL, geo restriction and allowed methods for {resource} (search {rid_plain} in CloudFront's logs)"
        ),
        statuses=_s(403),
        origin=_ids("cloudfront"),
    ),
    R(
        PLATFORM_EDGE_BLOCKED,
        N_("Akamai refused the request itself"),
        N_(
            "find the rule in Akamai's security configuration with the reference number of the page, and let WebSocket requests to {resource} through"
        ),
        statuses=_s(403),
        origin=_ids("akamai"),
    ),
    R(
        PLATFORM_EDGE_BLOCKED,
        N_("the AWS load balancer's WAF refused the request"),
        N_(
            "check the AWS WAF web ACL attached to the load balancer for a rule matching WebSocket requests to {resource}"
        ),
        statuses=_s(403),
        origin=_ids("aws-elb"),
    ),
    R(
        HANDSHAKE_BAD_GATEWAY,
        N_("CloudFront cannot connect to the origin or complete TLS with it"),
        N_(
            "check the origin's domain and port in the distribution, that the origin answers there, and that its certificate matches the origin domain name (TLS 1.2+){rid}"
        ),
        statuses=_s(502),
        origin=_ids("cloudfront"),
    ),
    R(
        HANDSHAKE_GATEWAY_TIMEOUT,
        N_("the origin did not answer CloudFront in time"),
        N_(
            "make the origin answer the upgrade at once, check its security group lets CloudFront in, and the distribution's origin response timeout{rid}"
        ),
        statuses=_s(504),
        origin=_ids("cloudfront"),
    ),
    # -- platforms: AWS load balancers ---------------------------------------------------------------------
    R(
        PLATFORM_LB_CLIENT_CLOSED,
        N_("the load balancer says the client closed the connection before its idle timeout"),
        N_(
            "raise the client's (or the front proxy's) timeout above the ALB's idle timeout and make the target answer sooner"
        ),
        statuses=_s(460),
        senders=_ids("aws-elb"),
    ),
    R(
        PLATFORM_LB_FORWARDED_FOR,
        N_(
            "the request's X-Forwarded-For lists more than 30 addresses: a proxy loop before the load balancer"
        ),
        N_("find the proxy that forwards to itself or back to the load balancer and break the loop"),
        statuses=_s(463),
        senders=_ids("aws-elb"),
    ),
    R(
        PLATFORM_LB_PROTOCOL_MISMATCH,
        N_("the target group's protocol version does not take this HTTP/1.1 upgrade"),
        N_("route the WebSocket path to a target group whose protocol version is HTTP1"),
        statuses=_s(464),
        senders=_ids("aws-elb"),
    ),
    R(
        PLATFORM_LB_AUTH_ERROR,
        N_("the load balancer's authenticate action got an error from the identity provider"),
        N_(
            "check the listener's authenticate-oidc/cognito settings; a WebSocket client cannot follow the login redirect: exempt {resource} or send the session cookie"
        ),
        statuses=_s(561),
        senders=_ids("aws-elb"),
    ),
    R(
        HANDSHAKE_NO_BACKEND,
        N_("the load balancer has no healthy target for this request"),
        N_(
            "register the WebSocket server in the listener rule's target group and make its health check pass (path, port, success codes: a WebSocket-only server may answer the check with 426, so add it to the matcher or serve /health)"
        ),
        statuses=_s(503),
        origin=_ids("aws-elb"),
    ),
    R(
        HANDSHAKE_BAD_GATEWAY,
        N_("the load balancer could not get a valid reply from its target"),
        N_(
            "check that the target listens on the target group's port and protocol (HTTP vs HTTPS), that its security group lets the load balancer in, and that its keep-alive timeout is longer than the ALB's idle timeout"
        ),
        statuses=_s(502),
        origin=_ids("aws-elb"),
    ),
    R(
        HANDSHAKE_GATEWAY_TIMEOUT,
        N_("the target did not answer the load balancer in time"),
        N_(
            "check that the target's security group lets the load balancer in and that the server answers the upgrade at once; raise the ALB's idle timeout for long-lived sockets"
        ),
        statuses=_s(504),
        origin=_ids("aws-elb"),
    ),
    # -- platforms: Google, Azure, Heroku, Fly, Vercel/Netlify --------------------------------------------
    R(
        HANDSHAKE_BAD_GATEWAY,
        N_("Google's load balancer could not get a reply from a healthy backend"),
        N_(
            "make the backend service's health check pass (allow 35.191.0.0/16 and 130.211.0.0/22 in the VPC firewall, and answer the check's path), and give the server a keep-alive timeout above the load balancer's (600 s)"
        ),
        statuses=_s(502, 503),
        origin=_ids("google-lb"),
    ),
    R(
        HANDSHAKE_BAD_GATEWAY,
        N_("Azure Application Gateway has no healthy backend to send the request to"),
        N_(
            "check the backend pool's health (Backend health in the portal): the probe's path, port and host name must succeed against the WebSocket server"
        ),
        statuses=_s(502),
        senders=_ids("azure-app-gateway"),
    ),
    R(
        HANDSHAKE_UNAVAILABLE,
        N_("Heroku's router could not reach a running web dyno (application error){retry}"),
        N_(
            "read heroku logs --tail for the H-code (H10 crashed, H12 timeout, H14 no web dynos) and make the app listen on $PORT"
        ),
        statuses=_s(503),
        senders=_ids("heroku"),
    ),
    R(
        HANDSHAKE_BAD_GATEWAY,
        N_("Fly.io's proxy could not reach the app"),
        N_(
            "read fly logs; the app must listen on 0.0.0.0 at the internal_port of fly.toml, and its machine must be running"
        ),
        statuses=_s(502, 503),
        senders=_ids("fly"),
    ),
    R(
        PLATFORM_NO_WEBSOCKET,
        N_("{edge} hosts the page, and its functions do not carry WebSocket connections"),
        N_(
            "run the WebSocket server where connections stay open (a VM, Fly.io, Render, a container service) or use a hosted realtime service, and point the page at that URL"
        ),
        senders=_ids("vercel", "netlify"),
        test=lambda a: a.status != 101,
    ),
    # -- reverse proxies with a backend problem --------------------------------------------------------
    R(
        HANDSHAKE_NO_BACKEND,
        N_("HAProxy has no server up in the backend for this request"),
        N_(
            "start the WebSocket server, then check the backend's server lines (address, port) and its health check (option httpchk: a WebSocket-only server may answer 426 to it: http-check expect status 426 or serve /health)"
        ),
        statuses=_s(503),
        origin=_ids("haproxy"),
    ),
    R(
        HANDSHAKE_BAD_GATEWAY,
        N_(
            "Apache's proxy could not connect to its backend (mod_proxy answers 503 when the backend refuses)"
        ),
        N_(
            "start the WebSocket server behind Apache and check the ProxyPass address and port (Apache's error log names the backend it tried: AH00957)"
        ),
        statuses=_s(503),
        origin=_ids("apache"),
        body=r"temporarily unable to service your\s+request",
    ),
    R(
        HANDSHAKE_NO_BACKEND,
        N_("Envoy has no healthy host in the cluster for this route"),
        N_(
            "start the WebSocket server and check the cluster's endpoints and health check in Envoy's config (admin /clusters shows each host's health)"
        ),
        statuses=_s(503),
        origin=_ids("envoy"),
        body=r"no healthy upstream",
    ),
    R(
        HANDSHAKE_BAD_GATEWAY,
        N_("Envoy could not connect to the cluster's host"),
        N_("start the WebSocket server at the cluster's address and port, or fix the cluster's endpoints"),
        statuses=_s(502, 503),
        origin=_ids("envoy"),
    ),
    R(
        HANDSHAKE_NOT_FOUND,
        N_("no route of Envoy's route table matches {resource}"),
        N_(
            "add a route for {resource} (with the WebSocket upgrade enabled) to Envoy's virtual host, or fix the path in the client URL"
        ),
        statuses=_s(404),
        origin=_ids("envoy"),
    ),
    R(
        HANDSHAKE_NOT_FOUND,
        N_("the Express app has no route for {resource}, and nothing takes the upgrade there"),
        N_(
            "attach the WebSocket server to the same HTTP server (new WebSocketServer({{ server }}) or {{ server, path: '{resource}' }}), or fix the path in the client URL"
        ),
        statuses=_s(404),
        origin=_ids("express"),
    ),
    R(
        HANDSHAKE_NOT_FOUND,
        N_("no router of Traefik matches this host and path"),
        N_(
            "add a router rule for Host(`{host}`) and PathPrefix(`{resource}`) to the WebSocket service, or fix the URL"
        ),
        statuses=_s(404),
        origin=_ids("traefik"),
    ),
    R(
        HANDSHAKE_FORBIDDEN,
        N_(
            "uvicorn refused the WebSocket: no websocket route matches {resource}, or the endpoint closed before accepting"
        ),
        N_(
            "check the path of the @app.websocket route and that the endpoint calls await websocket.accept() before any check that may close it"
        ),
        statuses=_s(403),
        origin=_ids("uvicorn"),
    ),
    # -- what the reply is -------------------------------------------------------------------------------
    R(
        HANDSHAKE_EVENT_STREAM,
        N_("a Server-Sent Events stream answered at {url}, not a WebSocket server"),
        N_(
            "open it with new EventSource('{http_url}') in the page (one-way, server to client), or point the WebSocket client at the WebSocket endpoint"
        ),
        statuses=_r(200, 299),
        ctype="text/event-stream",
    ),
    R(
        HANDSHAKE_WEB_PAGE,
        N_("an SPA's index.html answered at {url} (the fallback for unknown paths), not a WebSocket server"),
        N_(
            "the server or proxy serves index.html for every path: route {resource} to the WebSocket server before the fallback (nginx: a location {resource} with proxy_pass and the upgrade lines, above try_files ... /index.html)"
        ),
        statuses=_r(200, 299),
        test=_spa,
    ),
    R(
        HANDSHAKE_WEB_PAGE,
        N_("a web page answered at {url}, not a WebSocket server"),
        N_(
            "the URL points at the web site (static server or SPA fallback): use the WebSocket server's port or path, or proxy that path to it with the upgrade lines"
        ),
        statuses=_r(200, 299),
        test=lambda a: (
            "html" in (a.content_type or "").lower()
            or a.body_text.lstrip()[:15].lower().startswith(("<!doctype", "<html"))
        ),
    ),
    R(
        HANDSHAKE_NOT_WEBSOCKET,
        N_("an HTTP endpoint answered with no content (a health check?), not a WebSocket server"),
        N_("point the client at the WebSocket endpoint"),
        statuses=_s(204, 205),
    ),
    R(
        HANDSHAKE_NOT_WEBSOCKET,
        N_("an HTTP server answered without upgrading"),
        N_("this URL is served by a plain HTTP application: point the client at the WebSocket endpoint"),
        statuses=_r(200, 299),
    ),
    # -- 3xx -------------------------------------------------------------------------------------------
    R(
        HANDSHAKE_REDIRECT,
        N_("redirected to {location}"),
        N_(
            "WebSocket clients do not follow redirects: use the final URL ({location}) in the client{https_note}"
        ),
        statuses=_s(300, 301, 302, 303, 307, 308),
    ),
    R(
        HANDSHAKE_UNEXPECTED_STATUS,
        N_(
            "304 Not Modified to a request that asked for no cached copy: a cache between answers for the server"
        ),
        N_("make the cache in front pass requests with Upgrade to the server (no caching of {resource})"),
        statuses=_s(304),
    ),
    # -- 4xx -------------------------------------------------------------------------------------------
    R(
        HANDSHAKE_BAD_REQUEST,
        N_("the server rejected the handshake request"),
        N_(
            "the server or a proxy mangled the handshake headers (Sec-WebSocket-Key/Version, Upgrade): compare with the backend directly; check the proxy's upgrade lines"
        ),
        statuses=_s(400),
    ),
    R(
        HANDSHAKE_FORBIDDEN,
        N_("the server wants credentials{auth}"),
        N_("{forbidden_hint}"),
        statuses=_s(401),
    ),
    R(
        HANDSHAKE_CLIENT_ERROR,
        N_("payment required: the platform or API refuses this account (plan, quota or billing)"),
        N_("check the account's plan and billing with the provider that answered"),
        statuses=_s(402),
    ),
    R(
        HANDSHAKE_FORBIDDEN,
        N_("the server refused the upgrade{cdn}"),
        N_("{forbidden_hint}"),
        statuses=_s(403),
    ),
    R(
        HANDSHAKE_NOT_FOUND,
        N_("no WebSocket endpoint at path {resource}"),
        N_("fix the path in the client URL (/ vs /ws) or the proxy's location block"),
        statuses=_s(404),
    ),
    R(
        HANDSHAKE_METHOD_NOT_ALLOWED,
        N_("this path does not take a GET{allow}"),
        N_(
            "{resource} is an API route for other methods: point the client at the WebSocket endpoint's path, or let the proxy pass GET with the upgrade"
        ),
        statuses=_s(405),
    ),
    R(
        HANDSHAKE_CLIENT_ERROR,
        N_("the server has nothing acceptable for the request's Accept headers"),
        N_("the path serves another media type: point the client at the WebSocket endpoint"),
        statuses=_s(406),
    ),
    R(
        HANDSHAKE_CLIENT_ERROR,
        N_("a proxy on the way wants credentials{proxy_auth}"),
        N_(
            "this network goes through an authenticating proxy: give its credentials (--proxy http://user:pass@host:port where supported) or test from a network without it"
        ),
        statuses=_s(407),
    ),
    R(
        HANDSHAKE_REQUEST_TIMEOUT,
        N_("the server gave up waiting for the request"),
        N_(
            "look for what sits between this client and the server (an inspecting proxy, a slow link), and the server's client header timeout"
        ),
        statuses=_s(408),
    ),
    R(
        HANDSHAKE_CLIENT_ERROR,
        N_("the request conflicts with the resource's state"),
        N_("{resource} is an application route, not the WebSocket endpoint: fix the path"),
        statuses=_s(409),
    ),
    R(
        HANDSHAKE_NOT_FOUND,
        N_("the endpoint at {resource} is gone (removed for good)"),
        N_("use the WebSocket endpoint's current path in the client URL"),
        statuses=_s(410),
    ),
    R(
        HANDSHAKE_CLIENT_ERROR,
        N_("the server wants a Content-Length on a request that has no body"),
        N_("a proxy in front changes the request: compare with the backend directly"),
        statuses=_s(411),
    ),
    R(
        HANDSHAKE_CLIENT_ERROR,
        N_("the server says {status_text}"),
        N_(
            "{resource} is an application route that expects another request: point the client at the WebSocket endpoint"
        ),
        statuses=_s(412, 415, 416, 417, 422, 424, 428),
    ),
    R(
        HANDSHAKE_CLIENT_ERROR,
        N_("the URL is longer than the server accepts"),
        N_(
            "shorten the URL: pass long tokens after the connection opens (first message) or in a cookie, not in the query string"
        ),
        statuses=_s(414),
    ),
    R(
        HANDSHAKE_MISDIRECTED,
        N_("the server does not serve {host} on this connection"),
        N_(
            "use a host name the server is configured for (with --resolve HOST:PORT:ADDR to reach a given address), or add {host} to its configuration (nginx server_name, the certificate)"
        ),
        statuses=_s(421),
    ),
    R(
        HANDSHAKE_CLIENT_ERROR,
        N_("the server refuses TLS early data (0-RTT) for this request"),
        N_(
            "retry; if it keeps failing, turn off early data for this host on the server or edge (nginx ssl_early_data off;)"
        ),
        statuses=_s(425),
    ),
    R(
        HANDSHAKE_RATE_LIMITED,
        N_("too many connections or requests from this address{retry}"),
        N_(
            "close idle connections from this client, slow its reconnections, or raise the server's per-IP cap (--max-per-ip)"
        ),
        statuses=_s(429),
    ),
    R(
        HANDSHAKE_CLIENT_ERROR,
        N_("the operator blocks {host} for legal reasons"),
        N_(
            "the block is a decision of whoever runs the server or network: ask them, or use an endpoint outside it"
        ),
        statuses=_s(451),
    ),
    R(
        HANDSHAKE_CLIENT_ERROR,
        N_(
            "nginx's code for a client that closed the request, relayed by a proxy: one proxy of the chain gave up on the next"
        ),
        N_(
            "make each proxy's timeout longer than the one behind it (nginx proxy_read_timeout, the CDN's origin timeout) and read the inner proxy's log"
        ),
        statuses=_s(499),
    ),
    # -- 5xx -------------------------------------------------------------------------------------------
    R(
        HANDSHAKE_SERVER_ERROR,
        N_("the server failed on the handshake"),
        N_("read the log of {who_plain} at the time of the request"),
        statuses=_s(500),
    ),
    R(
        HANDSHAKE_SERVER_ERROR,
        N_("the server does not implement what the request asks (the method or the upgrade)"),
        N_(
            "this server is not a WebSocket server: point the client at the WebSocket endpoint, or put one behind this path"
        ),
        statuses=_s(501),
    ),
    R(
        HANDSHAKE_BAD_GATEWAY,
        N_("the proxy is up but its backend does not answer"),
        N_(
            "start the WebSocket server behind {culprit} (node server.js / lokin-doctor serve) and check the backend address and port of its {directive}"
        ),
        statuses=_s(502),
    ),
    R(
        HANDSHAKE_UNAVAILABLE,
        N_("the server is unavailable (overloaded or at its connection limit){retry}"),
        N_(
            "check the server's connection count and limits (/health), then raise --max-connections or add capacity"
        ),
        statuses=_s(503),
    ),
    R(
        HANDSHAKE_GATEWAY_TIMEOUT,
        N_("the backend did not answer the proxy in time"),
        N_(
            "the WebSocket server behind {culprit} is stuck or unreachable from it: check the server and the backend address of its {directive}"
        ),
        statuses=_s(504),
    ),
    R(
        HANDSHAKE_HTTP10_UPSTREAM,
        N_("the backend received HTTP/1.0, which cannot upgrade"),
        N_("the proxy speaks HTTP/1.0 to its backend (nginx's default): add to the location block:\n{lines}"),
        statuses=_s(505),
    ),
    R(
        HANDSHAKE_SERVER_ERROR,
        N_("the server says {status_text}"),
        N_("read the log of {who_plain} at the time of the request"),
        statuses=_s(506, 507, 508, 510),
    ),
    R(
        HANDSHAKE_CAPTIVE_PORTAL,
        N_("the network this machine is on wants a login before any connection"),
        N_("open any http:// page in a browser on this network and log in, or test from another network"),
        statuses=_s(511),
    ),
    R(
        HANDSHAKE_SERVER_ERROR,
        N_("{status_hint}the server failed on the handshake"),
        N_("read the log of {who_plain} at the time of the request"),
        statuses=_r(512, 599),
    ),
)

#: What 4xx/5xx statuses are called, for the rows that quote them.
STATUS_TEXT = {
    412: N_("a precondition failed"),
    415: N_("the media type is not supported"),
    416: N_("the range cannot be satisfied"),
    417: N_("the expectation failed"),
    422: N_("the content cannot be processed"),
    424: N_("a dependency failed"),
    428: N_("a precondition is required"),
    506: N_("a variant also negotiates"),
    507: N_("the storage is insufficient"),
    508: N_("it detected a loop"),
    510: N_("an extension is required"),
}

UNKNOWN_SAYS = N_("a status this tool has no reading for, not a WebSocket upgrade")
UNKNOWN_HINT = N_("read the log of {who_plain} for this status and the request path {resource}")


def reading_for(answer: Answer) -> Reading | None:
    """The first row of :data:`READINGS` that fits, None for a status the table does not know."""
    return next((r for r in READINGS if r.fits(answer)), None)


def _culprit(a: Answer) -> tuple[str, str]:
    """(id, display) of the proxy most likely not to forward the upgrade: the innermost proxy on the
    way (a reverse proxy before a CDN), else the sender when it is one."""
    ranked = sorted(
        (s for s in (*a.through, a.sender) if s.kind in PROXY_KINDS),
        key=lambda s: (s.kind is not Kind.PROXY, s.kind is not Kind.LOAD_BALANCER),
    )
    if ranked:
        return ranked[0].id, ranked[0].display()
    return "", _("the proxy in front")


def fields(a: Answer, target: Target, origin: str | None) -> dict[str, str]:
    """The values the templates use."""
    from dataclasses import replace

    resource = target.resource
    culprit_id, culprit = _culprit(a)
    location = a.header("location") or _("(no Location header)")
    https_note = (
        _("; the site redirects to https, so the client must use wss://")
        if location.startswith("https://") and not target.secure
        else ""
    )
    rids = a.request_ids()
    rid_key = next(
        (
            k
            for k in ("cf-ray", "x-amz-cf-id", "x-amzn-requestid", "x-azure-ref", "fly-request-id")
            if k in rids
        ),
        None,
    )
    rid_plain = f"{rid_key} {rids[rid_key]}" if rid_key else _("the request id")
    rid = _(" (request id {rid})").format(rid=rid_plain) if rid_key else ""
    retry_after = a.header("retry-after")
    retry = _("; it says to retry after {value}").format(value=retry_after) if retry_after else ""
    auth = a.header("www-authenticate")
    proxy_auth = a.header("proxy-authenticate")
    allow = a.header("allow")
    if origin:
        forbidden_hint = _(
            "the server rejects Origin {origin} or needs credentials: add the page's origin to the server's allow-list (ws verifyClient, lokin-doctor serve --allow-origin) or send the expected token"
        ).format(origin=origin)
    else:
        forbidden_hint = _(
            "the server needs credentials or an allowed Origin: retry with --origin https://your-site or --header 'Authorization: ...'; check the server's origin allow-list"
        )
    edge = a.edge
    cdn = _(" by a CDN/WAF") if edge is not None and edge.kind is Kind.CDN else ""
    values = {
        "line": a.line,
        "status": str(a.status),
        "who": a.who(),
        "who_plain": a.sender.display() if a.sender.id != "unknown" or a.sender.says else _("the server"),
        "edge": edge.display() if edge is not None else _("the proxy in front"),
        "culprit": culprit,
        "url": target.url,
        "http_url": replace(target, scheme="https" if target.secure else "http").url,
        "wss_url": replace(target, scheme="wss").url,
        "host": target.host,
        "port": str(target.port),
        "resource": resource,
        "location": location,
        "https_note": https_note,
        "versions": ", ".join(a.versions) or "?",
        "retry": retry,
        "auth": _(" (WWW-Authenticate: {value})").format(value=auth) if auth else "",
        "proxy_auth": _(" (Proxy-Authenticate: {value})").format(value=proxy_auth) if proxy_auth else "",
        "allow": _(" (Allow: {value})").format(value=allow) if allow else "",
        "rid": rid,
        "rid_plain": rid_plain,
        "cdn": cdn,
        "forbidden_hint": forbidden_hint,
        "status_text": _(STATUS_TEXT[a.status]) if a.status in STATUS_TEXT else a.reason or str(a.status),
        "status_hint": _(
            "{status} is Cloudflare's status for an origin error, but no Cloudflare header came with it: "
        ).format(status=a.status)
        if 520 <= a.status <= 530
        else "",
        "lines": NGINX_UPGRADE_LINES,
    }
    values["directive"] = BACKEND_DIRECTIVE.get(culprit_id, _("proxy configuration (proxy_pass in nginx)"))
    fix = UPGRADE_FIX.get(culprit_id, DEFAULT_UPGRADE_FIX)
    values["upgrade_fix"] = _(fix).format(**values)
    return values


def read(a: Answer, target: Target, origin: str | None) -> tuple[Cause, str, str]:
    """(cause, summary, hint) for one answer: the row's words after "{line} from {who}{said}"."""
    values = fields(a, target, origin)
    head = (
        _("{line} from {who}{said}").format(line=a.line, who=a.who(), said=a.said_phrase())
        + a.detail_phrase()
    )
    row = reading_for(a)
    if row is None:
        return (
            HANDSHAKE_UNEXPECTED_STATUS,
            _("{head}: {says}").format(head=head, says=_(UNKNOWN_SAYS)),
            _(UNKNOWN_HINT).format(**values),
        )
    summary = _("{head}: {says}").format(head=head, says=_(row.says).format(**values))
    return row.cause, summary, _(row.hint).format(**values)
