"""Identity of a serving process and the shared view of a ``--workers`` set.

* :func:`new_instance_id`: the ``instance`` of the welcome, unique per serving process.
* :class:`ClientIds`: ``clientId`` values unique within a process by construction (a bijection
  of a counter, so they still look random), suffixed with ``-<instance>`` when the server is part
  of a cluster (``--redis``), which makes them unique across instances too.
* :class:`WorkerStatus`: each worker of ``serve --workers N`` writes a small JSON snapshot of its
  counters to a directory shared with its parent, once a second; whichever worker answers
  ``/health`` or ``/metrics`` adds the others' snapshots to its own live numbers, so the set has
  one ``/health`` and one ``/metrics`` (docs/cluster.md says why this beats prometheus-client's
  multiprocess mode here).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lokin_doctor import __version__

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from lokin_doctor.server.app import LokinServer
    from lokin_doctor.server.broker import Broker

__all__ = ["STALE_AFTER", "ClientIds", "Cluster", "WorkerStatus", "new_instance_id"]

_MASK40 = (1 << 40) - 1
_MULT = 0x9E3779B97F  # odd: multiplying by it modulo 2**40 is a bijection

#: A worker snapshot older than this (seconds) is reported as stale (the worker hangs or died).
STALE_AFTER = 5.0
PARENT_FILE = "parent.json"


def new_instance_id() -> str:
    """12 random hex digits: collisions are negligible for any realistic number of processes."""
    return secrets.token_hex(6)


class ClientIds:
    """``user_<10 hex>`` ids, never repeated in this process (2**40 before one could)."""

    __slots__ = ("_key", "_seq", "_suffix")

    def __init__(self, instance: str | None = None) -> None:
        self._key = secrets.randbits(40)
        self._seq = secrets.randbits(40)
        self._suffix = f"-{instance}" if instance else ""

    def __call__(self) -> str:
        self._seq = seq = (self._seq + 1) & _MASK40
        return f"user_{((seq * _MULT) & _MASK40) ^ self._key:010x}{self._suffix}"


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, separators=(",", ":")))
    os.replace(tmp, path)  # readers never see half a file


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def worker_file(directory: str | Path, index: int) -> Path:
    return Path(directory) / f"worker-{index}.json"


def write_parent(directory: str | Path, doc: dict[str, Any]) -> None:
    """The parent's part of the shared view: its pid, the workers it runs, the restarts."""
    _write_json(Path(directory) / PARENT_FILE, doc)


class WorkerStatus:
    """One worker's side of the shared directory.

    Args:
        directory: The directory the parent created for this set.
        index: This worker's slot (0..N-1).
        snapshot: Returns this worker's current numbers (see :meth:`LokinServer.worker_snapshot`).
    """

    def __init__(self, directory: str, index: int, snapshot: Callable[[], dict[str, Any]]) -> None:
        self.directory = Path(directory)
        self.index = index
        self._snapshot = snapshot
        self.path = worker_file(directory, index)

    def write(self) -> None:
        doc = self._snapshot()
        doc["index"] = self.index
        doc["written"] = time.time()
        with contextlib.suppress(OSError):  # a full disk must not stop the server
            _write_json(self.path, doc)

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink()

    def parent(self) -> dict[str, Any]:
        return _read_json(self.directory / PARENT_FILE) or {}

    def others(self) -> Iterator[dict[str, Any]]:
        """The latest snapshot of every other worker (with ``stale`` set when it is old)."""
        now = time.time()
        for path in sorted(self.directory.glob("worker-*.json")):
            if path == self.path:
                continue
            doc = _read_json(path)
            if doc is None:
                continue
            doc["stale"] = now - float(doc.get("written", 0)) > STALE_AFTER
            yield doc


_SUMMED = (
    "connections",
    "handshaking",
    "connections_total",
    "handshakes_incomplete",
    "messages_in",
    "messages_out",
)


def aggregate_health(own: dict[str, Any], mine: dict[str, Any], status: WorkerStatus) -> dict[str, Any]:
    """/health of the whole set: ``own`` (this worker's document) with totals and a ``workers`` list.

    Args:
        own: This worker's /health document (modified and returned).
        mine: This worker's snapshot (same shape as the files).
        status: The shared directory.
    """
    parent = status.parent()
    others = list(status.others())
    everyone = sorted([{**mine, "index": status.index, "stale": False}, *others], key=lambda d: d["index"])
    for key in _SUMMED:
        own[key] = sum(int(d.get(key, 0)) for d in everyone)
    rejections: dict[str, int] = {}
    for d in everyone:
        for reason, count in (d.get("rejections") or {}).items():
            rejections[reason] = rejections.get(reason, 0) + int(count)
    own["rejections"] = rejections
    expected = int(parent.get("workers_wanted", len(everyone)))
    problems = []
    if own.get("status") == "degraded" and own.get("reason"):
        problems.append(f"worker {status.index}: {own['reason']}")
    for d in others:
        if d.get("stale"):
            problems.append(
                f"worker {d['index']} (pid {d.get('pid')}) has not reported for over {STALE_AFTER:g} s"
            )
        elif d.get("degraded"):
            problems.append(f"worker {d['index']}: {d['degraded']}")
    if len(everyone) < expected:
        problems.append(f"{len(everyone)} of {expected} workers running")
    if own.get("status") != "stopping" and problems:
        own["status"] = "degraded"
        own["reason"] = "; ".join(problems)
    own["answered_by"] = {"worker": status.index, "pid": own.get("pid"), "instance": own.get("instance")}
    if parent.get("pid"):
        own["pid"] = parent["pid"]
    own["workers"] = [
        {
            "index": d["index"],
            "pid": d.get("pid"),
            "instance": d.get("instance"),
            "connections": d.get("connections", 0),
            "handshaking": d.get("handshaking", 0),
            "uptime_s": d.get("uptime_s"),
            "broker": d.get("broker_state"),
            "status": "stale" if d.get("stale") else ("degraded" if d.get("degraded") else "ok"),
        }
        for d in everyone
    ]
    own["workers_wanted"] = expected
    own["worker_restarts"] = int(parent.get("restarts", 0))
    return own


def cluster_collector(mine: Callable[[], dict[str, Any]], status: WorkerStatus, version: str) -> Any:
    """A Prometheus collector with the set's totals and one ``lokin_worker_*`` series per worker."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
    from prometheus_client.registry import Collector

    from lokin_doctor.server.metrics import Stats, StatsCollector

    class ClusterCollector(Collector):
        def collect(self) -> Iterator[Any]:
            everyone = [{**mine(), "index": status.index}, *status.others()]
            total = Stats()
            for d in everyone:
                total.accepted += int(d.get("connections_total", 0))
                total.msgs_in += int(d.get("messages_in", 0))
                total.msgs_out += int(d.get("messages_out", 0))
                total.handshakes_incomplete += int(d.get("handshakes_incomplete", 0))
                for reason, count in (d.get("rejections") or {}).items():
                    total.rejections[reason] = total.rejections.get(reason, 0) + int(count)
                for route, count in (d.get("http_requests") or {}).items():
                    total.http_requests[route] = total.http_requests.get(route, 0) + int(count)
            gauges = {
                "lokin_connections_open": (
                    "WebSocket connections open now (every worker)",
                    lambda: float(sum(int(d.get("connections", 0)) for d in everyone)),
                ),
                "lokin_connections_handshaking": (
                    "TCP connections that have not completed a WebSocket handshake (every worker)",
                    lambda: float(sum(int(d.get("handshaking", 0)) for d in everyone)),
                ),
                "lokin_uptime_seconds": (
                    "Seconds since the oldest worker started",
                    lambda: float(max(float(d.get("uptime_s", 0)) for d in everyone)),
                ),
            }
            yield from StatsCollector(total, gauges, version).collect()
            parent = status.parent()
            yield GaugeMetricFamily("lokin_workers", "Worker processes reporting", value=len(everyone))
            yield CounterMetricFamily(
                "lokin_worker_restarts",
                "Workers restarted by the parent after they died",
                value=parent.get("restarts", 0),
            )
            per = GaugeMetricFamily(
                "lokin_worker_connections_open",
                "WebSocket connections open now, per worker",
                labels=["worker", "pid"],
            )
            up = GaugeMetricFamily(
                "lokin_broker_up", "1 when the worker's Redis broker is connected", labels=["worker", "pid"]
            )
            for d in sorted(everyone, key=lambda d: d["index"]):
                labels = [str(d["index"]), str(d.get("pid"))]
                per.add_metric(labels, float(d.get("connections", 0)))
                if d.get("broker_state") is not None:
                    up.add_metric(labels, 1.0 if d.get("broker_state") == "up" else 0.0)
            yield per
            yield up

    return ClusterCollector()


class Cluster:
    """The cluster side of one :class:`~lokin_doctor.server.app.LokinServer`.

    Owns the instance id, the broker (``LocalBroker``, or ``RedisBroker`` with ``--redis``) and, in a
    ``--workers`` set, this worker's status file; adds their parts to /health and /metrics.
    """

    def __init__(self, app: LokinServer) -> None:
        from lokin_doctor.server.broker import LocalBroker, RedisBroker

        cfg = app.config
        self.app = app
        self.instance = new_instance_id()
        self.broker: Broker = (
            RedisBroker(cfg.redis, self.instance, app.log.emit, op_timeout=min(2.0, cfg.open_timeout))
            if cfg.redis
            else LocalBroker(self.instance)
        )
        # Unique across instances: with a broker, the instance id is part of every clientId.
        app.admission.client_ids = ClientIds(self.instance if cfg.redis else None)
        self.status = (
            WorkerStatus(cfg.workers_dir, cfg.worker_index, self.snapshot) if cfg.workers_dir else None
        )
        self._timer: asyncio.TimerHandle | None = None

    def registry(self, own: CollectorRegistry) -> CollectorRegistry:
        """The registry /metrics renders: this server's plus the broker's, or the whole set's."""
        from lokin_doctor.server.metrics import build_registry

        if self.status is not None:  # one /metrics for the whole --workers set
            return build_registry(cluster_collector(self.snapshot, self.status, __version__))
        own.register(_BrokerCollector(self.broker))
        return own

    async def start(self) -> None:
        await self.broker.start(self.app.deliver_local)
        if self.status is not None:
            self._write()

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.status is not None:
            self.status.write()  # the final numbers (0 connections) for the parent
        await self.broker.close()

    def _write(self) -> None:
        assert self.status is not None
        self._timer = self.app.loop.call_later(1.0, self._write)
        self.status.write()

    def snapshot(self) -> dict[str, Any]:
        """This process's numbers, as written to the --workers status directory."""
        app = self.app
        stats = app.stats
        broker = self.broker.health()
        return {
            "pid": os.getpid(),
            "instance": self.instance,
            "uptime_s": round(app.uptime, 3),
            "connections": app.open_connections,
            "handshaking": app.handshaking,
            "connections_total": stats.accepted,
            "handshakes_incomplete": stats.handshakes_incomplete,
            "messages_in": stats.msgs_in,
            "messages_out": stats.msgs_out,
            "rejections": dict(stats.rejections),
            "http_requests": dict(stats.http_requests),
            "broker_state": broker["state"] if broker else None,
            "degraded": self.broker.degraded,
        }

    def health(self, doc: dict[str, Any]) -> dict[str, Any]:
        """Add the instance, the broker state and (--workers) the whole set to a /health document."""
        doc["instance"] = self.instance
        broker = self.broker.health()
        if broker is not None:
            doc["broker"] = broker
        degraded = self.broker.degraded
        if degraded and doc["status"] == "ok":
            doc["status"] = "degraded"
            doc["reason"] = f"{degraded}: broadcasts reach this instance's clients only"
        if self.status is not None:
            doc = aggregate_health(doc, self.snapshot(), self.status)
        return doc


class _BrokerCollector:
    def __init__(self, broker: Broker) -> None:
        self._broker = broker

    def collect(self) -> Iterator[Any]:
        return self._broker.collect()
