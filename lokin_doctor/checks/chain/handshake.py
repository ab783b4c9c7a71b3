"""``handshake``: a complete RFC 6455 opening handshake; anything but a valid 101 is diagnosed
by what came back.

:func:`classify` is pure (an :class:`~lokin_doctor.instruments.wire.Outcome` in, a result out) and shared by
the backends, variants, load and watch code, so every part of the tool speaks the same cause codes.

Facts written: ``outcome`` (the Outcome), ``conn`` (the open WsConn after a 101).
"""

from __future__ import annotations

import re
from dataclasses import replace

from lokin_doctor import causes
from lokin_doctor.causes import Tag
from lokin_doctor.causes.host import PORT_UNEXPECTED_OWNER
from lokin_doctor.causes.http import (
    HANDSHAKE_BAD_ACCEPT,
    HANDSHAKE_CLOSED,
    HANDSHAKE_CONNECT_TIMEOUT,
    HANDSHAKE_EXTENSION_NOT_OFFERED,
    HANDSHAKE_EXTENSION_PARAMS,
    HANDSHAKE_HEADERS_TOO_LARGE,
    HANDSHAKE_INCOMPLETE_REPLY,
    HANDSHAKE_INVALID_UPGRADE,
    HANDSHAKE_NO_RESPONSE,
    HANDSHAKE_NOT_HTTP,
    HANDSHAKE_REFUSED,
    HANDSHAKE_RESET,
    HANDSHAKE_SUBPROTOCOL_NOT_OFFERED,
    HANDSHAKE_SUBPROTOCOL_REQUIRED,
    HANDSHAKE_TLS_ERROR,
    HANDSHAKE_TLS_EXPECTED,
)
from lokin_doctor.causes.tls import TLS_CLIENT_CERT_REJECTED, TLS_CLIENT_CERT_REQUIRED
from lokin_doctor.checks.chain import answer_table
from lokin_doctor.checks.chain.answer_table import NGINX_UPGRADE_LINES
from lokin_doctor.checks.chain.sioanswer import classify_answer
from lokin_doctor.context import Context
from lokin_doctor.i18n import N_, _
from lokin_doctor.instruments.answer import Answer, read_answer
from lokin_doctor.instruments.observer import OutcomeKind
from lokin_doctor.instruments.senders import Kind
from lokin_doctor.instruments.wire import Outcome, open_handshake
from lokin_doctor.model import CheckResult, fail, ok, skip
from lokin_doctor.target import Target


def proxy_name(out: Outcome) -> str | None:
    """The proxy, CDN or load balancer a reply came from or through (the innermost one: a reverse proxy
    before a CDN), read from the whole answer; None when none is in sight."""
    answer = answer_of(out) if out.kind == OutcomeKind.STATUS else None
    if answer is None:
        if not out.headers:
            return None
        answer = read_answer(out.status or 101, out.reason, out.headers, b"")
    ranked = sorted(
        (s for s in (*answer.through, answer.sender) if s.kind in answer_table.PROXY_KINDS),
        key=lambda s: (s.kind is not Kind.PROXY, s.kind is not Kind.LOAD_BALANCER),
    )
    if not ranked:
        return None
    return ranked[0].display() if ranked[0].id == "via" else _(ranked[0].name)


#: TLS alerts a server sends when it refuses the client certificate it got.
CLIENT_CERT_REFUSED_ALERTS = (
    "unknown ca",
    "bad certificate",
    "certificate unknown",
    "access denied",
    "certificate expired",
    "certificate revoked",
    "unsupported certificate",
    "decrypt error",
)
CLIENT_CERT_HINT = N_(
    "the server wants mutual TLS: retry with --client-cert client.pem --client-key client.key (a certificate issued by the CA the server trusts, e.g. nginx ssl_client_certificate); browsers need that certificate installed in their store, or turn client authentication off (nginx ssl_verify_client off / optional)"
)
CLIENT_CERT_REJECTED_HINT = N_(
    "the server does not accept this client certificate: have it issued by the CA the server trusts (nginx ssl_client_certificate), check its dates and that it allows client authentication (extendedKeyUsage clientAuth)"
)


def client_cert_result(out: Outcome, check_id: str, ev: dict[str, object]) -> CheckResult | None:
    """Mutual TLS, whoever says it: the TLS alert (1.2: during the handshake, 1.3: at the first read, or
    a bare close after a CertificateRequest), or a proxy's 400 page (nginx "No required SSL certificate
    was sent" / "The SSL certificate error")."""
    where = ev["address"]
    error = (out.error or "").lower()
    body = out.body_text(500).lower() if out.kind == OutcomeKind.STATUS else ""
    ev = {
        **ev,
        "client_certificate_requested": out.cert_requested,
        "client_certificate_offered": out.client_cert_offered,
    }
    tls_broke = out.kind in (OutcomeKind.TLS_ERROR, OutcomeKind.CLOSED, OutcomeKind.RESET)
    if (
        "no required ssl certificate was sent" in body
        or "certificate required" in error
        or (tls_broke and out.cert_requested and not out.client_cert_offered)
    ):
        who = (
            f" ({proxy_name(out)}: HTTP {out.status})"
            if out.kind == OutcomeKind.STATUS and proxy_name(out) is not None
            else ""
        )
        return fail(
            check_id,
            TLS_CLIENT_CERT_REQUIRED,
            _("{where} requires a client certificate (mutual TLS){who} and none was offered").format(
                where=where, who=who
            ),
            _(CLIENT_CERT_HINT),
            **ev,
        )
    if "the ssl certificate error" in body or (
        tls_broke
        and out.client_cert_offered
        and (out.cert_requested or any(a in error for a in CLIENT_CERT_REFUSED_ALERTS))
    ):
        return fail(
            check_id,
            TLS_CLIENT_CERT_REJECTED,
            _("{where} refused the client certificate offered: {value}").format(
                where=where, value=out.error or out.status_line
            ),
            _(CLIENT_CERT_REJECTED_HINT),
            **ev,
        )
    return None


def _is_tls_record(data: bytes) -> bool:
    return len(data) >= 3 and data[0] in (0x15, 0x16) and data[1] == 0x03


def classify(
    out: Outcome, target: Target, *, check_id: str = "handshake", origin: str | None = None
) -> CheckResult:
    """Turn one handshake outcome into a result with a stable cause code and a fix."""
    ev = out.evidence()
    where = ev["address"]
    if out.kind == OutcomeKind.UPGRADED:
        ext = out.header("sec-websocket-extensions")
        proto = out.header("sec-websocket-protocol")
        extra = "".join([f", extensions: {ext}" if ext else "", f", subprotocol: {proto}" if proto else ""])
        ms = (
            _(" in {handshake_ms:.1f} ms").format(handshake_ms=out.handshake_ms)
            if out.handshake_ms is not None
            else ""
        )
        return ok(
            check_id,
            _("HTTP 101 Switching Protocols from {where}{ms}, Sec-WebSocket-Accept valid{extra}").format(
                where=where, ms=ms, extra=extra
            ),
            **ev,
        )
    if out.kind == OutcomeKind.CONNECT_REFUSED:
        return fail(
            check_id,
            HANDSHAKE_REFUSED,
            _("connection refused on {where} at the handshake").format(where=where),
            _("the server stopped accepting between checks (crashed or restarting?): read its log"),
            **ev,
        )
    if out.kind == OutcomeKind.CONNECT_TIMEOUT:
        return fail(
            check_id,
            HANDSHAKE_CONNECT_TIMEOUT,
            _("no answer to the connect on {where} in time").format(where=where),
            _("the host drops packets or is overloaded: check the firewall and the server's load"),
            **ev,
        )
    mtls = client_cert_result(out, check_id, ev)
    if mtls is not None:
        return mtls
    if out.kind == OutcomeKind.TLS_ERROR:
        return fail(
            check_id,
            HANDSHAKE_TLS_ERROR,
            _("TLS failed with {where}: {error}").format(where=where, error=out.error),
            _("see the tls check; if the port does not speak TLS, use ws:// instead of wss://"),
            **ev,
        )
    if out.kind == OutcomeKind.CLOSED:
        return fail(
            check_id,
            HANDSHAKE_CLOSED,
            _("{where} accepted the connection, then closed it without a reply").format(where=where),
            _(
                "the program on this port does not speak HTTP, or the server crashed on the request: read the server's log; if it expects TLS, use wss://"
            ),
            **ev,
        )
    if out.kind == OutcomeKind.RESET:
        return fail(
            check_id,
            HANDSHAKE_RESET,
            _("{where} reset the connection during the handshake").format(where=where),
            _(
                "the server or a firewall resets connections: read the server's log, check limits (max connections, per-IP caps) and firewall rules"
            ),
            **ev,
        )
    if out.kind == OutcomeKind.TIMEOUT:
        if out.raw:
            return fail(
                check_id,
                HANDSHAKE_INCOMPLETE_REPLY,
                _("{where} sent {n_raw} bytes but no complete HTTP reply in time").format(
                    where=where, n_raw=len(out.raw)
                ),
                _(
                    "the program on this port is not a WebSocket server, or is stuck: check what holds the port"
                ),
                **ev,
            )
        return fail(
            check_id,
            HANDSHAKE_NO_RESPONSE,
            _(
                "{where} accepted the TCP connection but sent nothing back to the opening handshake within the deadline"
            ).format(where=where),
            _(
                "the program on this port does not speak HTTP or is stuck (CPU, deadlock); a TLS-only port waits silently for wss://; check what holds the port and restart the server"
            ),
            **ev,
        )
    if out.kind == OutcomeKind.NOT_HTTP:
        if _is_tls_record(out.raw):
            return fail(
                check_id,
                HANDSHAKE_TLS_EXPECTED,
                _("{where} answered with TLS bytes: the port expects wss://, not ws://").format(where=where),
                _("use wss://{host_for_url}:{port}{resource} in the client URL").format(
                    host_for_url=target.host_for_url, port=target.port, resource=target.resource
                ),
                **ev,
            )
        first = out.raw[:40].decode("latin-1").strip()
        return fail(
            check_id,
            HANDSHAKE_NOT_HTTP,
            _("{where} answered with something that is not HTTP: {first!r}").format(where=where, first=first),
            _(
                "this port belongs to another protocol (SSH, a database, a mail server...): fix the port in the client URL"
            ),
            **ev,
        )
    if out.kind == OutcomeKind.BAD_ACCEPT:
        return fail(
            check_id,
            HANDSHAKE_BAD_ACCEPT,
            _("{where} answered 101 with a wrong Sec-WebSocket-Accept ({header})").format(
                where=where, header=out.header("sec-websocket-accept")
            ),
            _(
                "something rewrites the handshake (a proxy or a broken server library): compare with the backend directly and fix or upgrade the server's WebSocket library"
            ),
            **ev,
        )
    if out.kind == OutcomeKind.HEADERS_TOO_LARGE:
        return fail(
            check_id,
            HANDSHAKE_HEADERS_TOO_LARGE,
            _("{where} sent a reply head too large to take: {error}").format(where=where, error=out.error),
            _(
                "something sends a runaway header block (a broken proxy or application adding headers in a loop, huge cookies): compare with the backend directly and fix what adds the headers"
            ),
            **ev,
        )
    if out.kind in (OutcomeKind.BAD_SUBPROTOCOL, OutcomeKind.BAD_EXTENSION):
        return _classify_negotiation(out, check_id, ev)
    if out.kind == OutcomeKind.INVALID_UPGRADE:
        return fail(
            check_id,
            HANDSHAKE_INVALID_UPGRADE,
            _("{where} answered 101 but {error}").format(where=where, error=out.error),
            _(
                "a proxy mangles the Upgrade/Connection headers: set them as in the nginx lines:\n{NGINX_UPGRADE_LINES}"
            ).format(NGINX_UPGRADE_LINES=NGINX_UPGRADE_LINES),
            **ev,
        )
    sio = classify_answer(out, target, check_id)  # an Engine.IO error answer: its Socket.IO cause
    if sio is not None:
        return sio
    return _classify_status(out, target, check_id, origin, ev)


def _negotiation_evidence(out: Outcome, ev: dict[str, object]) -> dict[str, object]:
    ev = dict(ev)
    ev["offered"] = {k.lower(): v for k, v in out.offered.items()} or "nothing"
    ev["answered"] = {
        k: v
        for k in ("sec-websocket-protocol", "sec-websocket-extensions")
        if (v := out.header(k)) is not None
    } or "nothing"
    if out.error:
        ev["error"] = out.error
    return ev


def _classify_negotiation(out: Outcome, check_id: str, ev: dict[str, object]) -> CheckResult:
    """A 101 whose subprotocol or extension the client never offered (or cannot accept): browsers fail it."""
    where = ev["address"]
    ev = _negotiation_evidence(out, ev)
    offered_proto = out.offered.get("Sec-WebSocket-Protocol")
    if out.kind == OutcomeKind.BAD_SUBPROTOCOL:
        chosen = out.header("sec-websocket-protocol") or ""
        offered_text = (
            _("offered {value!r}").format(value=offered_proto) if offered_proto else _("offered none")
        )
        first = chosen.split(",")[0].strip() or "NAME"
        return fail(
            check_id,
            HANDSHAKE_SUBPROTOCOL_NOT_OFFERED,
            _(
                "{where} answered 101 selecting subprotocol {chosen!r}, but the client {offered_text}: a browser fails this connection"
            ).format(where=where, chosen=chosen, offered_text=offered_text),
            _(
                "make the page offer it (new WebSocket(url, [{first!r}])) and retry with --subprotocol {first}, or fix the server to select only a subprotocol the client offered (or none)"
            ).format(first=first),
            **ev,
        )
    answered = out.header("sec-websocket-extensions") or ""
    offered_ext = out.offered.get("Sec-WebSocket-Extensions")
    name = answered.split(";")[0].split(",")[0].strip()
    offered_names = [e.split(";")[0].strip() for e in (offered_ext or "").split(",") if e.strip()]
    if name and name not in offered_names:
        return fail(
            check_id,
            HANDSHAKE_EXTENSION_NOT_OFFERED,
            _(
                "{where} answered 101 with extension {name!r}, which the client never offered (offered: {value}): a browser fails this connection"
            ).format(where=where, name=name, value=offered_ext or "none"),
            _(
                "the server (or a proxy) forces {name!r}: disable it on the server, or enable only permessage-deflate, which browsers offer"
            ).format(name=name),
            **ev,
        )
    return fail(
        check_id,
        HANDSHAKE_EXTENSION_PARAMS,
        _("{where} answered 101 with {answered!r}, parameters the client cannot accept ({error})").format(
            where=where, answered=answered, error=out.error
        ),
        _(
            "the server's permessage-deflate settings are outside what clients accept (window bits 8-15, client_max_window_bits only when offered): use the library's defaults for compression"
        ),
        **ev,
    )


def _required_subprotocol(body: str) -> str | None:
    """The subprotocol a rejection page names, if it names one."""
    m = re.search(r"expected one of ([\w.:/+-]+)", body) or re.search(
        r"subprotocols?(?: required)?[:=\s]+[\"'`]?([A-Za-z][\w.:/+-]*)", body, re.I
    )
    if m is None:
        return None
    value = m.group(1).rstrip(".,")
    return None if value.lower() in ("required", "missing", "is", "not", "was", "must") else value


def answer_of(out: Outcome) -> Answer | None:
    """The whole non-101 reply, read (who answered, what it said); None when there was no HTTP reply."""
    if out.kind != OutcomeKind.STATUS or out.status is None:
        return None
    return read_answer(out.status, out.reason, out.headers, out.body)


def _classify_status(
    out: Outcome, target: Target, check_id: str, origin: str | None, ev: dict[str, object]
) -> CheckResult:
    """Any HTTP reply but a 101, read whole and looked up in the status table (answer_table)."""
    answer = answer_of(out)
    assert answer is not None
    ev = {**ev, "answer": answer.evidence()}
    status = answer.status
    body = out.body_text(500)
    if 400 <= status < 500 and re.search(r"subprotocol|sec-websocket-protocol", body, re.I):
        wanted = _required_subprotocol(body)
        nev = _negotiation_evidence(out, ev)
        nev.pop("answered", None)
        if wanted:
            hint = _(
                "offer {wanted!r}: retry with --subprotocol {wanted}, and open the socket in the page with new WebSocket(url, [{wanted!r}])"
            ).format(wanted=wanted)
        else:
            hint = _(
                "offer the subprotocol the server expects: retry with --subprotocol NAME (the name is in the server's code: its subprotocols / handleProtocols), and pass it in new WebSocket(url, [NAME])"
            )
        return fail(
            check_id,
            HANDSHAKE_SUBPROTOCOL_REQUIRED,
            _("{line} from {who}: the server requires a subprotocol the client did not offer{value}").format(
                line=answer.line, who=answer.who(), value=f" ({body.strip()[:120]})" if body.strip() else ""
            ),
            hint,
            **nev,
        )
    cause, summary, hint = answer_table.read(answer, target, origin)
    return fail(check_id, cause, summary, hint, **ev)


async def check(ctx: Context) -> CheckResult:
    settings = ctx.settings
    target = settings.target
    tls = ctx.results.get("tls")
    if target.secure and tls is not None and tls.status.value == "fail" and not settings.insecure:
        return skip("handshake", _("skipped: tls failed (use --insecure to test the upgrade anyway)"))
    address = ctx.facts["reachable"][0]
    out = await open_handshake(
        target,
        address,
        deadline=ctx.deadline,
        origin=settings.origin,
        headers=settings.headers,
        subprotocols=settings.subprotocols,
        ssl_context=ctx.ssl_context() if target.secure else None,
        route=settings.route(),  # direct, or through the forward proxy (checks/chain/forward.py)
    )
    ctx.facts["outcome"] = out
    if out.conn is not None:
        ctx.facts["conn"] = out.conn
    return classify(out, target, origin=settings.origin)


def finalize(ctx: Context, result: CheckResult) -> CheckResult:
    """Once every check is done: when another program holds the port, the handshake's fix names it.

    Done after the run rather than by waiting for the port scan, so the handshake never waits on psutil.
    """
    port_result = ctx.results.get("port")
    if (
        not causes.has(result.code, Tag.OWNER_EXPLAINS)
        or port_result is None
        or port_result.code != PORT_UNEXPECTED_OWNER
    ):
        return result
    owners = ctx.facts.get("port_owners") or {}
    from lokin_doctor.checks.host.port import describe_owner

    names = "; ".join(describe_owner(o) for o in owners.values())
    port = ctx.target.port
    return replace(
        result,
        summary=_("{summary}; port {port} is held by {names}").format(
            summary=result.summary, port=port, names=names
        ),
        hint=_(
            "{names} holds port {port} instead of the WebSocket server: stop it or move one of the two "
            "to another port (and the client URL with it)"
        ).format(names=names, port=port),
    )
