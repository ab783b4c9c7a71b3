"""``proxy``: recognise a reverse proxy in the handshake's reply (``Server``/``Via`` headers, nginx
error pages) and, when the public URL fails at the upgrade, compare it with the backend it fronts.

The backend is ``--backend URL``, else the same host on port 8080 (the LOK IN default) when the
target is on another port, tried at the target's path and at ``/``. The comparison turns a generic
"426 through nginx" into the fix:

* ``proxy.upgrade-not-forwarded``: the proxy answers 426 (or a 400 about Upgrade/Connection) while
  the backend answers 101: add the three nginx lines.
* ``proxy.http10-upstream``: 505 from the backend through the proxy: HTTP/1.0 upstream.
* ``proxy.backend-down``: 502/504: the proxy answers, its backend does not (and whether the backend
  answers us directly).
* ``proxy.path-mismatch``: the proxy answers 404 where the backend answers 101 at its path.

With no proxy in sight, or a reply that says nothing about the proxy, the check is not applicable.
It runs after the handshake (fact ``outcome``) and adds at most two handshakes to the backend.

Facts written: ``proxy`` (the proxy's name), ``backend_outcome``.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import replace
from typing import Any

from lokin_doctor.causes.http import HANDSHAKE_UPGRADE_DROPPED
from lokin_doctor.causes.production import (
    PROXY_BACKEND_DOWN,
    PROXY_HTTP10_UPSTREAM,
    PROXY_PATH_MISMATCH,
    PROXY_UPGRADE_NOT_FORWARDED,
)
from lokin_doctor.checks.chain.answer_table import NGINX_UPGRADE_LINES
from lokin_doctor.checks.chain.handshake import proxy_name
from lokin_doctor.context import Context
from lokin_doctor.i18n import _
from lokin_doctor.instruments.wire import Outcome, open_handshake
from lokin_doctor.model import CheckResult, fail, ok, skip
from lokin_doctor.target import Target

BACKEND_PORT = 8080


def _backend_targets(ctx: Context) -> list[Target]:
    target = ctx.target
    backend = ctx.settings.backend
    if backend is not None:
        out = [backend]
        if backend.resource == "/" and target.resource != "/":
            out.append(replace(backend, resource=target.resource))
        return out
    if target.port == BACKEND_PORT:
        return []
    base = replace(target, scheme="ws", port=BACKEND_PORT, explicit_port=True)
    out = [base]
    if target.resource != "/":
        out.append(replace(base, resource="/"))
    return out


async def _addresses(ctx: Context, host: str) -> list[str]:
    """Where to reach the backend: the target's own addresses, else the system resolver's (one per family)."""
    if host == ctx.target.host:
        return list(ctx.facts.get("reachable") or ctx.facts.get("addresses") or [])[:2]
    try:
        import ipaddress

        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout_at(ctx.deadline):
            infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError):
        return []
    out: list[str] = []
    for *__, sockaddr in infos:
        a = str(sockaddr[0])
        if not any((":" in a) == (":" in b) for b in out):
            out.append(a)
    return out


async def _handshake(ctx: Context, candidate: Target, addresses: list[str]) -> Outcome:
    out: Outcome | None = None
    for address in addresses:
        out = await open_handshake(
            candidate,
            address,
            deadline=ctx.deadline,
            origin=ctx.settings.origin,
            headers=ctx.settings.headers,
            ssl_context=ctx.ssl_context() if candidate.secure else None,
            keep_open=False,
        )
        if out.kind not in ("connect-refused", "connect-error"):
            break
    assert out is not None
    return out


async def _probe_backend(ctx: Context) -> tuple[Target, Outcome] | None:
    """The backend's answer: the first candidate that upgrades, else the first one's outcome."""
    candidates = _backend_targets(ctx)
    if not candidates:
        return None
    addresses = await _addresses(ctx, candidates[0].host)
    if not addresses:
        return None
    outs = await asyncio.gather(*(_handshake(ctx, c, addresses) for c in candidates))
    for c, o in zip(candidates, outs, strict=True):
        if o.kind == "upgraded":
            return c, o
    return candidates[0], outs[0]


def _said(out: Outcome) -> str:
    if out.kind == "upgraded":
        return "101"
    if out.kind == "status":
        return f"HTTP {out.status}"
    return {"connect-refused": _("connection refused"), "connect-timeout": _("no answer (timeout)")}.get(
        out.kind, out.error or out.kind
    )


async def check(ctx: Context) -> CheckResult:
    out: Outcome | None = ctx.facts.get("outcome")
    if out is None:
        return skip("proxy", _("not applicable: no handshake reply to look at"), applicable=False)
    name = proxy_name(out)
    if name:
        ctx.facts["proxy"] = name
    target = ctx.target
    ev: dict[str, Any] = {"public": {"url": target.url, **out.evidence()}}
    if out.kind == "upgraded":
        if name:
            return ok(
                "proxy",
                _("{name} in front of the server forwards the upgrade (101)").format(name=name),
                proxy=name,
                **ev,
            )
        return skip("proxy", _("not applicable: no proxy recognised in the 101 reply"), applicable=False)
    if out.kind != "status":
        return skip(
            "proxy",
            _("not applicable: no HTTP reply to look at ({kind})").format(kind=out.kind),
            applicable=False,
        )

    status = out.status or 0
    # The handshake check read the whole answer (answer_table): a 426 offering only an old draft's version
    # is not a lost upgrade, a WebSocket library's 400 about Upgrade is one.
    handshake = ctx.results.get("handshake")
    upgrade_dropped = handshake is not None and handshake.code == HANDSHAKE_UPGRADE_DROPPED
    proxy_status = upgrade_dropped or status in (502, 504, 505) or (status == 404 and name is not None)
    if not proxy_status:
        if name:
            return skip(
                "proxy",
                _("{name} answered HTTP {status}; nothing proxy-specific (see handshake)").format(
                    name=name, status=status
                ),
                proxy=name,
            )
        return skip("proxy", _("not applicable: no proxy recognised in the reply"), applicable=False)

    backend = await _probe_backend(ctx)
    who = name or _("the proxy")
    public = _("{who} answers HTTP {status} at {url}").format(who=who, status=status, url=target.url)
    if backend is not None:
        b_target, b_out = backend
        ctx.facts["backend_outcome"] = b_out
        ev["backend"] = {"url": b_target.url, **b_out.evidence()}
        b_ok = b_out.kind == "upgraded"
        b_said = _("backend {url} answers {b_out}").format(url=b_target.url, b_out=_said(b_out))
    else:
        b_target, b_out, b_ok = None, None, False
        b_said = _("backend not compared (give --backend URL)")
    location = target.resource.split("?")[0]

    if upgrade_dropped:
        if b_ok or name:
            return fail(
                "proxy",
                PROXY_UPGRADE_NOT_FORWARDED,
                _("{b_said}, {public}: {who} does not forward the Upgrade header to the backend").format(
                    b_said=b_said, public=public, who=who
                ),
                _(
                    "in {who}'s location block for {location} add:\n{NGINX_UPGRADE_LINES}\n(with the usual map $http_upgrade $connection_upgrade, Connection may be $connection_upgrade); then reload (nginx -s reload)"
                ).format(who=who, location=location, NGINX_UPGRADE_LINES=NGINX_UPGRADE_LINES),
                **ev,
            )
        return skip("proxy", _("no proxy recognised and {b_said}; see handshake").format(b_said=b_said), **ev)
    if status == 505:
        return fail(
            "proxy",
            PROXY_HTTP10_UPSTREAM,
            _("{public}: the backend answered 505 to the HTTP/1.0 request {who} sent it; {b_said}").format(
                public=public, who=who, b_said=b_said
            ),
            _(
                "make {who} speak HTTP/1.1 upstream and forward the upgrade; in the location block for {location}:\n{NGINX_UPGRADE_LINES}"
            ).format(who=who, location=location, NGINX_UPGRADE_LINES=NGINX_UPGRADE_LINES),
            **ev,
        )
    if status in (502, 504):
        if b_ok:
            tail = _(
                "{b_said} directly: {who} points at the wrong address or port (check proxy_pass), or cannot reach it (a firewall or SELinux between them)"
            ).format(b_said=b_said, who=who)
            assert b_target is not None
            hint = _(
                "point {who}'s proxy_pass at the address and port where the backend listens ({url})"
            ).format(who=who, url=b_target.url)
        elif b_out is not None:
            tail = _("{b_said} either: the WebSocket server is down").format(b_said=b_said)
            hint = _(
                "start the WebSocket server behind the proxy (node server.js / lokin-doctor serve) and check that proxy_pass names its address and port"
            )
        else:
            tail = _("the backend was not compared (give --backend URL to check it directly)")
            hint = _(
                "start the WebSocket server behind the proxy and check the proxy_pass address and port; compare with --backend ws://backend-host:8080/"
            )
        what = _("does not answer") if status == 502 else _("does not answer in time")
        return fail(
            "proxy",
            PROXY_BACKEND_DOWN,
            _("{public}: {who} is up but its backend {what}; {tail}").format(
                public=public, who=who, what=what, tail=tail
            ),
            hint,
            **ev,
        )
    # 404 from a recognised proxy.
    if b_ok:
        return fail(
            "proxy",
            PROXY_PATH_MISMATCH,
            _(
                "{public}, while the {b_said} at its path: {who} does not route {location} to the backend"
            ).format(public=public, b_said=b_said, who=who, location=location),
            _(
                "add a location for {location} in {who} that proxies to the backend with the upgrade lines, or use the path the proxy forwards in the client URL (a trailing / in proxy_pass http://backend:8080/ strips the location prefix)"
            ).format(location=location, who=who),
            **ev,
        )
    return skip(
        "proxy",
        _("{public} and the {b_said}; nothing proxy-specific (see handshake)").format(
            public=public, b_said=b_said
        ),
        **ev,
    )
