"""``tls`` (wss:// only): protocol version, cipher, ALPN, the certificate's names, issuer and expiry, and
a distinct cause when the TLS handshake fails.

How it probes, all bounded by the run's deadline:

1. One TLS handshake that verifies like a browser (system CAs plus ``--ca-file``, the host name as
   SNI and as the name to match, ALPN ``http/1.1`` as a WebSocket client offers). ``--insecure``
   does not change this check: a bad certificate is always reported (``--insecure`` only lets the
   handshake check go on past it).
2. If the certificate is rejected, a second, non-verifying handshake reads the certificate chain the
   server sends, so the report can say what is wrong with it (names, dates, issuer).
3. If the server rejects ALPN ``http/1.1`` (a no_application_protocol alert), a handshake offering
   ``h2, http/1.1`` tells whether it only speaks HTTP/2 (``tls.h2-only``).
4. If the reply is not TLS, the connection closes or resets, or no answer has come by half the
   remaining time, a plain WebSocket handshake to the same port (ws://) tells whether the port speaks
   plain HTTP (``tls.not-tls``).

Incomplete chain vs unknown CA: OpenSSL says "unable to get local issuer certificate" for both.
We walk the chain the server sent from the leaf. If the server sent intermediates and the top one's
issuer is not trusted, the CA is unknown. If it sent its leaf alone and the leaf's issuer is not
trusted, the missing certificate is an intermediate when (a) the leaf has an AIA caIssuers URL
(public CAs always put one; it is what lets browsers fetch the missing intermediate, which is why a
browser may work where Node/Python fail), or (b) ``--ca-file`` was given (you trust a CA for this
server) and the issuer is not in it: a leaf directly issued by a private root would verify, so the
link in between is missing. Otherwise the CA is unknown (a private CA: pass ``--ca-file``).

Facts written: ``tls_info`` (version, cipher, ALPN and the leaf's facts).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from typing import Any

from lokin_doctor.causes.tls import (
    TLS_CIPHER_MISMATCH,
    TLS_CLIENT_CERT_REJECTED,
    TLS_CLIENT_CERT_REQUIRED,
    TLS_EXPIRED,
    TLS_EXPIRES_SOON,
    TLS_H2_ONLY,
    TLS_HANDSHAKE_FAILED,
    TLS_HOSTNAME_MISMATCH,
    TLS_INCOMPLETE_CHAIN,
    TLS_NO_SNI,
    TLS_NOT_TLS,
    TLS_NOT_YET_VALID,
    TLS_PROTOCOL_VERSION,
    TLS_RESET,
    TLS_SELF_SIGNED,
    TLS_TIMEOUT,
    TLS_UNKNOWN_CA,
    TLS_UNKNOWN_NAME,
)
from lokin_doctor.context import Context
from lokin_doctor.i18n import _
from lokin_doctor.instruments import tlsinfo
from lokin_doctor.instruments.tlsinfo import TlsProbe
from lokin_doctor.instruments.wire import Outcome, open_handshake
from lokin_doctor.model import CheckResult, fail, ok, warn

#: Warn when the certificate expires within this many days.
EXPIRY_WARN_DAYS = 14


def _where(host: str, address: str, port: int) -> str:
    where = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
    return where if host == address else f"{host} ({where})"


def _leaf_notes(info: dict[str, Any], host: str) -> list[str]:
    notes = []
    if info.get("days_left", 0) < 0:
        notes.append(
            _("it expired {days_left:g} days ago ({not_after})").format(
                days_left=abs(info["days_left"]), not_after=info["not_after"]
            )
        )
    if info.get("matches_host") is False:
        notes.append(
            _("its names ({value}) do not include {host}").format(
                value=", ".join(info["sans"]) or "none", host=host
            )
        )
    return notes


def _served_summary(chain: list[bytes]) -> list[str]:
    out = []
    for der in chain:
        try:
            cert = tlsinfo.load(der)
        except ValueError:
            continue
        out.append(f"{tlsinfo.short_name(cert.subject)} (issuer {tlsinfo.short_name(cert.issuer)})")
    return out


async def _plain_probe(ctx: Context, address: str) -> Outcome:
    target = replace(ctx.target, scheme="ws")
    return await open_handshake(
        target, address, deadline=ctx.deadline, keep_open=False, route=ctx.settings.route()
    )


def _verify_failure(
    ctx: Context, main: TlsProbe, raw: TlsProbe | None, trusted: set[bytes], where: str
) -> CheckResult:
    host = ctx.target.host
    code_num = main.verify_code
    msg = main.verify_message or main.error or "certificate verify failed"
    chain = raw.chain if raw is not None else []
    ev: dict[str, Any] = {"address": where, "verify_code": code_num, "verify_message": msg}
    info: dict[str, Any] = {}
    if chain:
        info = tlsinfo.describe(chain[0], host)
        ev["certificate"] = info
        ev["served_chain"] = _served_summary(chain)
    notes = _leaf_notes(info, host) if info else []
    subject = info.get("subject_cn", _("the certificate"))
    ca_hint = f"--ca-file {ctx.settings.ca_file}" if ctx.settings.ca_file else _("this machine's CA store")

    def extra(skip: str) -> str:
        others = [n for n in notes if not (skip and n.startswith(skip))]
        return ("; also " + "; ".join(others)) if others else ""

    if code_num in (tlsinfo.V_CERT_HAS_EXPIRED,):
        return fail(
            "tls",
            TLS_EXPIRED,
            _("the certificate of {where} expired on {info}{value}").format(
                where=where, info=info.get("not_after", "?"), value=extra(_("it expired"))
            ),
            _(
                "renew the certificate (certbot renew, or your CA) and reload the server/proxy; check the renewal timer"
            ),
            **ev,
        )
    if code_num == tlsinfo.V_CERT_NOT_YET_VALID:
        return fail(
            "tls",
            TLS_NOT_YET_VALID,
            _("the certificate of {where} is not valid before {info}").format(
                where=where, info=info.get("not_before", "?")
            ),
            _(
                "check the clock of the server and of this machine (timedatectl), or install a certificate valid now"
            ),
            **ev,
        )
    if code_num in (tlsinfo.V_HOSTNAME_MISMATCH, tlsinfo.V_IP_ADDRESS_MISMATCH):
        names = ", ".join(info.get("sans") or []) or "none"
        return fail(
            "tls",
            TLS_HOSTNAME_MISMATCH,
            _("the certificate of {where} is for {names}, not {host}{value}").format(
                where=where, names=names, host=host, value=extra(_("its names"))
            ),
            _(
                "issue a certificate that includes {host} (subjectAltName), or use a URL with one of its names"
            ).format(host=host),
            **ev,
        )
    if code_num == tlsinfo.V_DEPTH_ZERO_SELF_SIGNED_CERT:
        return fail(
            "tls",
            TLS_SELF_SIGNED,
            _("the certificate of {where} is self-signed ({subject}){value}").format(
                where=where, subject=subject, value=extra("")
            ),
            _(
                "browsers reject it: install a certificate from a CA (e.g. Let's Encrypt); for a private setup make a CA and pass it with --ca-file (and install it on the clients)"
            ),
            **ev,
        )
    if code_num in (
        tlsinfo.V_UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
        tlsinfo.V_UNABLE_TO_GET_ISSUER_CERT,
        tlsinfo.V_UNABLE_TO_VERIFY_LEAF_SIGNATURE,
        tlsinfo.V_SELF_SIGNED_CERT_IN_CHAIN,
    ):
        path = tlsinfo.served_path(chain) if chain else []
        if path:
            top = path[-1]
            missing = tlsinfo.short_name(top.issuer)
            leaf = path[0]
            aia = tlsinfo.aia_ca_issuers(leaf)
            in_ca_file = False
            if ctx.settings.ca_file:
                in_ca_file = top.issuer in tlsinfo.file_subjects(ctx.settings.ca_file)
            issuer_known = top.issuer.public_bytes() in trusted or in_ca_file
            leaf_only = len(path) == 1 and top.issuer != top.subject
            if (
                code_num != tlsinfo.V_SELF_SIGNED_CERT_IN_CHAIN
                and leaf_only
                and not issuer_known
                and (aia or ctx.settings.ca_file)
            ):
                ev["missing_issuer"] = top.issuer.rfc4514_string()
                if aia:
                    ev["aia_ca_issuers"] = aia
                why = (
                    _("browsers may still work by fetching it from {aia}, Node and Python fail").format(
                        aia=aia[0]
                    )
                    if aia
                    else _("it is not in {ca_hint} either, so clients cannot build the chain").format(
                        ca_hint=ca_hint
                    )
                )
                return fail(
                    "tls",
                    TLS_INCOMPLETE_CHAIN,
                    _(
                        "{where} sends only its own certificate; its issuer {missing} (an intermediate CA) is missing from the chain: {why}{value}"
                    ).format(where=where, missing=missing, why=why, value=extra("")),
                    _(
                        "configure the full chain on the server: leaf then intermediate(s) in one file (nginx ssl_certificate fullchain.pem, not cert.pem); if the intermediate really is your root, pass it with --ca-file"
                    ),
                    **ev,
                )
            return fail(
                "tls",
                TLS_UNKNOWN_CA,
                _(
                    "the certificate of {where} chains to {missing}, which {ca_hint} does not trust{value}"
                ).format(where=where, missing=missing, ca_hint=ca_hint, value=extra("")),
                _(
                    "use a certificate from a public CA, or pass the private CA's certificate with --ca-file (and install it on every client)"
                ),
                **ev,
            )
        return fail(
            "tls",
            TLS_UNKNOWN_CA,
            _("the certificate of {where} is issued by a CA that {ca_hint} does not trust ({msg})").format(
                where=where, ca_hint=ca_hint, msg=msg
            ),
            _("use a certificate from a public CA, or pass the private CA with --ca-file"),
            **ev,
        )
    weak = code_num in tlsinfo.V_TOO_WEAK
    return fail(
        "tls",
        TLS_HANDSHAKE_FAILED,
        _("the certificate of {where} was rejected: {msg}{value}").format(
            where=where, msg=msg, value=extra("")
        ),
        _(
            "issue a new certificate with a key clients accept (RSA 2048 bits or more, or ECDSA P-256) signed with SHA-256: browsers and OpenSSL refuse weaker ones"
        )
        if weak
        else _("fix the certificate named in the evidence, or pass --ca-file for a private CA"),
        **ev,
    )


async def check(ctx: Context) -> CheckResult:
    target = ctx.target
    host, port = target.host, target.port
    address: str = ctx.facts["reachable"][0]
    where = _where(host, address, port)
    route = ctx.settings.route()
    loop = asyncio.get_running_loop()
    ca_file = ctx.settings.ca_file
    settings = ctx.settings
    verify_ctx = tlsinfo.client_context(
        ca_file, verify=True, client_cert=settings.client_cert, client_key=settings.client_key
    )

    main_task = asyncio.ensure_future(
        tlsinfo.probe(
            address, port, server_hostname=host, ssl_context=verify_ctx, deadline=ctx.deadline, route=route
        )
    )
    plain_task: asyncio.Future[Outcome] | None = None
    try:
        halfway = max(0.0, (ctx.deadline - loop.time()) / 2)
        done, __ = await asyncio.wait({main_task}, timeout=halfway)
        if not done:
            # No TLS answer yet: find out in parallel whether the port speaks plain HTTP.
            plain_task = asyncio.ensure_future(_plain_probe(ctx, address))
        main = await main_task

        if main.ok:
            return _success(ctx, main, where, verify_ctx)

        if main.kind == "verify":
            raw_ctx = tlsinfo.client_context(None, verify=False)
            raw, trusted = await asyncio.gather(
                tlsinfo.probe(
                    address,
                    port,
                    server_hostname=host,
                    ssl_context=raw_ctx,
                    deadline=ctx.deadline,
                    route=route,
                ),
                ctx.blocking(f"tls-trusted:{ca_file}", lambda: tlsinfo.trusted_subjects(verify_ctx)),
            )
            result = _verify_failure(ctx, main, raw if raw.ok else None, trusted, where)
            if raw.ok:
                ctx.facts["tls_info"] = {
                    "version": raw.version,
                    "cipher": raw.cipher,
                    "alpn": raw.alpn,
                    **(tlsinfo.describe(raw.chain[0], host) if raw.chain else {}),
                }
            return result

        if main.kind == "alpn":
            h2_ctx = tlsinfo.client_context(None, verify=False, alpn=["h2", "http/1.1"])
            h2 = await tlsinfo.probe(
                address, port, server_hostname=host, ssl_context=h2_ctx, deadline=ctx.deadline, route=route
            )
            ev = {
                "address": where,
                "alpn_offered": ["http/1.1"],
                "error": main.error,
                "alpn_with_h2_offered": h2.alpn if h2.ok else h2.error,
            }
            if h2.ok and h2.alpn == "h2":
                return fail(
                    "tls",
                    TLS_H2_ONLY,
                    _(
                        "{where} accepts only HTTP/2 (ALPN h2) and refuses http/1.1, which WebSocket clients need (browsers can use WebSocket over HTTP/2 only with RFC 8441)"
                    ).format(where=where),
                    _(
                        "enable http/1.1 in the server's or edge's ALPN list (e.g. nginx listen ... ssl http2 keeps http/1.1; on a CDN disable 'HTTP/2 only' for this host)"
                    ),
                    **ev,
                )
            return fail(
                "tls",
                TLS_HANDSHAKE_FAILED,
                _("{where} refused the TLS handshake: {error}").format(where=where, error=main.error),
                _("check the server's TLS settings (ALPN, protocols, ciphers)"),
                **ev,
            )

        if main.kind == "unrecognized-name":
            named = await _name_refused(ctx, main, where, address)
            assert named is not None
            return named

        # Not TLS-looking failure: does the port speak plain HTTP?
        if main.kind in ("wrong-version", "eof", "reset", "timeout") and not main.cert_requested:
            if plain_task is None and ctx.remaining() > 0:
                plain_task = asyncio.ensure_future(_plain_probe(ctx, address))
            plain = await plain_task if plain_task is not None else None
            if plain is not None and plain.kind in ("upgraded", "status"):
                ws_url = replace(target, scheme="ws").url
                what = (
                    _("a WebSocket server (101 on ws://)")
                    if plain.kind == "upgraded"
                    else (_("plain HTTP ({status_line})").format(status_line=plain.status_line))
                )
                return fail(
                    "tls",
                    TLS_NOT_TLS,
                    _("{where} does not speak TLS: it answers {what}; this port speaks plain HTTP").format(
                        where=where, what=what
                    ),
                    _(
                        "use ws:// for this port ({ws_url}), or put TLS in front of it (an nginx listen 443 ssl with proxy_pass to this port) and use wss:// on 443"
                    ).format(ws_url=ws_url),
                    address=where,
                    tls_error=main.error,
                    plain_reply=plain.evidence(),
                )
            if plain is not None and plain.kind == "not-http":
                return fail(
                    "tls",
                    TLS_NOT_TLS,
                    _("{where} does not speak TLS nor HTTP: it answers {raw!r}").format(
                        where=where, raw=plain.raw[:40]
                    ),
                    _("this port belongs to another protocol: fix the port in the client URL"),
                    address=where,
                    tls_error=main.error,
                    plain_reply=plain.evidence(),
                )
            if main.kind == "timeout":
                return fail(
                    "tls",
                    TLS_TIMEOUT,
                    _("{where} accepts TCP but sent no TLS answer within the {timeout:g} s deadline").format(
                        where=where, timeout=ctx.settings.timeout
                    ),
                    _(
                        "the program on this port waits for something else or is stuck: check what listens there; if it speaks plain ws://, drop the s"
                    ),
                    address=where,
                )
        narrowed = await _narrow_failure(ctx, main, where, verify_ctx, address)
        if narrowed is not None:
            return narrowed
        named = await _name_refused(ctx, main, where, address)
        if named is not None:
            return named
        if main.kind == "reset":
            return fail(
                "tls",
                TLS_RESET,
                _(
                    "{where} accepted the TCP connection, then reset it before the TLS handshake finished"
                ).format(where=where),
                _(
                    "the server or a firewall resets connections: read the server's log, check its limits (max connections, per-IP caps) and firewall rules; if the port does not speak TLS, use ws://"
                ),
                address=where,
                kind=main.kind,
                error=main.error,
            )
        error = (main.error or "").lower()
        if "protocol version" in error or "unsupported protocol" in error:
            hint = _(
                "the server offers only TLS versions browsers and Python refuse (1.0/1.1): enable TLS 1.2 and 1.3 (nginx: ssl_protocols TLSv1.2 TLSv1.3;)"
            )
        elif "handshake failure" in error or "no shared cipher" in error:
            hint = _(
                "the server and clients share no cipher suite (or the server lacks a usable certificate/key): use a modern cipher list (nginx: ssl_ciphers HIGH:!aNULL:!MD5;) and check ssl_certificate_key"
            )
        else:
            hint = _(
                "check the server's TLS configuration (protocols, ciphers, certificate and key) and its log"
            )
        return fail(
            "tls",
            TLS_HANDSHAKE_FAILED,
            _("the TLS handshake with {where} failed: {error}").format(where=where, error=main.error),
            hint,
            address=where,
            kind=main.kind,
        )
    finally:
        for task in (main_task, plain_task):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task


#: The made-up name (RFC 6761 .invalid) a confirming probe sends when the URL gave none.
PROBE_NAME = "lokin-doctor.invalid"


async def _name_refused(ctx: Context, main: TlsProbe, where: str, address: str) -> CheckResult | None:
    """A handshake refused for the server name: the unrecognized_name alert, or, when no SNI was sent (an
    IP URL), an end of the connection or a handshake_failure that a probe sending a name does not get
    (it gets a certificate, or an alert about the name). Says what name was sent and how to send one."""
    target = ctx.target
    sni = tlsinfo.sni_for(target.host)
    alert = main.kind == "unrecognized-name"
    confirmed: TlsProbe | None = None
    if not alert:
        abrupt = main.kind in ("eof", "reset") or "handshake failure" in (main.error or "").lower()
        if sni is not None or not abrupt or ctx.remaining() <= 0:
            return None
        confirmed = await tlsinfo.probe(
            address,
            target.port,
            server_hostname=PROBE_NAME,
            ssl_context=tlsinfo.client_context(None, verify=False),
            deadline=ctx.deadline,
        )
        if confirmed.kind not in ("ok", "unrecognized-name"):
            return None
    ev: dict[str, Any] = {
        "address": where,
        "sni_sent": sni,
        "error": main.error,
        "kind": main.kind,
    }
    if confirmed is not None:
        ev["with_a_name"] = {
            "sni": PROBE_NAME,
            "result": _("a certificate") if confirmed.ok else confirmed.error,
        }
    example = f"wss://NAME:{target.port}{target.resource}"
    resolve = f"--resolve NAME:{target.port}:{target.host}"
    if sni is None:
        if alert:
            how = _("it answered the ClientHello with an unrecognized_name alert")
        else:
            how = _(
                "it ended the handshake ({error}), while a ClientHello naming {name} gets {result}"
            ).format(
                error=main.error,
                name=PROBE_NAME,
                result=_("a certificate")
                if confirmed is not None and confirmed.ok
                else _("an alert about the name"),
            )
        return fail(
            "tls",
            TLS_NO_SNI,
            _(
                "{where} refused the TLS handshake: the URL names the IP address {host}, so no server name (SNI) was sent, and {how}; the server serves only named hosts (nginx ssl_reject_handshake on, or no default certificate)"
            ).format(where=where, host=target.host, how=how),
            _(
                "use the host name in the URL ({example}, the name its certificate is for); to reach this very address with that name, keep the name in the URL and add {resolve}"
            ).format(example=example, resolve=resolve),
            **ev,
        )
    overridden = ctx.settings.resolved(target.host, target.port)
    via = _(" (at {address}, as --resolve says)").format(address=",".join(overridden)) if overridden else ""
    return fail(
        "tls",
        TLS_UNKNOWN_NAME,
        _(
            "{where} refused the TLS handshake for the server name {sni!r}{via}: it sent an unrecognized_name alert, so it has no certificate or server block for that name"
        ).format(where=where, sni=sni, via=via),
        _(
            "use a host name the server is configured for, or add {sni} to its configuration (nginx: server_name {sni}; with an ssl_certificate for it); check that {sni} points at the right server"
        ).format(sni=sni),
        **ev,
    )


async def _narrow_failure(
    ctx: Context, main: TlsProbe, where: str, verify_ctx: Any, address: str
) -> CheckResult | None:
    """Name what a failed TLS handshake means: mutual TLS, a protocol version or a cipher no side shares."""
    from lokin_doctor.checks.chain.handshake import (
        CLIENT_CERT_HINT,
        CLIENT_CERT_REFUSED_ALERTS,
        CLIENT_CERT_REJECTED_HINT,
    )

    settings = ctx.settings
    error = (main.error or "").lower()
    ev: dict[str, Any] = {
        "address": where,
        "error": main.error,
        "kind": main.kind,
        "client_certificate_requested": main.cert_requested,
        "client_certificate_offered": bool(settings.client_cert),
    }
    if main.cert_requested or "certificate required" in error:
        if not settings.client_cert:
            return fail(
                "tls",
                TLS_CLIENT_CERT_REQUIRED,
                _(
                    "{where} asked for a client certificate (mutual TLS) and ended the handshake without one: {error}"
                ).format(where=where, error=main.error),
                _(CLIENT_CERT_HINT),
                **ev,
            )
        if (
            any(a in error for a in CLIENT_CERT_REFUSED_ALERTS)
            or "handshake failure" in error
            or main.kind in ("reset", "eof")
        ):
            return fail(
                "tls",
                TLS_CLIENT_CERT_REJECTED,
                _("{where} refused the client certificate {client_cert}: {error}").format(
                    where=where, client_cert=settings.client_cert, error=main.error
                ),
                _(CLIENT_CERT_REJECTED_HINT),
                **ev,
            )
    version_problem = any(
        w in error for w in ("protocol version", "unsupported protocol", "no protocols available")
    )
    cipher_problem = any(
        w in error for w in ("handshake failure", "no shared cipher", "insufficient security")
    )
    if not (version_problem or cipher_problem) or ctx.remaining() <= 0:
        return None
    legacy = await tlsinfo.probe(
        address,
        ctx.target.port,
        server_hostname=ctx.target.host,
        ssl_context=tlsinfo.legacy_context(),
        deadline=ctx.deadline,
        route=ctx.settings.route(),
    )
    ours = tlsinfo.offered_versions(verify_ctx)
    ev["client_offers"] = ours
    if not legacy.ok:
        ev["legacy_probe"] = legacy.error
        return None
    ev["server_speaks"] = {"version": legacy.version, "cipher": legacy.cipher}
    if legacy.version in ("TLSv1", "TLSv1.1", "SSLv3"):
        return fail(
            "tls",
            TLS_PROTOCOL_VERSION,
            _(
                "{where} speaks only {version} (it chose {version} when offered everything); this client offers {ours}, as browsers do (TLS 1.0 and 1.1 are disabled everywhere)"
            ).format(where=where, version=legacy.version, ours=ours),
            _(
                "enable TLS 1.2 and 1.3 on the server (nginx: ssl_protocols TLSv1.2 TLSv1.3; Node: minVersion 'TLSv1.2'), and upgrade its OpenSSL if it cannot"
            ),
            **ev,
        )
    return fail(
        "tls",
        TLS_CIPHER_MISMATCH,
        _(
            "{where} accepts only cipher suites this client does not offer: with every suite offered it chose {cipher} ({version}); this client offers Python's default list (ECDHE with AES-GCM, ChaCha20 or AES-SHA2)"
        ).format(where=where, cipher=legacy.cipher, version=legacy.version),
        _(
            "configure a modern cipher list on the server (Mozilla 'intermediate': nginx ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:...; or leave OpenSSL's defaults) and keep TLS 1.3 enabled"
        ),
        **ev,
    )


def _success(ctx: Context, probe: TlsProbe, where: str, verify_ctx: Any) -> CheckResult:
    host = ctx.target.host
    info: dict[str, Any] = {"version": probe.version, "cipher": probe.cipher, "alpn": probe.alpn}
    if probe.chain:
        leaf = tlsinfo.describe(probe.chain[0], host)
        info.update(leaf)
        info["served_chain"] = _served_summary(probe.chain)
    ctx.facts["tls_info"] = info
    ev = {"address": where, **info}
    if probe.cert_requested:
        # TLS 1.3 asks inside a handshake that succeeds here; a server that requires the certificate says so
        # at the first read, which the handshake check does (tls.client-cert-required).
        ev["client_certificate_requested"] = True
        ev["client_certificate_offered"] = bool(ctx.settings.client_cert)
    for short, full in (("subject_cn", "subject"), ("issuer_cn", "issuer")):
        if ev.get(short) == ev.get(full):
            ev.pop(short, None)
    if ctx.settings.ca_file:
        ev["trusted_via"] = _("system CAs + --ca-file {ca_file}").format(ca_file=ctx.settings.ca_file)
    subject = info.get("subject_cn", "?")
    issuer = info.get("issuer_cn", "?")
    days = info.get("days_left")
    alpn = probe.alpn or "none"
    desc = _("{version}, {cipher}, ALPN {alpn}; certificate valid for {host}").format(
        version=probe.version, cipher=probe.cipher, alpn=alpn, host=host
    )
    if days is not None:
        desc += _(", expires in {days:g} days ({info})").format(
            days=days, info=str(info.get("not_after", ""))[:10]
        )
    desc += _("; issued by {issuer}").format(issuer=issuer)
    if days is not None and days < EXPIRY_WARN_DAYS:
        return warn(
            "tls",
            TLS_EXPIRES_SOON,
            _("the certificate of {where} ({subject}) expires in {days:g} days").format(
                where=where, subject=subject, days=days
            ),
            _("renew it now and check the renewal job (certbot renew --dry-run, systemctl list-timers)"),
            **ev,
        )
    return ok("tls", desc, **ev)
