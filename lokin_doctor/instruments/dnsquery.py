"""DNS look-ups with dnspython, every failure classified.

Asks ``--dns-server`` (host, port) or, with no server, the name servers of ``/etc/resolv.conf``
(dnspython's own configuration: unlike ``getaddrinfo`` it skips ``/etc/hosts``, which is how the
``dns-records`` check spots an override).
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field

#: Error kinds, most specific first: when A and AAAA fail differently, the first one found here wins.
ERROR_ORDER = ("nxdomain", "refused", "timeout", "no-config", "error", "no-answer")


@dataclass
class Answer:
    """The addresses a DNS server gave for a name, with the CNAME chain that led there.

    ``error`` is one of None, ``nxdomain``, ``no-answer``, ``refused`` (REFUSED/SERVFAIL: no server
    would answer), ``timeout``, ``no-config`` (no name server configured), ``error``; ``detail`` says
    it in words. ``by_type`` maps "A"/"AAAA" to what came back ("127.0.0.1", "no answer",
    "NXDOMAIN"...). ``server`` names who was asked.
    """

    addresses: list[str] = field(default_factory=list)
    cnames: list[str] = field(default_factory=list)
    error: str | None = None
    detail: str = ""
    by_type: dict[str, str] = field(default_factory=dict)
    server: str = ""


#: The system resolver's configuration (glibc, musl, dnspython all read it).
RESOLV_CONF = "/etc/resolv.conf"


def configured_nameservers(path: str = RESOLV_CONF) -> list[str]:
    """The ``nameserver`` addresses of resolv.conf, in order; [] when it names none or cannot be read
    (glibc then asks 127.0.0.1)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        fields = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            out.append(fields[1])
    return out


def _rcodes(text: str) -> str:
    found = sorted(set(re.findall(r"\b(REFUSED|SERVFAIL|NOTIMP|FORMERR)\b", text)))
    return "/".join(found) if found else "no usable answer"


async def lookup(name: str, server: tuple[str, int] | None, timeout: float) -> Answer:
    """A and AAAA for ``name``, both asked at once, bounded by ``timeout`` seconds.

    ``server`` is (host, port); None asks the name servers of /etc/resolv.conf.
    """
    import dns.asyncresolver
    import dns.exception
    import dns.rdatatype
    import dns.resolver

    answer = Answer()
    if server is not None:
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [server[0]]
        resolver.port = server[1]
        answer.server = f"{server[0]}:{server[1]}"
    else:
        try:
            resolver = dns.asyncresolver.Resolver()
        except dns.resolver.NoResolverConfiguration:
            answer.error, answer.detail = "no-config", "no name server is configured in /etc/resolv.conf"
            answer.server = "/etc/resolv.conf"
            return answer
        answer.server = ", ".join(str(ns) for ns in resolver.nameservers) or "/etc/resolv.conf"
    resolver.lifetime = max(timeout, 0.05)
    resolver.timeout = max(min(timeout, 2.0), 0.05)
    where = answer.server
    errors: list[tuple[str, str]] = []

    async def ask(rdtype: str) -> None:
        try:
            result = await resolver.resolve(name, rdtype, search=False)
        except dns.resolver.NXDOMAIN:
            answer.by_type[rdtype] = "NXDOMAIN"
            errors.append(("nxdomain", f"{name} does not exist (NXDOMAIN)"))
            return
        except dns.resolver.NoAnswer as exc:
            answer.by_type[rdtype] = "no answer"
            # NODATA still carries the CNAME chain, if the name is an alias.
            response = exc.kwargs.get("response") if hasattr(exc, "kwargs") else None
            if response is not None:
                for rrset in response.answer:
                    for rr in rrset:
                        if rr.rdtype == dns.rdatatype.CNAME:
                            target = rr.target.to_text().rstrip(".")
                            if target not in answer.cnames:
                                answer.cnames.append(target)
            errors.append(("no-answer", f"{name} has no A or AAAA record"))
            return
        except dns.resolver.NoNameservers as exc:
            codes = _rcodes(str(exc))
            answer.by_type[rdtype] = codes
            errors.append(("refused", f"the DNS server answered {codes} for {name}"))
            return
        except dns.exception.Timeout:
            answer.by_type[rdtype] = "timeout"
            errors.append(("timeout", f"no answer from the DNS server {where} within {timeout:.1f} s"))
            return
        except dns.exception.DNSException as exc:
            answer.by_type[rdtype] = "error"
            errors.append(("error", str(exc)))
            return
        got: list[str] = []
        for rrset in result.response.answer:
            for rr in rrset:
                if rr.rdtype == dns.rdatatype.CNAME:
                    target = rr.target.to_text().rstrip(".")
                    if target not in answer.cnames:
                        answer.cnames.append(target)
                elif rr.rdtype == dns.rdatatype.from_text(rdtype):
                    got.append(rr.to_text())
        answer.by_type[rdtype] = ", ".join(got) if got else "no answer"
        answer.addresses.extend(a for a in got if a not in answer.addresses)

    await asyncio.gather(ask("A"), ask("AAAA"))
    if not answer.addresses:
        for kind in ERROR_ORDER:
            for k, detail in errors:
                if k == kind:
                    answer.error, answer.detail = k, detail
                    return answer
    return answer


async def query(name: str, server: tuple[str, int], timeout: float) -> Answer:
    """A and AAAA for ``name`` at ``server`` (host, port), both asked at once, bounded by ``timeout``."""
    return await lookup(name, server, timeout)
