"""``--proxy-config FILE``: validated before any traffic (exit 2, one line naming the option), read as the
proxy its syntax says, for ``all`` and ``probe-wss``; a file with nothing on the target's port warns."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.helpers import run_cli
from tests.local.findings import proxy_config
from tests.peers.haproxy import DEFAULTS


@pytest.mark.parametrize(
    ("name", "text", "said"),
    [
        ("missing.cfg", None, "does not exist or is not a file"),
        (
            "nginx.conf",
            "events {}\nhttp {\n    server {\n        listen 80;\n    }\n}\n",
            "give it with --nginx-config",
        ),
        ("notes.txt", "hello\nworld\n", "reads as no HAProxy, Apache httpd or Caddy configuration"),
    ],
)
def test_bad_proxy_config_is_a_usage_error(tmp_path: Path, name: str, text: str | None, said: str) -> None:
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    run = run_cli("all", "ws://127.0.0.1:1/", "--proxy-config", str(path))
    assert run.code == 2, run.stdout + run.stderr
    assert run.stderr.count("\n") == 1 and "--proxy-config" in run.stderr and said in run.stderr, run.stderr
    assert run.stdout == ""


def test_given_haproxy_config(haproxy_site: Any, ws_server: Any) -> None:
    body = f"""{DEFAULTS}
frontend fe
    bind 127.0.0.1:{{port}}
    http-request deny
    default_backend be

backend be
    server s1 127.0.0.1:{ws_server.port}
"""
    site = haproxy_site(body)
    run = run_cli("all", site.url, "--json", "--no-variants", "--proxy-config", str(site.main))
    r = proxy_config(run)
    assert r["evidence"]["source"] == "--proxy-config" and r["code"] == "haproxy.denied", r
    assert r["summary"].startswith(site.where("http-request deny"))
    # probe-wss adds the check only with the option.
    probe = run_cli("probe-wss", site.url, "--json", "--no-variants", "--proxy-config", str(site.main))
    assert proxy_config(probe)["code"] == "haproxy.denied"
    plain = run_cli("probe-wss", site.url, "--json", "--no-variants")
    assert all(c["id"] != "proxy-config" for c in plain.report["checks"])


def test_given_config_without_the_port(tmp_path: Path, ws_server: Any) -> None:
    files = {
        "haproxy.cfg": (
            DEFAULTS
            + "frontend fe\n    bind 127.0.0.1:1\n    default_backend be\nbackend be\n    server s 127.0.0.1:2\n",
            "haproxy.no-frontend",
        ),
        "apache.conf": (
            "Listen 127.0.0.1:1\n<VirtualHost *:1>\n    ProxyPass / http://127.0.0.1:2/\n</VirtualHost>\n",
            "apache.no-virtualhost",
        ),
        "Caddyfile": ("http://127.0.0.1:1 {\n\treverse_proxy 127.0.0.1:2\n}\n", "caddy.no-site"),
    }
    for name, (text, code) in files.items():
        path = tmp_path / name
        path.write_text(text)
        run = run_cli("all", ws_server.url, "--json", "--only", "proxy-config", "--proxy-config", str(path))
        r = proxy_config(run)
        assert r["status"] == "warn" and r["code"] == code, r
        assert f"listens on port {ws_server.port}" in r["summary"]


def test_given_caddyfile_is_adapted(tmp_path: Path, ws_server: Any) -> None:
    from tests.peers._common import require_binary

    require_binary("caddy", "apt-get install -y caddy")
    path = tmp_path / "Caddyfile"
    path.write_text(
        f"http://127.0.0.1:{ws_server.port} {{\n\thandle_path /ws* {{\n\t\treverse_proxy 127.0.0.1:9\n\t}}\n}}\n"
    )
    run = run_cli(
        "all", ws_server.url + "ws/x", "--json", "--only", "proxy-config", "--proxy-config", str(path)
    )
    r = proxy_config(run)
    assert r["evidence"]["source"] == "--proxy-config", r
    f = next(f for f in r["evidence"]["findings"] if f["code"] == "caddy.strip-prefix")
    assert f["where"] == f"{path}:2" and f["corrected"] == "handle /ws* {"
