"""``dns``: every address of the target host, from the system resolver (so /etc/hosts counts)
or from ``--dns-server``.

Facts written: ``addresses`` (list of IP strings, resolver order), ``local`` (the host is this
machine), ``cnames`` (with --dns-server).
"""

from __future__ import annotations

import asyncio
import socket

from lokin_doctor import causes
from lokin_doctor.causes.dns import (
    DNS_ERROR,
    DNS_NO_ADDRESS,
    DNS_NO_CONFIG,
    DNS_TEMPORARY_FAILURE,
    DNS_TIMEOUT,
    DNS_UNKNOWN_HOST,
)
from lokin_doctor.context import Context
from lokin_doctor.i18n import _
from lokin_doctor.instruments.sysinfo import is_local_address
from lokin_doctor.model import CheckResult, fail, ok

_GAI_CODES = {
    socket.EAI_NONAME: DNS_UNKNOWN_HOST,
    socket.EAI_AGAIN: DNS_TEMPORARY_FAILURE,
}
_NODATA = getattr(socket, "EAI_NODATA", None)
if _NODATA is not None:
    _GAI_CODES[_NODATA] = DNS_NO_ADDRESS


async def _system(ctx: Context) -> list[str] | CheckResult:
    host = ctx.target.host
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout_at(ctx.deadline):
            infos = await loop.getaddrinfo(host, ctx.target.port, type=socket.SOCK_STREAM)
    except TimeoutError:
        return fail(
            "dns",
            DNS_TIMEOUT,
            _("the system resolver did not answer for {host} within {timeout:g} s").format(
                host=host, timeout=ctx.settings.timeout
            ),
            _("check /etc/resolv.conf and that the DNS server is reachable; or give --dns-server"),
        )
    except OSError as exc:  # gaierror, or EAI_SYSTEM's plain OSError
        code = _GAI_CODES.get(exc.errno or 0, DNS_ERROR)
        if code == DNS_TEMPORARY_FAILURE:
            from lokin_doctor.instruments.dnsquery import RESOLV_CONF, configured_nameservers

            if not await asyncio.to_thread(configured_nameservers):
                # No name server configured: glibc asks 127.0.0.1, where nothing answers.
                return fail(
                    "dns",
                    DNS_NO_CONFIG,
                    _(
                        "cannot resolve {host}: {resolv_conf} names no name server, and none answers on 127.0.0.1 where the resolver then asks ({strerror})"
                    ).format(host=host, resolv_conf=RESOLV_CONF, strerror=exc.strerror),
                    _(
                        "add a nameserver line to {resolv_conf} (the network's DNS server; in a container, its runtime's --dns), or give --dns-server to ask one directly"
                    ).format(resolv_conf=RESOLV_CONF),
                    errno=exc.errno,
                )
        if code == DNS_UNKNOWN_HOST:
            summary = _("the system resolver does not know {host} ({strerror})").format(
                host=host, strerror=exc.strerror
            )
            hint = _(
                "check the spelling of {host!r} in the client URL, its DNS records, or /etc/hosts; for split-horizon DNS ask the right server with --dns-server"
            ).format(host=host)
        elif code == DNS_TEMPORARY_FAILURE:
            summary = _("temporary failure resolving {host} ({strerror})").format(
                host=host, strerror=exc.strerror
            )
            hint = _("the DNS server did not answer: check the network and /etc/resolv.conf, then retry")
        elif not isinstance(exc, socket.gaierror):
            # EAI_SYSTEM: the look-up itself broke (the hosts line of nsswitch.conf, a missing NSS module,
            # no file descriptor left), whatever the name's records say.
            summary = _(
                "the system resolver failed for {host}: {strerror} (getaddrinfo: system error)"
            ).format(host=host, strerror=exc.strerror or exc)
            hint = _(
                "the look-up failed on this machine, not in DNS: check the hosts line of /etc/nsswitch.conf (every module it names installed), /etc/resolv.conf and the process's limits; --dns-server asks a DNS server directly"
            )
        else:
            summary = _("cannot resolve {host}: {strerror}").format(host=host, strerror=exc.strerror or exc)
            hint = _("check the host's DNS records (A/AAAA) and /etc/hosts")
        return fail("dns", code, summary, hint, errno=exc.errno)
    addresses: list[str] = []
    for family, *__, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            addr = str(sockaddr[0])
            if addr not in addresses:
                addresses.append(addr)
    return addresses


async def _server(ctx: Context) -> tuple[list[str], list[str]] | CheckResult:
    from lokin_doctor.instruments.dnsquery import query

    assert ctx.settings.dns_server is not None
    server = ctx.settings.dns_server
    answer = await query(ctx.target.host, server, ctx.remaining())
    where = f"{server[0]}:{server[1]}"
    if answer.error is None:
        return answer.addresses, answer.cnames
    host = ctx.target.host
    hints = {
        "nxdomain": _(
            "the name {host} does not exist at {where}: fix the client URL or add the record"
        ).format(host=host, where=where),
        "no-answer": _("{host} exists at {where} but has no A or AAAA record: add one").format(
            host=host, where=where
        ),
        "refused": _(
            "{where} refuses or fails to answer for {host}: ask the right DNS server (split horizon?)"
        ).format(where=where, host=host),
        "timeout": _("nothing answered at {where}: check the --dns-server address and port").format(
            where=where
        ),
        "error": _("check the DNS server {where}").format(where=where),
    }
    assert answer.error is not None
    return fail(
        "dns",
        causes.require(f"dns.{answer.error}"),
        _("{detail} (asked {where})").format(detail=answer.detail, where=where),
        hints[answer.error],
        server=where,
    )


async def check(ctx: Context) -> CheckResult:
    target = ctx.target
    overridden = ctx.settings.resolved(target.host, target.port) if target.ip is None else None
    if target.ip is not None:
        addresses, cnames = [str(target.ip)], list[str]()
        how = _("an IP address, nothing to resolve")
    elif overridden is not None:
        addresses, cnames = list(overridden), []
        how = _("given by --resolve {host}:{port}:{addresses}").format(
            host=target.host, port=target.port, addresses=",".join(overridden)
        )
    elif ctx.settings.dns_server is not None:
        got = await _server(ctx)
        if isinstance(got, CheckResult):
            return got
        addresses, cnames = got
        how = _("resolved by {dns_server}:{dns_server2}").format(
            dns_server=ctx.settings.dns_server[0], dns_server2=ctx.settings.dns_server[1]
        )
    else:
        got_sys = await _system(ctx)
        if isinstance(got_sys, CheckResult):
            return got_sys
        addresses, cnames = got_sys, []
        how = _("resolved by the system resolver")
    local = await asyncio.to_thread(lambda: any(is_local_address(a) for a in addresses))
    ctx.facts["addresses"] = addresses
    ctx.facts["local"] = local
    ctx.facts["cnames"] = cnames
    if target.ip is not None:
        summary = _("{host} is an IP address{value}").format(
            host=target.host, value=_(" of this machine") if local else ""
        )
    else:
        shown = ", ".join(addresses[:6]) + (
            _(" and {n_addresses} more").format(n_addresses=len(addresses) - 6) if len(addresses) > 6 else ""
        )
        summary = _("{host} resolves to {shown}{value}").format(
            host=target.host, shown=shown, value=_(" (this machine)") if local else ""
        )
        if overridden is not None:
            summary = _("{host} goes to {shown}{value}, as --resolve says (DNS not asked)").format(
                host=target.host, shown=shown, value=_(" (this machine)") if local else ""
            )
    evidence: dict[str, object] = {"addresses": addresses, "how": how, "local": local}
    if cnames:
        evidence["cname_chain"] = cnames
    return ok("dns", summary, **evidence)
