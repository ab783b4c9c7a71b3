"""``--browser`` in real headless Chromium: each page's cause code, and the URL the page really opened."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from tests.browser.conftest import BROWSER_ARGS, connect_script
from tests.helpers import CliRun, run_cli
from tests.peers._common import free_port


def doctor(page_url: str, *extra: str, timeout: float = 10.0, env: dict[str, str] | None = None) -> CliRun:
    return run_cli(
        "all",
        "--page-url",
        page_url,
        "--browser",
        *BROWSER_ARGS,
        "--json",
        "--timeout",
        str(timeout),
        *extra,
        env=env,
    )


def test_healthy_page(page_server: Any) -> None:
    srv = page_server()
    ws = srv.ws_url()
    page = srv.page("/", connect_script(f"'{ws}'"))
    run = doctor(page)
    b = run.check("browser")
    assert b["status"] == "ok", run.stdout
    assert run.report["target"] == ws
    assert b["evidence"]["opened"] == [ws]
    sock = b["evidence"]["sockets"][0]
    assert sock["status"] == 101 and sock["frames_received"] >= 1
    assert "welcome" in sock["first_received"][0]
    assert run.code == 0 and run.root_code is None, run.stdout


def test_port_where_nothing_listens(page_server: Any) -> None:
    srv = page_server()
    dead = f"ws://127.0.0.1:{free_port()}/ws"
    page = srv.page("/", connect_script(f"'{dead}'"))
    run = doctor(page, "--no-variants")  # ports 80/8080 of this shared machine are not the test's
    # The page's own origin answers on /ws: the page has the wrong port.
    assert run.report["target"] == dead
    assert run.root_code == "page.wrong-port", run.stdout
    rc = run.report["root_cause"]
    assert f"opens {dead} (port {dead.rsplit(':', 1)[1].split('/')[0]}, path /ws)" in rc["summary"]
    assert "ERR_CONNECTION_REFUSED" in rc["summary"] and srv.ws_url() in rc["summary"]
    b = run.check("browser")
    assert b["evidence"]["sockets"][0]["state"] == "failed"
    assert "error: Impossible de se connecter au serveur" in b["evidence"]["console"]


def test_port_where_nothing_listens_compared_with_the_given_url(page_server: Any) -> None:
    srv = page_server(ws_paths=())  # the page's host speaks no WebSocket at all
    server = page_server()
    dead = f"ws://127.0.0.1:{free_port()}/ws"
    page = srv.page("/", connect_script(f"'{dead}'"))
    run = doctor(page, "--no-variants")
    # Nothing to compare with: the chain on the URL the page opened names the cause (on this shared
    # machine tcp.refused, or process.* when other servers run), and the browser saw it fail too.
    assert run.report["target"] == dead
    assert run.root_code in ("tcp.refused", "process.not-running", "process.wrong-port"), run.stdout
    assert run.report["root_cause"]["check"] != "browser"
    b = run.check("browser")
    assert (b["status"], b["code"]) == ("warn", "page.websocket-failed")
    assert dead in b["summary"] and "ERR_CONNECTION_REFUSED" in b["summary"]
    assert str(run.root_code) in b["summary"]
    assert b["summary"].endswith("(the page says: Impossible de se connecter au serveur)")
    # With the server's real URL given too, the two views meet: the page has the wrong port.
    run = doctor(page, server.ws_url(), "--no-variants")
    assert run.root_code == "page.wrong-port", run.stdout
    assert run.report["target"] == server.ws_url()  # the chain runs on the URL given
    assert run.check("handshake")["status"] == "ok"
    rc = run.report["root_cause"]
    assert dead in rc["summary"] and f"{server.ws_url()} answers" in rc["summary"]
    assert run.check("browser")["evidence"]["works"] == server.ws_url()


def test_location_host_on_an_https_page(page_server: Any, certs: Any, dns_server: Any) -> None:
    # The write-up's bug: wss:// + location.host opens the page's own origin, path /, where only
    # /ws speaks WebSocket.
    srv = page_server(cert=certs.good)
    page = srv.page(
        "/", connect_script("(location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host")
    )
    page = page.replace("127.0.0.1", "lokin.test")
    opened = srv.ws_url("/", host="lokin.test")
    # A short TMPDIR of the test's own (Chromium's profile sockets need a short path).
    with tempfile.TemporaryDirectory(prefix="ld-") as tmp:
        run = doctor(page, "--ca-file", certs.ca_file, "--dns-server", dns_server.server, env={"TMPDIR": tmp})
        assert list(Path(tmp).glob("lokin-doctor-browser-*")) == []  # the temporary NSS database is gone
    assert run.report["target"] == opened, run.check("browser")["summary"]
    assert run.root_code == "page.wrong-path", run.stdout
    rc = run.report["root_cause"]
    assert f"opens {opened} (port {srv.port}, path /) and gets HTTP 404 there" in rc["summary"]
    assert "answers on /ws" in rc["summary"]
    assert srv.ws_url("/ws", host="lokin.test") in rc["hint"]
    assert run.check("tls")["status"] == "ok"  # the CA is trusted by the doctor and the browser alike
    assert "/" in srv.upgrades  # Chromium really tried it


def test_dev_url_left_in_the_page(page_server: Any, dns_server: Any) -> None:
    srv = page_server()
    dev = f"ws://localhost:{free_port()}/"
    page = srv.page("/", connect_script(f"'{dev}'")).replace("127.0.0.1", "lokin.test")
    run = doctor(page, "--dns-server", dns_server.server)
    assert run.root_code == "page.dev-url-in-production", run.stdout
    assert run.report["target"] == dev
    rc = run.report["root_cause"]
    assert f"the page at {page} opens {dev}" in rc["summary"]
    assert "every visitor's browser tries its own machine" in rc["summary"]
    assert "location.host" in rc["hint"]


def test_mixed_content(page_server: Any, certs: Any, dns_server: Any) -> None:
    srv = page_server(cert=certs.good)
    plain = f"ws://lokin.test:{srv.port}/ws"
    page = srv.page("/", connect_script(f"'{plain}'")).replace("127.0.0.1", "lokin.test")
    run = doctor(page, "--ca-file", certs.ca_file, "--dns-server", dns_server.server)
    assert run.root_code == "page.mixed-content-blocked", run.stdout
    b = run.check("browser")
    assert plain in b["summary"] and b["evidence"]["opened"] == [plain]
    assert "Mixed Content" in str(b["evidence"]["browser_message"])
    sock = b["evidence"]["sockets"][0]
    assert sock["status"] is None and sock["state"] == "blocked"  # refused before any packet
    assert run.report["target"] == plain


def test_csp_blocks_the_socket(page_server: Any) -> None:
    srv = page_server()
    other = page_server()
    ws = other.ws_url()
    chatty = "for (var i = 0; i < 40; i++) { console.log('booting step ' + i); }"  # past the console cap
    page = srv.page(
        "/",
        chatty + connect_script(f"'{ws}'"),
        {"Content-Security-Policy": "connect-src 'self' https://api.lokin.test"},
    )
    run = doctor(page)
    assert run.root_code == "page.csp-blocked", run.stdout
    assert run.report["target"] == ws
    assert run.check("page")["code"] == "page.csp-blocks"  # the outside view (the headers) agrees
    b = run.check("browser")
    assert ws in b["summary"] and "connect-src 'self' https://api.lokin.test" in b["summary"]
    assert f"connect-src 'self' https://api.lokin.test ws://127.0.0.1:{other.port}" in b["hint"]
    assert b["evidence"]["sockets"][0]["status"] is None
    assert len([c for c in b["evidence"]["console"] if "booting step" in c]) == 30
    assert run.check("handshake")["status"] == "ok"  # every CLI client connects: only the browser refuses


def test_page_that_never_opens_one(page_server: Any) -> None:
    srv = page_server()
    page = srv.page("/", "document.getElementById('status').textContent = 'loading'; lokin.start();")
    run = doctor(page, timeout=5)
    assert run.root_code == "page.no-websocket", run.stdout
    b = run.check("browser")
    assert b["evidence"]["opened"] == []
    assert "never opens a WebSocket" in b["summary"] and "lokin is not defined" in b["summary"]
    assert run.check("session")["status"] == "ok"  # the server is fine: the derived /ws answers


def test_certificate_the_browser_rejects(page_server: Any, certs: Any, dns_server: Any) -> None:
    srv = page_server()
    expired = page_server(cert=certs.expired)
    wss = expired.ws_url(host="lokin.test")
    page = srv.page("/", connect_script(f"'{wss}'"))
    run = doctor(page, "--ca-file", certs.ca_file, "--dns-server", dns_server.server)
    assert run.root_code == "page.certificate-rejected", run.stdout
    rc = run.report["root_cause"]
    assert wss in rc["summary"] and "ERR_CERT_DATE_INVALID" in rc["summary"]
    assert run.check("tls")["status"] == "fail"  # the doctor's own view agrees
    assert run.report["target"] == wss


def test_https_page_whose_certificate_the_browser_rejects(
    page_server: Any, certs: Any, dns_server: Any
) -> None:
    srv = page_server(cert=certs.good)
    page = srv.page("/", connect_script("'wss://' + location.host + '/ws'")).replace(
        "127.0.0.1", "lokin.test"
    )
    # Without --ca-file the browser has no reason to trust the private CA: the page never loads.
    run = doctor(page, "--dns-server", dns_server.server)
    assert run.root_code == "page.certificate-rejected", run.stdout
    rc = run.report["root_cause"]
    assert page in rc["summary"] and "ERR_CERT_AUTHORITY_INVALID" in rc["summary"]
    assert "--ca-file" in rc["hint"]
    assert run.check("browser")["evidence"]["opened"] == []


def test_probe_wss_compares_the_given_url_with_the_page(page_server: Any) -> None:
    srv = page_server()
    other = page_server()
    page = srv.page("/", connect_script(f"'{srv.ws_url()}'"))
    run = run_cli(
        "probe-wss",
        other.ws_url(),
        "--page-url",
        page,
        "--browser",
        *BROWSER_ARGS,
        "--json",
        "--timeout",
        "10",
    )
    b = run.check("browser")
    assert (b["status"], b["code"]) == ("warn", "page.url-mismatch"), run.stdout
    assert f"opens {srv.ws_url()}, not the URL given ({other.ws_url()})" in b["summary"]
    assert run.code == 0 and run.root_code is None


def test_page_that_does_not_load(page_server: Any) -> None:
    srv = page_server()
    missing = srv.url("/nothing-here")
    run = doctor(missing, timeout=6)
    assert run.root_code == "page.load-failed", run.stdout
    assert f"the page {missing} answers HTTP 404 in Chromium" in run.report["root_cause"]["summary"]


def test_every_url_the_page_opens_is_diagnosed(page_server: Any) -> None:
    srv = page_server()
    first, second = srv.ws_url(), srv.ws_url("/events")
    page = srv.page("/", connect_script(f"'{first}'") + f"var extra = new WebSocket('{second}');")
    run = doctor(page)
    assert run.report["target"] == first and run.check("session")["status"] == "ok"
    b = run.check("browser")
    assert (b["status"], b["code"]) == ("warn", "page.other-websocket-failed"), run.stdout
    assert b["evidence"]["opened"] == [first, second]
    # The second URL gets the core of the chain too: its handshake names the cause.
    assert b["evidence"]["other_urls"][second]["code"] == "handshake.not-found"
    assert f"and {second}, which fails: HTTP 404" in b["summary"]
    states = {s["url"]: (s["state"], s["status"]) for s in b["evidence"]["sockets"]}
    assert states[second][0] == "failed" and states[first] == ("open", 101)
    assert run.code == 0  # a warning: the page's main connection works


def test_page_opening_sockets_in_bulk_is_recorded_within_bounds(page_server: Any) -> None:
    srv = page_server()
    dead = f"ws://127.0.0.1:{free_port()}/ws"
    page = srv.page("/", "for (var i = 0; i < 60; i++) { new WebSocket('" + dead + "'); }")
    run = doctor(page, "--no-variants", timeout=6)
    b = run.check("browser")
    assert b["code"] == "page.wrong-port", run.stdout  # the page's own origin answers on /ws
    sockets = b["evidence"]["sockets"]
    assert len(sockets) == 20 and b["evidence"]["sockets_not_recorded"] == 40
    assert {s["url"] for s in sockets} == {dead}


def test_page_whose_load_hangs(page_server: Any, bad_server: Any) -> None:
    srv = page_server()
    silent = bad_server("silent")
    hang = f"<script src='http://127.0.0.1:{silent.port}/app.js'></script>"
    # The socket opens before the hanging script: it is seen and diagnosed though "load" never comes.
    page = srv.page("/", connect_script(f"'{srv.ws_url()}'") + "</script>" + hang + "<script>")
    run = doctor(page, timeout=5)
    b = run.check("browser")
    assert b["status"] == "ok" and b["evidence"]["loaded"] is False, run.stdout
    assert b["evidence"]["opened"] == [srv.ws_url()]
    # Without a socket the verdict is the hanging load.
    page = srv.page("/still", "document.title = 'x';</script>" + hang + "<script>")
    run = doctor(page, timeout=5)
    assert run.root_code == "page.load-timeout", run.stdout
    assert "did not finish loading" in run.report["root_cause"]["summary"]


def test_server_closes_what_the_page_sends(page_server: Any) -> None:
    srv = page_server()
    ws = srv.ws_url()
    page = srv.page(
        "/", f"var ws = new WebSocket('{ws}'); ws.onopen = function () {{ ws.send('forbidden'); }};"
    )
    run = doctor(page)
    assert run.root_code == "page.websocket-closed", run.stdout
    rc = run.report["root_cause"]
    assert f"opens {ws}; it connects, then is closed with 1008 'message not allowed'" in rc["summary"]
    assert "(first: forbidden)" in rc["summary"]
    sock = run.check("browser")["evidence"]["sockets"][0]
    assert (sock["close_code"], sock["frames_sent"], sock["status"]) == (1008, 1, 101)
    assert run.check("session")["status"] == "ok"  # the doctor's own session is fine


def test_proxy_dropping_the_upgrade_is_the_chains_finding(nginx_proxy: Any, ws_server: Any) -> None:
    # Real nginx without the Upgrade headers: the browser's socket fails, the backend answers directly.
    # Pointing the page past its proxy is not the fix: the proxy's configuration is the root cause (this
    # nginx runs on this machine, so the nginx check reads its file and names the line).
    proxy = nginx_proxy("no-upgrade", ws_server.port)
    page = proxy.extra["page_url"]
    run = doctor(page)
    assert run.report["target"] == proxy.url  # what the page opened: ws://127.0.0.1:PORT/ws
    root = run.report["root_cause"]
    assert (root["check"], root["code"]) == ("nginx", "nginx.upgrade-header-missing"), run.stdout
    assert run.check("proxy")["status"] == "fail"
    b = run.check("browser")
    assert (b["status"], b["code"]) == ("warn", "page.websocket-failed")
    assert f"opens {proxy.url} and gets HTTP" in b["summary"] and root["code"] in b["summary"], b["summary"]
