"""Proxy configuration findings against real Debian nginx and HAProxy: each broken configuration gives its
code, the file:line and the corrected text; its correct twin gives no finding.

``nginx.connection-header-missing`` (no ``proxy_set_header Connection``, or one without ``upgrade``),
``nginx.connection-map-missing`` (``$connection_upgrade`` with no map: nginx refuses such a file, so it is
found in a file changed since the running nginx loaded it) and ``haproxy.tunnel-timeout-short``
(``timeout tunnel`` shorter than the server's ping interval).
"""

from __future__ import annotations

import subprocess
from typing import Any

from tests.helpers import run_cli
from tests.local.conftest import UPGRADE_MAP, NginxSite
from tests.local.test_haproxy import _site as _haproxy_site
from tests.local.test_nginx import GOOD
from tests.local.test_nginx import _site as _nginx_site


def _location(backend_port: int, lines: str) -> str:
    return _nginx_site(f"""    location /ws {{
        proxy_pass http://127.0.0.1:{backend_port};{lines}
    }}""")


def _findings(result: dict[str, Any]) -> list[dict[str, Any]]:
    return result["evidence"].get("findings", [])  # type: ignore[no-any-return]


def _no_finding(result: dict[str, Any]) -> None:
    """The correct twin: no finding, but for a note the live 101 already overruled: the backend here runs
    in the pytest process, so when another program matching a WebSocket server listens on this machine
    (other test runs share it) proxy_pass can read as 'a port held by another program'."""
    assert result["status"] == "ok", result
    left = [
        f
        for f in _findings(result)
        if f["severity"] != "note" or not f.get("live") or f["code"].startswith("nginx.connection")
    ]
    assert left == [], result


def test_nginx_without_a_connection_header(nginx_site: Any, ws_server: Any) -> None:
    no_connection = GOOD.replace("\n        proxy_set_header Connection $connection_upgrade;", "")
    site: NginxSite = nginx_site(_location(ws_server.port, no_connection))
    run = run_cli("all", f"ws://127.0.0.1:{site.port}/ws", "--json", "--no-variants")
    assert run.code == 1, run.stdout
    rc = run.report["root_cause"]
    assert rc["check"] == "nginx" and rc["code"] == "nginx.connection-header-missing", rc
    # no line to point at: the location block is where the line goes
    assert rc["summary"].startswith(site.where("location /ws") + ": no proxy_set_header Connection")
    assert "nginx sends 'Connection: close' to the backend" in rc["summary"]
    # the live handshake confirmed it (nginx's Connection: close upstream: no 101)
    assert "the live handshake found handshake.upgrade-dropped" in rc["summary"]
    nginx = run.check("nginx")
    assert [f["code"] for f in _findings(nginx)] == ["nginx.connection-header-missing"]
    assert (
        "    proxy_set_header Connection $connection_upgrade;"
        in nginx["evidence"]["fixed_block"].splitlines()
    )
    assert nginx["evidence"]["fixed_block"] in rc["hint"]
    # the correct twin: the same backend through the full block upgrades, no finding
    good: NginxSite = nginx_site(_location(ws_server.port, GOOD))
    fixed = run_cli("all", f"ws://127.0.0.1:{good.port}/ws", "--json", "--no-variants")
    assert fixed.code == 0, fixed.stdout
    _no_finding(fixed.check("nginx"))


def test_nginx_connection_keep_alive_is_no_upgrade(nginx_site: Any, ws_server: Any) -> None:
    keep_alive = GOOD.replace("Connection $connection_upgrade;", "Connection keep-alive;")
    site: NginxSite = nginx_site(_location(ws_server.port, keep_alive))
    run = run_cli("all", f"ws://127.0.0.1:{site.port}/ws", "--json", "--no-variants")
    rc = run.report["root_cause"]
    assert rc["code"] == "nginx.connection-header-missing", rc
    where = site.where("proxy_set_header Connection keep-alive;")
    assert rc["summary"].startswith(
        f"{where}: proxy_set_header Connection keep-alive: the backend sees no upgrade request"
    ), rc
    block = run.check("nginx")["evidence"]["fixed_block"]
    assert "keep-alive" not in block and "    proxy_set_header Connection $connection_upgrade;" in block


def test_nginx_connection_variable_without_its_map(nginx_site: Any, ws_server: Any) -> None:
    # nginx runs the full block with its map; the main file lost the map since (not reloaded, and
    # a reload would fail): the file read names the line that uses the undefined variable.
    site: NginxSite = nginx_site(_location(ws_server.port, GOOD))
    url = f"ws://127.0.0.1:{site.port}/ws"
    site.main.write_text(site.main.read_text().replace(UPGRADE_MAP, ""))
    run = run_cli("all", url, "--json", "--no-variants")
    nginx = run.check("nginx")
    assert nginx["code"] == "nginx.connection-map-missing", nginx
    where = site.where("proxy_set_header Connection $connection_upgrade;")
    assert nginx["summary"].startswith(
        f"{where}: Connection $connection_upgrade but no map defines $connection_upgrade in the http block"
    ), nginx
    # the running nginx still has the map: its live 101 makes this a warning, not the root cause
    assert nginx["status"] == "warn" and "may not have reloaded this file" in nginx["summary"]
    assert run.report["root_cause"] is None
    # with no map in the http block, the corrected block names the value itself
    block = nginx["evidence"]["fixed_block"]
    assert '    proxy_set_header Connection "upgrade";' in block.splitlines(), block
    assert "$connection_upgrade" not in block and block in nginx["hint"]
    # what the finding says of the file is what nginx itself says of it
    test = subprocess.run(
        ["nginx", "-t", "-p", str(site.main.parent), "-c", str(site.main), "-e", "stderr"],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert test.returncode != 0
    assert 'unknown "connection_upgrade" variable' in test.stderr
    # the map back in the file: no finding
    site.main.write_text(
        site.main.read_text().replace("include conf.d", UPGRADE_MAP + "\n    include conf.d")
    )
    good = run_cli("all", url, "--json", "--no-variants")
    _no_finding(good.check("nginx"))


def test_haproxy_timeout_tunnel_shorter_than_the_pings(haproxy_site: Any, serve_process: Any) -> None:
    backend = serve_process("--ping-interval", "5")
    site = haproxy_site(_haproxy_site(backend.port, backend="    timeout tunnel 2s\n"))
    run = run_cli("all", site.url, "--json", "--no-variants", "--only", "proxy-config")
    r = run.check("proxy-config")
    assert r["status"] == "warn" and r["code"] == "haproxy.tunnel-timeout-short", r
    where = site.where("timeout tunnel 2s")
    assert r["summary"].startswith(f"{where}: timeout tunnel 2s: HAProxy closes a WebSocket idle for 2 s")
    assert "ping interval (5 s, from http://127.0.0.1:" in r["summary"]
    (finding,) = (f for f in _findings(r) if f["code"] == "haproxy.tunnel-timeout-short")
    assert finding["where"] == where
    assert finding["current"] == "timeout tunnel 2s"
    assert finding["corrected"] == "timeout tunnel 1h"
    assert "timeout tunnel 1h" in r["hint"].splitlines()
    # an idle hold longer than the tunnel: HAProxy cuts it, and the line becomes the root cause
    held = run_cli("all", site.url, "--json", "--no-variants", "--hold", "3.5")
    rc = held.report["root_cause"]
    assert rc["check"] == "proxy-config" and rc["code"] == "haproxy.tunnel-timeout-short", held.stdout
    assert "(the idle hold found hold.idle-timeout)" in rc["summary"]
    # the corrected line: the same hold stays open, no finding
    fixed = haproxy_site(_haproxy_site(backend.port, backend="    timeout tunnel 1h\n"))
    good = run_cli(
        "all", fixed.url, "--json", "--no-variants", "--only", "proxy-config,hold", "--hold", "3.5"
    )
    assert good.code == 0, good.stdout
    assert _findings(good.check("proxy-config")) == []
