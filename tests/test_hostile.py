"""`all` against hostile and subtly broken servers (tests/peers/hostile.py): the verdict is true, has its
own cause code, and the doctor stays bounded in memory and time whatever the peer sends."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import pytest

from tests.helpers import run_cli

#: The doctor's budget against any peer (the issue's target).
MAX_RSS_MB = 100
DEADLINE_SLACK_S = 0.5

_MEASURE = r"""
import json, resource, subprocess, sys, time
t0 = time.monotonic()
p = subprocess.run([sys.executable, "-m", "lokin_doctor", *sys.argv[1:]], capture_output=True, text=True)
print(json.dumps({
    "code": p.returncode,
    "seconds": time.monotonic() - t0,
    "max_rss_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    "stdout": p.stdout,
    "stderr": p.stderr,
}))
"""


def measured(*args: str) -> dict[str, Any]:
    """Run the CLI in a grandchild and return its exit code, wall time and peak RSS (that process only)."""
    proc = subprocess.run(
        [sys.executable, "-c", _MEASURE, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**__import__("os").environ, "NO_COLOR": "1"},
    )
    data: dict[str, Any] = json.loads(proc.stdout)
    assert "Traceback" not in data["stderr"], data["stderr"]
    data["report"] = json.loads(data["stdout"])
    return data


def _check(report: dict[str, Any], check_id: str) -> dict[str, Any]:
    return next(c for c in report["checks"] if c["id"] == check_id)


# --- item 1: the protocol's own verdict ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "code", "sent", "words"),
    [
        ("reserved-opcode", "session.protocol-error", 1002, "invalid opcode"),
        ("bad-rsv", "session.protocol-error", 1002, "reserved bits"),
        ("bad-utf8-greeting", "session.invalid-utf8", 1007, "UTF-8"),
    ],
)
def test_invalid_frames_end_the_session_at_once(
    bad_server: Any, kind: str, code: str, sent: int, words: str
) -> None:
    run = run_cli("all", bad_server(kind).url, "--json", "--timeout", "4")
    assert run.code == 1, run.stdout
    assert run.root_code == code, run.report["root_cause"]
    session = run.check("session")
    assert session["evidence"]["close_code_sent"] == sent
    assert words in session["summary"]
    assert run.check("handshake")["status"] == "ok"
    # Not after the deadline: the protocol had said it at once.
    assert session["duration_ms"] < 1000, session


def test_invalid_utf8_greeting_is_not_a_greeting(bad_server: Any) -> None:
    run = run_cli("handshake", bad_server("bad-utf8-greeting").url, "--json", "--timeout", "3")
    session = run.check("session")
    assert "greeting" not in session["evidence"]
    assert session["evidence"]["messages_received"] == 0


def test_utf8_split_across_fragments_is_a_greeting(bad_server: Any) -> None:
    run = run_cli(
        "handshake", bad_server("fragmented-utf8-greeting").url, "--json", "-t", "3", "--linger", "0"
    )
    assert run.code == 0, run.stdout
    session = run.check("session")
    assert session["evidence"]["client_id"] == "user_caf\u00e9"


# --- item 2: the observation window ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "code", "close_code", "words"),
    [
        ("welcome-then-close", "session.closed-soon", 1011, "handler failed"),
        ("welcome-then-1008", "session.closed-soon", 1008, "policy"),
        ("welcome-then-cut", "session.dropped-soon", None, "without a close frame"),
    ],
)
def test_drop_a_moment_after_the_greeting_is_caught(
    bad_server: Any, kind: str, code: str, close_code: int | None, words: str
) -> None:
    peer = bad_server(kind, delay=0.4)
    run = run_cli("all", peer.url, "--json", "--timeout", "4")
    assert run.code == 1, run.stdout
    assert run.root_code == code, run.report["root_cause"]
    session = run.check("session")
    ev = session["evidence"]
    assert ev.get("close_code") == close_code
    assert 350 <= ev["after_open_ms"] <= 1000, ev
    assert words in session["summary"]
    assert ev["client_id"].startswith("user_")  # the greeting came first: a page showed "connected"


def test_linger_zero_turns_the_window_off(bad_server: Any) -> None:
    peer = bad_server("welcome-then-close", delay=0.4)
    run = run_cli("handshake", peer.url, "--json", "--timeout", "4", "--linger", "0")
    assert run.code == 0, run.stdout
    assert "linger_s" not in run.check("session")["evidence"]


def test_the_window_is_passive_and_costs_its_length(bad_server: Any) -> None:
    peer = bad_server("welcome-idle")
    run = run_cli("handshake", peer.url, "--json", "--timeout", "4", "--linger", "0.5")
    assert run.code == 0, run.stdout
    session = run.check("session")
    assert session["evidence"]["linger_s"] == pytest.approx(0.5, abs=0.05)
    assert "still open after 0.5 s" in session["summary"]
    # Only the ping and the closing handshake were sent: the server saw no application message.
    assert 450 <= session["duration_ms"] < 1500


def test_the_window_stays_inside_the_deadline(bad_server: Any) -> None:
    peer = bad_server("welcome-idle")
    run = run_cli("handshake", peer.url, "--json", "--timeout", "0.6", "--linger", "5")
    assert run.code == 0, run.stdout
    assert run.check("session")["evidence"]["linger_s"] < 0.6
    assert run.report["duration_ms"] < (0.6 + DEADLINE_SLACK_S) * 1000


# --- item 3: negotiation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "code", "hint_words"),
    [
        ("subprotocol-not-offered", "handshake.subprotocol-not-offered", "--subprotocol chat"),
        ("extension-not-offered", "handshake.extension-not-offered", "x-webkit-deflate-frame"),
        ("extension-bad-params", "handshake.extension-params", "window bits"),
        ("subprotocol-required", "handshake.subprotocol-required", "--subprotocol lokin.v1"),
    ],
)
def test_negotiation_causes(bad_server: Any, kind: str, code: str, hint_words: str) -> None:
    run = run_cli("handshake", bad_server(kind).url, "--json", "--timeout", "3")
    assert run.code == 1, run.stdout
    assert run.root_code == code, run.report["root_cause"]
    assert hint_words in run.report["root_cause"]["hint"]
    ev = run.check("handshake")["evidence"]
    assert "permessage-deflate" in ev["offered"]["sec-websocket-extensions"]
    if kind != "subprotocol-required":
        assert ev["answered"] != "nothing"


def test_required_subprotocol_offered_works(bad_server: Any) -> None:
    run = run_cli(
        "handshake", bad_server("subprotocol-required").url, "--subprotocol", "lokin.v1", "--json", "-t", "3"
    )
    assert run.code == 0, run.stdout
    assert "subprotocol: lokin.v1" in run.check("handshake")["summary"]


def test_real_websockets_server_requiring_a_subprotocol() -> None:
    # websockets' own server, configured with subprotocols=["lokin.v1"]: its 400 page names what it wants.
    import asyncio
    import threading

    from websockets.asyncio.server import serve

    ready = threading.Event()
    stop: dict[str, Any] = {}

    async def handler(ws: Any) -> None:
        await ws.send("hi")
        await ws.wait_closed()

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0, subprotocols=["lokin.v1"]) as server:  # type: ignore[list-item]
            stop["port"] = server.sockets[0].getsockname()[1]
            stop["event"] = asyncio.Event()
            stop["loop"] = asyncio.get_running_loop()
            ready.set()
            await stop["event"].wait()

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(5)
    try:
        run = run_cli("handshake", f"ws://127.0.0.1:{stop['port']}/", "--json", "-t", "3")
    finally:
        stop["loop"].call_soon_threadsafe(stop["event"].set)
        thread.join(5)
    assert run.root_code == "handshake.subprotocol-required", run.report["root_cause"]
    assert run.report["root_cause"]["hint"].startswith("offer the subprotocol")


# --- item 6: bounded memory and time ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "code", "at_once"),
    [
        ("flood", "session.no-pong", False),
        ("giant-frame", "session.frame-too-big", True),
        ("huge-headers", "handshake.headers-too-large", True),
        ("long-header-line", "handshake.headers-too-large", True),
    ],
)
def test_hostile_peers_keep_the_doctor_bounded(bad_server: Any, kind: str, code: str, at_once: bool) -> None:
    timeout = 3.0
    data = measured("all", bad_server(kind).url, "--json", "--timeout", str(timeout))
    report = data["report"]
    assert report["duration_ms"] < (timeout + DEADLINE_SLACK_S) * 1000, report["duration_ms"]
    assert report["root_cause"]["code"] == code, report["root_cause"]
    assert data["max_rss_kb"] < MAX_RSS_MB * 1024, data["max_rss_kb"]
    assert data["seconds"] < timeout + DEADLINE_SLACK_S + 1.0, data["seconds"]  # + interpreter start-up
    failing = next(c for c in report["checks"] if c["code"] == code)
    if at_once:
        # Its own cause, at once: not "no pong" after the whole deadline.
        assert failing["duration_ms"] < 1000, failing
    else:
        assert failing["duration_ms"] < (timeout + DEADLINE_SLACK_S) * 1000, failing
        assert failing["evidence"]["messages_received"] > 100
        assert len(failing["evidence"]["messages"]) <= 5
        assert "only the first 5 were kept" in failing["summary"]


def test_flood_with_linger_is_bounded(bad_server: Any) -> None:
    # The pong never comes; with a long linger and deadline the doctor still reads a flood for 2 s only.
    t0 = time.monotonic()
    data = measured("handshake", bad_server("flood").url, "--json", "--timeout", "2", "--linger", "10")
    assert data["max_rss_kb"] < MAX_RSS_MB * 1024
    assert time.monotonic() - t0 < 2 + DEADLINE_SLACK_S + 1.0
