"""The brokers on their own, against a real redis-server: delivery exactly once, failure and recovery."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from lokin_doctor.server.broker import CHANNEL, LocalBroker, RedisBroker, decode, encode, redis_url_problem
from tests.peers.redis import RedisPeer


class Log:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    def __call__(self, event: str, message: str = "", **fields: Any) -> None:
        self.events.append((event, message, fields))

    def states(self) -> list[str]:
        return [f["state"] for _, _, f in self.events if "state" in f]


async def until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


def test_wire_format_round_trip() -> None:
    message = encode("a1b2c3", b'{"type": "broadcast", "from": "user_x"}')
    assert message == b'LK1 a1b2c3 {"type": "broadcast", "from": "user_x"}'
    assert decode(message) == ("a1b2c3", b'{"type": "broadcast", "from": "user_x"}')
    assert decode(b"hello") is None and decode(b"LK1 nospace") is None


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis://127.0.0.1:6379/0", None),
        ("redis://:secret@redis.internal:6380/2", None),
        ("rediss://cache:6380", None),
        ("unix:///run/redis.sock", None),
        ("http://127.0.0.1:6379/0", "scheme 'http'"),
        ("127.0.0.1:6379", "scheme"),
        ("redis://127.0.0.1:99999/0", "not a Redis URL"),
        ("redis://127.0.0.1:6379/zero", "not a number"),
        ("redis:///0", "names no host"),
    ],
)
def test_redis_url_validation(url: str, problem: str | None) -> None:
    found = redis_url_problem(url)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found and "redis://HOST:PORT/DB" in found


async def test_local_broker_delivers_synchronously() -> None:
    got: list[bytes] = []
    broker = LocalBroker("i1")
    await broker.start(got.append)
    broker.publish(b"x")
    assert got == [b"x"] and broker.degraded is None and broker.health() is None


async def test_two_redis_brokers_deliver_each_message_once_everywhere(redis_server: RedisPeer) -> None:
    got_a: list[bytes] = []
    got_b: list[bytes] = []
    a = RedisBroker(redis_server.url, "aaaa", Log(), op_timeout=2)
    b = RedisBroker(redis_server.url, "bbbb", Log(), op_timeout=2)
    await a.start(got_a.append)
    await b.start(got_b.append)
    try:
        await until(lambda: a.state == "up" and b.state == "up", 10, "both brokers up")
        assert b"2" in redis_server.command("PUBSUB", "NUMSUB", CHANNEL)
        for i in range(50):
            a.publish(b"from-a-%d" % i)
        b.publish(b"from-b")
        await until(lambda: len(got_a) == 51 and len(got_b) == 51, 5, "51 deliveries on each side")
        await asyncio.sleep(0.3)  # nothing more may come: no duplicate of our own messages
        assert sorted(got_a) == sorted(got_b) == sorted([b"from-a-%d" % i for i in range(50)] + [b"from-b"])
        assert got_a[0] == b"from-a-0"  # the local delivery is synchronous, before Redis
        assert a.published == 50 and a.received == 1 and b.received == 50
    finally:
        await a.close()
        await b.close()


async def test_redis_killed_then_back_degrades_then_recovers(redis_server: RedisPeer) -> None:
    log = Log()
    got_a: list[bytes] = []
    got_b: list[bytes] = []
    a = RedisBroker(redis_server.url, "aaaa", log, op_timeout=1)
    b = RedisBroker(redis_server.url, "bbbb", Log(), op_timeout=1)
    await a.start(got_a.append)
    await b.start(got_b.append)
    try:
        await until(lambda: a.state == "up" and b.state == "up", 10, "both brokers up")
        redis_server.kill()
        await until(lambda: a.state == "down", 5, "broker a down")
        assert a.degraded is not None and a.degraded.startswith("Redis down: ")
        a.publish(b"while-down")
        assert got_a == [b"while-down"]  # local clients still get it
        assert a.dropped >= 1
        # The loop stays responsive while the broker reconnects in the background.
        started = time.monotonic()
        await asyncio.sleep(0.05)
        assert time.monotonic() - started < 0.5
        time.sleep(1.0)
        redis_server.start()
        await until(lambda: a.state == "up" and b.state == "up", 15, "both brokers up again")
        a.publish(b"after")
        await until(lambda: b"after" in got_b, 5, "cross-instance delivery after recovery")
        assert b"while-down" not in got_b
        # One log line per state change, however many reconnection attempts failed.
        assert log.states() == ["up", "down", "up"]
    finally:
        await a.close()
        await b.close()


async def test_redis_never_reachable_stays_down_with_a_reason() -> None:
    from tests.peers._common import free_port

    log = Log()
    broker = RedisBroker(f"redis://127.0.0.1:{free_port()}/0", "cccc", log, op_timeout=0.5)
    got: list[bytes] = []
    await broker.start(got.append)
    try:
        await until(lambda: broker.state == "down", 5, "down")
        await asyncio.sleep(1.0)  # several attempts with backoff
        assert broker.failures >= 2
        assert broker.health()["reason"] and "Connect" in broker.health()["reason"]
        assert log.states() == ["down"]
        broker.publish(b"local")
        assert got == [b"local"]
    finally:
        await broker.close()


async def test_the_password_never_shows_in_logs_or_health(redis_server: RedisPeer) -> None:
    log = Log()
    url = f"redis://:s3cret@127.0.0.1:{redis_server.port}/0"
    broker = RedisBroker(url, "dddd", log, op_timeout=1)
    await broker.start(lambda payload: None)
    try:
        # The peer has no requirepass; the connection still comes up (seen here with Redis 7.0 and redis-py 8).
        await until(lambda: broker.state != "connecting", 5, "a state")
        doc = broker.health()
        assert doc["url"] == f"redis://:***@127.0.0.1:{redis_server.port}/0"
        assert "s3cret" not in repr(doc) and "s3cret" not in repr(log.events)
        assert any("redis://:***@" in message for _, message, _ in log.events)
    finally:
        await broker.close()
