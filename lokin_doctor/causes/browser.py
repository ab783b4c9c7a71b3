"""Cause codes of the browser layer (see lokin_doctor/causes/__init__.py)."""

from __future__ import annotations

from lokin_doctor.causes import Layer, Tag, cause  # noqa: F401
from lokin_doctor.i18n import N_

L = Layer.BROWSER

BROWSER_LAUNCH_FAILED = cause(
    "browser.launch-failed",
    L,
    N_("Chromium could not be started (within 30 s) or driven; Playwright's error is in the summary"),
    N_("check that the browser starts (`--browser-path`, or `sudo apt-get install chromium`)"),
    doc="browser.md",
)
PAGE_CERTIFICATE_REJECTED = cause(
    "page.certificate-rejected",
    L,
    N_(
        "Chromium rejects a certificate (`net::ERR_CERT_…`): the page's own (the page never loads, so it opens nothing) or the WebSocket's (the `tls` check's verdict is quoted when it failed too)"
    ),
    N_(
        "a certificate browsers trust for that name: public CA, full chain, valid dates; for a private CA, install it on users' machines and pass it with `--ca-file`"
    ),
    doc="browser.md",
)
PAGE_CSP_BLOCKED = cause(
    "page.csp-blocked",
    L,
    N_(
        'Chromium refused the URL because of the page\'s Content-Security-Policy (its "violates the following Content Security Policy directive" message; the directive is in the summary)'
    ),
    N_("add the WebSocket origin to that directive"),
    doc="browser.md",
)
PAGE_CSP_BLOCKS = cause(
    "page.csp-blocks",
    L,
    N_(
        "`connect-src` (or `default-src` when there is none) does not allow the WebSocket URL; the policy and its sources are in the evidence"
    ),
    N_("add the WebSocket origin (e.g. `wss://host`) to connect-src"),
)
PAGE_DEV_URL_IN_PRODUCTION = cause(
    "page.dev-url-in-production",
    L,
    N_(
        'a page on a non-local name (not localhost / a loopback address) opens a WebSocket on `localhost` or a loopback address: "a development URL in production — every visitor\'s browser tries its own machine"'
    ),
    N_(
        "build the URL from the page's location: `(location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws'`, or the public `wss://` URL"
    ),
    doc="browser.md",
)
PAGE_LOAD_FAILED = cause(
    "page.load-failed",
    L,
    N_(
        "the page did not load (`net::ERR_CONNECTION_REFUSED`, `net::ERR_NAME_NOT_RESOLVED`...) or answers HTTP 400 or more"
    ),
    N_("check `--page-url` and the web server"),
    doc="browser.md",
)
PAGE_LOAD_TIMEOUT = cause(
    "page.load-timeout",
    L,
    N_(
        "no response for the page within its window, or a response but no `load` event and no WebSocket meanwhile (a script or image from a silent host holds it)"
    ),
    N_("raise `--timeout`; find what holds the page's `load` event"),
    doc="browser.md",
)
PAGE_MIXED_CONTENT = cause(
    "page.mixed-content",
    L,
    N_(
        "an https page opening a `ws://` URL: the browser blocks it before sending anything (ws://localhost and loopback addresses are exempt)"
    ),
    N_("use `wss://` in the page's script, with TLS in front of the server"),
)
PAGE_MIXED_CONTENT_BLOCKED = cause(
    "page.mixed-content-blocked",
    L,
    N_(
        'Chromium blocked a `ws://` URL from an https page (its "Mixed Content" console message, or a SecurityError); nothing was sent'
    ),
    N_("open the `wss://` URL, with TLS in front of the server"),
    doc="browser.md",
)
PAGE_NO_WEBSOCKET = cause(
    "page.no-websocket",
    L,
    N_(
        'the page loaded but opened no WebSocket within the window; the summary quotes the page\'s script errors ("script error: lokin is not defined")'
    ),
    N_(
        "fix the page's script (open the browser's developer console on the page); raise `--timeout` if it connects late"
    ),
    doc="browser.md",
)
PAGE_OTHER_WEBSOCKET_FAILED = cause(
    "page.other-websocket-failed",
    L,
    N_(
        "the page's first socket connects, but another one it opens fails; the summary gives that URL and its root cause (e.g. `HTTP 404 … [handshake.not-found]`)"
    ),
    N_("fix that URL too: `lokin-doctor all URL` diagnoses it alone"),
    warn=True,
    fail=False,
    doc="browser.md",
)
PAGE_UNREACHABLE = cause(
    "page.unreachable",
    L,
    N_("the page could not be fetched (or answered 400 or more), so its policy was not checked"),
    N_("check --page-url"),
    warn=True,
    fail=False,
)
PAGE_URL_MISMATCH = cause(
    "page.url-mismatch",
    L,
    N_("the page connects, but to another URL than the one given"),
    N_("diagnose the URL the page really uses, or update the page"),
    warn=True,
    fail=False,
    doc="browser.md",
)
PAGE_WEBSOCKET_CLOSED = cause(
    "page.websocket-closed",
    L,
    N_(
        "the page's socket connects, then the server closes it with a code other than 1000/1001/1005 (the summary gives the code, the reason and the first frame the page sent) while lokin-doctor's own session stays open — the server refused what the page did; a warning quoting the chain's root cause when the chain fails too"
    ),
    N_(
        "read the close code and reason and the server's log (1008/1003: a message it refused, 1009: too big, 1011: it crashed on it)"
    ),
    warn=True,
    doc="browser.md",
)
PAGE_WEBSOCKET_FAILED = cause(
    "page.websocket-failed",
    L,
    N_(
        "warn: the page's socket fails and a chain check names why (quoted: `tcp: tcp.refused`); fail: the browser fails where lokin-doctor's own client connects (Origin, cookies, subprotocols)"
    ),
    N_(
        "warn: fix what the root cause says; fail: compare what the browser sends with what the server accepts"
    ),
    warn=True,
    doc="browser.md",
)
PAGE_WRONG_PATH = cause(
    "page.wrong-path",
    L,
    N_(
        'the page\'s socket fails (e.g. HTTP 404) and the same scheme, host and port answer 101 on another path, e.g. "the page opens wss://lokin.example/ (port 443, path /) and gets HTTP 404 there; the WebSocket server answers on /ws"'
    ),
    N_(
        "make the page open the working URL (`… + location.host + '/ws'`), or route the page's path to the server in the proxy"
    ),
    doc="browser.md",
)
PAGE_WRONG_PORT = cause(
    "page.wrong-port",
    L,
    N_("the page's socket fails and the same host answers 101 on another port"),
    N_("make the page open the working URL"),
    doc="browser.md",
)
PAGE_WRONG_URL = cause(
    "page.wrong-url",
    L,
    N_("the page's socket fails and a URL on another host or scheme answers 101"),
    N_("make the page open the working URL"),
    doc="browser.md",
)
