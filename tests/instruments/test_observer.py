"""The sans-I/O observers fed canned bytes: the outcome kind and the cause ``classify`` names, no socket.

The live-peer tests (tests/peers, tests/test_hostile.py) stay as the end-to-end proof; these pin the
verdict of every handshake cause on the bytes alone, in milliseconds.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import pytest
from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.frames import Close, Frame, Opcode
from websockets.typing import Subprotocol
from websockets.uri import parse_uri
from websockets.utils import accept_key

from lokin_doctor.checks.chain.handshake import classify
from lokin_doctor.i18n import set_language
from lokin_doctor.instruments.observer import (
    MAX_EVIDENCE,
    MAX_HEADER_BYTES,
    HandshakeObserver,
    OutcomeKind,
    SessionEnd,
    SessionObserver,
)
from lokin_doctor.instruments.wire import Outcome, from_observation
from lokin_doctor.target import parse_target
from lokin_doctor.tools.common import outcome_cause

URL = "ws://example.test:8080/ws"
TARGET = parse_target(URL)


@pytest.fixture(autouse=True)
def _english() -> None:
    set_language("en")


def _proto(subprotocols: Iterable[str] = (), compression: bool = False) -> tuple[ClientProtocol, str]:
    proto = ClientProtocol(
        parse_uri(URL),
        subprotocols=[Subprotocol(s) for s in subprotocols] or None,
        extensions=[ClientPerMessageDeflateFactory(client_max_window_bits=True)] if compression else None,
        max_size=2**20,
    )
    request = proto.connect()
    proto.send_request(request)
    return proto, request.headers["Sec-WebSocket-Key"]


def observe(
    *chunks: bytes | str,
    end: str | None = "eof",
    subprotocols: Iterable[str] = (),
    compression: bool = False,
) -> tuple[Outcome, HandshakeObserver]:
    """Feed ``chunks`` (``{accept}`` is replaced by the right Sec-WebSocket-Accept), then ``end``."""
    proto, key = _proto(subprotocols, compression)
    obs = HandshakeObserver(proto)
    assert obs.data_to_send()[0].startswith(b"GET /ws HTTP/1.1\r\n")
    for chunk in chunks:
        data = (
            chunk.replace("{accept}", accept_key(key)).encode("latin-1") if isinstance(chunk, str) else chunk
        )
        obs.data(data)
    if not obs.done:
        if end == "eof":
            obs.eof()
        elif end == "timeout":
            obs.timeout()
        elif end == "reset":
            obs.reset(ConnectionResetError(104, "Connection reset by peer"))
    assert obs.outcome is not None, "the observer reached no verdict"
    out = from_observation(obs.outcome, "127.0.0.1", 8080)
    offered = {}
    if subprotocols:
        offered["Sec-WebSocket-Protocol"] = ", ".join(subprotocols)
    if compression:
        offered["Sec-WebSocket-Extensions"] = "permessage-deflate; client_max_window_bits"
    out.offered = offered
    return out, obs


def cause(out: Outcome) -> str:
    return str(outcome_cause(out, TARGET).code)


def upgrade(*extra: str, accept: str = "{accept}") -> str:
    lines = ["HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade"]
    if accept:
        lines.append(f"Sec-WebSocket-Accept: {accept}")
    return "\r\n".join([*lines, *extra]) + "\r\n\r\n"


def reply(status: str, body: str = "", *headers: str, length: bool = True) -> str:
    head = [f"HTTP/1.1 {status}", *headers]
    if length:
        head.append(f"Content-Length: {len(body.encode())}")
    return "\r\n".join(head) + "\r\n\r\n" + body


# -- the handshake ------------------------------------------------------------------------------------


def test_valid_101_is_upgraded_and_classify_says_ok() -> None:
    out, obs = observe(upgrade(), end=None)
    assert out.kind is OutcomeKind.UPGRADED and out.kind == "upgraded"
    assert out.status == 101 and out.header("upgrade") == "websocket"
    result = classify(out, TARGET)
    assert result.status.value == "ok" and "Sec-WebSocket-Accept valid" in result.summary


def test_frames_in_the_same_bytes_as_the_101_are_kept_for_the_session() -> None:
    out, obs = observe(upgrade() + "\x81\x05hello", end=None)
    assert out.kind is OutcomeKind.UPGRADED
    assert [bytes(f.data) for f in obs.frames] == [b"hello"]


def test_smtp_banner_is_not_http() -> None:
    out, _ = observe(b"220 smtp.example ESMTP Postfix\r\n")
    assert out.kind is OutcomeKind.NOT_HTTP
    assert cause(out) == "handshake.not-http"
    assert "220 smtp.example ESMTP" in classify(out, TARGET).summary


def test_tls_alert_on_a_plain_port_means_wss_expected() -> None:
    # A TLS 1.2 alert record (handshake_failure), what a TLS-only port answers to a cleartext GET.
    out, _ = observe(b"\x15\x03\x03\x00\x02\x02\x28")
    assert out.kind is OutcomeKind.NOT_HTTP
    assert cause(out) == "handshake.tls-expected"


def test_tls_server_hello_bytes_mean_wss_expected() -> None:
    out, _ = observe(b"\x16\x03\x03\x00\x31\x02\x00\x00\x2d\x03\x03" + b"\x00" * 40)
    assert cause(out) == "handshake.tls-expected"


def test_426_with_version_8_means_the_server_speaks_an_old_draft() -> None:
    # RFC 6455 4.4: the versions a server offers; without 13 it speaks none a browser does (issue 18).
    out, _ = observe(reply("426 Upgrade Required", "", "Sec-WebSocket-Version: 8"))
    assert out.kind is OutcomeKind.STATUS and out.status == 426
    assert out.header("sec-websocket-version") == "8"
    assert cause(out) == "handshake.version-unsupported"


def test_426_offering_version_13_means_the_upgrade_was_dropped() -> None:
    out, _ = observe(reply("426 Upgrade Required", "", "Sec-WebSocket-Version: 13", "Upgrade: websocket"))
    assert cause(out) == "handshake.upgrade-dropped"


def test_101_with_a_bad_accept() -> None:
    out, _ = observe(upgrade(accept="dGhlIHNhbXBsZSBub25jZQ=="), end=None)
    assert out.kind is OutcomeKind.BAD_ACCEPT
    assert cause(out) == "handshake.bad-accept"


def test_101_without_accept_is_an_invalid_upgrade() -> None:
    # Today's verdict, kept: websockets calls a missing header InvalidHeader, not a wrong value.
    out, _ = observe(upgrade(accept=""), end=None)
    assert out.kind is OutcomeKind.INVALID_UPGRADE
    assert "missing Sec-WebSocket-Accept" in (out.error or "")


def test_101_without_upgrade_is_an_invalid_upgrade() -> None:
    out, _ = observe("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n", end=None)
    assert out.kind is OutcomeKind.INVALID_UPGRADE
    assert cause(out) == "handshake.invalid-upgrade"
    assert "Upgrade" in (out.error or "")


@pytest.mark.parametrize(
    ("status", "body", "headers", "code"),
    [
        ("404 Not Found", "<html><center>nginx</center></html>", ("Server: nginx",), "handshake.not-found"),
        ("400 Bad Request", "missing key", (), "handshake.bad-request"),
        ("502 Bad Gateway", "<html>bad gateway</html>", ("Server: nginx",), "handshake.bad-gateway"),
        ("503 Service Unavailable", "full", (), "handshake.unavailable"),
        ("504 Gateway Time-out", "", ("Server: nginx",), "handshake.gateway-timeout"),
        ("500 Internal Server Error", "boom", (), "handshake.server-error"),
        ("429 Too Many Requests", "", (), "handshake.rate-limited"),
        ("403 Forbidden", "origin not allowed", (), "handshake.forbidden"),
        ("401 Unauthorized", "", ("WWW-Authenticate: Bearer",), "handshake.forbidden"),
        ("301 Moved Permanently", "", ("Location: https://example.test/ws",), "handshake.redirect"),
        ("505 HTTP Version Not Supported", "", (), "handshake.http10-upstream"),
        ("200 OK", "<!doctype html><title>app</title>", ("Content-Type: text/html",), "handshake.web-page"),
        ("200 OK", '{"ok": true}', ("Content-Type: application/json",), "handshake.not-websocket"),
        ("418 I'm a teapot", "", (), "handshake.unexpected-status"),
        (
            "400 Bad Request",
            "<html>The plain HTTP request was sent to HTTPS port</html>",
            ("Server: nginx",),
            "handshake.plain-to-tls",
        ),
        (
            "400 Bad Request",
            "Invalid subprotocol: expected one of chat.v2",
            (),
            "handshake.subprotocol-required",
        ),
    ],
)
def test_http_replies_get_the_status_cause(
    status: str, body: str, headers: tuple[str, ...], code: str
) -> None:
    out, _ = observe(reply(status, body, *headers), end=None)
    assert out.kind is OutcomeKind.STATUS
    assert out.status == int(status.split()[0])
    assert out.body == body.encode()
    assert cause(out) == code


def test_http10_200_from_python_http_server() -> None:
    # What `python -m http.server` answers to a WebSocket GET: HTTP/1.0, a directory listing.
    body = '<!DOCTYPE HTML>\n<html lang="en"><head><title>Directory listing for /ws</title></head></html>\n'
    out, _ = observe(
        "HTTP/1.0 200 OK\r\nServer: SimpleHTTP/0.6 Python/3.11.7\r\nContent-type: text/html; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    )
    assert out.kind is OutcomeKind.STATUS and out.status == 200
    assert out.header("server") == "SimpleHTTP/0.6 Python/3.11.7"
    assert cause(out) == "handshake.web-page"


def test_a_non_101_head_without_length_gets_the_body_grace_then_its_status() -> None:
    proto, _ = _proto()
    obs = HandshakeObserver(proto)
    obs.data(b"HTTP/1.1 404 Not Found\r\nServer: toy\r\n\r\nno such")
    # websockets waits for the end of a body with no length: the adapter gives it BODY_GRACE_S.
    assert not obs.done and obs.grace
    obs.data(b" endpoint")
    final = from_observation(obs.timeout(), "127.0.0.1", 8080)
    assert final.kind is OutcomeKind.STATUS and final.status == 404
    assert final.body == b"no such endpoint"
    assert cause(final) == "handshake.not-found"


def test_a_101_head_gets_no_body_grace() -> None:
    proto, _ = _proto()
    obs = HandshakeObserver(proto)
    obs.data(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n")
    assert not obs.grace and not obs.done


def test_reply_cut_mid_head_then_eof() -> None:
    out, _ = observe("HTTP/1.1 101 Switching Protocols\r\nUpgrade: webs")
    assert out.kind is OutcomeKind.CLOSED
    assert "in the middle of its reply" in (out.error or "")
    assert cause(out) == "handshake.closed"


def test_reply_cut_mid_head_then_deadline_is_an_incomplete_reply() -> None:
    out, _ = observe("HTTP/1.1 200 OK\r\nServer: slow", end="timeout")
    assert out.kind is OutcomeKind.TIMEOUT and out.raw.startswith(b"HTTP/1.1 200")
    assert cause(out) == "handshake.incomplete-reply"


def test_eof_with_no_reply_is_closed() -> None:
    out, _ = observe()
    assert out.kind is OutcomeKind.CLOSED and out.raw == b""
    assert "without replying" in (out.error or "")
    assert cause(out) == "handshake.closed"


def test_silence_until_the_deadline_is_no_response() -> None:
    out, _ = observe(end="timeout")
    assert out.kind is OutcomeKind.TIMEOUT
    assert cause(out) == "handshake.no-response"


def test_reset_with_no_reply() -> None:
    out, _ = observe(end="reset")
    assert out.kind is OutcomeKind.RESET and "reset" in (out.error or "").lower()
    assert cause(out) == "handshake.reset"


def test_reset_after_a_whole_head_keeps_the_status() -> None:
    out, _ = observe("HTTP/1.1 502 Bad Gateway\r\nServer: nginx\r\n\r\n<html>", end="reset")
    assert out.kind is OutcomeKind.STATUS and out.status == 502
    assert cause(out) == "handshake.bad-gateway"


def test_header_block_past_the_limit() -> None:
    proto, _ = _proto()
    obs = HandshakeObserver(proto)
    line = b"X-Junk: " + b"a" * 1000 + b"\r\n"
    obs.data(b"HTTP/1.1 200 OK\r\n")
    for _ in range(MAX_HEADER_BYTES // 1024 + 2):
        if obs.done:
            break
        obs.data(line)
    assert obs.outcome is not None
    out = from_observation(obs.outcome, "127.0.0.1", 8080)
    assert out.kind is OutcomeKind.HEADERS_TOO_LARGE
    assert len(out.raw) <= MAX_EVIDENCE
    assert cause(out) == "handshake.headers-too-large"


def test_header_block_past_the_limit_in_one_line() -> None:
    # websockets' own limit: a line past 8 KiB.
    out, _ = observe("HTTP/1.1 200 OK\r\nX-Big: " + "b" * 10000 + "\r\n\r\n")
    assert out.kind is OutcomeKind.HEADERS_TOO_LARGE
    assert cause(out) == "handshake.headers-too-large"


def test_101_naming_a_subprotocol_not_offered() -> None:
    out, _ = observe(upgrade("Sec-WebSocket-Protocol: mqtt"), subprotocols=("chat",), end=None)
    assert out.kind is OutcomeKind.BAD_SUBPROTOCOL
    assert cause(out) == "handshake.subprotocol-not-offered"
    assert "'mqtt'" in classify(out, TARGET).summary


def test_101_naming_a_subprotocol_when_none_was_offered() -> None:
    out, _ = observe(upgrade("Sec-WebSocket-Protocol: mqtt"), end=None)
    assert out.kind is OutcomeKind.BAD_SUBPROTOCOL
    assert cause(out) == "handshake.subprotocol-not-offered"


def test_101_with_an_extension_not_offered() -> None:
    out, _ = observe(upgrade("Sec-WebSocket-Extensions: x-webkit-deflate-frame"), compression=True, end=None)
    assert out.kind is OutcomeKind.BAD_EXTENSION
    assert cause(out) == "handshake.extension-not-offered"


def test_101_with_extension_parameters_the_client_cannot_accept() -> None:
    out, _ = observe(
        upgrade("Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=7"),
        compression=True,
        end=None,
    )
    assert out.kind is OutcomeKind.BAD_EXTENSION
    assert cause(out) == "handshake.extension-params"


def test_tls_error_while_reading() -> None:
    import ssl

    proto, _ = _proto()
    obs = HandshakeObserver(proto)
    out = from_observation(obs.tls_failed(ssl.SSLError(1, "decryption failed")), "127.0.0.1", 8080)
    assert out.kind is OutcomeKind.TLS_ERROR
    assert cause(out) == "handshake.tls-error"


def test_tls_error_after_a_certificate_request_means_a_client_cert_is_required() -> None:
    import ssl

    proto, _ = _proto()
    out = from_observation(
        HandshakeObserver(proto).tls_failed(ssl.SSLError(1, "tlsv13 alert certificate required")),
        "127.0.0.1",
        8080,
    )
    assert cause(out) == "tls.client-cert-required"


def test_tls_error_after_offering_a_cert_means_it_was_rejected() -> None:
    import ssl

    proto, _ = _proto()
    out = from_observation(
        HandshakeObserver(proto).tls_failed(ssl.SSLError(1, "sslv3 alert bad certificate")), "127.0.0.1", 8080
    )
    out.client_cert_offered = True
    assert cause(out) == "tls.client-cert-rejected"


def test_connect_stage_outcomes() -> None:
    proto, _ = _proto()
    refused = from_observation(
        HandshakeObserver(proto).connect_refused(ConnectionRefusedError(111, "refused")), "127.0.0.1", 8080
    )
    timeout = from_observation(HandshakeObserver(proto).connect_timeout(), "127.0.0.1", 8080)
    error = from_observation(
        HandshakeObserver(proto).connect_error(OSError(101, "Network is unreachable")), "127.0.0.1", 8080
    )
    reset = from_observation(
        HandshakeObserver(proto).connect_reset(ConnectionResetError(104, "reset"), tls=True),
        "127.0.0.1",
        8080,
    )
    assert (refused.kind, timeout.kind, error.kind, reset.kind) == (
        OutcomeKind.CONNECT_REFUSED,
        OutcomeKind.CONNECT_TIMEOUT,
        OutcomeKind.CONNECT_ERROR,
        OutcomeKind.TLS_ERROR,
    )
    # classify's own codes for the handshake check, the tcp codes for the tools (outcome_cause).
    assert classify(refused, TARGET).code == "handshake.refused"
    assert classify(timeout, TARGET).code == "handshake.connect-timeout"
    assert cause(refused) == "tcp.refused"
    assert cause(timeout) == "tcp.timeout"
    assert cause(error) == "tcp.unreachable"


def test_evidence_is_bounded() -> None:
    out, _ = observe(reply("200 OK", "x" * (MAX_EVIDENCE * 2), "Content-Type: text/plain"), end=None)
    assert out.kind is OutcomeKind.STATUS
    assert len(out.body) == MAX_EVIDENCE and len(out.raw) == MAX_EVIDENCE


def test_the_outcome_is_frozen_and_its_kind_a_str() -> None:
    _, obs = observe(reply("404 Not Found"), end=None)
    assert obs.outcome is not None
    with pytest.raises(AttributeError):
        obs.outcome.kind = OutcomeKind.UPGRADED  # type: ignore[misc]
    assert f"{obs.outcome.kind}" == "status" and obs.outcome.kind == "status"
    assert sorted(k.value for k in OutcomeKind) == sorted(
        [
            "upgraded",
            "status",
            "invalid-upgrade",
            "bad-accept",
            "not-http",
            "closed",
            "reset",
            "timeout",
            "connect-refused",
            "connect-timeout",
            "connect-error",
            "tls-error",
            "headers-too-large",
            "bad-subprotocol",
            "bad-extension",
        ]
    )


def test_every_handshake_cause_classify_returns_is_reached_from_bytes() -> None:
    """One canned reply per handshake.* code in classify: the list is read from its source."""
    import inspect
    import re

    from lokin_doctor.checks.chain import answer_table, handshake

    source = inspect.getsource(handshake.classify) + inspect.getsource(handshake._classify_status)
    source += inspect.getsource(handshake._classify_negotiation)
    # The status table's rows: tests/instruments/test_answer.py reaches each from bytes.
    source += inspect.getsource(answer_table)
    names = set(re.findall(r"\b(HANDSHAKE_[A-Z0-9_]+)\b", source))
    codes = {str(getattr(handshake, n, None) or getattr(answer_table, n)) for n in names}
    covered = set(_COVERED)
    assert codes <= covered, f"handshake causes with no byte-level test here: {sorted(codes - covered)}"


_COVERED = (
    "handshake.refused",
    "handshake.connect-timeout",
    "handshake.tls-error",
    "handshake.closed",
    "handshake.reset",
    "handshake.incomplete-reply",
    "handshake.no-response",
    "handshake.tls-expected",
    "handshake.not-http",
    "handshake.bad-accept",
    "handshake.headers-too-large",
    "handshake.invalid-upgrade",
    "handshake.subprotocol-not-offered",
    "handshake.extension-not-offered",
    "handshake.extension-params",
    "handshake.subprotocol-required",
    "handshake.plain-to-tls",
    "handshake.upgrade-dropped",
    "handshake.http10-upstream",
    "handshake.forbidden",
    "handshake.not-found",
    "handshake.redirect",
    "handshake.bad-gateway",
    "handshake.gateway-timeout",
    "handshake.unavailable",
    "handshake.rate-limited",
    "handshake.web-page",
    "handshake.not-websocket",
    "handshake.bad-request",
    "handshake.server-error",
    "handshake.unexpected-status",
    # Reached from bytes in tests/instruments/test_answer.py.
    "handshake.version-unsupported",
    "handshake.event-stream",
    "handshake.method-not-allowed",
    "handshake.request-timeout",
    "handshake.client-error",
    "handshake.misdirected",
    "handshake.no-backend",
    "handshake.captive-portal",
)


def test_a_verdict_takes_well_under_a_millisecond() -> None:
    t0 = time.perf_counter()
    for _ in range(200):
        observe(b"220 smtp.example ESMTP\r\n")
    assert (time.perf_counter() - t0) / 200 < 0.005


# -- the session --------------------------------------------------------------------------------------


def _session() -> SessionObserver:
    out, obs = observe(upgrade(), end=None)
    assert out.kind is OutcomeKind.UPGRADED
    session = SessionObserver(obs.proto)
    session.data_to_send()
    return session


def test_session_close_frame() -> None:
    s = _session()
    frames = s.data(Frame(Opcode.CLOSE, Close(1001, "going away").serialize()).serialize(mask=False))
    assert [f.opcode for f in frames] == [Opcode.CLOSE]
    assert s.end is SessionEnd.CLOSED
    assert s.proto.close_rcvd is not None and s.proto.close_rcvd.code == 1001
    assert s.protocol_error is None


def test_session_invalid_utf8_text_fails_with_1007() -> None:
    s = _session()
    frames = s.data(b"\x81\x03ok\xff" + b"\x81\x02hi")
    assert s.end is SessionEnd.INVALID_UTF8
    assert [bytes(f.data) for f in frames] == [b"ok\xff"]  # nothing after the offending frame
    assert s.utf8_error is not None and "invalid UTF-8" in s.utf8_error
    assert s.proto.close_sent is not None and s.proto.close_sent.code == 1007


def test_session_utf8_split_across_fragments_is_valid() -> None:
    s = _session()
    euro = "€".encode()
    s.data(b"\x01\x01" + euro[:1] + b"\x80\x02" + euro[1:])
    assert s.end is None


def test_session_frame_announcing_2_62_bytes_is_too_big() -> None:
    s = _session()
    frames = s.data(b"\x82\x7f" + (2**62).to_bytes(8, "big"))
    assert frames == []
    assert s.end is SessionEnd.TOO_BIG
    assert s.proto.close_sent is not None and s.proto.close_sent.code == 1009


def test_session_masked_server_frame_is_a_protocol_error() -> None:
    s = _session()
    s.data(b"\x81\x82" + b"\x01\x02\x03\x04" + bytes([ord("h") ^ 1, ord("i") ^ 2]))
    assert s.end is SessionEnd.PROTOCOL_ERROR
    assert "mask" in str(s.protocol_error).lower()
    assert s.proto.close_sent is not None and s.proto.close_sent.code == 1002


def test_session_ping_is_delivered_and_answered() -> None:
    s = _session()
    frames = s.data(b"\x89\x04ping")
    assert [(f.opcode, bytes(f.data)) for f in frames] == [(Opcode.PING, b"ping")]
    assert s.end is None
    pong = b"".join(s.data_to_send())
    assert pong[0] == 0x8A and pong[1] & 0x80  # a masked pong
    assert s.proto.state.name == "OPEN"


def test_session_eof_without_close_is_dropped() -> None:
    s = _session()
    s.eof()
    assert s.end is SessionEnd.DROPPED
