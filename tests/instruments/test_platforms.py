"""The platform table: each CDN or load balancer recognised from its real headers, names, addresses and
certificate; its limit weighed against what was observed (constructed values for the edges of each rule,
and the evidence of real short sessions against raw peers, weighed against test-local limits)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from lokin_doctor.checks.production.platform import Observed, observe, weigh
from lokin_doctor.instruments.platforms import PLATFORMS, Limit, LimitKind, Platform, Recognised, recognise
from lokin_doctor.model import Status
from tests.remote._platform_peer import HEADERS, platform_peer  # noqa: F401
from tests.remote._util import doctor


@pytest.mark.parametrize("platform", sorted(HEADERS))
def test_each_platform_is_recognised_by_the_headers_of_its_101(platform: str) -> None:
    found = recognise(HEADERS[platform])
    assert [r.platform.id for r in found] == [platform]
    assert found[0].evidence, found


def test_headers_of_no_platform_recognise_nothing() -> None:
    assert recognise([("Server", "nginx/1.22.1"), ("Connection", "upgrade"), ("Upgrade", "websocket")]) == []
    assert recognise([("Via", "1.1 squid")]) == []
    # A cookie that only looks like the ALB's is not the ALB's.
    assert recognise([("Set-Cookie", "MYAWSALB=1; Path=/")]) == []


def test_cloudflare_in_front_of_heroku_names_both() -> None:
    found = recognise([*HEADERS["cloudflare"], ("Via", "1.1 vegur")])
    assert {r.platform.id for r in found} == {"cloudflare", "heroku"}


@pytest.mark.parametrize(
    ("name", "platform"),
    [
        ("d1a2b3c4d5e6f7.cloudfront.net", "cloudfront"),
        ("my-alb-1234567890.eu-west-3.elb.amazonaws.com", "aws-elb"),
        ("chat-demo-5f2a.herokuapp.com", "heroku"),
        ("shiny-wave-1234.herokudns.com.", "heroku"),
        ("lokin-chat.fly.dev", "fly"),
        ("lokin-e5abc.z01.azurefd.net", "azure-front-door"),
        ("www.example.com.cdn.cloudflare.net", "cloudflare"),
    ],
)
def test_names_of_the_platforms_edges(name: str, platform: str) -> None:
    found = recognise(names=[("CNAME", name)])
    assert [r.platform.id for r in found] == [platform]
    assert name in found[0].evidence[0]


def test_names_that_only_contain_a_platforms_name_are_not_it() -> None:
    assert recognise(names=[("host", "cloudfront.net.example.com"), ("host", "herokuapp.com")]) == []


def test_cloudflare_addresses_from_its_published_list() -> None:
    for address in ("104.16.132.229", "172.67.10.1", "2606:4700:3033::6815:3e1", "131.0.72.9"):
        found = recognise(addresses=[address])
        assert [r.platform.id for r in found] == ["cloudflare"], address
    assert recognise(addresses=["93.184.216.34", "127.0.0.1", "::1", "not-an-ip"]) == []


def test_certificate_names_and_cloudflare_issuer() -> None:
    heroku = recognise(
        certificate={"sans": ["*.herokuapp.com", "herokuapp.com"], "issuer": "CN=Amazon RSA 2048 M02"}
    )
    assert [r.platform.id for r in heroku] == ["heroku"]
    edge = recognise(
        certificate={
            "sans": ["example.com"],
            "issuer": "CN=Cloudflare Inc ECC CA-3,O=Cloudflare\\, Inc.,C=US",
        }
    )
    assert [r.platform.id for r in edge] == ["cloudflare"]
    # Cloudflare's Origin CA signs certificates for origins, not for its edge: not a sign of Cloudflare in front.
    origin = recognise(
        certificate={
            "sans": ["example.com"],
            "issuer": "OU=CloudFlare Origin SSL ECC Certificate Authority,O=CloudFlare\\, Inc.,L=San Francisco",
        }
    )
    assert origin == []


def test_every_figure_has_a_source_and_a_fix() -> None:
    for p in PLATFORMS.values():
        assert p.limit.source.startswith("https://"), p.id
        assert p.limit.fix and p.limit.what and p.limit.configurable
    assert PLATFORMS["cloudflare"].limit.seconds == 100
    assert PLATFORMS["aws-elb"].limit.seconds == 60
    assert (
        PLATFORMS["google-lb"].limit.kind is LimitKind.LIFETIME and PLATFORMS["google-lb"].limit.seconds == 30
    )
    assert PLATFORMS["heroku"].limit.seconds == 55
    assert PLATFORMS["cloudfront"].limit.seconds == 600
    assert PLATFORMS["azure-front-door"].limit.seconds == 300
    assert PLATFORMS["azure-app-gateway"].limit.seconds is None


# -- weighing: the rules at their edges --------------------------------------------------------------------


def _rec(pid: str) -> Recognised:
    return Recognised(PLATFORMS[pid], ("test",))


def test_cloudflare_cut_at_100_s_idle_is_the_cause() -> None:
    v = weigh(_rec("cloudflare"), Observed(watched_s=100.5, dropped_after_s=100.5, idle_before_drop_s=100.5))
    assert v.status is Status.FAIL and v.cause == "platform.idle-timeout"
    assert "Cloudflare closes WebSockets idle for 100 s" in v.summary and "100.5 s" in v.summary
    assert v.hint is not None and "every 50 s" in v.hint


@pytest.mark.parametrize("idle", [120.2, 125.0])
def test_cloudflares_later_figures_120_and_125_s_are_its_timeout_too(idle: float) -> None:
    # Versions of the connection-limits page give 100 s, 120 s and 125 s: a drop in that span is Cloudflare's.
    v = weigh(_rec("cloudflare"), Observed(watched_s=idle, dropped_after_s=idle, idle_before_drop_s=idle))
    assert v.status is Status.FAIL and v.cause == "platform.idle-timeout", v.summary
    past = weigh(
        _rec("cloudflare"), Observed(watched_s=140.0, dropped_after_s=140.0, idle_before_drop_s=140.0)
    )
    assert past.status is Status.OK and past.note is not None and "not this timeout" in past.note
    assert _rec("cloudflare").as_evidence()["limit_upper_s"] == 125


def test_a_drop_at_another_time_is_not_the_platforms() -> None:
    v = weigh(_rec("cloudflare"), Observed(watched_s=60.1, dropped_after_s=60.1, idle_before_drop_s=60.1))
    assert v.status is Status.OK and v.note is not None and "not this timeout" in v.note


def test_server_pings_within_the_limit_reassure() -> None:
    v = weigh(_rec("cloudflare"), Observed(announced_s=25.0))
    assert v.status is Status.OK and v.note is None
    assert "the server pings every 25 s (its Socket.IO pingInterval), which keeps them open" in v.summary


def test_pings_slower_than_the_limit_warn_and_a_race_at_the_limit_too() -> None:
    slow = weigh(_rec("heroku"), Observed(interval_s=120.0, interval_from="hold", watched_s=250))
    assert slow.status is Status.WARN and slow.cause == "platform.ping-too-slow"
    # Mattermost's 60 s pings behind an ALB's 60 s: the ping races the timeout.
    race = weigh(_rec("aws-elb"), Observed(announced_s=60.0))
    assert race.status is Status.WARN
    assert weigh(_rec("aws-elb"), Observed(announced_s=30.0)).status is Status.OK


def test_a_short_session_says_nothing_about_a_long_timeout() -> None:
    v = weigh(_rec("cloudflare"), Observed(watched_s=2.0, quiet_s=2.0))
    assert v.status is Status.OK
    assert v.note is not None and "too short to tell" in v.note and "--hold 110" in v.note


def test_no_ping_for_longer_than_the_limit_warns_even_when_not_cut() -> None:
    v = weigh(_rec("cloudflare"), Observed(watched_s=110.0, quiet_s=110.0))
    assert v.status is Status.WARN and "no ping in 110 s" in v.summary


def test_an_undocumented_figure_never_warns_and_fly_only_explains() -> None:
    assert weigh(_rec("azure-app-gateway"), Observed(interval_s=900.0)).status is Status.OK
    fly = weigh(_rec("fly"), Observed(interval_s=120.0, interval_from="session"))
    assert fly.status is Status.OK and fly.note is not None
    cut = weigh(_rec("fly"), Observed(dropped_after_s=60.4, idle_before_drop_s=60.4, watched_s=60.4))
    assert cut.status is Status.FAIL


def test_google_lifetime_pings_do_not_help() -> None:
    cut = weigh(
        _rec("google-lb"),
        Observed(interval_s=5.0, dropped_after_s=30.2, idle_before_drop_s=0.2, server_pings=6),
    )
    assert cut.status is Status.FAIL and cut.cause == "platform.lifetime-cut"
    # Fast pings alone are no reassurance against a lifetime.
    noted = weigh(_rec("google-lb"), Observed(interval_s=5.0, watched_s=3.0))
    assert noted.status is Status.OK and noted.note is not None
    raised = weigh(_rec("google-lb"), Observed(interval_s=5.0, watched_s=45.0))
    assert raised.status is Status.OK and "raised" in raised.summary


# -- the readings of real short sessions, weighed against test-local limits --------------------------------


def _evidence(run: Any) -> dict[str, dict[str, Any]]:
    return {r.id: r.evidence for r in run.report.results}


def _limit(seconds: float, kind: LimitKind = LimitKind.IDLE) -> Recognised:
    base = PLATFORMS["cloudflare"]
    return Recognised(replace(base, limit=replace(base.limit, seconds=seconds, kind=kind)), ("test",))


def test_a_real_idle_drop_read_from_the_hold(platform_peer: Any) -> None:  # noqa: F811
    peer = platform_peer("cloudflare", drop_idle=1.5)
    run = doctor(peer.url, only=["hold"], hold=3.0, timeout=2.0)
    assert run["hold"].code == "hold.idle-timeout", run.explain()
    obs = observe(_evidence(run))
    assert obs.dropped_after_s is not None and 1.3 <= obs.dropped_after_s <= 2.2
    assert obs.server_pings == 0 and obs.quiet_s == obs.dropped_after_s
    assert weigh(_limit(1.5), obs).cause == "platform.idle-timeout"
    assert weigh(_limit(60.0), obs).status is Status.OK  # a 1.5 s drop is not a 60 s timeout


def test_real_pings_read_from_the_hold_and_the_session(platform_peer: Any) -> None:  # noqa: F811
    peer = platform_peer("cloudflare", ping_every=0.4)
    run = doctor(peer.url, only=["hold"], hold=2.0, timeout=2.0)
    obs = observe(_evidence(run))
    assert obs.interval_from == "hold" and obs.interval_s is not None and 0.3 <= obs.interval_s <= 0.6
    assert obs.dropped_after_s is None and obs.server_pings >= 3
    assert weigh(_limit(100.0), obs).status is Status.OK
    assert weigh(_limit(0.2), obs).cause == "platform.ping-too-slow"
    lingered = doctor(peer.url, only=["session"], linger=1.5, timeout=3.0)
    s_obs = observe(_evidence(lingered))
    assert s_obs.interval_from == "session" and s_obs.server_pings >= 2, lingered.explain()


def test_a_real_lifetime_cut_despite_pings(platform_peer: Any) -> None:  # noqa: F811
    peer = platform_peer("google-lb", ping_every=0.3, drop_after=1.6)
    run = doctor(peer.url, only=["hold"], hold=3.0, timeout=2.0)
    assert run["hold"].code == "hold.dropped", run.explain()
    obs = observe(_evidence(run))
    assert obs.dropped_after_s is not None and 1.4 <= obs.dropped_after_s <= 2.3
    assert obs.idle_before_drop_s is not None and obs.idle_before_drop_s < 0.6
    assert weigh(_limit(1.6, LimitKind.LIFETIME), obs).cause == "platform.lifetime-cut"
    # Read as an idle timeout, the same drop is not one: the server pinged just before.
    assert weigh(_limit(1.6, LimitKind.IDLE), obs).status is Status.OK


def test_the_limit_of_a_local_platform_table_entry_is_what_is_weighed() -> None:
    custom = Platform(
        "heroku", Limit(10.0, LimitKind.IDLE, "w", "no", "ping every {half} s", "https://x.test/")
    )
    v = weigh(
        Recognised(custom, ("t",)), Observed(dropped_after_s=10.2, idle_before_drop_s=10.2, watched_s=10.2)
    )
    assert v.status is Status.FAIL and v.hint == "ping every 5 s"
