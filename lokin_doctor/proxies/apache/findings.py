"""Apache httpd findings: the virtual host and proxying :mod:`lokin_doctor.proxies.apache.conf` selected,
checked for what breaks a WebSocket, each with ``file:line``, the current text and the corrected text.

What the real httpd does (tried in tests/local/test_apache.py against Debian's 2.4): a ``ProxyPass`` to
``http://`` forwards the request without its ``Upgrade`` unless it says ``upgrade=websocket`` (2.4.47 and
later; mod_proxy_wstunnel loaded or not); ``ws://`` works with mod_proxy_http alone from 2.4.47 and needs
mod_proxy_wstunnel before; the tunnel's idle timeout is the longer of ``Timeout`` (60 s) and the backend's (``timeout=``, else
``ProxyTimeout``); ``ProxyPreserveHost Off`` (the default) sends the backend its own address as Host.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from lokin_doctor.causes.apache import (
    APACHE_BACKEND_DOWN,
    APACHE_HOST_NOT_PRESERVED,
    APACHE_NO_UPGRADE,
    APACHE_NO_WSTUNNEL,
    APACHE_NOT_PROXIED,
    APACHE_ORIGIN_CHANGED,
    APACHE_PROXY_TIMEOUT_SHORT,
)
from lokin_doctor.i18n import _
from lokin_doctor.proxies.apache.conf import (
    DEFAULT_TIMEOUT_S,
    Config,
    Directive,
    ProxyRoute,
    effective,
    in_force_all,
    parse_seconds,
)
from lokin_doctor.proxies.base import (
    BACKEND,
    FIXED_TIMEOUT_S,
    ORIGIN,
    ROUTE,
    TIMEOUT,
    UPGRADE,
    Facts,
    Finding,
    Upstream,
    weigh_timeout,
)

#: The release from which mod_proxy_http upgrades (``upgrade=websocket``, ``ws://`` without wstunnel).
UPGRADE_RELEASE = (2, 4, 47)
INDENT = "    "
FIXED = f"{FIXED_TIMEOUT_S:g}"


def upstream_of(route: ProxyRoute) -> Upstream | None:
    url = route.url.split("|", 1)[-1]  # unix:/path|http://host/
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname or parts.scheme not in ("http", "https", "ws", "wss", "h2c", "h2"):
        return None
    default = 443 if parts.scheme in ("https", "wss", "h2") else 80
    return Upstream(
        parts.hostname,
        port or default,
        parts.scheme,
        route.directive.file,
        route.directive.line,
        route.directive.text,
    )


def _module_dir(config: Config) -> str:
    for d in config.load_lines.values():
        if len(d.args) >= 2 and "/" in d.args[1]:
            return d.args[1].rsplit("/", 1)[0]
    return "modules"


def _with_param(d: Directive, key: str, value: str) -> str:
    text = d.text
    if re.search(rf"\b{key}=\S*", text):
        return re.sub(rf"\b{key}=\S*", f"{key}={value}", text, count=1)
    return f"{text} {key}={value}"


def _vhost_head(vhost: Directive | None, config: Config) -> Directive:
    return vhost if vhost is not None else config.directives[0]


def analyse(
    config: Config,
    vhost: Directive | None,
    route: ProxyRoute | None,
    unknown: list[Directive],
    target_path: str,
    facts: Facts,
) -> list[Finding]:
    modules = set(facts.live.get("modules") or config.modules)
    version = facts.version
    out: list[Finding] = []
    head = _vhost_head(vhost, config)
    ws_port = next(iter(facts.ws_ports)) if facts.ws_ports and len(facts.ws_ports) == 1 else None
    modern = version is None or version >= UPGRADE_RELEASE
    if route is None:
        prefix = "/" + target_path.strip("/").split("/", 1)[0] if target_path.strip("/") else "/"
        port = ws_port or 8080
        line = (
            f'ProxyPass "{prefix}" "http://127.0.0.1:{port}{prefix}" upgrade=websocket'
            if modern
            else f'ProxyPass "{prefix}" "ws://127.0.0.1:{port}{prefix}"'
        )
        where = _("<VirtualHost {args}>").format(args=" ".join(vhost.args)) if vhost else _("the main server")
        if unknown:
            msg = _(
                "no ProxyPass of {where} surely serves {path} ({rule} at {at} has conditions that cannot be read statically): Apache may answer it itself"
            ).format(where=where, path=target_path, rule=unknown[0].text, at=unknown[0].where)
        else:
            msg = _(
                "no ProxyPass, ProxyPassMatch or RewriteRule [P] of {where} serves {path}: Apache answers it itself (a file or a 404), it never reaches the WebSocket server"
            ).format(where=where, path=target_path)
        out.append(
            Finding(
                APACHE_NOT_PROXIED,
                "warn" if unknown else "fail",
                head.file,
                head.line,
                msg,
                head.text,
                f"{head.text}\n{INDENT}{line}" if vhost else line,
                ROUTE,
            )
        )
        return out
    d = route.directive
    up = upstream_of(route)
    scheme = up.scheme if up else urlsplit(route.url.split("|", 1)[-1]).scheme
    if scheme in ("ws", "wss"):
        handled = "proxy_wstunnel_module" in modules or (modern and "proxy_http_module" in modules)
        if not handled:
            last = list(config.load_lines.values())[-1] if config.load_lines else None
            add = f"LoadModule proxy_wstunnel_module {_module_dir(config)}/mod_proxy_wstunnel.so"
            at = last or d
            out.append(
                Finding(
                    APACHE_NO_WSTUNNEL,
                    "fail",
                    at.file,
                    at.line,
                    _(
                        "{text} proxies to {scheme}:// but no loaded module handles it (mod_proxy_wstunnel{also}): Apache answers 500"
                    ).format(
                        text=d.text,
                        scheme=scheme,
                        also=_(", or mod_proxy_http on 2.4.47 and later") if modern else "",
                    ),
                    at.text,
                    f"{at.text}\n{add}" if last else f"{add}\n{d.text}",
                    UPGRADE,
                )
            )
    elif scheme in ("http", "https"):
        upgrade = route.params.get("upgrade", "")
        if "websocket" not in upgrade.lower() and upgrade != "*":
            if route.kind == "RewriteRule" or not modern:
                corrected = d.text.replace(f"{scheme}://", "ws://" if scheme == "http" else "wss://", 1)
                how = _("proxy to ws:// (mod_proxy_wstunnel)")
            else:
                corrected = _with_param(d, "upgrade", "websocket")
                how = _("add upgrade=websocket")
            out.append(
                Finding(
                    APACHE_NO_UPGRADE,
                    "fail",
                    d.file,
                    d.line,
                    _(
                        "{text} proxies to {scheme}:// without upgrade=websocket: Apache forwards the request without its Upgrade header, so the backend cannot upgrade ({how})"
                    ).format(text=d.text, scheme=scheme, how=how),
                    d.text,
                    corrected,
                    UPGRADE,
                )
            )
    if (
        up is not None
        and facts.listening_ports is not None
        and facts.local(up.host)
        and up.port not in facts.listening_ports
    ):
        where = (
            _(" (the WebSocket server listens on {ports})").format(
                ports=", ".join(map(str, sorted(facts.ws_ports)))
            )
            if facts.ws_ports
            else ""
        )
        corrected = d.text.replace(f":{up.port}", f":{ws_port}", 1) if ws_port else d.text
        out.append(
            Finding(
                APACHE_BACKEND_DOWN,
                "fail",
                d.file,
                d.line,
                _(
                    "{text}: nothing listens on {host}:{port} on this machine{where}; Apache answers 503"
                ).format(text=d.text, host=up.host, port=up.port, where=where),
                d.text,
                corrected,
                BACKEND,
            )
        )
    out.extend(_timeout(config, vhost, route, facts))
    out.extend(_origin(config, vhost, route, head))
    return out


def _timeout(config: Config, vhost: Directive | None, route: ProxyRoute, facts: Facts) -> list[Finding]:
    """The tunnel's idle timeout: the longer of the client side's (``Timeout``, 60 s by default) and the
    backend side's (``timeout=``, else ``ProxyTimeout``, else ``Timeout``), as ``ap_proxy_tunnel_create``
    takes it (measured: ``ProxyTimeout 2`` alone cuts nothing, ``Timeout 2`` cuts after 2 s)."""
    d = route.directive
    given = route.params.get("timeout")
    proxy_timeout = effective(config, vhost, route.section, "ProxyTimeout")
    timeout = effective(config, vhost, route.section, "Timeout")
    server_s = parse_seconds(timeout.args[0]) if timeout is not None and timeout.args else None
    server_s = DEFAULT_TIMEOUT_S if server_s is None else server_s
    backend_s: float | None = None
    if given is not None:
        backend_s = parse_seconds(given)
    elif proxy_timeout is not None and proxy_timeout.args:
        backend_s = parse_seconds(proxy_timeout.args[0])
    seconds = max(server_s, backend_s if backend_s is not None else server_s)
    explicit = given is not None or proxy_timeout is not None or timeout is not None
    weighed = weigh_timeout(seconds, facts, explicit=explicit, default_s=DEFAULT_TIMEOUT_S)
    if weighed is None:
        return []
    severity, why = weighed
    said = ", ".join(
        x.text if isinstance(x, Directive) else x
        for x in (timeout, proxy_timeout, f"timeout={given}" if given is not None else None)
        if x is not None
    ) or _("no Timeout, ProxyTimeout or timeout= (httpd's default 60 s)")
    if route.kind == "RewriteRule":
        head = _vhost_head(vhost, config)
        at, current, corrected = head, head.text, f"{head.text}\n{INDENT}ProxyTimeout {FIXED}"
    else:
        at, current, corrected = d, d.text, _with_param(d, "timeout", FIXED)
    return [
        Finding(
            APACHE_PROXY_TIMEOUT_SHORT,
            severity,
            at.file,
            at.line,
            _(
                "{said}: Apache closes a WebSocket idle for {seconds:g} s through {text} (the longer of Timeout and the backend's timeout), and {why}"
            ).format(said=said, seconds=seconds, text=d.text, why=why),
            current,
            corrected,
            TIMEOUT,
            seconds,
        )
    ]


def _origin(config: Config, vhost: Directive | None, route: ProxyRoute, head: Directive) -> list[Finding]:
    out: list[Finding] = []
    for h in in_force_all(config, vhost, route.section, "RequestHeader"):
        words = [w.lower() for w in h.args]
        if (
            len(words) >= 2
            and words[0] in ("set", "unset", "edit", "edit*", "append", "merge", "add", "setifempty")
            and words[1] == "origin"
        ):
            out.append(
                Finding(
                    APACHE_ORIGIN_CHANGED,
                    "warn",
                    h.file,
                    h.line,
                    _("{text}: the backend's Origin check sees another Origin than the browser sent").format(
                        text=h.text
                    ),
                    h.text,
                    "",
                    ORIGIN,
                )
            )
    preserve = effective(config, vhost, route.section, "ProxyPreserveHost")
    if preserve is None or not preserve.args or preserve.args[0].lower() != "on":
        at = preserve or head
        out.append(
            Finding(
                APACHE_HOST_NOT_PRESERVED,
                "note",
                at.file,
                at.line,
                _(
                    "{said}: the backend sees Host: its own address while the browser's Origin names the site; a backend comparing the two refuses the upgrade"
                ).format(said=preserve.text if preserve else _("no ProxyPreserveHost (Off by default)")),
                at.text,
                "ProxyPreserveHost On" if preserve else f"{at.text}\n{INDENT}ProxyPreserveHost On",
                ORIGIN,
            )
        )
    return out
