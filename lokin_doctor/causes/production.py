"""Cause codes of the production layer (see lokin_doctor/causes/__init__.py)."""

from __future__ import annotations

from lokin_doctor.causes import Layer, Tag, cause  # noqa: F401
from lokin_doctor.i18n import N_

L = Layer.PRODUCTION

BACKENDS_ALL_FAIL = cause(
    "backends.all-fail",
    L,
    N_("every address of the name fails, each in its own way"),
    N_("read each address's cause in the evidence and fix them one by one, starting with the first"),
)
BACKENDS_SOME_FAIL = cause(
    "backends.some-fail",
    L,
    N_("some of the name's addresses fail while others work: the browsers given a bad one cannot connect"),
    N_(
        "fix or start the server at the failing addresses (each one's cause is in the evidence), or remove them from DNS"
    ),
)
ORIGINS_ANY_ORIGIN = cause(
    "origins.any-origin",
    L,
    N_(
        "a production target (wss://, or an address that is not loopback) accepts any Origin: other sites can connect with your visitors' cookies"
    ),
    N_("accept only the page's Origin"),
    warn=True,
    fail=False,
)
ORIGINS_PAGE_ORIGIN_REJECTED = cause(
    "origins.page-origin-rejected",
    L,
    N_("401/403 for the page's own Origin: exactly what the browser gets"),
    N_(
        "add it to the server's allow-list (ws `verifyClient`, websockets `origins=[...]`, `lokin-doctor serve --allow-origin`)"
    ),
)
PROXY_BACKEND_DOWN = cause(
    "proxy.backend-down",
    L,
    N_(
        "502/504: the proxy is up, its backend does not answer; says whether the backend answers us directly (then `proxy_pass` points at the wrong place)"
    ),
    N_("start the server behind the proxy, or fix `proxy_pass`"),
    tags=(Tag.BACKEND_DOWN,),
)
PROXY_HTTP10_UPSTREAM = cause(
    "proxy.http10-upstream",
    L,
    N_("HTTP 505 from the backend through the proxy: nginx speaks HTTP/1.0 upstream by default"),
    N_("in the location: proxy_http_version 1.1; with the Upgrade and Connection headers"),
    tags=(Tag.UPGRADE_LOST,),
)
PROXY_PATH_MISMATCH = cause(
    "proxy.path-mismatch",
    L,
    N_(
        "the proxy answers 404 where the backend answers 101 at its path (often a trailing `/` in `proxy_pass` stripping the location prefix)"
    ),
    N_("add a location for the path, or use the path the proxy forwards"),
)
PROXY_UPGRADE_NOT_FORWARDED = cause(
    "proxy.upgrade-not-forwarded",
    L,
    N_("backend 101, proxy 426 (or a 400 about Upgrade/Connection): the proxy does not pass the Upgrade"),
    N_(
        'in the location block: `proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection "upgrade";`, then reload'
    ),
    tags=(Tag.UPGRADE_LOST,),
)
VARIANTS_BACKEND_DIRECT = cause(
    "variants.backend-direct",
    L,
    N_("the target fails through a proxy but the backend answers directly on another port"),
    N_("fix the proxy (see the proxy check) rather than sending clients past it"),
    warn=True,
    fail=False,
)
VARIANTS_URL_MISMATCH = cause(
    "variants.url-mismatch",
    L,
    N_('the target fails but a nearby URL answers 101 ("use wss://host/ws in the client")'),
    N_("use that URL in the client, or make the server/proxy answer on the original path"),
)
