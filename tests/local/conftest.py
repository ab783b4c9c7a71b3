"""Peers of the local checks: nginx with configs in files (and includes), ``serve`` subprocesses.

``nginx_site(site, main_extra="")`` writes ``nginx.conf`` (which includes ``conf.d/*.conf``) and
``conf.d/site.conf`` from ``site`` (``{port}`` is nginx's port) in a temp dir and starts nginx on it.
``serve_process(argv_prefix=())`` starts ``lokin-doctor serve`` on a free loopback port.
"""

from __future__ import annotations

import grp
import os
import pwd
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.peers._common import (
    LOOPBACK,
    ManagedProcess,
    free_port,
    log_says_address_in_use,
    port_accepts,
    require_binary,
)

REPO = Path(__file__).resolve().parents[2]

MAIN = """{user}
worker_processes 1;
pid {d}/nginx.pid;
error_log stderr notice;
events {{
    worker_connections 64;
}}
http {{
    access_log off;
    client_body_temp_path {d}/temp/client_body;
    proxy_temp_path {d}/temp/proxy;
    fastcgi_temp_path {d}/temp/fastcgi;
    uwsgi_temp_path {d}/temp/uwsgi;
    scgi_temp_path {d}/temp/scgi;
{main_extra}
    include conf.d/*.conf;
}}
"""

UPGRADE_MAP = """    map $http_upgrade $connection_upgrade {
        default upgrade;
        ''      close;
    }"""


@dataclass
class NginxSite:
    port: int
    pid: int
    main: Path
    site: Path
    text: str

    def line_of(self, needle: str, nth: int = 1) -> int:
        """1-based line of the ``nth`` line of the site file containing ``needle``."""
        hits = [i for i, line in enumerate(self.text.splitlines(), 1) if needle in line]
        assert len(hits) >= nth, f"{needle!r} not in {self.site}"
        return hits[nth - 1]

    def where(self, needle: str, nth: int = 1) -> str:
        return f"{self.site}:{self.line_of(needle, nth)}"


def _user() -> str:
    if os.geteuid() != 0:
        return ""
    return f"user {pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name};"


def write_config(d: Path, site: str, port: int, main_extra: str = UPGRADE_MAP) -> tuple[Path, Path, str]:
    (d / "conf.d").mkdir(parents=True, exist_ok=True)
    (d / "temp").mkdir(exist_ok=True)
    main = d / "nginx.conf"
    main.write_text(MAIN.format(user=_user(), d=d, main_extra=main_extra))
    text = site.replace("{port}", str(port))
    site_file = d / "conf.d" / "site.conf"
    site_file.write_text(text)
    return main, site_file, text


@pytest.fixture
def nginx_site(tmp_path: Path) -> Iterator[Callable[..., NginxSite]]:
    started: list[ManagedProcess] = []

    def start(site: str, main_extra: str = UPGRADE_MAP) -> NginxSite:
        binary = require_binary("nginx", "apt-get install -y nginx")
        d = tmp_path / f"nginx{len(started)}"
        for attempt in range(3):
            port = free_port()
            main, site_file, text = write_config(d, site, port, main_extra)
            proc = ManagedProcess(
                [binary, "-p", str(d), "-c", str(main), "-e", "stderr", "-g", "daemon off;"],
                log=d / f"nginx-{attempt}.log",
                cwd=d,
                name="nginx",
            ).start()
            started.append(proc)
            if proc.wait_ready(partial(port_accepts, LOOPBACK, port), timeout=10):
                assert proc.pid is not None
                return NginxSite(port, proc.pid, main, site_file, text)
            if not proc.alive() and log_says_address_in_use(proc.log) and attempt < 2:
                proc.stop()
                continue
            proc.fail_start(f"port {port} not accepting")
        raise AssertionError("unreachable")

    yield start
    for proc in reversed(started):
        proc.stop()


@dataclass
class Served:
    port: int
    pid: int
    proc: ManagedProcess

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"


def serve_argv(port: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "lokin_doctor", "serve", "--host", LOOPBACK, "--port", str(port), *extra]


@pytest.fixture
def serve_process(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    """``serve_process(*serve_options, wrap=())``: ``lokin-doctor serve`` in a subprocess (wrapped by ``wrap``)."""
    started: list[ManagedProcess] = []

    def start(*extra: str, wrap: Sequence[str] = ()) -> Served:
        port = free_port()
        argv = serve_argv(port, *extra)
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        proc = ManagedProcess(
            [*wrap, *argv], log=tmp_path / f"serve-{port}.log", env=env, name="serve"
        ).start()
        started.append(proc)
        if not proc.wait_ready(partial(port_accepts, LOOPBACK, port), timeout=15):
            proc.fail_start(f"port {port} not accepting")
        assert proc.pid is not None
        return Served(port, proc.pid, proc)

    yield start
    for proc in reversed(started):
        proc.stop()


# --------------------------------------------------------------------------- HAProxy, Apache, Caddy


@pytest.fixture
def haproxy_site(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """``haproxy_site(body, **placeholders) -> ProxySite``: a real HAProxy on a free loopback port."""
    from tests.peers.haproxy import start_haproxy

    started: list[Any] = []

    def start(body: str, **more: object) -> Any:
        binary = require_binary("haproxy", "apt-get install -y haproxy")
        site = start_haproxy(binary, tmp_path / f"haproxy{len(started)}", body, **more)
        started.append(site)
        return site

    yield start
    for site in reversed(started):
        site.stop()


@pytest.fixture
def apache_site(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """``apache_site(site, modules=..., main_extra="", **placeholders) -> ProxySite``: a real httpd; the
    site's text is ``site.texts[site.directory / "sites" / "site.conf"]``."""
    from tests.peers.apache import start_apache

    started: list[Any] = []

    def start(site: str, **opts: Any) -> Any:
        binary = require_binary("apache2", "apt-get install -y apache2")
        proxy = start_apache(binary, tmp_path / f"apache{len(started)}", site, **opts)
        started.append(proxy)
        return proxy

    yield start
    for proxy in reversed(started):
        proxy.stop()


@pytest.fixture
def caddy_site(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """``caddy_site(sites, **placeholders) -> ProxySite``: a real Caddy, admin API on its own port."""
    from tests.peers.caddy import start_caddy

    started: list[Any] = []

    def start(sites: str, **opts: Any) -> Any:
        binary = require_binary("caddy", "apt-get install -y caddy")
        proxy = start_caddy(binary, tmp_path / f"caddy{len(started)}", sites, **opts)
        started.append(proxy)
        return proxy

    yield start
    for proxy in reversed(started):
        proxy.stop()
