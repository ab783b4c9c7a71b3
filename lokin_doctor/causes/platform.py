"""Cause codes of the platform layer: CDNs, cloud load balancers and hosting platforms that answer for
the origin (see lokin_doctor/causes/__init__.py). The readings that give them are the handshake check's
status table (lokin_doctor/checks/chain/answer_table.py); docs/checks.md says where each comes from."""

from __future__ import annotations

from lokin_doctor.causes import Layer, Tag, cause
from lokin_doctor.i18n import N_

L = Layer.PLATFORM
_DOWN = (Tag.NOT_A_URL_PROBLEM, Tag.BACKEND_DOWN)

PLATFORM_ORIGIN_ERROR = cause(
    "platform.origin-error",
    L,
    N_(
        "Cloudflare 520 (or 527): the origin answered Cloudflare with something empty, unknown or invalid (a reset, a reply too large, headers it cannot read)"
    ),
    N_(
        "read the origin server's log at that time; make it answer the upgrade with a valid 101 (compare by connecting to the origin directly) and keep its response headers under 32 KiB"
    ),
    tags=(Tag.NOT_A_URL_PROBLEM,),
)
PLATFORM_ORIGIN_REFUSED = cause(
    "platform.origin-refused",
    L,
    N_(
        "Cloudflare 521: the origin refused Cloudflare's connection: the server is down, or its firewall blocks Cloudflare's addresses"
    ),
    N_(
        "start the origin server on the port Cloudflare uses (80 for Flexible, 443 for Full), and allow Cloudflare's IP ranges (https://www.cloudflare.com/ips) in its firewall"
    ),
    tags=_DOWN,
)
PLATFORM_ORIGIN_CONNECT_TIMEOUT = cause(
    "platform.origin-connect-timeout",
    L,
    N_(
        "Cloudflare 522: Cloudflare's TCP connection to the origin timed out: the origin drops Cloudflare's packets or is overloaded"
    ),
    N_(
        "allow Cloudflare's IP ranges in the origin's firewall (security group), check that the DNS record points at the right origin address and that the server accepts connections"
    ),
    tags=_DOWN,
)
PLATFORM_ORIGIN_UNREACHABLE = cause(
    "platform.origin-unreachable",
    L,
    N_("Cloudflare 523: Cloudflare cannot reach the origin at all (the DNS record's address has no route)"),
    N_("fix the origin address in the Cloudflare DNS record (A/AAAA), and check the origin's network"),
    tags=_DOWN,
)
PLATFORM_ORIGIN_TIMEOUT = cause(
    "platform.origin-timeout",
    L,
    N_(
        "Cloudflare 524: Cloudflare connected to the origin, but the origin sent no HTTP reply within Cloudflare's timeout (100 s): the upgrade is stuck on the server"
    ),
    N_(
        "make the server answer the upgrade at once (do slow work after the 101), and read its log for the stuck request"
    ),
    tags=(Tag.NOT_A_URL_PROBLEM,),
)
PLATFORM_ORIGIN_TLS_FAILED = cause(
    "platform.origin-tls-failed",
    L,
    N_(
        "Cloudflare 525: the TLS handshake between Cloudflare and the origin failed (SSL mode Full or Full strict, and the origin does not speak TLS on 443 or shares no cipher)"
    ),
    N_(
        "serve TLS on the origin's port 443 (a certificate, TLS 1.2+), or set the zone's SSL/TLS mode to match what the origin speaks"
    ),
    tags=(Tag.NOT_A_URL_PROBLEM,),
)
PLATFORM_ORIGIN_CERT_INVALID = cause(
    "platform.origin-cert-invalid",
    L,
    N_(
        "Cloudflare 526: the origin's certificate is not valid for Cloudflare (SSL mode Full strict): expired, self-signed, or not for the host name"
    ),
    N_(
        "install a valid certificate for the host name on the origin (a public CA, or a Cloudflare Origin CA certificate)"
    ),
    tags=(Tag.NOT_A_URL_PROBLEM, Tag.CERTIFICATE),
)
PLATFORM_ORIGIN_DNS = cause(
    "platform.origin-dns",
    L,
    N_(
        "Cloudflare 530 (error 1016): Cloudflare cannot resolve the origin's host name (a CNAME to a name that does not exist)"
    ),
    N_("fix the origin record in the Cloudflare DNS (the CNAME target must resolve)"),
    tags=_DOWN,
)
PLATFORM_TUNNEL_DOWN = cause(
    "platform.tunnel-down",
    L,
    N_("Cloudflare 530 (error 1033): the Cloudflare Tunnel for this host name has no connector running"),
    N_("start cloudflared on the origin machine (cloudflared tunnel run NAME) and check its log"),
    tags=_DOWN,
)
PLATFORM_EDGE_BLOCKED = cause(
    "platform.edge-blocked",
    L,
    N_(
        "the CDN or firewall in front (Cloudflare, CloudFront, Akamai, AWS WAF) refused the request itself, before the server saw it: a firewall rule, a bot check, a geo restriction"
    ),
    N_(
        "find the rule in the CDN's firewall events (search the request id in the evidence) and allow WebSocket requests to this path, or test from an allowed network"
    ),
    tags=(Tag.NOT_A_URL_PROBLEM,),
)
PLATFORM_DIRECT_IP_REFUSED = cause(
    "platform.direct-ip-refused",
    L,
    N_("Cloudflare error 1003: the URL names one of Cloudflare's addresses instead of the site's host name"),
    N_("use the site's host name in the URL; Cloudflare routes by name"),
)
PLATFORM_LB_CLIENT_CLOSED = cause(
    "platform.lb-client-closed",
    L,
    N_(
        "AWS ALB 460: the load balancer says the client closed the connection before its idle timeout: a client (or a proxy in front of the ALB) gave up first"
    ),
    N_(
        "raise the client's or front proxy's timeout above the ALB's idle timeout, and make the target answer sooner"
    ),
)
PLATFORM_LB_FORWARDED_FOR = cause(
    "platform.lb-forwarded-for",
    L,
    N_(
        "AWS ALB 463: the request's X-Forwarded-For lists more than 30 addresses: a proxy loop in front of the ALB"
    ),
    N_("find the loop (a proxy forwarding to itself or back to the ALB) and break it"),
)
PLATFORM_LB_PROTOCOL_MISMATCH = cause(
    "platform.lb-protocol-mismatch",
    L,
    N_(
        "AWS ALB 464: the request's protocol does not fit the target group's protocol version (an HTTP/2 or gRPC target group for an HTTP/1.1 WebSocket upgrade)"
    ),
    N_("use a target group whose protocol version is HTTP1 for the WebSocket path"),
    tags=(Tag.NOT_A_URL_PROBLEM,),
)
PLATFORM_LB_AUTH_ERROR = cause(
    "platform.lb-auth-error",
    L,
    N_("AWS ALB 561: the load balancer's authenticate action got an error from the identity provider"),
    N_(
        "check the listener's authenticate-oidc/cognito settings and the IdP's endpoints; a WebSocket client cannot follow the login redirect, so exempt the WebSocket path or send the session cookie"
    ),
    tags=(Tag.NOT_A_URL_PROBLEM,),
)
PLATFORM_NO_WEBSOCKET = cause(
    "platform.no-websocket",
    L,
    N_(
        "the host is a platform whose functions do not carry WebSocket connections (Vercel, Netlify): the request never reaches a WebSocket server"
    ),
    N_(
        "run the WebSocket server somewhere that keeps connections open (a VM, Fly.io, Render, a container service) or use a hosted realtime service, and point the page at it"
    ),
    tags=(Tag.NOT_A_URL_PROBLEM,),
)

# -- limits of the platform in front (lokin_doctor/checks/production/platform.py) -------------------------
PLATFORM_IDLE_TIMEOUT = cause(
    "platform.idle-timeout",
    L,
    N_(
        "the CDN or load balancer in front cut the idle WebSocket at its documented idle timeout (Cloudflare 100 s, an AWS load balancer 60 s, Heroku 55 s...): the server sent nothing in that time"
    ),
    N_(
        "make the server ping every connection well within the platform's idle timeout (every 25-30 s fits them all), or raise the timeout where the platform allows it"
    ),
    tags=(Tag.NOT_A_URL_PROBLEM, Tag.IDLE_CUT),
)
PLATFORM_LIFETIME_CUT = cause(
    "platform.lifetime-cut",
    L,
    N_(
        "the load balancer in front closed the WebSocket at its maximum connection time, idle or not (Google Cloud's backend service timeout, 30 s by default)"
    ),
    N_(
        "raise the limit above the longest session you need (Google: the backend service timeout); pings do not extend it, so clients must reconnect when it ends"
    ),
    tags=(Tag.NOT_A_URL_PROBLEM, Tag.IDLE_CUT),
)
PLATFORM_PING_TOO_SLOW = cause(
    "platform.ping-too-slow",
    L,
    N_(
        "the server's keepalive is slower than the idle timeout of the CDN or load balancer in front: an idle connection is cut before the next ping"
    ),
    N_(
        "make the server ping more often than the platform's idle timeout (ws: setInterval(() => ws.ping(), 25000); websockets: ping_interval=25; Socket.IO: pingInterval 25000)"
    ),
    warn=True,
    fail=False,
    tags=(Tag.NOT_A_URL_PROBLEM, Tag.IDLE_CUT),
)
