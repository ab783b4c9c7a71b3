"""HAProxy behind the :class:`~lokin_doctor.proxies.base.ProxyReader` contract: the running instance
(``haproxy -f FILE|DIR ...``, the master and its workers; without ``-f``, Debian's
``/etc/haproxy/haproxy.cfg``), its configuration, the route, the findings, and the stats socket
(``stats socket PATH`` in ``global``: ``show stat``, one bounded exchange) for the backend's servers.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
from typing import TYPE_CHECKING, Any

from lokin_doctor.proxies import base
from lokin_doctor.proxies.haproxy import conf as hc
from lokin_doctor.proxies.haproxy import findings as hf
from lokin_doctor.proxies.haproxy import route as hr

if TYPE_CHECKING:
    from lokin_doctor.context import Context

DEFAULT_CONFIG = "/etc/haproxy/haproxy.cfg"

_KEYWORDS = re.compile(
    r"^\s*(bind|server|mode|timeout|default_backend|use_backend|balance|maxconn|option)\b", re.M
)
_SECTION = re.compile(r"^\s*(global|defaults|frontend|backend|listen)(\s|$)", re.M)


def binary() -> str | None:
    return shutil.which("haproxy") or next(
        (p for p in ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy") if os.access(p, os.X_OK)), None
    )


class HaproxyReader:
    kind = "haproxy"
    title = "HAProxy"

    def recognise(self, path: str) -> bool:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read(1 << 20)
        except OSError:
            return False
        body = _strip_comments(text)
        # nginx and Caddy end lines with ";" or "{": HAProxy never does (its braces are mid-line ACLs).
        return (
            bool(_SECTION.search(body))
            and bool(_KEYWORDS.search(body))
            and not re.search(r"[{;]\s*$", body, re.M)
        )

    def find_running(self, port_pids: set[int]) -> base.Running | None:
        procs = base.running_processes(lambda argv: base.program_is(argv, "haproxy"), port_pids)
        if not procs:
            return None
        p = procs[0]
        given = base.option_values(p.argv, "-f")
        paths = [base.absolute(f, p.cwd) for f in given] or [DEFAULT_CONFIG]
        source = f"haproxy pid {p.pid}" + (" (-f)" if given else " (the packaged default)")
        exe = p.argv[0] if os.path.isabs(p.argv[0]) else binary()
        return base.Running("haproxy", p.pid, p.argv, paths[0], source, p.cwd, exe, {"files": paths})

    def load(self, path: str, running: base.Running | None = None) -> hc.Config:
        paths = list(running.extra.get("files") or [path]) if running is not None else [path]
        return hc.load(paths)

    def route(
        self, config: hc.Config, *, host: str, port: int, path: str, address: str | None, secure: bool
    ) -> base.Route | None:
        picked = hr.select(
            config,
            host_header=base.host_header(host, port, secure),
            port=port,
            path=path,
            address=address,
            secure=secure,
        )
        return hf.to_route(config, picked) if picked is not None else None

    def findings(self, route: base.Route, facts: base.Facts) -> list[base.Finding]:
        config, path = route.detail
        return hf.analyse(config, path, path.sent_path if path.sent_path else "/", facts)

    def version(self, running: base.Running | None, timeout: float) -> tuple[int, ...] | None:
        exe = (running.binary if running else None) or binary()
        if exe is None:
            return None
        out = base.run_quiet([exe, "-v"], timeout)
        return base.parse_version(out[1]) if out and out[0] == 0 else None

    async def live(self, ctx: Context, config: hc.Config, running: base.Running | None) -> dict[str, Any]:
        """The stats socket's view of every backend (``{"stats": {backend: [(server, status)]}}``)."""
        import asyncio

        sock = stats_socket(config)
        if sock is None:
            return {}
        rows = await asyncio.to_thread(show_stat, sock, min(1.0, ctx.remaining()))
        if rows is None:
            return {"stats_socket": sock, "stats_error": "no answer"}
        return {"stats_socket": sock, "stats": rows}

    def hint_reload(self) -> str:
        return "haproxy -c -f FILE && systemctl reload haproxy"


def _strip_comments(text: str) -> str:
    return "\n".join(line.split("#", 1)[0] for line in text.splitlines())


def stats_socket(config: hc.Config) -> str | None:
    """The ``stats socket`` of ``global``: a unix path, or ``ipv4@HOST:PORT`` on this machine."""
    g = config.global_section()
    if g is None:
        return None
    for li in g.all("stats", "socket"):
        if len(li.words) >= 3:
            return li.words[2]
    return None


def show_stat(address: str, timeout: float) -> dict[str, list[tuple[str, str]]] | None:
    """``show stat`` over the stats socket (one request, bounded by ``timeout``); None when it fails."""
    try:
        if address.startswith(("ipv4@", "ipv6@")) or re.match(r"^[\w.\[\]:-]+:\d+$", address):
            spec = address.split("@", 1)[-1]
            host, _, port = spec.rpartition(":")
            host = host.strip("[]") or "127.0.0.1"
            if not base.is_loopback(host) and not base.on_this_machine(host):
                return None
            s = socket.create_connection((host, int(port)), timeout=timeout)
        else:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(timeout)
            s.connect(address.split("@", 1)[-1])
    except (OSError, ValueError):
        return None
    data = b""
    try:
        with s:
            s.sendall(b"show stat\n")
            while len(data) < (4 << 20):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError:
        if not data:
            return None
    return parse_stat(data.decode("utf-8", "replace"))


def parse_stat(text: str) -> dict[str, list[tuple[str, str]]]:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines or not lines[0].startswith("# "):
        return {}
    header = lines[0][2:].split(",")
    try:
        px, sv, st = header.index("pxname"), header.index("svname"), header.index("status")
    except ValueError:
        return {}
    out: dict[str, list[tuple[str, str]]] = {}
    for ln in lines[1:]:
        cells = ln.split(",")
        if len(cells) <= max(px, sv, st) or cells[sv] in ("FRONTEND", "BACKEND"):
            continue
        out.setdefault(cells[px], []).append((cells[sv], cells[st]))
    return out


READER = HaproxyReader()
