"""``proxy-config`` for Caddy: a real Caddy (Debian's 2.6) started from a Caddyfile in a temp dir, its
admin API on a port of its own, in front of real backends. The doctor reads the configuration Caddy runs
(admin API), finds the Caddyfile line that wrote each part, and names it with the corrected text.
"""

from __future__ import annotations

from typing import Any

from tests.helpers import run_cli
from tests.local.findings import finding, finding_codes, proxy_config

IN_PROCESS = ("--process", "^lokin-test-in-process-backend$")


def _site(body: str) -> str:
    return "http://127.0.0.1:{port} {\n" + body + "\n}\n"


def test_healthy_caddy_in_front(caddy_site: Any, ws_server: Any) -> None:
    site = caddy_site(_site(f"\treverse_proxy /ws* 127.0.0.1:{ws_server.port}"))
    run = run_cli("all", site.url, "--json", "--no-variants", *IN_PROCESS)
    assert run.code == 0, run.stdout
    assert all(c["status"] in ("ok", "skip") for c in run.report["checks"]), run.stdout
    assert run.check("port")["evidence"]["proxy_in_front"] == "caddy"
    r = proxy_config(run)
    assert r["status"] == "ok", r
    assert r["evidence"]["source"] == f"caddy pid {site.pid} (--config)"
    assert r["evidence"]["admin"] == f"http://127.0.0.1:{site.extra['admin']}/config/"
    assert r["evidence"]["upstreams"] == [f"http://127.0.0.1:{ws_server.port}"]
    assert r["evidence"]["where"] == site.where("reverse_proxy")
    # Debian's 2.6: a reload closes every WebSocket and nothing can delay it; said as a note.
    f = finding(r, "caddy.reload-cuts")
    assert f["severity"] == "note" and "has no stream_close_delay (Caddy 2.7 added it)" in f["message"], f
    assert r["evidence"]["version"].startswith("2.")


def test_handle_path_strips_the_prefix_the_backend_needs(caddy_site: Any, ws_server_factory: Any) -> None:
    backend = ws_server_factory(paths=["/ws/chat"])
    block = f"\thandle_path /ws* {{\n\t\treverse_proxy 127.0.0.1:{backend.port}\n\t}}"
    site = caddy_site(_site(block))
    run = run_cli("all", f"ws://127.0.0.1:{site.port}/ws/chat", "--json", "--no-variants")
    rc = run.report["root_cause"]
    assert rc["check"] == "proxy-config" and rc["code"] == "caddy.strip-prefix", run.stdout
    assert rc["summary"].startswith(site.where("handle_path") + ": handle_path /ws* { strips /ws")
    assert "the backend receives /chat instead of /ws/chat" in rc["summary"]
    assert "404" in rc["summary"]
    f = finding(proxy_config(run), "caddy.strip-prefix")
    assert f["current"] == "handle_path /ws* {" and f["corrected"] == "handle /ws* {"
    fixed = caddy_site(_site(block.replace("handle_path", "handle")))
    good = run_cli("all", f"ws://127.0.0.1:{fixed.port}/ws/chat", "--json", "--no-variants", *IN_PROCESS)
    assert good.code == 0, good.stdout
    assert proxy_config(good)["evidence"]["sent_path"] == "/ws/chat"


def test_reverse_proxy_to_a_dead_port(caddy_site: Any, serve_process: Any) -> None:
    from tests.peers._common import free_port

    backend = serve_process()
    dead = free_port()
    site = caddy_site(_site(f"\treverse_proxy 127.0.0.1:{dead}"))
    process = rf"serve --host 127\.0\.0\.1 --port {backend.port}$"
    run = run_cli("all", site.url, "--json", "--no-variants", "--process", process)
    rc = run.report["root_cause"]
    assert rc["code"] == "caddy.upstream-down", run.stdout
    assert rc["summary"].startswith(
        site.where("reverse_proxy") + f": reverse_proxy 127.0.0.1:{dead}: nothing listens"
    )
    assert "handshake.bad-gateway" in rc["summary"]
    f = finding(proxy_config(run), "caddy.upstream-down")
    assert f["corrected"] == f"reverse_proxy 127.0.0.1:{backend.port}"
    fixed = caddy_site(_site("\t" + f["corrected"]))
    good = run_cli(
        "all", fixed.url, "--json", "--no-variants", "--process", process, "--only", "proxy-config,handshake"
    )
    assert good.code == 0 and "caddy.upstream-down" not in finding_codes(proxy_config(good)), good.stdout


def test_path_not_proxied(caddy_site: Any, ws_server: Any) -> None:
    site = caddy_site(_site(f'\treverse_proxy /api* 127.0.0.1:{ws_server.port}\n\trespond "hello"'))
    run = run_cli("all", site.url, "--json", "--no-variants", *IN_PROCESS)
    rc = run.report["root_cause"]
    assert rc["code"] == "caddy.not-proxied", run.stdout
    assert rc["summary"].startswith(
        site.where("http://127.0.0.1") + ": no reverse_proxy serves /ws (the route ends in static_response"
    )
    f = finding(proxy_config(run), "caddy.not-proxied")
    head = f"http://127.0.0.1:{site.port} {{"
    assert f["corrected"] == f"{head}\n\thandle /ws* {{\n\t\treverse_proxy 127.0.0.1:8080\n\t}}"
    body = f'\thandle /ws* {{\n\t\treverse_proxy 127.0.0.1:{ws_server.port}\n\t}}\n\trespond "hello"'
    fixed = caddy_site(_site(body))
    assert run_cli("all", fixed.url, "--json", "--no-variants", *IN_PROCESS).code == 0


def test_admin_off_reads_the_caddyfile(caddy_site: Any, ws_server: Any) -> None:
    text = "{\n\tadmin off\n\tauto_https off\n}\n" + _site(f"\treverse_proxy 127.0.0.1:{ws_server.port}")
    site = caddy_site(text, with_global=False)
    run = run_cli("all", site.url, "--json", "--no-variants", *IN_PROCESS)
    assert run.code == 0, run.stdout
    r = proxy_config(run)
    assert r["evidence"]["admin"] == "off"
    assert r["evidence"]["route"].startswith(
        f"site http://127.0.0.1:{site.port} ({site.where('http://127.0.0.1')})"
    )
