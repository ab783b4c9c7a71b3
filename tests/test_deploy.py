"""The shipped nginx example works: its location block, in a real nginx, passes `lokin-doctor all`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tests.helpers import run_cli

EXAMPLE = Path(__file__).resolve().parent.parent / "deploy" / "nginx-lokin.conf"


def _location_block(backend_port: int) -> str:
    text = EXAMPLE.read_text()
    block = text.split("# BEGIN lokin location", 1)[1].split("# END lokin location", 1)[0]
    block = block.replace("location /ws {", "location /example-ws {")
    return re.sub(
        r"proxy_pass http://127\.0\.0\.1:8080;", f"proxy_pass http://127.0.0.1:{backend_port}/;", block
    )


def test_example_location_forwards_the_upgrade(nginx_proxy: Any, ws_server: Any) -> None:
    # The fixture's own /ws location is broken on purpose (no-upgrade); the example's must work.
    proxy = nginx_proxy("no-upgrade", ws_server.port, extra_server_conf=_location_block(ws_server.port))
    broken = run_cli("all", proxy.url, "--json", "--no-variants")
    assert broken.code == 1
    example = run_cli(
        "all", f"ws://127.0.0.1:{proxy.port}/example-ws", "--json", "--send", "ping?", "--expect", r"^ping\?$"
    )
    assert example.code == 0, example.stdout
    assert example.check("session")["evidence"]["client_id"].startswith("user_")
