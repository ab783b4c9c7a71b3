"""``proxy-config`` for Apache httpd: a real apache2 (Debian's 2.4, LoadModule lines of its own, no a2enmod)
with the site in an included file, in front of real backends. Each broken configuration gives the code, the
file:line and the corrected text; the corrected text, run in a real httpd, passes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.helpers import run_cli
from tests.local.findings import finding, proxy_config
from tests.peers.apache import BASE_MODULES

IN_PROCESS = ("--process", "^lokin-test-in-process-backend$")
GOOD_EXTRA = "    ProxyPreserveHost On\n    ProxyTimeout 3600\n"


def _site(lines: str, extra: str = GOOD_EXTRA) -> str:
    return f"""<VirtualHost 127.0.0.1:{{port}}>
    ServerName localhost
{extra}{lines}
</VirtualHost>
"""


def _file(site: Any) -> Path:
    return site.directory / "sites" / "site.conf"  # type: ignore[no-any-return]


def _where(site: Any, needle: str, nth: int = 1) -> str:
    return site.where(needle, nth, _file(site))  # type: ignore[no-any-return]


def test_healthy_apache_in_front(apache_site: Any, ws_server: Any) -> None:
    site = apache_site(_site(f"    ProxyPass /ws http://127.0.0.1:{ws_server.port}/ws upgrade=websocket"))
    run = run_cli("all", site.url, "--json", "--no-variants", *IN_PROCESS)
    assert run.code == 0, run.stdout
    assert all(c["status"] in ("ok", "skip") for c in run.report["checks"]), run.stdout
    assert run.check("port")["evidence"]["proxy_in_front"] == "apache2"
    r = proxy_config(run)
    assert r["status"] == "ok" and not r["evidence"]["findings"], r
    assert r["evidence"]["source"] == f"apache pid {site.pid} (-f)"
    assert str(_file(site)) in r["evidence"]["files"]
    assert r["evidence"]["modules_from"].endswith("-M")
    assert r["evidence"]["sent_path"] == "/ws"


def test_http_proxypass_without_upgrade(apache_site: Any, ws_server: Any) -> None:
    line = f"    ProxyPass /ws http://127.0.0.1:{ws_server.port}/ws"
    site = apache_site(_site(line))
    run = run_cli("all", site.url, "--json", "--no-variants")
    rc = run.report["root_cause"]
    assert rc["check"] == "proxy-config" and rc["code"] == "apache.no-upgrade", run.stdout
    assert rc["summary"].startswith(_where(site, "ProxyPass") + ": ProxyPass /ws http://127.0.0.1:")
    assert "handshake.upgrade-dropped" in rc["summary"] or "proxy.upgrade-not-forwarded" in rc["summary"]
    f = finding(proxy_config(run), "apache.no-upgrade")
    assert f["current"] == line.strip()
    assert f["corrected"] == line.strip() + " upgrade=websocket"
    # mod_proxy_wstunnel loaded does not help an http:// ProxyPass (2.4.47+ defers to mod_proxy_http).
    also = apache_site(_site(line), modules=(*BASE_MODULES, "proxy_wstunnel"))
    assert run_cli("all", also.url, "--json", "--no-variants").root_code == "apache.no-upgrade"
    fixed = apache_site(_site("    " + f["corrected"]))
    good = run_cli("all", fixed.url, "--json", "--no-variants", *IN_PROCESS)
    assert good.code == 0, good.stdout


def test_ws_proxypass_without_a_module_for_it(apache_site: Any, ws_server: Any) -> None:
    line = f"    ProxyPass /ws ws://127.0.0.1:{ws_server.port}/ws"
    site = apache_site(_site(line), modules=("mpm_event", "authz_core", "proxy"))
    run = run_cli("all", site.url, "--json", "--no-variants")
    rc = run.report["root_cause"]
    assert rc["code"] == "apache.no-wstunnel", run.stdout
    f = finding(proxy_config(run), "apache.no-wstunnel")
    assert f["where"] == site.where("LoadModule proxy_module")  # where the line is added
    assert f["corrected"] == (
        "LoadModule proxy_module /usr/lib/apache2/modules/mod_proxy.so\n"
        "LoadModule proxy_wstunnel_module /usr/lib/apache2/modules/mod_proxy_wstunnel.so"
    )
    assert "handshake.server-error" in rc["summary"]  # Apache's 500: no protocol handler
    fixed = apache_site(_site(line), modules=("mpm_event", "authz_core", "proxy", "proxy_wstunnel"))
    good = run_cli("all", fixed.url, "--json", "--no-variants", *IN_PROCESS)
    assert good.code == 0, good.stdout
    # From 2.4.47 mod_proxy_http alone handles ws://.
    http_only = apache_site(_site(line))
    assert run_cli("all", http_only.url, "--json", "--no-variants", *IN_PROCESS).code == 0


def test_short_timeout_against_serve_pings(apache_site: Any, serve_process: Any) -> None:
    backend = serve_process("--ping-interval", "5")
    line = f"    ProxyPass /ws http://127.0.0.1:{backend.port}/ws upgrade=websocket"
    site = apache_site(_site(line, "    ProxyPreserveHost On\n    Timeout 2\n"))
    run = run_cli("all", site.url, "--json", "--no-variants", "--only", "proxy-config")
    r = proxy_config(run)
    assert r["status"] == "warn" and r["code"] == "apache.proxy-timeout-short", r
    f = finding(r, "apache.proxy-timeout-short")
    assert f["where"] == _where(site, "ProxyPass")
    assert f["current"] == line.strip() and f["corrected"] == line.strip() + " timeout=3600"
    assert r["summary"].startswith(
        _where(site, "ProxyPass") + ": Timeout 2: Apache closes a WebSocket idle for 2 s"
    )
    assert "ping interval (5 s, from http://127.0.0.1:" in r["summary"]
    held = run_cli("all", site.url, "--json", "--no-variants", "--hold", "3.5")
    rc = held.report["root_cause"]
    assert rc["check"] == "proxy-config" and rc["code"] == "apache.proxy-timeout-short", held.stdout
    # The corrected line (Timeout 2 kept): the tunnel takes the longer of the two and stays open.
    fixed = apache_site(_site("    " + f["corrected"], "    ProxyPreserveHost On\n    Timeout 2\n"))
    good = run_cli(
        "all", fixed.url, "--json", "--no-variants", "--only", "proxy-config,hold", "--hold", "3.5"
    )
    assert good.code == 0 and not proxy_config(good)["evidence"]["findings"], good.stdout


def test_proxy_timeout_alone_does_not_shorten_the_tunnel(apache_site: Any, serve_process: Any) -> None:
    # Measured: the tunnel keeps Timeout's 60 s when only ProxyTimeout is short.
    backend = serve_process("--ping-interval", "0")
    line = f"    ProxyPass /ws http://127.0.0.1:{backend.port}/ws upgrade=websocket"
    site = apache_site(_site(line, "    ProxyPreserveHost On\n    ProxyTimeout 2\n"))
    run = run_cli("all", site.url, "--json", "--no-variants", "--only", "proxy-config,hold", "--hold", "3.5")
    assert run.check("hold")["status"] == "ok", run.stdout
    f = finding(proxy_config(run), "apache.proxy-timeout-short")  # pings off: 60 s still drops quiet clients
    assert f["severity"] == "warn" and "idle for 60 s" in f["message"], f


def test_path_not_proxied(apache_site: Any, ws_server: Any, tmp_path: Path) -> None:
    site = apache_site(_site(f"    DocumentRoot {tmp_path}"))
    run = run_cli("all", site.url, "--json", "--no-variants", *IN_PROCESS)
    rc = run.report["root_cause"]
    assert rc["code"] == "apache.not-proxied", run.stdout
    assert rc["summary"].startswith(
        _where(site, "<VirtualHost") + ": no ProxyPass, ProxyPassMatch or RewriteRule [P]"
    )
    f = finding(proxy_config(run), "apache.not-proxied")
    assert (
        f["corrected"]
        == f'<VirtualHost 127.0.0.1:{site.port}>\n    ProxyPass "/ws" "http://127.0.0.1:8080/ws" upgrade=websocket'
    )
    line = f'    ProxyPass "/ws" "http://127.0.0.1:{ws_server.port}/ws" upgrade=websocket'
    fixed = apache_site(_site(line))
    assert run_cli("all", fixed.url, "--json", "--no-variants", *IN_PROCESS).code == 0


def test_proxypass_to_a_dead_port(apache_site: Any, serve_process: Any) -> None:
    from tests.peers._common import free_port

    backend = serve_process()
    dead = free_port()
    site = apache_site(_site(f"    ProxyPass /ws http://127.0.0.1:{dead}/ws upgrade=websocket"))
    process = rf"serve --host 127\.0\.0\.1 --port {backend.port}$"
    run = run_cli("all", site.url, "--json", "--no-variants", "--process", process)
    rc = run.report["root_cause"]
    assert rc["code"] == "apache.backend-down", run.stdout
    assert (
        f"nothing listens on 127.0.0.1:{dead}" in rc["summary"] and "handshake.bad-gateway" in rc["summary"]
    )
    f = finding(proxy_config(run), "apache.backend-down")
    assert f["corrected"] == f"ProxyPass /ws http://127.0.0.1:{backend.port}/ws upgrade=websocket"


def test_request_header_that_changes_origin(apache_site: Any, ws_server: Any) -> None:
    line = f"    ProxyPass /ws http://127.0.0.1:{ws_server.port}/ws upgrade=websocket"
    site = apache_site(
        _site(line + "\n    RequestHeader set Origin https://other.example"),
        modules=(*BASE_MODULES, "headers"),
    )
    run = run_cli("all", site.url, "--json", "--no-variants", "--only", "proxy-config")
    r = proxy_config(run)
    assert r["status"] == "warn" and r["code"] == "apache.origin-changed", r
    assert finding(r, "apache.origin-changed")["where"] == _where(site, "RequestHeader")
    assert f"delete the line at {_where(site, 'RequestHeader')}" in r["hint"]


def test_host_not_preserved_is_a_note(apache_site: Any, ws_server: Any) -> None:
    site = apache_site(_site(f"    ProxyPass /ws http://127.0.0.1:{ws_server.port}/ws upgrade=websocket", ""))
    run = run_cli("all", site.url, "--json", "--no-variants", *IN_PROCESS)
    assert run.code == 0, run.stdout
    f = finding(proxy_config(run), "apache.host-not-preserved")
    assert f["severity"] == "note" and f["corrected"].endswith("\n    ProxyPreserveHost On")


def test_rewrite_rule_proxy_and_vhost_by_name(apache_site: Any, ws_server: Any) -> None:
    # Two virtual hosts on the port: the ServerName picks the second; its RewriteRule [P] proxies.
    site_text = f"""<VirtualHost 127.0.0.1:{{port}}>
    ServerName other.example
</VirtualHost>
<VirtualHost 127.0.0.1:{{port}}>
    ServerName localhost
{GOOD_EXTRA}    RewriteEngine On
    RewriteCond %{{HTTP:Upgrade}} websocket [NC]
    RewriteRule ^/ws(.*)$ http://127.0.0.1:{ws_server.port}/ws$1 [P,L]
</VirtualHost>
"""
    site = apache_site(site_text, modules=(*BASE_MODULES, "rewrite"))
    url = f"ws://localhost:{site.port}/ws"
    run = run_cli("all", url, "--json", "--no-variants")
    r = proxy_config(run)
    assert "ServerName/ServerAlias localhost" in r["evidence"]["why"][0], r
    assert r["code"] == "apache.no-upgrade", r
    f = finding(r, "apache.no-upgrade")
    assert f["where"] == _where(site, "RewriteRule")
    assert f["corrected"] == f"RewriteRule ^/ws(.*)$ ws://127.0.0.1:{ws_server.port}/ws$1 [P,L]"
    fixed = apache_site(
        site_text.replace("http://127.0.0.1", "ws://127.0.0.1"), modules=(*BASE_MODULES, "rewrite")
    )
    good = run_cli("all", f"ws://localhost:{fixed.port}/ws", "--json", "--no-variants", *IN_PROCESS)
    assert good.code == 0, good.stdout
    assert proxy_config(good)["evidence"]["upstreams"] == [f"ws://127.0.0.1:{ws_server.port}"]


def test_location_proxypass(apache_site: Any, ws_server: Any) -> None:
    text = f"""    <Location /ws>
        ProxyPass http://127.0.0.1:{ws_server.port}/ws upgrade=websocket
    </Location>"""
    site = apache_site(_site(text))
    run = run_cli("all", site.url + "/chat", "--json", "--no-variants", *IN_PROCESS)
    assert run.code == 0, run.stdout
    r = proxy_config(run)
    assert r["evidence"]["sent_path"] == "/ws/chat"
    assert "<Location /ws>" in r["evidence"]["why"][1]
