"""Who may open a WebSocket on ``serve``: Origin (403), the total cap (503), the per-IP cap (429).

:class:`Admission` holds the counters the caps are checked against. A handshake websockets
validated reserves a slot here *before* the 101 (so a burst of handshakes cannot overshoot the
limits); :meth:`Admission.release` gives it back when the connection ends, whatever happened.
"""

from __future__ import annotations

import http
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from websockets.datastructures import Headers, MultipleValuesError
from websockets.http11 import Request, Response

from lokin_doctor.server.cluster import ClientIds
from lokin_doctor.server.config import ServerConfig
from lokin_doctor.server.logs import EventLog
from lokin_doctor.server.metrics import Stats
from lokin_doctor.server.origins import OriginPolicy

if TYPE_CHECKING:
    from lokin_doctor.server.connection import LokinConnection


def header(headers: Headers, name: str) -> str | None:
    """One header's value; repeated headers joined with ", " (never MultipleValuesError)."""
    try:
        return headers.get(name)
    except MultipleValuesError:
        return ", ".join(headers.get_all(name))


def ip_of(address: Any) -> str:
    """The client IP of a peername; IPv4-mapped IPv6 (::ffff:a.b.c.d) as a.b.c.d."""
    if not address:
        return "?"
    ip = str(address[0])
    # Dual-stack sockets show IPv4 clients as ::ffff:a.b.c.d; count them under a.b.c.d.
    if ip.startswith("::ffff:") and "." in ip:
        ip = ip[7:]
    return ip


def peer(address: Any) -> str:
    """``ip:port`` (``[ip]:port`` for IPv6) of a peername, for the log."""
    if not address:
        return "?"
    ip = ip_of(address)
    return f"[{ip}]:{address[1]}" if ":" in ip else f"{ip}:{address[1]}"


class Admission:
    """The server's admission rules and the slots they count (accepted upgrades not yet closed)."""

    def __init__(self, config: ServerConfig, origins: OriginPolicy, stats: Stats, log: EventLog) -> None:
        self.config = config
        self.origins = origins
        self.stats = stats
        self.log = log
        self.reserved = 0  # accepted upgrades not yet closed (what the limits count)
        self.client_ids: Callable[[], str] = ClientIds()  # the server sets the cluster-wide one
        self.per_ip: dict[str, int] = {}

    def check(self, conn: LokinConnection, request: Request, response: Response) -> Response | None:
        """Our rules for a handshake websockets validated: a refusal, or None to accept (slot reserved)."""
        headers = request.headers
        cfg = self.config
        origin = header(headers, "Origin")
        address = conn.transport.get_extra_info("peername")
        if response.status_code != 101:
            detail = bytes(response.body).decode("utf-8", "replace").strip().splitlines()
            self.stats.reject("bad_handshake")
            self.log.emit(
                "reject",
                f"HTTP {response.status_code}: invalid WebSocket handshake",
                remote=peer(address),
                origin=origin or "-",
                path=request.path,
                why=detail[0] if detail else response.reason_phrase,
            )
            return None
        if not self.origins.allows(origin):
            return self.refuse(
                conn,
                request,
                http.HTTPStatus.FORBIDDEN,
                "origin",
                f"Origin {origin} is not allowed by this LOK IN server "
                f"(allowed: {', '.join(self.origins.allowed)}). "
                f"Its operator can add it with: lokin-doctor serve --allow-origin {origin}\n",
            )
        if self.reserved >= cfg.max_connections:
            return self.refuse(
                conn,
                request,
                http.HTTPStatus.SERVICE_UNAVAILABLE,
                "max_connections",
                f"Server full: {self.reserved} WebSocket connections open "
                f"(limit --max-connections {cfg.max_connections}). Retry later.\n",
            )
        ip = ip_of(address)
        held = self.per_ip.get(ip, 0)
        if cfg.max_per_ip and held >= cfg.max_per_ip:
            return self.refuse(
                conn,
                request,
                http.HTTPStatus.TOO_MANY_REQUESTS,
                "max_per_ip",
                f"Too many connections from {ip}: {held} open (limit --max-per-ip {cfg.max_per_ip}). "
                "Close some or retry later.\n",
            )
        # Reserve before the 101 so a burst of handshakes cannot overshoot the limits;
        # connection_lost releases it whatever happens next.
        self.reserved += 1
        self.per_ip[ip] = held + 1
        conn.peer_ip = sys.intern(ip)  # one string per client IP, not one per connection
        conn.client_id = self.client_ids()
        conn.opened_at = time.monotonic()
        if not self.log.quiet:  # the fields cost more than the check on the handshake path
            self.log.emit(
                "connect",
                "accepted",
                remote=peer(address),
                origin=origin or "-",
                path=request.path,
                client=conn.client_id,
            )
        return None

    def refuse(
        self, conn: LokinConnection, request: Request, status: http.HTTPStatus, reason: str, text: str
    ) -> Response:
        """A refusal response (Retry-After unless 403), counted and logged."""
        self.stats.reject(reason)
        self.log.emit(
            "reject",
            f"HTTP {status.value} {status.phrase}",
            level="warning",
            remote=peer(conn.transport.get_extra_info("peername")),
            origin=header(request.headers, "Origin") or "-",
            path=request.path,
            reason=reason,
            why=text.strip(),
        )
        response = conn.protocol.reject(status, text)
        if status != http.HTTPStatus.FORBIDDEN:
            response.headers["Retry-After"] = "5"
        return response

    def release(self, conn: LokinConnection) -> None:
        """Give back the slot of a connection that had one (``conn.peer_ip`` set)."""
        self.reserved -= 1
        left = self.per_ip.get(conn.peer_ip, 1) - 1
        if left > 0:
            self.per_ip[conn.peer_ip] = left
        else:
            self.per_ip.pop(conn.peer_ip, None)
