"""What the server says on stderr: banner, ready line, one line per attempt, nothing when quiet."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from typing import Any

import pytest
import trustme
from websockets.asyncio.client import connect

from .conftest import http_get, wait_until


async def test_quiet_prints_nothing(make_server: Any, capsys: pytest.CaptureFixture[str]) -> None:
    async with make_server(quiet=True) as srv, connect(srv.url) as ws:
        await ws.recv()
        await http_get(srv.port, "/nope")
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


async def test_banner_and_ready_line(make_server: Any, capsys: pytest.CaptureFixture[str]) -> None:
    async with make_server(quiet=False, allow_origins=("https://lokin.app",), max_per_ip=7) as srv:
        port = srv.port
    err = capsys.readouterr().err
    assert f"URL:         ws://127.0.0.1:{port}/" in err
    assert "Limits:      10000 connections, 7 per IP, messages up to 1 MiB, handshake timeout 10 s" in err
    assert "Origins:     only https://lokin.app" in err
    assert "WARNING" not in err  # loopback: nothing to warn about
    ready = next(line for line in err.splitlines() if " ready " in line)
    assert f"port={port}" in ready and f"url=ws://127.0.0.1:{port}/" in ready
    assert "stopped after" in err


async def test_json_lines(make_server: Any, capsys: pytest.CaptureFixture[str]) -> None:
    async with make_server(quiet=False, log_format="json") as srv, connect(srv.url) as ws:
        await ws.recv()
    events = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [e["event"] for e in events][:2] == ["start", "ready"]
    connect_event = next(e for e in events if e["event"] == "connect")
    assert connect_event["client"].startswith("user_") and connect_event["path"] == "/"
    close_event = next(e for e in events if e["event"] == "close")
    assert close_event["code"] == 1000 and close_event["by"] == "client" and close_event["duration_s"] >= 0


async def test_invalid_handshake_is_logged_with_the_reason(
    make_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    async with make_server(quiet=False) as srv:
        reply = await http_get(
            srv.port,
            "/ws",
            {
                "Upgrade": "websocket",
                "Connection": "Upgrade",
                "Sec-WebSocket-Key": "short",
                "Sec-WebSocket-Version": "13",
            },
        )
        assert reply.status == 400
        assert srv.health()["rejections"]["bad_handshake"] == 1
    line = next(line for line in capsys.readouterr().err.splitlines() if " reject " in line)
    assert "HTTP 400" in line and "Sec-WebSocket-Key" in line and "path=/ws" in line


async def test_garbage_instead_of_http_is_logged(
    make_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    async with make_server(quiet=False) as srv:
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        writer.write(b"HELLO THERE\r\n\r\n")
        async with asyncio.timeout(5):
            await reader.read()  # the server hangs up
        writer.close()
        await wait_until(lambda: srv.health()["rejections"]["bad_handshake"] == 1, what="the rejection")
    err = capsys.readouterr().err
    assert "not an HTTP request" in err and "invalid HTTP request line" in err


async def test_port_probe_is_summarised_not_rejected(
    make_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    async with make_server(quiet=False) as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=2):
            pass  # what a TCP check (lokin-doctor's port probe, a load balancer) does
        await wait_until(lambda: srv.health()["handshakes_incomplete"] == 1, what="the probe to be counted")
        assert srv.health()["rejections"]["bad_handshake"] == 0
    err = capsys.readouterr().err
    assert "1 TCP connection(s) closed without sending a WebSocket handshake" in err


async def test_tls_banner_describes_the_certificate(
    make_server: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "lokin.test")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    async with make_server(quiet=False, certfile=str(certfile), keyfile=str(keyfile)) as srv:
        assert srv.url.startswith("wss://") and srv.http_url.startswith("https://")
    err = capsys.readouterr().err
    line = next(line for line in err.splitlines() if "Certificate:" in line)
    assert "lokin.test" in line and "127.0.0.1" in line and "expires" in line
