"""The shipped HAProxy, Apache and Caddy examples work: each file of deploy/, with the ports substituted
(and the TLS lines left out), in the real proxy in front of a WebSocket server, passes `lokin-doctor all`
with exit 0 and no warning."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tests.helpers import run_cli

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
IN_PROCESS = ("--process", "^lokin-test-in-process-backend$")


def _healthy(url: str) -> Any:
    run = run_cli(
        "all", url, "--json", "--no-variants", "--send", "ping?", "--expect", r"^ping\?$", *IN_PROCESS
    )
    assert run.code == 0, run.stdout
    assert all(c["status"] in ("ok", "skip") for c in run.report["checks"]), run.stdout
    assert run.check("session")["evidence"]["client_id"].startswith("user_")
    return run


def test_haproxy_example(haproxy_site: Any, ws_server: Any) -> None:
    text = (DEPLOY / "haproxy-lokin.cfg").read_text()
    text = text.replace("log /dev/log local0", "").replace("/run/haproxy/admin.sock", "{dir}/admin.sock")
    text = re.sub(r"bind :443 ssl crt \S+ alpn http/1.1", "bind 127.0.0.1:{port}", text)
    text = text.replace("127.0.0.1:8080", f"127.0.0.1:{ws_server.port}")
    site = haproxy_site(
        text.replace("global\n", "global\n    pidfile {dir}/haproxy.pid\n", 1), with_global=False
    )
    run = _healthy(site.url)
    r = run.check("proxy-config")
    assert r["evidence"]["findings"] == [] and r["evidence"]["stats_socket"].endswith("admin.sock"), r


def test_apache_example(apache_site: Any, ws_server: Any) -> None:
    text = (DEPLOY / "apache-lokin.conf").read_text()
    text = re.sub(r"    # BEGIN tls.*?# END tls\n", "", text, flags=re.S)
    text = text.replace("<VirtualHost *:443>", "<VirtualHost 127.0.0.1:{port}>").replace(
        "your-domain.example", "localhost"
    )
    site = apache_site(text.replace("127.0.0.1:8080", f"127.0.0.1:{ws_server.port}"))
    run = _healthy(site.url)
    assert run.check("proxy-config")["evidence"]["findings"] == []


def test_caddy_example(caddy_site: Any, ws_server: Any) -> None:
    text = (DEPLOY / "Caddyfile").read_text()
    text = text.replace("your-domain.example {", "http://127.0.0.1:{port} {").replace(
        "127.0.0.1:8080", f"127.0.0.1:{ws_server.port}"
    )
    site = caddy_site(text)
    run = _healthy(site.url)
    codes = [f["code"] for f in run.check("proxy-config")["evidence"]["findings"]]
    assert codes == ["caddy.reload-cuts"]  # the 2.6 note: nothing to fix in the file
