"""The sentinel's HTTP server: the status page, ``/metrics``, past runs, ``/healthz``. asyncio, no framework.

A few GET routes do not need a web framework (the project has none: aiohttp would be a new dependency for
four routes), so this is a small HTTP/1.1 server of its own on ``asyncio.start_server``: one request per
connection (``Connection: close``), the request head bounded in size (:data:`MAX_HEAD`) and in time
(:data:`READ_TIMEOUT_S`), at most :data:`MAX_CLIENTS` connections at once (the next ones get a 503), a body
never read. Each page reads a bounded slice of the history (:data:`WEEK_ROWS` runs per target,
:data:`INCIDENT_ROWS` incidents), so a request costs the same after a year as after a day.

Routes:

- ``/``: the status page (``page.status_page``);
- ``/metrics``: the Prometheus exposition (OpenMetrics when the scraper asks for it);
- ``/runs/<id>``: one stored run as HTML; ``/runs/<id>.txt|.json|.md|.xml`` or ``?format=text|json|markdown|
  junit`` the report in that format, as ``lokin-doctor all --format`` prints it;
- ``/healthz``: ``ok`` while the server runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from lokin_doctor.tools.sentinel import page
from lokin_doctor.tools.sentinel.history import CUT, HistoryError, incidents_of, is_down
from lokin_doctor.tools.sentinel.metrics import SentinelMetrics
from lokin_doctor.tools.sentinel.records import Run

log = logging.getLogger("lokin_doctor.sentinel.web")

#: Bytes of a request line and headers together (a browser's are below 2 KiB; Prometheus's below 512 B).
MAX_HEAD = 8192
READ_TIMEOUT_S = 5.0
WRITE_TIMEOUT_S = 10.0
MAX_CLIENTS = 32
#: Rows read per target for the charts and the incidents (a week of runs every minute fits, and healthy
#: repeats are folded into one row): the history's ``incidents()`` reads a target's every row, the page
#: computes the week's incidents from these.
WEEK_ROWS = 12000

_RUN_PATH = re.compile(r"^/runs/(\d{1,18})(\.txt|\.json|\.md|\.xml)?$")
_SUFFIX_FORMATS = {suffix: fmt for fmt, (suffix, _type) in page.RUN_FORMATS.items()}
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}


class HistoryReader(Protocol):
    """What the server reads of the history (``history.History``)."""

    def run(self, run_id: int) -> Run | None: ...

    def runs(
        self,
        target: str | None = None,
        since: float | None = None,
        until: float | None = None,
        code: str | None = None,
        limit: int | None = None,
    ) -> list[Run]: ...

    def latest(self, target: str) -> Run | None: ...


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


def _text(status: int, message: str) -> Response:
    return Response(status, (message.rstrip("\n") + "\n").encode())


class StatusServer:
    """Serves the page, the metrics and the runs of ``history`` for ``targets`` on ``host:port``."""

    def __init__(
        self, history: Any, metrics: SentinelMetrics, targets: Sequence[str], host: str, port: int
    ) -> None:
        self.history: HistoryReader = history
        self.metrics = metrics
        self.targets = tuple(targets)
        self.host = host
        self._wanted_port = port
        self._servers: list[asyncio.Server] = []
        self._clients: set[asyncio.Task[None]] = set()
        self._port = 0

    async def start(self) -> None:
        """Bind every address of ``host`` (one port for all; port 0 picks one). OSError if it cannot."""
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(
            self.host, self._wanted_port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if not addresses:
            raise OSError(f"{self.host}: no address to listen on")
        port = self._wanted_port
        try:
            for address in addresses:
                server = await asyncio.start_server(self._accept, address, port, limit=MAX_HEAD)
                self._servers.append(server)
                if port == 0:
                    port = server.sockets[0].getsockname()[1]
        except OSError:
            await self.stop()
            raise
        self._port = port

    @property
    def port(self) -> int:
        return self._port

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        for task in list(self._clients):
            task.cancel()
        if self._clients:
            await asyncio.gather(*self._clients, return_exceptions=True)
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2.0)
        self._servers.clear()

    # -- one connection --------------------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._clients) >= MAX_CLIENTS:
            # Read the head briefly first: closing on unread bytes would reset the connection, and the
            # client would see no answer at all.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(0.5):
                    await reader.readuntil(b"\r\n\r\n")
            await self._send(writer, "GET", _text(503, "too many clients"))
            return
        self._clients.add(task)
        try:
            method, response = await self._exchange(reader)
            await self._send(writer, method, response)
        except asyncio.CancelledError:
            writer.close()
            raise
        finally:
            self._clients.discard(task)

    async def _exchange(self, reader: asyncio.StreamReader) -> tuple[str, Response]:
        try:
            async with asyncio.timeout(READ_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
        except TimeoutError:
            return "GET", _text(408, "request timeout")
        except asyncio.LimitOverrunError:
            return "GET", _text(431, "request head too large")
        except (asyncio.IncompleteReadError, ConnectionError):
            return "GET", Response(400, b"")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return "GET", _text(400, "bad request line")
        method, target, version = parts
        if version not in ("HTTP/1.0", "HTTP/1.1"):
            return "GET", _text(505, "HTTP/1.1 only")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        if method not in ("GET", "HEAD"):
            response = _text(405, "GET or HEAD only")
            response.headers["Allow"] = "GET, HEAD"
            return "GET", response
        try:
            # In a thread: the history's reads and the page's strings never hold up a probe (History is
            # thread-safe; the metrics too).
            return method, await asyncio.to_thread(self.respond, target, headers)
        except (HistoryError, sqlite3.Error, OSError) as exc:
            log.warning("the history could not be read: %s", exc)
            return method, _text(503, f"the history cannot be read: {exc}")
        except Exception:  # a page must never take the sentinel down: say so, log it, serve the next one
            log.exception("error while serving %s", target[:200])
            return method, _text(500, "internal error (logged)")

    async def _send(self, writer: asyncio.StreamWriter, method: str, response: Response) -> None:
        head = [
            f"HTTP/1.1 {response.status} {_REASONS.get(response.status, 'Error')}",
            f"Content-Type: {response.content_type}",
            f"Content-Length: {len(response.body)}",
            "Cache-Control: no-store",
            "X-Content-Type-Options: nosniff",
            "Referrer-Policy: no-referrer",
            "Connection: close",
            *(f"{k}: {v}" for k, v in response.headers.items()),
        ]
        try:
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
            if method != "HEAD":
                writer.write(response.body)
            async with asyncio.timeout(WRITE_TIMEOUT_S):
                await writer.drain()
        except (ConnectionError, TimeoutError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await writer.wait_closed()

    # -- routes (synchronous: bounded reads of the history, then strings) -------------------------------

    def respond(self, target: str, headers: dict[str, str]) -> Response:
        """The response to a GET of ``target`` (a request target: path and query)."""
        split = urlsplit(target)
        path, query = split.path, parse_qs(split.query)
        if path == "/":
            html = page.status_page(self.views(time.time()), time.time())
            return Response(200, html.encode(), "text/html; charset=utf-8", self._html_headers())
        if path == "/metrics":
            body, content_type = self.metrics.exposition(headers.get("accept", ""))
            return Response(200, body, content_type)
        if path == "/healthz":
            return _text(200, "ok")
        if m := _RUN_PATH.match(path):
            fmt = _SUFFIX_FORMATS[m.group(2)] if m.group(2) else query.get("format", ["html"])[-1]
            return self.run_response(int(m.group(1)), fmt)
        return _text(404, "not found")

    def _html_headers(self) -> dict[str, str]:
        return {"Content-Security-Policy": page.CONTENT_SECURITY_POLICY, "X-Frame-Options": "DENY"}

    def views(self, now: float) -> list[page.TargetView]:
        out = []
        for target in self.targets:
            rows = self.history.runs(target=target, since=now - page.WEEK, limit=WEEK_ROWS)
            incidents = incidents_of(list(reversed(rows)))[::-1]
            # A run the stop cut is no verdict: the page shows the last one that finished.
            latest = next((r for r in rows if r.status != CUT), None) or self.history.latest(target)
            out.append(
                page.TargetView(
                    target,
                    latest,
                    rows,
                    incidents,
                    truncated=len(rows) >= WEEK_ROWS,
                    began_earlier=bool(rows) and is_down(rows[-1]),
                )
            )
        return out

    def run_response(self, run_id: int, fmt: str) -> Response:
        if fmt != "html" and fmt not in page.RUN_FORMATS:
            return _text(400, f"unknown format {fmt[:40]!r}: html, {', '.join(page.RUN_FORMATS)}")
        run = self.history.run(run_id)
        if run is None:
            return _text(404, f"no run #{run_id} in the history")
        if fmt == "html":
            text = page.render_report(run.report, "text") if run.report is not None else None
            return Response(
                200, page.run_page(run, text).encode(), "text/html; charset=utf-8", self._html_headers()
            )
        if run.report is None:
            return _text(404, f"run #{run_id} is a folded repeat of healthy runs: its report was not stored")
        _suffix, content_type = page.RUN_FORMATS[fmt]
        return Response(200, page.render_report(run.report, fmt).encode(), content_type)
