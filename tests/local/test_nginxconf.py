"""nginx's matching rules and the findings, on configs written to files (crossplane reads them, includes too)."""

from __future__ import annotations

from pathlib import Path

from lokin_doctor.proxies.nginx import conf as nc
from lokin_doctor.proxies.nginx import findings as nf


def _load(tmp_path: Path, http: str, extra: dict[str, str] | None = None) -> nc.Config:
    for name, text in (extra or {}).items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    main = tmp_path / "nginx.conf"
    main.write_text(f"events {{}}\nhttp {{\n{http}\n}}\n")
    return nc.load(str(main))


def _server_line(config: nc.Config, port: int, host: str, address: str | None = None) -> int:
    picked = nc.select_server(config, port, host, address)
    assert picked is not None
    return picked[0].line


SERVERS = """
server { listen 8443; server_name _; }
server { listen 8443 default_server; server_name fallback.test; }
server { listen 8443; server_name *.lokin.test; }
server { listen 8443; server_name www.*; }
server { listen 8443; server_name ~^ws\\d+\\.example\\.com$; }
server { listen 8443; server_name app.lokin.test; }
server { listen 127.0.0.2:8443; server_name app.lokin.test; }
"""


def test_server_name_precedence(tmp_path: Path) -> None:
    config = _load(tmp_path, SERVERS)
    # Lines: http { is line 2, the servers follow from line 4.
    assert _server_line(config, 8443, "app.lokin.test") == 9  # exact beats the leading wildcard
    assert _server_line(config, 8443, "chat.lokin.test") == 6  # leading wildcard
    assert _server_line(config, 8443, "www.other.org") == 7  # trailing wildcard
    assert _server_line(config, 8443, "ws12.example.com") == 8  # regex
    assert _server_line(config, 8443, "nobody.test") == 5  # default_server, not the first
    assert nc.select_server(config, 9999, "app.lokin.test") is None


def test_exact_listen_address_beats_wildcard(tmp_path: Path) -> None:
    config = _load(tmp_path, SERVERS)
    # A connection to 127.0.0.2 only sees the servers listening on that address.
    assert _server_line(config, 8443, "chat.lokin.test", "127.0.0.2") == 10
    assert _server_line(config, 8443, "chat.lokin.test", "127.0.0.1") == 6


LOCATIONS = """
server {
    listen 80;
    location / { proxy_pass http://127.0.0.1:1; }
    location /ws { proxy_pass http://127.0.0.1:2; }
    location ^~ /static/ { root /srv; }
    location ~* \\.(png|js)$ { root /srv; }
    location = /ws { proxy_pass http://127.0.0.1:3; }
    location /api/ {
        location ~ ^/api/ws$ { proxy_pass http://127.0.0.1:4; }
        proxy_pass http://127.0.0.1:5;
    }
}
"""


def _location_line(config: nc.Config, path: str) -> int:
    picked = nc.select_server(config, 80, "x")
    assert picked is not None
    found = nc.select_location(picked[0], path)
    assert found is not None
    return found[0][-1].line


def test_location_precedence(tmp_path: Path) -> None:
    config = _load(tmp_path, LOCATIONS)
    # Lines: the server block starts on line 4.
    assert _location_line(config, "/ws") == 10  # exact
    assert _location_line(config, "/ws/x") == 7  # longest prefix
    assert _location_line(config, "/static/app.js") == 8  # ^~ stops the regexes
    assert _location_line(config, "/img/a.PNG") == 9  # case-insensitive regex over the / prefix
    assert _location_line(config, "/api/ws") == 12  # regex nested in the longest prefix
    assert _location_line(config, "/api/other") == 11
    assert _location_line(config, "/") == 6


def test_proxy_set_header_is_not_inherited_by_a_level_with_its_own(tmp_path: Path) -> None:
    config = _load(
        tmp_path,
        "include conf.d/*.conf;",
        {
            "conf.d/site.conf": """server {
    listen 80;
    proxy_http_version 1.1;
    proxy_set_header Upgrade $http_upgrade;
    proxy_set_header Connection "upgrade";
    location /ws {
        proxy_pass http://127.0.0.1:8080;
        proxy_set_header Host $host;
    }
}
"""
        },
    )
    a = nf.analyse(config, port=80, host="x", path="/ws")
    assert a is not None
    codes = {f.code: f for f in a.findings}
    site = str(tmp_path / "conf.d" / "site.conf")
    assert codes["nginx.upgrade-header-missing"].where == f"{site}:6"
    assert "is not inherited" in codes["nginx.upgrade-header-missing"].message
    assert f"{site}:4" in codes["nginx.upgrade-header-missing"].message
    assert "nginx.http10-upstream" not in codes  # proxy_http_version is inherited as usual
    block = nf.fixed_block(a, set(codes))
    assert block.splitlines() == [
        "location /ws {",
        "    proxy_pass http://127.0.0.1:8080;",
        "    proxy_http_version 1.1;",
        "    proxy_set_header Upgrade $http_upgrade;",
        '    proxy_set_header Connection "upgrade";',
        "    proxy_set_header Host $host;",
        "}",
    ]


def test_map_and_upstream(tmp_path: Path) -> None:
    config = _load(
        tmp_path,
        """
map $http_upgrade $conn_bad { default close; }
upstream lokin { server 127.0.0.1:9001 weight=2; }
server {
    listen 80;
    location /ws {
        proxy_pass http://lokin;
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection $conn_bad;
        proxy_read_timeout 1m;
    }
}""",
    )
    facts = nf.Facts(listening_ports=frozenset({9002}), ws_ports=frozenset({9002}), ping_interval=90)
    a = nf.analyse(config, port=80, host="x", path="/ws", facts=facts)
    assert a is not None
    codes = {f.code: f for f in a.findings}
    assert codes["nginx.connection-header-empty"].line == 4  # the map's line
    assert codes["nginx.proxy-pass-nothing-listens"].line == 5  # the upstream's server line
    assert "9001" in codes["nginx.proxy-pass-nothing-listens"].message
    assert codes["nginx.read-timeout-short"].line == 13
    assert "90 s" in codes["nginx.read-timeout-short"].message
    assert "nginx.send-timeout-short" in codes  # the 60 s default is shorter than 90 s too


def test_parse_time() -> None:
    assert nc.parse_time("60") == 60
    assert nc.parse_time("2s") == 2
    assert nc.parse_time("500ms") == 0.5
    assert nc.parse_time("1m30s") == 90
    assert nc.parse_time("1h") == 3600
    assert nc.parse_time("soon") is None


def test_path_rewrite_only_when_the_path_changes(tmp_path: Path) -> None:
    config = _load(
        tmp_path,
        """
server {
    listen 80;
    location / { proxy_pass http://127.0.0.1:8080/; }
    location /ws/ { proxy_pass http://127.0.0.1:8080/ws/; }
    location /chat { proxy_pass http://127.0.0.1:8080/; }
    location /static { root /srv; }
}""",
    )

    def codes(path: str) -> dict[str, nf.Finding]:
        a = nf.analyse(config, port=80, host="x", path=path)
        assert a is not None
        return {f.code: f for f in a.findings}

    assert "nginx.path-rewritten" not in codes("/anything")  # / -> / changes nothing
    assert "nginx.path-rewritten" not in codes("/ws/x")
    rewritten = codes("/chat/room?id=1")["nginx.path-rewritten"]
    assert "receives //room instead of /chat/room" in rewritten.message
    not_proxied = codes("/static/a.css")["nginx.not-proxied"]
    assert not_proxied.message.startswith("location /static has no proxy_pass")
    assert not_proxied.line == 9
