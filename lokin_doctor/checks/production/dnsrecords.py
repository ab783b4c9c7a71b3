"""``dns-records``: the name's DNS records as a DNS server gives them (dnspython): A and AAAA, the
CNAME chain, and whether this machine's system resolver (``getaddrinfo``: /etc/hosts, nsswitch,
split-horizon DNS) agrees.

The server asked is ``--dns-server``, else the name servers of /etc/resolv.conf. The failures have
the same codes as the ``dns`` check: ``dns.nxdomain``, ``dns.no-answer``, ``dns.refused``
(REFUSED/SERVFAIL), ``dns.timeout``. A disagreement with the system resolver is a warning
(``dns.resolvers-disagree``): clients elsewhere see what DNS says, not this machine's /etc/hosts.
Not applicable to IP addresses and ``localhost``. Runs at the same time as ``dns``, so a silent DNS
server costs one timeout.

Facts written: ``dns_records`` (the dnsquery Answer).
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from lokin_doctor import causes
from lokin_doctor.causes.dns import DNS_RESOLVERS_DISAGREE
from lokin_doctor.context import Context
from lokin_doctor.i18n import _
from lokin_doctor.instruments.dnsquery import Answer, lookup
from lokin_doctor.model import CheckResult, fail, ok, warn

HOSTS_FILE = "/etc/hosts"


async def _system(host: str, port: int, deadline: float) -> list[str] | str:
    """Addresses from getaddrinfo, or the reason it failed."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout_at(deadline):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except TimeoutError:
        return _("no answer in time")
    except OSError as exc:  # gaierror, or EAI_SYSTEM's plain OSError
        return exc.strerror or str(exc)
    out: list[str] = []
    for family, *__, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6) and str(sockaddr[0]) not in out:
            out.append(str(sockaddr[0]))
    return out


def hosts_entries(host: str, path: str = HOSTS_FILE) -> list[str]:
    """Lines of the hosts file that name ``host``."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        fields = line.split("#", 1)[0].split()
        if len(fields) >= 2 and host.lower() in (f.lower() for f in fields[1:]):
            out.append(" ".join(fields))
    return out


def _records(answer: Answer) -> str:
    return "; ".join(f"{t} {v}" for t, v in sorted(answer.by_type.items()))


async def check(ctx: Context) -> CheckResult:
    host = ctx.target.host
    server = ctx.settings.dns_server
    answer, system = await asyncio.gather(
        lookup(host, server, ctx.remaining()),
        _system(host, ctx.target.port, ctx.deadline),
    )
    ctx.facts["dns_records"] = answer
    asked = answer.server or _("the configured DNS server")
    evidence: dict[str, Any] = {"server": asked, "records": dict(answer.by_type)}
    if answer.cnames:
        evidence["cname_chain"] = [host, *answer.cnames]
    evidence["system_resolver"] = system
    hosts = await asyncio.to_thread(hosts_entries, host)
    if hosts:
        evidence["hosts_file"] = hosts

    if answer.error is not None:
        if isinstance(system, list) and system and server is None:
            return warn(
                "dns-records",
                DNS_RESOLVERS_DISAGREE,
                _(
                    "{host} resolves on this machine ({system}{value}) but not in DNS: {detail} (asked {asked})"
                ).format(
                    host=host,
                    system=", ".join(system),
                    value=f", from {HOSTS_FILE}" if hosts else "",
                    detail=answer.detail,
                    asked=asked,
                ),
                _(
                    "other machines cannot resolve {host}: add A/AAAA records for it in its DNS zone, or use an address the clients can resolve"
                ).format(host=host),
                **evidence,
            )
        hints = {
            "nxdomain": _(
                "the name {host} does not exist at {asked}: fix the name in the client URL or add the record (A/AAAA) in its zone"
            ).format(host=host, asked=asked),
            "no-answer": _("{host} exists at {asked} but has no A or AAAA record: add one").format(
                host=host, asked=asked
            ),
            "refused": _(
                "{asked} refuses or fails to answer for {host} ({answer}): ask the DNS server that serves this zone (split horizon?) or fix its configuration"
            ).format(asked=asked, host=host, answer=_records(answer)),
            "timeout": _(
                "nothing answered at {asked}: check the DNS server address and port, and the network path (UDP/TCP 53)"
            ).format(asked=asked),
            "no-config": _("configure a name server in /etc/resolv.conf, or give --dns-server"),
            "error": _("check the DNS server {asked}").format(asked=asked),
        }
        return fail(
            "dns-records",
            causes.require(f"dns.{answer.error}"),
            _("{detail} (asked {asked}: {answer})").format(
                detail=answer.detail, asked=asked, answer=_records(answer)
            ),
            hints[answer.error],
            **evidence,
        )

    chain = _(" via CNAME {value}").format(value=" -> ".join([host, *answer.cnames])) if answer.cnames else ""
    summary = f"{host}{chain}: {_records(answer)} (asked {asked})"
    dns_set = set(answer.addresses)
    if isinstance(system, str):
        return warn(
            "dns-records",
            DNS_RESOLVERS_DISAGREE,
            _("{summary}, but this machine's system resolver does not resolve {host} ({system})").format(
                summary=summary, host=host, system=system
            ),
            _(
                "this machine (and others configured like it) cannot reach {host}: make its resolver use {asked} (or serve the same records), or fix the split-horizon DNS"
            ).format(host=host, asked=asked),
            **evidence,
        )
    if set(system) != dns_set:
        only_sys = [a for a in system if a not in dns_set]
        source = f" ({HOSTS_FILE}: {'; '.join(hosts)})" if hosts else ""
        return warn(
            "dns-records",
            DNS_RESOLVERS_DISAGREE,
            _("{summary}, but this machine's system resolver says {value}{source}{value2}").format(
                summary=summary,
                value=", ".join(system) or "nothing",
                source=source,
                value2=_("; only here: {only_sys}").format(only_sys=", ".join(only_sys)) if only_sys else "",
            ),
            _("{value}: browsers elsewhere use the DNS answer ({addresses})").format(
                value=_("remove or fix the {HOSTS_FILE} line for {host}").format(
                    HOSTS_FILE=HOSTS_FILE, host=host
                )
                if hosts
                else _("align the resolvers (split horizon?)"),
                addresses=", ".join(answer.addresses),
            ),
            **evidence,
        )
    return ok("dns-records", _("{summary}; the system resolver agrees").format(summary=summary), **evidence)
