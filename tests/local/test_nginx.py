"""``nginx``: a real nginx with its config in files (an include), in front of real backends.

Each broken configuration must give the file, the line and the corrected block in the root cause.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import run_cli
from tests.local.conftest import NginxSite

GOOD = """
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection $connection_upgrade;
        proxy_set_header Host $host;"""


def _site(location: str) -> str:
    return f"""server {{
    listen 127.0.0.1:{{port}};
    server_name localhost;

{location}
}}
"""


def _nginx(run: Any) -> dict[str, Any]:
    return run.check("nginx")  # type: ignore[no-any-return]


def test_missing_upgrade_lines_found_in_the_running_nginx(nginx_site: Any, ws_server: Any) -> None:
    site: NginxSite = nginx_site(
        _site(
            f"""    location /ws {{
        proxy_pass http://127.0.0.1:{ws_server.port};
        proxy_http_version 1.1;
        proxy_set_header Host $host;
    }}"""
        )
    )
    # No --nginx-config: the doctor finds the nginx master holding the port and its -c file.
    run = run_cli("all", f"ws://127.0.0.1:{site.port}/ws", "--json", "--no-variants")
    assert run.code == 1, run.stdout
    rc = run.report["root_cause"]
    assert rc["check"] == "nginx", rc
    assert rc["code"] == "nginx.upgrade-header-missing"
    assert site.where("location /ws") in rc["summary"]
    assert "proxy.upgrade-not-forwarded" in rc["summary"] or "handshake.upgrade-dropped" in rc["summary"]
    assert f"replace the location block at {site.where('location /ws')}" in rc["hint"]
    # The corrected block, ready to paste: the missing lines plus the header it already had.
    block = _nginx(run)["evidence"]["fixed_block"]
    assert block.startswith("location /ws {\n")
    for line in (
        f"    proxy_pass http://127.0.0.1:{ws_server.port};",
        "    proxy_http_version 1.1;",
        "    proxy_set_header Upgrade $http_upgrade;",
        "    proxy_set_header Connection $connection_upgrade;",
        "    proxy_set_header Host $host;",
    ):
        assert line in block.splitlines(), block
    assert block in rc["hint"]
    ev = _nginx(run)["evidence"]
    assert ev["source"] == f"nginx master pid {site.pid}"
    assert ev["config"] == str(site.main)
    assert str(site.site) in ev["files"]


def test_connection_empty_mistake(nginx_site: Any, ws_server: Any) -> None:
    site: NginxSite = nginx_site(
        _site(
            f"""    location /ws {{
        proxy_pass http://127.0.0.1:{ws_server.port};
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection "";
    }}"""
        )
    )
    run = run_cli(
        "all", f"ws://127.0.0.1:{site.port}/ws", "--json", "--no-variants", "--nginx-config", str(site.main)
    )
    rc = run.report["root_cause"]
    assert rc["code"] == "nginx.connection-header-empty", rc
    assert site.where('proxy_set_header Connection ""') in rc["summary"]
    assert "keepalive" in rc["summary"]
    block = _nginx(run)["evidence"]["fixed_block"]
    assert 'Connection ""' not in block and "proxy_set_header Connection $connection_upgrade;" in block
    assert _nginx(run)["evidence"]["source"] == "--nginx-config"


def test_regex_location_wins_over_prefix(nginx_site: Any, ws_server: Any) -> None:
    site: NginxSite = nginx_site(
        _site(
            f"""    location /ws {{
        proxy_pass http://127.0.0.1:{ws_server.port};{GOOD}
    }}

    location ~ ^/ws/chat {{
        proxy_pass http://127.0.0.1:{ws_server.port};
    }}"""
        )
    )
    fine = run_cli("all", f"ws://127.0.0.1:{site.port}/ws/other", "--json", "--no-variants")
    assert fine.code == 0, fine.stdout
    assert _nginx(fine)["status"] == "ok", _nginx(fine)
    assert _nginx(fine)["evidence"]["location"]["where"] == site.where("location /ws {")
    run = run_cli("all", f"ws://127.0.0.1:{site.port}/ws/chat", "--json", "--no-variants")
    assert run.code == 1
    rc = run.report["root_cause"]
    assert rc["check"] == "nginx" and rc["code"] == "nginx.http10-upstream", rc
    assert site.where("location ~ ^/ws/chat") in rc["summary"]
    loc = _nginx(run)["evidence"]["location"]
    assert loc["where"] == site.where("location ~ ^/ws/chat")
    assert "regular expression" in loc["why"] and site.where("location /ws {") in loc["why"]
    assert rc["hint"].split("\n")[1] == "location ~ ^/ws/chat {"


def test_proxy_pass_to_a_dead_port(nginx_site: Any, node_server: Any) -> None:
    from tests.peers._common import free_port

    dead = free_port()
    site: NginxSite = nginx_site(
        _site(
            f"""    location /ws {{
        proxy_pass http://127.0.0.1:{dead};{GOOD}
    }}"""
        )
    )
    run = run_cli(
        "all",
        f"ws://127.0.0.1:{site.port}/ws",
        "--json",
        "--no-variants",
        "--process",
        rf"server\.js {node_server.port}$",
    )
    rc = run.report["root_cause"]
    assert rc["code"] == "nginx.proxy-pass-nothing-listens", rc
    assert site.where("proxy_pass") in rc["summary"]
    assert f"listens on {node_server.port}" in rc["summary"]
    assert f"    proxy_pass http://127.0.0.1:{node_server.port};" in rc["hint"].splitlines()
    # The live checks saw the 502 that this line explains.
    assert (
        run.check("proxy")["code"] == "proxy.backend-down"
        or run.check("handshake")["code"] == "handshake.bad-gateway"
    )


def test_trailing_slash_rewrites_the_path(nginx_site: Any, ws_server_factory: Any) -> None:
    backend = ws_server_factory(paths=["/ws/chat"])
    site: NginxSite = nginx_site(
        _site(
            f"""    location /ws/ {{
        proxy_pass http://127.0.0.1:{backend.port}/;{GOOD}
    }}"""
        )
    )
    run = run_cli("all", f"ws://127.0.0.1:{site.port}/ws/chat", "--json", "--no-variants")
    rc = run.report["root_cause"]
    assert rc["code"] == "nginx.path-rewritten", rc
    assert site.where("proxy_pass") in rc["summary"]
    assert "receives /chat instead of /ws/chat" in rc["summary"]
    assert f"    proxy_pass http://127.0.0.1:{backend.port};" in rc["hint"].splitlines()


def test_short_read_timeout_against_serve_pings(nginx_site: Any, serve_process: Any) -> None:
    backend = serve_process("--ping-interval", "5")
    site: NginxSite = nginx_site(
        _site(
            f"""    location /ws {{
        proxy_pass http://127.0.0.1:{backend.port};{GOOD}
        proxy_read_timeout 2s;
    }}"""
        )
    )
    url = f"ws://127.0.0.1:{site.port}/ws"
    run = run_cli("all", url, "--json", "--no-variants")
    r = _nginx(run)
    assert r["status"] == "warn" and r["code"] == "nginx.read-timeout-short", r
    assert site.where("proxy_read_timeout") in r["summary"]
    assert "ping interval (5 s, from http://127.0.0.1:" in r["summary"]
    assert r["evidence"]["ping_interval_s"] == 5
    assert "    proxy_read_timeout 3600s;" in r["hint"].splitlines()
    # An idle hold sees the drop: the config line becomes the root cause.
    held = run_cli("all", url, "--json", "--no-variants", "--hold", "3.5")
    rc = held.report["root_cause"]
    assert rc["check"] == "nginx" and rc["code"] == "nginx.read-timeout-short", held.stdout
    assert "hold." in rc["summary"]


def _tls_site(cert: Any, backend_port: int) -> str:
    return f"""server {{
    listen 127.0.0.1:{{port}} ssl;
    server_name localhost;
    ssl_certificate {cert.certfile};
    ssl_certificate_key {cert.keyfile};

    location /ws {{
        proxy_pass http://127.0.0.1:{backend_port};{GOOD}
    }}
}}
"""


def test_leaf_only_certificate_when_the_chain_check_finds_it(
    nginx_site: Any, ws_server: Any, certs: Any
) -> None:
    site: NginxSite = nginx_site(_tls_site(certs.missing_intermediate, ws_server.port))
    run = run_cli(
        "all", f"wss://localhost:{site.port}/ws", "--json", "--no-variants", "--ca-file", certs.ca_file
    )
    assert run.check("tls")["code"] == "tls.incomplete-chain"
    rc = run.report["root_cause"]
    assert rc["code"] == "nginx.leaf-only-certificate", rc
    assert site.where("ssl_certificate ") in rc["summary"]
    assert "tls.incomplete-chain" in rc["summary"] and "fullchain.pem" in rc["hint"]
    # With the full chain in the file, the same line is fine.
    good: NginxSite = nginx_site(_tls_site(certs.full_chain, ws_server.port))
    fine = run_cli(
        "all", f"wss://localhost:{good.port}/ws", "--json", "--no-variants", "--ca-file", certs.ca_file
    )
    assert _nginx(fine)["status"] == "ok", _nginx(fine)
    assert fine.code == 0, fine.stdout


def test_without_nginx_on_the_port_it_is_skipped_with_the_reason(ws_server: Any) -> None:
    run = run_cli("all", ws_server.url, "--json", "--only", "nginx")
    r = _nginx(run)
    assert r["status"] == "skip"
    assert r["summary"].startswith("not applicable: ")
    assert (
        "not by nginx" in r["summary"] or "no nginx runs" in r["summary"] or "not installed" in r["summary"]
    )


def test_bad_nginx_config_option_is_a_usage_error(tmp_path: Any) -> None:
    run = run_cli("all", "--nginx-config", str(tmp_path / "missing.conf"))
    assert run.code == 2
    assert run.stderr.count("\n") == 1 and "--nginx-config" in run.stderr and "missing.conf" in run.stderr


def test_list_checks_shows_the_local_checks() -> None:
    run = run_cli("all", "--list-checks")
    assert run.code == 0
    for check_id in ("nginx", "supervisor", "firewall"):
        assert check_id in run.stdout
    assert run.stdout.index("port") < run.stdout.index("nginx") < run.stdout.index("tcp")


def test_master_title_parsing() -> None:
    from lokin_doctor.proxies.nginx.check import master_config

    title = ["nginx: master process /usr/sbin/nginx -p /srv/x -c conf/nginx.conf -g daemon off;"]
    assert master_config(title, "/") == ("/usr/sbin/nginx", "/srv/x", "/srv/x/conf/nginx.conf")
    assert master_config(["nginx: master process /usr/sbin/nginx"], "/") == ("/usr/sbin/nginx", None, None)
    assert master_config(["nginx: worker process"], "/") == (None, None, None)


def test_proxy_pass_to_another_program(nginx_site: Any, node_server: Any, static_server: Any) -> None:
    # proxy_pass names the web site's port (python -m http.server), the WebSocket server is elsewhere.
    site: NginxSite = nginx_site(
        _site(
            f"""    location /ws {{
        proxy_pass http://127.0.0.1:{static_server.port};{GOOD}
    }}"""
        )
    )
    run = run_cli(
        "all",
        f"ws://127.0.0.1:{site.port}/ws",
        "--json",
        "--no-variants",
        "--process",
        rf"server\.js {node_server.port}$",
    )
    rc = run.report["root_cause"]
    assert rc["code"] == "nginx.proxy-pass-wrong-port", rc
    assert site.where("proxy_pass") in rc["summary"]
    assert f"listens on {node_server.port}" in rc["summary"] and "another program" in rc["summary"]
    assert run.check("handshake")["code"] in rc["summary"]  # the live symptom it explains
    assert f"    proxy_pass http://127.0.0.1:{node_server.port};" in rc["hint"].splitlines()


def test_file_changed_but_not_reloaded(nginx_site: Any, ws_server: Any) -> None:
    # nginx runs the good block; the file on disk lost its upgrade lines since: the live 101 wins, with a warning.
    good = _site(f"""    location /ws {{
        proxy_pass http://127.0.0.1:{ws_server.port};{GOOD}
    }}""")
    site: NginxSite = nginx_site(good)
    site.site.write_text(site.text.replace("proxy_set_header Upgrade $http_upgrade;", ""))
    run = run_cli("all", f"ws://127.0.0.1:{site.port}/ws", "--json", "--no-variants")
    assert run.code == 0, run.stdout
    r = _nginx(run)
    assert r["status"] == "warn" and r["code"] == "nginx.upgrade-header-missing", r
    assert "may not have reloaded this file" in r["summary"]
    assert run.report["root_cause"] is None


def test_probe_wss_reads_the_given_config(nginx_site: Any, ws_server: Any) -> None:
    site: NginxSite = nginx_site(
        _site(f"""    location /ws {{
        proxy_pass http://127.0.0.1:{ws_server.port};
    }}""")
    )
    url = f"ws://127.0.0.1:{site.port}/ws"
    run = run_cli("probe-wss", url, "--json", "--no-variants", "--nginx-config", str(site.main))
    assert run.report["root_cause"]["code"] == "nginx.http10-upstream", run.stdout
    plain = run_cli("probe-wss", url, "--json", "--no-variants")
    assert all(c["id"] != "nginx" for c in plain.report["checks"])


def test_given_config_without_a_server_on_the_port(nginx_site: Any, ws_server: Any) -> None:
    site: NginxSite = nginx_site(_site("    location / { return 204; }"))
    run = run_cli("all", ws_server.url, "--json", "--only", "nginx", "--nginx-config", str(site.main))
    r = _nginx(run)
    assert r["status"] == "warn" and r["code"] == "nginx.no-server", r
    assert f"listens on port {ws_server.port}" in r["summary"]


def test_location_that_does_not_proxy(nginx_site: Any, ws_server: Any, tmp_path: Any) -> None:
    # The site's catch-all serves files; nothing routes /ws to the WebSocket server.
    site: NginxSite = nginx_site(_site(f"    location / {{\n        root {tmp_path};\n    }}"))
    run = run_cli("all", f"ws://127.0.0.1:{site.port}/ws", "--json", "--no-variants")
    rc = run.report["root_cause"]
    assert rc["code"] == "nginx.not-proxied", rc
    assert site.where("location / {") in rc["summary"]
    assert f"add this location to the server block at {site.where('server {')}" in rc["hint"]
    block = _nginx(run)["evidence"]["fixed_block"].splitlines()
    assert block[0] == "location /ws {" and "    proxy_set_header Upgrade $http_upgrade;" in block
    assert "    proxy_set_header Connection $connection_upgrade;" in block


def test_main_file_named_by_nginx_dump() -> None:
    # A master started without -c uses nginx's built-in path; `nginx -T` names it (Debian: /etc/nginx/nginx.conf).
    from lokin_doctor.proxies.nginx.check import _conf_from_dump
    from tests.peers._common import require_binary

    binary = require_binary("nginx", "apt-get install -y nginx")
    assert _conf_from_dump(binary, None, 10.0) == "/etc/nginx/nginx.conf"


def test_only_another_path_is_proxied(nginx_site: Any, ws_server: Any) -> None:
    # issue 18: nginx proxies /ws/ only, the client asks /socket. The block does proxy: another path.
    site: NginxSite = nginx_site(
        _site(f"""    location /ws/ {{
        proxy_pass http://127.0.0.1:{ws_server.port};{GOOD}
    }}""")
    )
    run = run_cli("all", f"ws://127.0.0.1:{site.port}/socket", "--json", "--lang", "en", "--no-variants")
    rc = run.report["root_cause"]
    assert rc["code"] == "nginx.not-proxied", rc
    assert "the server block has no proxy_pass" not in rc["summary"]
    assert "no location of this server matches /socket" in rc["summary"]
    assert (
        f"this server proxies only location /ws/ (proxy_pass at {site.where('proxy_pass')})" in rc["summary"]
    )
    assert f"ws://localhost:{site.port}/ws/ would reach the backend" in rc["summary"]


def _kept_busy_site(nginx_site: Any, backend_port: int) -> NginxSite:
    site: NginxSite = nginx_site(
        _site(
            f"""    location /ws {{
        proxy_pass http://127.0.0.1:{backend_port};{GOOD}
        proxy_read_timeout 3s;
    }}"""
        )
    )
    return site


def test_short_read_timeout_unknown_pings_is_a_note(nginx_site: Any, ws_server_factory: Any) -> None:
    # A Python websockets server (no /health to read its ping interval): unknown is not a warning.
    backend = ws_server_factory(ping_interval=1)
    site = _kept_busy_site(nginx_site, backend.port)
    run = run_cli("all", f"ws://127.0.0.1:{site.port}/ws", "--json", "--lang", "en", "--only", "nginx")
    r = _nginx(run)
    assert r["status"] == "ok", r
    finding = next(f for f in r["evidence"]["findings"] if f["code"] == "nginx.read-timeout-short")
    assert finding["severity"] == "note" and "was not observed: --hold 8 would tell" in finding["message"]


@pytest.mark.parametrize("watch", [("--linger", "2.5"), ("--hold", "3.5")], ids=["linger", "hold"])
def test_short_read_timeout_with_pings_seen_is_no_warning(
    nginx_site: Any, ws_server_factory: Any, watch: tuple[str, str]
) -> None:
    # issue 18: the backend pings every second, more often than nginx's 3 s: the connection stays busy.
    backend = ws_server_factory(ping_interval=1)
    site = _kept_busy_site(nginx_site, backend.port)
    only = "nginx,session" if watch[0] == "--linger" else "nginx,hold"
    run = run_cli("all", f"ws://127.0.0.1:{site.port}/ws", "--json", "--lang", "en", "--only", only, *watch)
    assert run.code == 0, run.stdout
    r = _nginx(run)
    assert r["status"] == "ok", r
    finding = next(f for f in r["evidence"]["findings"] if f["code"] == "nginx.read-timeout-short")
    assert finding["severity"] == "note", finding
    assert ("stayed open" if watch[0] == "--hold" else "seen pinging every ~1 s") in finding["live"]
