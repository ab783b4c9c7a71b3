"""Loopback helpers shared by the benchmark scripts (run as ``python bench/NAME.py``: this folder is on sys.path)."""

from __future__ import annotations

import socket
import time


def free_port() -> int:
    """A loopback TCP port nothing listens on (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 15.0) -> bool:
    """True once 127.0.0.1:port accepts a connection, False after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False
