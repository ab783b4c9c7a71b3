"""engineio: the sans-I/O reading of Engine.IO answers, fed the exact bytes real servers send
(socket.io 4.8 / engine.io 6.6 and socket.io 2.5 / engine.io 3.6, recorded from tests/peers/socketio*)."""

from __future__ import annotations

import pytest

from lokin_doctor.instruments import engineio as eio

JSON = [("Content-Type", "application/json"), ("Access-Control-Allow-Origin", "*")]
UPGRADE = [("Connection", "close"), ("Content-type", "text/html"), ("Content-Length", "17")]


@pytest.mark.parametrize(
    ("status", "headers", "body", "code", "transport"),
    [
        (400, JSON, b'{"code":0,"message":"Transport unknown"}', 0, "polling"),
        (400, JSON, b'{"code":1,"message":"Session ID unknown"}', 1, "polling"),
        (400, JSON, b'{"code":3,"message":"Bad request"}', 3, "polling"),
        (400, JSON, b'{"code":5,"message":"Unsupported protocol version"}', 5, "polling"),
        (403, JSON, b'{"code":4,"message":"origin not allowed"}', 4, "polling"),
        (400, UPGRADE, b"Transport unknown", 0, "websocket"),
        (400, UPGRADE, b"Unsupported protocol version", 5, "websocket"),
    ],
)
def test_recognises_engine_io_errors(status, headers, body, code, transport) -> None:
    found = eio.recognise(status, headers, body)
    assert found is not None
    assert (found.code, found.transport) == (code, transport)


@pytest.mark.parametrize(
    ("status", "headers", "body"),
    [
        (400, JSON, b'{"code":0,"message":"Transport unknown","extra":1}'),  # not engine.io's shape
        (400, JSON, b'{"code":9,"message":"Transport unknown"}'),  # no such code
        (400, JSON, b'{"code":0,"message":"Something else"}'),  # code and message disagree
        (403, JSON, b'{"code":0,"message":"Transport unknown"}'),  # 403 is only Forbidden
        (400, JSON, b'{"code":true,"message":"Transport unknown"}'),
        (400, [("Content-Type", "text/html")], b"<html><title>400 Bad Request</title></html>"),
        (400, [("Content-Type", "text/plain")], b"Bad Request: missing Sec-WebSocket-Key"),
        (404, [], b"Transport unknown"),
        (200, JSON, b'{"code":0,"message":"Transport unknown"}'),
        (400, JSON, b""),
    ],
)
def test_other_answers_are_not_engine_io(status, headers, body) -> None:
    assert eio.recognise(status, headers, body) is None


def test_open_packet_v4() -> None:
    raw = '0{"sid":"nz0AHIUx_nhYIwG4AAAB","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}'
    packet = eio.parse_open(raw)
    assert packet is not None
    assert (packet.sid, packet.ping_interval_ms, packet.ping_timeout_ms, packet.max_payload) == (
        "nz0AHIUx_nhYIwG4AAAB",
        25000,
        20000,
        1000000,
    )
    assert eio.protocol_of(packet, None, None) == 4


@pytest.mark.parametrize("raw", ["40", "0", "0{not json", '0{"upgrades":[]}', "3probe", '0["sid"]'])
def test_not_an_open_packet(raw: str) -> None:
    assert eio.parse_open(raw) is None


def test_polling_framing_tells_the_protocol() -> None:
    v4 = b'0{"sid":"9NKSY7zJrlZLpgN8AAAA","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}'
    payload = eio.parse_polling(v4)
    assert payload is not None and payload.protocol == 4 and len(payload.packets) == 1
    v3 = b'97:0{"sid":"SYIUm83jheXptuTEAAAA","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000}2:40'
    payload = eio.parse_polling(v3)
    assert payload is not None and payload.protocol == 3
    assert payload.packets[1] == "40"
    opened = eio.parse_open(payload.packets[0])
    assert opened is not None and opened.max_payload is None
    assert eio.protocol_of(opened, payload, None) == 3
    assert eio.parse_polling(b'40\x1e42["a"]') == eio.Payload(4, ("40", '42["a"]'))


@pytest.mark.parametrize("body", [b"<!DOCTYPE html>", b'{"code":0}', b"", b"97:0{short", b"\x00\x01\xff"])
def test_polling_rejects_what_is_not_engine_io(body: bytes) -> None:
    assert eio.parse_polling(body) is None


def test_connect_replies() -> None:
    ok = eio.parse_connect_reply('40{"sid":"VLm2yLKZFNe0HKreAAAA"}')
    assert ok is not None and ok.kind == "ok" and ok.sid == "VLm2yLKZFNe0HKreAAAA"
    v2 = eio.parse_connect_reply("40")
    assert v2 is not None and v2.kind == "ok-v2"
    assert eio.protocol_of(None, None, v2) == 3
    refused = eio.parse_connect_reply('44{"message":"not authorized"}')
    assert refused is not None and refused.kind == "error" and refused.message == "not authorized"
    ns = eio.parse_connect_reply('44/admin,{"message":"Invalid namespace"}')
    assert ns is not None and (ns.namespace, ns.message) == ("/admin", "Invalid namespace")
    assert eio.parse_connect_reply('42["welcome"]') is None
    assert eio.parse_connect_reply("2") is None


def test_connect_packet() -> None:
    assert eio.connect_packet() == "40"
    assert eio.connect_packet("/admin") == "40/admin,"
    assert eio.connect_packet(auth={"token": "x"}) == '40{"token":"x"}'


def test_urls() -> None:
    url = eio.read_url("/socket.io/?EIO=4&transport=websocket")
    assert (url.path, url.eio, url.transport, url.is_engineio) == ("/socket.io/", 4, "websocket", True)
    assert not eio.read_url("/ws").is_engineio
    assert eio.endpoint("/socket.io") == "/socket.io/?EIO=4&transport=websocket"
    assert eio.endpoint("/socket.io/", eio=3, transport="polling") == "/socket.io/?EIO=3&transport=polling"
    assert eio.candidate_paths("/") == ["/socket.io/"]
    assert eio.candidate_paths("/chat") == ["/chat/socket.io/", "/socket.io/"]
    assert eio.candidate_paths("/socket.io/?EIO=4&transport=websocket") == ["/socket.io/"]
    assert eio.candidate_paths("/app/socket.io") == ["/app/socket.io/", "/socket.io/"]
    assert eio.candidate_paths("/custom/?EIO=4&transport=websocket") == [
        "/custom/",
        "/custom/socket.io/",
        "/socket.io/",
    ]
