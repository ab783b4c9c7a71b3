"""``lokin-doctor serve`` as a real process: ready line, logs, signals, exit codes, start errors."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from .conftest import ServeProcess, http_get

Serve = Callable[..., ServeProcess]


async def test_port_zero_prints_the_real_port_and_serves(serve_process: Serve) -> None:
    proc = serve_process("--port", "0")
    port = proc.ready_port()
    assert port > 0
    banner = proc.stderr
    assert f"ws://127.0.0.1:{port}/" in banner
    assert "lokin-doctor" in banner and "Limits:" in banner and "Origins:" in banner
    assert "loopback only" in banner
    async with connect(f"ws://127.0.0.1:{port}/", origin="http://localhost:3000") as ws:  # type: ignore[arg-type]
        welcome = json.loads(await ws.recv())
        await ws.send("hello")
        assert await ws.recv() == "hello"
    health = json.loads((await http_get(port, "/health")).body)
    assert health["status"] == "ok"
    line = proc.wait_for(r"\bconnect\b.*accepted")
    text = line.string
    assert "remote=127.0.0.1:" in text and "origin=http://localhost:3000" in text and "path=/" in text
    assert f"client={welcome['clientId']}" in text
    close = proc.wait_for(r"\bclose\b.*code=1000").string
    assert "duration_s=" in close and welcome["clientId"] in close


async def test_sigterm_closes_every_client_with_1001_and_exits_0(serve_process: Serve) -> None:
    proc = serve_process("--port", "0", "--shutdown-timeout", "3")
    url = f"ws://127.0.0.1:{proc.ready_port()}/"
    clients = [await connect(url) for _ in range(3)]
    for ws in clients:
        assert json.loads(await ws.recv())["type"] == "welcome"
    proc.proc.send_signal(signal.SIGTERM)
    for ws in clients:
        with pytest.raises(ConnectionClosed) as info:
            async with asyncio.timeout(5):
                await ws.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == 1001
    code = await asyncio.to_thread(proc.finish, 5)
    assert code == 0
    log = proc.stderr
    assert "received SIGTERM" in log
    assert "closing 3 client(s) with 1001" in log
    assert log.count("code=1001") == 3
    assert "Traceback" not in log


async def test_sigint_with_a_silent_client_still_exits_within_the_timeout(serve_process: Serve) -> None:
    # A client that never answers the close frame must not hold the stop past --shutdown-timeout.
    proc = serve_process("--port", "0", "--shutdown-timeout", "1")
    port = proc.ready_port()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    async with asyncio.timeout(5):
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
    proc.proc.send_signal(signal.SIGINT)
    started = asyncio.get_running_loop().time()
    code = await asyncio.to_thread(proc.finish, 5)
    assert code == 0
    assert asyncio.get_running_loop().time() - started < 2.5
    writer.close()


async def test_json_log_format(serve_process: Serve) -> None:
    proc = serve_process("--port", "0", "--log-format", "json", "--allow-origin", "https://lokin.app")
    port = proc.ready_port()
    async with connect(f"ws://127.0.0.1:{port}/") as ws:
        await ws.recv()
    proc.wait_for(r'"event": "close"')
    proc.proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(proc.finish, 5) == 0
    events = [json.loads(line) for line in proc.lines]  # every line is one JSON object
    kinds = [e["event"] for e in events]
    assert kinds[:2] == ["start", "ready"]
    assert {"connect", "close", "signal", "shutdown", "stopped"} <= set(kinds)
    start = events[0]
    assert start["version"] and start["origins"] == ["https://lokin.app"]
    assert start["limits"]["max_connections"] == 10000
    assert events[1]["port"] == port


def test_exposed_without_allow_list_warns(serve_process: Serve) -> None:
    proc = serve_process("--host", "0.0.0.0", "--port", "0")
    proc.ready_port()
    assert "WARNING: exposed on 0.0.0.0 without --allow-origin" in proc.stderr
    assert "reachable from the network" in proc.stderr


def test_port_in_use_is_one_line_naming_the_holder(serve_process: Serve) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        proc = serve_process("--port", str(port))
        code = proc.finish(10)
    assert code == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("lokin-doctor: error: ")
    assert f"port {port} is already in use by pid {os.getpid()}" in lines[0]


def test_bad_certificate_file_is_one_line(serve_process: Serve, tmp_path: Path) -> None:
    bad = tmp_path / "cert.pem"
    bad.write_text("not a certificate\n")
    proc = serve_process("--port", "0", "--certfile", str(bad))
    # checked before start-up by the server's own reader: a usage error naming the option
    assert proc.finish(10) == 2
    assert proc.stderr.strip().splitlines() == [
        f"lokin-doctor: error: --certfile: {bad} is not a PEM certificate (no '-----BEGIN CERTIFICATE-----'); "
        f"convert a DER file with: openssl x509 -inform der -in {bad} -out cert.pem"
    ]


def test_bad_host_is_one_line(serve_process: Serve) -> None:
    proc = serve_process("--host", "192.0.2.1", "--port", "0")
    assert proc.finish(10) == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "192.0.2.1 is not an address of this machine" in lines[0]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--port", "70000"], "--port"),
        (["--open-timeout", "0"], "--open-timeout"),
        (["--max-connections", "0"], "--max-connections"),
        (["--allow-origin", "lokin.app"], "is not an origin"),
        (["--keyfile", "key.pem"], "--keyfile needs --certfile"),
        (["--log-format", "xml"], "--log-format"),
    ],
)
def test_bad_options_exit_2(serve_process: Serve, args: list[str], needle: str) -> None:
    proc = serve_process(*args)
    assert proc.finish(10) == 2
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr
