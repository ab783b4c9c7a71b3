"""``tcp``: connect to each address separately; refused, dropped (timeout) and unreachable differ.

Facts written: ``reachable`` (addresses that accepted, resolver order).
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket

from lokin_doctor.causes.tcp import (
    TCP_ERROR,
    TCP_LOCALHOST_FAMILY,
    TCP_REFUSED,
    TCP_SOME_ADDRESSES_FAIL,
    TCP_TIMEOUT,
    TCP_UNREACHABLE,
)
from lokin_doctor.context import Context
from lokin_doctor.i18n import N_, _
from lokin_doctor.instruments import proxyenv
from lokin_doctor.model import CheckResult, Status, fail, ok, skip, warn

#: How a failed connect reads in "... is {kind} on port ..." (the outcome's own word, translated).
KINDS = {
    "refused": N_("refused"),
    "timeout": N_("timeout"),
    "unreachable": N_("unreachable"),
    "error": N_("error"),
}


def fmt(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


async def connect(address: str, port: int, deadline: float) -> tuple[str, float | None, str]:
    """One TCP connect: ("ok"|"refused"|"timeout"|"unreachable"|"error", ms, detail)."""
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    t0 = loop.time()
    try:
        async with asyncio.timeout_at(deadline):
            await loop.sock_connect(sock, (address, port))
        return "ok", (loop.time() - t0) * 1000, "connected"
    except TimeoutError:
        return "timeout", None, _("no answer (packets dropped?)")
    except ConnectionRefusedError:
        return "refused", (loop.time() - t0) * 1000, _("connection refused")
    except (ConnectionResetError, ConnectionAbortedError):
        # A reset can only follow a completed three-way handshake (a SYN answered by RST is "refused"):
        # the server accepted, then reset. Whether it lands before or after connect() returns is a race,
        # so it counts as connected and the handshake check names it (handshake.reset) every time.
        return "ok", (loop.time() - t0) * 1000, _("connected, then reset by the server")
    except OSError as exc:
        if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
            return "unreachable", None, exc.strerror or str(exc)
        return "error", None, exc.strerror or str(exc)
    finally:
        sock.close()


async def check(ctx: Context) -> CheckResult:
    forward = ctx.results.get("forward")
    if forward is not None and forward.status is Status.FAIL:
        # The connection never left this machine: the target's port is not the question (forward says why).
        return skip("tcp", _("skipped: forward failed (the way out through the proxy)"))
    route = ctx.settings.route()
    if route.proxy is not None:
        return _through_proxy(ctx, route)
    port = ctx.target.port
    addresses: list[str] = ctx.facts["addresses"]
    outcomes = await asyncio.gather(*(connect(a, port, ctx.deadline) for a in addresses))
    table = dict(zip(addresses, outcomes, strict=True))
    reachable = [a for a in addresses if table[a][0] == "ok"]
    ctx.facts["reachable"] = reachable
    evidence = {
        fmt(a, port): (_("{o} in {o2:.1f} ms").format(o=o[2], o2=o[1]) if o[1] is not None else o[2])
        for a, o in table.items()
    }
    host = ctx.target.host
    if reachable and len(reachable) == len(addresses):
        best = min(o[1] or 0.0 for o in outcomes)
        where = (
            fmt(reachable[0], port)
            if len(reachable) == 1
            else _("all {n_reachable} addresses on port {port}").format(n_reachable=len(reachable), port=port)
        )
        return ok(
            "tcp",
            _("TCP connect to {where} succeeded ({best:.1f} ms, direct)").format(where=where, best=best),
            **evidence,
        )
    if reachable:
        failed = [a for a in addresses if a not in reachable]
        kinds = {table[a][0] for a in failed}
        kind = kinds.pop() if len(kinds) == 1 else "fail"
        if host == "localhost" or all(a in ("127.0.0.1", "::1") for a in addresses):
            v6_failed = any(":" in a for a in failed)
            family_now, family_other = (
                ("::1 (IPv6)", "127.0.0.1 (IPv4)") if v6_failed else ("127.0.0.1 (IPv4)", "::1 (IPv6)")
            )
            if kind in KINDS:
                summary = _(
                    "{host} resolves to both families and {family_now} is {kind} on port {port} while {family_other} answers"
                ).format(
                    host=host,
                    family_now=family_now,
                    kind=_(KINDS[kind]),
                    port=port,
                    family_other=family_other,
                )
            else:  # mixed outcomes: a whole sentence of its own, not a word spliced in
                summary = _(
                    "{host} resolves to both families and {family_now} is fail on port {port} while {family_other} answers"
                ).format(host=host, family_now=family_now, port=port, family_other=family_other)
            return warn(
                "tcp",
                TCP_LOCALHOST_FAMILY,
                summary,
                _(
                    "clients that try {family_now} first (Node >= 17, some browsers) fail: bind the server to both (host '::' or both addresses), or use {family_other} in the client URL"
                ).format(family_now=family_now.split()[0], family_other=family_other.split()[0]),
                **evidence,
            )
        return warn(
            "tcp",
            TCP_SOME_ADDRESSES_FAIL,
            (
                _("{n_failed} of {n_addresses} addresses refuse on port {port}: {failed}")
                if kind == "refused"
                else _("{n_failed} of {n_addresses} addresses fail on port {port}: {failed}")
            ).format(n_failed=len(failed), n_addresses=len(addresses), port=port, failed=", ".join(failed)),
            _(
                "clients given a failing address cannot connect: fix or remove those DNS records, or start the server on those hosts"
            ),
            **evidence,
        )
    kinds = {o[0] for o in outcomes}
    where = ", ".join(fmt(a, port) for a in addresses)
    if kinds == {"refused"}:
        return fail(
            "tcp",
            TCP_REFUSED,
            _("connection refused on {where}: nothing accepts connections there").format(where=where),
            _(
                "start the WebSocket server on port {port} (node server.js, or lokin-doctor serve --port {port}), or fix the port in the client URL"
            ).format(port=port),
            **evidence,
        )
    if "timeout" in kinds and kinds <= {"timeout", "unreachable", "error"}:
        return fail(
            "tcp",
            TCP_TIMEOUT,
            _(
                "no answer from {where} within {timeout:g} s: packets are dropped (firewall?) or the host is down"
            ).format(where=where, timeout=ctx.settings.timeout),
            _(
                "open port {port} in the firewall (ufw allow {port}/tcp, security group, iptables) or check the host is up"
            ).format(port=port),
            **evidence,
        )
    if kinds == {"unreachable"}:
        return fail(
            "tcp",
            TCP_UNREACHABLE,
            f"{where}: {outcomes[0][2]}",
            _(
                "no route to the host: check the address, the network, or a firewall that rejects with host-unreachable"
            ),
            **evidence,
        )
    link_local = all(":" in a and ipaddress.ip_address(a.split("%")[0]).is_link_local for a in addresses)
    return fail(
        "tcp",
        TCP_ERROR,
        _("cannot connect to {where}: {value}").format(
            where=where, value="; ".join(sorted({o[2] for o in outcomes}))
        ),
        _(
            "{where} is an IPv6 link-local address (fe80::/10): it needs its interface (a zone, fe80::1%eth0), which browsers do not accept in a URL; use the server's global address or a host name"
        ).format(where=where)
        if link_local
        else _("check the address and port in the client URL and the network path"),
        **evidence,
    )


def _through_proxy(ctx: Context, route: proxyenv.Route) -> CheckResult:
    """Through a forward proxy the proxy connects to the target: its CONNECT answer is the TCP verdict."""
    assert route.proxy is not None
    target = ctx.target
    ctx.facts["reachable"] = [target.host]
    tunnel = ctx.facts.get("tunnel") or {}
    ms = tunnel.get("connect_answer_ms")
    return ok(
        "tcp",
        _(
            "TCP to {authority} made by the proxy {proxy} ({source}), tunnel open{ms}; this machine does not connect to the target itself"
        ).format(
            authority=proxyenv.authority(target.host, target.port),
            proxy=route.proxy.display,
            source=route.proxy.source,
            ms=f" in {ms:.1f} ms" if isinstance(ms, float) else "",
        ),
        route=f"{route.proxy.display} ({route.proxy.source})",
    )
