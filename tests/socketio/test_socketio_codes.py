"""The socketio causes, each produced for real: a socket.io 4 server (tests/peers/socketio/server.js) taking
long-polling only, its allowRequest refusing the Origin, a namespace middleware that never answers the
CONNECT; a real nginx in front that drops the upgrade, or balances two socket.io servers without sticky
sessions; a plain WebSocket server (websockets) where the Engine.IO URL points."""

from __future__ import annotations

from tests.helpers import run_cli


def _run(url: str, *extra: str):
    return run_cli("all", url, "--json", "--no-variants", "--timeout", "5", "--lang", "en", *extra)


def test_polling_only_server_refuses_the_websocket_transport(socketio_server) -> None:
    peer = socketio_server(args=("--transports", "polling"))
    run = _run(peer.extra["engine_url"])
    hs = run.check("handshake")
    # engine.io registers no upgrade handler: Node hands the upgrade to the request handler, which answers
    # {"code":0,"message":"Transport unknown"} with 400
    assert hs["code"] == "socketio.websocket-disabled"
    assert hs["evidence"]["engine_io_error"] == {"code": 0, "message": "Transport unknown"}
    assert "'Transport unknown' to transport=websocket" in hs["summary"]
    assert "long-polling only" in hs["summary"]
    assert run.root_code == "socketio.websocket-disabled"
    assert "transports option" in run.report["root_cause"]["hint"]
    # the polling transport of the same server works: the check's GET got its open packet
    sio = run.check("socketio")
    assert sio["evidence"]["polling"]["/socket.io/?EIO=4&transport=polling"] == "open packet, Engine.IO 4"


def test_allow_request_refusing_the_origin(socketio_server) -> None:
    peer = socketio_server(args=("--allow-origin", "https://chat.example"))
    run = _run(peer.extra["engine_url"])
    hs = run.check("handshake")
    assert hs["code"] == "socketio.forbidden"
    assert "allowRequest refused the handshake ('Forbidden')" in hs["summary"]
    assert hs["evidence"]["engine_io_error"]["code"] == 4
    assert run.root_code == "socketio.forbidden"
    assert "--origin" in run.report["root_cause"]["hint"]
    assert run.code == 1
    # the same server with the Origin its hook expects: healthy, so the reading named the right thing
    good = _run(peer.extra["engine_url"], "--origin", "https://chat.example")
    assert good.check("socketio")["status"] == "ok", good.check("socketio")
    assert good.root_code is None


def test_allow_request_refusing_in_its_own_words(socketio_server) -> None:
    # callback("origin not allowed", false): the upgrade's 400 body is those words alone, which reads as
    # any server's 400; the polling request's 403 {"code":4,...} says it is engine.io's Forbidden.
    peer = socketio_server(
        args=("--allow-origin", "https://chat.example", "--deny-message", "origin not allowed")
    )
    run = _run(peer.extra["engine_url"])
    sio = run.check("socketio")
    assert sio["code"] == "socketio.forbidden", sio
    assert (
        "HTTP 403 'origin not allowed' (engine.io code 4, Forbidden) to the polling request" in sio["summary"]
    )
    assert "HTTP/1.1 400 Bad Request to the upgrade" in sio["summary"]
    assert sio["evidence"]["body"] == "origin not allowed"
    assert run.root_code == "socketio.forbidden"
    assert "--origin" in sio["hint"]


def test_namespace_middleware_that_never_answers(socketio_server) -> None:
    peer = socketio_server(args=("--hang", "--connect-timeout", "1500"))
    run = _run(peer.extra["engine_url"])
    sio = run.check("socketio")
    assert sio["code"] == "socketio.no-connect-reply"
    assert "the Socket.IO CONNECT (40) got no answer" in sio["summary"]
    # socket.io's connectTimeout ended the session that never joined a namespace
    assert "the server closed the connection" in sio["summary"]
    assert sio["evidence"]["open_packet"]["ping_interval_ms"] == 25000
    assert "next()" in sio["hint"]
    assert run.root_code == "socketio.no-connect-reply"


def test_namespace_middleware_that_never_answers_within_the_deadline(socketio_server) -> None:
    # socket.io's default connectTimeout (45 s) is longer than the run: the wait ends with the deadline
    peer = socketio_server(args=("--hang",))
    run = run_cli("all", peer.extra["engine_url"], "--json", "--no-variants", "--timeout", "2")
    sio = run.check("socketio")
    assert sio["code"] == "socketio.no-connect-reply"
    assert sio["summary"].endswith("got no answer (nothing more within the deadline)")
    assert run.seconds < 6


def test_nginx_dropping_the_upgrade_before_socketio(socketio_server, nginx_proxy) -> None:
    peer = socketio_server()
    proxy = nginx_proxy("no-upgrade", backend_port=peer.port)
    url = f"ws://127.0.0.1:{proxy.port}/socket.io/?EIO=4&transport=websocket"
    run = _run(url)
    hs = run.check("handshake")
    # engine.io got transport=websocket as a plain GET: {"code":3,"message":"Bad request"} with 400
    assert hs["code"] == "socketio.upgrade-lost"
    assert hs["evidence"]["engine_io_error"] == {"code": 3, "message": "Bad request"}
    assert "without the Upgrade header" in hs["summary"]
    assert "proxy_set_header Upgrade $http_upgrade" in hs["hint"]
    assert "/socket.io/" in hs["hint"]
    # the nginx check names the line that loses it, and the live reading confirms it: a failure
    nginx = run.check("nginx")
    assert nginx["status"] == "fail"
    assert run.root_code == "nginx.upgrade-header-missing"
    # straight to the same server: the upgrade works, so the proxy is what loses it
    direct = _run(peer.extra["engine_url"])
    assert direct.check("handshake")["status"] == "ok"


ROUND_ROBIN = """upstream sio {{
    {balance}
    server 127.0.0.1:{a};
    server 127.0.0.1:{b};
}}
server {{
    listen 127.0.0.1:{{port}};
    location /socket.io/ {{
        proxy_pass http://sio;
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection $connection_upgrade;
        proxy_set_header Host $host;
    }}
}}
"""


def test_two_socketio_servers_without_sticky_sessions(socketio_server, nginx_site) -> None:
    a, b = socketio_server(), socketio_server()
    site = nginx_site(ROUND_ROBIN.format(balance="", a=a.port, b=b.port))
    run = _run(f"ws://127.0.0.1:{site.port}/socket.io/?EIO=4&transport=websocket")
    sio = run.check("socketio")
    assert sio["code"] == "socketio.session-unknown", sio
    assert "unknown to the next request of the same client (HTTP 400 Session ID unknown)" in sio["summary"]
    session = sio["evidence"]["polling_session"]
    assert session["sid"] in sio["summary"]
    assert "HTTP 400 Session ID unknown" in session["next_requests"]
    assert "sticky sessions" in sio["hint"]
    assert run.root_code == "socketio.session-unknown"
    # ip_hash (every loopback client on one server): the same two servers are healthy
    sticky = nginx_site(ROUND_ROBIN.format(balance="ip_hash;", a=a.port, b=b.port))
    good = _run(f"ws://127.0.0.1:{sticky.port}/socket.io/?EIO=4&transport=websocket")
    ok = good.check("socketio")
    assert ok["status"] == "ok", ok
    assert ok["evidence"]["polling_session"]["next_requests"] == ["HTTP 200", "HTTP 200", "HTTP 200"]


def test_engine_io_url_on_a_plain_websocket_server(ws_server) -> None:
    # socket.io-client pointed at a plain WebSocket server: the upgrade works, the first frame is its
    # own greeting, not Engine.IO's open packet 0{"sid":...}
    run = _run(ws_server.url.rstrip("/") + "/socket.io/?EIO=4&transport=websocket")
    assert run.check("handshake")["status"] == "ok"
    sio = run.check("socketio")
    assert sio["code"] == "socketio.no-open-packet"
    assert "upgraded but sent no Engine.IO open packet" in sio["summary"]
    assert '"type": "welcome"' in sio["summary"]
    assert run.root_code == "socketio.no-open-packet"


def test_url_copied_with_a_stale_sid(socketio_server) -> None:
    # The URL as the browser's developer tools show it, with the sid of a session long gone: engine.io
    # answers the upgrade 400 'Session ID unknown'; the check's own sessions on the same server live on.
    peer = socketio_server()
    run = _run(peer.extra["engine_url"] + "&sid=Xb3tA0YmOeGnVi1lAAAB")
    hs = run.check("handshake")
    assert hs["code"] == "socketio.session-unknown"
    assert "'Session ID unknown' to the URL's sid=Xb3tA0YmOeGnVi1lAAAB" in hs["summary"]
    assert hs["hint"].startswith("drop sid= from the URL")
    assert run.root_code == "socketio.session-unknown"
    sio = run.check("socketio")
    assert sio["status"] == "ok", sio
    assert sio["evidence"]["polling_session"]["next_requests"] == ["HTTP 200", "HTTP 200", "HTTP 200"]
