"""Caddy behind the :class:`~lokin_doctor.proxies.base.ProxyReader` contract.

The running instance: ``caddy run|start --config FILE [--adapter caddyfile]`` (relative to its working
directory; without ``--config``, ``./Caddyfile`` there, else Debian's ``/etc/caddy/Caddyfile``), adapted
with ``caddy adapt`` in the process's own environment (``{$VAR}`` placeholders). Live: the configuration
the process really runs, from its admin API (``GET /config/`` at the ``admin`` address, default
``localhost:2019``, loopback only, bounded by the run's deadline). The version from ``caddy version``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from lokin_doctor.instruments.sysinfo import proc_environ
from lokin_doctor.proxies import base
from lokin_doctor.proxies.caddy import conf as cc
from lokin_doctor.proxies.caddy import findings as cf

if TYPE_CHECKING:
    from lokin_doctor.context import Context

DEFAULT_CONFIG = "/etc/caddy/Caddyfile"
_DIRECTIVES = re.compile(
    r"^\s*(reverse_proxy|handle_path|handle|file_server|respond|encode|root|tls|php_fastcgi|redir|route|header|import)\b",
    re.M,
)


def binary() -> str | None:
    return shutil.which("caddy") or next(
        (p for p in ("/usr/bin/caddy", "/usr/local/bin/caddy") if os.access(p, os.X_OK)), None
    )


class CaddyReader:
    kind = "caddy"
    title = "Caddy"

    def recognise(self, path: str) -> bool:
        if cc.is_json(path):
            return True
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read(1 << 20)
        except OSError:
            return False
        body = "\n".join(ln.split("#", 1)[0] for ln in text.splitlines())
        # A Caddyfile: blocks opened by "{" at line ends, no ";" line ends (nginx), known directives.
        return (
            bool(re.search(r"\{\s*$", body, re.M))
            and bool(_DIRECTIVES.search(body))
            and not re.search(r";\s*$", body, re.M)
            and not re.search(r"^\s*<", body, re.M)
        )

    def find_running(self, port_pids: set[int]) -> base.Running | None:
        procs = base.running_processes(
            lambda argv: base.program_is(argv, "caddy") and any(w in ("run", "start") for w in argv[1:3]),
            port_pids,
        )
        if not procs:
            return None
        p = procs[0]
        given = base.option_values(p.argv, "--config", "-c")
        if given:
            conf, source = base.absolute(given[-1], p.cwd), f"caddy pid {p.pid} (--config)"
        else:
            local = os.path.join(p.cwd or "/", "Caddyfile")
            conf = local if os.path.isfile(local) else DEFAULT_CONFIG
            source = (
                f"caddy pid {p.pid} (" + ("./Caddyfile" if conf == local else "the packaged default") + ")"
            )
        exe = p.argv[0] if os.path.isabs(p.argv[0]) else binary()
        return base.Running("caddy", p.pid, p.argv, conf, source, p.cwd, exe, {"env": proc_environ(p.pid)})

    def load(self, path: str, running: base.Running | None = None) -> cc.Config:
        exe = (running.binary if running else None) or binary()
        env = {**os.environ, **((running.extra.get("env") or {}) if running else {})}
        return cc.load(path, exe, 10.0, env)

    def route(
        self, config: cc.Config, *, host: str, port: int, path: str, address: str | None, secure: bool
    ) -> base.Route | None:
        walk = cc.select(config, host=host, port=port, path=path, address=address)
        return cf.to_route(config, walk, host, port) if walk is not None else None

    def findings(self, route: base.Route, facts: base.Facts) -> list[base.Finding]:
        config, walk, lines = route.detail
        return cf.analyse(config, walk, lines, walk.asked, facts)

    def version(self, running: base.Running | None, timeout: float) -> tuple[int, ...] | None:
        exe = (running.binary if running else None) or binary()
        if exe is None:
            return None
        out = base.run_quiet([exe, "version"], timeout)
        return base.parse_version(out[1]) if out and out[0] == 0 else None

    async def live(self, ctx: Context, config: cc.Config, running: base.Running | None) -> dict[str, Any]:
        """The running configuration from the admin API (only for a running instance: a given file is
        read as given)."""
        if running is None:
            return {}
        admin = config.admin()
        if admin is None:
            return {"admin": "off"}
        host, _, port = admin.rpartition(":")
        host = host.strip("[]") or "localhost"
        if not port.isdigit() or not base.on_this_machine(host):
            return {"admin": admin}
        from lokin_doctor.instruments.httpget import FetchError, get

        url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/config/"
        try:
            async with asyncio.timeout(min(1.0, ctx.remaining())):
                page = await get(url, deadline=ctx.deadline)
            data = json.loads(page.body.decode("utf-8", "replace"))
        except (FetchError, OSError, TimeoutError, ValueError):
            return {"admin": url, "live_error": "no answer from the admin API"}
        if page.status != 200 or not isinstance(data, dict) or not data:
            return {"admin": url, "live_error": f"admin API answered {page.status}"}
        return {"admin": url, "config": replace(config, data=data, source="admin API " + url)}

    def hint_reload(self) -> str:
        return "caddy validate --config FILE && caddy reload --config FILE"


READER = CaddyReader()
