"""A real HAProxy (Debian's 2.6) in the foreground: ``haproxy -db -f DIR/haproxy.cfg``, with its pid file
and stats socket in DIR, every ``bind`` on 127.0.0.1. Each configuration is checked with ``haproxy -c -f``
first: what the tests feed the doctor is what HAProxy itself accepts.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.peers.proxysite import ProxySite, fill, start_site

GLOBAL = """global
    pidfile {dir}/haproxy.pid
    stats socket {dir}/stats.sock mode 600 level admin
"""

#: The usual defaults of a site (no timeout tunnel: each test adds what it checks).
DEFAULTS = """defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
"""


def check_config(binary: str, path: Path) -> None:
    out = subprocess.run(
        [binary, "-c", "-f", str(path)], capture_output=True, text=True, timeout=20, check=False
    )
    if out.returncode != 0:
        pytest.fail(
            f"haproxy -c -f {path} refused it:\n{out.stdout}{out.stderr}\n{path.read_text()}", pytrace=False
        )


def start_haproxy(
    binary: str, directory: Path, body: str, *, with_global: bool = True, **more: object
) -> ProxySite:
    """``body`` (sections after ``global``; ``{port}``/``{dir}`` and ``more`` keys filled in) in a real HAProxy."""
    main = directory / "haproxy.cfg"

    def write(port: int) -> dict[Path, str]:
        return {main: fill((GLOBAL if with_global else "") + body, port, directory, **more)}

    return start_site(
        "haproxy",
        directory,
        write,
        lambda port, path: [binary, "-db", "-f", str(path)],
        check=lambda path: check_config(binary, path),
    )
