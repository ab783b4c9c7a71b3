"""A real nginx reverse proxy in front of a backend, in each of the configurations users get wrong.

Run per PEERS.md: ``nginx -p DIR -c nginx.conf -e stderr -g 'daemon off;'`` with the pid file, logs and
every ``*_temp_path`` under DIR, listening on 127.0.0.1 only.
"""

from __future__ import annotations

import grp
import os
import pwd
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from tests.peers._common import (
    LOOPBACK,
    ManagedProcess,
    free_port,
    log_says_address_in_use,
    port_accepts,
)
from tests.peers.certs import CertPair
from tests.peers.peer import Peer

VARIANTS = ("correct", "no-upgrade", "http10", "read-timeout", "tls", "upstream-down")

DEFAULT_CSP = "connect-src 'self'"

PAGE_TEMPLATE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>LOK IN</title></head>
<body>
<h1>LOK IN</h1>
<p id="status">connecting</p>
<script>
const url = {ws_url};
const statusEl = document.getElementById('status');
let ws;
try {{
  ws = new WebSocket(url);
  ws.onopen = () => {{ statusEl.textContent = 'open ' + url; }};
  ws.onmessage = (e) => {{ statusEl.textContent = 'message ' + e.data; }};
  ws.onerror = () => {{ statusEl.textContent = 'error ' + url; }};
  ws.onclose = (e) => {{
    if (!statusEl.textContent.startsWith('message')) statusEl.textContent = 'closed ' + e.code;
  }};
}} catch (e) {{
  statusEl.textContent = 'exception ' + e.name + ': ' + e.message;
}}
</script>
</body></html>
"""

PAGE_DEFAULT_WS_URL = "(location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws'"


@dataclass(frozen=True)
class NginxOptions:
    read_timeout: float | None = None
    csp: str | None = None
    page_ws_url: str | None = None
    cert: CertPair | None = None
    extra_server_conf: str = ""


def _proxy_block(variant: str, backend_port: int, uri: str, opts: NginxOptions) -> str:
    lines = [f"proxy_pass http://{LOOPBACK}:{backend_port}{uri};"]
    if variant in ("correct", "read-timeout", "tls", "upstream-down"):
        lines += [
            "proxy_http_version 1.1;",
            "proxy_set_header Upgrade $http_upgrade;",
            "proxy_set_header Connection $connection_upgrade;",
            "proxy_set_header Host $host;",
            "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
            "proxy_set_header X-Forwarded-Proto $scheme;",
        ]
    elif variant == "no-upgrade":
        lines += ["proxy_http_version 1.1;"]
    elif variant == "http10":
        pass
    else:
        raise ValueError(f"unknown nginx variant {variant!r}; choose from {VARIANTS}")
    read_timeout = opts.read_timeout
    if variant == "read-timeout" and read_timeout is None:
        read_timeout = 2
    if read_timeout is not None:
        lines.append(f"proxy_read_timeout {read_timeout:g}s;")
    return "\n            ".join(lines)


def render_config(directory: Path, variant: str, port: int, backend_port: int, opts: NginxOptions) -> str:
    """The nginx.conf text for ``variant``."""
    d = directory
    user = ""
    if os.geteuid() == 0:
        # Workers would otherwise run as nobody and could not read the page under a 0700 tmp dir.
        user = f"user {pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name};"
    listen = f"listen {LOOPBACK}:{port}" + (" ssl" if variant == "tls" else "") + ";"
    tls = ""
    if variant == "tls":
        assert opts.cert is not None
        tls = f"ssl_certificate {opts.cert.certfile};\n        ssl_certificate_key {opts.cert.keyfile};"
    csp = f'add_header Content-Security-Policy "{opts.csp}" always;' if opts.csp else ""
    return f"""# lokin-doctor test peer: nginx variant "{variant}" -> backend {LOOPBACK}:{backend_port}
{user}
worker_processes 1;
pid {d}/nginx.pid;
error_log stderr notice;

events {{
    worker_connections 128;
}}

http {{
    access_log {d}/logs/access.log;
    client_body_temp_path {d}/temp/client_body;
    proxy_temp_path {d}/temp/proxy;
    fastcgi_temp_path {d}/temp/fastcgi;
    uwsgi_temp_path {d}/temp/uwsgi;
    scgi_temp_path {d}/temp/scgi;
    default_type application/octet-stream;

    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      close;
    }}

    server {{
        {listen}
        server_name localhost lokin.test;
        {tls}

        location = /page {{
            default_type text/html;
            alias {d}/html/page.html;
            {csp}
        }}

        location /ws {{
            {_proxy_block(variant, backend_port, "/", opts)}
        }}

        location / {{
            {_proxy_block(variant, backend_port, "", opts)}
        }}
        {opts.extra_server_conf}
    }}
}}
"""


def start_nginx(
    binary: str,
    directory: Path,
    variant: str,
    backend_port: int,
    opts: NginxOptions,
) -> tuple[Peer, ManagedProcess]:
    """Start nginx (retrying on a port race) and return its peer and process; fails the test if it can't."""
    for sub in ("logs", "temp", "html"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    ws_url = repr(opts.page_ws_url) if opts.page_ws_url else PAGE_DEFAULT_WS_URL
    (directory / "html" / "page.html").write_text(PAGE_TEMPLATE.format(ws_url=ws_url))
    conf = directory / "nginx.conf"
    proc: ManagedProcess | None = None
    for attempt in range(3):
        port = free_port()
        conf.write_text(render_config(directory, variant, port, backend_port, opts))
        proc = ManagedProcess(
            [binary, "-p", str(directory), "-c", str(conf), "-e", "stderr", "-g", "daemon off;"],
            log=directory / f"nginx-{attempt}.log",
            cwd=directory,
            name=f"nginx ({variant})",
        ).start()
        if proc.wait_ready(partial(port_accepts, LOOPBACK, port), timeout=10):
            break
        if not proc.alive() and log_says_address_in_use(proc.log) and attempt < 2:
            proc.stop()
            continue
        proc.fail_start(f"port {port} not accepting")
    assert proc is not None
    host = "localhost" if variant == "tls" else LOOPBACK
    scheme = "wss" if variant == "tls" else "ws"
    peer = Peer(
        host=LOOPBACK,
        port=port,
        url=f"{scheme}://{host}:{port}/ws",
        pid=proc.pid,
        kind=f"nginx:{variant}",
        log=proc.log,
        backend_port=backend_port,
        extra={
            "config": conf,
            "config_text": conf.read_text(),
            "page_url": f"{'https' if variant == 'tls' else 'http'}://{host}:{port}/page",
            "cert": opts.cert,
        },
        _stop=proc.stop,
    )
    return peer, proc
