"""The socketio check against real socket.io servers (npm socket.io 4.8 and 2.5, tests/peers/sio.py)."""

from __future__ import annotations

from tests.helpers import run_cli


def _run(url: str, *extra: str):
    return run_cli("all", url, "--json", "--no-variants", "--timeout", "5", "--lang", "en", *extra)


def test_plain_websocket_client_to_a_socketio_server(socketio_server) -> None:
    peer = socketio_server()
    run = _run(peer.url)
    assert run.code == 1
    sio = run.check("socketio")
    assert sio["code"] == "socketio.plain-client"
    assert run.root_code == "socketio.plain-client"
    assert "socket.io-client 4" in sio["hint"]
    assert "/socket.io/?EIO=4&transport=websocket" in sio["hint"]
    # the right URL was verified for real: its open packet and ping interval are in the report
    assert sio["evidence"]["open_packet"]["ping_interval_ms"] == 25000
    assert "works" in sio["summary"]
    assert "pingInterval 25 s" in sio["summary"]


def test_socket_io_path_without_engine_query(socketio_server) -> None:
    peer = socketio_server()
    run = _run(peer.url.rstrip("/") + "/socket.io/")
    assert run.check("handshake")["code"] == "socketio.plain-client"  # 400 'Transport unknown', read as such
    assert run.root_code == "socketio.plain-client"


def test_engine_io_url_is_healthy(socketio_server) -> None:
    peer = socketio_server()
    run = _run(peer.extra["engine_url"])
    sio = run.check("socketio")
    assert sio["status"] == "ok", sio
    assert sio["summary"].startswith(
        "Socket.IO server healthy at /socket.io/ (Engine.IO 4, pingInterval 25 s"
    )
    assert "sid " in sio["summary"]
    assert run.check("handshake")["status"] == "ok"


def test_namespace_middleware_refusing(socketio_server) -> None:
    peer = socketio_server(refuse=True)
    run = _run(peer.extra["engine_url"])
    sio = run.check("socketio")
    assert sio["code"] == "socketio.connect-refused"
    assert "not authorized" in sio["summary"]
    assert run.root_code == "socketio.connect-refused"
    assert run.code == 1


def test_custom_path_found_under_the_url_prefix(socketio_server) -> None:
    peer = socketio_server(path="/chat/socket.io")
    run = _run(peer.url.rstrip("/") + "/chat")
    sio = run.check("socketio")
    assert sio["code"] == "socketio.plain-client"
    assert sio["evidence"]["path"] == "/chat/socket.io/"
    assert 'path: "/chat/socket.io"' in sio["hint"]


def test_v2_server_with_a_v4_client_url(socketio_server) -> None:
    peer = socketio_server(version=2)
    run = _run(f"ws://127.0.0.1:{peer.port}/socket.io/?EIO=4&transport=websocket")
    sio = run.check("socketio")
    assert sio["code"] == "socketio.version-mismatch"
    assert "Socket.IO 2" in sio["summary"]
    assert run.root_code == "socketio.version-mismatch"


def test_v2_client_url_to_a_v4_server(socketio_server) -> None:
    peer = socketio_server()
    run = _run(f"ws://127.0.0.1:{peer.port}/socket.io/?EIO=3&transport=websocket")
    assert run.root_code == "socketio.version-mismatch"
    assert "allowEIO3" in run.report["root_cause"]["hint"]


def test_v2_server_is_healthy_for_its_own_client(socketio_server) -> None:
    peer = socketio_server(version=2)
    run = _run(peer.extra["engine_url"])
    sio = run.check("socketio")
    assert sio["status"] == "ok", sio
    assert "Engine.IO 3" in sio["summary"]


def test_plain_websocket_server_costs_nothing(ws_server) -> None:
    run = _run(ws_server.url)
    assert run.code == 0
    sio = run.check("socketio")
    assert sio["status"] == "skip"
