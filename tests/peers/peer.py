"""What a peer fixture yields: where the peer listens and how to reach, inspect and stop it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.peers._common import tail, url_host


@dataclass(frozen=True)
class SeenRequest:
    """One opening request an in-process peer received."""

    path: str
    headers: dict[str, str]
    """Header names in lower case; repeated headers joined with ", "."""


@dataclass(eq=False)
class Peer:
    """A running peer.

    Attributes:
        host: address it listens on ("127.0.0.1", or "::1" when asked).
        port: its TCP port.
        url: the URL a client should use: ``ws://127.0.0.1:PORT/``, ``wss://localhost:PORT/`` for TLS,
            ``ws://127.0.0.1:PORT/ws`` through nginx (the static site too: ``http_url`` for http://).
        pid: PID of the subprocess, None when the peer runs in-process.
        kind: what it is ("ws", "tls-ws", "node", "static", "bad:<kind>", "nginx:<variant>").
        log: file holding the subprocess's stdout+stderr (None in-process).
        backend_port: the upstream port (nginx only).
        requests: opening requests seen so far (in-process peers only).
        extra: anything else worth knowing (config file, certificate, delay...).
    """

    host: str
    port: int
    url: str
    pid: int | None = None
    kind: str = ""
    log: Path | None = None
    backend_port: int | None = None
    requests: list[SeenRequest] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    _stop: Callable[[], object] | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        """``host:port`` as in a URL."""
        return f"{url_host(self.host)}:{self.port}"

    @property
    def http_url(self) -> str:
        """The same place as :attr:`url` with an http/https scheme."""
        return self.url.replace("wss://", "https://", 1).replace("ws://", "http://", 1)

    def log_text(self) -> str:
        """Everything the subprocess printed so far ("" in-process)."""
        if self.log is None or not self.log.exists():
            return ""
        return self.log.read_text(errors="replace")

    def log_tail(self, lines: int = 30) -> str:
        return tail(self.log, lines)

    def stop(self) -> None:
        """Stop the peer now (teardown would do it anyway). Idempotent."""
        if self._stop is not None:
            stop, self._stop = self._stop, None
            stop()
