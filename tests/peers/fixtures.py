"""Pytest fixtures that start REAL peers on loopback for the lokin-doctor test-suite.

Load with ``pytest_plugins = ["tests.peers.fixtures"]`` (or ``-p tests.peers.fixtures``).

Fixtures (function-scoped unless noted; every one stops what it started at teardown):

* ``ws_server`` / ``ws_server_factory(**opts)``: in-process websockets 17 server, welcome + echo.
* ``tls_ws_server(cert, **opts)``: the same over TLS (``wss://localhost:PORT/``).
* ``node_server`` / ``node_server_factory(host=...)``: the original Node ``ws`` server.js subprocess.
* ``static_server`` / ``static_server_factory(files=...)``: ``python -m http.server`` subprocess.
* ``bad_server(kind, delay=1.5)``: misbehaving raw-socket servers (see :data:`tests.peers.bad.KINDS`).
* ``nginx_proxy(variant, backend_port=None, **opts)``: real nginx in front of a backend.
* ``certs`` (session): trustme CA and good/expired/not-yet-valid/wrong-host/self-signed/chain certs.
* ``dnsmasq(records, hosts=None, extra_args=())`` and ``dns_server``: real dnsmasq.

Plain helpers: :func:`free_port`, :func:`wait_port`, :class:`Peer`.

A missing binary (nginx, dnsmasq, node, node_modules/ws) fails the test when ``CI`` is set and skips it
otherwise. Subprocess output goes to a file under the test's tmp dir; its tail is shown if the process
does not start.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.peers._common import (
    LOOPBACK,
    ManagedProcess,
    ensure_loopback,
    free_port,
    log_says_address_in_use,
    missing,
    port_accepts,
    require_binary,
    url_host,
    wait_port,
)
from tests.peers.bad import KINDS as BAD_KINDS
from tests.peers.bad import start_bad_server
from tests.peers.certs import CertPair, Certs, make_certs
from tests.peers.dns import DEFAULT_HOSTS, DEFAULT_RECORDS, DnsPeer, Records, start_dnsmasq
from tests.peers.nginx import VARIANTS as NGINX_VARIANTS
from tests.peers.nginx import NginxOptions, start_nginx
from tests.peers.peer import Peer, SeenRequest
from tests.peers.wsserver import server_ssl_context, start_ws_server

__all__ = [
    "BAD_KINDS",
    "NGINX_VARIANTS",
    "NODE_DIR",
    "CertPair",
    "Certs",
    "DnsPeer",
    "Peer",
    "SeenRequest",
    "bad_server",
    "certs",
    "dns_server",
    "dnsmasq",
    "free_port",
    "nginx_proxy",
    "node_server",
    "node_server_factory",
    "static_server",
    "static_server_factory",
    "tls_ws_server",
    "wait_port",
    "ws_server",
    "ws_server_factory",
]

NODE_DIR = Path(__file__).resolve().parent / "node"


class _Stack:
    """Things to stop at teardown, last started first."""

    def __init__(self) -> None:
        self._stops: list[Callable[[], Any]] = []

    def push(self, stop: Callable[[], Any]) -> None:
        self._stops.append(stop)

    def close(self) -> None:
        errors: list[BaseException] = []
        while self._stops:
            try:
                self._stops.pop()()
            except Exception as exc:  # keep stopping the others
                errors.append(exc)
        if errors:
            raise errors[0]


@pytest.fixture
def _peer_stack() -> Iterator[_Stack]:
    stack = _Stack()
    yield stack
    stack.close()


# --------------------------------------------------------------------------- websockets servers


@pytest.fixture
def ws_server_factory(_peer_stack: _Stack) -> Callable[..., Peer]:
    """Start websockets 17 servers on demand: ``ws_server_factory(**opts) -> Peer``.

    Options (all optional): ``paths=["/ws"]`` (other paths get 404), ``origins=[...]`` (others get 403;
    include None to allow no Origin), ``greeting=False`` (no welcome), ``echo=False``,
    ``ping_interval=None``, ``ping_timeout``, ``compression=None``, ``pages={"/": html}`` (200 text/html to
    plain GETs) with ``page_headers={...}``, ``host="::1"``, ``port=N``, ``server_header``, and any other
    keyword of :func:`websockets.asyncio.server.serve`.

    The Peer: ``url`` ws://127.0.0.1:PORT/, ``pid`` None, ``requests`` the opening requests seen,
    ``stop()`` to stop it early.
    """

    def start(**opts: Any) -> Peer:
        peer = start_ws_server(**opts)
        _peer_stack.push(peer.stop)
        return peer

    return start


@pytest.fixture
def ws_server(ws_server_factory: Callable[..., Peer]) -> Peer:
    """A websockets 17 server on 127.0.0.1 (port 0), in a background thread with its own loop.

    Sends ``{"type": "welcome", "clientId": "user_<8 hex>"}`` on connect, then echoes every message.
    Accepts any path and any Origin.
    """
    return ws_server_factory()


@pytest.fixture
def tls_ws_server(_peer_stack: _Stack) -> Callable[..., Peer]:
    """Start a wss:// websockets server: ``tls_ws_server(cert, **opts) -> Peer``.

    ``cert`` is a :class:`CertPair` from ``certs`` (e.g. ``certs.expired``). The peer binds 127.0.0.1 and its
    ``url`` is ``wss://localhost:PORT/``; welcome + echo like ``ws_server``; same options as
    ``ws_server_factory``.
    """

    def start(cert: CertPair, **opts: Any) -> Peer:
        peer = start_ws_server(
            ssl_context=server_ssl_context(cert.certfile, cert.keyfile), kind="tls-ws", **opts
        )
        peer.extra["cert"] = cert
        _peer_stack.push(peer.stop)
        return peer

    return start


# --------------------------------------------------------------------------- the original Node server


def _node_binary() -> str:
    node = require_binary("node", "install Node.js 20 (Debian: apt-get install -y nodejs npm)")
    if not (NODE_DIR / "node_modules" / "ws" / "package.json").exists():
        missing("the ws package is not installed: run `npm ci --prefix tests/peers/node`")
    return node


@pytest.fixture
def node_server_factory(_peer_stack: _Stack, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Peer]:
    """Start the original server: ``node_server_factory(host="127.0.0.1", port=None) -> Peer``.

    Runs ``node server.js PORT`` with cwd ``tests/peers/node`` (so its cmdline is exactly
    ``['node', 'server.js', 'PORT']``) and ``HOST`` in its environment for the bind address (the original
    binds every interface; the suite binds loopback only). Yields once the port accepts; ``pid`` is the
    node process; ``log`` has the banner and one "📥 Nouvelle tentative de connexion depuis: ORIGIN" line
    per connection. Stopped with SIGTERM (the server closes clients with 1001 and exits 0).
    """

    def start(host: str = LOOPBACK, port: int | None = None) -> Peer:
        ensure_loopback(host)
        _node_binary()
        directory = tmp_path_factory.mktemp("node")
        env = {**os.environ, "HOST": host}
        env.pop("PORT", None)
        proc: ManagedProcess | None = None
        chosen = port
        for attempt in range(3):
            chosen = port if port is not None else free_port(host)
            proc = ManagedProcess(
                ["node", "server.js", str(chosen)],
                log=directory / f"node-{attempt}.log",
                cwd=NODE_DIR,
                env=env,
                name="node server.js",
            ).start()
            _peer_stack.push(proc.stop)
            if proc.wait_ready(partial(port_accepts, host, chosen), timeout=10):
                break
            if not proc.alive() and log_says_address_in_use(proc.log) and port is None and attempt < 2:
                continue
            proc.fail_start(f"port {chosen} not accepting")
        assert proc is not None and chosen is not None
        return Peer(
            host=host,
            port=chosen,
            url=f"ws://{url_host(host)}:{chosen}/",
            pid=proc.pid,
            kind="node",
            log=proc.log,
            extra={"cmdline": ["node", "server.js", str(chosen)], "cwd": NODE_DIR},
            _stop=proc.stop,
        )

    return start


@pytest.fixture
def node_server(node_server_factory: Callable[..., Peer]) -> Peer:
    """The original LOK IN Node ``ws`` server (server.js) on 127.0.0.1, as a subprocess with ``pid``.

    Welcome ``{"type": "welcome", "clientId": "user_<base36>"}``, echo to the sender, broadcast
    ``{"type": "broadcast", "from", "to", "data"}`` to the other clients, every Origin accepted, plain GET
    answered 426 "Upgrade Required".
    """
    return node_server_factory()


# --------------------------------------------------------------------------- static web site


@pytest.fixture
def static_server_factory(
    _peer_stack: _Stack, tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., Peer]:
    """Start ``python3 -m http.server PORT --bind 127.0.0.1``: ``static_server_factory(files=None) -> Peer``.

    ``files`` maps relative paths to text to write in the served directory (an ``index.html`` replaces the
    directory listing). ``url`` is ``ws://127.0.0.1:PORT/`` (what a misconfigured page would dial; ``http_url``
    for the site); ``extra["root"]`` is the directory.
    """

    def start(files: Mapping[str, str] | None = None) -> Peer:
        root = tmp_path_factory.mktemp("static-root")
        (root / "script.js").write_text("// LOK IN\nconst wsHost = 'localhost:8080';\n")
        (root / "style.css").write_text("body { font-family: sans-serif; }\n")
        for rel, text in (files or {}).items():
            target = root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        logdir = tmp_path_factory.mktemp("static-log")
        proc: ManagedProcess | None = None
        port = 0
        for attempt in range(3):
            port = free_port()
            proc = ManagedProcess(
                [sys.executable, "-m", "http.server", str(port), "--bind", LOOPBACK],
                log=logdir / f"http.server-{attempt}.log",
                cwd=root,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                name="python -m http.server",
            ).start()
            _peer_stack.push(proc.stop)
            if proc.wait_ready(partial(port_accepts, LOOPBACK, port), timeout=10):
                break
            if not proc.alive() and log_says_address_in_use(proc.log) and attempt < 2:
                continue
            proc.fail_start(f"port {port} not accepting")
        assert proc is not None
        return Peer(
            host=LOOPBACK,
            port=port,
            url=f"ws://{LOOPBACK}:{port}/",
            pid=proc.pid,
            kind="static",
            log=proc.log,
            extra={"root": root},
            _stop=proc.stop,
        )

    return start


@pytest.fixture
def static_server(static_server_factory: Callable[..., Peer]) -> Peer:
    """A static web site (``python -m http.server``) on 127.0.0.1: any GET, with Upgrade or not, gets
    200 text/html (a directory listing). ``pid`` is the subprocess."""
    return static_server_factory()


# --------------------------------------------------------------------------- bad servers


@pytest.fixture
def bad_server(_peer_stack: _Stack) -> Callable[..., Peer]:
    """Start a misbehaving server: ``bad_server(kind, delay=1.5) -> Peer`` (in-process, ``pid`` None).

    Kinds (each connection gets the same treatment; "request" = the client's request head):

    * ``silent``: accepts, reads, never answers.
    * ``garbage``: sends ``SSH-2.0-OpenSSH_9.2p1 ...`` at once, then "Invalid SSH identification string."
      after the request, and closes.
    * ``bad-accept``: 101 with a wrong ``Sec-WebSocket-Accept``; then holds the connection.
    * ``not-found``: 404 text/plain "Not Found", closes.
    * ``redirect``: 301 with ``Location: https://example.invalid/ws``, closes.
    * ``close-after-101``: valid 101, close frame 1011 "bye", FIN.
    * ``reset``: reads the request, then RST (SO_LINGER 0) before any byte.
    * ``close-no-reply``: reads the request, clean close (FIN) with no byte.
    * ``web-page``: 200 text/html ``<!DOCTYPE html><html>...``, closes.
    * ``no-pong``: valid 101 and a welcome text frame, then never answers a ping or a close.
    * ``slow``: waits ``delay`` seconds, then valid 101 + welcome, then echoes, pongs, closes properly.
    * ``unauthorized``: 401 with ``WWW-Authenticate: Basic realm="lokin"``, closes.
    * ``http-no-length``: 200 text/plain without Content-Length and keeps the connection open.
    * ``replay``: reads the request, answers the exact bytes of ``reply=``, then FIN.
    """

    def start(kind: str, *, delay: float = 1.5, host: str = LOOPBACK, reply: bytes = b"") -> Peer:
        peer = start_bad_server(kind, delay=delay, host=host, reply=reply)
        _peer_stack.push(peer.stop)
        return peer

    return start


# --------------------------------------------------------------------------- certificates


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """Session-wide test certificates (see :class:`tests.peers.certs.Certs`).

    ``.ca_file``; ``.good``, ``.expired``, ``.not_yet_valid``, ``.wrong_host``, ``.self_signed``,
    ``.missing_intermediate``, ``.full_chain`` (each a :class:`CertPair` with ``.certfile``/``.keyfile``);
    ``.client_context()`` trusts the CA.
    """
    return make_certs(tmp_path_factory.mktemp("certs"))


# --------------------------------------------------------------------------- nginx


@pytest.fixture
def nginx_proxy(
    _peer_stack: _Stack, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Callable[..., Peer]:
    """Start real nginx: ``nginx_proxy(variant, backend_port=None, **opts) -> Peer``.

    Variants (``location /ws`` and ``location /`` both proxy to the backend's ``/``):

    * ``correct``: ``proxy_http_version 1.1`` + ``Upgrade $http_upgrade`` + ``Connection
      $connection_upgrade`` (the usual map).
    * ``no-upgrade``: ``proxy_http_version 1.1`` only (nginx sends ``Connection: close`` upstream).
    * ``http10``: bare ``proxy_pass`` (HTTP/1.0 upstream).
    * ``read-timeout``: correct + ``proxy_read_timeout 2s`` (``read_timeout=`` to change).
    * ``tls``: correct + ``listen ... ssl`` with ``certs.good`` (``cert=`` another CertPair);
      ``url`` is ``wss://localhost:PORT/ws``.
    * ``upstream-down``: correct, toward a port with nothing listening (``backend_port`` may be omitted).

    Options: ``csp="connect-src 'self'"`` (or True for that value) adds that Content-Security-Policy to
    ``location = /page``, a tiny HTML page (always there) that opens ``ws[s]://host/ws`` or
    ``page_ws_url``; ``read_timeout`` (seconds); ``cert``; ``extra_server_conf`` (raw directives).

    The Peer: ``url`` ws://127.0.0.1:PORT/ws, ``pid`` the nginx master, ``backend_port``, ``log`` (stderr),
    ``extra["page_url"]``, ``extra["config_text"]``. Stopped with SIGTERM.
    """
    binary: list[str] = []

    def start(variant: str, backend_port: int | None = None, **opts: Any) -> Peer:
        if variant not in NGINX_VARIANTS:
            raise ValueError(f"unknown nginx variant {variant!r}; choose from {NGINX_VARIANTS}")
        if not binary:
            binary.append(require_binary("nginx", "apt-get install -y nginx"))
        if backend_port is None:
            if variant != "upstream-down":
                raise TypeError(f"nginx_proxy({variant!r}) needs a backend_port")
            backend_port = free_port()
        cert = opts.pop("cert", None)
        if variant == "tls" and cert is None:
            cert = request.getfixturevalue("certs").good
        csp = opts.pop("csp", None)
        if csp is True:
            csp = "connect-src 'self'"
        options = NginxOptions(
            read_timeout=opts.pop("read_timeout", None),
            csp=csp,
            page_ws_url=opts.pop("page_ws_url", None),
            cert=cert,
            extra_server_conf=opts.pop("extra_server_conf", ""),
        )
        if opts:
            raise TypeError(f"unknown nginx_proxy options: {sorted(opts)}")
        directory = tmp_path_factory.mktemp(f"nginx-{variant}")
        peer, proc = start_nginx(binary[0], directory, variant, backend_port, options)
        _peer_stack.push(proc.stop)
        return peer

    return start


# --------------------------------------------------------------------------- DNS


@pytest.fixture
def dnsmasq(_peer_stack: _Stack, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., DnsPeer]:
    """Start real dnsmasq on 127.0.0.1, free UDP+TCP port: ``dnsmasq(records, hosts=None, extra_args=())``.

    ``records``: a mapping name -> IP | [IPs] | "CNAME target" | "NXDOMAIN" (a key ".domain" is a
    wildcard ``--address``), or a list of raw dnsmasq options; see :func:`tests.peers.dns.record_args`.
    ``hosts``: name -> IP(s) written to a hosts file passed with ``--addn-hosts``.
    Returns a :class:`DnsPeer` with ``.port``, ``.server`` ("127.0.0.1:PORT"), ``.pid``, ``.resolver()``.
    Names it has no data for (outside its local domains) are answered REFUSED.
    """
    binary: list[str] = []

    def start(
        records: Records,
        hosts: Mapping[str, str | Sequence[str]] | None = None,
        extra_args: Sequence[str] = (),
    ) -> DnsPeer:
        if not binary:
            binary.append(require_binary("dnsmasq", "apt-get install -y dnsmasq"))
        peer = start_dnsmasq(binary[0], tmp_path_factory.mktemp("dnsmasq"), records, hosts, extra_args)
        _peer_stack.push(peer.stop)
        return peer

    return start


@pytest.fixture
def dns_server(dnsmasq: Callable[..., DnsPeer]) -> DnsPeer:
    """dnsmasq with the default records. Answers (dnspython, ``dns_server.resolver()``):

    ======================== ==================================================== ===============
    name                     A                                                    AAAA
    ======================== ==================================================== ===============
    lokin.test               127.0.0.1                                            NoAnswer
    <any>.lokin.test         127.0.0.1 (wildcard ``--address``)                   NoAnswer
    multi.lokin.test         127.0.0.1, 127.0.0.2, 127.0.0.3 (any order)          NoAnswer
    v6.lokin.test            NoAnswer                                             ::1
    alias.lokin.test         CNAME lokin.test. then A 127.0.0.1 (CNAME query too) NoAnswer
    override.lokin.test      127.0.0.5, only from the ``--addn-hosts`` file       NoAnswer
    nx.test, <any>.nx.test   NXDOMAIN                                             NXDOMAIN
    x.multi/x.v6.lokin.test  NXDOMAIN                                             NXDOMAIN
    anything else            REFUSED (dnspython: NoNameservers)                   REFUSED
    ======================== ==================================================== ===============
    """
    return dnsmasq(DEFAULT_RECORDS, hosts=DEFAULT_HOSTS)
