"""The CDNs, cloud load balancers and hosting platforms whose WebSocket limits the doctor knows, as data.

Each :class:`Platform` says how it is recognised without any network look-up, and the documented limit it
puts on a WebSocket, with the page that documents it:

* **headers** of the 101 (or of any answer): the signatures of :mod:`lokin_doctor.instruments.senders`
  (``cf-ray``, ``x-amz-cf-id``, ``Via: 1.1 google``, ``fly-request-id``, ``Via: 1.1 vegur``, the AWSALB
  and ApplicationGatewayAffinity cookies...), read by :func:`lokin_doctor.instruments.answer.identify`:
  one table for "who answered" and for "who is in front";
* **names**: the URL's host, the CNAME chain and the certificate's names (``*.cloudfront.net``,
  ``*.herokuapp.com``, ``*.fly.dev``, ``*.azurefd.net``, ``*.elb.amazonaws.com``);
* **addresses**: the ranges a platform publishes and that are small enough to ship (Cloudflare's list,
  https://www.cloudflare.com/ips/);
* **certificate issuer**, where only the platform's edge uses it (Cloudflare's own issuing CAs; its
  Origin CA is on origins, not on the edge, and does not count).

A :class:`Limit` is either an idle timeout (no traffic for that long closes the connection: server pings
keep it open) or a lifetime (the connection is closed after that long, idle or not: pings do not help).
``firm`` is False where the vendor's own pages disagree (Fly documents a 60 s idle timeout and announced
its removal): such a figure explains a drop that matches it but never makes a warning on its own.
docs/checks.md ("platform") lists every figure with its source. Nothing here does I/O.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from lokin_doctor.i18n import N_
from lokin_doctor.instruments import senders


class LimitKind(enum.StrEnum):
    IDLE = "idle"  # closed after this long without traffic
    LIFETIME = "lifetime"  # closed after this long, idle or not


@dataclass(frozen=True)
class Limit:
    """A documented limit on a WebSocket through the platform."""

    #: Seconds; None when the vendor documents no WebSocket figure.
    seconds: float | None
    kind: LimitKind
    #: What counts as traffic, and what the figure is called in the vendor's documentation.
    what: str
    #: Whether and how it can be changed (an English msgid).
    configurable: str
    #: The fix when the limit cuts connections (an English msgid; ``{half}``: half the limit, in seconds).
    fix: str
    #: The page that documents the figure.
    source: str
    firm: bool = True
    #: Where the vendor's pages have given a higher figure for the same timeout (Cloudflare: 100 s, then
    #: 120 s and 125 s): a drop anywhere from ``seconds`` to this is the platform's. Warnings and the
    #: advice use ``seconds``, the lowest, which is safe under every version.
    upper: float | None = None


@dataclass(frozen=True)
class Platform:
    """A CDN, load balancer or platform: its sender id (senders.SENDERS), its limit, how it is recognised."""

    id: str
    limit: Limit
    host_suffixes: tuple[str, ...] = ()
    networks: tuple[str, ...] = ()
    #: Regular expressions searched in the certificate's issuer (RFC 4514 string).
    issuers: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return senders.info(self.id).name


IDLE = LimitKind.IDLE
CLOUDFLARE_NETWORKS = (
    # https://www.cloudflare.com/ips-v4 and /ips-v6
    *("173.245.48.0/20", "103.21.244.0/22", "103.22.200.0/22", "103.31.4.0/22", "141.101.64.0/18"),
    *("108.162.192.0/18", "190.93.240.0/20", "188.114.96.0/20", "197.234.240.0/22", "198.41.128.0/17"),
    *("162.158.0.0/15", "104.16.0.0/13", "104.24.0.0/14", "172.64.0.0/13", "131.0.72.0/22"),
    *("2400:cb00::/32", "2606:4700::/32", "2803:f800::/32", "2405:b500::/32", "2405:8100::/32"),
    *("2a06:98c0::/29", "2c0f:f248::/32"),
)

PLATFORMS: dict[str, Platform] = {
    p.id: p
    for p in (
        Platform(
            "cloudflare",
            Limit(
                100.0,
                IDLE,
                N_(
                    "Proxy Read Timeout: nothing from the origin for that long (100 s; 120 s, then 125 s in later versions of the page)"
                ),
                N_("only on Enterprise plans, through the account team"),
                N_(
                    "make the server ping every {half} s or less (any message counts); Cloudflare raises the 100 s only for Enterprise zones"
                ),
                "https://developers.cloudflare.com/fundamentals/reference/connection-limits/",
                upper=125.0,
            ),
            host_suffixes=(".cdn.cloudflare.net",),
            networks=CLOUDFLARE_NETWORKS,
            issuers=(r"CN=Cloudflare (?:Inc (?:ECC|RSA) CA|TLS Issuing)",),
        ),
        Platform(
            "cloudfront",
            Limit(
                600.0,
                IDLE,
                N_(
                    "WebSocket origin response (idle) timeout: no byte from the origin to the client for that long"
                ),
                N_("no"),
                N_(
                    "make the server send something (a ping) every {half} s or less: CloudFront's WebSocket idle timeout cannot be raised"
                ),
                "https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/cloudfront-limits.html#limits-websockets",
            ),
            host_suffixes=(".cloudfront.net",),
        ),
        Platform(
            "aws-elb",
            Limit(
                60.0,
                IDLE,
                N_(
                    "connection idle timeout, the ALB and Classic LB default: no data sent or received for that long"
                ),
                N_("yes: idle_timeout.timeout_seconds, 1-4000 s (Classic: 1-3600 s)"),
                N_(
                    "raise the load balancer's idle timeout (aws elbv2 modify-load-balancer-attributes --load-balancer-arn ARN --attributes Key=idle_timeout.timeout_seconds,Value=3600) or make the server ping every {half} s or less"
                ),
                "https://docs.aws.amazon.com/elasticloadbalancing/latest/application/edit-load-balancer-attributes.html#connection-idle-timeout",
            ),
            host_suffixes=(".elb.amazonaws.com",),
        ),
        Platform(
            "google-lb",
            Limit(
                30.0,
                LimitKind.LIFETIME,
                N_("backend service timeout, 30 s by default: for a WebSocket, the longest it may stay open"),
                N_("yes: the backend service's timeout (GKE: timeoutSec in a BackendConfig)"),
                N_(
                    "raise the backend service timeout above the longest session you need (gcloud compute backend-services update NAME --global --timeout=86400; GKE: timeoutSec in a BackendConfig); pings do not extend it, so clients must reconnect when it ends"
                ),
                "https://cloud.google.com/load-balancing/docs/https#timeout-bes",
            ),
        ),
        Platform(
            "azure-front-door",
            Limit(
                300.0,
                IDLE,
                N_(
                    "WebSocket idle timeout: no data from the origin or the client for that long; at most 4 hours open"
                ),
                N_("no"),
                N_(
                    "make the server (or the client) send something every {half} s or less; Front Door's 5 minutes cannot be changed, and it closes every WebSocket after 4 hours: reconnect on close"
                ),
                "https://learn.microsoft.com/en-us/azure/frontdoor/standard-premium/websocket",
            ),
            host_suffixes=(".azurefd.net",),
        ),
        Platform(
            "azure-app-gateway",
            Limit(
                None,
                IDLE,
                N_("no WebSocket idle timeout documented"),
                N_("unknown"),
                N_("hold a connection through it (--hold 300) to measure when it cuts idle WebSockets"),
                "https://learn.microsoft.com/en-us/azure/application-gateway/application-gateway-websocket",
            ),
        ),
        Platform(
            "fly",
            Limit(
                60.0,
                IDLE,
                N_(
                    "idle connection timeout of the public proxy, as documented: no data for that long; Fly announced in 2023 that it removed it"
                ),
                N_("no"),
                N_("make the server ping every {half} s or less"),
                "https://fly.io/docs/reference/services/#idle-connection-timeouts",
                firm=False,
            ),
            host_suffixes=(".fly.dev",),
        ),
        Platform(
            "heroku",
            Limit(
                55.0,
                IDLE,
                N_("router timeout: no byte either way for that long, after a first byte within 30 s"),
                N_("no"),
                N_(
                    "make the server (or the client) send something every {half} s or less: Heroku's router closes a connection with no data for 55 s, and this cannot be changed"
                ),
                "https://devcenter.heroku.com/articles/http-routing#timeouts",
            ),
            host_suffixes=(".herokuapp.com", ".herokudns.com"),
        ),
    )
}


@dataclass(frozen=True)
class Recognised:
    """A platform found in front, with the facts that named it (``cf-ray: ...``, ``CNAME x.cloudfront.net``)."""

    platform: Platform
    evidence: tuple[str, ...]

    def as_evidence(self) -> dict[str, Any]:
        limit = self.platform.limit
        return {
            "platform": self.platform.id,
            "name": self.platform.name,
            "recognised_by": list(self.evidence),
            "limit_s": limit.seconds,
            "limit_kind": limit.kind.value,
            **({"limit_upper_s": limit.upper} if limit.upper is not None else {}),
            "source": limit.source,
        }


def _by_name(name: str) -> list[tuple[str, str]]:
    lname = name.lower().rstrip(".")
    return [(p.id, s) for p in PLATFORMS.values() for s in p.host_suffixes if lname.endswith(s)]


_NETS: dict[str, list[ipaddress.IPv4Network | ipaddress.IPv6Network]] = {}


def _networks(platform: Platform) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    found = _NETS.get(platform.id)
    if found is None:
        found = _NETS[platform.id] = [ipaddress.ip_network(n) for n in platform.networks]
    return found


def recognise(
    headers: Iterable[tuple[str, str]] = (),
    *,
    status: int = 101,
    names: Iterable[tuple[str, str]] = (),
    addresses: Iterable[str] = (),
    certificate: dict[str, Any] | None = None,
) -> list[Recognised]:
    """The platforms in front, from what the run already has.

    ``headers``: an answer's headers (the 101's); ``names``: (what, name) pairs such as ("host", the URL's
    host) or ("CNAME", a target); ``addresses``: the addresses the name resolved to; ``certificate``: the
    TLS check's description of the leaf (``sans``, ``subject``, ``issuer``). In table order.
    """
    from lokin_doctor.instruments.answer import identify

    found: dict[str, list[str]] = {}
    pairs = tuple(headers)
    if pairs:
        sender, through = identify(status, pairs, "", None)
        for s in (sender, *through):
            if s.id in PLATFORMS:
                found.setdefault(s.id, []).extend(e for e in s.evidence if e not in found.get(s.id, []))
    for what, name in names:
        for pid, suffix in _by_name(name):
            found.setdefault(pid, []).append(f"{what} {name} (*{suffix})")
    for address in addresses:
        try:
            ip = ipaddress.ip_address(address.split("%")[0])
        except ValueError:
            continue
        for p in PLATFORMS.values():
            net = next((n for n in _networks(p) if ip.version == n.version and ip in n), None)
            if net is not None:
                found.setdefault(p.id, []).append(f"address {address} in {p.name}'s {net}")
    if certificate:
        cert_names = [str(n) for n in certificate.get("sans") or () if isinstance(n, str)]
        for name in cert_names[:50]:
            for pid, _suffix in _by_name(name.lstrip("*")):
                ev = f"certificate name {name}"
                if ev not in found.get(pid, []):
                    found.setdefault(pid, []).append(ev)
        issuer = str(certificate.get("issuer") or "")
        for p in PLATFORMS.values():
            if any(re.search(rx, issuer) for rx in p.issuers):
                found.setdefault(p.id, []).append(f"certificate issuer {issuer}")
    return [Recognised(p, tuple(found[p.id])) for p in PLATFORMS.values() if p.id in found]
