"""Run the checks in dependency order, concurrently, under one deadline; pick the root cause.

A check whose prerequisite failed is skipped ("skipped: tcp failed") so the report shows one
root cause, not a cascade. Independent checks (process, port, tcp...) run at the same time, so a
silent host costs one timeout. Check modules are imported only when they run.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace

from lokin_doctor.causes.internal import INTERNAL_ERROR, check_timeout
from lokin_doctor.context import Context
from lokin_doctor.i18n import _
from lokin_doctor.model import CheckResult, Report, RootCause, Status, fail, skip
from lokin_doctor.settings import Settings

#: Extra time a check gets past the deadline to turn its own timeout into a diagnosis.
GRACE_S = 0.25

CheckFn = Callable[[Context], Awaitable[CheckResult]]


@dataclass(frozen=True)
class CheckSpec:
    """A check of the chain.

    Attributes:
        id: stable kebab-case id (``--only`` takes it; JSON ``checks[].id``).
        title: what it checks, for ``--list-checks``.
        func: ``module:function`` of the coroutine, imported only when the check runs.
        requires: checks that must pass (ok/warn) first; otherwise this one is skipped.
        after: checks that must have finished first, whatever their outcome.
        local_only: needs the target to be this machine (psutil checks).
        applies: returns a skip reason when the check does not apply to these settings.
        extra_time: seconds the check may run past the run's deadline (``--hold``).
    """

    id: str
    title: str
    func: str
    requires: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    local_only: bool = False
    applies: Callable[[Settings], str | None] | None = None
    extra_time: Callable[[Settings], float] | None = None


def _secure_only(s: Settings) -> str | None:
    return None if s.target.secure else _("not a wss:// target")


def _hold_only(s: Settings) -> str | None:
    return None if s.hold else _("no --hold given")


def _page_only(s: Settings) -> str | None:
    return None if s.page_url else _("no --page-url given")


def _named_host(s: Settings) -> str | None:
    if s.target.ip is not None:
        return _("an IP address, no DNS records")
    if s.target.host == "localhost" or s.target.host.endswith(".localhost"):
        return _("localhost is not resolved through DNS")
    if s.resolved(s.target.host, s.target.port) is not None:
        return _("--resolve gives the address of {host}").format(host=s.target.host)
    return None


def _is_this_machine(host: str, resolved: tuple[str, ...] | None = None) -> bool:
    """Whether the URL's host obviously means this machine, decided by name (or by the addresses
    --resolve gives it) before any DNS look-up."""
    import socket

    from lokin_doctor.instruments.sysinfo import is_local_address

    if resolved:
        return all(is_local_address(a) for a in resolved)
    if host == "localhost" or host.endswith(".localhost") or is_local_address(host):
        return True
    return host.lower() == socket.gethostname().lower()


CHECKS: tuple[CheckSpec, ...] = (
    CheckSpec(
        "dns",
        "name resolution: every IPv4/IPv6 address of the host (system resolver or --dns-server)",
        "lokin_doctor.checks.chain.dns:check",
    ),
    CheckSpec(
        "dns-records",
        "DNS records with dnspython: A/AAAA, CNAME chain, agreement with the system resolver",
        "lokin_doctor.checks.production.dnsrecords:check",
        applies=_named_host,
    ),
    CheckSpec(
        "process",
        "the server process: running, its pid, uptime, memory, CPU, listening ports",
        "lokin_doctor.checks.host.process:check",
        requires=("dns",),
        local_only=True,
    ),
    CheckSpec(
        "port",
        "who listens on the port on this machine, and on which address",
        "lokin_doctor.checks.host.port:check",
        requires=("dns",),
        local_only=True,
    ),
    # The write-up's checklist on this machine: the proxy's own config, auto-restart, the firewall.
    CheckSpec(
        "nginx",
        "nginx's configuration (running nginx or --nginx-config): the server/location serving the URL, file:line",
        "lokin_doctor.proxies.nginx.check:check",
        requires=("dns",),
        after=("port", "process"),
    ),
    CheckSpec(
        "proxy-config",
        "the HAProxy, Apache httpd or Caddy in front (running, or --proxy-config): the route serving the URL, file:line",
        "lokin_doctor.proxies.check:check",
        requires=("dns",),
        after=("port", "process"),
    ),
    CheckSpec(
        "supervisor",
        "auto-restart: what would restart the server (systemd, pm2, supervisord, nodemon, container, a terminal)",
        "lokin_doctor.checks.host.supervisor:check",
        requires=("dns",),
        after=("port", "process", "nginx", "proxy-config"),
        local_only=True,
    ),
    CheckSpec(
        "firewall",
        "nftables/iptables rules of this machine that drop or reject the target port (as root)",
        "lokin_doctor.checks.host.firewall:check",
        requires=("dns",),
        local_only=True,
    ),
    CheckSpec(
        "forward",
        "the way out: direct, or through the forward proxy of HTTPS_PROXY/HTTP_PROXY/ALL_PROXY or --proxy "
        "(NO_PROXY applied); through one, its answer to CONNECT",
        "lokin_doctor.checks.chain.forward:check",
    ),
    CheckSpec(
        "tcp",
        "TCP connect to each address: refused, dropped (timeout) or unreachable (through a proxy: its tunnel)",
        "lokin_doctor.checks.chain.tcp:check",
        requires=("dns",),
        after=("forward",),
    ),
    CheckSpec(
        "tls",
        "TLS: version, cipher, ALPN, certificate names, issuer, expiry, chain",
        "lokin_doctor.checks.chain.tls:check",
        requires=("tcp",),
        applies=_secure_only,
    ),
    CheckSpec(
        "handshake",
        "a complete RFC 6455 opening handshake, Sec-WebSocket-Accept validated",
        "lokin_doctor.checks.chain.handshake:check",
        requires=("tcp",),
        after=("tls",),
    ),
    CheckSpec(
        "socketio",
        "a Socket.IO/Engine.IO server: recognised from its answers at the URL and /socket.io/, then its "
        "open packet, ping interval and a Socket.IO CONNECT verified",
        "lokin_doctor.checks.chain.socketio:check",
        requires=("tcp",),
        after=("handshake",),
    ),
    CheckSpec(
        "session",
        "after the upgrade: greeting, client id, ping round-trip, --send/--expect, clean close",
        "lokin_doctor.checks.chain.session:check",
        requires=("handshake",),
    ),
    CheckSpec(
        "backends",
        "every address of the name: TCP, TLS and the handshake on each (load-balanced backends)",
        "lokin_doctor.checks.production.backends:check",
        requires=("dns",),
        after=("tcp",),
    ),
    CheckSpec(
        "proxy",
        "the reverse proxy: recognised by its headers, compared with the backend it fronts",
        "lokin_doctor.checks.production.proxy:check",
        after=("handshake",),
    ),
    CheckSpec(
        "variants",
        "when the target fails: nearby URLs (ws/wss, ports 443/80/8080, / vs /ws) that work",
        "lokin_doctor.checks.production.variants:check",
        requires=("dns",),
    ),
    CheckSpec(
        "page",
        "the page's view: derived URL, mixed content, Content-Security-Policy connect-src",
        "lokin_doctor.checks.production.page:check",
        applies=_page_only,
    ),
    CheckSpec(
        "origins",
        "origin matrix: no Origin, the page's Origin, a foreign Origin",
        "lokin_doctor.checks.production.origins:check",
        after=("handshake",),
    ),
    CheckSpec(
        "hold",
        "an idle connection held for --hold seconds: when and how it died",
        "lokin_doctor.checks.chain.hold:check",
        requires=("handshake",),
        applies=_hold_only,
        extra_time=lambda s: s.hold or 0.0,
    ),
    CheckSpec(
        "platform",
        "a CDN or cloud load balancer in front (headers, names, addresses, certificate): its documented "
        "WebSocket timeout set against the server's pings and the --hold drop",
        "lokin_doctor.checks.production.platform:check",
        requires=("handshake",),
        after=("dns-records", "tls", "socketio", "session", "hold"),
    ),
)
CHECKS += (
    CheckSpec(
        "browser",
        "--browser: what Chromium sees on --page-url (the WebSockets it opens, blocks, its errors), "
        "joined with the chain",
        "lokin_doctor.checks.production.browser:check",
        # Every finding it may quote or defer to (not hold: that one runs past the deadline).
        after=(
            *("dns", "dns-records", "process", "port", "tcp", "tls", "handshake", "session"),
            *("backends", "proxy", "variants", "page", "origins", "nginx", "proxy-config"),
            *("supervisor", "firewall"),
        ),
        applies=lambda s: None if s.browser else "no --browser given",
    ),
)
BY_ID = {c.id: c for c in CHECKS}

#: The local checklist (`all` against this machine) and the remote chain (probe-wss).
#: ``proxy`` is local too: nginx on this machine in front of the server on 8080 is the LOK IN layout.
LOCAL_CHECKS: tuple[str, ...] = (
    "dns",
    "forward",
    "process",
    "port",
    "tcp",
    "tls",
    "handshake",
    "socketio",
    "session",
    "proxy",
    "variants",
    "hold",
    "platform",
)
LOCAL_CHECKS += ("nginx", "proxy-config", "supervisor", "firewall")
REMOTE_CHECKS = (
    "dns",
    "dns-records",
    "forward",
    "tcp",
    "tls",
    "handshake",
    "socketio",
    "session",
    "backends",
    "proxy",
    "variants",
    "page",
    "origins",
    "hold",
    "platform",
)

#: Which failure is the root cause when several fail: the deepest link that explains the others.
#: ``browser`` comes first: it fails only for page-side causes, which explain the chain's findings
#: (a page opening ws://localhost makes the chain test localhost); server-side ones are its warnings.
ROOT_CAUSE_ORDER = (
    "browser",
    "dns",
    "dns-records",
    # A broken way out through a forward proxy explains every connection that follows.
    "forward",
    "process",
    "supervisor",
    "port",
    "firewall",
    "page",
    "nginx",
    "proxy-config",
    "proxy",
    # A Socket.IO server recognised explains the handshake's failure (a plain client, a refused CONNECT).
    "socketio",
    "variants",
    "tcp",
    "tls",
    "handshake",
    "origins",
    "session",
    "backends",
    # A platform's timeout that matches the hold's drop explains it.
    "platform",
    "hold",
)


#: Checks a check watches without waiting for them: ``variants`` reads their verdict as soon as it is
#: known and starts its own probes early when it is slow to come. ``--only`` selects them with it.
WATCHES = {"variants": ("tcp", "handshake")}


class UnknownCheckError(ValueError):
    pass


def _load(spec: CheckSpec) -> CheckFn:
    module_name, _, func_name = spec.func.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, func_name)  # type: ignore[no-any-return]


def select_checks(
    settings: Settings, only: Iterable[str] | None, remote: bool | None = None
) -> list[CheckSpec]:
    """The checks to run: ``only`` plus what they require, or the default checklist."""
    if only:
        wanted: set[str] = set()
        for item in only:
            for check_id in item.split(","):
                check_id = check_id.strip()
                if check_id not in BY_ID:
                    raise UnknownCheckError(
                        f"unknown check {check_id!r}; known checks: {', '.join(BY_ID)} (see all --list-checks)"
                    )
                wanted.add(check_id)
        stack = list(wanted)
        while stack:
            spec = BY_ID[stack.pop()]
            for dep in (*spec.requires, *spec.after, *WATCHES.get(spec.id, ())):
                if dep not in wanted:
                    wanted.add(dep)
                    stack.append(dep)
        if settings.browser:
            wanted.add("browser")  # what the browser saw, next to the checks asked for (not their deps)
        return [c for c in CHECKS if c.id in wanted]
    ids = set(LOCAL_CHECKS)
    target = settings.target
    if (
        remote
        or target.secure
        or settings.page_url
        or settings.dns_server
        or settings.backend
        or not _is_this_machine(target.host, settings.resolved(target.host, target.port))
    ):
        # A name that is not obviously this machine is the production path (its DNS records, proxy,
        # origins...), even when DNS later says it points here: decided by name, before any traffic.
        ids |= set(REMOTE_CHECKS)
    if settings.browser:
        ids.add("browser")
    return [c for c in CHECKS if c.id in ids]


def root_cause(results: dict[str, CheckResult]) -> RootCause | None:
    for check_id in ROOT_CAUSE_ORDER:
        r = results.get(check_id)
        if r is not None and r.status is Status.FAIL and r.code and r.hint:
            return RootCause(r.id, r.code, r.summary, r.hint)
    for r in results.values():  # checks outside the order, if any
        if r.status is Status.FAIL and r.code and r.hint:
            return RootCause(r.id, r.code, r.summary, r.hint)
    return None


async def run_checks(ctx: Context, specs: list[CheckSpec]) -> list[CheckResult]:
    loop = asyncio.get_running_loop()
    selected = {s.id for s in specs}
    done = {s.id: asyncio.Event() for s in specs}

    async def run_one(spec: CheckSpec) -> None:
        try:
            for dep in (*spec.requires, *spec.after):
                if dep in done:
                    await done[dep].wait()
            ctx.results[spec.id] = await _execute(spec)
        finally:
            done[spec.id].set()

    async def _execute(spec: CheckSpec) -> CheckResult:
        reason = spec.applies(ctx.settings) if spec.applies else None
        if reason:
            return skip(spec.id, _("not applicable: {reason}").format(reason=reason), applicable=False)
        for dep in spec.requires:
            if dep not in selected:
                continue
            dep_result = ctx.results[dep]
            if dep_result.status is Status.FAIL:
                return skip(spec.id, _("skipped: {dep} failed").format(dep=dep))
            if dep_result.status is Status.SKIP:
                return skip(spec.id, _("skipped: {dep} was skipped").format(dep=dep))
        if spec.local_only and not ctx.facts.get("local", False):
            return skip(
                spec.id,
                _(
                    "skipped: {host} is not this machine; "
                    "run lokin-doctor on the server to check its process and port"
                ).format(host=ctx.settings.target.host),
            )
        t0 = loop.time()
        extra = spec.extra_time(ctx.settings) if spec.extra_time else 0.0
        try:
            func = _load(spec)
            async with asyncio.timeout_at(ctx.deadline + extra + GRACE_S):
                result = await func(ctx)
        except TimeoutError:
            result = fail(
                spec.id,
                check_timeout(spec.id),
                _("no result within the {timeout} s deadline").format(timeout=f"{ctx.settings.timeout:g}"),
                _(
                    "the host or this machine is too slow to answer; raise --timeout or check the network path"
                ),
            )
        except Exception as exc:  # one check's bug must not hide the others' findings
            if ctx.debug:
                traceback.print_exc(file=sys.stderr)
            result = fail(
                spec.id,
                INTERNAL_ERROR,
                _("lokin-doctor's {check} check crashed: {error}").format(
                    check=spec.id, error=f"{type(exc).__name__}: {exc}"
                ),
                _("re-run with --debug to see the traceback, and report it"),
            )
        return replace(result, duration_ms=(loop.time() - t0) * 1000)

    await asyncio.gather(*(run_one(s) for s in specs))
    # A check module may define finalize(ctx, result): a second look once every result is known
    # (e.g. the handshake naming the port's owner), so no check waits on another just for a hint.
    for spec in specs:
        result = ctx.results[spec.id]
        if result.status is Status.SKIP:
            continue
        finalize = getattr(importlib.import_module(spec.func.partition(":")[0]), "finalize", None)
        if finalize is not None:
            ctx.results[spec.id] = replace(finalize(ctx, result), duration_ms=result.duration_ms)
    return [ctx.results[s.id] for s in specs]


async def _run_async(
    settings: Settings,
    only: Iterable[str] | None,
    embedded: bool,
    debug: bool,
    deadline: float | None = None,
) -> Report:
    started = time.perf_counter()
    if embedded:
        from lokin_doctor.server import ServerConfig, running_server

        async with running_server(ServerConfig(host="127.0.0.1", port=0, quiet=True)) as srv:
            from lokin_doctor.target import parse_target

            # The server under test is this process: other servers on the machine are not its concern.
            settings = replace(
                settings,
                target=parse_target(f"ws://127.0.0.1:{srv.port}/"),
                process_patterns=(r"lokin[-_]doctor\b.*--embedded",),
            )
            return await _run_async(settings, only, embedded=False, debug=debug)
    loop = asyncio.get_running_loop()
    if deadline is None:  # several targets share one deadline, given by run_reports
        deadline = loop.time() + settings.timeout
    browser_facts: dict[str, object] = {}
    if settings.browser and settings.page_url:
        # Loaded by name like every check's function: the browser check runs sub-chains through this module.
        prestep = importlib.import_module(BY_ID["browser"].func.partition(":")[0]).prestep

        # The page first: the chain then runs on the URL it opened, under the same deadline (counted
        # from when Chromium was up: starting it is not network time).
        settings, browser_facts, deadline = await prestep(settings)
    ctx = Context(settings=settings, deadline=deadline, debug=debug)
    ctx.facts.update(browser_facts)
    specs = select_checks(settings, only)
    try:
        results = await run_checks(ctx, specs)
    finally:
        conn = ctx.facts.get("conn")
        if conn is not None:
            conn.abort()
    by_id = {r.id: r for r in results}
    return Report(
        target=settings.target.url,
        results=tuple(results),
        root_cause=root_cause(by_id),
        duration_ms=(time.perf_counter() - started) * 1000,
    )


async def diagnose(settings: Settings, only: Iterable[str] | None = None, debug: bool = False) -> Report:
    """One run of the checklist in the running event loop (the sentinel's), under its own deadline."""
    if only:
        select_checks(settings, only)  # unknown ids: UnknownCheckError before any traffic
    return await _run_async(settings, list(only) if only else None, False, debug)


def run_report(
    settings: Settings, only: Iterable[str] | None = None, embedded: bool = False, debug: bool = False
) -> Report:
    """Run the checklist and return the report (blocking)."""
    if only:
        select_checks(settings, only)  # unknown ids are a usage error before any traffic
    return asyncio.run(_run_async(settings, only, embedded, debug))


async def _run_many(settings_list: list[Settings], only: Iterable[str] | None, debug: bool) -> list[Report]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max(s.timeout for s in settings_list)  # one deadline for every target
    only_list = list(only) if only else None
    return list(
        await asyncio.gather(*(_run_async(s, only_list, False, debug, deadline) for s in settings_list))
    )


def run_reports(
    settings_list: list[Settings], only: Iterable[str] | None = None, debug: bool = False
) -> list[Report]:
    """Several targets at the same time under one deadline; one report each, in the order given."""
    if only:
        for settings in settings_list:
            select_checks(settings, only)
    return asyncio.run(_run_many(settings_list, only, debug))
