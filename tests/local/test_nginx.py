"""``nginx``: a real nginx with its config in files (an include), in front of real backends.

Each broken configuration must give the file, the line and the corrected block in the root cause.
"""

from __future__ import annotations

from typing import Any

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
