"""``platform`` end to end: raw peers replay each platform's real 101 headers, then ping or go silent and cut
the connection like the platform; the check names the platform and sets its documented limit against what
the run saw (one run per verdict class). Also the platform error answers no other test produced
(Cloudflare 1003, ALB 463 and 561), replayed byte for byte, and no false alarm on a healthy server."""

from __future__ import annotations

from typing import Any

from tests.helpers import run_cli
from tests.instruments.answers import CF, ELB, http
from tests.remote._platform_peer import platform_peer  # noqa: F401
from tests.remote._util import doctor

ENGINE = "socket.io/?EIO=4&transport=websocket"


def test_server_pings_within_cloudflares_timeout_reassure(platform_peer: Any) -> None:  # noqa: F811
    peer = platform_peer("cloudflare", ping_every=0.3)
    run = doctor(peer.url, only=["platform"], linger=1.5, timeout=3.0)
    r = run["platform"]
    assert r.status.value == "ok" and r.note is None, run.explain()
    assert "Cloudflare closes WebSockets idle for 100 s" in r.summary
    assert "the server pings every 0.3 s (seen in the session), which keeps them open" in r.summary
    (p,) = r.evidence["platforms"]
    assert p["platform"] == "cloudflare" and p["limit_s"] == 100
    assert any(e.startswith("cf-ray: 8ec2b9d1f8a5e1c4-CDG") for e in p["recognised_by"])
    assert p["source"] == "https://developers.cloudflare.com/fundamentals/reference/connection-limits/"


def test_a_short_run_only_notes_the_limit_and_what_to_verify(platform_peer: Any) -> None:  # noqa: F811
    peer = platform_peer("heroku")  # no pings; the run watches for a second
    run = doctor(peer.url, only=["platform"], linger=1.0, timeout=3.0)
    r = run["platform"]
    assert r.status.value == "ok", run.explain()
    assert "Heroku's router closes WebSockets idle for 55 s" in r.summary
    assert r.note is not None and "too short to tell" in r.note and "--hold 65" in r.note
    assert run.root is None


def test_a_socketio_ping_interval_longer_than_cloudflares_timeout_warns(platform_peer: Any) -> None:  # noqa: F811
    peer = platform_peer("cloudflare", engineio=120000)
    run = doctor(peer.url + ENGINE, only=["platform"], timeout=3.0)
    r = run["platform"]
    assert r.code == "platform.ping-too-slow", run.explain()
    assert r.status.value == "warn"
    assert "the server pings every 120 s (its Socket.IO pingInterval)" in r.summary
    assert "every 50 s or less" in str(r.hint)
    assert r.evidence["observed"]["socketio_ping_interval_s"] == 120


def test_socketio_default_interval_is_reassurance(platform_peer: Any) -> None:  # noqa: F811
    peer = platform_peer("aws-elb", engineio=25000)
    run = doctor(peer.url + ENGINE, only=["platform"], timeout=3.0)
    r = run["platform"]
    assert r.status.value == "ok", run.explain()
    assert "the AWS load balancer (ELB/ALB) closes WebSockets idle for 60 s" in r.summary
    assert "every 25 s" in r.summary
    assert any(e.startswith("set-cookie: AWSALB=") for e in r.evidence["platforms"][0]["recognised_by"])


def test_google_cuts_at_its_backend_timeout_despite_pings(platform_peer: Any) -> None:  # noqa: F811
    # Google's external Application LB: 30 s by default, idle or not. Takes 30 s by design (tests/slow.txt).
    peer = platform_peer("google-lb", ping_every=5.0, drop_after=30.0)
    run = doctor(peer.url, only=["platform"], hold=34.0, timeout=3.0)
    assert run["hold"].code == "hold.dropped", run.explain()
    r = run["platform"]
    assert r.code == "platform.lifetime-cut", run.explain()
    assert (
        "Google Cloud's load balancer (Google Front End) closes every WebSocket after 30 s, idle or not"
        in r.summary
    )
    assert "--timeout=86400" in str(r.hint)
    assert 29.0 <= r.evidence["observed"]["dropped_after_s"] <= 31.5
    # The platform's limit explains the hold's drop: it is the root cause.
    assert run.root == "platform.lifetime-cut"


def test_a_cname_to_cloudfront_is_recognised_from_dns(platform_peer: Any, dnsmasq: Any) -> None:  # noqa: F811
    peer = platform_peer(None, ping_every=0.3)  # the 101 says nothing: the DNS does
    dns = dnsmasq(
        {
            "d1a2b3c4d5e6f7.cloudfront.net": "127.0.0.1",
            "chat.lokin.test": "CNAME d1a2b3c4d5e6f7.cloudfront.net",
        }
    )
    url = f"ws://chat.lokin.test:{peer.port}/"
    run = doctor(url, only=["platform"], dns_server=dns.server, linger=1.0, timeout=3.0)
    r = run["platform"]
    assert r.status.value == "ok", run.explain()
    assert "Amazon CloudFront closes WebSockets idle for 600 s" in r.summary
    assert any(
        "CNAME d1a2b3c4d5e6f7.cloudfront.net" in e for e in r.evidence["platforms"][0]["recognised_by"]
    )


def test_a_host_name_of_the_platform_is_enough(platform_peer: Any) -> None:  # noqa: F811
    peer = platform_peer(None)
    host = "lokin-chat.fly.dev"
    run = doctor(f"ws://{host}:{peer.port}/", only=["platform"], resolve=(f"{host}:{peer.port}:127.0.0.1",))
    r = run["platform"]
    assert r.status.value == "ok", run.explain()
    assert "Fly.io's proxy closes WebSockets idle for 60 s" in r.summary
    assert r.evidence["platforms"][0]["recognised_by"] == [f"host {host} (*.fly.dev)"]


def test_no_platform_no_check(platform_peer: Any, ws_server: Any) -> None:  # noqa: F811
    run = doctor(platform_peer(None, ping_every=0.3).url, only=["platform"], linger=1.0)
    assert run["platform"].status.value == "skip"
    assert run["platform"].summary == "no CDN or load balancer recognised"
    assert doctor(ws_server.url, only=["platform"])["platform"].status.value == "skip"


def test_the_doctors_own_server_is_no_platform() -> None:
    run = run_cli("all", "--embedded", "--json", "--only", "platform")
    assert run.code == 0, run.stdout
    check = run.check("platform")
    assert check["status"] == "skip" and check["summary"] == "no CDN or load balancer recognised"


# -- the platform error answers, replayed -----------------------------------------------------------------


def _handshake(peer: Any) -> dict[str, Any]:
    run = run_cli("handshake", peer.url, "--json", "--timeout", "4")
    assert run.code == 1, run.stdout
    return run.check("handshake")


CLOUDFLARE_1003 = (
    b'<!DOCTYPE html>\n<html lang="en-US">\n<head>\n<title>Direct IP access not allowed | Cloudflare</title>\n'
    b'<link rel="stylesheet" id="cf_styles-css" href="/cdn-cgi/styles/main.css" />\n</head>\n<body>\n'
    b'<div id="cf-wrapper">\n<div id="cf-error-details" class="cf-error-details-wrapper">\n'
    b'<div class="cf-wrapper cf-header cf-error-overview">\n<h1>\n'
    b'<span class="cf-error-type" data-translate="error">Error</span>\n<span class="cf-error-code">1003</span>\n'
    b'</h1>\n<h2 class="cf-subheadline">Direct IP access not allowed</h2>\n</div>\n'
    b'<div class="cf-section cf-wrapper"><p>You\'ve requested an IP address that is part of the Cloudflare network.'
    b" A valid Host header must be supplied to reach the desired website.</p></div>\n"
    b'<div class="cf-error-footer"><p><span>Cloudflare Ray ID: <strong>8ec2b9d1f8a5e1c4</strong></span></p>'
    b"</div>\n</div>\n</div>\n</body>\n</html>\n"
)


def test_cloudflare_1003_direct_ip(bad_server: Any) -> None:
    peer = bad_server("replay", reply=http("403 Forbidden", CF, CLOUDFLARE_1003))
    check = _handshake(peer)
    assert check["code"] == "platform.direct-ip-refused", check["summary"]
    assert "from Cloudflare" in check["summary"] and "1003" in check["summary"]
    assert "host name" in check["hint"]


def test_alb_463_forwarded_for_loop(bad_server: Any) -> None:
    check = _handshake(bad_server("replay", reply=http("463 ", ELB)))
    assert check["code"] == "platform.lb-forwarded-for", check["summary"]
    assert "HTTP 463" in check["summary"] and "X-Forwarded-For" in check["summary"]
    assert "loop" in check["hint"]


def test_alb_561_authenticate_action_error(bad_server: Any) -> None:
    check = _handshake(bad_server("replay", reply=http("561 Unauthorized", ELB)))
    assert check["code"] == "platform.lb-auth-error", check["summary"]
    assert "HTTP 561" in check["summary"] and "identity provider" in check["summary"]
    assert "authenticate-oidc" in check["hint"]
