"""Apache httpd behind the :class:`~lokin_doctor.proxies.base.ProxyReader` contract.

The running instance: the ``apache2``/``httpd`` parent process, its ``-f`` file, ``-d`` ServerRoot and
``-D`` defines, its environment (``/proc/PID/environ``: Debian's ``APACHE_*`` variables from
``/etc/apache2/envvars``); without ``-f``, the file the binary was built to read (``apache2 -V``:
``HTTPD_ROOT`` and ``SERVER_CONFIG_FILE``). Live: the loaded modules (``-M``) and the virtual hosts
(``-S``) of that configuration, asked of the same binary with the same arguments, bounded.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from typing import TYPE_CHECKING, Any

from lokin_doctor.instruments.sysinfo import proc_environ
from lokin_doctor.proxies import base
from lokin_doctor.proxies.apache import conf as ac
from lokin_doctor.proxies.apache import findings as af

if TYPE_CHECKING:
    from lokin_doctor.context import Context

ENVVARS = "/etc/apache2/envvars"
_DIRECTIVES = re.compile(
    # Words HAProxy, nginx and Caddy never start a line with (Listen and ErrorLog are HAProxy's too).
    r"^\s*(<VirtualHost|<IfModule|<Location|<Directory|LoadModule|ProxyPass|ServerRoot|ServerName|IncludeOptional|DocumentRoot)\b",
    re.M | re.I,
)


def binary() -> str | None:
    for name in ("apache2", "httpd"):
        found = shutil.which(name) or next(
            (p for p in (f"/usr/sbin/{name}", f"/usr/local/apache2/bin/{name}") if os.access(p, os.X_OK)),
            None,
        )
        if found:
            return found
    return None


def read_envvars(path: str = ENVVARS) -> dict[str, str]:
    """Debian's ``/etc/apache2/envvars`` (``export APACHE_RUN_USER=www-data`` lines; ``$SUFFIX`` empty)."""
    out: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read(1 << 16)
    except OSError:
        return out
    for line in text.splitlines():
        m = re.match(r"^\s*(?:export\s+)?([A-Z_][A-Z0-9_]*)=(.*)$", line)
        if not m:
            continue
        value = m.group(2).strip().strip("'\"")
        value = re.sub(r"\$\{?([A-Z_][A-Z0-9_]*)\}?", lambda v: out.get(v.group(1), ""), value)
        out[m.group(1)] = value
    return out


def compiled_defaults(exe: str, timeout: float) -> tuple[str | None, str | None]:
    """(HTTPD_ROOT, SERVER_CONFIG_FILE) from ``apache2 -V``."""
    out = base.run_quiet([exe, "-V"], timeout, env={**os.environ, **read_envvars()})
    if out is None:
        return None, None
    text = out[1]
    root = re.search(r'HTTPD_ROOT="([^"]+)"', text)
    conf = re.search(r'SERVER_CONFIG_FILE="([^"]+)"', text)
    return (root.group(1) if root else None, conf.group(1) if conf else None)


class ApacheReader:
    kind = "apache"
    title = "Apache httpd"

    def recognise(self, path: str) -> bool:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read(1 << 20)
        except OSError:
            return False
        body = "\n".join(ln for ln in text.splitlines() if not ln.strip().startswith("#"))
        return bool(_DIRECTIVES.search(body)) and not re.search(r";\s*$", body, re.M)

    def find_running(self, port_pids: set[int]) -> base.Running | None:
        procs = base.running_processes(lambda argv: base.program_is(argv, "apache2", "httpd"), port_pids)
        if not procs:
            return None
        p = procs[0]
        exe = p.argv[0] if os.path.isabs(p.argv[0]) else binary()
        env = proc_environ(p.pid)
        given = base.option_values(p.argv, "-f")
        roots = base.option_values(p.argv, "-d")
        defines = {d: "" for d in base.option_values(p.argv, "-D")}
        root = base.absolute(roots[-1], p.cwd) if roots else None
        source = f"apache pid {p.pid}"
        if given:
            conf = given[-1]
            conf = conf if os.path.isabs(conf) else os.path.join(root or p.cwd or "/", conf)
            source += " (-f)"
        else:
            built_root, built_conf = compiled_defaults(exe, 2.0) if exe else (None, None)
            root = root or built_root
            conf = built_conf or "apache2.conf"
            conf = conf if os.path.isabs(conf) else os.path.join(root or "/etc/apache2", conf)
            source += " (the compiled-in default)"
        return base.Running(
            "apache", p.pid, p.argv, conf, source, p.cwd, exe, {"root": root, "defines": defines, "env": env}
        )

    def load(self, path: str, running: base.Running | None = None) -> ac.Config:
        extra = running.extra if running is not None else {}
        env: dict[str, str] = dict(extra.get("env") or {})
        if not env and os.path.abspath(path).startswith("/etc/apache2/"):
            env = read_envvars()
        version = self.version(running, 2.0)
        return ac.load(
            path,
            server_root=extra.get("root")
            or (None if not path.startswith("/etc/apache2/") else "/etc/apache2"),
            defines=extra.get("defines") or {},
            env={**os.environ, **env},
            version=version,
        )

    def route(
        self, config: ac.Config, *, host: str, port: int, path: str, address: str | None, secure: bool
    ) -> base.Route | None:
        picked = ac.select_vhost(config, port, host, address)
        if picked is None:
            return None
        vhost, why_vhost = picked
        bare = path.split("?", 1)[0] or "/"
        proute, why, unknown = ac.select_proxy(config, vhost, host, bare)
        anchor = proute.directive if proute else (vhost or config.directives[0])
        up = af.upstream_of(proute) if proute else None
        described = (
            f"<VirtualHost {' '.join(vhost.args)}> ({vhost.where})"
            if vhost
            else f"main server ({config.main})"
        )
        if proute is not None:
            described += f" -> {proute.directive.text} ({proute.directive.where})"
        return base.Route(
            "apache",
            described,
            (why_vhost, *why),
            anchor.file,
            anchor.line,
            (up,) if up else (),
            proute.sent_path if proute else None,
            (config, vhost, proute, unknown, bare),
        )

    def findings(self, route: base.Route, facts: base.Facts) -> list[base.Finding]:
        config, vhost, proute, unknown, bare = route.detail
        return af.analyse(config, vhost, proute, unknown, bare, facts)

    def version(self, running: base.Running | None, timeout: float) -> tuple[int, ...] | None:
        exe = (running.binary if running else None) or binary()
        if exe is None:
            return None
        out = base.run_quiet([exe, "-v"], timeout)
        return base.parse_version(out[1]) if out and out[0] == 0 else None

    async def live(self, ctx: Context, config: ac.Config, running: base.Running | None) -> dict[str, Any]:
        """``-M`` (loaded modules) and ``-S`` (virtual hosts) of the running instance's configuration."""
        if running is None or running.binary is None:
            return {}
        argv = [running.binary, "-f", running.config]
        if running.extra.get("root"):
            argv += ["-d", str(running.extra["root"])]
        for d in running.extra.get("defines") or {}:
            argv += ["-D", d]
        env = {**os.environ, **(running.extra.get("env") or {})}
        budget = min(2.0, ctx.remaining())
        mods, hosts = await asyncio.gather(
            asyncio.to_thread(base.run_quiet, [*argv, "-M"], budget, env),
            asyncio.to_thread(base.run_quiet, [*argv, "-S"], budget, env),
        )
        out: dict[str, Any] = {}
        if mods is not None and mods[0] == 0:
            found = set(re.findall(r"^\s*([a-z0-9_]+_module)\s+\((?:static|shared)\)", mods[1], re.M))
            if found:
                out["modules"] = found
                out["modules_from"] = " ".join([*argv, "-M"])
        if hosts is not None and hosts[0] == 0:
            out["vhosts"] = [
                ln.strip()
                for ln in (hosts[1] + hosts[2]).splitlines()
                if "namevhost" in ln or "default server" in ln
            ][:20]
        return out

    def hint_reload(self) -> str:
        return "apachectl configtest && apachectl graceful"


READER = ApacheReader()
