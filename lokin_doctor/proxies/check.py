"""``proxy-config``: the configuration of the HAProxy, Apache httpd or Caddy in front of the server, read on
this machine (nginx has its own check, ``nginx``).

Which proxy: ``--proxy-config FILE`` (its syntax says which), else the one holding the target's port, as
the ``port`` check saw it (:func:`lokin_doctor.proxies.check.serving_proxy`: asked once; no proxy on the port
costs nothing). Which configuration: the running instance's ``-f``/``--config`` argument, else the packaged
default path. The reader (:mod:`lokin_doctor.proxies.haproxy.reader`, ``apache.reader``, ``caddy.reader``)
loads it with its includes, picks the route that serves the target by that proxy's own rules and returns
findings with ``file:line``, the current text and the corrected text.

``finalize`` weighs the findings against the live checks once they are done, as nginx's check does: a live
symptom (the handshake's 426, 503, 404; the hold's drop) confirms the matching line, which becomes the root
cause; a live 101 turns a "breaks the upgrade" finding into a warning (the file may not be the one running).

Facts written: ``proxy_config`` (a :class:`State`).
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from lokin_doctor import causes
from lokin_doctor.causes import Tag
from lokin_doctor.causes.apache import APACHE_NO_VIRTUALHOST
from lokin_doctor.causes.caddy import CADDY_NO_SITE
from lokin_doctor.causes.haproxy import HAPROXY_NO_FRONTEND
from lokin_doctor.causes.http import (
    HANDSHAKE_FORBIDDEN,
    HANDSHAKE_UNAVAILABLE,
)
from lokin_doctor.causes.production import (
    ORIGINS_PAGE_ORIGIN_REJECTED,
    PROXY_PATH_MISMATCH,
)
from lokin_doctor.i18n import _
from lokin_doctor.model import CheckResult, Status, fail, noted, ok, skip, warn
from lokin_doctor.proxies import base
from lokin_doctor.proxies.detect import recognise

if TYPE_CHECKING:
    from lokin_doctor.context import Context
    from lokin_doctor.instruments.sysinfo import ProcInfo

CHECK_ID = "proxy-config"

#: The readers, imported only for the proxy found.
READERS = {
    "haproxy": "lokin_doctor.proxies.haproxy.reader",
    "apache": "lokin_doctor.proxies.apache.reader",
    "caddy": "lokin_doctor.proxies.caddy.reader",
}
TITLES = {"haproxy": "HAProxy", "apache": "Apache httpd", "caddy": "Caddy"}
NO_LISTENER = {"haproxy": HAPROXY_NO_FRONTEND, "apache": APACHE_NO_VIRTUALHOST, "caddy": CADDY_NO_SITE}

#: Most telling first: the code a result carries when several findings are present.
ROLE_ORDER = (
    base.ROUTE,
    base.DENY,
    base.UPGRADE,
    base.PATH,
    base.BACKEND,
    base.ORIGIN,
    base.TIMEOUT,
    base.ADVICE,
)


def reader_for(kind: str) -> base.ProxyReader:
    return importlib.import_module(READERS[kind]).READER  # type: ignore[no-any-return]


def kind_of(info: ProcInfo) -> str | None:
    """The proxy kind (``nginx``, ``haproxy``, ``apache``, ``caddy``...) this process is, or None."""
    from lokin_doctor.checks.host.port import proxy_name

    name = proxy_name(info)
    return base.KINDS.get(name, name) if name else None


def serving_proxy(facts: Mapping[str, Any]) -> str | None:
    """Which proxy serves the target's port, from the ``port`` check's facts (asked once per run).

    ``port_proxy`` when every foreign owner is a proxy; else the first owner that is one; None when no
    proxy holds the port (or the owners are hidden from this user).
    """
    named = facts.get("port_proxy")
    if named:
        return base.KINDS.get(str(named), str(named))
    owners: Mapping[int, ProcInfo] = facts.get("port_owners") or {}
    for info in owners.values():
        kind = kind_of(info)
        if kind is not None:
            return kind
    return None


@dataclass
class State:
    kind: str
    title: str
    route: base.Route
    findings: list[base.Finding]
    evidence: dict[str, Any] = field(default_factory=dict)
    reload: str = ""


async def check(ctx: Context) -> CheckResult:
    settings = ctx.settings
    target = ctx.target
    given = settings.proxy_config
    local = bool(ctx.facts.get("local"))
    if given is None and not local:
        return skip(
            CHECK_ID,
            _(
                "skipped: {host} is not this machine; run lokin-doctor on the proxy, or give --proxy-config FILE"
            ).format(host=target.host),
        )
    running: base.Running | None = None
    if given is not None:
        kind = recognise(given)
        if kind is None:
            return skip(
                CHECK_ID,
                _("skipped: {path} reads as no HAProxy, Apache or Caddy configuration").format(path=given),
            )
        reader = reader_for(kind)
        path, source = given, "--proxy-config"
    else:
        kind_found = serving_proxy(ctx.facts)
        if kind_found is None:
            owners = ctx.facts.get("port_owners") or {}
            from lokin_doctor.checks.host.port import describe_owner

            held = "; ".join(describe_owner(o) for o in owners.values())
            said = (
                _("port {port} is held by {held}, no HAProxy, Apache or Caddy").format(
                    port=target.port, held=held
                )
                if held
                else _("no HAProxy, Apache or Caddy holds port {port}").format(port=target.port)
            )
            return skip(
                CHECK_ID,
                _("not applicable: {said} (give --proxy-config FILE to read one)").format(said=said),
                applicable=False,
            )
        if kind_found == "nginx":
            return skip(
                CHECK_ID,
                _("not applicable: nginx holds port {port}; the nginx check reads its configuration").format(
                    port=target.port
                ),
                applicable=False,
            )
        if kind_found not in READERS:
            return skip(
                CHECK_ID,
                _(
                    "not applicable: {kind} holds port {port}; only HAProxy, Apache httpd and Caddy configurations are read here"
                ).format(kind=kind_found, port=target.port),
                applicable=False,
            )
        kind = kind_found
        reader = reader_for(kind)
        listeners = ctx.facts.get("listeners") or []
        port_pids = {li.pid for li in listeners if li.port == target.port and li.pid is not None}
        found = await asyncio.to_thread(reader.find_running, port_pids)
        if found is None:
            return skip(
                CHECK_ID,
                _("skipped: {title} holds port {port} but its process could not be read").format(
                    title=reader.title, port=target.port
                ),
            )
        running = found
        path, source = found.config, found.source
    try:
        config = await asyncio.to_thread(reader.load, path, running)
    except base.ConfigError as exc:
        return skip(
            CHECK_ID,
            _("skipped: {exc} (run as root to read {title}'s configuration)").format(
                exc=exc, title=reader.title
            ),
            config=path,
            source=source,
        )
    try:
        live = await reader.live(ctx, config, running)
    except (OSError, base.ConfigError) as exc:
        live = {"live_error": str(exc)}
    config = live.pop("config", config)
    version = await asyncio.to_thread(reader.version, running, min(2.0, ctx.remaining()))
    addresses = list(ctx.facts.get("reachable") or ctx.facts.get("addresses") or [])
    address = str(addresses[0]) if addresses else (str(target.ip) if target.ip else None)
    route = reader.route(
        config,
        host=target.host,
        port=target.port,
        path=target.resource,
        address=address,
        secure=target.secure,
    )
    ev: dict[str, Any] = {
        "proxy": kind,
        "source": source,
        "config": path,
        "files": list(getattr(config, "files", ()) or [path]),
        **({"pid": running.pid} if running else {}),
        **({"version": ".".join(map(str, version))} if version else {}),
        **{
            k: v
            for k, v in live.items()
            if k in ("stats_socket", "stats_error", "admin", "modules_from", "live_error")
        },
    }
    if route is None:
        if given is not None:
            return NO_LISTENER[kind].warn(
                CHECK_ID,
                _("nothing in {path} listens on port {port}").format(path=path, port=target.port),
                NO_LISTENER[kind].fix_text(),
                **ev,
            )
        return skip(
            CHECK_ID,
            _("not applicable: nothing in {path} listens on port {port}").format(path=path, port=target.port),
            **ev,
        )
    facts = await _facts(ctx, route, local, version, live)
    if facts.ping_interval is not None:
        ev["ping_interval_s"] = facts.ping_interval
    findings = reader.findings(route, facts)
    state = State(kind, reader.title, route, findings, ev, reader.hint_reload())
    ctx.facts["proxy_config"] = state
    return verdict(ctx, state)


async def _facts(
    ctx: Context, route: base.Route, local: bool, version: tuple[int, ...] | None, live: dict[str, Any]
) -> base.Facts:
    from lokin_doctor.checks.host.port import scan_all
    from lokin_doctor.instruments.sysinfo import find_processes

    if not local:
        return base.Facts(hold=ctx.settings.hold, is_local=lambda _h: False, version=version, live=live)
    listeners = await scan_all(ctx)
    matches = await ctx.blocking(
        "processes", lambda: find_processes(ctx.settings.process_patterns, listeners)
    )
    proxy_pids = {o.pid for o in (ctx.facts.get("port_owners") or {}).values() if kind_of(o)}
    ws_ports = frozenset(p for m in matches if m.pid not in proxy_pids for p in m.listening_ports)
    known = {m.pid for m in matches} | proxy_pids
    other = frozenset(li.port for li in listeners if li.pid is not None and li.pid not in known)
    local_ups = [u for u in route.upstreams if base.on_this_machine(u.host)]
    ping, ping_source = await base.ping_interval(ctx, local_ups)
    return base.Facts(
        listening_ports=frozenset(li.port for li in listeners),
        ws_ports=ws_ports or None,
        other_ports=other,
        ping_interval=ping,
        ping_source=ping_source,
        hold=ctx.settings.hold,
        is_local=base.on_this_machine,
        version=version,
        live=live,
    )


def _live_severity(ctx: Context, state: State, f: base.Finding) -> tuple[str, str]:
    """The finding's severity once the live checks are known, and what they said (empty: nothing)."""
    codes = {r.code for r in ctx.results.values() if r.code}
    outcome = ctx.facts.get("outcome")
    upgraded = outcome is not None and getattr(outcome, "kind", None) == "upgraded"
    status = getattr(outcome, "status", None) if outcome is not None else None
    handshake = ctx.results.get("handshake")
    failed = (
        handshake.code
        if handshake is not None
        and handshake.status is Status.FAIL
        and handshake.code
        and handshake.code.startswith("handshake.")
        else None
    )
    stale = _("yet the live handshake upgraded: the running {title} may not have loaded this file").format(
        title=state.title
    )
    if f.role == base.UPGRADE:
        live = causes.observed(codes, Tag.UPGRADE_LOST)
        if live or failed:
            return "fail", _("the live handshake found {live}").format(
                live=sorted(live)[0] if live else failed
            )
        if upgraded and f.severity == "fail":
            return "warn", stale
    elif f.role == base.BACKEND:
        # a 503 through the proxy is its backend's absence too (no healthy server, or none at all)
        live = causes.observed(codes, Tag.BACKEND_DOWN) | (codes & {HANDSHAKE_UNAVAILABLE})
        if live:
            return "fail", _("the live handshake found {live}").format(live=sorted(live)[0])
        if upgraded:
            return "note", _("the backend answered 101 through {title}").format(title=state.title)
    elif f.role in (base.ROUTE, base.DENY):
        if failed:
            return "fail", _("the live handshake found {live}").format(live=failed)
        if upgraded and f.severity in ("fail", "warn"):
            return "warn", stale
    elif f.role == base.PATH:
        if PROXY_PATH_MISMATCH in codes or status == 404:
            return "fail", _("the backend answers 404 at the path it receives")
        if upgraded:
            return "note", _("the backend upgraded at the path it receives")
    elif f.role == base.ORIGIN:
        live = codes & {HANDSHAKE_FORBIDDEN, ORIGINS_PAGE_ORIGIN_REJECTED}
        if live:
            return "fail", _("the live handshake found {live}").format(live=sorted(live)[0])
    elif f.role == base.TIMEOUT:
        held = causes.observed(codes, Tag.IDLE_CUT)
        if held:
            return "fail", _("the idle hold found {codes}").format(codes=sorted(held)[0])
        if f.seconds is not None:
            return base.timeout_seen(ctx, f.seconds, f.severity)
    return f.severity, ""


def _fix(f: base.Finding) -> str:
    if not f.corrected:
        return _("delete the line at {where}:\n{current}").format(where=f.where, current=f.current)
    if f.current == f.corrected:
        return _("at {where}: {current}\n{fix}").format(
            where=f.where, current=f.current, fix=f.code.fix_text()
        )
    return _("at {where} replace:\n{current}\nwith:\n{corrected}").format(
        where=f.where, current=f.current, corrected=f.corrected
    )


def verdict(ctx: Context, state: State) -> CheckResult:
    weighed = [(f, *_live_severity(ctx, state, f)) for f in state.findings]
    rank = {"fail": 3, "warn": 2, "note": 1}
    evidence = {**state.evidence, **state.route.evidence()}
    evidence["findings"] = [
        {**f.to_dict(), "severity": sev, **({"live": said} if said else {})} for f, sev, said in weighed
    ]
    problems = [(f, sev, said) for f, sev, said in weighed if sev in ("fail", "warn")]
    described = _("{title}: {route}").format(title=state.title, route=state.route.description)
    if not problems:
        ups = ", ".join(u.url() for u in state.route.upstreams)
        summary = (
            _("{described} proxies the WebSocket to {upstreams}").format(described=described, upstreams=ups)
            if ups
            else _("{described} serves the target").format(described=described)
        )
        notes = "; ".join(
            f"{f.where}: {f.message}" + (f" ({said})" if said else "") for f, _s, said in weighed
        )
        if notes:
            return noted(CHECK_ID, summary, notes, **evidence)
        return ok(CHECK_ID, summary, **evidence)
    worst = max(rank[s] for _f, s, _w in problems)
    top = [p for p in problems if rank[p[1]] == worst]
    top.sort(key=lambda p: ROLE_ORDER.index(p[0].role) if p[0].role in ROLE_ORDER else len(ROLE_ORDER))
    first, _sev, said = top[0]
    fixes = [_fix(f) for f, _s, _w in sorted(problems, key=lambda p: -rank[p[1]])]
    hint = "\n".join(fixes) + "\n" + _("then check and reload: {command}").format(command=state.reload)
    summary = f"{first.where}: {first.message}" + (f" ({said})" if said else "")
    others = len(problems) - 1
    if others:
        summary += _("; and {others} more finding(s) in {described}").format(
            others=others, described=described
        )
    make = fail if worst == 3 else warn
    return make(CHECK_ID, first.code, summary, hint, **evidence)


def finalize(ctx: Context, result: CheckResult) -> CheckResult:
    """Weigh the config's findings against what the live checks saw (see the module docstring)."""
    state = ctx.facts.get("proxy_config")
    if state is None or result.status is Status.SKIP:
        return result
    return replace(verdict(ctx, state), duration_ms=result.duration_ms)
