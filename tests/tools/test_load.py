"""``lokin-doctor load`` against the real embedded server, a refused port and misbehaving peers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from lokin_doctor.instruments.wire import open_handshake
from lokin_doctor.server import running_server
from lokin_doctor.target import parse_target
from lokin_doctor.tools.common import outcome_cause
from lokin_doctor.tools.load.engine import LoadConfig, LoadRun, run_load
from tests.peers._common import free_port

from .conftest import cli, lokin_config

N = 50
MESSAGES = 4


def ordered(stats: dict[str, Any]) -> None:
    assert stats["count"] > 0
    assert stats["min"] <= stats["p50"] <= stats["p95"] <= stats["p99"] <= stats["max"], stats


async def test_load_against_serve_counts_and_consistent_figures(serve: Any) -> None:
    run = await cli(
        "load",
        serve.url,
        "--connections",
        str(N),
        "--messages",
        str(MESSAGES),
        "--duration",
        "0.5",
        "--rate",
        "0",
        "--timeout",
        "5",
        "--json",
    )
    assert run.code == 0, run.stdout + run.stderr
    doc = run.doc
    assert doc["connections"]["requested"] == N
    assert doc["connections"]["opened"] == N
    assert doc["connections"]["failed"] == 0
    assert doc["connections"]["closed_cleanly"] == N
    assert doc["failures"] == {"total": 0, "by_code": {}, "examples": {}}
    assert doc["dropped"]["while_held"] == 0 and doc["dropped"]["during_echo"] == 0
    assert doc["handshake_ms"]["count"] == N
    assert doc["greeting_ms"]["count"] == N
    ordered(doc["handshake_ms"])
    ordered(doc["greeting_ms"])
    echo = doc["echo"]
    assert echo["sent"] == echo["received"] == echo["expected"] == N * MESSAGES
    assert echo["rtt_ms"]["count"] == N * MESSAGES
    ordered(echo["rtt_ms"])
    assert echo["messages_per_s"] > 0
    assert doc["ramp"]["handshakes_per_s"] > 0
    assert doc["hold"]["seconds"] >= 0.5
    assert doc["thresholds"]["passed"] is True
    assert doc["config"]["engine"] == "sansio"


async def test_load_text_report(serve: Any) -> None:
    run = await cli("load", serve.url, "-n", "10", "--messages", "2", "--duration", "0", "--no-progress")
    assert run.code == 0, run.stdout + run.stderr
    assert "10/10 opened, 0 failed" in run.stdout
    assert "20/20 round trips" in run.stdout
    assert "PASS" in run.stdout
    assert run.stderr == ""  # no progress bar when stderr is not a terminal


async def test_load_refused_port_gives_n_failures_and_exit_1() -> None:
    port = free_port()
    run = await cli("load", f"ws://127.0.0.1:{port}/", "-n", "20", "--duration", "0", "--json")
    assert run.code == 1, run.stdout + run.stderr
    doc = run.doc
    assert doc["connections"]["opened"] == 0
    assert doc["failures"]["total"] == 20
    # handshake.refused is `all`'s (a port that stopped accepting between its checks); load has no tcp check.
    assert set(doc["failures"]["by_code"]) == {"tcp.refused"}
    assert sum(doc["failures"]["by_code"].values()) == 20
    code = next(iter(doc["failures"]["by_code"]))
    assert "refused" in doc["failures"]["examples"][code]["summary"]
    assert doc["thresholds"]["passed"] is False


@pytest.mark.parametrize(("max_errors", "expected"), [(20, 0), (19, 1)])
async def test_load_max_errors_gates_the_exit_code(max_errors: int, expected: int) -> None:
    port = free_port()
    run = await cli(
        "load",
        f"ws://127.0.0.1:{port}/",
        "-n",
        "20",
        "--duration",
        "0",
        "--json",
        "--max-errors",
        str(max_errors),
    )
    assert run.code == expected, run.stdout
    assert run.doc["thresholds"]["max_errors"] == max_errors


async def test_load_max_p99_gates_the_exit_code(serve: Any) -> None:
    run = await cli(
        "load", serve.url, "-n", "10", "--messages", "2", "--duration", "0", "--json", "--max-p99-ms", "0.001"
    )
    assert run.code == 1
    broken = run.doc["thresholds"]["broken"]
    assert any("p99" in b and "--max-p99-ms" in b for b in broken), broken
    assert run.doc["failures"]["total"] == 0


async def test_load_refuses_a_remote_target_without_allow_remote() -> None:
    # 192.0.2.1 is TEST-NET-1: the refusal happens before any packet is sent.
    run = await cli("load", "ws://192.0.2.1:8080/", "-n", "5")
    assert run.code == 2
    assert "not a loopback address" in run.stderr and "--allow-remote" in run.stderr


async def test_load_refuses_more_connections_than_can_fit() -> None:
    run = await cli("load", "ws://127.0.0.1:9/", "-n", "100000000")
    assert run.code == 2
    assert "file descriptors" in run.stderr or "local ports" in run.stderr


async def test_load_usage_errors_exit_2() -> None:
    run = await cli("load", "ws://127.0.0.1:9/", "-n", "0")
    assert run.code == 2
    assert "--connections" in run.stderr


@pytest.mark.parametrize("engine", ["sansio", "websockets"])
async def test_drops_while_held_are_counted_by_close_code(engine: str) -> None:
    async with running_server(lokin_config()) as server:
        target = parse_target(server.url)
        config = LoadConfig(
            target=target,
            address="127.0.0.1",
            connections=20,
            rate=0,
            duration=3.0,
            messages=0,
            timeout=5.0,
            engine=engine,
        )
        closing: list[asyncio.Task[None]] = []

        def on_phase(phase: str, run: LoadRun) -> None:
            if phase == "hold":  # the server goes away while the connections are held
                closing.append(asyncio.get_running_loop().create_task(server.close()))

        run = await asyncio.wait_for(run_load(config, on_phase=on_phase), 15)
        await asyncio.gather(*closing)
    doc = run.to_dict()
    assert doc["connections"]["opened"] == 20
    assert doc["dropped"]["while_held"] == 20
    assert doc["dropped"]["by_close_code"] == {"1001": 20}
    assert doc["failures"]["by_code"] == {"hold.closed-by-server": 20}


@pytest.mark.parametrize(
    ("kind", "code"),
    [
        ("not-found", "handshake.not-found"),
        ("web-page", "handshake.web-page"),
        ("unauthorized", "handshake.forbidden"),
        ("close-no-reply", "handshake.closed"),
        ("reset", "handshake.reset"),
        ("garbage", "handshake.not-http"),
        ("bad-accept", "handshake.bad-accept"),
        ("silent", "handshake.no-response"),
        ("close-after-101", "session.closed-at-once"),
    ],
)
async def test_failures_use_the_checklist_codes(bad_server: Any, kind: str, code: str) -> None:
    peer = bad_server(kind)
    target = parse_target(peer.url)
    config = LoadConfig(
        target=target, address="127.0.0.1", connections=3, rate=0, duration=0, messages=0, timeout=1.0
    )
    run = await asyncio.wait_for(run_load(config), 10)
    assert dict(run.failures) == {code: 3}
    if code.startswith("handshake."):
        # The same code the checklist's handshake (wire.open_handshake + classify) gives.
        loop = asyncio.get_running_loop()
        out = await open_handshake(target, "127.0.0.1", deadline=loop.time() + 1.0, keep_open=False)
        assert outcome_cause(out, target).code == code


async def test_websockets_engine_gives_the_same_counts(serve: Any) -> None:
    target = parse_target(serve.url)
    config = LoadConfig(
        target=target,
        address="127.0.0.1",
        connections=20,
        rate=0,
        duration=0,
        messages=3,
        timeout=5.0,
        engine="websockets",
    )
    run = await asyncio.wait_for(run_load(config), 15)
    doc = run.to_dict()
    assert doc["connections"]["opened"] == 20
    assert doc["echo"]["received"] == 60
    assert doc["failures"]["total"] == 0
