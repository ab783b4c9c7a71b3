"""``page`` (``--page-url``): what the browser page itself allows, which no CLI client notices.

* Mixed content: an https page cannot open a ``ws://`` URL; the browser blocks it before any packet
  (``page.mixed-content``). ``ws://localhost`` / loopback addresses are exempt, as in browsers.
* Content-Security-Policy: the page's policies (every ``Content-Security-Policy`` header and
  ``<meta http-equiv>`` tag; report-only ones are ignored) must allow the WebSocket URL in
  ``connect-src``, or ``default-src`` when there is no connect-src (``page.csp-blocks``).
  Matching follows Chromium (the most common browser): a source's scheme matches itself and its
  secure upgrade (http -> https, ws -> wss, with port 80 -> 443); a source without a scheme takes the
  page's (so ``example.com`` on an https page does not allow wss://example.com); ``*`` matches
  http(s) and ws(s); ``'self'`` matches ws/wss on the page's host per CSP3 (wss from any page, ws
  only from an http page).
* The page is fetched with one small HTTP/1.1 GET (TLS for https; ``--ca-file``/``--insecure``
  apply; up to 3 redirects), bounded by the run's deadline. If it cannot be fetched the policy
  cannot be read: ``page.unreachable`` (a warning: the WebSocket may still be fine).

Facts written: ``page`` (status, final URL, policies).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from lokin_doctor.causes.browser import PAGE_CSP_BLOCKS, PAGE_MIXED_CONTENT, PAGE_UNREACHABLE
from lokin_doctor.context import Context
from lokin_doctor.i18n import _
from lokin_doctor.instruments import httpget
from lokin_doctor.model import CheckResult, fail, ok, warn
from lokin_doctor.target import Target

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_META_CSP = re.compile(
    rb"<meta\s+[^>]*http-equiv\s*=\s*[\"']?content-security-policy[\"']?[^>]*>", re.IGNORECASE
)
_CONTENT_ATTR = re.compile(rb"content\s*=\s*(\"([^\"]*)\"|'([^']*)')", re.IGNORECASE)


@dataclass(frozen=True)
class Origin:
    scheme: str
    host: str
    port: int


def _scheme_matches(allowed: str, scheme: str) -> bool:
    return allowed == scheme or (allowed, scheme) in (("http", "https"), ("ws", "wss"))


def _self_matches(page: Origin, url: Target) -> bool:
    """CSP3 'self': the page's origin, or the same host over a secure (or same-insecurity) scheme."""
    if (url.scheme, url.host, url.port) == (page.scheme, page.host, page.port):
        return True
    if url.host != page.host:
        return False
    same_port = url.port == page.port or (
        url.port == _DEFAULT_PORTS.get(url.scheme) and page.port == _DEFAULT_PORTS.get(page.scheme)
    )
    if not same_port:
        return False
    return url.scheme in ("https", "wss") or (page.scheme == "http" and url.scheme in ("http", "ws"))


_SOURCE = re.compile(
    r"^(?:(?P<scheme>[a-z][a-z0-9+.-]*)://)?(?P<host>\*|(?:\*\.)?[^:/]+|\[[0-9a-f:.]+\])"
    r"(?::(?P<port>\d+|\*))?(?P<path>/.*)?$",
    re.IGNORECASE,
)


def source_allows(source: str, url: Target, page: Origin) -> bool:
    """Whether one CSP source expression allows the WebSocket ``url`` for a page of origin ``page``."""
    s = source.strip()
    low = s.lower()
    if low == "'none'":
        return False
    if low == "'self'":
        return _self_matches(page, url)
    if low.startswith("'"):
        return False  # nonces, hashes, 'unsafe-inline'...: not about connections
    if s == "*":
        return url.scheme in ("http", "https", "ws", "wss") or url.scheme == page.scheme
    if re.fullmatch(r"[a-z][a-z0-9+.-]*:", low):
        return _scheme_matches(low[:-1], url.scheme)
    m = _SOURCE.match(s)
    if not m:
        return False
    scheme = (m.group("scheme") or "").lower()
    allowed_scheme = scheme or page.scheme
    if not _scheme_matches(allowed_scheme, url.scheme):
        return False
    upgraded = allowed_scheme != url.scheme
    host = m.group("host").lower().strip("[]")
    url_host = url.host.lower()
    if host == "*":
        pass
    elif host.startswith("*."):
        if not url_host.endswith(host[1:]):
            return False
    elif host != url_host:
        return False
    port = m.group("port")
    if port == "*":
        pass
    elif port is not None:
        if int(port) != url.port and not (upgraded and int(port) == 80 and url.port == 443):
            return False
    else:
        default = _DEFAULT_PORTS.get(allowed_scheme)
        if url.port != _DEFAULT_PORTS.get(url.scheme) and not (
            upgraded and default == 80 and url.port == 443
        ):
            return False
    path = m.group("path")
    if path:
        url_path = url.resource.split("?", 1)[0]
        if path.endswith("/"):
            return url_path.startswith(path)
        return url_path == path
    return True


def parse_policy(text: str) -> dict[str, list[str]]:
    """Directive name -> source list of one policy (the first occurrence of a directive wins)."""
    out: dict[str, list[str]] = {}
    for part in text.split(";"):
        tokens = part.split()
        if tokens and tokens[0].lower() not in out:
            out[tokens[0].lower()] = tokens[1:]
    return out


def evaluate(policies: list[str], url: Target, page: Origin) -> tuple[str, str, list[str]] | None:
    """The first policy that blocks ``url``: (policy text, directive, its sources); None when allowed."""
    for policy_text in policies:
        policy = parse_policy(policy_text)
        directive = (
            "connect-src" if "connect-src" in policy else "default-src" if "default-src" in policy else None
        )
        if directive is None:
            continue
        sources = policy[directive]
        if not any(source_allows(s, url, page) for s in sources):
            return policy_text, directive, sources
    return None


def _policies(page: httpget.Page) -> tuple[list[str], list[str]]:
    """Enforced policies (headers split on commas, then meta tags) and report-only ones."""
    enforced: list[str] = []
    for value in page.header_values("content-security-policy"):
        enforced += [p.strip() for p in value.split(",") if p.strip()]
    for tag in _META_CSP.findall(page.body[:65536]):
        m = _CONTENT_ATTR.search(tag)
        if m:
            enforced.append((m.group(2) or m.group(3) or b"").decode("utf-8", "replace").strip())
    report_only = page.header_values("content-security-policy-report-only")
    return enforced, report_only


def _origin_of(url: str) -> Origin:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return Origin(scheme, (parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS.get(scheme, 80))


def _trustworthy(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _resolve(ctx: Context, host: str) -> list[str]:
    if host == ctx.target.host and ctx.facts.get("addresses"):
        return list(ctx.facts["addresses"])
    if ctx.settings.dns_server is None or _is_ip(host):
        return await httpget.system_resolve(host)
    from lokin_doctor.instruments.dnsquery import lookup

    answer = await lookup(host, ctx.settings.dns_server, ctx.remaining())
    if answer.error:
        raise OSError(answer.detail)
    return answer.addresses


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def check(ctx: Context) -> CheckResult:
    settings = ctx.settings
    page_url = str(settings.page_url)
    target = settings.target
    page_origin = _origin_of(page_url)
    evidence: dict[str, Any] = {"page_url": page_url, "websocket_url": target.url}
    if not settings.explicit_target or target == _derived(page_url):
        evidence["websocket_url_from"] = _("derived from the page (same host, /ws)")

    mixed = page_origin.scheme == "https" and not target.secure and not _trustworthy(target.host)

    fetched: httpget.Page | None = None
    error: str | None = None
    try:
        import ssl

        ssl_ctx: ssl.SSLContext | None = ctx.ssl_context() if page_origin.scheme == "https" else None
        fetched = await httpget.get(
            page_url, deadline=ctx.deadline, ssl_context=ssl_ctx, resolve=lambda h: _resolve(ctx, h)
        )
    except httpget.FetchError as exc:
        error = str(exc)

    blocked = None
    if fetched is not None:
        final_origin = _origin_of(fetched.url)
        enforced, report_only = _policies(fetched)
        evidence.update(status=fetched.status, final_url=fetched.url)
        if fetched.redirects:
            evidence["redirects"] = fetched.redirects
        if enforced:
            evidence["csp"] = enforced
        if report_only:
            evidence["csp_report_only"] = report_only
        blocked = evaluate(enforced, target, final_origin)
        ctx.facts["page"] = {"status": fetched.status, "url": fetched.url, "csp": enforced}
        if final_origin.scheme == "https" and page_origin.scheme != "https":
            mixed = mixed or (not target.secure and not _trustworthy(target.host))

    secure_url = replace(target, scheme="wss", port=443 if target.port == 80 else target.port).url
    if mixed:
        return fail(
            "page",
            PAGE_MIXED_CONTENT,
            _(
                "the page is served over https but opens {url}: the browser blocks ws:// from an https page (mixed content) before sending anything; CLI clients do not"
            ).format(url=target.url),
            _(
                "use wss:// in the page's script ({secure_url}, e.g. (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws'), with TLS in front of the WebSocket server"
            ).format(secure_url=secure_url),
            **evidence,
        )
    if blocked is not None:
        policy, directive, sources = blocked
        evidence.update(blocking_policy=policy, directive=directive, sources=sources)
        allow = replace(target, resource="/").url.rstrip("/")
        kept = [s for s in sources if s.lower() != "'none'"] or ["'self'"]
        return fail(
            "page",
            PAGE_CSP_BLOCKS,
            _(
                "the page's Content-Security-Policy {directive} ({value}) does not allow {url}: the browser refuses to connect"
            ).format(directive=directive, value=" ".join(sources) or "empty", url=target.url),
            _("add the WebSocket origin to the page's {directive}: {directive} {kept} {allow}").format(
                directive=directive, kept=" ".join(kept), allow=allow
            ),
            **evidence,
        )
    if fetched is None:
        return warn(
            "page",
            PAGE_UNREACHABLE,
            _(
                "could not fetch the page {page_url}: {error}; its Content-Security-Policy was not checked"
            ).format(page_url=page_url, error=error),
            _(
                "check the --page-url (the address users open) and that the web server answers; the WebSocket checks do not depend on it"
            ),
            error=error,
            **evidence,
        )
    if fetched.status >= 400:
        return warn(
            "page",
            PAGE_UNREACHABLE,
            _(
                "the page {url} answers HTTP {status}; its policy was read but the page may be the wrong one"
            ).format(url=fetched.url, status=fetched.status),
            _("check the --page-url (the address users open)"),
            **evidence,
        )
    csp_note = (
        _("no Content-Security-Policy")
        if "csp" not in evidence
        else _("its Content-Security-Policy allows it")
    )
    return ok(
        "page",
        _("the page {url} (HTTP {status}) may open {url2}: {csp_note}, no mixed content").format(
            url=fetched.url, status=fetched.status, url2=target.url, csp_note=csp_note
        ),
        **evidence,
    )


def _derived(page_url: str) -> Target | None:
    from lokin_doctor.target import TargetError, page_websocket_url

    try:
        return page_websocket_url(page_url)
    except TargetError:
        return None
