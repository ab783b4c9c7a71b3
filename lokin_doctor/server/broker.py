"""Where a broadcast goes: the local clients only, or every instance through Redis pub/sub.

A broker has one job: :meth:`Broker.publish` a broadcast (the exact bytes sent to clients) and call
the ``deliver`` callback once per broadcast that must reach this instance's clients, the ones
published here included. The server calls ``publish`` from the event loop and never waits:

* :class:`LocalBroker` (the default, one process): ``publish`` calls ``deliver`` at once.
* :class:`RedisBroker` (``serve --redis``): ``publish`` calls ``deliver`` at once for the local
  clients, then queues the message for the Redis channel; a subscriber task delivers what the
  OTHER instances published (its own messages come back from Redis too and are skipped by their
  instance id), so every client of every instance gets each broadcast exactly once.

Wire format on the channel :data:`CHANNEL` (one Redis ``PUBLISH`` per broadcast)::

    LK1 <instance> <payload>

``LK1`` (format version), one space, the publishing instance's id (ASCII, no space), one space,
then the payload: the UTF-8 JSON text every client receives, byte for byte (``from`` and ``time``
already set by the instance that received it). Other messages on the channel are ignored.

Redis is a dependency that fails. The broker keeps one subscriber connection and one publisher
connection; when either fails (refused, reset, a command without answer within ``op_timeout``,
no PONG to a keepalive PING) the broker is ``down``: local delivery goes on, messages published
meanwhile do not reach the other instances (no replay), and it reconnects with capped exponential
backoff (0.1 s doubling up to :data:`BACKOFF_MAX`, with jitter). State changes are logged once
each, and exposed by :meth:`RedisBroker.health` and :meth:`RedisBroker.collect` (``/health``,
``/metrics``). Nothing here blocks the event loop: every Redis call is awaited in the broker's own
tasks, bounded by ``op_timeout``, and the outgoing queue is bounded (:data:`QUEUE_MAX`, oldest
dropped and counted).
"""

from __future__ import annotations

import asyncio
import collections
import random
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol
from urllib.parse import urlsplit

__all__ = [
    "BACKOFF_MAX",
    "CHANNEL",
    "QUEUE_MAX",
    "Broker",
    "LocalBroker",
    "RedisBroker",
    "decode",
    "encode",
    "redis_url_problem",
]

#: The Redis pub/sub channel every instance publishes to and subscribes to.
CHANNEL = "lokin-doctor:broadcast"
_MAGIC = b"LK1 "

#: Cap of the reconnection backoff, in seconds.
BACKOFF_MAX = 5.0
BACKOFF_MIN = 0.1

#: Broadcasts waiting for the publisher connection; beyond it the oldest are dropped (counted).
QUEUE_MAX = 10_000

#: Broadcasts sent in one pipeline round trip at most.
BATCH_MAX = 512

#: Seconds without anything from the subscriber connection before a keepalive PING.
KEEPALIVE = 5.0

Deliver = Callable[[bytes], object]
Log = Callable[..., None]


def encode(instance: str, payload: bytes) -> bytes:
    """The channel message for ``payload`` published by ``instance``."""
    return b"%s%s %s" % (_MAGIC, instance.encode("ascii"), payload)


def decode(message: bytes) -> tuple[str, bytes] | None:
    """(instance, payload) of a channel message, or None if it is not in the LK1 format."""
    if not message.startswith(_MAGIC):
        return None
    instance, sep, payload = message[len(_MAGIC) :].partition(b" ")
    if not sep or not instance:
        return None
    return instance.decode("ascii", "replace"), payload


def redis_url_problem(url: str) -> str | None:
    """Why ``url`` is not a usable ``--redis`` value (checked before any traffic), or None."""
    from lokin_doctor.i18n import _

    example = _("redis://HOST:PORT/DB, e.g. redis://127.0.0.1:6379/0")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return _("{url!r} is not a Redis URL ({exc}); use {example}").format(
            url=url, exc=exc, example=example
        )
    if parts.scheme not in ("redis", "rediss", "unix"):
        return _("{url!r} has scheme {scheme!r}; use {example} (or rediss://, unix://)").format(
            url=url, scheme=parts.scheme or "(none)", example=example
        )
    if parts.scheme == "unix":
        return (
            None
            if parts.path
            else _("{url!r} names no socket path; use unix:///run/redis/redis.sock").format(url=url)
        )
    if not parts.hostname:
        return _("{url!r} names no host; use {example}").format(url=url, example=example)
    if port == 0:
        return _("{url!r} has port 0; use {example}").format(url=url, example=example)
    db = parts.path.strip("/")
    if db and not db.isdigit():
        return _("{url!r} has database {db!r}, not a number; use {example}").format(
            url=url, db=db, example=example
        )
    return None


def _redact(url: str) -> str:
    """The URL without its password, for logs and /health."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = (parts.username or "") + ":***@" + (parts.hostname or "")
    if parts.port:
        netloc += f":{parts.port}"
    return parts._replace(netloc=netloc).geturl()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer from Redis in time"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Broker(Protocol):
    """What the server needs from a broker."""

    instance: str

    def publish(self, payload: bytes) -> None:
        """Deliver ``payload`` to this instance's clients now and to the other instances' soon."""

    async def start(self, deliver: Deliver) -> None:
        """Begin delivering through ``deliver``; never waits for an external service."""

    async def close(self) -> None:
        """Stop the broker's tasks and connections."""

    def health(self) -> dict[str, Any] | None:
        """The ``broker`` part of /health (None: nothing to report)."""

    @property
    def degraded(self) -> str | None:
        """Why broadcasts do not reach the other instances now, or None."""

    def collect(self) -> Iterator[Any]:
        """Prometheus families of the broker."""


class LocalBroker:
    """One process, no broker: a broadcast reaches this instance's clients, synchronously."""

    def __init__(self, instance: str) -> None:
        self.instance = instance
        self._deliver: Deliver | None = None

    def publish(self, payload: bytes) -> None:
        if self._deliver is not None:
            self._deliver(payload)

    async def start(self, deliver: Deliver) -> None:
        self._deliver = deliver

    async def close(self) -> None:
        self._deliver = None

    def health(self) -> dict[str, Any] | None:
        return None

    @property
    def degraded(self) -> str | None:
        return None

    def collect(self) -> Iterator[Any]:
        return iter(())


class RedisBroker:
    """Broadcasts through a Redis pub/sub channel, shared by every instance given the same URL.

    Args:
        url: ``redis://HOST:PORT/DB`` (also ``rediss://``, ``unix://``).
        instance: This process's id (in the welcome and on the channel).
        log: ``EventLog.emit``-like callable for the state changes.
        op_timeout: Bound of a connection attempt and of every Redis command, in seconds.
        channel: The pub/sub channel.
    """

    def __init__(
        self,
        url: str,
        instance: str,
        log: Log,
        *,
        op_timeout: float = 2.0,
        channel: str = CHANNEL,
    ) -> None:
        self.url = url
        self.instance = instance
        self.channel = channel
        self.op_timeout = op_timeout
        self._log = log
        self._deliver: Deliver | None = None
        self._queue: collections.deque[bytes] = collections.deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.state = "connecting"  # connecting | up | down
        self.reason: str | None = "not connected yet"
        self.since = time.time()
        self.published = 0  # sent to Redis
        self.received = 0  # delivered from other instances
        self.dropped = 0  # not sent to Redis: down, or queue full
        self.connects = 0  # successful (re)connections
        self.failures = 0  # connections lost or refused

    # -- the server's side ---------------------------------------------------------------------

    def publish(self, payload: bytes) -> None:
        deliver = self._deliver
        if deliver is not None:
            deliver(payload)
        if self.state != "up":
            self.dropped += 1
            return
        queue = self._queue
        if len(queue) >= QUEUE_MAX:
            queue.popleft()
            self.dropped += 1
        queue.append(encode(self.instance, payload))
        self._wake.set()

    async def start(self, deliver: Deliver) -> None:
        self._deliver = deliver
        self._log(
            "broker",
            f"Redis broker: connecting to {_redact(self.url)}",
            url=_redact(self.url),
            instance=self.instance,
        )
        self._task = asyncio.ensure_future(self._run())

    async def close(self) -> None:
        self._closing = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await asyncio.wait_for(task, self.op_timeout + 1)
            except (asyncio.CancelledError, TimeoutError, Exception):
                pass
        self._deliver = None

    @property
    def degraded(self) -> str | None:
        if self.state == "up":
            return None
        return f"Redis {self.state}: {self.reason}" if self.reason else f"Redis {self.state}"

    def health(self) -> dict[str, Any]:
        return {
            "kind": "redis",
            "url": _redact(self.url),
            "channel": self.channel,
            "state": self.state,
            "reason": self.reason,
            "since": round(self.since, 3),
            "published": self.published,
            "received": self.received,
            "dropped": self.dropped,
            "connects": self.connects,
            "failures": self.failures,
        }

    def collect(self) -> Iterator[Any]:
        """Prometheus families of the broker (added to the server's registry)."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        yield GaugeMetricFamily(
            "lokin_broker_up",
            "1 when the Redis broker is connected (cross-instance broadcast works)",
            value=self.state == "up",
        )
        for name, doc, value in (
            ("lokin_broker_published", "Broadcasts published to Redis", self.published),
            (
                "lokin_broker_received",
                "Broadcasts received from other instances through Redis",
                self.received,
            ),
            (
                "lokin_broker_dropped",
                "Broadcasts not sent to Redis (broker down or queue full)",
                self.dropped,
            ),
            ("lokin_broker_failures", "Redis connections refused or lost", self.failures),
        ):
            yield CounterMetricFamily(name, doc, value=value)

    # -- state -----------------------------------------------------------------------------------

    def _set_state(self, state: str, reason: str | None) -> None:
        if state == self.state:
            self.reason = reason  # one log line per state change, not one per failed reconnection
            return
        previous = self.state
        self.state, self.reason, self.since = state, reason, time.time()
        if state == "up":
            self._log(
                "broker",
                f"Redis broker up ({_redact(self.url)}): broadcasts reach every instance",
                state=state,
                previous=previous,
            )
        else:
            self._log(
                "broker",
                f"Redis broker {state}: {reason}; serving local clients only, reconnecting",
                level="warning",
                state=state,
                reason=reason,
            )

    # -- tasks -----------------------------------------------------------------------------------

    def _client(self) -> Any:
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        # No retries inside redis-py: the broker owns the reconnection policy and its backoff.
        return aioredis.Redis.from_url(
            self.url,
            socket_connect_timeout=self.op_timeout,
            socket_timeout=self.op_timeout,
            retry=Retry(NoBackoff(), 0),
            client_name=f"lokin-doctor-{self.instance}",
        )

    async def _run(self) -> None:
        delay = BACKOFF_MIN
        while not self._closing:
            connected_at = 0.0
            try:
                connected_at = await self._session()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.failures += 1
                self._queue.clear()  # not replayed after a reconnection: counted as dropped
                self._set_state("down", _reason(exc))
            if connected_at and time.monotonic() - connected_at > 2 * BACKOFF_MAX:
                delay = BACKOFF_MIN  # it was up for a while: retry fast
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(BACKOFF_MAX, delay * 2)

    async def _session(self) -> float:
        """One connection to Redis, until it fails (raises). Returns only when closing."""
        client = self._client()
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        publisher: asyncio.Task[None] | None = None
        try:
            async with asyncio.timeout(self.op_timeout):
                await pubsub.subscribe(self.channel)
                await client.ping()
            connected_at = time.monotonic()
            self.connects += 1
            self._queue.clear()
            self._set_state("up", None)
            publisher = asyncio.ensure_future(self._publisher(client))
            last_rx = time.monotonic()
            ping_sent = 0.0
            while not self._closing:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                now = time.monotonic()
                if publisher.done():
                    publisher.result()  # raises what stopped it
                    raise ConnectionError("publisher stopped")
                if message is not None:
                    last_rx, ping_sent = now, 0.0
                    if message.get("type") == "message":
                        self._received(message.get("data"))
                    continue
                if ping_sent and now - ping_sent > self.op_timeout:
                    raise TimeoutError("keepalive PING not answered")
                if not ping_sent and now - last_rx > KEEPALIVE:
                    await asyncio.wait_for(pubsub.ping(), self.op_timeout)
                    ping_sent = now
            return connected_at
        finally:
            if publisher is not None:
                publisher.cancel()
                try:
                    await publisher
                except BaseException:
                    pass
            for closer in (pubsub.aclose, client.aclose):
                try:
                    await asyncio.wait_for(closer(), 1.0)
                except Exception:
                    pass

    def _received(self, data: object) -> None:
        if not isinstance(data, bytes):
            return
        parsed = decode(data)
        if parsed is None or parsed[0] == self.instance:
            return  # not ours to read, or our own (already delivered locally)
        self.received += 1
        deliver = self._deliver
        if deliver is not None:
            deliver(parsed[1])

    async def _publisher(self, client: Any) -> None:
        queue = self._queue
        while True:
            if not queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = [queue.popleft() for _ in range(min(len(queue), BATCH_MAX))]
            async with asyncio.timeout(self.op_timeout):
                if len(batch) == 1:
                    await client.publish(self.channel, batch[0])
                else:
                    pipe = client.pipeline(transaction=False)
                    for message in batch:
                        pipe.publish(self.channel, message)
                    await pipe.execute()
            self.published += len(batch)
