"""The screen (issue 13, item 4): monitor at 80 columns, plurals, load's messages and progress, watch's
uptime and SIGTERM, probe-wss's URL."""

from __future__ import annotations

import asyncio
import io
import os
import pty
import select
import signal
import subprocess
import sys
import time
from typing import Any

from rich.console import Console

from lokin_doctor.tools.monitor.engine import Monitor, render
from lokin_doctor.tools.watch.engine import format_event
from tests.peers._common import free_port

from .conftest import cli, live_cli


def _draw(doc: dict[str, Any], width: int) -> list[str]:
    buf = io.StringIO()
    Console(file=buf, width=width, color_system=None).print(render(doc))
    return buf.getvalue().splitlines()


async def test_monitor_table_fits_80_columns_with_pid_and_port_whole(serve: Any) -> None:
    doc = await asyncio.to_thread(Monitor(serve.port).snapshot)
    assert doc["processes"], doc
    # The worst case of a real machine: the largest pid Linux hands out, days of uptime, a long command.
    doc["processes"][0].update(pid=4194303, uptime_s=12 * 86400 + 3723, cmdline="/usr/local/bin/" + "x" * 200)
    lines = _draw(doc, 80)
    assert max(len(line) for line in lines) <= 80
    row = next(line for line in lines if line.startswith("4194303 "))
    assert "12d 01:02:03" in row  # every figure whole ...
    assert "…" in row and "/usr/local/bin" not in row  # ... the command shortened (directory dropped)
    title = f"ESTABLISHED connections to :{serve.port}: 0"
    assert title in lines  # the title on one line of its own
    assert any(line.startswith(f"127.0.0.1:{serve.port} ") for line in lines)  # the port whole
    wide = _draw(doc, 200)
    assert any("x" * 100 in line for line in wide)  # room: the command is not cut


def test_watch_plurals() -> None:
    base = {"time": "2026-01-01T00:00:00.000+00:00"}
    summary = {
        **base,
        "event": "summary",
        "result": "connected",
        "attempts": 1,
        "connections": 1,
        "connected_s": 1.0,
        "duration_s": 1.0,
        "uptime_ratio": 1.0,
        "failures": {},
        "disconnects": {},
        "messages": 1,
    }
    text = "\n".join(format_event(summary))
    assert "1 attempt, 1 connection," in text and "100.0 % uptime" in text
    text = "\n".join(format_event({**summary, "attempts": 2, "connections": 0}))
    assert "2 attempts, 0 connections," in text
    start = {
        **base,
        "event": "start",
        "url": "ws://x/",
        "forever": False,
        "retries": 1,
        "delay": 2,
        "factor": 1.5,
    }
    assert "(1 retry," in format_event(start)[0]
    gave_up = {**base, "event": "gave-up", "attempts": 1, "retries": 0}
    assert format_event(gave_up)[0].endswith("gave up after 1 attempt (0 retries)")


async def test_watch_reports_100_percent_when_it_never_lost_the_connection(serve: Any) -> None:
    run = await cli("watch", serve.url, "--max-time", "1", "--json")
    assert run.code == 0, run.stdout + run.stderr
    summary = run.events[-1]
    assert summary["result"] == "connected" and summary["uptime_ratio"] == 1.0
    text = await cli("watch", serve.url, "--max-time", "0.5")
    assert "(100.0 % uptime)" in text.stdout


async def test_watch_sigterm_prints_the_summary_as_ctrl_c_does(serve: Any) -> None:
    async with live_cli("watch", serve.url, "--json") as watch:
        await watch.until("connected", 5)
        watch.proc.send_signal(signal.SIGTERM)
        code, events = await watch.finish(10)
    assert code == 130
    assert events[-1]["event"] == "summary" and events[-1]["result"] == "interrupted"


async def test_load_names_a_remote_address_once() -> None:
    run = await cli("load", "ws://192.0.2.7:8080/", "-n", "1")  # refused before any traffic
    assert run.code == 2
    line = run.stderr.strip()
    assert line.count("192.0.2.7") == 1 and "--allow-remote" in line


async def test_load_help_shows_each_default_once() -> None:
    run = await cli("load", "--help")
    assert run.code == 0
    flat = " ".join(run.stdout.split())
    assert flat.count("default 0") + flat.count("[default: 0]") == 1


async def test_load_progress_lines_on_a_pipe_and_no_colour_bar_on_a_terminal(serve: Any) -> None:
    args = ("load", serve.url, "-n", "5", "--duration", "1.2", "--messages", "1")
    run = await cli(*args, "--progress")
    assert run.code == 0, run.stderr
    assert "\x1b[" not in run.stderr
    assert "load: connecting" in run.stderr and "load: holding" in run.stderr
    assert "\x1b[" not in (await cli(*args)).stderr  # no --progress on a pipe: nothing drawn

    def on_a_terminal() -> bytes:
        master, slave = pty.openpty()
        env = {**os.environ, "NO_COLOR": "1", "TERM": "xterm"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "lokin_doctor", *args],
            stdin=slave,
            stdout=subprocess.DEVNULL,
            stderr=slave,
            env=env,
        )
        os.close(slave)
        out, end = b"", time.monotonic() + 20
        try:
            while time.monotonic() < end:
                ready, _, _ = select.select([master], [], [], 0.2)
                if ready:
                    try:
                        chunk = os.read(master, 65536)
                    except OSError:
                        break
                    if not chunk:
                        break
                    out += chunk
                elif proc.poll() is not None:
                    break
        finally:
            proc.wait(10)
            os.close(master)
        return out

    drawn = await asyncio.to_thread(on_a_terminal)
    assert b"[####" in drawn  # the bar reads without colour ...
    assert b"\x1b[3" not in drawn and b"\x1b[9" not in drawn  # ... and has none


async def test_probe_wss_needs_a_url_as_its_help_says() -> None:
    help_run = await cli("probe-wss", "--help")
    flat = " ".join(help_run.stdout.split()).replace("--page- url", "--page-url")  # wrapped at the hyphen
    assert "required unless --page-url" in flat
    run = await cli("probe-wss")
    assert run.code == 2 and run.stdout == ""
    assert len(run.stderr.strip().splitlines()) == 1 and "--page-url" in run.stderr


async def test_monitor_does_not_crash_on_nothing_listening() -> None:
    run = await cli("monitor", "--port", str(free_port()), "--once")
    assert run.code == 1 and "nothing listens" in run.stdout


def test_load_threshold_plural() -> None:
    from lokin_doctor.tools.load.view import Thresholds

    def figures(n: int) -> dict[str, Any]:
        return {
            "failures": {"total": n, "by_code": {"tcp.refused": n}},
            "handshake_ms": {},
            "echo": {"rtt_ms": {}},
        }

    assert Thresholds().check(figures(1)) == ["1 failed connection > --max-errors 0 (tcp.refused x1)"]
    assert Thresholds().check(figures(2))[0].startswith("2 failed connections > ")
