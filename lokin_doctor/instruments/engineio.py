"""Engine.IO / Socket.IO, sans I/O: recognise the server from what it answers, read its packets.

A Socket.IO server is an Engine.IO server underneath (``engine.io`` npm package, lib/server.ts). What it
answers a request it cannot take:

* a plain HTTP request (polling transport) gets ``400`` (``403`` for ``Forbidden``) with
  ``Content-Type: application/json`` and ``{"code": N, "message": M}``;
* an upgrade request gets ``HTTP/1.1 400 Bad Request``, ``Connection: close``, ``Content-type: text/html``
  and the bare message as the body (``abortUpgrade``);
* an upgrade outside its path (``/socket.io/`` by default) gets nothing: engine.io ends the socket after
  ``destroyUpgradeTimeout`` (1 s) without a byte, so a plain ``new WebSocket("ws://host/")`` sees the
  connection closed.

The codes (``Server.errors`` / ``Server.errorMessages``), the same in engine.io 3 (Socket.IO 2) and 6
(Socket.IO 4): 0 ``Transport unknown``, 1 ``Session ID unknown``, 2 ``Bad handshake method``, 3 ``Bad
request``, 4 ``Forbidden`` (or the message ``allowRequest`` gave), 5 ``Unsupported protocol version``
(an ``EIO=3`` client on a server without ``allowEIO3``).

The protocol (https://socket.io/docs/v4/engine-io-protocol/): the open packet is ``0`` followed by
JSON ``{"sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"}`` (``maxPayload`` only in
Engine.IO 4 servers of engine.io >= 6.1); ``2`` is a ping and ``3`` a pong (protocol 4: the server
pings; protocol 3: the client does); ``4`` carries a message, whose first digit is the Socket.IO
packet type: ``40`` CONNECT, ``41`` DISCONNECT, ``42`` EVENT, ``44`` CONNECT_ERROR. A Socket.IO 3/4
server answers the client's ``40`` with ``40{"sid": ...}`` or ``44{"message": ...}``; a Socket.IO 2
server sends a bare ``40`` on its own for the main namespace. Over HTTP long-polling, protocol 4
separates packets with the record separator ``\\x1e``; protocol 3 prefixes each with its length
(``97:0{...}2:40``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

#: ``Server.errorMessages`` of engine.io.
ERROR_MESSAGES: Mapping[int, str] = {
    0: "Transport unknown",
    1: "Session ID unknown",
    2: "Bad handshake method",
    3: "Bad request",
    4: "Forbidden",
    5: "Unsupported protocol version",
}
UNKNOWN_TRANSPORT, UNKNOWN_SID, BAD_HANDSHAKE_METHOD, BAD_REQUEST, FORBIDDEN, UNSUPPORTED_PROTOCOL = range(6)
_BY_MESSAGE = {m.lower(): c for c, m in ERROR_MESSAGES.items()}

#: The path socket.io's server listens on unless its ``path`` option says otherwise.
DEFAULT_PATH = "/socket.io/"

#: Engine.IO packet types (the first character of a packet).
OPEN, CLOSE, PING, PONG, MESSAGE, UPGRADE, NOOP = "0123456"
#: Socket.IO packet types (the character after Engine.IO's ``4``).
SIO_CONNECT, SIO_DISCONNECT, SIO_EVENT, SIO_ACK, SIO_CONNECT_ERROR = "01234"

RECORD_SEPARATOR = "\x1e"


@dataclass(frozen=True)
class EngineError:
    """An Engine.IO error answer: its code (None when only the message was recognised) and message."""

    code: int | None
    message: str
    status: int
    #: ``polling`` (a JSON body, the answer to a plain request) or ``websocket`` (the bare text body of
    #: ``abortUpgrade``).
    transport: str

    @property
    def name(self) -> str:
        """engine.io's own words for the code (the message may be ``allowRequest``'s)."""
        return ERROR_MESSAGES.get(self.code, self.message) if self.code is not None else self.message


def _header(headers: Iterable[tuple[str, str]], name: str) -> str | None:
    lname = name.lower()
    for k, v in headers:
        if k.lower() == lname:
            return v
    return None


def recognise(status: int | None, headers: Iterable[tuple[str, str]], body: bytes) -> EngineError | None:
    """The Engine.IO error in an HTTP answer, or None when the answer is not Engine.IO's.

    Strict on purpose (no false alarm): a JSON body must be exactly ``{"code": 0..5, "message": str}``
    with the code's own message (``Forbidden`` may carry ``allowRequest``'s words); a text body must be
    one of the six messages and nothing else, on a 400 with ``Connection: close`` (``abortUpgrade``).
    """
    if status not in (400, 403) or not body or len(body) > 2048:
        return None
    text = body.decode("utf-8", "replace").strip()
    headers = list(headers)
    ctype = (_header(headers, "content-type") or "").lower()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            return None
        if not isinstance(data, dict) or set(data) != {"code", "message"}:
            return None
        code, message = data["code"], data["message"]
        if not isinstance(code, int) or isinstance(code, bool) or code not in ERROR_MESSAGES:
            return None
        if not isinstance(message, str):
            return None
        expected_status = 403 if code == FORBIDDEN else 400
        if status != expected_status or (code != FORBIDDEN and message != ERROR_MESSAGES[code]):
            return None
        return EngineError(code, message, status, "polling")
    # abortUpgrade's exact bytes: its message as written (Go's "Bad Request\n" is not "Bad request"),
    # Content-type: text/html and Connection: close.
    code = next((c for c, m in ERROR_MESSAGES.items() if m == text), None)
    connection = (_header(headers, "connection") or "").lower()
    if code is None or status != 400 or not ctype.startswith("text/html") or "close" not in connection:
        return None
    return EngineError(code, text, status, "websocket")


@dataclass(frozen=True)
class OpenPacket:
    """Engine.IO's open packet (``0{...}``)."""

    sid: str
    upgrades: tuple[str, ...]
    ping_interval_ms: int | None
    ping_timeout_ms: int | None
    max_payload: int | None
    raw: str

    def evidence(self) -> dict[str, Any]:
        ev: dict[str, Any] = {"sid": self.sid, "upgrades": list(self.upgrades)}
        for key, value in (
            ("ping_interval_ms", self.ping_interval_ms),
            ("ping_timeout_ms", self.ping_timeout_ms),
            ("max_payload", self.max_payload),
        ):
            if value is not None:
                ev[key] = value
        return ev


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def parse_open(packet: str) -> OpenPacket | None:
    """The open packet, or None when ``packet`` is not one (``0`` + a JSON object with a string sid)."""
    if not packet.startswith(OPEN + "{"):
        return None
    try:
        data = json.loads(packet[1:])
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("sid"), str):
        return None
    upgrades = data.get("upgrades")
    return OpenPacket(
        sid=data["sid"],
        upgrades=tuple(u for u in upgrades if isinstance(u, str)) if isinstance(upgrades, list) else (),
        ping_interval_ms=_int(data.get("pingInterval")),
        ping_timeout_ms=_int(data.get("pingTimeout")),
        max_payload=_int(data.get("maxPayload")),
        raw=packet,
    )


_V3_FRAME = re.compile(r"(\d{1,7}):")


@dataclass(frozen=True)
class Payload:
    """A polling body split into packets, and the Engine.IO protocol its framing says (3 or 4)."""

    protocol: int
    packets: tuple[str, ...]


def parse_polling(body: bytes) -> Payload | None:
    """The packets of a long-polling answer: protocol 3 (``len:packet`` repeated) or 4 (``\\x1e``-joined).

    None for a body that is neither (a web page, JSON, binary framing).
    """
    text = body.decode("utf-8", "replace")
    if not text:
        return None
    m = _V3_FRAME.match(text)
    if m:
        packets: list[str] = []
        pos = 0
        for _ in range(256):  # bounded: a polling answer holds a handful of packets
            m = _V3_FRAME.match(text, pos)
            if m is None:
                break
            size = int(m.group(1))
            start = m.end()
            packet = text[start : start + size]
            if len(packet) != size or not packet or packet[0] not in "0123456":
                return None
            packets.append(packet)
            pos = start + size
            if pos >= len(text):
                return Payload(3, tuple(packets))
        return None
    if text[0] not in "0123456":
        return None
    return Payload(4, tuple(text.split(RECORD_SEPARATOR)))


@dataclass(frozen=True)
class ConnectReply:
    """What a Socket.IO server answered to a CONNECT (``40``).

    ``kind``: ``ok`` (``40{"sid":...}``, Socket.IO 3/4), ``ok-v2`` (a bare ``40``: Socket.IO 2),
    ``error`` (``44{...}``: a middleware or the namespace refused), ``other`` (another packet).
    """

    kind: str
    namespace: str = "/"
    sid: str | None = None
    message: str | None = None
    data: Any = None
    raw: str = ""


def connect_packet(namespace: str = "/", auth: Mapping[str, Any] | None = None) -> str:
    """The Engine.IO message carrying a Socket.IO CONNECT for ``namespace`` (``40``, ``40/chat,``)."""
    ns = "" if namespace in ("", "/") else f"{namespace},"
    return MESSAGE + SIO_CONNECT + ns + (json.dumps(dict(auth), separators=(",", ":")) if auth else "")


def parse_connect_reply(packet: str) -> ConnectReply | None:
    """A Socket.IO CONNECT / CONNECT_ERROR from the server, or None when ``packet`` is not one."""
    if len(packet) < 2 or packet[0] != MESSAGE or packet[1] not in (SIO_CONNECT, SIO_CONNECT_ERROR):
        return None
    rest = packet[2:]
    namespace = "/"
    if rest.startswith("/"):
        namespace, _, rest = rest.partition(",")
    data: Any = None
    if rest:
        try:
            data = json.loads(rest)
        except ValueError:
            data = rest
    if packet[1] == SIO_CONNECT_ERROR:
        if isinstance(data, dict):
            message = str(data.get("message", data))
        else:
            message = str(data) if data is not None else ""
        return ConnectReply("error", namespace, message=message, data=data, raw=packet)
    if isinstance(data, dict) and isinstance(data.get("sid"), str):
        return ConnectReply("ok", namespace, sid=data["sid"], data=data, raw=packet)
    if data is None:
        return ConnectReply("ok-v2", namespace, raw=packet)
    return ConnectReply("other", namespace, data=data, raw=packet)


@dataclass(frozen=True)
class EngineUrl:
    """What a URL says about Engine.IO: its path, the protocol it asks for and the transport."""

    path: str
    eio: int | None
    transport: str | None
    query: dict[str, list[str]] = field(default_factory=dict)

    @property
    def is_engineio(self) -> bool:
        """The URL is an Engine.IO endpoint URL (``EIO=`` or ``transport=`` in its query)."""
        return self.eio is not None or self.transport is not None


def read_url(resource: str) -> EngineUrl:
    """The Engine.IO parts of a request target (``/socket.io/?EIO=4&transport=websocket``)."""
    parts = urlsplit(resource)
    query = parse_qs(parts.query)
    eio_values = query.get("EIO")
    eio_text = eio_values[0] if eio_values else None
    eio = int(eio_text) if eio_text is not None and eio_text.isdigit() else None
    transports = query.get("transport")
    transport = transports[0] if transports else None
    return EngineUrl(parts.path or "/", eio, transport, query)


def endpoint(path: str, *, eio: int = 4, transport: str = "websocket", sid: str | None = None) -> str:
    """The request target of an Engine.IO endpoint at ``path`` (a trailing slash is added, as engine.io
    does with ``addTrailingSlash``)."""
    base = path if path.endswith("/") else path + "/"
    return f"{base}?EIO={eio}&transport={transport}" + (f"&sid={sid}" if sid else "")


def candidate_paths(resource: str) -> list[str]:
    """Engine.IO paths worth trying for a URL, most likely first: the URL's own path when it is an
    Engine.IO URL or ends in ``/socket.io``, then ``socket.io/`` under the URL's path prefix, then
    ``/socket.io/``."""
    url = read_url(resource)
    path = url.path or "/"
    out: list[str] = []
    if url.is_engineio or path.rstrip("/").endswith("/socket.io"):
        out.append(path if path.endswith("/") else path + "/")
    prefix = path.rstrip("/")
    if prefix and not prefix.endswith("/socket.io"):
        out.append(prefix + DEFAULT_PATH)
    out.append(DEFAULT_PATH)
    seen: list[str] = []
    for p in out:
        if p not in seen:
            seen.append(p)
    return seen


def protocol_of(
    open_packet: OpenPacket | None, payload: Payload | None, reply: ConnectReply | None
) -> int | None:
    """The Engine.IO protocol the server speaks, from what it sent (None when nothing says it).

    Polling framing is decisive; over WebSocket a bare ``40`` (Socket.IO 2) means protocol 3, a ``40``
    with a sid or a ``maxPayload`` in the open packet means protocol 4.
    """
    if payload is not None:
        return payload.protocol
    if reply is not None and reply.kind == "ok-v2":
        return 3
    if reply is not None and reply.kind in ("ok", "error"):
        return 4
    if open_packet is not None and open_packet.max_payload is not None:
        return 4
    return None


def socketio_major(protocol: int | None) -> str:
    """The Socket.IO release line of an Engine.IO protocol: 3 -> ``2.x``, 4 -> ``3.x/4.x``."""
    return {3: "2.x", 4: "3.x/4.x"}.get(protocol or 0, "?")
