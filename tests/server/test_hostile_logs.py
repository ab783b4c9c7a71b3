"""What ``serve`` says about hostile input (garbage, probes) and how it refuses bad option values."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

import pytest

from lokin_doctor.server import ServerConfig
from lokin_doctor.server import app as app_module

from .conftest import ServeProcess, http_get, wait_until


async def _send_and_close(port: int, data: bytes) -> None:
    """Connect, write ``data`` in one write, half-close, wait for the server to close."""
    async with asyncio.timeout(5):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        if data:
            writer.write(data)
        writer.write_eof()
        await reader.read()
        writer.close()


# -- 5. logs that tell the truth ----------------------------------------------------------------


async def test_garbage_without_crlf_is_a_bad_handshake(
    make_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    async with make_server(quiet=False) as srv:
        await _send_and_close(srv.port, b"hello")
        await wait_until(lambda: srv.health()["rejections"].get("bad_handshake") == 1, what="the reject")
        assert srv.health()["handshakes_incomplete"] == 0  # not an idle probe: it sent bytes
        metrics = (await http_get(srv.port, "/metrics")).text
        assert re.search(r'lokin_rejections_total\{reason="bad_handshake"\} 1\.0', metrics), metrics
    line = next(line for line in capsys.readouterr().err.splitlines() if "not an HTTP request" in line)
    assert (
        "reason=bad_handshake" in line
        and "the client closed the connection before a complete HTTP request" in line
    )


async def test_slow_request_cut_by_the_open_timeout_is_counted_as_incomplete(make_server: Any) -> None:
    async with make_server(open_timeout=0.5) as srv:
        async with asyncio.timeout(5):
            reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
            writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n")  # a slowloris: the blank line never comes
            assert await reader.read() == b""  # cut by the server after 0.5 s
            writer.close()
        await wait_until(lambda: srv.health()["handshakes_incomplete"] == 1, what="the cut to be counted")
        assert srv.health()["rejections"].get("bad_handshake", 0) == 0  # a slow client, not garbage


async def test_idle_summary_is_flushed_by_its_timer_and_at_stop(
    make_server: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app_module, "INCOMPLETE_LOG_INTERVAL", 0.6)

    def idle_lines() -> list[str]:
        return [line for line in capsys.readouterr().err.splitlines() if " idle " in line]

    async with make_server(quiet=False) as srv:
        capsys.readouterr()
        await _send_and_close(srv.port, b"")  # first probe: logged at once
        await wait_until(lambda: srv.health()["handshakes_incomplete"] == 1, what="probe 1")
        first = idle_lines()
        assert len(first) == 1 and "count=1 total=1" in first[0]
        await _send_and_close(srv.port, b"")  # within the interval: held back...
        await _send_and_close(srv.port, b"")
        await wait_until(lambda: srv.health()["handshakes_incomplete"] == 3, what="probes 2-3")
        assert idle_lines() == []
        await asyncio.sleep(1.0)  # ...and written by the timer, with no other event needed
        second = idle_lines()
        assert len(second) == 1 and "count=2 total=3" in second[0]
        await _send_and_close(srv.port, b"")  # held back again: the stop writes it
        await wait_until(lambda: srv.health()["handshakes_incomplete"] == 4, what="probe 4")
    err = capsys.readouterr().err
    assert "count=1 total=4" in err
    assert err.index("count=1 total=4") < err.index("stopped after")


# -- 4. every option value validated --------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--open-timeout", "nan"], "--open-timeout nan: must be a number of seconds > 0"),
        (["--open-timeout", "1e309"], "--open-timeout inf:"),
        (["--open-timeout", "-1"], "--open-timeout -1:"),
        (["--open-timeout", "0"], "--open-timeout 0:"),
        (["--open-timeout", "90000"], "and <= 86400"),
        (
            ["--ping-interval", "nan"],
            "--ping-interval nan: must be a number of seconds >= 0 (0 turns it off)",
        ),
        (["--ping-interval", "-inf"], "--ping-interval -inf:"),
        (["--ping-timeout", "nan"], "--ping-timeout nan:"),
        (["--shutdown-timeout", "nan"], "--shutdown-timeout nan:"),
        (["--shutdown-timeout", "0"], "--shutdown-timeout 0:"),
        (["--max-fragments", "0"], "--max-fragments 0: must be a whole number at least 1"),
        (["--max-message-size", "-5"], "--max-message-size -5:"),
        (["--max-per-ip", "-1"], "--max-per-ip -1:"),
        (["--port", "-1"], "--port -1: must be a whole number from 0 to 65535"),
        (["--protocol", "chat"], "--protocol chat: must be lokin"),
        (["--log-format", "xml"], "--log-format xml: must be text or json"),
    ],
)
def test_bad_values_exit_2_with_one_line(
    serve_process: Callable[..., ServeProcess], args: list[str], needle: str
) -> None:
    proc = serve_process(*args)
    assert proc.finish(15) == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lokin-doctor: error: "), lines
    assert needle in lines[0]


def test_config_refuses_non_finite_values() -> None:
    for field in ("open_timeout", "shutdown_timeout", "ping_interval", "ping_timeout"):
        for value in (float("nan"), float("inf"), -1.0, 0.0):
            with pytest.raises(ValueError, match=field):
                ServerConfig(**{field: value})
    with pytest.raises(ValueError, match="protocol"):
        ServerConfig(protocol="chat")
    with pytest.raises(ValueError, match="max_fragments"):
        ServerConfig(max_fragments=0)
