"""``backends``: when the name has several addresses (DNS round robin, several load balancers), a
browser may get any of them. Run TCP, TLS and the opening handshake against each address at once,
with the name as SNI and Host, and say which ones fail: "1 of 3 addresses refuses: 127.0.0.3".

Certificates are always verified here (system CAs plus ``--ca-file``), even with ``--insecure``: a
browser verifies every backend, and one stale certificate behind a balancer is a classic. When every
address fails the same way, the tcp/tls/handshake checks already say it, so this one skips.

Each address that upgrades is asked for its welcome (half a second at most): a ``lokin-doctor serve``
names its serving process there (``instance``), so the result says which instance answered where.

Facts written: ``backends`` (address -> cause code, "ok" for a 101), ``backend_instances``
(address -> instance, for the addresses whose welcome named one).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.frames import Opcode

from lokin_doctor.causes.production import BACKENDS_ALL_FAIL, BACKENDS_SOME_FAIL
from lokin_doctor.checks.chain.handshake import classify
from lokin_doctor.context import Context
from lokin_doctor.i18n import N_, _
from lokin_doctor.instruments import tlsinfo
from lokin_doctor.instruments.wire import Outcome, open_handshake
from lokin_doctor.model import CheckResult, Status, fail, ok, skip

#: How an outcome reads after "1 of 3 addresses ..." (singular, plural).
_VERBS = {
    "connect-refused": (N_("refuses"), N_("refuse")),
    "connect-timeout": (N_("does not answer"), N_("do not answer")),
    "connect-error": (N_("is unreachable"), N_("are unreachable")),
    "tls-error": (N_("fails TLS"), N_("fail TLS")),
    "timeout": (N_("does not answer the handshake"), N_("do not answer the handshake")),
    "reset": (N_("resets the connection"), N_("reset the connection")),
    "closed": (N_("closes without a reply"), N_("close without a reply")),
}


def _verb(out: Outcome, plural: bool) -> str:
    if out.kind == "status":
        return (_("answer HTTP {status}") if plural else _("answers HTTP {status}")).format(status=out.status)
    pair = _VERBS.get(out.kind)
    if pair is None:
        return _("fail the handshake") if plural else _("fails the handshake")
    return _(pair[1]) if plural else _(pair[0])


#: Seconds an upgraded address gets to send its welcome (the instance id) before we close.
WELCOME_WAIT_S = 0.5


async def _instance(out: Outcome, deadline: float) -> str | None:
    """The ``instance`` named by the first text message of an upgraded connection, then close it."""
    conn = out.conn
    if conn is None:
        return None
    loop = asyncio.get_running_loop()
    instance = None
    try:
        frame = await conn.next_frame(min(deadline, loop.time() + WELCOME_WAIT_S))
        if frame is not None and frame.opcode is Opcode.TEXT and frame.fin:
            data = json.loads(bytes(frame.data))
            if isinstance(data, dict) and isinstance(data.get("instance"), str):
                instance = data["instance"][:64]
    except (TimeoutError, ValueError, OSError):
        pass
    finally:
        await conn.close(min(deadline, loop.time() + 1.0))
        out.conn = None
    return instance


def _detail(out: Outcome) -> str:
    if out.kind == "status":
        return f"HTTP {out.status}"
    if out.kind == "tls-error":
        return f"TLS: {out.error}"
    return _verb(out, False)


async def check(ctx: Context) -> CheckResult:
    target = ctx.target
    addresses: list[str] = ctx.facts["addresses"]
    if len(addresses) < 2:
        return skip(
            "backends",
            _("not applicable: {host} has a single address").format(host=target.host),
            applicable=False,
        )
    tcp = ctx.results.get("tcp")
    if tcp is not None and tcp.status is Status.FAIL:
        return skip("backends", _("skipped: tcp failed on every address"))
    settings = ctx.settings
    ssl_context = tlsinfo.client_context(settings.ca_file, verify=True) if target.secure else None
    outcomes = await asyncio.gather(
        *(
            open_handshake(
                target,
                address,
                deadline=ctx.deadline,
                origin=settings.origin,
                headers=settings.headers,
                subprotocols=settings.subprotocols,
                ssl_context=ssl_context,
                server_hostname=target.host,
                keep_open=True,
            )
            for address in addresses
        )
    )
    instances = await asyncio.gather(*(_instance(o, ctx.deadline) for o in outcomes))
    results = [classify(o, target, check_id="backends", origin=settings.origin) for o in outcomes]
    table: dict[str, str] = {}
    evidence: dict[str, Any] = {}
    named: dict[str, str] = {}
    for address, out, res, instance in zip(addresses, outcomes, results, instances, strict=True):
        table[address] = "ok" if res.status is Status.OK else str(res.code)
        evidence[address] = "101" if res.status is Status.OK else f"{res.code}: {_detail(out)}"
        if instance is not None:
            named[address] = instance
            evidence[address] += f" (instance {instance})"
    ctx.facts["backends"] = table
    ctx.facts["backend_instances"] = named
    bad = [
        (a, o, r) for a, o, r in zip(addresses, outcomes, results, strict=True) if r.status is not Status.OK
    ]
    n, m = len(bad), len(addresses)
    if not bad:
        summary = _("all {m} addresses of {host} answer 101").format(m=m, host=target.host)
        if named:
            distinct = len(set(named.values()))
            summary += _("; {distinct} distinct instance{value}: {named}").format(
                distinct=distinct,
                value="s" if distinct != 1 else "",
                named=", ".join((f"{a} -> {i}" for a, i in named.items())),
            )
        return ok("backends", summary, addresses=evidence, instances=named)
    if n == m:
        codes = {r.code for _, _, r in bad}
        if len(codes) == 1:
            return skip(
                "backends",
                _(
                    "every address of {host} fails the same way ({pop}); the tcp, tls and handshake checks say why"
                ).format(host=target.host, pop=codes.pop()),
                addresses=evidence,
            )
    kinds = {(o.kind, o.status) for _, o, _ in bad}
    names = [a for a, _, _ in bad]
    if len(kinds) == 1:
        summary = _("{n} of {m} addresses {bad}: {names}").format(
            n=n, m=m, bad=_verb(bad[0][1], n > 1), names=", ".join(names)
        )
    else:
        summary = _("{n} of {m} addresses fail: {bad}").format(
            n=n, m=m, bad=", ".join((f"{a} ({_detail(o)})" for a, o, _ in bad))
        )
    code = BACKENDS_ALL_FAIL if n == m else BACKENDS_SOME_FAIL
    if n < m:
        summary += _("; browsers given those addresses cannot connect")
    return fail(
        "backends",
        code,
        summary,
        _(
            "fix or start the server on {names} (see the evidence for each), or remove {value} from the DNS records of {host}"
        ).format(
            names=", ".join(names),
            value=_("that address") if n == 1 else _("those addresses"),
            host=target.host,
        ),
        addresses=evidence,
        causes={a: r.code for a, _, r in bad},
    )
