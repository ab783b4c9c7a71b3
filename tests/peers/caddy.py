"""A real Caddy (Debian's 2.6) in the foreground: ``caddy run --config DIR/Caddyfile --adapter caddyfile``
with ``HOME``/``XDG_*`` in DIR, ``auto_https off`` and its admin API on a free loopback port of its own
(``{admin}`` in the template). ``caddy validate`` checks the file first.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.peers._common import free_port
from tests.peers.proxysite import ProxySite, fill, start_site

GLOBAL = """{
	admin 127.0.0.1:{admin}
	auto_https off
}
"""


def caddy_env(directory: Path) -> dict[str, str]:
    return {
        **os.environ,
        "HOME": str(directory),
        "XDG_DATA_HOME": str(directory / "data"),
        "XDG_CONFIG_HOME": str(directory / "config"),
    }


def check_config(binary: str, path: Path, env: dict[str, str]) -> None:
    out = subprocess.run(
        [binary, "validate", "--config", str(path), "--adapter", "caddyfile"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env=env,
    )
    if out.returncode != 0:
        pytest.fail(f"caddy validate --config {path} refused it:\n{out.stdout}{out.stderr}", pytrace=False)


def start_caddy(
    binary: str, directory: Path, sites: str, *, with_global: bool = True, **more: object
) -> ProxySite:
    """``sites`` (Caddyfile site blocks; ``{port}``, ``{dir}``, ``{admin}`` and ``more`` filled in)."""
    main = directory / "Caddyfile"
    env = caddy_env(directory)
    admin = free_port()

    def write(port: int) -> dict[Path, str]:
        return {main: fill((GLOBAL if with_global else "") + sites, port, directory, admin=admin, **more)}

    site = start_site(
        "caddy",
        directory,
        write,
        lambda port, path: [binary, "run", "--config", str(path), "--adapter", "caddyfile"],
        env=env,
        check=lambda path: check_config(binary, path, env),
    )
    site.extra["admin"] = admin
    return site
