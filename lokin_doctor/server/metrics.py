"""Counters of one server instance and their Prometheus exposition.

The hot path (every message) only increments plain integers in :class:`Stats`; the Prometheus
families are built from them at scrape time by :class:`StatsCollector`, registered in a
private ``CollectorRegistry`` per server so two servers in one process (tests, the doctor's
embedded server) never share or clash on metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE_LATEST", "REJECTION_REASONS", "Stats", "StatsCollector", "build_registry", "render"]

#: Every ``reason`` label value of ``lokin_rejections_total`` (all exported, even at 0).
REJECTION_REASONS = (
    "origin",
    "max_connections",
    "max_per_ip",
    "bad_handshake",
    "tls_on_plain_port",
)


class Stats:
    """Plain counters, cheap to bump from the event loop."""

    __slots__ = ("accepted", "handshakes_incomplete", "http_requests", "msgs_in", "msgs_out", "rejections")

    def __init__(self) -> None:
        self.accepted = 0
        self.msgs_in = 0
        self.msgs_out = 0
        self.handshakes_incomplete = 0
        self.rejections: dict[str, int] = dict.fromkeys(REJECTION_REASONS, 0)
        self.http_requests: dict[str, int] = {}

    def reject(self, reason: str) -> None:
        """Count one refused upgrade."""
        self.rejections[reason] = self.rejections.get(reason, 0) + 1

    def http(self, route: str) -> None:
        """Count one plain HTTP request (route is a fixed label, never the raw path)."""
        self.http_requests[route] = self.http_requests.get(route, 0) + 1


class StatsCollector(Collector):
    """Builds the metric families from :class:`Stats` and live gauges at scrape time.

    Args:
        stats: The server's counters.
        gauges: Name -> (help, function) for values read live (open connections...).
        version: Exported in ``lokin_server_info``.
    """

    def __init__(
        self, stats: Stats, gauges: dict[str, tuple[str, Callable[[], float]]], version: str
    ) -> None:
        self._stats = stats
        self._gauges = gauges
        self._version = version

    def collect(self) -> Iterator[Metric]:
        s = self._stats
        yield InfoMetricFamily(
            "lokin_server", "lokin-doctor serve build information", value={"version": self._version}
        )
        for name, (doc, read) in self._gauges.items():
            yield GaugeMetricFamily(name, doc, value=read())
        yield CounterMetricFamily(
            "lokin_connections", "WebSocket connections accepted (HTTP 101)", value=s.accepted
        )
        yield CounterMetricFamily(
            "lokin_messages_received", "WebSocket messages received from clients", value=s.msgs_in
        )
        yield CounterMetricFamily(
            "lokin_messages_sent", "WebSocket messages sent to clients", value=s.msgs_out
        )
        yield CounterMetricFamily(
            "lokin_handshakes_incomplete",
            "TCP connections closed before sending a WebSocket handshake (probes, half-open clients cut by the open timeout)",
            value=s.handshakes_incomplete,
        )
        rejections = CounterMetricFamily(
            "lokin_rejections", "Connection attempts refused before the upgrade, by reason", labels=["reason"]
        )
        for reason, count in sorted(s.rejections.items()):
            rejections.add_metric([reason], count)
        yield rejections
        http = CounterMetricFamily(
            "lokin_http_requests", "Plain HTTP requests (no upgrade), by route", labels=["route"]
        )
        for route, count in sorted(s.http_requests.items()):
            http.add_metric([route], count)
        yield http


def build_registry(collector: StatsCollector) -> CollectorRegistry:
    """A private registry holding only this server's metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The Prometheus text exposition of ``registry``."""
    return generate_latest(registry)
