"""The Apache httpd reader, pure: words, continuation lines, conditional sections, includes, defines,
virtual host selection and mod_proxy's path matching; and Debian's packaged configuration as shipped."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lokin_doctor.proxies.apache import conf as ac
from lokin_doctor.proxies.apache.reader import READER, compiled_defaults, read_envvars
from tests.peers._common import require_binary


def test_words() -> None:
    assert ac.split_words('ProxyPass "/a b" http://x/ timeout=5') == [
        "ProxyPass",
        "/a b",
        "http://x/",
        "timeout=5",
    ]
    assert ac.split_words(r'Header set X "say \"hi\""') == ["Header", "set", "X", 'say "hi"']
    assert ac.split_words("RequestHeader set Origin 'https://a'") == [
        "RequestHeader",
        "set",
        "Origin",
        "https://a",
    ]


def _write(d: Path, name: str, text: str) -> Path:
    path = d / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_includes_conditions_and_defines(tmp_path: Path) -> None:
    main = _write(
        tmp_path,
        "httpd.conf",
        """# comment
ServerRoot {root}
Define WS_PORT 8081
LoadModule proxy_module modules/mod_proxy.so
<IfModule proxy_module>
    Listen 127.0.0.1:8000
</IfModule>
<IfModule !mod_proxy_wstunnel.c>
    Listen 127.0.0.1:8001
</IfModule>
<IfModule mod_rewrite.c>
    Listen 127.0.0.1:8002
</IfModule>
<IfDefine !NOPE>
    IncludeOptional sites/*.conf
</IfDefine>
Include missing-optional-ok.conf
""".replace("{root}", str(tmp_path)),
    )
    _write(
        tmp_path,
        "sites/b.conf",
        """<VirtualHost *:8000>
    ServerName b.test
    ProxyPass /ws \\
        ws://127.0.0.1:${WS_PORT}/ws
</VirtualHost>
""",
    )
    _write(
        tmp_path,
        "sites/a.conf",
        "<VirtualHost *:8000>\n    ServerName a.test\n    ServerAlias *.a.test\n</VirtualHost>\n",
    )
    config = ac.load(str(main))
    assert [p for _a, p in ac.listen_ports(config)] == [8000, 8001]
    assert config.files == (str(main), str(tmp_path / "sites/a.conf"), str(tmp_path / "sites/b.conf"))
    assert "proxy_module" in config.modules and "rewrite_module" not in config.modules
    assert any("missing-optional-ok.conf" in w for w in config.warnings)
    vhost, why = ac.select_vhost(config, 8000, "b.test", "127.0.0.1")  # type: ignore[misc]
    assert vhost is not None and vhost.file == str(tmp_path / "sites/b.conf") and "b.test" in why
    route, _why, _u = ac.select_proxy(config, vhost, "b.test", "/ws/chat")
    assert route is not None and route.url == "ws://127.0.0.1:8081/ws" and route.sent_path == "/ws/chat"
    assert route.directive.line == 3  # the continued line starts where it starts
    first, why = ac.select_vhost(config, 8000, "x.a.test", "127.0.0.1")  # type: ignore[misc]
    assert first is not None and "*.a.test" in why
    default, why = ac.select_vhost(config, 8000, "nobody.test", "127.0.0.1")  # type: ignore[misc]
    assert default is not None and default.file.endswith("a.conf") and "the first for port 8000" in why
    assert ac.select_vhost(config, 9999, "x", "127.0.0.1") is None


@pytest.mark.parametrize(
    ("path", "alias", "length"),
    [
        ("/ws", "/ws", 3),
        ("/ws/chat", "/ws", 3),
        ("/wsx", "/ws", 0),
        ("//ws//a", "/ws/", 6),
        ("/", "/", 1),
        ("/a", "/ws", 0),
    ],
)
def test_alias_match(path: str, alias: str, length: int) -> None:
    assert ac._alias_match(path, alias) == length


def test_proxypass_order_exclusion_and_match(tmp_path: Path) -> None:
    main = _write(
        tmp_path,
        "h.conf",
        """Listen 80
<VirtualHost *:80>
    ProxyPass /ws/admin !
    ProxyPassMatch ^/ws/(room\\d+)$ ws://127.0.0.1:9000/rooms/$1
    ProxyPass /ws ws://127.0.0.1:9001/
    ProxyPass / http://127.0.0.1:9002/
</VirtualHost>
""",
    )
    config = ac.load(str(main))
    vhost, _ = ac.select_vhost(config, 80, "x", None)  # type: ignore[misc]
    r, why, _u = ac.select_proxy(config, vhost, "x", "/ws/admin")
    assert r is None and "excludes" in why[0]
    r, _why, _u = ac.select_proxy(config, vhost, "x", "/ws/room7")
    assert r is not None and r.kind == "ProxyPassMatch" and r.url == "ws://127.0.0.1:9000/rooms/room7"
    r, _why, _u = ac.select_proxy(config, vhost, "x", "/ws/chat")
    assert (
        r is not None and r.url == "ws://127.0.0.1:9001/" and r.sent_path == "//chat"
    )  # httpd's double slash
    r, _why, _u = ac.select_proxy(config, vhost, "x", "/other")
    assert r is not None and r.url == "http://127.0.0.1:9002/"


def test_recognise(tmp_path: Path) -> None:
    ap = _write(tmp_path, "a.conf", "<VirtualHost *:80>\n  ProxyPass / http://x/\n</VirtualHost>\n")
    ha = _write(tmp_path, "h.cfg", "listen x\n    bind :80\n    server s 127.0.0.1:1\n")
    assert READER.recognise(str(ap)) and not READER.recognise(str(ha))


def test_debian_packaged_configuration() -> None:
    # The configuration a Debian apache2 starts with, read as apache2ctl would (envvars, -V defaults).
    binary = require_binary("apache2", "apt-get install -y apache2")
    root, conf = compiled_defaults(binary, 10.0)
    assert (root, conf) == ("/etc/apache2", "apache2.conf")
    if not os.path.exists("/etc/apache2/sites-enabled/000-default.conf"):
        pytest.skip("Debian's default site is not enabled here")
    assert read_envvars()["APACHE_LOG_DIR"].startswith("/var/log/apache2")
    config = READER.load("/etc/apache2/apache2.conf")
    vhost, _why = ac.select_vhost(config, 80, "localhost", "127.0.0.1")  # type: ignore[misc]
    assert vhost is not None and vhost.file == "/etc/apache2/sites-enabled/000-default.conf"
    assert "mpm_event_module" in config.modules or "mpm_prefork_module" in config.modules
