"""``port``: who LISTENs on the target's port on this machine (psutil), and on which address.

Facts written: ``listeners`` (all listening sockets), ``port_owners`` (ProcInfo of each owner pid).
"""

from __future__ import annotations

import re

from lokin_doctor.causes.host import (
    PORT_LOOPBACK_ONLY,
    PORT_NOT_LISTENING,
    PORT_OWNER_UNKNOWN,
    PORT_UNEXPECTED_OWNER,
    PORT_WRONG_ADDRESS,
)
from lokin_doctor.context import Context
from lokin_doctor.i18n import _
from lokin_doctor.instruments.sysinfo import Listener, ProcInfo, listeners, proc_info
from lokin_doctor.model import CheckResult, Status, fail, ok, warn


async def scan(ctx: Context) -> tuple[list[Listener], dict[int, ProcInfo]]:
    """Every listening socket and the owners of the target port's sockets (once per run)."""

    def work() -> tuple[list[Listener], dict[int, ProcInfo]]:
        # Only the target port's owners: the fd scan stops once they are found (one socket whose owner
        # is hidden, another user's or another namespace's, would otherwise read every fd of the machine).
        # nginx, which reads the other ports' owners, asks for :func:`scan_all`.
        all_listeners = listeners(owners_on=ctx.target.port)
        owners: dict[int, ProcInfo] = {}
        for li in all_listeners:
            if li.port == ctx.target.port and li.pid is not None and li.pid not in owners:
                info = proc_info(li.pid, all_listeners)
                if info is not None:
                    owners[li.pid] = info
        return all_listeners, owners

    return await ctx.blocking("listeners", work)


async def scan_all(ctx: Context) -> list[Listener]:
    """Every listening socket with its owner when visible (once per run; only nginx needs it)."""
    return await ctx.blocking("listeners_all", listeners)


#: Reverse proxies: one of them holding the port is the proxy in front of the server, not a stranger.
REVERSE_PROXIES = ("nginx", "apache2", "httpd", "haproxy", "caddy", "traefik", "envoy")


def proxy_name(info: ProcInfo) -> str | None:
    """The reverse proxy this process is (its name or program), or None."""
    import os

    names = {info.name.lower(), os.path.basename(info.cmdline[0]).lower() if info.cmdline else ""}
    for proxy in REVERSE_PROXIES:
        # nginx's workers are "nginx: worker process"; apache2 runs as apache2 or httpd.
        if any(n == proxy or n.startswith(proxy + ":") or n.startswith(proxy + "-") for n in names):
            return proxy
    return None


#: Longest command line shown in a summary; the evidence keeps it whole.
COMMAND_CHARS = 80


def short_command(info: ProcInfo, limit: int = COMMAND_CHARS) -> str:
    """The command line on one line (the program's base name, newlines and runs of blanks as one space),
    cut to ``limit``; the evidence keeps the whole command line."""
    import os

    argv = list(info.cmdline) or [info.name]
    text = " ".join(" ".join([os.path.basename(argv[0]), *argv[1:]]).split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def describe_owner(info: ProcInfo) -> str:
    """``node server.js 8080, pid 4242``: what holds a port, as a summary names it."""
    return f"{short_command(info)}, pid {info.pid}"


def _is_loopback(address: str) -> bool:
    return address.startswith("127.") or address == "::1"


def looks_like_ws_server(info: ProcInfo, patterns: tuple[str, ...]) -> bool:
    import os

    argv = list(info.cmdline) or [info.name]
    command = " ".join([os.path.basename(argv[0]), *argv[1:]])
    return any(re.search(p, command) for p in patterns)


async def check(ctx: Context) -> CheckResult:
    port = ctx.target.port
    all_listeners, owners = await scan(ctx)
    on_port = [li for li in all_listeners if li.port == port]
    ctx.facts["listeners"] = all_listeners
    ctx.facts["port_owners"] = owners
    if not on_port:
        return fail(
            "port",
            PORT_NOT_LISTENING,
            _("nothing listens on port {port} on this machine").format(port=port),
            _(
                "start the WebSocket server: node server.js (it listens on {port}) or lokin-doctor serve --port {port}; if it crashed at start, read its log"
            ).format(port=port),
        )
    bound = sorted(
        {
            f"{li.address}:{li.port}" if ":" not in li.address else f"[{li.address}]:{li.port}"
            for li in on_port
        }
    )
    evidence: dict[str, object] = {"bound": bound}
    if owners:
        evidence["owners"] = [o.to_dict() for o in owners.values()]
    addresses: list[str] = ctx.facts.get("addresses", [])
    uncovered = [a for a in addresses if not any(li.covers(a) for li in on_port)]
    if addresses and len(uncovered) == len(addresses):
        if all(li.loopback_only for li in on_port) and not all(_is_loopback(a) for a in addresses):
            return fail(
                "port",
                PORT_LOOPBACK_ONLY,
                _("the server listens on {bound} (loopback only), so {uncovered} cannot reach it").format(
                    bound=", ".join(bound), uncovered=", ".join(uncovered)
                ),
                _(
                    "bind the server to all interfaces (host '0.0.0.0' or '::'; lokin-doctor serve --host 0.0.0.0) or put a reverse proxy on this machine in front of it"
                ),
                **evidence,
            )
        return fail(
            "port",
            PORT_WRONG_ADDRESS,
            _("the server listens on {bound}, not on {uncovered}").format(
                bound=", ".join(bound), uncovered=", ".join(uncovered)
            ),
            _(
                "bind the server to the address the clients use (or to all interfaces: '0.0.0.0' / '::'), or use one of the bound addresses in the client URL"
            ),
            **evidence,
        )
    unknown = [li for li in on_port if li.pid is None]
    if unknown and not owners:
        return warn(
            "port",
            PORT_OWNER_UNKNOWN,
            _("something listens on {bound} but its owner is hidden from this user").format(
                bound=", ".join(bound)
            ),
            _(
                "owner unknown, run as root (sudo lokin-doctor check-port) to see which process holds the port"
            ),
            **evidence,
        )
    names = "; ".join(describe_owner(o) for o in owners.values())
    foreign = [o for o in owners.values() if not looks_like_ws_server(o, ctx.settings.process_patterns)]
    proxies = sorted({name for o in foreign if (name := proxy_name(o))})
    if proxies and all(proxy_name(o) for o in foreign):
        evidence["proxy_in_front"] = proxies[0]
        ctx.facts["port_proxy"] = proxies[0]
        return ok(
            "port",
            _(
                "port {port} is held by {names}: {proxy}, the reverse proxy in front (listening on {bound})"
            ).format(port=port, names=names, proxy=proxies[0], bound=", ".join(bound)),
            **evidence,
        )
    if foreign and len(foreign) == len(owners):
        evidence["expected"] = list(ctx.settings.process_patterns)
        return warn(
            "port",
            PORT_UNEXPECTED_OWNER,
            _("port {port} is held by {names}, which is not the expected WebSocket server").format(
                port=port, names=names
            ),
            _(
                "if the handshake fails, another program holds the port: stop it or move the WebSocket server to a free port (and the client URL with it); if this is your server, pass --process to name it"
            ),
            **evidence,
        )
    # Only what this check saw: who holds the socket. Whether it answers is the handshake's to say.
    held_by = _("held by {names}").format(names=names) if names else _("held by a process")
    return ok(
        "port",
        _("port {port} is {held_by} (listening on {bound})").format(
            port=port, held_by=held_by, bound=", ".join(bound)
        ),
        **evidence,
    )


def finalize(ctx: Context, result: CheckResult) -> CheckResult:
    """Once the handshake is known: a program that completed the WebSocket handshake on the port is the
    server, whatever its name (python, uvicorn, a node script not called server.js...). The port check
    never waits for the handshake for this."""
    handshake = ctx.results.get("handshake")
    if (
        result.code != PORT_UNEXPECTED_OWNER
        or handshake is None
        or handshake.status not in (Status.OK, Status.WARN)
    ):
        return result
    owners: dict[int, ProcInfo] = ctx.facts.get("port_owners") or {}
    names = "; ".join(describe_owner(o) for o in owners.values())
    bound = ", ".join(result.evidence.get("bound") or [])
    evidence = {k: v for k, v in result.evidence.items() if k != "expected"}
    return ok(
        "port",
        _(
            "port {port} is held by {names}, which completed the WebSocket handshake (listening on {bound})"
        ).format(port=ctx.target.port, names=names, bound=bound),
        **evidence,
    )
