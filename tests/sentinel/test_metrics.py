"""The sentinel's metrics: runs of real diagnoses observed, the exposition read back with prometheus_client's
own parsers (Prometheus text and OpenMetrics), over HTTP from the status server."""

from __future__ import annotations

from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families

from lokin_doctor.tools.sentinel.history import History
from lokin_doctor.tools.sentinel.metrics import SentinelMetrics
from tests.sentinel.viewkit import Reports, history_fixture, reports_fixture, status_server  # noqa: F401
from tests.server.conftest import http_get


def samples(metrics: SentinelMetrics, accept: str = "") -> dict[str, list[tuple[dict[str, str], float]]]:
    """name -> [(labels, value)] of every sample of the exposition."""
    body, content_type = metrics.exposition(accept)
    parse = openmetrics_families if "openmetrics" in content_type else text_string_to_metric_families
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in parse(body.decode()):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), float(sample.value)))
    return out


def value(found: dict[str, Any], name: str, **labels: str) -> float | None:
    for got, v in found.get(name, []):
        if all(got.get(k) == want for k, want in labels.items()):
            return float(v)
    return None


def test_a_healthy_run_reads_like_blackbox_with_phases(reports: Reports) -> None:
    metrics = SentinelMetrics()
    run = reports.run("ok", 1000.0)
    metrics.observe(run)
    found = samples(metrics)
    t = reports.url
    assert value(found, "probe_success", target=t) == 1.0
    assert value(found, "probe_duration_seconds", target=t) == run.duration
    # The chain's phases under blackbox's phase label; resolve is also blackbox's dns lookup time.
    phases = {labels["phase"]: v for labels, v in found["probe_websocket_duration_seconds"]}
    assert set(phases) == {"resolve", "connect", "handshake", "first_message"}  # ws://: no TLS phase
    assert phases == run.phases
    assert value(found, "probe_dns_lookup_time_seconds", target=t) == run.phases["resolve"]
    assert value(found, "lokin_doctor_status", target=t, status="ok") == 1.0
    assert value(found, "lokin_doctor_status", target=t, status="fail") == 0.0
    assert "lokin_doctor_root_cause" not in found
    assert value(found, "lokin_doctor_last_run_timestamp_seconds", target=t) == 1000.0
    assert value(found, "lokin_doctor_runs_total", target=t, status="ok") == 1.0
    assert value(found, "lokin_doctor_sentinel_info")


def test_the_root_cause_series_follows_the_current_cause_and_goes_on_recovery(reports: Reports) -> None:
    metrics = SentinelMetrics()
    t = reports.url
    metrics.observe(reports.run("ok", 1000.0))
    metrics.observe(reports.run("down", 1060.0, target=t))
    found = samples(metrics)
    down_code = reports.down["root_cause"]["code"]
    assert found["lokin_doctor_root_cause"] == [
        ({"target": t, "code": down_code, "check": reports.down["root_cause"]["check"]}, 1.0)
    ]
    assert value(found, "probe_success", target=t) == 0.0
    assert value(found, "lokin_doctor_down", target=t) == 1.0
    # Another cause while still failing: the old series is gone, the new one is there.
    metrics.observe(reports.run("hostile", 1120.0, target=t))
    codes = [labels["code"] for labels, _v in samples(metrics)["lokin_doctor_root_cause"]]
    assert codes == [reports.hostile["root_cause"]["code"]]
    metrics.observe(reports.run("ok", 1180.0))
    found = samples(metrics)
    assert "lokin_doctor_root_cause" not in found
    assert value(found, "probe_success", target=t) == 1.0
    assert value(found, "lokin_doctor_down", target=t) == 0.0
    assert value(found, "lokin_doctor_runs_total", target=t, status="fail") == 2.0
    assert value(found, "lokin_doctor_runs_total", target=t, status="ok") == 2.0
    assert value(found, "lokin_doctor_incidents_total", target=t) == 1.0


def test_incidents_count_the_confirmed_state_not_every_blip(reports: Reports) -> None:
    metrics = SentinelMetrics()
    t = reports.url
    metrics.observe(reports.run("ok", 0.0, state="up"))
    metrics.observe(reports.run("down", 60.0, target=t, state="up"))  # a blip --confirm rode over
    found = samples(metrics)
    assert value(found, "probe_success", target=t) == 0.0  # the run failed ...
    assert value(found, "lokin_doctor_down", target=t) == 0.0  # ... the target is not down (yet)
    assert value(found, "lokin_doctor_incidents_total", target=t) == 0.0
    for at in (120.0, 180.0):
        metrics.observe(reports.run("down", at, target=t, state="down"))
    metrics.observe(reports.run("ok", 240.0, state="up"))
    metrics.observe(reports.run("down", 300.0, target=t, state="down"))
    assert value(samples(metrics), "lokin_doctor_incidents_total", target=t) == 2.0


def test_a_cut_run_is_counted_but_changes_no_gauge(reports: Reports) -> None:
    metrics = SentinelMetrics()
    t = reports.url
    metrics.observe(reports.run("ok", 0.0))
    metrics.observe(reports.run("down", 60.0, target=t, status="cut"))
    found = samples(metrics)
    assert value(found, "lokin_doctor_runs_total", target=t, status="cut") == 1.0
    assert value(found, "probe_success", target=t) == 1.0
    assert value(found, "lokin_doctor_last_run_timestamp_seconds", target=t) == 0.0


def test_the_certificate_last_seen_stays_while_tls_is_not_reached(reports: Reports) -> None:
    metrics = SentinelMetrics()
    t = "wss://lokin.test/"
    metrics.observe(reports.run("ok", 0.0, target=t, cert_not_after=1_900_000_000.0))
    metrics.observe(reports.run("down", 60.0, target=t, cert_not_after=None))
    assert value(samples(metrics), "probe_ssl_earliest_cert_expiry", target=t) == 1_900_000_000.0
    metrics.observe(reports.run("ok", 120.0, target=t, cert_not_after=1_950_000_000.0))
    assert value(samples(metrics), "probe_ssl_earliest_cert_expiry", target=t) == 1_950_000_000.0


def test_durations_histogram_counts_every_run_once_folded_or_not(reports: Reports) -> None:
    metrics = SentinelMetrics()
    t = reports.url
    for at, seconds in ((0.0, 0.004), (60.0, 0.3), (120.0, 7.0)):
        metrics.observe(reports.run("ok", at, duration=seconds))
    # The engine observes the row it stored: a folded one carries its earlier repeats, counted already.
    metrics.observe(reports.run("ok", 180.0, duration=0.3, repeats=3))
    found = samples(metrics)
    name = "lokin_doctor_run_duration_seconds"
    assert value(found, f"{name}_count", target=t) == 4.0
    assert value(found, f"{name}_bucket", target=t, le="0.01") == 1.0
    assert value(found, f"{name}_bucket", target=t, le="0.5") == 3.0
    assert value(found, f"{name}_bucket", target=t, le="5.0") == 3.0
    assert value(found, f"{name}_bucket", target=t, le="+Inf") == 4.0
    assert abs((value(found, f"{name}_sum", target=t) or 0) - (0.004 + 0.3 + 7.0 + 0.3)) < 1e-9
    assert value(found, "lokin_doctor_runs_total", target=t, status="ok") == 4.0


def test_targets_are_labels_and_odd_characters_survive_the_round_trip(reports: Reports) -> None:
    metrics = SentinelMetrics()
    odd = 'ws://127.0.0.1:1/a"b\\c\nd'
    metrics.observe(reports.run("ok", 0.0, target=reports.url))
    metrics.observe(reports.run("down", 0.0, target=odd))
    for accept in ("", "application/openmetrics-text; version=1.0.0"):
        found = samples(metrics, accept)
        targets = {labels["target"] for labels, _v in found["probe_success"]}
        assert targets == {reports.url, odd}
        assert value(found, "probe_success", target=odd) == 0.0


def test_openmetrics_when_the_scraper_asks_for_it(reports: Reports) -> None:
    metrics = SentinelMetrics()
    metrics.observe(reports.run("down", 0.0))
    body, content_type = metrics.exposition("application/openmetrics-text; version=1.0.0; charset=utf-8")
    assert content_type.startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")
    assert value(samples(metrics, content_type), "lokin_doctor_runs_total", status="fail") == 1.0
    assert metrics.exposition("")[1].startswith("text/plain; version=0.0.4")


def test_each_sentinel_has_its_own_registry(reports: Reports) -> None:
    first, second = SentinelMetrics(), SentinelMetrics()
    first.observe(reports.run("ok", 0.0))
    assert "probe_success" in samples(first)
    assert "probe_success" not in samples(second)
    assert REGISTRY.get_sample_value("probe_success", {"target": reports.url}) is None
    assert first.registry is not second.registry is not REGISTRY


async def test_metrics_are_served_over_http(reports: Reports, history: History) -> None:
    metrics = SentinelMetrics()
    metrics.observe(reports.run("down", 0.0))
    async with status_server(history, metrics, [reports.url]) as server:
        reply = await http_get(server.port, "/metrics")
        om = await http_get(
            server.port, "/metrics", {"Accept": "application/openmetrics-text; version=1.0.0"}
        )
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(reply.text)}
    assert families["probe_success"].samples[0].value == 0.0
    assert families["lokin_doctor_root_cause"].samples[0].labels["code"] == reports.down["root_cause"]["code"]
    assert om.headers["content-type"].startswith("application/openmetrics-text")
    assert {f.name for f in openmetrics_families(om.text)} >= {"probe_success", "lokin_doctor_runs"}
