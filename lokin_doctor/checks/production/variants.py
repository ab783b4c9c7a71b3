"""``variants``: when the target fails, try the URLs a misconfiguration usually hides behind —
ws vs wss, ports 443/80/8080, path ``/`` vs ``/ws`` — on the target's own host only, and name the one
that answers 101 with the fix to the client URL (or to the proxy).

Timing: the check starts right after ``dns`` and watches the ``tcp``/``tls``/``handshake`` verdict
(``runner.WATCHES`` selects them with it). A target that works costs no traffic. When the verdict is
still unknown at half the remaining time (a silent port, dropped packets), the probes start anyway,
with the target itself among them, so the variants share the run's one deadline instead of adding a
second timeout. At most :data:`MAX_VARIANTS` probes, all at once.

Facts written: ``working_variant`` (URL) when one answers 101.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from lokin_doctor import causes
from lokin_doctor.causes import Tag
from lokin_doctor.causes.http import (
    HANDSHAKE_BAD_ACCEPT,
    HANDSHAKE_BAD_GATEWAY,
    HANDSHAKE_FORBIDDEN,
    HANDSHAKE_GATEWAY_TIMEOUT,
    HANDSHAKE_HTTP10_UPSTREAM,
    HANDSHAKE_INVALID_UPGRADE,
    HANDSHAKE_RATE_LIMITED,
    HANDSHAKE_REDIRECT,
    HANDSHAKE_SERVER_ERROR,
    HANDSHAKE_UNAVAILABLE,
    HANDSHAKE_UPGRADE_DROPPED,
)
from lokin_doctor.causes.production import VARIANTS_BACKEND_DIRECT, VARIANTS_URL_MISMATCH
from lokin_doctor.causes.tls import (
    TLS_EXPIRED,
    TLS_EXPIRES_SOON,
    TLS_HOSTNAME_MISMATCH,
    TLS_INCOMPLETE_CHAIN,
    TLS_NOT_YET_VALID,
    TLS_SELF_SIGNED,
    TLS_UNKNOWN_CA,
)
from lokin_doctor.checks.chain.handshake import proxy_name
from lokin_doctor.context import Context
from lokin_doctor.i18n import _
from lokin_doctor.instruments.wire import Outcome, open_handshake
from lokin_doctor.model import CheckResult, Status, fail, skip, warn
from lokin_doctor.target import Target

MAX_VARIANTS = 12
POLL_S = 0.02
#: Share of the time left that probes get once the target is known to fail (at least 1 s).
PROBE_SHARE = 0.4
#: (scheme, port) pairs worth trying besides the target's own: TLS on 443, plain on 80, the LOK IN port.
CONVENTIONAL = (("wss", 443), ("ws", 80), ("ws", 8080))
PATHS = ("/ws", "/")


def candidates(target: Target) -> list[Target]:
    """Nearby URLs, closest first (fewest changed parts), without the target itself."""
    other = "ws" if target.secure else "wss"
    pairs = [(target.scheme, target.port), (other, target.port), *CONVENTIONAL]
    paths = [target.resource, *PATHS]
    seen = {target.url}
    found: list[tuple[int, int, Target]] = []
    order = 0
    for scheme, port in pairs:
        for path in paths:
            t = replace(target, scheme=scheme, port=port, resource=path, explicit_port=True)
            if t.url in seen:
                continue
            seen.add(t.url)
            changes = (scheme != target.scheme) + (port != target.port) + (path != target.resource)
            found.append((changes, order, t))
            order += 1
    found.sort(key=lambda x: (x[0], x[1]))
    return [t for _, _, t in found[:MAX_VARIANTS]]


#: Failures that prove the URL reaches the right server, which answers something specific: another
#: URL would not fix them (the proxy, certificate and handshake checks name the fix).
NOT_A_URL_PROBLEM = frozenset(
    {
        HANDSHAKE_REDIRECT,
        HANDSHAKE_FORBIDDEN,
        HANDSHAKE_RATE_LIMITED,
        HANDSHAKE_UNAVAILABLE,
        HANDSHAKE_SERVER_ERROR,
        HANDSHAKE_BAD_ACCEPT,
        HANDSHAKE_INVALID_UPGRADE,
        HANDSHAKE_UPGRADE_DROPPED,
        HANDSHAKE_HTTP10_UPSTREAM,
        HANDSHAKE_BAD_GATEWAY,
        HANDSHAKE_GATEWAY_TIMEOUT,
        TLS_EXPIRED,
        TLS_NOT_YET_VALID,
        TLS_HOSTNAME_MISMATCH,
        TLS_SELF_SIGNED,
        TLS_UNKNOWN_CA,
        TLS_INCOMPLETE_CHAIN,
        TLS_EXPIRES_SOON,
    }
) | causes.tagged(Tag.NOT_A_URL_PROBLEM)


def _verdict(ctx: Context) -> tuple[str | None, str | None]:
    """("works" | "fails" | None while the main path has not concluded, the failing cause code)."""
    results = ctx.results
    tcp = results.get("tcp")
    if tcp is not None and tcp.status is Status.FAIL:
        return "fails", tcp.code
    tls = results.get("tls")
    if tls is not None and tls.status is Status.FAIL and not ctx.settings.insecure:
        return "fails", tls.code
    hs = results.get("handshake")
    if hs is not None:
        if hs.status in (Status.OK, Status.WARN):
            return "works", None
        if hs.status is Status.FAIL:
            return "fails", hs.code
    return None, None


def _said(out: Outcome) -> str:
    if out.kind == "upgraded":
        return "101"
    if out.kind == "status":
        return f"HTTP {out.status}"
    return {
        "connect-refused": "refused",
        "connect-timeout": _("no answer"),
        "timeout": _("no reply in time"),
        "tls-error": _("TLS failed"),
    }.get(out.kind, out.kind)


async def _probe(ctx: Context, t: Target, addresses: list[str], deadline: float) -> Outcome:
    out: Outcome | None = None
    for address in addresses:
        out = await open_handshake(
            t,
            address,
            deadline=deadline,
            origin=ctx.settings.origin,
            headers=ctx.settings.headers,
            subprotocols=ctx.settings.subprotocols,
            ssl_context=ctx.ssl_context() if t.secure else None,
            keep_open=False,
        )
        if out.kind not in ("connect-refused", "connect-error"):
            break
    assert out is not None
    return out


def _addresses(ctx: Context) -> list[str]:
    """One address per family, the one TCP reached first."""
    pool = [*(ctx.facts.get("reachable") or []), *(ctx.facts.get("addresses") or [])]
    out: list[str] = []
    for a in pool:
        if a not in out and not any((":" in a) == (":" in b) for b in out):
            out.append(a)
    return out[:2]


async def check(ctx: Context) -> CheckResult:
    settings = ctx.settings
    target = settings.target
    if not settings.variants:
        return skip("variants", _("not applicable: --no-variants"), applicable=False)
    loop = asyncio.get_running_loop()
    start = loop.time()
    remaining = max(0.0, ctx.deadline - start)
    speculate_at = start + remaining / 2
    verdict, cause = _verdict(ctx)
    while verdict is None and loop.time() < speculate_at:
        await asyncio.sleep(POLL_S)
        verdict, cause = _verdict(ctx)
    if verdict == "works":
        return skip("variants", _("not applicable: the target works"), applicable=False)
    if cause in NOT_A_URL_PROBLEM:
        return _not_a_url_problem(cause)
    if ctx.remaining() <= 0.05:
        return skip(
            "variants", _("skipped: no time left in the deadline to try nearby URLs (raise --timeout)")
        )

    addresses = _addresses(ctx)
    tried = candidates(target)
    speculative = verdict is None
    probes = [*tried, target] if speculative else tried
    # A dropped port (firewall) must not hold the whole run: probes get part of the time left, unless
    # they started late because the target itself is slow.
    budget_end = (
        ctx.deadline if speculative else min(ctx.deadline, loop.time() + max(1.0, PROBE_SHARE * remaining))
    )
    task = asyncio.ensure_future(asyncio.gather(*(_probe(ctx, t, addresses, budget_end) for t in probes)))
    try:
        while verdict is None and not task.done():
            await asyncio.sleep(POLL_S)
            verdict, cause = _verdict(ctx)
        if verdict == "works":
            return skip("variants", _("not applicable: the target works"), applicable=False)
        if cause in NOT_A_URL_PROBLEM:
            return _not_a_url_problem(cause)
        outs: list[Outcome] = await task
    finally:
        if not task.done():
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
    if verdict is None:
        verdict, cause = _verdict(ctx)
    if verdict is None and len(outs) > len(tried):
        verdict = "works" if outs[-1].kind == "upgraded" else "fails"
    if verdict == "works":
        return skip("variants", _("not applicable: the target works"), applicable=False)

    table = dict(zip((t.url for t in tried), outs[: len(tried)], strict=True))
    evidence: dict[str, Any] = {"tried": {url: _said(o) for url, o in table.items()}}
    working = [t for t in tried if table[t.url].kind == "upgraded"]
    if not working:
        return skip(
            "variants",
            _("no nearby variant answers either ({n_tried} tried on {host})").format(
                n_tried=len(tried), host=target.host
            ),
            **evidence,
        )

    page_secure = bool(settings.page_url and settings.page_url.lower().startswith("https:"))
    prefer_secure = target.secure or page_secure
    # Closest first; among equals, TLS when the target or the page is https.
    best = min(working, key=lambda t: (_distance(t, target), t.secure != prefer_secure, tried.index(t)))
    ctx.facts["working_variant"] = best.url
    evidence["works"] = best.url
    if len(working) > 1:
        evidence["also_works"] = [t.url for t in working if t is not best]
    public_out: Outcome | None = ctx.facts.get("outcome")
    proxy = proxy_name(public_out) if public_out is not None else None
    failed = next(
        (
            r
            for r in (ctx.results.get(c) for c in ("tcp", "tls", "handshake"))
            if r and r.status is Status.FAIL
        ),
        None,
    )
    failing = f"{target.url} fails" + (f" ({failed.code})" if failed is not None else "")
    if proxy and best.port != target.port:
        return warn(
            "variants",
            VARIANTS_BACKEND_DIRECT,
            _("{failing} through {proxy}, but the backend answers 101 directly at {url}").format(
                failing=failing, proxy=proxy, url=best.url
            ),
            _("fix {proxy} (see the proxy check) rather than pointing clients past it at {url}").format(
                proxy=proxy, url=best.url
            ),
            **evidence,
        )
    hint = _("use {url} in the client").format(url=best.url)
    if best.resource != target.resource:
        hint += _(", or make the server (or the proxy's location) answer on {resource}").format(
            resource=target.resource
        )
    if page_secure and not best.secure:
        hint += _("; the page is https, so browsers need wss://: put TLS in front of it")
    return fail(
        "variants",
        VARIANTS_URL_MISMATCH,
        _("{failing}, but {url} answers 101").format(failing=failing, url=best.url),
        hint,
        **evidence,
    )


def _not_a_url_problem(cause: str) -> CheckResult:
    return skip(
        "variants",
        _(
            "not applicable: the URL reaches a server that answers {cause}; another URL would not fix it"
        ).format(cause=cause),
        applicable=False,
    )


def _distance(t: Target, target: Target) -> int:
    return (t.scheme != target.scheme) + (t.port != target.port) + (t.resource != target.resource)
