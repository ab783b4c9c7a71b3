"""Who answered: the senders the doctor recognises and the signatures that name them, as data.

Each :class:`SenderInfo` is one program or platform that can answer a WebSocket handshake instead of
the 101 (a reverse proxy's own error page, a CDN's, a load balancer's, a platform's, a WebSocket
library's refusal). Each :class:`Signature` is one fact of a reply that names it: a header (its value
matched by a regular expression), or a piece of the body. A signature is an *origin* signature when it
proves that sender wrote the reply (nginx's ``<center>nginx</center>`` tail, HAProxy's fixed pages,
``Server: awselb/2.0`` that the ALB sets only on its own replies), or a *path* signature when it proves
only that the reply went through it (``cf-ray``, ``Via: 1.1 google``: those are on the backend's replies
too). :func:`lokin_doctor.instruments.answer.read_answer` applies the table; nothing here does I/O.

Where each signature comes from (the projects' own sources and documentation) is listed in
docs/checks.md, "Who answered".
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from lokin_doctor.i18n import N_


class Kind(enum.StrEnum):
    """What kind of program a sender is."""

    WEBSOCKET_SERVER = "websocket-server"  # a WebSocket library or the doctor's own server
    PROXY = "reverse-proxy"
    CDN = "cdn"
    LOAD_BALANCER = "load-balancer"
    PLATFORM = "platform"  # a hosting platform's edge (Heroku, Fly, Vercel, Netlify)
    APPLICATION = "application"  # a web framework or application server
    WEB_SITE = "web-site"  # a static file server or an SPA's index.html
    EVENT_STREAM = "event-stream"
    UNKNOWN = "unknown"


class Role(enum.StrEnum):
    ORIGIN = "origin"  # the signature proves this sender wrote the reply
    PATH = "path"  # the signature proves only that the reply went through this sender


@dataclass(frozen=True)
class SenderInfo:
    """One sender: ``id`` (stable, in the JSON evidence), the name a person knows it by, its kind, and
    the statuses only it sends (a path sender that sends one of them wrote the reply)."""

    id: str
    name: str
    kind: Kind
    own_statuses: frozenset[int] = frozenset()


@dataclass(frozen=True)
class Signature:
    """One fact that names a sender.

    ``header``: a header name (lower case) whose value ``pattern`` matches (``""``: any value); with no
    header, ``pattern`` is searched in the body's first kilobytes (case-insensitive). ``version`` is the
    regex group holding the version, when there is one. ``likely``: the fact fits this sender but others
    could write it too (the summary says "probably").
    """

    sender: str
    pattern: str
    header: str | None = None
    role: Role = Role.ORIGIN
    likely: bool = False
    #: Only with this status (Go's "404 page not found" means something at 404 only).
    status: int | None = None

    def regex(self) -> re.Pattern[str]:
        return _compiled(self.pattern)


_CACHE: dict[str, re.Pattern[str]] = {}


def _compiled(pattern: str) -> re.Pattern[str]:
    found = _CACHE.get(pattern)
    if found is None:
        found = _CACHE[pattern] = re.compile(pattern, re.I | re.S)
    return found


K = Kind
SENDERS: dict[str, SenderInfo] = {
    s.id: s
    for s in (
        # The WebSocket servers themselves.
        SenderInfo("websockets", N_("the Python websockets server"), K.WEBSOCKET_SERVER),
        SenderInfo("lokin-doctor", "lokin-doctor serve", K.WEBSOCKET_SERVER),
        SenderInfo("ws", N_("the Node.js ws server"), K.WEBSOCKET_SERVER),
        SenderInfo("gorilla", N_("a Go gorilla/websocket server"), K.WEBSOCKET_SERVER),
        # Reverse proxies.
        SenderInfo("nginx", "nginx", K.PROXY, frozenset({494, 495, 496, 497, 499})),
        SenderInfo("openresty", "OpenResty (nginx)", K.PROXY, frozenset({494, 495, 496, 497, 499})),
        SenderInfo("apache", "Apache httpd", K.PROXY),
        SenderInfo("haproxy", "HAProxy", K.PROXY),
        SenderInfo("caddy", "Caddy", K.PROXY),
        SenderInfo("traefik", "Traefik", K.PROXY),
        SenderInfo("envoy", "Envoy", K.PROXY),
        SenderInfo("varnish", "Varnish", K.PROXY),
        SenderInfo("iis", "Microsoft IIS", K.PROXY),
        SenderInfo("squid", "Squid", K.PROXY),
        SenderInfo("tinyproxy", "tinyproxy", K.PROXY),
        # CDNs.
        SenderInfo(
            "cloudflare",
            "Cloudflare",
            K.CDN,
            frozenset({520, 521, 522, 523, 524, 525, 526, 527, 530}),
        ),
        SenderInfo("cloudfront", "Amazon CloudFront", K.CDN),
        SenderInfo("akamai", "Akamai", K.CDN),
        SenderInfo("fastly", "Fastly", K.CDN),
        SenderInfo("azure-front-door", "Azure Front Door", K.CDN),
        # Cloud load balancers.
        SenderInfo(
            "aws-elb",
            N_("the AWS load balancer (ELB/ALB)"),
            K.LOAD_BALANCER,
            frozenset({460, 463, 464, 561}),
        ),
        SenderInfo("aws-api-gateway", "Amazon API Gateway", K.LOAD_BALANCER),
        SenderInfo("google-lb", N_("Google Cloud's load balancer (Google Front End)"), K.LOAD_BALANCER),
        SenderInfo("azure-app-gateway", "Azure Application Gateway", K.LOAD_BALANCER),
        # Platforms.
        SenderInfo("heroku", N_("Heroku's router"), K.PLATFORM),
        SenderInfo("fly", N_("Fly.io's proxy"), K.PLATFORM),
        SenderInfo("vercel", "Vercel", K.PLATFORM),
        SenderInfo("netlify", "Netlify", K.PLATFORM),
        SenderInfo("render", "Render", K.PLATFORM),
        # Applications and application servers.
        SenderInfo("express", N_("an Express (Node.js) application"), K.APPLICATION),
        SenderInfo("uvicorn", "uvicorn (Starlette/FastAPI)", K.APPLICATION),
        SenderInfo("werkzeug", "Werkzeug (Flask)", K.APPLICATION),
        SenderInfo("gunicorn", "gunicorn", K.APPLICATION),
        SenderInfo("kestrel", "Kestrel (ASP.NET Core)", K.APPLICATION),
        SenderInfo("jetty", "Jetty", K.APPLICATION),
        SenderInfo("tomcat", "Tomcat", K.APPLICATION),
        SenderInfo("php", N_("a PHP application"), K.APPLICATION),
        SenderInfo("python-http-server", "python -m http.server", K.WEB_SITE),
        # What a reply is, when nothing names who sent it.
        SenderInfo("event-stream", N_("a Server-Sent Events endpoint"), K.EVENT_STREAM),
        SenderInfo("web-site", N_("a web site"), K.WEB_SITE),
        SenderInfo("spa", N_("a single-page application's index.html (SPA fallback)"), K.WEB_SITE),
        SenderInfo("unknown", N_("a server that does not say what it is"), K.UNKNOWN),
        # A Via header no signature knows: some proxy was on the way.
        SenderInfo("via", N_("a proxy"), K.PROXY),
    )
}

S = Signature
P = Role.PATH

#: Every signature, strongest first within each role. The version group, when any, is group 1.
SIGNATURES: tuple[Signature, ...] = (
    # -- bodies: the page says who wrote it ----------------------------------------------------------
    # nginx src/http/ngx_http_special_response.c: every error page ends "<hr><center>nginx/VER</center>".
    S("openresty", r"<center>openresty(?:/([\d.]+))?</center>"),
    S("nginx", r"<center>nginx(?:/([\d.]+))?</center>"),
    # Azure Application Gateway's pages use nginx's layout with its own name in the tail.
    S("azure-app-gateway", r"<center>Microsoft-Azure-Application-Gateway(?:/(v\d))?</center>"),
    # Apache httpd: modules/http/http_protocol.c ends its pages with <address>SERVER_SIGNATURE</address>.
    S("apache", r"<address>Apache(?:/([\d.]+))?[^<]*Server at "),
    S("apache", r"<title>50[234] Proxy Error</title>|The proxy server received an invalid\s+response"),
    # Apache's own 503 page (modules/http/http_protocol.c), what mod_proxy answers when the backend refuses.
    S("apache", r"The server is temporarily unable to service your\s+request due to maintenance downtime"),
    # HAProxy src/http.c http_err_msgs: "<html><body><h1>503 Service Unavailable</h1>\nNo server is ...".
    S(
        "haproxy",
        r"<html><body><h1>\d{3} [^<]+</h1>\s*(?:No server is available to handle this request|"
        r"The server returned an invalid or incomplete response|The server didn't respond in time|"
        r"Your browser sent an invalid request|Request forbidden by administrative rules|"
        r"You have sent too many requests in a given amount of time|"
        r"Your browser didn't send a complete request in time|An internal server error occured|"
        r"The resource could not be found|Request sent to a non-authoritative server)",
    ),
    # Envoy local replies (source/common/router/router.cc, upstream_request.cc): plain text bodies.
    S(
        "envoy",
        r"^\s*(?:no healthy upstream|upstream connect error or disconnect/reset before headers|"
        r"upstream request timeout)",
    ),
    # Cloudflare's error pages: the cf-error-details block, /cdn-cgi/ assets, "Cloudflare Ray ID".
    S("cloudflare", r"id=\"cf-error-details\"|/cdn-cgi/styles/|Cloudflare Ray ID|\| Cloudflare</title>"),
    # CloudFront's error pages: "<H2>The request could not be satisfied.</H2> ... Generated by cloudfront".
    S("cloudfront", r"Generated by cloudfront \(CloudFront\)"),
    # Akamai's edge errors end with "Reference&#32;&#35;18.xxxx.xxxx".
    S("akamai", r"Reference(?:&#32;|\s)(?:&#35;|#)\d+\.[0-9a-f]+\.\d+"),
    # Fastly: "Fastly error: unknown domain"; Varnish's "Guru Meditation" page (Fastly runs Varnish).
    S("fastly", r"Fastly error: unknown domain"),
    S("varnish", r"Guru Meditation|<title>\d{3} [^<]*</title>.*Varnish cache server"),
    # Google Front End (Google Cloud's load balancers, App Engine): "Error 502 (Server Error)!!1".
    S("google-lb", r"<title>Error \d{3} \([^)]*\)!!1</title>|That\u2019s an error\.|That's an error\."),
    # Azure Front Door's own error page.
    S("azure-front-door", r"Our services aren't available right now"),
    # Heroku's router serves its error pages from herokucdn.com.
    S("heroku", r"herokucdn\.com/error-pages/"),
    # The WebSocket libraries' refusals.
    S("websockets", r"^Failed to open a WebSocket connection"),
    S(
        "ws",
        r"^(?:Invalid Upgrade header|Missing or invalid Sec-WebSocket-Key header|"
        r"Missing or invalid Sec-WebSocket-Version header|Invalid Sec-WebSocket-Protocol header|"
        r"Invalid or unacceptable Sec-WebSocket-Extensions header|Invalid HTTP method)$",
    ),
    # ws's own HTTP server (new WebSocketServer({port})) answers a request without Upgrade with 426 and
    # http.STATUS_CODES[426] as text/plain; other servers may say the same.
    S("ws", r"^Upgrade Required$", status=426, likely=True),
    # Express's finalhandler: "<pre>Cannot GET /path</pre>".
    S("express", r"<pre>Cannot GET [^<]*</pre>"),
    # Go net/http's NotFound ("404 page not found"), which Traefik answers for a request no router takes.
    S("traefik", r"^404 page not found\s*$", status=404, likely=True),
    # Werkzeug's pages (Flask).
    S("werkzeug", r"The requested URL was not found on the server\. If you entered the URL manually"),
    # -- headers: the Server header (origin unless the sender rewrites it on every reply) --------------
    S("lokin-doctor", r"^lokin-doctor(?:/(\S+))?", header="server"),
    S("websockets", r"websockets/(\S+)", header="server"),
    S("aws-elb", r"^awselb", header="server"),
    S("cloudfront", r"^CloudFront$", header="server"),
    S("azure-app-gateway", r"^Microsoft-Azure-Application-Gateway(?:/(\S+))?", header="server"),
    S("openresty", r"^openresty(?:/([\d.]+))?", header="server"),
    S("nginx", r"^nginx(?:/([\d.]+))?", header="server"),
    S("apache", r"^Apache(?:/([\d.]+))?", header="server"),
    S("caddy", r"^Caddy", header="server"),
    S("envoy", r"^(?:istio-)?envoy", header="server"),
    S("haproxy", r"^HAProxy", header="server"),
    S("traefik", r"^Traefik", header="server"),
    S("iis", r"^Microsoft-IIS(?:/([\d.]+))?", header="server"),
    S("akamai", r"^AkamaiGHost", header="server"),
    S("squid", r"^squid(?:/([\d.]+))?", header="server"),
    S("tinyproxy", r"^tinyproxy(?:/([\d.]+))?", header="server"),
    S("google-lb", r"^(?:gws|GFE)(?:/(\S+))?", header="server"),
    S("uvicorn", r"^uvicorn", header="server"),
    S("werkzeug", r"^Werkzeug(?:/([\d.]+))?", header="server"),
    S("gunicorn", r"^gunicorn(?:/([\d.]+))?", header="server"),
    S("kestrel", r"^Kestrel", header="server"),
    S("jetty", r"^Jetty\(([^)]*)\)", header="server"),
    S("tomcat", r"^Apache-Coyote", header="server"),
    S("python-http-server", r"^SimpleHTTP(?:/(\S+))?", header="server"),
    S("heroku", r"^Heroku", header="server"),
    S("render", r"^Render", header="server"),
    S("vercel", r"", header="x-vercel-error"),
    S("aws-api-gateway", r"", header="x-amzn-errortype"),
    # X-Powered-By names the application when the Server header does not.
    S("express", r"^Express", header="x-powered-by"),
    S("php", r"^PHP(?:/([\d.]+))?", header="x-powered-by"),
    # gorilla/websocket's Upgrader.returnError: "Sec-Websocket-Version: 13" and http.Error's body.
    S("gorilla", r"^13$", header="sec-websocket-version", likely=True),
    # -- path: the reply went through these (they add the header to the backend's replies too) ---------
    S("cloudflare", r"", header="cf-ray", role=P),
    S("cloudflare", r"^cloudflare", header="server", role=P),
    S("cloudfront", r"", header="x-amz-cf-id", role=P),
    S("cloudfront", r"\(CloudFront\)", header="via", role=P),
    S("google-lb", r"\bgoogle\b", header="via", role=P),
    S("google-lb", r"^Google Frontend", header="server", role=P),
    S("heroku", r"\bvegur\b", header="via", role=P),
    # Heroku's Router 2.0 says "Via: 2.0 heroku-router"; both routers add the heroku-nel reporting group.
    S("heroku", r"\bheroku-router\b", header="via", role=P),
    S("heroku", r"\"heroku-nel\"", header="report-to", role=P),
    # The load balancers' stickiness cookies, on the backend's replies (AWSALB/AWSALBCORS: an ALB's
    # duration-based stickiness; AWSELB: a Classic LB's; ApplicationGatewayAffinity: Azure's).
    S("aws-elb", r"^AWS(?:ALB(?:CORS|TG|TGCORS)?|ELB)=", header="set-cookie", role=P),
    S("azure-app-gateway", r"^ApplicationGatewayAffinity(?:CORS)?=", header="set-cookie", role=P),
    S("fly", r"\bfly\.io\b", header="via", role=P),
    S("fly", r"", header="fly-request-id", role=P),
    S("fly", r"^Fly/", header="server", role=P),
    S("fastly", r"^cache-", header="x-served-by", role=P),
    S("fastly", r"", header="x-fastly-request-id", role=P),
    S("varnish", r"\bvarnish\b", header="via", role=P),
    S("akamai", r"", header="x-akamai-transformed", role=P),
    S("azure-front-door", r"", header="x-azure-ref", role=P),
    S("vercel", r"", header="x-vercel-id", role=P),
    S("vercel", r"^Vercel", header="server", role=P),
    S("netlify", r"", header="x-nf-request-id", role=P),
    S("netlify", r"^Netlify", header="server", role=P),
    S("render", r"", header="rndr-id", role=P),
    S("envoy", r"", header="x-envoy-upstream-service-time", role=P),
    S("aws-api-gateway", r"", header="x-amz-apigw-id", role=P),
)

#: Request-id headers that CDNs, load balancers and platforms add: quoted in the evidence, they let the
#: operator find the request in the provider's logs.
REQUEST_ID_HEADERS = (
    "cf-ray",
    "x-amz-cf-id",
    "x-amz-cf-pop",
    "x-amzn-trace-id",
    "x-amzn-requestid",
    "x-amz-apigw-id",
    "x-request-id",
    "x-cloud-trace-context",
    "x-azure-ref",
    "fly-request-id",
    "x-served-by",
    "x-cache",
    "x-vercel-id",
    "x-nf-request-id",
    "rndr-id",
    "x-envoy-upstream-service-time",
)

#: The headers of a reply quoted as they are in the evidence ("headers_of_interest").
HEADERS_OF_INTEREST = (
    "server",
    "via",
    "x-powered-by",
    "sec-websocket-version",
    "retry-after",
    "www-authenticate",
    "proxy-authenticate",
    "location",
    "content-type",
    "upgrade",
    "connection",
    "x-vercel-error",
    "x-amzn-errortype",
    "cf-error-type",
)


def info(sender_id: str) -> SenderInfo:
    return SENDERS[sender_id]
