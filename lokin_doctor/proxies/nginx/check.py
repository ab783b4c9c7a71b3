"""``nginx``: the reverse proxy's own configuration, read on this machine.

Which configuration: ``--nginx-config FILE``, else the running nginx whose processes hold the target's
port (its master's ``-c`` file; without ``-c``, the main file ``nginx -T`` names). crossplane parses it
with its includes; :mod:`lokin_doctor.proxies.nginx.conf` picks the server and location that serve the target URL
and :mod:`lokin_doctor.proxies.nginx.findings` turns them into findings with ``file:line``. What the machine adds: the listening ports, the
WebSocket server's ports (``--process`` patterns), its keepalive ping interval (``serve``'s ``/health``,
``limits.ping_interval_s``) and how many certificates each ``ssl_certificate`` file holds.

``finalize`` weighs the findings against the live checks once they are done: a proxy cause found by
``handshake``/``proxy``/``hold``/``tls`` makes the matching config line the root cause, with the corrected
location block in the hint; a live 101 turns "missing upgrade lines" into a warning (the running nginx may
not have reloaded the file).

Facts written: ``nginx`` (the :class:`~lokin_doctor.proxies.nginx.findings.Analysis`).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from dataclasses import replace
from typing import Any

from lokin_doctor import causes
from lokin_doctor.causes import Tag
from lokin_doctor.causes.production import (
    PROXY_PATH_MISMATCH,
)
from lokin_doctor.causes.proxyconf import (
    NGINX_LEAF_ONLY_CERTIFICATE,
    NGINX_NO_SERVER,
    NGINX_NOT_PROXIED,
    NGINX_PATH_REWRITTEN,
    NGINX_PROXY_PASS_WRONG_PORT,
)
from lokin_doctor.causes.tls import TLS_INCOMPLETE_CHAIN, TLS_NO_SNI, TLS_UNKNOWN_NAME
from lokin_doctor.context import Context
from lokin_doctor.i18n import N_, _
from lokin_doctor.model import CheckResult, Status, fail, ok, skip, warn
from lokin_doctor.proxies.nginx import conf as nc
from lokin_doctor.proxies.nginx import findings as nf

#: Most telling first: the code a result carries when several findings are present.
CODE_ORDER = (
    NGINX_NOT_PROXIED,
    *nf.UPGRADE_CODES,
    NGINX_PATH_REWRITTEN,
    *nf.BACKEND_CODES,
    NGINX_LEAF_ONLY_CERTIFICATE,
    *nf.TIMEOUT_CODES,
)
STALE = N_("yet the live handshake upgraded: the running nginx may not have reloaded this file")
RELOAD = N_("then check and reload: nginx -t && nginx -s reload")


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (
            p
            for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx")
            if os.access(p, os.X_OK)
        ),
        None,
    )


def master_config(title: list[str], cwd: str | None) -> tuple[str | None, str | None, str | None]:
    """(binary, -p prefix, -c file) from a master's process title ``nginx: master process ARGV``."""
    words = " ".join(title).split()
    if words[:3] != ["nginx:", "master", "process"]:
        return None, None, None
    argv = words[3:]
    binary = argv[0] if argv else None
    prefix = conf = None
    for i, w in enumerate(argv[1:], 1):
        if w == "-p" and i + 1 < len(argv):
            prefix = argv[i + 1]
        elif w == "-c" and i + 1 < len(argv):
            conf = argv[i + 1]
    if conf is not None and not os.path.isabs(conf):
        conf = os.path.join(prefix or cwd or "/", conf)
    return binary, prefix, conf


def _nginx_masters(port_pids: set[int]) -> list[dict[str, Any]]:
    """nginx master processes, those whose family holds the target port first."""
    from lokin_doctor.instruments.sysinfo import cmdlines

    # One read of the command lines; psutil (~20 ms to import, a walk of every process) only when an
    # nginx master runs: with no nginx the check is not applicable and costs ~1 ms.
    titles = [
        (pid, cmd) for pid, cmd in cmdlines() if cmd and " ".join(cmd).startswith("nginx: master process")
    ]
    if not titles:
        return []
    import psutil

    masters: list[dict[str, Any]] = []
    for pid, cmd in titles:
        try:
            p = psutil.Process(pid)
            family = {pid, *(c.pid for c in p.children())}
            cwd: str | None = p.cwd()
        except (psutil.Error, OSError):
            family, cwd = {pid}, None
        masters.append({"pid": pid, "title": list(cmd), "cwd": cwd, "holds_port": bool(family & port_pids)})
    masters.sort(key=lambda m: not m["holds_port"])
    return masters


def _nginx_pids() -> list[int]:
    """Every nginx process (masters and workers), by process title or name."""
    import psutil

    out = []
    for p in psutil.process_iter(["pid", "name", "cmdline"]):
        cmd = " ".join(p.info.get("cmdline") or [])
        if p.info.get("name") == "nginx" or cmd.startswith("nginx: "):
            out.append(int(p.info["pid"]))
    return out


def _conf_from_dump(binary: str, prefix: str | None, timeout: float) -> str | None:
    """The main file ``nginx -T`` names (its first ``# configuration file PATH:`` line)."""
    import subprocess

    argv = [binary, *(["-p", prefix] if prefix else []), "-T"]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=max(0.2, timeout), check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"^# configuration file (.+):$", out.stdout, re.M)
    return m.group(1) if m else None


def on_this_machine(host: str) -> bool:
    from lokin_doctor.instruments.sysinfo import is_local_address

    return host == "localhost" or host.endswith(".localhost") or is_local_address(host)


def _count_certs(config: nc.Config) -> dict[str, int]:
    counts: dict[str, int] = {}

    def walk(ds: tuple[nc.Directive, ...]) -> None:
        for d in ds:
            if d.name == "ssl_certificate" and d.args and "$" not in d.args[0]:
                try:
                    with open(d.args[0], errors="replace") as f:
                        counts[d.args[0]] = f.read(1 << 20).count("-----BEGIN CERTIFICATE-----")
                except OSError:
                    pass
            if d.block:
                walk(d.block)

    walk(config.directives)
    return counts


async def _ping_interval(ctx: Context, upstreams: tuple[nc.Upstream, ...]) -> tuple[float | None, str]:
    """The backend's keepalive ping interval from serve's /health (0: pings disabled; None: unknown)."""
    from lokin_doctor.proxies.base import ping_interval

    return await ping_interval(ctx, upstreams)


async def check(ctx: Context) -> CheckResult:
    from lokin_doctor.checks.host.port import scan, scan_all
    from lokin_doctor.instruments.sysinfo import find_processes

    settings = ctx.settings
    target = ctx.target
    path = settings.nginx_config
    local = bool(ctx.facts.get("local"))
    if not local and path is None:
        return skip(
            "nginx",
            _(
                "skipped: {host} is not this machine; run lokin-doctor on the proxy, or give --nginx-config FILE"
            ).format(host=target.host),
        )
    all_listeners, owners = await scan(ctx) if local else ([], {})
    source = "--nginx-config"
    if path is None:
        binary = nginx_binary()
        port_pids = {li.pid for li in all_listeners if li.port == target.port and li.pid is not None}
        masters = await asyncio.to_thread(_nginx_masters, port_pids)
        if not masters:
            why = (
                _("nginx is not installed on this machine")
                if binary is None
                else _("no nginx runs on this machine")
            )
            return skip(
                "nginx",
                _("not applicable: {why} (give --nginx-config FILE to read one)").format(why=why),
                applicable=False,
            )
        holding = [m for m in masters if m["holds_port"]]
        if not holding and (port_pids or len(masters) > 1):
            held = ", ".join(f"pid {o.pid} ({o.command})" for o in owners.values()) or _("another process")
            return skip(
                "nginx",
                _("not applicable: port {port} is held by {held}, not by nginx").format(
                    port=target.port, held=held
                ),
                applicable=False,
                nginx_masters=[m["pid"] for m in masters],
            )
        master = (holding or masters)[0]
        m_binary, prefix, path = master_config(master["title"], master["cwd"])
        source = _("nginx master pid {pid}").format(pid=master["pid"])
        if path is None:
            exe = m_binary if m_binary and os.path.isabs(m_binary) else binary
            if exe is not None:
                path = await asyncio.to_thread(_conf_from_dump, exe, prefix, min(2.0, ctx.remaining()))
                source += " (nginx -T)"
            path = path or "/etc/nginx/nginx.conf"
    if local:
        all_listeners = await scan_all(
            ctx
        )  # every port's owner: proxy_pass to a port held by another program
    try:
        config = await asyncio.to_thread(nc.load, path)
    except nc.ConfigError as exc:
        return skip(
            "nginx",
            _("skipped: {exc} (run as root to read nginx's configuration)").format(exc=exc),
            config=path,
            source=source,
        )
    matches = (
        await ctx.blocking("processes", lambda: find_processes(settings.process_patterns, all_listeners))
        if local
        else []
    )
    ws_ports = frozenset(p for m in matches if not m.name.startswith("nginx") for p in m.listening_ports)
    nginx_pids = set(await asyncio.to_thread(_nginx_pids)) if local else set()
    known = {m.pid for m in matches} | nginx_pids
    other_ports = frozenset(li.port for li in all_listeners if li.pid is not None and li.pid not in known)
    addresses = list(ctx.facts.get("reachable") or ctx.facts.get("addresses") or [])
    address = str(addresses[0]) if addresses else (str(target.ip) if target.ip else None)
    host = target.host

    def facts(ping: float | None = None, ping_source: str = "") -> nf.Facts:
        return nf.Facts(
            listening_ports=frozenset(li.port for li in all_listeners) if local else None,
            ws_ports=ws_ports or None,
            other_ports=other_ports,
            ping_interval=ping,
            ping_source=ping_source,
            cert_counts=_count_certs(config),
            is_local=on_this_machine if local else (lambda _host: False),
        )

    analysis = nf.analyse(
        config, port=target.port, host=host, path=target.resource, address=address, facts=facts()
    )
    ev: dict[str, Any] = {"source": source}
    if analysis is None:
        ev.update(config=config.main, files=list(config.files))
        if settings_gave(ctx):
            return warn(
                "nginx",
                NGINX_NO_SERVER,
                _("no server block of {main} listens on port {port}").format(
                    main=config.main, port=target.port
                ),
                _("add a server with listen {port} (or use the port nginx listens on in the URL)").format(
                    port=target.port
                ),
                **ev,
            )
        return skip(
            "nginx",
            _("not applicable: no server block of {main} listens on port {port}").format(
                main=config.main, port=target.port
            ),
            **ev,
        )
    # Only this machine's backends are asked (the doctor sends no traffic to hosts the URL does not name).
    local_ups = tuple(u for u in analysis.upstreams if local and on_this_machine(u.host))
    ping, ping_source = await _ping_interval(ctx, local_ups)
    if ping is not None:
        analysis = nf.analyse(
            config,
            port=target.port,
            host=host,
            path=target.resource,
            address=address,
            facts=facts(ping, ping_source),
        )
        assert analysis is not None
        ev["ping_interval_s"] = ping
    ctx.facts["nginx"] = analysis
    ctx.facts["nginx_ws_port"] = next(iter(ws_ports)) if len(ws_ports) == 1 else None
    ctx.facts["nginx_evidence"] = ev
    return verdict(ctx, analysis, ev)


def settings_gave(ctx: Context) -> bool:
    return ctx.settings.nginx_config is not None


#: The findings about how a location proxies: moot when the TLS handshake was refused for the name.
_PROXYING = frozenset({*nf.UPGRADE_CODES, *nf.BACKEND_CODES, NGINX_NOT_PROXIED, NGINX_PATH_REWRITTEN})


def _live_severity(ctx: Context, f: nf.Finding) -> tuple[str, str]:
    """The finding's severity once the live checks are known, and what they said (empty: nothing)."""
    results = ctx.results
    codes = {r.code for r in results.values() if r.code}
    outcome = ctx.facts.get("outcome")
    upgraded = outcome is not None and getattr(outcome, "kind", None) == "upgraded"
    status = getattr(outcome, "status", None) if outcome is not None else None
    refused = codes & {TLS_NO_SNI, TLS_UNKNOWN_NAME}
    if refused and f.code in _PROXYING:
        # The TLS handshake was refused for the server name before any HTTP: the block matched for this
        # URL never proxies anything, and fixing it is not the fix (the tls check names the right name).
        return "note", _(
            "the TLS handshake was refused for the server name ({code}) before any HTTP: no request reaches this block's locations"
        ).format(code=sorted(refused)[0])
    if causes.has(f.code, Tag.UPGRADE_LOST):
        live = causes.observed(codes, Tag.UPGRADE_LOST)
        if live:
            return "fail", _("the live handshake found {live}").format(live=sorted(live)[0])
        if upgraded:
            return (
                "warn",
                _("yet the live handshake upgraded: the running nginx may not have reloaded this file"),
            )
    if causes.has(f.code, Tag.BACKEND_DOWN) or f.code == NGINX_NOT_PROXIED:
        live = causes.observed(codes, Tag.BACKEND_DOWN)
        if f.code == NGINX_PROXY_PASS_WRONG_PORT:
            # Whatever holds that port answers nginx: a failed upgrade through it is the symptom. Not a TLS
            # failure (tls.client-cert-required...): nginx decides those itself, before any proxy_pass.
            failed = ctx.results.get("handshake")
            if (
                failed is not None
                and failed.status is Status.FAIL
                and failed.code is not None
                and failed.code.startswith("handshake.")
            ):
                live.add(failed.code)
        if live:
            return "fail", _("the live handshake found {live}").format(live=sorted(live)[0])
        if upgraded and causes.has(f.code, Tag.BACKEND_DOWN):
            return "note", _("the backend answered 101 through nginx: it is a WebSocket server after all")
        if upgraded:
            return "warn", _(STALE)
    if f.code == NGINX_PATH_REWRITTEN:
        if PROXY_PATH_MISMATCH in codes or status == 404:
            return "fail", _("the backend answers 404 at the rewritten path")
        if upgraded:
            return "note", ""
    cut = causes.observed(codes, Tag.IDLE_CUT) if causes.has(f.code, Tag.IDLE_CUT) else set()
    if cut:
        return "fail", _("the idle hold found {codes}").format(codes=sorted(cut)[0])
    if causes.has(f.code, Tag.IDLE_CUT) and f.seconds is not None:
        return _timeout_seen(ctx, f, f.seconds)
    if f.code == NGINX_LEAF_ONLY_CERTIFICATE and TLS_INCOMPLETE_CHAIN in codes:
        return "fail", _("the tls check found tls.incomplete-chain")
    return f.severity, ""


def _timeout_seen(ctx: Context, f: nf.Finding, seconds: float) -> tuple[str, str]:
    """A proxy timeout weighed against what the session/hold saw the server do (the common rule of
    :func:`lokin_doctor.proxies.base.timeout_seen`)."""
    from lokin_doctor.proxies.base import timeout_seen

    return timeout_seen(ctx, seconds, f.severity)


def verdict(ctx: Context, analysis: nf.Analysis, ev: dict[str, Any]) -> CheckResult:
    weighed = [(f, *_live_severity(ctx, f)) for f in analysis.findings]
    refused = sorted({r.code for r in ctx.results.values() if r.code} & {TLS_NO_SNI, TLS_UNKNOWN_NAME})
    if refused and any(f.code in _PROXYING for f in analysis.findings):
        evidence = {**ev, **analysis.evidence()}
        evidence["findings"] = [{**f.to_dict(), "severity": sev} for f, sev, _said in weighed]
        return skip(
            "nginx",
            _(
                "{describe} is the block for this URL, but the TLS handshake was refused for the server name ({code}) before any HTTP, so its locations are never reached: see the tls check"
            ).format(describe=analysis.describe(), code=refused[0]),
            **evidence,
        )
    rank = {"fail": 3, "warn": 2, "note": 1}
    evidence = {**ev, **analysis.evidence()}
    evidence["findings"] = [
        {**f.to_dict(), "severity": sev, **({"live": said} if said else {})} for f, sev, said in weighed
    ]
    problems = [(f, sev, said) for f, sev, said in weighed if sev in ("fail", "warn")]
    if not problems:
        notes = "; ".join(f"{f.where}: {f.message}" for f, _, _ in weighed)
        return ok(
            "nginx",
            _("{describe} proxies the upgrade{value}").format(
                describe=analysis.describe(), value=f" (note: {notes})" if notes else ""
            ),
            **evidence,
        )
    worst = max(rank[s] for _, s, _ in problems)
    top = [p for p in problems if rank[p[1]] == worst]
    top.sort(key=lambda p: CODE_ORDER.index(p[0].code) if p[0].code in CODE_ORDER else len(CODE_ORDER))
    first, __, said = top[0]
    codes = {f.code for f, _, _ in problems}
    ws_port = ctx.facts.get("nginx_ws_port")
    block = nf.fixed_block(analysis, codes, ws_port)
    if first.code == NGINX_LEAF_ONLY_CERTIFICATE:
        hint = _(
            "point ssl_certificate at the full chain (leaf then intermediates, e.g. Let's Encrypt's fullchain.pem, not cert.pem) at {where}; {RELOAD}"
        ).format(where=first.where, RELOAD=_(RELOAD))
    else:
        if analysis.adds_location:
            hint = _("add this location to the server block at {where}:\n{block}\n{RELOAD}").format(
                where=analysis.server.where, block=block, RELOAD=_(RELOAD)
            )
        else:
            where = (analysis.location or analysis.server).where
            hint = _("replace the location block at {where} with:\n{block}\n{RELOAD}").format(
                where=where, block=block, RELOAD=_(RELOAD)
            )
        if analysis.uses_map:
            hint += _(" (keep the map that defines {uses_map} in the http block)").format(
                uses_map=analysis.uses_map
            )
    others = len(problems) - 1
    summary = f"{first.where}: {first.message}" + (f" ({said})" if said else "")
    if others:
        summary += _("; and {others} more finding(s) in {describe}").format(
            others=others, describe=analysis.describe()
        )
    evidence["fixed_block"] = block
    make = fail if worst == 3 else warn
    return make("nginx", first.code, summary, hint, **evidence)


def finalize(ctx: Context, result: CheckResult) -> CheckResult:
    """Weigh the config's findings against what the live checks saw (see the module docstring)."""
    analysis = ctx.facts.get("nginx")
    if analysis is None or result.status is Status.SKIP:
        return result
    return replace(
        verdict(ctx, analysis, ctx.facts.get("nginx_evidence") or {}), duration_ms=result.duration_ms
    )
