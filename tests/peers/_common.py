"""Shared helpers for the peers: ports, waiting, subprocess lifecycle, background event loops.

Everything here binds or connects to loopback only.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

T = TypeVar("T")

LOOPBACK = "127.0.0.1"

#: Multiplies every wait in the peers; raise it on slow machines (e.g. ``LOKIN_TEST_TIMEOUT_FACTOR=3``).
TIMEOUT_FACTOR = float(os.environ.get("LOKIN_TEST_TIMEOUT_FACTOR", "1") or "1")

#: How long a subprocess gets to exit after SIGTERM before SIGKILL.
TERM_GRACE = 3.0


def scaled(seconds: float) -> float:
    """Return ``seconds`` scaled by :data:`TIMEOUT_FACTOR`."""
    return seconds * TIMEOUT_FACTOR


def ensure_loopback(host: str) -> None:
    """Refuse any address that is not loopback: the peers never touch another interface."""
    if host == "localhost":
        return
    if not ipaddress.ip_address(host.strip("[]")).is_loopback:
        raise ValueError(f"peers bind and connect to loopback only, not {host!r}")


def url_host(host: str) -> str:
    """Host part of a URL: IPv6 literals go in brackets."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def free_port(host: str = LOOPBACK, *, udp: bool = False) -> int:
    """Return a TCP port on ``host`` with nothing listening (also free for UDP when ``udp``).

    The port is probed by binding and released at once, so another process could take it before the
    caller binds it; callers that start a subprocess retry on "address in use".
    """
    ensure_loopback(host)
    family = _family(host)
    for _ in range(50):
        with socket.socket(family, socket.SOCK_STREAM) as tcp:
            tcp.bind((host, 0))
            port = int(tcp.getsockname()[1])
            if not udp:
                return port
            with socket.socket(family, socket.SOCK_DGRAM) as dgram:
                try:
                    dgram.bind((host, port))
                except OSError:
                    continue
                return port
    raise RuntimeError(f"no free port found on {host}")


def port_accepts(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when a TCP connection to ``host:port`` succeeds now."""
    ensure_loopback(host)
    try:
        with socket.create_connection((host.strip("[]"), port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_port(host: str, port: int, timeout: float = 5.0) -> bool:
    """Wait until ``host:port`` accepts TCP connections.

    Returns:
        True once a connection succeeded.

    Raises:
        TimeoutError: nothing accepted within ``timeout`` seconds (scaled by the timeout factor).
    """
    deadline = time.monotonic() + scaled(timeout)
    while True:
        if port_accepts(host, port, timeout=0.5):
            return True
        if time.monotonic() >= deadline:
            raise TimeoutError(f"nothing accepts connections on {url_host(host)}:{port} after {timeout} s")
        time.sleep(0.02)


def missing(reason: str) -> None:
    """A tool a peer needs is absent: fail under CI (it must be installed there), skip elsewhere."""
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def require_binary(name: str, hint: str) -> str:
    """Path of executable ``name`` or fail/skip with ``hint`` (see :func:`missing`)."""
    path = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}", f"/sbin/{name}") if os.access(p, os.X_OK)),
        None,
    )
    if path is None:
        missing(f"{name} is not installed: {hint}")
        raise AssertionError("unreachable")
    return path


def tail(path: Path | None, lines: int = 30) -> str:
    """Last ``lines`` lines of a log file, or a note that there is none."""
    if path is None or not path.exists():
        return "(no log)"
    text = path.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:]) or "(empty log)"


@dataclass
class ManagedProcess:
    """A subprocess the fixtures started, tracked by PID, its output captured to ``log``."""

    argv: Sequence[str]
    log: Path
    cwd: Path | None = None
    env: dict[str, str] | None = None
    name: str = ""
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _logfile: Any = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self) -> ManagedProcess:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._logfile = open(self.log, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            list(self.argv),
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._logfile,
            stderr=subprocess.STDOUT,
        )
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, ready: Callable[[], bool], timeout: float = 10.0) -> bool:
        """Poll ``ready`` until true; False if the process died or the time ran out (scaled)."""
        deadline = time.monotonic() + scaled(timeout)
        while time.monotonic() < deadline:
            if not self.alive():
                return False
            if ready():
                return True
            time.sleep(0.02)
        return False

    def fail_start(self, what: str) -> None:
        """Stop the process and fail the test with the tail of its log."""
        code = self.proc.poll() if self.proc is not None else None
        self.stop()
        status = f"exited with {code}" if code is not None else "still not ready"
        pytest.fail(
            f"{self.name or self.argv[0]} did not start ({what}; {status}); command: {' '.join(self.argv)}\n"
            f"--- log tail ({self.log}) ---\n{tail(self.log)}",
            pytrace=False,
        )

    def stop(self) -> int | None:
        """SIGTERM this process (by its own PID), SIGKILL after :data:`TERM_GRACE` s. Idempotent."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=TERM_GRACE)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait(timeout=TERM_GRACE)
        if self._logfile is not None:
            self._logfile.close()
            self._logfile = None
        return proc.returncode if proc is not None else None


def log_says_address_in_use(path: Path) -> bool:
    text = path.read_text(errors="replace") if path.exists() else ""
    return "in use" in text.lower() or "EADDRINUSE" in text


class LoopThread:
    """An asyncio event loop running in a daemon thread, so sync and async tests can share a server."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        """Run ``coro`` on the loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(scaled(timeout))

    def stop(self) -> None:
        """Cancel what is left on the loop, stop it and join the thread. Idempotent."""
        if self.loop.is_closed():
            return

        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=2)

        if self.loop.is_running():
            with contextlib.suppress(Exception):
                self.run(cancel_all(), timeout=5)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)
        if not self._thread.is_alive():
            self.loop.close()
