"""``origins``: the origin matrix — three opening handshakes at once: no Origin (CLI clients,
monitoring), the page's Origin (what the browser sends), and a foreign Origin
(``https://lokin-doctor.invalid``, what a hostile page would send).

* The page's Origin rejected (401/403) is a failure: the browser gets exactly that
  (``origins.page-origin-rejected``).
* A foreign Origin accepted on a production target is a warning (``origins.any-origin``): any web
  page can open a connection with the visitor's cookies (cross-site WebSocket hijacking). Production
  means a wss:// URL or an address that is not loopback; on a plain ws:// loopback target accepting
  any Origin is fine (development).

The page's Origin comes from ``--page-url``, else ``--origin``, else the target's own http(s)
origin (a page served by the same host). Runs only when the handshake succeeded.
"""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any
from urllib.parse import urlsplit

from lokin_doctor.causes.production import ORIGINS_ANY_ORIGIN, ORIGINS_PAGE_ORIGIN_REJECTED
from lokin_doctor.context import Context
from lokin_doctor.i18n import _
from lokin_doctor.instruments.wire import Outcome, open_handshake
from lokin_doctor.model import CheckResult, Status, fail, ok, skip, warn

FOREIGN_ORIGIN = "https://lokin-doctor.invalid"


def page_origin(ctx: Context) -> tuple[str, str]:
    """The Origin a browser page would send, and where it comes from."""
    settings = ctx.settings
    if settings.page_url:
        parts = urlsplit(settings.page_url)
        default = {"http": 80, "https": 443}.get(parts.scheme)
        host = parts.hostname or ""
        host = f"[{host}]" if ":" in host else host
        port = f":{parts.port}" if parts.port and parts.port != default else ""
        return f"{parts.scheme}://{host}{port}", "--page-url"
    if settings.origin:
        return settings.origin, "--origin"
    return ctx.target.http_origin, _("the target's own origin")


def _said(out: Outcome) -> str:
    if out.kind == "upgraded":
        return "101"
    if out.kind == "status":
        return f"HTTP {out.status}"
    return out.kind


def _rejected(out: Outcome) -> bool:
    return out.kind == "status" and out.status in (401, 403)


def _production(ctx: Context) -> bool:
    if ctx.target.secure:
        return True
    for a in ctx.facts.get("addresses") or []:
        try:
            if not ipaddress.ip_address(a.split("%")[0]).is_loopback:
                return True
        except ValueError:
            return True
    return False


async def check(ctx: Context) -> CheckResult:
    hs = ctx.results.get("handshake")
    if hs is None or hs.status not in (Status.OK, Status.WARN):
        return skip("origins", _("skipped: the handshake did not succeed"))
    settings = ctx.settings
    target = settings.target
    address = (ctx.facts.get("reachable") or ctx.facts["addresses"])[0]
    page, source = page_origin(ctx)
    matrix = {"none": None, "page": page, "foreign": FOREIGN_ORIGIN}
    outs = await asyncio.gather(
        *(
            open_handshake(
                target,
                address,
                deadline=ctx.deadline,
                origin=origin,
                headers=settings.headers,
                subprotocols=settings.subprotocols,
                ssl_context=ctx.ssl_context() if target.secure else None,
                keep_open=False,
                route=settings.route(),
            )
            for origin in matrix.values()
        )
    )
    got = dict(zip(matrix, outs, strict=True))
    evidence: dict[str, Any] = {
        "no Origin": _said(got["none"]),
        f"page Origin {page} ({source})": _said(got["page"]),
        f"foreign Origin {FOREIGN_ORIGIN}": _said(got["foreign"]),
    }
    line = _("no Origin: {none}; page Origin {page}: {page2}; foreign Origin: {foreign}").format(
        none=_said(got["none"]), page=page, page2=_said(got["page"]), foreign=_said(got["foreign"])
    )
    if _rejected(got["page"]):
        return fail(
            "origins",
            ORIGINS_PAGE_ORIGIN_REJECTED,
            _("the server rejects the page's Origin {page} with {page2} ({line})").format(
                page=page, page2=_said(got["page"]), line=line
            ),
            _(
                "add {page} to the server's Origin allow-list (ws: verifyClient; websockets: origins=[...]; lokin-doctor serve --allow-origin {page})"
            ).format(page=page),
            **evidence,
        )
    if got["foreign"].kind == "upgraded" and _production(ctx):
        return warn(
            "origins",
            ORIGINS_ANY_ORIGIN,
            _("the server accepts any Origin, even {FOREIGN_ORIGIN} ({line})").format(
                FOREIGN_ORIGIN=FOREIGN_ORIGIN, line=line
            ),
            _(
                "filter the Origin on the server: accept only {page} (ws: verifyClient checking info.origin; lokin-doctor serve --allow-origin {page}), so other sites cannot connect with your visitors' cookies"
            ).format(page=page),
            **evidence,
        )
    if got["foreign"].kind == "upgraded":
        return ok(
            "origins",
            _("every Origin is accepted, fine on loopback for development ({line})").format(line=line),
            **evidence,
        )
    if _rejected(got["foreign"]):
        note = "" if got["none"].kind == "upgraded" else _("; requests without an Origin are refused too")
        return ok(
            "origins",
            _("the server filters origins: the page's is accepted, a foreign one refused{note}").format(
                note=note
            ),
            **evidence,
        )
    return ok("origins", line, **evidence)
