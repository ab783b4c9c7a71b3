"""The server's event log: one line per event on stderr, as ``text`` (key=value) or ``json``.

One line per event, never a traceback: exceptions are reduced to ``Type: message``. The stream
is looked up at each write (``sys.stderr``) so tests that capture stderr see the lines.
websockets' own warnings and errors (for instance "connection handler failed") are routed here
through :func:`websockets_logger`, so they follow the same format and the quiet switch.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime
from typing import Any, TextIO

_LEVELS = ("debug", "info", "warning", "error")


def _now() -> str:
    return datetime.now().astimezone().isoformat(timespec="milliseconds")


def _text_value(value: object) -> str:
    text = str(value)
    # Quote only what would be ambiguous in a key=value line (spaces, quotes, empty).
    if not text or any(c in text for c in ' "=\n\t'):
        return json.dumps(text, ensure_ascii=False)
    return text


def one_line(exc: BaseException) -> str:
    """``Type: message`` on one line, for logs that must never show a traceback."""
    message = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


class EventLog:
    """Writes events as text or JSON lines; silent when ``quiet``.

    Args:
        fmt: ``"text"`` or ``"json"``.
        quiet: Write nothing at all.
        stream: Where to write; ``None`` means the current ``sys.stderr``.
    """

    #: Fields added to every line of this process (``worker=N`` in a ``serve --workers`` worker).
    context: dict[str, Any] = {}  # process-wide on purpose

    def __init__(self, fmt: str = "text", *, quiet: bool = False, stream: TextIO | None = None) -> None:
        self.fmt = fmt
        self.quiet = quiet
        self._stream = stream

    def emit(self, event: str, message: str = "", *, level: str = "info", **fields: Any) -> None:
        """Write one event line.

        Args:
            event: Short event name (``connect``, ``reject``, ``close``, ``http``, ``shutdown``...).
            message: Human summary; in text format it comes right after the event name.
            level: ``info``, ``warning`` or ``error``.
            **fields: Structured details; ``None`` values are left out.
        """
        if self.quiet:
            return
        details = {k: v for k, v in fields.items() if v is not None}
        if EventLog.context:  # a --workers worker names itself on every line
            details.update(EventLog.context)
        if self.fmt == "json":
            record: dict[str, Any] = {"ts": _now(), "level": level, "event": event}
            if message:
                record["msg"] = message
            record.update(details)
            line = json.dumps(record, ensure_ascii=False, default=str)
        else:
            parts = [_now(), f"{level.upper():<7}", f"{event:<8}"]
            if message:
                parts.append(message)
            parts.extend(f"{k}={_text_value(v)}" for k, v in details.items())
            line = " ".join(parts)
        self.write_line(line)

    def write_line(self, line: str) -> None:
        """Write a raw line (the text banner), unless quiet."""
        if self.quiet:
            return
        stream = self._stream or sys.stderr
        try:
            stream.write(line + "\n")
            stream.flush()
        except (OSError, ValueError):
            # stderr closed or a broken pipe: logging must never take the server down.
            pass


class _EventLogHandler(logging.Handler):
    """Sends websockets' log records to the EventLog attached to them by the adapter."""

    def emit(self, record: logging.LogRecord) -> None:
        log = getattr(record, "lokin_log", None)
        if not isinstance(log, EventLog):
            return
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not raise from a log call
            message = str(record.msg)
        if record.exc_info and record.exc_info[1] is not None:
            message = f"{message}: {one_line(record.exc_info[1])}"
        level = record.levelname.lower()
        log.emit("websockets", message, level=level if level in _LEVELS else "error")


_BRIDGE = logging.getLogger("lokin_doctor.server.websockets")


def websockets_logger(log: EventLog) -> logging.LoggerAdapter[logging.Logger]:
    """A logger for websockets' ``serve(logger=...)`` that writes one-line events to ``log``.

    Only warnings and errors pass (websockets logs every connection at INFO, which our own
    connect/close lines already cover); never propagated to the root logger, so no traceback
    can reach the user through logging's last-resort handler.
    """
    if not _BRIDGE.handlers:
        _BRIDGE.addHandler(_EventLogHandler())
        _BRIDGE.setLevel(logging.WARNING)
        _BRIDGE.propagate = False
    return logging.LoggerAdapter(_BRIDGE, {"lokin_log": log})
