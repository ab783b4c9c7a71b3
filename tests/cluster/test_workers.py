"""``serve --workers 2 --redis``: one port, two processes, one room, restarts, clean stop."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from lokin_doctor.server.workers import WORKER_ENV
from tests.peers.redis import RedisPeer
from tests.server.conftest import REPO, ServeProcess, http_get

Serve = Callable[..., ServeProcess]


async def health(port: int) -> dict[str, Any]:
    reply = await http_get(port, "/health")
    assert reply.status == 200
    doc: dict[str, Any] = json.loads(reply.body)
    return doc


async def wait_health(
    port: int, predicate: Callable[[dict[str, Any]], bool], timeout: float, what: str
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    doc: dict[str, Any] = {}
    while time.monotonic() < deadline:
        doc = await health(port)
        if predicate(doc):
            return doc
        await asyncio.sleep(0.1)
    pytest.fail(f"timed out after {timeout} s waiting for {what}; last /health: {json.dumps(doc)[:2000]}")


def start(serve_process: Serve, redis: RedisPeer, *extra: str) -> tuple[ServeProcess, int]:
    proc = serve_process("--port", "0", "--workers", "2", "--redis", redis.url, "--open-timeout", "3", *extra)
    port = int(proc.wait_for(r"ready\s+2 workers accepting.*\bport=(\d+)", timeout=30).group(1))
    return proc, port


async def clients_on_both(
    url: str, wanted: int = 2, most: int = 60
) -> list[tuple[ClientConnection, dict[str, Any]]]:
    """Connect until the welcomes name ``wanted`` distinct instances (the kernel spreads SO_REUSEPORT)."""
    out = []
    for _ in range(most):
        ws = await connect(url)
        out.append((ws, json.loads(await ws.recv())))
        if len({w["instance"] for _, w in out}) >= wanted and len(out) >= 8:
            break
    return out


async def test_two_workers_share_the_port_and_the_room(serve_process: Serve, redis_server: RedisPeer) -> None:
    proc, port = start(serve_process, redis_server)
    doc = await wait_health(
        port,
        lambda d: all(w["broker"] == "up" for w in d.get("workers", [])) and len(d["workers"]) == 2,
        15,
        "2 workers, brokers up",
    )
    assert doc["pid"] == proc.proc.pid  # the set's pid is the parent's
    pids = {w["pid"] for w in doc["workers"]}
    assert len(pids) == 2 and proc.proc.pid not in pids
    clients = await clients_on_both(f"ws://127.0.0.1:{port}/")
    assert len({w["instance"] for _, w in clients}) == 2, "connections landed on one process only"
    sender, hello = clients[0]
    await sender.send(json.dumps({"type": "broadcast", "text": "salut"}))
    for ws, _ in clients:
        got = []
        try:
            async with asyncio.timeout(1.0):
                while True:
                    got.append(json.loads(await ws.recv()))
        except TimeoutError:
            pass
        assert [(m["text"], m["from"]) for m in got] == [("salut", hello["clientId"])]
    # One /health for the set, whichever worker answers (status files are written every second).
    doc = await wait_health(port, lambda d: d["connections"] == len(clients), 5, "the set's connection count")
    assert sum(w["connections"] for w in doc["workers"]) == len(clients)
    assert doc["status"] == "ok" and doc["workers_wanted"] == 2
    metrics = (await http_get(port, "/metrics")).text
    assert "lokin_workers 2.0" in metrics
    assert f"lokin_connections_open {float(len(clients))}" in metrics
    assert metrics.count("lokin_worker_connections_open{") == 2
    for ws, _ in clients:
        await ws.close()


async def test_a_killed_worker_is_restarted(serve_process: Serve, redis_server: RedisPeer) -> None:
    proc, port = start(serve_process, redis_server)
    doc = await wait_health(port, lambda d: len(d.get("workers", [])) == 2, 10, "2 workers")
    victim = doc["workers"][0]["pid"]
    os.kill(victim, signal.SIGKILL)
    proc.wait_for(
        rf"worker \d \(pid {victim}\) exited with -9 after [0-9.]+ s; restarting in 0.5 s", timeout=10
    )
    doc = await wait_health(
        port,
        lambda d: (
            len(d["workers"]) == 2 and victim not in {w["pid"] for w in d["workers"]} and d["status"] == "ok"
        ),
        20,
        "the worker replaced",
    )
    assert doc["worker_restarts"] == 1
    proc.wait_for(r"worker \d restarted", timeout=5)
    assert re.search(r"INFO +ready +accepting WebSocket connections .*worker=[01]$", proc.stderr, re.M)
    async with connect(f"ws://127.0.0.1:{port}/") as ws:
        assert json.loads(await ws.recv())["type"] == "welcome"


async def test_sigterm_closes_every_client_of_every_worker_with_1001(
    serve_process: Serve, redis_server: RedisPeer
) -> None:
    proc, port = start(serve_process, redis_server, "--shutdown-timeout", "3")
    await wait_health(port, lambda d: len(d.get("workers", [])) == 2, 10, "2 workers")
    clients = await clients_on_both(f"ws://127.0.0.1:{port}/")
    assert len({w["instance"] for _, w in clients}) == 2
    proc.proc.send_signal(signal.SIGTERM)
    for ws, _ in clients:
        with pytest.raises(ConnectionClosed) as info:
            async with asyncio.timeout(5):
                await ws.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == 1001
    started = time.monotonic()
    assert await asyncio.to_thread(proc.finish, 6) == 0
    assert time.monotonic() - started < 4.5
    assert "2 workers stopped" in proc.stderr and "Traceback" not in proc.stderr


def test_more_than_one_worker_without_redis_is_refused() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lokin_doctor", "serve", "--workers", "2"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.startswith(
        "lokin-doctor: error: --workers 2: 2 processes need --redis redis://HOST:PORT/DB"
    )
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


def test_bad_workers_value_is_refused() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lokin_doctor", "serve", "--workers", "many"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (
        result.returncode == 2
        and "--workers many: must be a whole number from 1 to 256, or auto" in result.stderr
    )


async def test_monitor_shows_every_worker_and_the_redis_state(
    serve_process: Serve, redis_server: RedisPeer
) -> None:
    from tests.tools.conftest import cli

    proc, port = start(serve_process, redis_server)
    await wait_health(
        port, lambda d: [w["broker"] for w in d.get("workers", [])] == ["up", "up"], 15, "brokers up"
    )
    clients = await clients_on_both(f"ws://127.0.0.1:{port}/")
    await wait_health(port, lambda d: d["connections"] == len(clients), 5, "the count")
    run = await cli("monitor", "--port", str(port), "--once", "--json")
    assert run.code == 0, run.stderr
    cluster = run.doc["cluster"]
    assert cluster["parent_pid"] == proc.proc.pid and cluster["workers_wanted"] == 2
    workers = cluster["workers"]
    assert len(workers) == 2 and sum(w["connections"] for w in workers) == len(clients)
    assert all(w["broker"] == "up" and w["connections"] > 0 for w in workers)
    assert cluster["broker"]["state"] == "up" and cluster["broker"]["url"] == redis_server.url
    # Both listening processes are found (by socket inode: SO_REUSEPORT shares the address).
    by_pid = {p["pid"]: p["connections"] for p in run.doc["processes"]}
    assert by_pid == {w["pid"]: w["connections"] for w in workers}
    text = await cli("monitor", "--port", str(port), "--once")
    assert "workers (parent pid" in text.stdout and "Redis broker: up" in text.stdout
    for w in workers:
        assert str(w["pid"]) in text.stdout
    redis_server.kill()
    await wait_health(port, lambda d: d["status"] == "degraded", 10, "degraded")
    text = await cli("monitor", "--port", str(port), "--once")
    assert "Redis broker: down" in text.stdout and "status degraded" in text.stdout
    for ws, _ in clients:
        await ws.close()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            "http://127.0.0.1:6379",
            "lokin-doctor: error: --redis http://127.0.0.1:6379: 'http://127.0.0.1:6379' has scheme 'http'",
        ),
        ("redis://127.0.0.1:6379/zero", "has database 'zero', not a number"),
    ],
)
def test_bad_redis_url_is_refused_before_anything_starts(value: str, expected: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lokin_doctor", "serve", "--port", "0", "--redis", value],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2 and expected in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


async def test_sigint_is_forwarded_once_and_clients_get_1001(
    serve_process: Serve, redis_server: RedisPeer
) -> None:
    proc, port = start(serve_process, redis_server, "--shutdown-timeout", "3")
    await wait_health(port, lambda d: len(d.get("workers", [])) == 2, 10, "2 workers")
    clients = await clients_on_both(f"ws://127.0.0.1:{port}/")
    proc.proc.send_signal(signal.SIGINT)
    for ws, _ in clients:
        with pytest.raises(ConnectionClosed) as info:
            async with asyncio.timeout(5):
                await ws.recv()
        # 1001, not a cut connection: each worker got ONE signal (a second one would abort them).
        assert info.value.rcvd is not None and info.value.rcvd.code == 1001
    assert await asyncio.to_thread(proc.finish, 6) == 0
    assert "again: cutting every connection" not in proc.stderr


def test_a_worker_that_cannot_start_stops_the_set_with_exit_1(redis_server: RedisPeer, tmp_path: Any) -> None:
    # The options are valid (the parent checks them); the worker processes then die at start-up: a
    # sitecustomize on their PYTHONPATH ends with status 3 any process that carries the worker's environment.
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(f"import os\nif {WORKER_ENV!r} in os.environ:\n    os._exit(3)\n")
    result = subprocess.run(
        [sys.executable, "-m", "lokin_doctor", "serve", "--port", "0", "--workers", "2"]
        + ["--redis", redis_server.url],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{site}"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    assert "could not start (exit 3)" in result.stderr
    assert "Traceback" not in result.stderr


def test_invalid_tls_files_stop_the_set_before_any_worker(redis_server: RedisPeer, tmp_path: Any) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lokin_doctor", "serve", "--port", "0", "--workers", "2"]
        + ["--redis", redis_server.url, "--certfile", str(tmp_path / "missing.pem")],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"lokin-doctor: error: --certfile: TLS certificate file not found: {tmp_path / 'missing.pem'}"
    ]


def test_a_port_already_in_use_is_refused_even_by_reuseport(redis_server: RedisPeer) -> None:
    import socket

    with socket.socket() as holder:
        # SO_REUSEPORT on the holder too: the workers could join it silently, the parent must not let them.
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "lokin_doctor", "serve", "--port", str(port), "--workers", "2"]
            + ["--redis", redis_server.url],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert f"port {port} is already in use by pid {os.getpid()}" in result.stderr
    assert result.stderr.count("\n") == 1
