"""The sentinel's Prometheus metrics: each target's last run, named after blackbox_exporter's where one exists.

One :class:`SentinelMetrics` holds its own ``CollectorRegistry`` (never the process-wide one: two sentinels in
one process, or a test, must not see each other's series). The engine calls :meth:`SentinelMetrics.observe`
after every run; the status server serves :func:`exposition` on ``/metrics``. The gauges describe the *last*
run of each target (a scrape sees the state at that moment, as blackbox_exporter's probe does); the counters
and the duration histogram add up every run since the sentinel started, so runs between two scrapes count.

Names (``docs/sentinel-metrics.md`` has the table):

- blackbox_exporter's own: ``probe_success``, ``probe_duration_seconds``, ``probe_dns_lookup_time_seconds``,
  ``probe_ssl_earliest_cert_expiry``;
- blackbox's per-prober phase gauge (``probe_http_duration_seconds{phase}``, ``probe_grpc_...``) for the
  WebSocket chain: ``probe_websocket_duration_seconds{phase=resolve|connect|tls|handshake|first_message}``
  (resolve, connect and tls mean what they mean for blackbox's http prober; blackbox has no WebSocket
  prober, so handshake and first_message are ours);
- the doctor's own, ``lokin_doctor_*``: the root cause (a series per target while there is one, gone when it
  changes), the status as an enum, runs by status, incidents begun, the last run's time, a duration histogram.

Every series carries a ``target`` label (the sentinel watches several targets from one endpoint, where
blackbox is scraped once per target); Prometheus adds ``instance`` and ``job`` itself.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from lokin_doctor import __version__
from lokin_doctor.tools.sentinel.history import CUT, is_down
from lokin_doctor.tools.sentinel.records import PHASES, Run

#: A run's status, as the report says it (``lokin_doctor_status`` has one series per value; a run the stop
#: cut is counted in ``lokin_doctor_runs_total{status="cut"}`` only).
STATUSES = ("ok", "warn", "fail")
#: The phases in chain order, as :data:`records.PHASES` names them.
PHASE_NAMES = tuple(PHASES.values())
#: Seconds: a whole diagnosis takes from a few milliseconds (a refused port) to its deadline.
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)


@dataclass
class _TargetState:
    last: Run
    down: bool
    cert_not_after: float | None
    incidents: int
    #: Runs per bucket of :data:`DURATION_BUCKETS` (not cumulative; the last one is +Inf), and their sum.
    buckets: list[int]
    seconds: float


class _RunCollector(Collector):
    """Builds the gauges and counters from the targets' state at each scrape (a removed series is gone)."""

    def __init__(self, owner: SentinelMetrics) -> None:
        self._owner = owner

    def collect(self) -> Iterator[Metric]:
        with self._owner._lock:
            states = {
                t: (s.last, s.down, s.cert_not_after, s.incidents) for t, s in self._owner._targets.items()
            }
            histograms = {t: (list(s.buckets), s.seconds) for t, s in self._owner._targets.items()}
            runs = dict(self._owner._runs)
        success = GaugeMetricFamily(
            "probe_success",
            "Whether the last diagnosis found the target usable (status ok or warn)",
            labels=["target"],
        )
        duration = GaugeMetricFamily(
            "probe_duration_seconds", "How long the last diagnosis took, in seconds", labels=["target"]
        )
        dns = GaugeMetricFamily(
            "probe_dns_lookup_time_seconds",
            "The last diagnosis's name resolution time, in seconds",
            labels=["target"],
        )
        phases = GaugeMetricFamily(
            "probe_websocket_duration_seconds",
            "The last diagnosis's duration by phase of the chain, in seconds",
            labels=["target", "phase"],
        )
        expiry = GaugeMetricFamily(
            "probe_ssl_earliest_cert_expiry",
            "The expiry of the server certificate last seen, as a Unix time",
            labels=["target"],
        )
        cause = GaugeMetricFamily(
            "lokin_doctor_root_cause",
            "The last diagnosis's root cause (1; no series while the target is healthy)",
            labels=["target", "code", "check"],
        )
        status = GaugeMetricFamily(
            "lokin_doctor_status",
            "The last diagnosis's status (1 for the current one)",
            labels=["target", "status"],
        )
        down = GaugeMetricFamily(
            "lokin_doctor_down",
            "The sentinel's confirmed state (--confirm: one blip does not make a target down): 1 down, 0 up",
            labels=["target"],
        )
        last = GaugeMetricFamily(
            "lokin_doctor_last_run_timestamp_seconds",
            "When the last diagnosis of the target began, as a Unix time",
            labels=["target"],
        )
        incidents = CounterMetricFamily(
            "lokin_doctor_incidents",
            "Incidents begun since the sentinel started (the confirmed state went down, as the history counts them)",
            labels=["target"],
        )
        counts = CounterMetricFamily(
            "lokin_doctor_runs",
            "Diagnoses run since the sentinel started, by status",
            labels=["target", "status"],
        )
        durations = HistogramMetricFamily(
            "lokin_doctor_run_duration_seconds",
            "Durations of the diagnoses run since the sentinel started, in seconds",
            labels=["target"],
        )
        for target, (run, is_down_now, cert_not_after, begun) in sorted(states.items()):
            success.add_metric([target], 1.0 if run.healthy else 0.0)
            down.add_metric([target], 1.0 if is_down_now else 0.0)
            duration.add_metric([target], run.duration)
            if "resolve" in run.phases:
                dns.add_metric([target], run.phases["resolve"])
            for phase in PHASE_NAMES:
                if phase in run.phases:
                    phases.add_metric([target, phase], run.phases[phase])
            if cert_not_after is not None:
                expiry.add_metric([target], cert_not_after)
            if run.root_cause:
                cause.add_metric([target, run.root_cause, run.failing_check or ""], 1.0)
            for value in STATUSES:
                status.add_metric([target, value], 1.0 if run.status == value else 0.0)
            last.add_metric([target], run.last_started if run.last_started is not None else run.started)
            incidents.add_metric([target], float(begun))
            per_bucket, seconds = histograms[target]
            cumulative, total = [], 0
            for bound, n in zip((*DURATION_BUCKETS, float("inf")), per_bucket, strict=True):
                total += n
                cumulative.append(("+Inf" if bound == float("inf") else repr(bound), float(total)))
            durations.add_metric([target], cumulative, seconds)
        for (target, value), n in sorted(runs.items()):
            counts.add_metric([target, value], float(n))
        info = InfoMetricFamily("lokin_doctor_sentinel", "The sentinel's version")
        info.add_metric([], {"version": __version__})
        families = (
            success,
            duration,
            dns,
            phases,
            expiry,
            cause,
            status,
            down,
            last,
            incidents,
            counts,
            durations,
            info,
        )
        yield from (family for family in families if family.samples)


class SentinelMetrics:
    """What the sentinel exposes on ``/metrics``: fed by :meth:`observe`, read through :attr:`registry`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self._lock = threading.Lock()
        self._targets: dict[str, _TargetState] = {}
        self._runs: dict[tuple[str, str], int] = {}
        self.registry.register(_RunCollector(self))

    def observe(self, run: Run) -> None:
        """Count ``run`` and make it its target's current state: one call, one run (the row the history
        stored may be a folded one whose ``repeats`` add up earlier calls: they were counted then).

        A run the sentinel's stop cut is counted (``status="cut"``) but changes no gauge: it is no verdict.
        """
        with self._lock:
            key = (run.target, run.status)
            self._runs[key] = self._runs.get(key, 0) + 1
            if run.status == CUT:
                return
            previous = self._targets.get(run.target)
            down = is_down(run)
            begun = down and (previous is None or not previous.down)
            buckets = previous.buckets if previous else [0] * (len(DURATION_BUCKETS) + 1)
            buckets[bisect.bisect_left(DURATION_BUCKETS, run.duration)] += 1
            self._targets[run.target] = _TargetState(
                last=run,
                down=down,
                # The certificate last seen: a run that failed before TLS says nothing new about it.
                cert_not_after=run.cert_not_after
                if run.cert_not_after is not None
                else (previous.cert_not_after if previous else None),
                incidents=(previous.incidents if previous else 0) + (1 if begun else 0),
                buckets=buckets,
                seconds=(previous.seconds if previous else 0.0) + run.duration,
            )

    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """The registry in the format ``accept`` asks for (OpenMetrics or Prometheus text): (body, content type)."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type
