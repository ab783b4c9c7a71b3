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
