"""nginx findings: the location :mod:`lokin_doctor.proxies.nginx.conf` selected, checked for what breaks a
WebSocket (the upgrade lines, the ``Connection ""`` keepalive mistake, timeouts against the server's ping
interval, ``proxy_pass`` to a dead or wrong port, a path rewrite, a leaf-only certificate), each with its
``file:line``, and the corrected location block, ready to paste.

Pure: the caller passes what it knows of the machine (:class:`Facts`: listening ports, the WebSocket
server's ports, its ping interval, how many certificates each ``ssl_certificate`` file holds).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lokin_doctor import causes
from lokin_doctor.causes import Cause, Tag
from lokin_doctor.causes.proxyconf import (
    NGINX_CONNECTION_HEADER_EMPTY,
    NGINX_CONNECTION_HEADER_MISSING,
    NGINX_CONNECTION_MAP_MISSING,
    NGINX_HTTP10_UPSTREAM,
    NGINX_LEAF_ONLY_CERTIFICATE,
    NGINX_NOT_PROXIED,
    NGINX_PATH_REWRITTEN,
    NGINX_PROXY_PASS_NOTHING_LISTENS,
    NGINX_PROXY_PASS_WRONG_PORT,
    NGINX_READ_TIMEOUT_SHORT,
    NGINX_SEND_TIMEOUT_SHORT,
    NGINX_UPGRADE_HEADER_MISSING,
)
from lokin_doctor.i18n import _
from lokin_doctor.proxies.nginx.conf import (
    DEFAULT_TIMEOUT_S,
    Config,
    Directive,
    Listen,
    Upstream,
    _map_value_for_upgrade,
    _quote,
    effective,
    effective_headers,
    maps,
    parse_location,
    parse_time,
    proxy_targets,
    select_location,
    select_server,
    server_names,
)

#: What the corrected block sets a timeout that was too short to (the deploy/ example's value).
FIXED_TIMEOUT = "3600s"

#: Findings that break the upgrade itself (Tag.UPGRADE_LOST), that point at a dead or wrong backend
#: (Tag.BACKEND_DOWN), that cut idle connections (Tag.IDLE_CUT): the order is the reports' order.
UPGRADE_CODES = (
    NGINX_HTTP10_UPSTREAM,
    NGINX_UPGRADE_HEADER_MISSING,
    NGINX_CONNECTION_HEADER_MISSING,
    NGINX_CONNECTION_HEADER_EMPTY,
    NGINX_CONNECTION_MAP_MISSING,
)
BACKEND_CODES = (NGINX_PROXY_PASS_NOTHING_LISTENS, NGINX_PROXY_PASS_WRONG_PORT)
TIMEOUT_CODES = (NGINX_READ_TIMEOUT_SHORT, NGINX_SEND_TIMEOUT_SHORT)


@dataclass(frozen=True)
class Finding:
    code: Cause
    severity: str  # "fail" (breaks the connection), "warn" (drops idle clients, may break), "note"
    file: str
    line: int
    message: str
    #: For a timeout finding: the timeout in seconds (weighed later against the pings seen).
    seconds: float | None = field(default=None, compare=False)

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "severity": self.severity, "where": self.where, "message": self.message}


@dataclass(frozen=True)
class Facts:
    """What the caller knows of the machine; each None when unknown."""

    listening_ports: frozenset[int] | None = None
    ws_ports: frozenset[int] | None = None
    #: Ports held by known processes that are neither the WebSocket server nor nginx.
    other_ports: frozenset[int] = frozenset()
    ping_interval: float | None = None
    ping_source: str = ""
    cert_counts: Mapping[str, int] = field(default_factory=dict)
    is_local: Callable[[str], bool] | None = None


@dataclass(frozen=True)
class Analysis:
    config: Config
    server: Directive
    listen: Listen
    server_reason: str
    locations: tuple[Directive, ...]
    location_reason: str
    findings: tuple[Finding, ...]
    upstreams: tuple[Upstream, ...]
    uses_map: str | None  # the map variable to write in Connection (None: the literal "upgrade")
    headers: tuple[Directive, ...]
    headers_level: Directive | None
    path: str = "/"

    @property
    def adds_location(self) -> bool:
        """The fix is a new location for the path (the one serving it is a generic, non-proxied one)."""
        loc = self.location
        if not any(f.code == NGINX_NOT_PROXIED for f in self.findings):
            return False
        return loc is None or parse_location(loc).pattern != self.path

    @property
    def location(self) -> Directive | None:
        return self.locations[-1] if self.locations else None

    def levels(self) -> list[Directive]:
        http = self.config.http()
        return [*([http] if http else []), self.server, *self.locations]

    def describe(self) -> str:
        names = server_names(self.server)
        loc = self.location
        where = (
            _("location {args} at {where}").format(args=" ".join(loc.args), where=loc.where)
            if loc
            else _("server at {where}").format(where=self.server.where)
        )
        return _("{where} (server {value} on port {port})").format(
            where=where, value=" ".join(names) or "_", port=self.listen.port
        )

    def evidence(self) -> dict[str, Any]:
        loc = self.location
        return {
            "config": self.config.main,
            "files": list(self.config.files),
            "server": {
                "where": self.server.where,
                "names": server_names(self.server),
                "why": self.server_reason,
            },
            "location": {"where": loc.where, "args": list(loc.args), "why": self.location_reason}
            if loc
            else None,
            "proxy_pass": [f"{u.scheme}://{u.host}:{u.port}{u.uri or ''}" for u in self.upstreams],
            "findings": [f.to_dict() for f in self.findings],
        }


def proxied_locations(server: Directive) -> list[Directive]:
    """The server's locations (nested ones too) that have a proxy_pass of their own."""
    found: list[Directive] = []

    def walk(block: Directive) -> None:
        for loc in block.children("location"):
            if loc.children("proxy_pass"):
                found.append(loc)
            walk(loc)

    walk(server)
    return found


def _example_path(loc: Directive) -> str:
    """A path this location serves (its prefix; a regex location's pattern is shown as written)."""
    parsed = parse_location(loc)
    return parsed.pattern if parsed.modifier in ("", "^~", "=") else parsed.pattern.lstrip("^").rstrip("$")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def analyse(
    config: Config, *, port: int, host: str, path: str, address: str | None = None, facts: Facts | None = None
) -> Analysis | None:
    """Select the server/location for the URL and check it; None when no server listens on ``port``."""
    facts = facts or Facts()
    picked = select_server(config, port, host, address)
    if picked is None:
        return None
    server, listen, server_reason = picked
    found = select_location(server, path.split("?", 1)[0] or "/")
    locations, location_reason = found if found else ([], _("no location matches: the server block itself"))
    http = config.http()
    levels = [*([http] if http else []), server, *locations]
    anchor = locations[-1] if locations else server
    findings: list[Finding] = []

    def add(code: Cause, severity: str, at: Directive, message: str, seconds: float | None = None) -> None:
        findings.append(Finding(code, severity, at.file, at.line, message, seconds))

    proxy_pass = effective([anchor], "proxy_pass")
    upstreams: list[Upstream] = []
    headers, headers_level = effective_headers(levels)
    map_var: str | None = None
    if proxy_pass is None:
        elsewhere = proxied_locations(server)
        if locations or not elsewhere:
            message = _(
                "{value} has no proxy_pass: nginx answers {path} itself (a file or a 404), it never reaches the WebSocket server"
            ).format(
                value="location " + " ".join(anchor.args) if locations else _("the server block"), path=path
            )
        else:
            message = _(
                "no location of this server matches {path}: nginx answers it itself (a file or a 404), it never reaches the WebSocket server"
            ).format(path=path)
        if elsewhere:
            # The block does proxy, another path: name it and the URL that would work.
            scheme = "wss" if listen.ssl else "ws"
            name = next((n for n in server_names(server) if n not in ("_", "") and "*" not in n), host)
            authority = f"[{name}]" if ":" in name else name
            urls = [f"{scheme}://{authority}:{port}{_example_path(loc)}" for loc in elsewhere[:3]]
            message += _("; this server proxies only {locations}: {urls} would reach the backend").format(
                locations=", ".join(
                    _("location {args} (proxy_pass at {where})").format(
                        args=" ".join(loc.args), where=pp.where
                    )
                    for loc, pp in ((loc, effective([loc], "proxy_pass")) for loc in elsewhere[:3])
                    if pp is not None
                ),
                urls=_(" or ").join(urls),
            )
        add(NGINX_NOT_PROXIED, "fail", anchor, message)
    else:
        upstreams = proxy_targets(config, proxy_pass)
        version = effective(levels, "proxy_http_version")
        if version is None or version.args[:1] != ("1.1",):
            at = version or anchor
            said = (
                f"proxy_http_version {version.args[0]}"
                if version
                else _("no proxy_http_version (nginx's default is 1.0)")
            )
            add(
                NGINX_HTTP10_UPSTREAM,
                "fail",
                at,
                _("{said}: nginx talks HTTP/1.0 to the backend, which cannot upgrade").format(said=said),
            )
        by_name = {h.args[0].lower(): h for h in headers if h.args}
        inherited = ""
        if headers_level is not None and headers_level is not anchor:
            inherited = _(" (the proxy_set_header lines in force come from {name} at {where})").format(
                name=headers_level.name, where=headers_level.where
            )
        own = anchor.children("proxy_set_header")
        shadow = ""
        if own:
            outer = effective_headers(levels[:-1])[0] if locations else []
            lost = [
                h
                for h in outer
                if h.args
                and h.args[0].lower() in ("upgrade", "connection")
                and h.args[0].lower() not in {o.args[0].lower() for o in own if o.args}
            ]
            if lost:
                shadow = _(
                    "; {text} at {where} is not inherited: a level with its own proxy_set_header lines inherits none from above"
                ).format(text=lost[0].text(), where=lost[0].where)
        upgrade = by_name.get("upgrade")
        if (
            upgrade is None
            or len(upgrade.args) < 2
            or not re.search(r"\$http_upgrade|websocket", upgrade.args[1], re.I)
        ):
            add(
                NGINX_UPGRADE_HEADER_MISSING,
                "fail",
                upgrade or anchor,
                _("{value}: the backend never sees the Upgrade request{inherited}{shadow}").format(
                    value=_("no proxy_set_header Upgrade $http_upgrade")
                    if upgrade is None
                    else _("{text} does not forward the client's Upgrade").format(text=upgrade.text()),
                    inherited=inherited,
                    shadow=shadow,
                ),
            )
        conn = by_name.get("connection")
        known_maps = maps(config)
        if conn is None or len(conn.args) < 2:
            add(
                NGINX_CONNECTION_HEADER_MISSING,
                "fail",
                conn or anchor,
                _(
                    "no proxy_set_header Connection: nginx sends 'Connection: close' to the backend{inherited}{shadow}"
                ).format(inherited=inherited, shadow=shadow),
            )
        else:
            value = conn.args[1]
            if value == "":
                add(
                    NGINX_CONNECTION_HEADER_EMPTY,
                    "fail",
                    conn,
                    _(
                        'proxy_set_header Connection "" (the upstream keepalive recipe) removes the Connection header, so the backend sees no upgrade request'
                    ),
                )
            elif value.startswith("$"):
                m = known_maps.get(value)
                if m is None:
                    add(
                        NGINX_CONNECTION_MAP_MISSING,
                        "fail",
                        conn,
                        _(
                            "Connection {value} but no map defines {value} in the http block (nginx -t fails with 'unknown variable')"
                        ).format(value=value),
                    )
                else:
                    map_var = value
                    given = _map_value_for_upgrade(m)
                    if "upgrade" not in (given or "").lower():
                        add(
                            NGINX_CONNECTION_HEADER_EMPTY,
                            "fail",
                            m,
                            _(
                                "the map at {where} gives {value} = {given!r} to a request with 'Upgrade: websocket', not 'upgrade'"
                            ).format(where=m.where, value=value, given=given),
                        )
            elif "upgrade" not in value.lower():
                add(
                    NGINX_CONNECTION_HEADER_MISSING,
                    "fail",
                    conn,
                    _("{text}: the backend sees no upgrade request").format(text=conn.text()),
                )
        for directive, code in (
            ("proxy_read_timeout", NGINX_READ_TIMEOUT_SHORT),
            ("proxy_send_timeout", NGINX_SEND_TIMEOUT_SHORT),
        ):
            d = effective(levels, directive)
            seconds = parse_time(d.args[0]) if d and d.args else DEFAULT_TIMEOUT_S
            if seconds is None:
                continue
            said = (
                f"{d.text()}"
                if d
                else _("{directive} not set (nginx's default 60 s)").format(directive=directive)
            )
            if facts.ping_interval is not None and facts.ping_interval > 0:
                if seconds <= facts.ping_interval:
                    add(
                        code,
                        "warn",
                        d or anchor,
                        _(
                            "{said} is not longer than the server's ping interval ({ping_interval:g} s{value}): nginx closes idle clients after {seconds:g} s"
                        ).format(
                            said=said,
                            ping_interval=facts.ping_interval,
                            value=", " + facts.ping_source if facts.ping_source else "",
                            seconds=seconds,
                        ),
                        seconds,
                    )
            elif facts.ping_interval == 0:
                add(
                    code,
                    "warn",
                    d or anchor,
                    _(
                        "{said}: nginx closes a WebSocket idle for {seconds:g} s and {why}, so quiet clients are dropped"
                    ).format(said=said, seconds=seconds, why=_("the server sends no keepalive pings")),
                    seconds,
                )
            elif d is not None and seconds < DEFAULT_TIMEOUT_S:
                # Unknown is not a problem: a note saying what would tell (the live checks may settle it).
                add(
                    code,
                    "note",
                    d or anchor,
                    _(
                        "{said}: nginx closes a WebSocket idle for {seconds:g} s; whether the server keeps it busy within that time (pings or messages) was not observed: --hold {hold:g} would tell"
                    ).format(said=said, seconds=seconds, hold=seconds + 5),
                    seconds,
                )
        is_local = facts.is_local or _is_loopback
        for up in upstreams:
            at = up.via or proxy_pass
            if not is_local(up.host):
                continue
            if facts.listening_ports is not None and up.port not in facts.listening_ports:
                where = (
                    _(" (the WebSocket server listens on {str})").format(
                        str=", ".join(map(str, sorted(facts.ws_ports)))
                    )
                    if facts.ws_ports
                    else ""
                )
                add(
                    NGINX_PROXY_PASS_NOTHING_LISTENS,
                    "fail",
                    at,
                    _(
                        "{text}: nothing listens on {host}:{port} on this machine{where}; nginx answers 502"
                    ).format(text=at.text(), host=up.host, port=up.port, where=where),
                )
            elif facts.ws_ports and up.port in facts.other_ports:
                add(
                    NGINX_PROXY_PASS_WRONG_PORT,
                    "warn",
                    at,
                    _(
                        "{text} points at port {port}, held by another program, while the WebSocket server listens on {str}"
                    ).format(text=at.text(), port=up.port, str=", ".join(map(str, sorted(facts.ws_ports)))),
                )
        loc = locations[-1] if locations else None
        for up in upstreams[:1]:
            if up.uri is None or loc is None or parse_location(loc).modifier not in ("", "^~", "="):
                continue
            prefix = parse_location(loc).pattern
            bare = path.split("?", 1)[0]
            # nginx replaces the part of the URI that matched the location with proxy_pass's URI.
            sent = up.uri + bare[len(prefix) :] if bare.startswith(prefix) else up.uri
            if sent != bare:
                add(
                    NGINX_PATH_REWRITTEN,
                    "warn",
                    proxy_pass,
                    _(
                        "{text} has a URI part ({uri}): nginx replaces the location prefix {prefix} with it, so the backend receives {sent} instead of {bare}"
                    ).format(text=proxy_pass.text(), uri=up.uri, prefix=prefix, sent=sent, bare=bare),
                )
    if map_var is None and "$connection_upgrade" in maps(config):
        map_var = "$connection_upgrade"
    cert = effective(levels[:2] if len(levels) >= 2 else levels, "ssl_certificate")
    if listen.ssl and cert is not None and cert.args:
        count = facts.cert_counts.get(cert.args[0])
        if count == 1:
            add(
                NGINX_LEAF_ONLY_CERTIFICATE,
                "note",
                cert,
                _("{text}: the file holds one certificate (the leaf only, no intermediate)").format(
                    text=cert.text()
                ),
            )
    return Analysis(
        config,
        server,
        listen,
        server_reason,
        tuple(locations),
        location_reason,
        tuple(findings),
        tuple(upstreams),
        map_var,
        tuple(headers),
        headers_level,
        path.split("?", 1)[0] or "/",
    )


def fixed_block(analysis: Analysis, codes: set[Cause], ws_port: int | None = None) -> str:
    """The matched location with the fixes for ``codes`` applied, ready to paste (4-space indent)."""
    loc = analysis.location
    if NGINX_NOT_PROXIED in codes:
        head = (
            f"location {analysis.path} {{"
            if analysis.adds_location or loc is None
            else f"location {' '.join(_quote(a) for a in loc.args)} {{"
        )
        fresh = [
            f"proxy_pass http://127.0.0.1:{ws_port or 8080};",
            "proxy_http_version 1.1;",
            "proxy_set_header Upgrade $http_upgrade;",
            f"proxy_set_header Connection {analysis.uses_map or _quote_always('upgrade')};",
            "proxy_set_header Host $host;",
            f"proxy_read_timeout {FIXED_TIMEOUT};",
            f"proxy_send_timeout {FIXED_TIMEOUT};",
        ]
        return "\n".join([head, *(f"    {b}" for b in fresh), "}"])
    fixes_upgrade = any(causes.has(c, Tag.UPGRADE_LOST) for c in codes)
    replaced = {"proxy_http_version"} if fixes_upgrade else set()
    if fixes_upgrade:
        replaced.add("proxy_set_header")
    if NGINX_READ_TIMEOUT_SHORT in codes:
        replaced.add("proxy_read_timeout")
    if NGINX_SEND_TIMEOUT_SHORT in codes:
        replaced.add("proxy_send_timeout")
    body: list[str] = []
    own = list(loc.block or ()) if loc is not None else []
    for d in own:
        if d.name in replaced or d.block is not None:
            continue
        if d.name == "proxy_pass":
            body.append(_fixed_proxy_pass(analysis, d, codes, ws_port))
        else:
            body.append(d.text() + ";")
    if fixes_upgrade:
        body.append("proxy_http_version 1.1;")
        body.append("proxy_set_header Upgrade $http_upgrade;")
        body.append(f"proxy_set_header Connection {analysis.uses_map or _quote_always('upgrade')};")
        # A level with its own proxy_set_header inherits none: keep the others in force (Host...).
        for h in analysis.headers:
            if h.args and h.args[0].lower() not in ("upgrade", "connection"):
                body.append(h.text() + ";")
    if NGINX_READ_TIMEOUT_SHORT in codes:
        body.append(f"proxy_read_timeout {FIXED_TIMEOUT};")
    if NGINX_SEND_TIMEOUT_SHORT in codes:
        body.append(f"proxy_send_timeout {FIXED_TIMEOUT};")
    head = f"location {' '.join(_quote(a) for a in loc.args)} {{" if loc is not None else "location / {"
    lines = [head, *(f"    {b}" for b in body), "}"]
    return "\n".join(lines)


def _quote_always(text: str) -> str:
    return f'"{text}"'


def _fixed_proxy_pass(analysis: Analysis, d: Directive, codes: set[Cause], ws_port: int | None) -> str:
    text = d.args[0] if d.args else ""
    if (
        any(causes.has(c, Tag.BACKEND_DOWN) for c in codes)
        and ws_port
        and analysis.upstreams
        and analysis.upstreams[0].via is None
    ):
        up = analysis.upstreams[0]
        host = f"[{up.host}]" if ":" in up.host else up.host
        text = f"{up.scheme}://{host}:{ws_port}{up.uri or ''}"
    if NGINX_PATH_REWRITTEN in codes and analysis.upstreams and analysis.upstreams[0].uri is not None:
        up = analysis.upstreams[0]
        text = text[: len(text) - len(up.uri or "")] if up.uri and text.endswith(up.uri) else text
    return f"proxy_pass {text};"
