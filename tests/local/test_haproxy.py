"""``proxy-config`` for HAProxy: a real HAProxy (Debian's 2.6) with its configuration in a temp dir, in front
of real backends. Each broken configuration gives the code, the file:line and the corrected text; its
correct twin gives no finding.
"""

from __future__ import annotations

from typing import Any

from tests.helpers import run_cli
from tests.local.findings import finding, finding_codes, proxy_config
from tests.peers.haproxy import DEFAULTS

TUNNEL = "    timeout tunnel 1h\n"

#: The backend is the test process itself (ws_server runs in-process): no separate server for the
#: process/supervisor checks to judge, and other servers running on a shared machine stay out of it.
IN_PROCESS = ("--process", "^lokin-test-in-process-backend$")


def _site(backend_port: int, *, frontend: str = "", backend: str = "", defaults: str = DEFAULTS) -> str:
    return f"""{defaults}
frontend fe
    bind 127.0.0.1:{{port}}
{frontend}    default_backend be_ws

backend be_ws
{backend}    server ws1 127.0.0.1:{backend_port}
"""


def test_healthy_haproxy_in_front(haproxy_site: Any, ws_server: Any) -> None:
    site = haproxy_site(_site(ws_server.port, backend=TUNNEL))
    run = run_cli("all", site.url, "--json", "--no-variants", *IN_PROCESS)
    assert run.code == 0, run.stdout
    assert all(c["status"] in ("ok", "skip") for c in run.report["checks"]), run.stdout
    port = run.check("port")
    assert port["status"] == "ok" and port["evidence"]["proxy_in_front"] == "haproxy", port
    r = proxy_config(run)
    assert r["status"] == "ok" and not r["evidence"]["findings"], r
    assert r["evidence"]["source"] == f"haproxy pid {site.pid} (-f)"
    assert r["evidence"]["config"] == str(site.main)
    assert r["evidence"]["upstreams"] == [f"http://127.0.0.1:{ws_server.port}"]
    assert f"backend be_ws ({site.where('backend be_ws', 2)})" in r["summary"]


def test_no_timeout_tunnel_against_serve_pings(haproxy_site: Any, serve_process: Any) -> None:
    backend = serve_process("--ping-interval", "5")
    defaults = DEFAULTS.replace("timeout client 30s", "timeout client 2s")
    site = haproxy_site(_site(backend.port, defaults=defaults))
    run = run_cli("all", site.url, "--json", "--no-variants", "--only", "proxy-config")
    r = proxy_config(run)
    assert r["status"] == "warn" and r["code"] == "haproxy.no-timeout-tunnel", r
    assert r["summary"].startswith(site.where("timeout client 2s") + ": no timeout tunnel for backend be_ws")
    assert "ping interval (5 s, from http://127.0.0.1:" in r["summary"]
    f = finding(r, "haproxy.no-timeout-tunnel")
    assert f["where"] == site.where("timeout client 2s")
    assert f["current"] == "timeout client 2s"
    assert f["corrected"] == "timeout client 2s\n    timeout tunnel 1h"
    assert "    timeout tunnel 1h" in r["hint"].splitlines()
    # The idle hold sees HAProxy cut it: the line becomes the root cause.
    held = run_cli("all", site.url, "--json", "--no-variants", "--hold", "3.5")
    rc = held.report["root_cause"]
    assert rc["check"] == "proxy-config" and rc["code"] == "haproxy.no-timeout-tunnel", held.stdout
    assert "hold." in rc["summary"]
    # With timeout tunnel, the same hold stays open and nothing is found.
    fixed = haproxy_site(_site(backend.port, defaults=defaults, backend=TUNNEL))
    good = run_cli(
        "all", fixed.url, "--json", "--no-variants", "--only", "proxy-config,hold", "--hold", "3.5"
    )
    assert good.code == 0, good.stdout
    assert proxy_config(good)["status"] == "ok" and not proxy_config(good)["evidence"]["findings"], (
        proxy_config(good)
    )


def test_timeout_in_the_frontend_is_fixed_in_the_backend(haproxy_site: Any, ws_server: Any) -> None:
    # The shortest timeout is the frontend's timeout client: timeout tunnel is invalid there.
    site = haproxy_site(_site(ws_server.port, frontend="    timeout client 3s\n"))
    run = run_cli("all", site.url, "--json", "--no-variants", "--only", "proxy-config", "--hold", "4")
    r = proxy_config(run)
    assert r["code"] == "haproxy.no-timeout-tunnel", r
    f = finding(r, "haproxy.no-timeout-tunnel")
    assert f["where"] == site.where("backend be_ws", 2)
    assert f["corrected"] == "backend be_ws\n    timeout tunnel 1h"
    assert "--hold 4 keeps a connection idle longer" in f["message"]


def test_unknown_pings_is_a_note(haproxy_site: Any, ws_server: Any) -> None:
    site = haproxy_site(_site(ws_server.port))
    run = run_cli("all", site.url, "--json", "--no-variants", "--only", "proxy-config")
    assert run.code == 0, run.stdout
    r = proxy_config(run)
    assert r["status"] == "ok", r
    f = finding(r, "haproxy.no-timeout-tunnel")
    assert f["severity"] == "note" and "--hold 35 would tell" in f["message"], f
    assert "note" in r


def test_backend_server_where_nothing_listens(haproxy_site: Any, serve_process: Any) -> None:
    from tests.peers._common import free_port

    backend = serve_process()
    dead = free_port()
    site = haproxy_site(_site(dead, backend=TUNNEL))
    process = rf"serve --host 127\.0\.0\.1 --port {backend.port}$"
    run = run_cli("all", site.url, "--json", "--no-variants", "--process", process)
    rc = run.report["root_cause"]
    assert rc["check"] == "proxy-config" and rc["code"] == "haproxy.backend-down", run.stdout
    assert rc["summary"].startswith(
        site.where("server ws1") + f": server ws1 127.0.0.1:{dead}: nothing listens"
    )
    assert f"the WebSocket server listens on {backend.port}" in rc["summary"]
    assert "handshake.no-backend" in rc["summary"]  # HAProxy's own 503, seen live
    f = finding(proxy_config(run), "haproxy.backend-down")
    assert f["corrected"] == f"server ws1 127.0.0.1:{backend.port}"
    fixed = haproxy_site(_site(backend.port, backend=TUNNEL))
    good = run_cli(
        "all", fixed.url, "--json", "--no-variants", "--process", process, "--only", "proxy-config,handshake"
    )
    assert (
        "haproxy.backend-down" not in finding_codes(proxy_config(good))
        and proxy_config(good)["status"] == "ok"
    ), proxy_config(good)


def test_backend_down_read_from_the_stats_socket(haproxy_site: Any) -> None:
    from tests.peers._common import free_port

    dead = free_port()
    # Health checks (check inter 100ms) mark the server DOWN; the stats socket says so.
    site = haproxy_site(
        _site(dead, backend=TUNNEL).replace(f"127.0.0.1:{dead}", f"127.0.0.1:{dead} check inter 100ms fall 1")
    )
    import time

    time.sleep(0.5)
    run = run_cli("all", site.url, "--json", "--no-variants")
    rc = run.report["root_cause"]
    assert rc["code"] == "haproxy.backend-down", run.stdout
    assert (
        "every server of backend be_ws is down (ws1 DOWN" in rc["summary"]
        and "from the stats socket" in rc["summary"]
    )
    assert proxy_config(run)["evidence"]["stats_socket"] == str(site.directory / "stats.sock")


def test_deny_rule_that_matches_the_websocket(haproxy_site: Any, ws_server: Any) -> None:
    rule = "    http-request deny if { path_beg /ws }\n"
    site = haproxy_site(_site(ws_server.port, frontend=rule, backend=TUNNEL))
    run = run_cli("all", site.url, "--json", "--no-variants")
    rc = run.report["root_cause"]
    assert rc["code"] == "haproxy.denied", run.stdout
    assert rc["summary"].startswith(
        site.where("http-request deny") + ": http-request deny if { path_beg /ws }"
    )
    assert "handshake.forbidden" in rc["summary"]
    f = finding(proxy_config(run), "haproxy.denied")
    assert f["current"] == "http-request deny if { path_beg /ws }"
    assert f["corrected"] == "http-request deny if { path_beg /ws } !{ req.hdr(upgrade) -i websocket }"
    # The corrected rule, in a real HAProxy, lets the WebSocket through.
    fixed = haproxy_site(_site(ws_server.port, frontend="    " + f["corrected"] + "\n", backend=TUNNEL))
    good = run_cli("all", fixed.url, "--json", "--no-variants")
    assert good.code == 0, good.stdout
    assert "haproxy.denied" not in finding_codes(proxy_config(good))


def test_deny_unless_another_path(haproxy_site: Any, ws_server: Any) -> None:
    rule = "    http-request deny unless { path_beg /api }\n"
    site = haproxy_site(_site(ws_server.port, frontend=rule, backend=TUNNEL))
    run = run_cli("all", site.url, "--json", "--no-variants")
    f = finding(proxy_config(run), "haproxy.denied")
    assert f["corrected"] == "http-request deny unless { path_beg /api } || { path_beg /ws }"
    fixed = haproxy_site(_site(ws_server.port, frontend="    " + f["corrected"] + "\n", backend=TUNNEL))
    assert run_cli("all", fixed.url, "--json", "--no-variants").code == 0


def test_rule_that_removes_the_upgrade_header(haproxy_site: Any, ws_server: Any) -> None:
    site = haproxy_site(
        _site(ws_server.port, frontend="    http-request del-header Upgrade\n", backend=TUNNEL)
    )
    run = run_cli("all", site.url, "--json", "--no-variants")
    rc = run.report["root_cause"]
    assert rc["code"] == "haproxy.upgrade-header-removed", run.stdout
    assert rc["summary"].startswith(site.where("del-header") + ": http-request del-header Upgrade")
    assert "handshake.upgrade-dropped" in rc["summary"]
    assert f"delete the line at {site.where('del-header')}" in rc["hint"]
    # Setting Connection to a value with "upgrade" is no finding.
    ok_rule = "    http-request set-header Connection upgrade if { req.hdr(upgrade) -i websocket }\n"
    fine = haproxy_site(_site(ws_server.port, frontend=ok_rule, backend=TUNNEL))
    good = run_cli("all", fine.url, "--json", "--no-variants")
    assert good.code == 0 and "haproxy.upgrade-header-removed" not in finding_codes(proxy_config(good)), (
        good.stdout
    )


def test_no_backend_for_the_path(haproxy_site: Any, ws_server: Any) -> None:
    body = f"""{DEFAULTS}
frontend fe
    bind 127.0.0.1:{{port}}
    use_backend be_api if {{ path_beg /api }}

backend be_api
{TUNNEL}    server api1 127.0.0.1:{ws_server.port}
"""
    site = haproxy_site(body)
    run = run_cli("all", site.url, "--json", "--no-variants")
    rc = run.report["root_cause"]
    assert rc["code"] == "haproxy.not-proxied", run.stdout
    assert rc["summary"].startswith(site.where("frontend fe") + ": no use_backend of frontend fe matches /ws")
    assert "handshake.no-backend" in rc["summary"]
    f = finding(proxy_config(run), "haproxy.not-proxied")
    assert f["corrected"] == "frontend fe\n    default_backend be_api"
    fixed_body = body.replace("    use_backend be_api", "    default_backend be_api\n    use_backend be_api")
    fixed = haproxy_site(fixed_body)
    assert run_cli("all", fixed.url, "--json", "--no-variants").code == 0


def test_host_acl_sees_the_port_as_haproxy_does(haproxy_site: Any, ws_server: Any) -> None:
    # Browsers send Host: localhost:PORT; hdr(host) -i localhost does not match it (hdr_dom does).
    from tests.peers._common import free_port

    dead = free_port()
    body = f"""{DEFAULTS}
frontend fe
    bind 127.0.0.1:{{port}}
    acl is_local hdr(host) -i localhost
    use_backend be_ws if is_local
    default_backend be_dead

backend be_ws
{TUNNEL}    server ws1 127.0.0.1:{ws_server.port}

backend be_dead
{TUNNEL}    server dead1 127.0.0.1:{dead}
"""
    site = haproxy_site(body)
    url = f"ws://localhost:{site.port}/ws"
    run = run_cli("all", url, "--json", "--no-variants")
    r = proxy_config(run)
    assert r["code"] == "haproxy.backend-down", r  # the live 503 agrees: the default backend served it
    assert "default_backend be_dead" in " ".join(r["evidence"]["why"])
    assert run.check("handshake")["code"] == "handshake.no-backend"
    fixed = haproxy_site(body.replace("hdr(host) -i localhost", "hdr_dom(host) -i localhost"))
    good = run_cli("all", f"ws://localhost:{fixed.port}/ws", "--json", "--no-variants")
    assert good.code == 0, good.stdout
    assert "use_backend be_ws if is_local" in " ".join(proxy_config(good)["evidence"]["why"])


def test_httpclose_is_only_a_note(haproxy_site: Any, ws_server: Any) -> None:
    site = haproxy_site(_site(ws_server.port, frontend="    option httpclose\n", backend=TUNNEL))
    run = run_cli("all", site.url, "--json", "--no-variants")
    assert run.code == 0, run.stdout  # HAProxy 2.6 tunnels after the 101 whatever httpclose says
    r = proxy_config(run)
    assert r["status"] == "ok"
    f = finding(r, "haproxy.httpclose")
    assert f["severity"] == "note" and f["where"] == site.where("option httpclose")


def test_without_a_proxy_on_the_port_it_costs_nothing(ws_server: Any) -> None:
    run = run_cli("all", ws_server.url, "--json", "--only", "proxy-config")
    r = proxy_config(run)
    assert r["status"] == "skip" and r["summary"].startswith("not applicable: "), r
    assert "no HAProxy, Apache or Caddy" in r["summary"]


def test_nginx_on_the_port_is_left_to_the_nginx_check(nginx_site: Any, ws_server: Any) -> None:
    site = nginx_site(
        f"""server {{
    listen 127.0.0.1:{{port}};
    location / {{ proxy_pass http://127.0.0.1:{ws_server.port}; }}
}}
"""
    )
    run = run_cli("all", f"ws://127.0.0.1:{site.port}/", "--json", "--only", "proxy-config")
    r = proxy_config(run)
    assert r["status"] == "skip" and "the nginx check reads its configuration" in r["summary"], r


def test_french_summary_and_fix(haproxy_site: Any, ws_server: Any) -> None:
    site = haproxy_site(
        _site(ws_server.port, frontend="    http-request del-header Upgrade\n", backend=TUNNEL)
    )
    run = run_cli("all", site.url, "--json", "--no-variants", "--lang", "fr")
    rc = run.report["root_cause"]
    assert rc["code"] == "haproxy.upgrade-header-removed", run.stdout
    assert "le backend ne reçoit pas l'en-tête Upgrade du client" in rc["summary"]
    assert rc["hint"].startswith(f"supprimez la ligne {site.where('del-header')} :")
    assert "puis vérifiez et rechargez : haproxy -c -f" in rc["hint"]
