"""``browser`` (``--browser``): what a real Chromium sees when it loads the page, joined with the chain.

Two halves:

* :func:`prestep` runs before the chain (the runner calls it): it loads ``--page-url`` in headless
  Chromium (``lokin_doctor/instruments/chromium.py``) for part of the run's one deadline (which starts once Chromium
  is up: starting it is local work, bounded on its own) and, when no WebSocket URL
  was given, makes the first URL the page opened the chain's target. The observation goes into the
  facts (``browser``; ``browser_given_url`` when a URL was also given).
* :func:`check` runs after the chain on that URL and decides between the two views: a page-side cause
  (the page opens a development URL, the wrong path or port, a URL Chromium blocks, no WebSocket at
  all, a certificate the browser rejects) is the root cause; a server-side one (refused, a proxy
  dropping the upgrade...) stays with the chain's check, and this one says the browser saw it too.

Cause codes (``page.*``, documented in docs/browser.md): ``page.load-failed``, ``page.load-timeout``,
``page.certificate-rejected``, ``page.no-websocket``, ``page.dev-url-in-production``,
``page.mixed-content-blocked``, ``page.csp-blocked``, ``page.wrong-path``, ``page.wrong-port``,
``page.wrong-url``, ``page.websocket-failed``, ``page.websocket-closed``, ``page.url-mismatch``,
``page.other-websocket-failed``;
``browser.launch-failed`` when Chromium itself could not be driven.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
from dataclasses import replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from lokin_doctor.causes import Cause
from lokin_doctor.causes.browser import (
    BROWSER_LAUNCH_FAILED,
    PAGE_CERTIFICATE_REJECTED,
    PAGE_CSP_BLOCKED,
    PAGE_DEV_URL_IN_PRODUCTION,
    PAGE_LOAD_FAILED,
    PAGE_LOAD_TIMEOUT,
    PAGE_MIXED_CONTENT_BLOCKED,
    PAGE_NO_WEBSOCKET,
    PAGE_OTHER_WEBSOCKET_FAILED,
    PAGE_URL_MISMATCH,
    PAGE_WEBSOCKET_CLOSED,
    PAGE_WEBSOCKET_FAILED,
    PAGE_WRONG_PATH,
    PAGE_WRONG_PORT,
    PAGE_WRONG_URL,
)
from lokin_doctor.causes.production import VARIANTS_URL_MISMATCH
from lokin_doctor.context import Context
from lokin_doctor.i18n import _
from lokin_doctor.instruments.chromium import LOAD_TIMEOUT
from lokin_doctor.model import CheckResult, Status, fail, ok, warn
from lokin_doctor.settings import Settings
from lokin_doctor.target import Target, TargetError, page_websocket_url, parse_target

if TYPE_CHECKING:
    from lokin_doctor.instruments.chromium import Observation, SocketSeen

#: Share of the run's deadline the browser gets; the chain on what it opened gets the rest.
BROWSER_SHARE = 0.6
#: Other URLs the page opened that get one handshake each (the chain runs on the first).
MAX_OTHER_URLS = 3
_CSP_MESSAGE = re.compile(r"violates the following Content Security Policy directive: \"([^\"]*)\"")
_STATUS_IN_ERROR = re.compile(r"Unexpected response code: (\d{3})")
_NET_ERROR = re.compile(r"net::(ERR_[A-Z0-9_]+)")


async def prestep(settings: Settings) -> tuple[Settings, dict[str, Any], float]:
    """Load the page in Chromium for ``BROWSER_SHARE`` of ``--timeout``; return the settings the chain
    runs with (its target: the page's first WebSocket URL unless one was given), the facts, and the
    run's deadline: ``--timeout`` after the browser was up (starting Chromium is not network time)."""
    from lokin_doctor.instruments.chromium import observe

    obs = await observe(
        str(settings.page_url),
        window=settings.timeout * BROWSER_SHARE,
        executable=str(settings.browser_path),
        ca_file=settings.ca_file,
        insecure=settings.insecure,
        extra_args=settings.browser_args,
    )
    assert obs.ready_at is not None
    deadline = obs.ready_at + settings.timeout
    facts: dict[str, Any] = {"browser": obs}
    if settings.target_given:
        facts["browser_given_url"] = settings.target.url
        return settings, facts, deadline
    for sock in obs.sockets:
        try:
            return replace(settings, target=parse_target(sock.url)), facts, deadline
        except TargetError:
            continue
    return settings, facts, deadline


def _loopback_name(host: str) -> bool:
    host = host.strip("[]").lower()
    if host in ("localhost", "0.0.0.0") or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def _console_about(obs: Observation, url: str, needle: str) -> str | None:
    bare = url.rstrip("/")
    for line in obs.console:
        if needle in line and bare in line:
            return line
    return None


def _failed(sock: SocketSeen) -> bool:
    return sock.state in ("failed", "blocked", "connecting") or (
        sock.state == "closed" and sock.status != 101 and sock.frames_received == 0
    )


def _status(sock: SocketSeen) -> int | None:
    if sock.status is not None:
        return sock.status
    m = _STATUS_IN_ERROR.search(sock.error or "")
    return int(m.group(1)) if m else None


def _what_failed(sock: SocketSeen) -> str:
    status = _status(sock)
    if status is not None and status != 101:
        return _("gets HTTP {status} there").format(status=status)
    if sock.error:
        return f"fails: {sock.error}"
    if sock.state == "connecting":
        return _("gets no answer before the deadline")
    code = _(" (close code {close_code})").format(close_code=sock.close_code) if sock.close_code else ""
    return f"fails{code}"


def _where(t: Target) -> str:
    return _("port {port}, path {resource}").format(port=t.port, resource=t.resource)


async def _answers(ctx: Context, url: str) -> bool:
    return await _said(ctx, url) == "101"


async def _said(ctx: Context, url: str) -> str:
    """One opening handshake to ``url`` within the run's deadline: "101", "HTTP 404", "refused"..."""
    from lokin_doctor.instruments import httpget
    from lokin_doctor.instruments.wire import open_handshake

    try:
        t = parse_target(url)
    except TargetError:
        return _("not a WebSocket URL")
    try:
        async with asyncio.timeout_at(ctx.deadline):
            if t.ip is not None:
                addresses = [t.host]
            elif ctx.settings.dns_server is not None:
                from lokin_doctor.instruments.dnsquery import lookup

                addresses = (await lookup(t.host, ctx.settings.dns_server, ctx.remaining())).addresses
            else:
                addresses = await httpget.system_resolve(t.host)
    except (OSError, TimeoutError) as exc:
        return _("not resolved ({value})").format(value=exc or _("no answer in time"))
    said = _("not resolved")
    for address in addresses[:2]:
        out = await open_handshake(
            t,
            address,
            deadline=ctx.deadline,
            # As the browser would ask: with the page's Origin (a server checking it answers 403 to both).
            origin=ctx.settings.origin or _page_origin(str(ctx.settings.page_url)),
            ssl_context=ctx.ssl_context() if t.secure else None,
            keep_open=False,
        )
        said = "101" if out.kind == "upgraded" else f"HTTP {out.status}" if out.kind == "status" else out.kind
        if out.kind == "upgraded":
            break
    return said


async def _core_chain(ctx: Context, url: str) -> dict[str, Any]:
    """dns, tcp, tls, handshake and session on ``url``, under the run's deadline: its root cause."""
    from lokin_doctor.runner import root_cause, run_checks, select_checks

    try:
        settings = replace(ctx.settings, target=parse_target(url), browser=False)
    except TargetError as exc:
        return {"status": "fail", "code": None, "summary": str(exc)}
    sub = Context(settings=settings, deadline=ctx.deadline, debug=ctx.debug)
    try:
        results = await run_checks(sub, select_checks(settings, ["handshake", "session"]))
    finally:
        conn = sub.facts.get("conn")
        if conn is not None:
            conn.abort()
    cause = root_cause({r.id: r for r in results})
    if cause is None:
        session = sub.results.get("session")
        return {"status": "ok", "code": None, "summary": session.summary if session else "connects"}
    return {"status": "fail", "code": cause.code, "summary": cause.summary}


async def _working_alternative(ctx: Context, url: str, given: str | None) -> str | None:
    """A URL that answers 101 where the page's does not: the one given, the page's own origin with /ws
    (the usual layout), or a nearby variant (the ``variants`` check)."""
    if given and given != url and await _answers(ctx, given):
        return given
    try:
        derived: str | None = page_websocket_url(str(ctx.settings.page_url)).url
    except TargetError:
        derived = None
    if derived is not None and derived not in (url, given) and await _answers(ctx, derived):
        return derived
    variants = ctx.results.get("variants")
    if variants is not None and variants.code == VARIANTS_URL_MISMATCH and ctx.facts.get("working_variant"):
        # Not variants.backend-direct: pointing the page past its proxy is not the fix.
        return str(ctx.facts["working_variant"])
    return None


def _on_page_host(t: Target, page_url: str) -> bool:
    """Whether ``t`` is on the page's own host and port, so ``location.host`` builds it."""
    parts = urlsplit(page_url)
    default = 443 if parts.scheme == "https" else 80
    return (t.host, t.port, t.secure) == (
        (parts.hostname or "").lower(),
        parts.port or default,
        parts.scheme == "https",
    )


def _page_origin(page_url: str) -> str:
    parts = urlsplit(page_url)
    return f"{parts.scheme}://{parts.netloc}"


#: Handshake statuses that prove the URL reaches a server that refuses this client: another URL would
#: not fix them (the origins, handshake and proxy checks name why).
_NOT_A_URL_PROBLEM = frozenset({401, 403, 429})
#: Close codes of a connection that ended as planned (1005: a close frame without a code).
_NORMAL_CLOSE = frozenset({1000, 1001, 1005})


def _differs(opened: Target, working: Target) -> tuple[Cause, str]:
    """(cause code, what differs) between the URL the page opened and one that answers."""
    if opened.host != working.host or opened.scheme != working.scheme:
        return PAGE_WRONG_URL, "URL"
    if opened.port != working.port:
        return PAGE_WRONG_PORT, "port"
    return PAGE_WRONG_PATH, "path"


def _evidence(obs: Observation) -> dict[str, Any]:
    data = obs.to_dict()
    return {"opened": [s.url for s in obs.sockets], **data}


def _chain_failure(ctx: Context) -> CheckResult | None:
    """The chain's root cause, as the runner will pick it (this check aside)."""
    from lokin_doctor.runner import ROOT_CAUSE_ORDER

    for check_id in ROOT_CAUSE_ORDER:
        if check_id == "browser":
            continue
        r = ctx.results.get(check_id)
        if r is not None and r.status is Status.FAIL:
            return r
    return None


async def check(ctx: Context) -> CheckResult:
    obs: Observation | None = ctx.facts.get("browser")
    page_url = str(ctx.settings.page_url)
    if obs is None:  # --only browser without the pre-step cannot happen from the CLI
        return fail(
            "browser",
            BROWSER_LAUNCH_FAILED,
            _("the browser did not run"),
            _("run with --browser and --page-url"),
        )
    ev = _evidence(obs)
    if obs.error:
        return fail(
            "browser",
            BROWSER_LAUNCH_FAILED,
            _("Chromium ({browser}) could not load {page_url}: {error}").format(
                browser=obs.browser.get("executable"), page_url=page_url, error=obs.error
            ),
            _(
                "check that the browser starts (--browser-path, or sudo apt-get install chromium); the other checks do not depend on it"
            ),
            **ev,
        )
    if obs.load_error == LOAD_TIMEOUT:
        return fail(
            "browser",
            PAGE_LOAD_TIMEOUT,
            _(
                "Chromium did not finish loading {page_url} within the time it had ({BROWSER_SHARE:.0%} of the {timeout:g} s --timeout, after the browser started)"
            ).format(page_url=page_url, BROWSER_SHARE=BROWSER_SHARE, timeout=ctx.settings.timeout),
            _(
                "raise --timeout; if the page is slow for users too, find what holds its load event (a script or image from a silent host) in the browser's network panel"
            ),
            **ev,
        )
    if obs.load_error:
        net = _NET_ERROR.search(obs.load_error)
        if net and net.group(1).startswith("ERR_CERT_"):
            return fail(
                "browser",
                PAGE_CERTIFICATE_REJECTED,
                _(
                    "Chromium rejects the certificate of the page {page_url} ({group}): the page never loads, so it opens no WebSocket"
                ).format(page_url=page_url, group=net.group(1)),
                _(
                    "serve the page with a certificate browsers trust for this name (a public CA such as Let's Encrypt, the full chain, valid dates); for a private CA, install it on the users' machines and pass it here with --ca-file"
                ),
                **ev,
            )
        return fail(
            "browser",
            PAGE_LOAD_FAILED,
            _("Chromium could not load the page {page_url}: {load_error}").format(
                page_url=page_url, load_error=obs.load_error
            ),
            _("check the --page-url (the address users open) and that the web server answers it"),
            **ev,
        )
    if obs.page_status is not None and obs.page_status >= 400:
        return fail(
            "browser",
            PAGE_LOAD_FAILED,
            _("the page {value} answers HTTP {page_status} in Chromium").format(
                value=obs.final_url or page_url, page_status=obs.page_status
            ),
            _("check the --page-url (the address users open) and the web server's routes"),
            **ev,
        )
    if not obs.sockets and obs.loaded is False:
        return fail(
            "browser",
            PAGE_LOAD_TIMEOUT,
            _(
                "the page {page_url} answered (HTTP {page_status}) but did not finish loading within {waited_s:g} s, and opened no WebSocket meanwhile"
            ).format(page_url=page_url, page_status=obs.page_status, waited_s=obs.waited_s),
            _(
                "find what holds the page's load event (a script or image from a silent host) in the browser's network panel; raise --timeout if the page is only slow"
            ),
            **ev,
        )
    if not obs.sockets:
        errors = "; ".join(obs.page_errors[:3])
        detail = (
            _(" (script error: {errors})").format(errors=errors)
            if errors
            else _(" and shows no script error")
        )
        return fail(
            "browser",
            PAGE_NO_WEBSOCKET,
            _(
                "the page {page_url} never opens a WebSocket within {waited_s:g} s of its response{detail}"
            ).format(page_url=page_url, waited_s=obs.waited_s, detail=detail),
            _(
                "fix the page's script so it calls new WebSocket(url) on load (open the browser's developer console on the page); if it connects only on a user action, --browser cannot see it{value}"
            ).format(value="" if errors else _(", or raise --timeout if it connects late")),
            **ev,
        )

    sock = obs.sockets[0]
    url = sock.url
    told = _(" (the page says: {page_said})").format(page_said=obs.page_said) if obs.page_said else ""
    others = list(dict.fromkeys(s.url for s in obs.sockets[1:] if s.url != url))[:MAX_OTHER_URLS]
    if others:
        # The whole chain runs on the first URL; the others get its core (dns to session) each.
        found = await asyncio.gather(*(_core_chain(ctx, u) for u in others))
        ev["other_urls"] = dict(zip(others, found, strict=True))
    page = _("the page at {page_url}").format(page_url=page_url)
    try:
        opened = parse_target(url)
    except TargetError:
        opened = None

    if opened is not None and _loopback_name(opened.host) and not _loopback_name(_host(page_url)):
        return fail(
            "browser",
            PAGE_DEV_URL_IN_PRODUCTION,
            _(
                "{page} opens {url}: a development URL in production — every visitor's browser tries its own machine"
            ).format(page=page, url=url),
            _(
                "build the URL from the page's location in the page's script: (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws' (or the public wss:// URL of the WebSocket server)"
            ),
            **ev,
        )
    mixed = _console_about(obs, url, "Mixed Content")
    if mixed or (
        sock.state == "blocked" and urlsplit(page_url).scheme == "https" and url.startswith("ws://")
    ):
        secure = url.replace("ws://", "wss://", 1)
        return fail(
            "browser",
            PAGE_MIXED_CONTENT_BLOCKED,
            _(
                "Chromium blocked {url} as mixed content: {page} is https and may not open ws:// (the browser sends nothing)"
            ).format(url=url, page=page),
            _(
                "open {secure} from the page (wss:// with TLS in front of the WebSocket server), e.g. (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws'"
            ).format(secure=secure),
            browser_message=mixed or sock.error,
            **ev,
        )
    csp = _console_about(obs, url, "Content Security Policy")
    if csp:
        m = _CSP_MESSAGE.search(csp)
        directive = m.group(1) if m else "connect-src"
        origin = opened.url.removesuffix(opened.resource) if opened is not None else url
        name = directive.split()[0] if directive else "connect-src"
        return fail(
            "browser",
            PAGE_CSP_BLOCKED,
            _(
                "Chromium refused to open {url}: {page}'s Content-Security-Policy ({directive}) does not allow it"
            ).format(url=url, page=page, directive=directive),
            _("add the WebSocket origin to the page's policy: {directive} {origin}").format(
                directive=directive, origin=origin
            )
            if directive.startswith(name)
            else _("allow {origin} in the page's {name}").format(origin=origin, name=name),
            browser_message=csp,
            **ev,
        )
    net = _NET_ERROR.search(sock.error or "")
    if net and net.group(1).startswith("ERR_CERT_"):
        tls = ctx.results.get("tls")
        seen = (
            _("; the tls check says: {summary}").format(summary=tls.summary)
            if tls is not None and tls.status is Status.FAIL
            else ""
        )
        return fail(
            "browser",
            PAGE_CERTIFICATE_REJECTED,
            _("{page} opens {url}, and Chromium rejects its certificate ({group}){seen}").format(
                page=page, url=url, group=net.group(1), seen=seen
            ),
            _(
                "give the WebSocket server (or the proxy in front of it) a certificate browsers trust for this name: a public CA, the full chain, valid dates; for a private CA pass it with --ca-file as the users' machines have it"
            ),
            **ev,
        )

    given = ctx.facts.get("browser_given_url")
    if _failed(sock):
        status = _status(sock)
        refused_here = status is not None and (status in _NOT_A_URL_PROBLEM or status >= 500)
        proxy = ctx.results.get("proxy")
        if proxy is not None and proxy.status is Status.FAIL:
            refused_here = True  # the proxy in front is what breaks it (the proxy check says how)
        working = None if refused_here else await _working_alternative(ctx, url, given)
        if opened is not None and working is not None:
            w = parse_target(working)
            code, part = _differs(opened, w)
            answers = (
                _("the WebSocket server answers on {resource}").format(resource=w.resource)
                if part == "path"
                else f"{working} answers"
            )
            return fail(
                "browser",
                code,
                _("{page} opens {url} ({opened}) and {sock}; {answers}").format(
                    page=page, url=url, opened=_where(opened), sock=_what_failed(sock), answers=answers
                ),
                _("make the page open {working}{value}{value2}").format(
                    working=working,
                    value=_(
                        " (e.g. (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '{resource}')"
                    ).format(resource=w.resource)
                    if _on_page_host(w, page_url)
                    else "",
                    value2=_(", or route {resource} to the WebSocket server in the proxy").format(
                        resource=opened.resource
                    )
                    if part == "path"
                    else "",
                ),
                works=working,
                **ev,
            )
        chain = _chain_failure(ctx)
        if chain is not None:
            return warn(
                "browser",
                PAGE_WEBSOCKET_FAILED,
                _("{page} opens {url} and {sock} in Chromium too ({id}: {code}){told}").format(
                    page=page, url=url, sock=_what_failed(sock), id=chain.id, code=chain.code, told=told
                ),
                _("fix what the {id} check names (the root cause below)").format(id=chain.id),
                **ev,
            )
        checked = ctx.settings.target.url
        return fail(
            "browser",
            PAGE_WEBSOCKET_FAILED,
            _(
                "{page} opens {url} and {sock} in Chromium, though lokin-doctor's own client {value}{told}"
            ).format(
                page=page,
                url=url,
                sock=_what_failed(sock),
                value=_("connects to it")
                if checked == url
                else _("connects to {checked}").format(checked=checked),
                told=told,
            ),
            _(
                "compare what the browser sends (Origin, cookies, subprotocols) with what the server accepts: check the server's allowed origins and its logs for this connection"
            ),
            **ev,
        )
    if sock.state == "closed" and sock.close_code not in _NORMAL_CLOSE:
        reason = f" {sock.close_reason!r}" if sock.close_reason else ""
        sent = (
            _(", after the page sent {frames_sent} frame(s)").format(frames_sent=sock.frames_sent)
            if sock.frames_sent
            else ""
        )
        first = f" (first: {sock.first_sent[0]})" if sock.first_sent else ""
        closed = _(
            "{page} opens {url}; it connects, then is closed with {close_code}{reason}{sent}{first}"
        ).format(page=page, url=url, close_code=sock.close_code, reason=reason, sent=sent, first=first)
        chain = _chain_failure(ctx)
        if chain is not None:
            return warn(
                "browser",
                PAGE_WEBSOCKET_CLOSED,
                _("{closed}; the chain sees it too ({id}: {code})").format(
                    closed=closed, id=chain.id, code=chain.code
                ),
                _("fix what the {id} check names (the root cause below)").format(id=chain.id),
                **ev,
            )
        return fail(
            "browser",
            PAGE_WEBSOCKET_CLOSED,
            _("{closed}, while lokin-doctor's own session stays open").format(closed=closed),
            _(
                "the server closed the page's connection for what the page did: read the close code and reason and the server's log (1008/1003: it refused a message the page sent, 1009: a message too big, 1011: the server crashed on it); the page's first frames are in the evidence"
            ),
            **ev,
        )
    broken = {u: r for u, r in ev.get("other_urls", {}).items() if r["status"] != "ok"}
    if broken:
        other, found = next(iter(broken.items()))
        return warn(
            "browser",
            PAGE_OTHER_WEBSOCKET_FAILED,
            _("{page} opens {url}, which connects, and {other}, which fails: {summary}{value}").format(
                page=page,
                url=url,
                other=other,
                summary=found["summary"],
                value=f" [{found['code']}]" if found["code"] else "",
            ),
            _("fix {other} too: lokin-doctor all {other} diagnoses it alone").format(other=other),
            **ev,
        )
    if given and given != url:
        return warn(
            "browser",
            PAGE_URL_MISMATCH,
            _("{page} opens {url}, not the URL given ({given}); it connects").format(
                page=page, url=url, given=given
            ),
            _(
                "diagnose the URL the page really uses ({url}), or update the page if {given} is the right one"
            ).format(url=url, given=given),
            **ev,
        )
    frames = f"{sock.frames_received} frame(s) received"
    if sock.first_received:
        frames += f", first: {sock.first_received[0]}"
    return ok(
        "browser",
        _("{page} opens {url}: Chromium connected (HTTP {value}), {frames}").format(
            page=page, url=url, value=sock.status or 101, frames=frames
        ),
        **ev,
    )
