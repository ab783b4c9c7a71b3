"""``variants.backend-direct``: the target fails through a reverse proxy while its backend answers 101
directly on a conventional port of the same host. A real nginx serving the site's files with no location
for ``/ws`` (its 404), next to ``lokin-doctor serve`` on 8080 (the LOK IN port), both in a network
namespace of the test's own (``unshare -n``): port 8080 of the shared machine stays free for others, and
nothing outside is probed.

(A proxy that answers with a cause tagged "not a URL problem", such as nginx dropping the upgrade, gets
no variants at all: another URL would not fix it. The 404 of a proxy without the location is what
variants weighs.)
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Any

from tests.local.conftest import serve_argv, write_config
from tests.peers._common import missing, require_binary
from tests.peers.netns import report_in_netns

BACKEND_PORT = 8080  # one of the ports variants tries (CONVENTIONAL), free inside the namespace
PROXY_PORT = 8000


def _check(report: dict[str, Any], check_id: str) -> dict[str, Any]:
    return next(c for c in report["checks"] if c["id"] == check_id)


SITE = """server {{
    listen 127.0.0.1:{{port}};
    server_name localhost;
    root {root};
{ws}
    location / {{
        try_files $uri $uri/ =404;
    }}
}}
"""

WS_LOCATION = f"""    location /ws {{
        proxy_pass http://127.0.0.1:{BACKEND_PORT};
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection $connection_upgrade;
    }}
"""


def _behind_nginx(tmp_path: Path, name: str, ws: str) -> dict[str, Any]:
    """nginx on PROXY_PORT serving files (with ``ws``, a location, or not), serve on BACKEND_PORT, and the
    doctor on ``ws://127.0.0.1:PROXY_PORT/ws``, all in a new network namespace; its JSON report."""
    if os.geteuid() != 0:
        missing("a network namespace needs root (unshare -n)")
    unshare = require_binary("unshare", "apt-get install -y util-linux")
    ip = require_binary("ip", "apt-get install -y iproute2")
    nginx = require_binary("nginx", "apt-get install -y nginx")
    d = tmp_path / name
    (d / "html").mkdir(parents=True)
    (d / "html" / "index.html").write_text("<!DOCTYPE html><title>LOK IN</title>")
    conf, _site, _text = write_config(d, SITE.format(root=d / "html", ws=ws), PROXY_PORT)
    serve = " ".join(shlex.quote(a) for a in serve_argv(BACKEND_PORT, "--quiet"))
    doctor = " ".join(
        shlex.quote(a)
        for a in [sys.executable, "-m", "lokin_doctor", "all", f"ws://127.0.0.1:{PROXY_PORT}/ws", "--json"]
        + ["--timeout", "4"]
    )
    wait = "for i in $(seq 200); do grep -q ':{port:04X} 00000000:0000 0A' /proc/net/tcp && break; sleep 0.05; done"
    report = d / "report.json"
    return report_in_netns(
        unshare,
        [
            "set -e",
            f"{ip} link set lo up",
            f"{serve} > {d}/serve.log 2>&1 &",
            "SERVE=$!",
            f"{nginx} -p {d} -c {conf} -e stderr -g 'daemon off;' > {d}/nginx.log 2>&1 &",
            "NGINX=$!",
            wait.format(port=BACKEND_PORT),
            wait.format(port=PROXY_PORT),
            "set +e",
            f"{doctor} > {report}",
            "rc=$?",
            "kill $SERVE $NGINX; wait $SERVE $NGINX",
            "exit $rc",
        ],
        report,
        d / "nginx.log",
        d / "serve.log",
    )


def test_backend_answers_directly_where_nginx_has_no_location(tmp_path: Path) -> None:
    report = _behind_nginx(tmp_path, "no-location", "")
    target = f"ws://127.0.0.1:{PROXY_PORT}/ws"
    backend = f"ws://127.0.0.1:{BACKEND_PORT}/ws"
    hs = _check(report, "handshake")
    assert hs["code"] == "handshake.not-found", hs
    variants = _check(report, "variants")
    assert variants["status"] == "warn" and variants["code"] == "variants.backend-direct", variants
    assert variants["summary"] == (
        f"{target} fails ({hs['code']}) through nginx, but the backend answers 101 directly at {backend}"
    )
    assert variants["evidence"]["works"] == backend
    assert variants["evidence"]["tried"][backend] == "101"
    assert (
        variants["hint"]
        == f"fix nginx (see the proxy check) rather than pointing clients past it at {backend}"
    )
    # a warning that points at the proxy: the root cause stays the proxy's (nginx names the location
    # to add, the proxy check saw the same backend answer 101 at its path)
    assert report["root_cause"]["code"] == "nginx.not-proxied", report["root_cause"]
    assert _check(report, "proxy")["code"] == "proxy.path-mismatch"


def test_the_same_pair_with_the_location_costs_no_probe(tmp_path: Path) -> None:
    report = _behind_nginx(tmp_path, "with-location", WS_LOCATION)
    assert _check(report, "handshake")["status"] == "ok"
    variants = _check(report, "variants")
    assert variants["status"] == "skip" and variants["summary"] == "not applicable: the target works"
    assert report["root_cause"] is None
