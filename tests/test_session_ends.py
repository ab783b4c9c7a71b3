"""How a connection that got its 101 ends, named by the bytes: a TCP drop without a close frame right after the
upgrade (``session.dropped``), and a close frame while messages go back and forth in the tools (``session.closed``)."""

from __future__ import annotations

import base64
import hashlib
import socket
import threading
from collections.abc import Iterator

import pytest

from lokin_doctor.tools.common import session_cause
from tests.helpers import run_cli

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


@pytest.fixture
def drops_after_upgrade() -> Iterator[str]:
    """A peer that answers a valid 101 (correct Sec-WebSocket-Accept), then closes TCP without a close frame."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                data = b""
                try:
                    while b"\r\n\r\n" not in data and len(data) < 65536:
                        chunk = conn.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                except OSError:
                    continue
                key = next(
                    (
                        line.split(b":", 1)[1].strip()
                        for line in data.split(b"\r\n")
                        if line.lower().startswith(b"sec-websocket-key:")
                    ),
                    b"",
                )
                accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
                conn.sendall(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
                )

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"ws://127.0.0.1:{listener.getsockname()[1]}/"
    finally:
        stop.set()
        thread.join(2)
        listener.close()


def test_a_drop_right_after_the_upgrade_is_session_dropped(drops_after_upgrade: str) -> None:
    run = run_cli("handshake", drops_after_upgrade, "--json", "--timeout", "3")
    assert run.code == 1, run.stdout
    session = run.check("session")
    assert session["status"] == "fail" and session["code"] == "session.dropped", session
    assert "without a close frame (1006)" in session["summary"]
    assert run.check("handshake")["status"] == "ok"  # the 101 was valid: the break is after it
    assert run.root_code == "session.dropped"


@pytest.mark.parametrize(("code", "expected"), [(1001, "session.closed"), (None, "session.dropped")])
def test_the_tools_name_an_end_while_messages_go_back_and_forth(code: int | None, expected: str) -> None:
    finding = session_cause("echo", code, "going away" if code else "")
    assert finding.code == expected
    if code:
        assert "1001" in finding.summary and "(going away)" in finding.summary
    assert finding.hint
