"""A real ``redis-server`` (Debian package) on a free loopback port, per PEERS.md.

``redis-server --port PORT --bind 127.0.0.1 --save '' --appendonly no`` in the foreground, ready when
the port accepts. :meth:`RedisPeer.kill` simulates a crash (SIGKILL by PID) and :meth:`RedisPeer.restart`
brings the same server back on the same port, so tests can watch a client degrade and recover.
"""

from __future__ import annotations

import contextlib
import signal
import socket
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from tests.peers._common import (
    LOOPBACK,
    ManagedProcess,
    free_port,
    log_says_address_in_use,
    port_accepts,
    scaled,
)


@dataclass
class RedisPeer:
    """One private redis-server: ``.url`` is ``redis://127.0.0.1:PORT/0``."""

    binary: str
    directory: Path
    port: int = 0
    proc: ManagedProcess | None = field(default=None, repr=False)
    starts: int = 0

    @property
    def host(self) -> str:
        return LOOPBACK

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def _argv(self) -> list[str]:
        return [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            LOOPBACK,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.directory),
            "--daemonize",
            "no",
        ]

    def start(self) -> RedisPeer:
        """Start on a free port (or on ``.port`` again after :meth:`kill`); fails the test if it can't."""
        self.directory.mkdir(parents=True, exist_ok=True)
        fixed = self.port != 0
        for attempt in range(3):
            if not fixed:
                self.port = free_port()
            self.starts += 1
            proc = ManagedProcess(
                self._argv(),
                log=self.directory / f"redis-{self.starts}.log",
                cwd=self.directory,
                name="redis-server",
            ).start()
            if proc.wait_ready(partial(port_accepts, LOOPBACK, self.port), timeout=10) and self._pong():
                self.proc = proc
                return self
            if not proc.alive() and log_says_address_in_use(proc.log) and attempt < 2:
                proc.stop()  # a port race (or, on the same port, the old socket lingering): retry
                continue
            proc.fail_start(f"port {self.port} not answering PING")
        raise AssertionError("unreachable")

    def _pong(self) -> bool:
        """A raw RESP PING gets +PONG (the port accepting is not enough: redis may still be loading)."""
        try:
            with socket.create_connection((LOOPBACK, self.port), timeout=scaled(2)) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def command(self, *args: str) -> bytes:
        """Send one inline command and return the raw reply (tests use it for PUBSUB NUMSUB, CLIENT ...)."""
        with socket.create_connection((LOOPBACK, self.port), timeout=scaled(2)) as sock:
            parts = [f"*{len(args)}\r\n".encode()]
            for arg in args:
                data = arg.encode()
                parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
            sock.sendall(b"".join(parts))
            return sock.recv(65536)

    def kill(self) -> None:
        """SIGKILL the server (a crash: no goodbye to its clients' sockets beyond the kernel's RST/FIN)."""
        proc = self.proc
        if proc is not None and proc.proc is not None and proc.alive():
            with contextlib.suppress(ProcessLookupError):
                proc.proc.send_signal(signal.SIGKILL)
            proc.proc.wait(timeout=5)
            proc.stop()
        self.proc = None

    def restart(self) -> RedisPeer:
        """The same command on the same port again."""
        self.kill()
        return self.start()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None
