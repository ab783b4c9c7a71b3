"""``lokin-doctor watch``: the browser client's retry schedule, diagnosis per attempt, reconnects."""

from __future__ import annotations

import asyncio
from typing import Any

from lokin_doctor.server import running_server
from tests.peers._common import free_port

from .conftest import cli, live_cli, lokin_config

DELAY, FACTOR = 0.2, 1.5


def schedule_ok(attempts: list[dict[str, Any]]) -> None:
    """Gaps between consecutive attempts follow delay * factor^(n-1) (plus the attempt's own time)."""
    for prev, cur in zip(attempts, attempts[1:], strict=False):
        retry = cur["retry"]
        expected = DELAY * FACTOR ** (retry - 1)
        gap = cur["t"] - prev["t"]
        assert expected - 0.03 <= gap <= expected + 0.35, (retry, gap, expected, attempts)
    first = attempts[0]["retry"]
    assert [a["retry"] for a in attempts] == list(range(first, first + len(attempts)))


async def test_watch_gives_up_after_the_retries_with_the_diagnosis() -> None:
    port = free_port()
    run = await cli("watch", f"ws://127.0.0.1:{port}/", "--retries", "3", "--delay", str(DELAY), "--json")
    assert run.code == 1, run.stdout + run.stderr
    events = run.events
    attempts = [e for e in events if e["event"] == "attempt"]
    assert len(attempts) == 4  # the first attempt and 3 retries, as script.js does
    schedule_ok(attempts)
    failed = [e for e in events if e["event"] == "failed"]
    assert {e["code"] for e in failed} == {"tcp.refused"}
    assert all(e["hint"] for e in failed)
    retries = [e for e in events if e["event"] == "retry"]
    assert [r["in_s"] for r in retries] == [0.2, 0.3, 0.45]
    summary = events[-1]
    assert summary["event"] == "summary" and summary["result"] == "gave-up"
    assert summary["attempts"] == 4 and summary["failures"] == {"tcp.refused": 4}
    assert summary["uptime_ratio"] == 0.0
    assert all(isinstance(e["t"], float) for e in events)
    assert [e["t"] for e in events] == sorted(e["t"] for e in events)


async def test_watch_follows_the_schedule_while_the_server_is_away_and_reconnects() -> None:
    port = free_port()
    url = f"ws://127.0.0.1:{port}/"
    server_cm = running_server(lokin_config(port))
    server = await server_cm.__aenter__()
    try:
        async with live_cli(
            "watch",
            url,
            "--delay",
            str(DELAY),
            "--factor",
            str(FACTOR),
            "--retries",
            "5",
            "--max-time",
            "6",
            "--json",
        ) as watch:
            first = await watch.until("connected", 5)
            assert first["client_id"] and first["client_id"].startswith("user_")
            assert '"welcome"' in first["greeting"]
            await server_cm.__aexit__(None, None, None)  # clients get 1001 going away
            server_cm = None
            gone = await watch.until("disconnected", 5)
            assert gone["close_code"] == 1001 and gone["code"] == "hold.closed-by-server"
            await asyncio.sleep(1.2)  # retries at +0.2, +0.3, +0.45 s fail meanwhile
            server_cm = running_server(lokin_config(port))
            await server_cm.__aenter__()
            again = await watch.until("connected", 5)
            assert again["attempt"] > first["attempt"]
            code, events = await watch.finish(10)
    finally:
        if server_cm is not None:
            await server_cm.__aexit__(None, None, None)
    assert code == 0, events[-1]
    after = [e for e in events if e["t"] >= gone["t"]]
    attempts = [e for e in after if e["event"] == "attempt"]
    assert len(attempts) >= 3
    schedule_ok(attempts)
    # The disconnect itself is followed by retry 1 after the first delay, like the browser's onclose.
    assert abs(attempts[0]["t"] - gone["t"] - DELAY) < 0.3
    failed = [e for e in after if e["event"] == "failed"]
    assert failed and {e["code"] for e in failed} == {"tcp.refused"}
    summary = events[-1]
    assert summary["event"] == "summary"
    assert summary["result"] == "connected" and summary["healthy"] is True
    assert summary["connections"] == 2
    assert summary["disconnects"] == {"1001": 1}
    assert 0.3 < summary["uptime_ratio"] < 1.0
    assert summary["attempts"] == len([e for e in events if e["event"] == "attempt"])
    assert server is not None


async def test_watch_counter_resets_after_a_successful_connection(serve: Any) -> None:
    run = await cli("watch", serve.url, "--max-time", "1", "--json")
    assert run.code == 0, run.stdout + run.stderr
    events = run.events
    assert [e["event"] for e in events] == ["start", "attempt", "connected", "summary"]
    assert events[-1]["result"] == "connected" and events[-1]["uptime_ratio"] > 0.8


async def test_watch_ctrl_c_prints_the_summary_and_exits_130(serve: Any) -> None:
    async with live_cli("watch", serve.url, "--json") as watch:
        await watch.until("connected", 5)
        watch.interrupt()
        code, events = await watch.finish(10)
    assert code == 130
    assert events[-1]["event"] == "summary" and events[-1]["result"] == "interrupted"


async def test_watch_text_output_names_the_cause() -> None:
    port = free_port()
    run = await cli("watch", f"127.0.0.1:{port}", "--retries", "1", "--delay", "0.05")
    assert run.code == 1
    assert "tcp.refused" in run.stdout and "fix:" in run.stdout
    assert "retry 1/1 in 0.05 s" in run.stdout
    assert "summary: gave-up" in run.stdout
