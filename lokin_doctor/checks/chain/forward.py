"""``forward``: which way the connection goes — direct, or through the forward proxy of
HTTPS_PROXY / HTTP_PROXY / ALL_PROXY (or ``--proxy``), NO_PROXY applied as curl does — and, through a
proxy, whether it gives the tunnel: ``CONNECT host:port`` and its answer.

A step of its own rather than a part of ``tcp``: through a proxy this machine never connects to the
target, so the proxy's refusals (407, 403, a CONNECT allowed to 443 only, the proxy down) are their own
causes, and ``tcp`` (which runs after it) neither repeats them nor reports the target refused. Every
connection of the run then goes the same way (:meth:`lokin_doctor.settings.Settings.route`).

Reading a refusal generalises rather than matches pages: a 403/405 to CONNECT for a port other than 443
is followed by a second CONNECT to port 443 of the same host; if the proxy lets that one through (200,
or its own "unable to connect"), the port is the rule (tinyproxy ``ConnectPort``, squid ``SSL_ports``).
For ws:// a refused CONNECT is followed by the upgrade sent as a plain proxied request (what a client
without CONNECT does): what came back is evidence, and a proxy that cannot CONNECT at all but answers
that upgrade itself is ``forward.upgrade-answered``.
A program at the proxy's address that answers both requests itself (the same ``Server``, no ``Via``,
and the same answer for a ``.invalid`` host no proxy could reach) is a web or WebSocket server:
``forward.not-a-proxy``. A 5xx to CONNECT is ``forward.target-unreachable`` unless that plain request
reaches the server (Apache without mod_proxy_connect answers CONNECT with 500).

Facts written: ``tunnel`` (the proxy, its CONNECT answer and timings) when the proxy gave one.
"""

from __future__ import annotations

import asyncio
import base64
import os
from typing import Any, NamedTuple

from lokin_doctor.causes.forward import (
    FORWARD_AUTH_REJECTED,
    FORWARD_AUTH_REQUIRED,
    FORWARD_CONNECT_FORBIDDEN,
    FORWARD_CONNECT_PORT,
    FORWARD_CONNECT_UNSUPPORTED,
    FORWARD_INVALID_VARIABLE,
    FORWARD_NOT_A_PROXY,
    FORWARD_PROXY_CLOSED,
    FORWARD_PROXY_ERROR,
    FORWARD_PROXY_REFUSED,
    FORWARD_PROXY_TIMEOUT,
    FORWARD_PROXY_UNRESOLVED,
    FORWARD_SOCKS_REFUSED,
    FORWARD_TARGET_UNREACHABLE,
    FORWARD_UPGRADE_ANSWERED,
)
from lokin_doctor.context import Context
from lokin_doctor.i18n import _
from lokin_doctor.instruments import proxyenv
from lokin_doctor.instruments.tunnel import ProxyError, Tunnel, open_stream
from lokin_doctor.model import CheckResult, ok, skip

CHECK_ID = "forward"

_CONNECT_KINDS = {
    "refused": FORWARD_PROXY_REFUSED,
    "timeout": FORWARD_PROXY_TIMEOUT,
    "unresolved": FORWARD_PROXY_UNRESOLVED,
    "unreachable": FORWARD_PROXY_ERROR,
    "error": FORWARD_PROXY_ERROR,
    "tls": FORWARD_PROXY_ERROR,
    "closed": FORWARD_PROXY_CLOSED,
    "not-http": FORWARD_NOT_A_PROXY,
    "socks": FORWARD_SOCKS_REFUSED,
    "socks-auth": FORWARD_SOCKS_REFUSED,
}


def route_words(route: proxyenv.Route) -> str:
    """``through proxy 127.0.0.1:8888 (HTTP_PROXY)`` or ``direct (...)``: how the report says the way."""
    if route.proxy is not None:
        return _("through proxy {proxy} ({source})").format(
            proxy=route.proxy.display, source=route.proxy.source
        )
    if route.why == "--no-proxy":
        return _("direct (--no-proxy)")
    if route.bypass is not None:
        return _("direct ({variable} entry {entry!r})").format(variable=route.why, entry=route.bypass)
    return _("direct (no proxy set)")


async def check(ctx: Context) -> CheckResult:
    settings = ctx.settings
    target = ctx.target
    route = settings.route()
    environment = proxyenv.proxy_environment(dict(settings.proxy_env))
    ev: dict[str, Any] = {"route": route_words(route)}
    if environment:
        ev["environment"] = environment
    if route.invalid is not None:
        name, problem = route.invalid
        return FORWARD_INVALID_VARIABLE.fail(
            CHECK_ID,
            _("the proxy variable {name} cannot be used: {problem}").format(name=name, problem=problem),
            _(
                "set {name} to http://host:port (or https://, socks5://), or unset it (curl and websockets fail on it too); --no-proxy goes direct"
            ).format(name=name),
            **ev,
        )
    if route.proxy is None:
        if route.why == "no proxy set" and settings.proxy is None:
            return skip(
                CHECK_ID,
                _("not applicable: no proxy set (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY): direct connection"),
                applicable=False,
                **ev,
            )
        if route.why == "--no-proxy":
            ignored = (
                _("; the proxy variables ({names}) are ignored").format(names=", ".join(environment))
                if any(k.lower() != "no_proxy" for k in environment)
                else ""
            )
            return ok(CHECK_ID, _("direct connection (--no-proxy){ignored}").format(ignored=ignored), **ev)
        return ok(
            CHECK_ID,
            _(
                "direct connection: {variable} entry {entry!r} matches {host}:{port}, so no proxy is used"
            ).format(variable=route.why, entry=route.bypass, host=target.host_for_url, port=target.port),
            **ev,
        )
    proxy = route.proxy
    ev["proxy"] = proxy.url
    ev["proxy_source"] = proxy.source
    tunnel = Tunnel()
    try:
        __, writer = await open_stream(
            target.host, target.port, deadline=ctx.deadline, route=route, tunnel=tunnel
        )
    except ProxyError as exc:
        return await _refusal(ctx, route, exc, tunnel, ev)
    except TimeoutError:
        return _refusal_kind(
            ctx, route, ProxyError("timeout", _("no answer from the proxy within the deadline")), ev
        )
    writer.close()
    answer = tunnel.answer
    ev["connect"] = answer.evidence() if answer is not None else "SOCKS5 granted"
    if tunnel.proxy_connect_ms is not None:
        ev["proxy_connect_ms"] = round(tunnel.proxy_connect_ms, 2)
    if tunnel.connect_answer_ms is not None:
        ev["connect_answer_ms"] = round(tunnel.connect_answer_ms, 2)
    ctx.facts["tunnel"] = {"proxy": proxy.display, **ev}
    said = answer.status_line if answer is not None else _("SOCKS5 CONNECT granted")
    software = answer.software or answer.header("proxy-agent") if answer is not None else None
    who = f" ({software})" if software else ""
    ms = f" in {tunnel.connect_answer_ms:.1f} ms" if tunnel.connect_answer_ms is not None else ""
    loopback = target.host in ("localhost", "::1") or target.host.startswith("127.")
    note = _("; browsers never send localhost through a proxy, curl and websockets do") if loopback else ""
    return ok(
        CHECK_ID,
        _("{way}: CONNECT {authority} answered {said}{ms}{who}{note}").format(
            way=route_words(route),
            authority=proxyenv.authority(target.host, target.port),
            said=said,
            ms=ms,
            who=who,
            note=note,
        ),
        **ev,
    )


def _refusal_kind(ctx: Context, route: proxyenv.Route, exc: ProxyError, ev: dict[str, Any]) -> CheckResult:
    """A proxy that gave no HTTP answer: refused, silent, unresolved, closed, not a proxy, SOCKS."""
    assert route.proxy is not None
    cause = _CONNECT_KINDS.get(exc.kind, FORWARD_PROXY_ERROR)
    target = ctx.target
    ev = {**ev, "error": exc.detail}
    return cause.fail(
        CHECK_ID,
        _("{way}: {detail}; the connection to {authority} never left this machine").format(
            way=route_words(route), detail=exc.detail, authority=proxyenv.authority(target.host, target.port)
        ),
        _("{fix} (the proxy came from {source})").format(fix=cause.fix_text(), source=route.proxy.source),
        **ev,
    )


async def _refusal(
    ctx: Context, route: proxyenv.Route, exc: ProxyError, tunnel: Tunnel, ev: dict[str, Any]
) -> CheckResult:
    answer = exc.answer
    if exc.kind != "status" or answer is None:
        return _refusal_kind(ctx, route, exc, ev)
    proxy = route.proxy
    assert proxy is not None
    target = ctx.target
    authority = proxyenv.authority(target.host, target.port)
    ev = {**ev, "connect": answer.evidence()}
    software = answer.software or answer.header("proxy-agent")
    who = f" ({software})" if software else ""
    way = route_words(route)
    line = answer.status_line
    says = answer.text()
    words = f": {says!r}" if says and says.lower() not in line.lower() else ""
    status = answer.status
    if status == 407 or (status == 401 and (proxy.username is not None or answer.challenges)):
        # 401 is what tinyproxy answers wrong credentials with; a 407 is the standard refusal.
        found = answer.challenges
        named = ", ".join(str(c) for c in found) or _("no Proxy-Authenticate header")
        ev["proxy_authenticate"] = [str(c) for c in found]
        basic = any(c.scheme.lower() == "basic" for c in found) or not found
        if proxy.username is not None:
            return FORWARD_AUTH_REJECTED.fail(
                CHECK_ID,
                _("{way}: {line}{who} to the credentials of the proxy URL (user {user!r}){asks}").format(
                    way=way,
                    line=line,
                    who=who,
                    user=proxy.username,
                    asks=_("; it asks {named}").format(named=named) if found else "",
                ),
                FORWARD_AUTH_REJECTED.fix_text(),
                **ev,
            )
        if basic:
            where = (
                "--proxy"
                if proxy.source == "--proxy"
                else _("{source} or --proxy").format(source=proxy.source)
            )
            hint = _(
                "put the credentials in the proxy URL: {scheme}://USER:PASSWORD@{proxy} (in {where}), or have this machine added to the proxy's allow-list"
            ).format(scheme=proxy.scheme, proxy=proxy.display, where=where)
        else:
            hint = _(
                "the proxy asks for {named}, which a proxy URL cannot carry: have this machine added to the proxy's allow-list, or run a local relay that authenticates (cntlm) and point the proxy variable at it"
            ).format(named=named)
        return FORWARD_AUTH_REQUIRED.fail(
            CHECK_ID,
            _(
                "{way}: {line}{who} to CONNECT {authority}: it asks {named} and the proxy URL has no credentials"
            ).format(way=way, line=line, who=who, authority=authority, named=named),
            hint,
            **ev,
        )
    if status in (403, 405) and target.port != 443:
        other = await _connect_answer(ctx, route, target.host, 443)
        if other is not None:
            ev["connect_443"] = other.status_line
        if other is not None and (other.ok or other.status >= 500):
            without = await _without_connect(ctx, route)
            if without is not None:
                ev["without_connect"] = without.said
            return FORWARD_CONNECT_PORT.fail(
                CHECK_ID,
                _(
                    "{way}: {line}{who}{words} to CONNECT {authority}, while CONNECT to port 443 of the same host is let through ({other}): the proxy tunnels port 443 only"
                ).format(
                    way=way, line=line, who=who, words=words, authority=authority, other=other.status_line
                ),
                _(
                    "serve the WebSocket on port 443 (wss://), or allow port {port} in the proxy (tinyproxy: ConnectPort {port}; squid: acl SSL_ports port {port}), or bypass the proxy with NO_PROXY={host}"
                ).format(port=target.port, host=target.host),
                **ev,
            )
    if status in (400, 403, 405, 501):
        without = await _without_connect(ctx, route)
        if without is not None:
            ev["without_connect"] = without.said
        if status != 403 and without is not None and without.status != status:
            # It answers a plain proxied request otherwise than CONNECT (nginx used as a forward proxy
            # answers 400): either it relays without tunnelling, or it is a web server answering itself.
            return await _plain_verdict(ctx, route, authority, answer, without, ev)
        cause = {403: FORWARD_CONNECT_FORBIDDEN, 400: FORWARD_NOT_A_PROXY}.get(
            status, FORWARD_CONNECT_UNSUPPORTED
        )
        return cause.fail(
            CHECK_ID,
            _("{way}: {line}{who}{words} to CONNECT {authority}").format(
                way=way, line=line, who=who, words=words, authority=authority
            ),
            cause.fix_text(),
            **ev,
        )
    if status >= 500:
        # A 5xx to CONNECT is the proxy failing to reach the server, unless the same server answers the
        # upgrade sent as a plain proxied request: then CONNECT itself is what the proxy cannot do (Apache
        # without mod_proxy_connect answers CONNECT with 500 "No protocol handler was valid").
        without = await _without_connect(ctx, route)
        if without is not None:
            ev["without_connect"] = without.said
        if without is not None and without.status < 500:
            return await _plain_verdict(ctx, route, authority, answer, without, ev)
        return FORWARD_TARGET_UNREACHABLE.fail(
            CHECK_ID,
            _("{way}: the proxy could not reach {authority}: {line}{who}{words}").format(
                way=way, authority=authority, line=line, who=who, words=words
            ),
            _("start the WebSocket server on {authority}, or make it reachable from the proxy{local}").format(
                authority=authority,
                local=_(" (localhost is the proxy's own: add {host} to NO_PROXY)").format(host=target.host)
                if target.host in ("localhost", "::1") or target.host.startswith("127.")
                else _(" (its DNS and network, not this machine's)"),
            ),
            **ev,
        )
    return FORWARD_NOT_A_PROXY.fail(
        CHECK_ID,
        _("{way}: {line}{who}{words} to CONNECT {authority}: not the answer of a forward proxy").format(
            way=way, line=line, who=who, words=words, authority=authority
        ),
        FORWARD_NOT_A_PROXY.fix_text(),
        **ev,
    )


async def _plain_verdict(
    ctx: Context,
    route: proxyenv.Route,
    authority: str,
    answer: proxyenv.ProxyAnswer,
    without: _Plain,
    ev: dict[str, Any],
) -> CheckResult:
    """CONNECT refused, and the upgrade sent as a plain proxied request answered otherwise.

    A web or WebSocket server at the proxy's address answers that request itself, whatever host it
    names; a proxy relays it. When both answers carry the same ``Server`` and no ``Via`` (nginx rewrites
    the upstream's ``Server`` too, so that alone proves nothing), the same request for a host that
    cannot exist (:data:`NOWHERE`, RFC 6761) tells them apart: a proxy cannot reach it, a server answers
    it as before. Otherwise a proxy that relays the upgrade (101) cannot CONNECT, and one that answers
    it with anything else does not tunnel WebSockets."""
    way = route_words(route)
    line = answer.status_line
    software = answer.software or answer.header("proxy-agent")
    who = f" ({software})" if software else ""
    server = answer.header("server")
    nowhere = (
        await _without_connect(ctx, route, NOWHERE)
        if server and without.via is None and without.server == server
        else None
    )
    if nowhere is not None and nowhere.status == without.status:
        ev["nowhere"] = _("{line} for http://{host}/ too").format(line=nowhere.said, host=NOWHERE)
        return FORWARD_NOT_A_PROXY.fail(
            CHECK_ID,
            _(
                "{way}: {line} to CONNECT {authority} and {without} to the upgrade sent as a plain proxied request, from {server} itself (the same answer for the host {nowhere}, which resolves nowhere): a web or WebSocket server, not a forward proxy"
            ).format(
                way=way, line=line, authority=authority, without=without.line, server=server, nowhere=NOWHERE
            ),
            FORWARD_NOT_A_PROXY.fix_text(),
            **ev,
        )
    if without.status == 101:
        return FORWARD_CONNECT_UNSUPPORTED.fail(
            CHECK_ID,
            _(
                "{way}: {line}{who} to CONNECT {authority}; the upgrade sent as a plain proxied request passes ({without}), so only clients that do not use CONNECT get through (browsers do use it)"
            ).format(way=way, line=line, who=who, authority=authority, without=without.said),
            FORWARD_CONNECT_UNSUPPORTED.fix_text(),
            **ev,
        )
    return FORWARD_UPGRADE_ANSWERED.fail(
        CHECK_ID,
        _(
            "{way}: {line}{who} to CONNECT, and the upgrade sent as a plain proxied request came back {without}: the proxy does not tunnel WebSockets"
        ).format(way=way, line=line, who=who, without=without.said),
        FORWARD_UPGRADE_ANSWERED.fix_text(),
        **ev,
    )


async def _connect_answer(
    ctx: Context, route: proxyenv.Route, host: str, port: int
) -> proxyenv.ProxyAnswer | None:
    """The proxy's answer to CONNECT ``host:port`` (a second look at its rules), the tunnel closed at once."""
    tunnel = Tunnel()
    try:
        __, writer = await open_stream(host, port, deadline=ctx.deadline, route=route, tunnel=tunnel)
    except ProxyError as exc:
        return exc.answer
    except (OSError, TimeoutError):
        return None
    writer.close()
    return tunnel.answer


class _Plain(NamedTuple):
    """What the proxy answered the upgrade sent as a plain proxied request."""

    status: int
    #: ``HTTP 404 File not found``
    line: str
    #: the line with its ``Via`` (else its ``Server``): how the report shows it
    said: str
    server: str | None
    via: str | None


#: A host that resolves nowhere (RFC 6761): what a proxy cannot reach and a web server does not look at.
NOWHERE = "lokin-doctor.invalid"


async def _without_connect(ctx: Context, route: proxyenv.Route, nowhere: str | None = None) -> _Plain | None:
    """For ws://: what the proxy answers the upgrade sent as a plain proxied request (absolute-form GET,
    as a client without CONNECT sends it) for the target, or for the host ``nowhere`` (port 80); None
    for wss:// or when nothing came."""
    from lokin_doctor.instruments.observer import parse_head

    target = ctx.target
    proxy = route.proxy
    if target.secure or proxy is None or proxy.scheme.startswith("socks"):
        return None
    loop = asyncio.get_running_loop()
    key = base64.b64encode(os.urandom(16)).decode()
    authority = nowhere or f"{target.host_for_url}:{target.port}"
    lines = [
        f"GET http://{authority}{target.resource} HTTP/1.1",
        f"Host: {authority}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        "User-Agent: lokin-doctor",
    ]
    if proxy.username is not None:
        token = base64.b64encode(f"{proxy.username}:{proxy.password or ''}".encode()).decode()
        lines.append(f"Proxy-Authorization: Basic {token}")
    data = bytearray()
    try:
        async with asyncio.timeout_at(min(ctx.deadline, loop.time() + max(0.5, ctx.remaining() / 3))):
            reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
            try:
                writer.write(("\r\n".join([*lines, "", ""])).encode())
                while b"\r\n\r\n" not in data and len(data) < 65536:
                    chunk = await reader.read(4096)
                    if not chunk:
                        break
                    data += chunk
            finally:
                writer.close()
    except (OSError, TimeoutError):
        pass
    parsed = parse_head(bytes(data), partial=True)
    if parsed is None:
        return None
    status, reason, headers, __ = parsed
    via = next((v for k, v in headers if k.lower() == "via"), None)
    server = next((v for k, v in headers if k.lower() == "server"), None)
    line = f"HTTP {status} {reason}".rstrip()
    said = line
    if via:
        said += f", Via: {via}"
    elif server:
        said += f", Server: {server}"
    return _Plain(status, line, said, server, via)
