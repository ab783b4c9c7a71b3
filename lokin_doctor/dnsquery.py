"""DNS look-ups with dnspython against a given server (``--dns-server``), every failure classified."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field


@dataclass
class Answer:
    """The addresses a DNS server gave for a name, with the CNAME chain that led there.

    ``error`` is one of None, ``nxdomain``, ``no-answer``, ``refused`` (REFUSED/SERVFAIL: no server
    would answer), ``timeout``, ``error``; ``detail`` says it in words.
    """

    addresses: list[str] = field(default_factory=list)
    cnames: list[str] = field(default_factory=list)
    error: str | None = None
    detail: str = ""


async def query(name: str, server: tuple[str, int], timeout: float) -> Answer:
    """A and AAAA for ``name`` at ``server`` (host, port), both asked at once, bounded by ``timeout``."""
    import dns.asyncresolver
    import dns.exception
    import dns.resolver

    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = [server[0]]
    resolver.port = server[1]
    resolver.lifetime = max(timeout, 0.05)
    resolver.timeout = max(min(timeout, 2.0), 0.05)
    answer = Answer()
    errors: list[tuple[str, str]] = []

    async def ask(rdtype: str) -> None:
        try:
            result = await resolver.resolve(name, rdtype, search=False)
        except dns.resolver.NXDOMAIN:
            errors.append(("nxdomain", f"{name} does not exist (NXDOMAIN)"))
            return
        except dns.resolver.NoAnswer:
            errors.append(("no-answer", f"{name} has no {rdtype} record"))
            return
        except dns.resolver.NoNameservers as exc:
            errors.append(
                (
                    "refused",
                    f"the DNS server refused or failed the query ({exc.msg if hasattr(exc, 'msg') else exc})",
                )
            )
            return
        except dns.resolver.LifetimeTimeout:
            errors.append(
                ("timeout", f"no answer from the DNS server {server[0]}:{server[1]} within {timeout:.1f} s")
            )
            return
        except dns.exception.DNSException as exc:
            errors.append(("error", str(exc)))
            return
        for rrset in result.response.answer:
            for rr in rrset:
                if rr.rdtype == dns.rdatatype.CNAME:
                    target = rr.target.to_text().rstrip(".")
                    if target not in answer.cnames:
                        answer.cnames.append(target)
                elif rr.rdtype == dns.rdatatype.from_text(rdtype):
                    answer.addresses.append(rr.to_text())

    import dns.rdatatype

    await asyncio.gather(ask("A"), ask("AAAA"))
    if not answer.addresses:
        # NXDOMAIN beats no-answer beats the rest: it is the most specific statement.
        for kind in ("nxdomain", "refused", "timeout", "error", "no-answer"):
            for k, detail in errors:
                if k == kind:
                    answer.error, answer.detail = k, detail
                    return answer
    return answer
