"""HAProxy findings: the route :mod:`lokin_doctor.proxies.haproxy.route` selected, checked for what breaks a
WebSocket, each with its ``file:line``, the line as it is and the corrected text.

* ``timeout tunnel`` missing while ``timeout client``/``timeout server`` is not longer than the server's
  ping interval (or the ``--hold`` asked): HAProxy keeps applying them after the 101 and cuts idle
  WebSockets; unknown pings are a note, as for nginx's ``proxy_read_timeout``.
* every server of the backend down (stats socket ``show stat`` when reachable), or naming a port of this
  machine where nothing listens: HAProxy answers 503.
* an ``http-request deny``/``return``/``tarpit``/``reject``/``redirect`` whose condition matches the request.
* an ``http-request`` rule that removes or rewrites ``Upgrade``/``Connection``.
* no ``use_backend`` matches and no ``default_backend``: HAProxy answers 503.
* ``option httpclose``/``http-server-close``: a note only (HAProxy 2.6 tunnels after the 101 regardless;
  tried against the real one in tests/local/test_haproxy.py).

Pure: the caller passes what it knows of the machine in :class:`~lokin_doctor.proxies.base.Facts`
(``live["stats"]``: backend name -> ``[(server, status)]`` from the stats socket).
"""

from __future__ import annotations

import re

from lokin_doctor.causes.haproxy import (
    HAPROXY_BACKEND_DOWN,
    HAPROXY_DENIED,
    HAPROXY_HTTPCLOSE,
    HAPROXY_NO_TIMEOUT_TUNNEL,
    HAPROXY_NOT_PROXIED,
    HAPROXY_TUNNEL_TIMEOUT_SHORT,
    HAPROXY_UPGRADE_HEADER_REMOVED,
)
from lokin_doctor.i18n import _
from lokin_doctor.proxies.base import (
    ADVICE,
    BACKEND,
    DENY,
    FIXED_TIMEOUT_S,
    ROUTE,
    TIMEOUT,
    UPGRADE,
    Facts,
    Finding,
    Route,
    Upstream,
    weigh_timeout,
)
from lokin_doctor.proxies.haproxy.conf import (
    Config,
    Line,
    Section,
    format_time,
    parse_time,
    servers,
)
from lokin_doctor.proxies.haproxy.route import Path

INDENT = "    "
FIXED = format_time(FIXED_TIMEOUT_S)


def describe(path: Path) -> str:
    fe = f"{path.frontend.title} ({path.frontend.where})"
    if path.backend is None:
        return fe
    if path.backend is path.frontend:
        return fe
    return f"{fe} -> {path.backend.title} ({path.backend.where})"


def upstreams(path: Path) -> tuple[Upstream, ...]:
    if path.backend is None:
        return ()
    return tuple(
        Upstream(s.host, s.port, "http", s.line.file, s.line.line, s.line.text)
        for s in servers(path.backend)
        if s.port is not None
    )


def to_route(config: Config, path: Path) -> Route:
    anchor = path.backend or path.frontend
    return Route(
        "haproxy",
        describe(path),
        tuple(path.why),
        anchor.file,
        anchor.line,
        upstreams(path),
        path.sent_path,
        (config, path),
    )


def _exempt(line: Line, target_path: str) -> str:
    """The rule with the WebSocket request taken out of its condition."""
    prefix = "/" + target_path.strip("/").split("/", 1)[0] if target_path.strip("/") else ""
    words = list(line.words)
    # A rule about the path itself is not fixed by exempting that path: exempt the upgrade instead.
    about_path = any(w.startswith(("path", "url", "base")) for w in words) and any(
        w.startswith(prefix) for w in words if prefix
    )
    term = f"{{ path_beg {prefix} }}" if prefix and not about_path else "{ req.hdr(upgrade) -i websocket }"
    words = [_requote(w) for w in words]
    if "unless" in words:
        return f"{' '.join(words)} || {term}"
    if "if" in words:
        return f"{' '.join(words)} !{term}"
    return f"{' '.join(words)} unless {term}"


def _requote(word: str) -> str:
    if word == "" or any(c in word for c in " \t#'\"\\"):
        return "'" + word.replace("'", "'\\''") + "'"
    return word


def _in_force(config: Config, section: Section, option: str) -> Line | None:
    """``option NAME`` in force for a proxy (its own lines, else its defaults'); ``no option NAME`` cancels."""
    current: Section | None = section
    seen: set[int] = set()
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        for li in reversed(current.lines):
            if li.starts("option", option):
                return li
            if li.starts("no", "option", option):
                return None
        current = config.defaults_for(current)
    return None


def _with_port(line: Line, port: int) -> str:
    return re.sub(r"(\s\S*?:)\d+(\s|$)", lambda m: f"{m.group(1)}{port}{m.group(2)}", line.text, count=1)


def _timeouts(config: Config, path: Path, facts: Facts) -> list[Finding]:
    backend = path.backend
    if backend is None:
        return []
    client = config.setting(path.frontend, "timeout", "client")
    server = config.setting(backend, "timeout", "server")
    tunnel = config.setting(backend, "timeout", "tunnel")
    if tunnel is not None and len(tunnel.words) >= 3 and (seconds := parse_time(tunnel.words[2])) is not None:
        # Unknown pings: only a tunnel shorter than nginx's 60 s default is worth a note.
        weighed = weigh_timeout(seconds, facts, explicit=True, default_s=60.0)
        if weighed is None:
            return []
        severity, why = weighed
        return [
            Finding(
                HAPROXY_TUNNEL_TIMEOUT_SHORT,
                severity,
                tunnel.file,
                tunnel.line,
                _("{text}: HAProxy closes a WebSocket idle for {seconds:g} s, and {why}").format(
                    text=tunnel.text, seconds=seconds, why=why
                ),
                tunnel.text,
                f"timeout tunnel {FIXED}",
                TIMEOUT,
                seconds,
            )
        ]
    cuts = [
        (s, li)
        for li in (client, server)
        if li is not None and len(li.words) >= 3 and (s := parse_time(li.words[2])) is not None and s > 0
    ]
    if not cuts:
        return []
    seconds, line = min(cuts, key=lambda c: c[0])
    weighed = weigh_timeout(seconds, facts, explicit=True)
    if weighed is None:
        return []
    severity, why = weighed
    owner = next((s for s in config.sections if line in s.lines), None)
    if owner is not None and owner.kind in ("defaults", "backend", "listen"):
        # timeout tunnel is valid where this line is: add it right below.
        where, current, corrected = line, line.text, f"{line.text}\n{INDENT}timeout tunnel {FIXED}"
    else:
        # A frontend's timeout client: timeout tunnel belongs to the backend.
        head = backend.head
        where, current, corrected = head, head.text, f"{head.text}\n{INDENT}timeout tunnel {FIXED}"
    return [
        Finding(
            HAPROXY_NO_TIMEOUT_TUNNEL,
            severity,
            where.file,
            where.line,
            _(
                "no timeout tunnel for {backend}: after the upgrade HAProxy keeps {text} ({at}) and closes a WebSocket idle for {seconds:g} s, and {why}"
            ).format(backend=backend.title, text=line.text, at=line.where, seconds=seconds, why=why),
            current,
            corrected,
            TIMEOUT,
            seconds,
        )
    ]


def _backend_down(path: Path, facts: Facts) -> list[Finding]:
    backend = path.backend
    if backend is None:
        return []
    listed = servers(backend)
    if not listed:
        return []
    ws_port = next(iter(facts.ws_ports)) if facts.ws_ports and len(facts.ws_ports) == 1 else None
    stats = (facts.live.get("stats") or {}).get(backend.name)
    first = listed[0]
    if stats:
        states = {name: status for name, status in stats}
        # Servers without health checks say "no check": the stats socket cannot tell, the listeners can.
        down = [s for s in listed if states.get(s.name, "").split(" ")[0] in ("DOWN", "MAINT")]
        checked = [s for s in listed if states.get(s.name, "no check") != "no check"]
        if down and len(down) == len(listed):
            said = ", ".join(f"{s.name} {states[s.name]}" for s in down)
            return [
                Finding(
                    HAPROXY_BACKEND_DOWN,
                    "fail",
                    first.line.file,
                    first.line.line,
                    _(
                        "every server of {backend} is down ({said}, from the stats socket): HAProxy answers 503"
                    ).format(backend=backend.title, said=said),
                    first.line.text,
                    _with_port(first.line, ws_port) if ws_port and first.port != ws_port else first.line.text,
                    BACKEND,
                )
            ]
        if any(s not in down for s in checked):
            return []  # a server the health checks see up takes the traffic
    if facts.listening_ports is None:
        return []
    dead = [
        s
        for s in listed
        if s.port is not None
        and facts.local(s.host)
        and s.port not in facts.listening_ports
        and not s.disabled
    ]
    live = [s for s in listed if s not in dead and not s.disabled]
    if not dead or live:
        return []
    where = (
        _(" (the WebSocket server listens on {ports})").format(
            ports=", ".join(map(str, sorted(facts.ws_ports)))
        )
        if facts.ws_ports
        else ""
    )
    return [
        Finding(
            HAPROXY_BACKEND_DOWN,
            "fail",
            s.line.file,
            s.line.line,
            _("{text}: nothing listens on {host}:{port} on this machine{where}; HAProxy answers 503").format(
                text=s.line.text, host=s.host, port=s.port, where=where
            ),
            s.line.text,
            _with_port(s.line, ws_port) if ws_port else s.line.text,
            BACKEND,
        )
        for s in dead[:1]
    ]


def analyse(config: Config, path: Path, target_path: str, facts: Facts) -> list[Finding]:
    out: list[Finding] = []
    for step in path.answered:
        sure = step.applies is True
        out.append(
            Finding(
                HAPROXY_DENIED,
                "fail" if sure else "note",
                step.line.file,
                step.line.line,
                (
                    _(
                        "{text}: HAProxy answers the WebSocket request itself ({action}), it never reaches a backend"
                    )
                    if sure
                    else _(
                        "{text} may answer the WebSocket request itself ({action}): its condition cannot be read statically"
                    )
                ).format(text=step.line.text, action=step.action),
                step.line.text,
                _exempt(step.line, target_path),
                DENY,
            )
        )
    for step in path.header_rules:
        words = step.line.words
        value = " ".join(words[3:]).lower() if len(words) > 3 else ""
        name = words[2].lower()
        if step.line.words[1] in ("set-header", "add-header") and (
            (name == "connection" and "upgrade" in value) or (name == "upgrade" and "websocket" in value)
        ):
            continue
        out.append(
            Finding(
                HAPROXY_UPGRADE_HEADER_REMOVED,
                "fail" if step.applies else "note",
                step.line.file,
                step.line.line,
                _(
                    "{text}: the backend does not get the client's {header} header, so it cannot upgrade"
                ).format(text=step.line.text, header=words[2]),
                step.line.text,
                "",
                UPGRADE,
            )
        )
    if any(f.severity == "fail" and f.code == HAPROXY_DENIED for f in out):
        return out
    if path.backend is None:
        fe = path.frontend
        backends = [s for s in config.sections if s.kind == "backend"]
        ws_ports = facts.ws_ports or frozenset()
        best = next((b for b in backends if any(s.port in ws_ports for s in servers(b))), None) or (
            backends[0] if backends else None
        )
        if path.uncertain:
            msg = _(
                "no use_backend of {frontend} surely matches {path} (the condition of {line} cannot be read statically) and it has no default_backend: HAProxy may answer 503"
            ).format(frontend=fe.title, path=target_path, line=path.uncertain[0].where)
            severity = "warn"
        else:
            msg = _(
                "no use_backend of {frontend} matches {path} and it has no default_backend: HAProxy answers 503"
            ).format(frontend=fe.title, path=target_path)
            severity = "fail"
        name = best.name if best else "lokin_ws"
        corrected = f"{fe.head.text}\n{INDENT}default_backend {name}"
        if best is None:
            port = next(iter(ws_ports), 8080)
            corrected += (
                f"\n\nbackend {name}\n{INDENT}server ws1 127.0.0.1:{port}\n{INDENT}timeout tunnel {FIXED}"
            )
        out.append(
            Finding(HAPROXY_NOT_PROXIED, severity, fe.file, fe.line, msg, fe.head.text, corrected, ROUTE)
        )
        return out
    out.extend(_backend_down(path, facts))
    out.extend(_timeouts(config, path, facts))
    for section in dict.fromkeys([path.frontend, path.backend]):
        for option in ("httpclose", "http-server-close", "forceclose"):
            li = _in_force(config, section, option)
            if li is not None and all(f.where != li.where for f in out):
                out.append(
                    Finding(
                        HAPROXY_HTTPCLOSE,
                        "note",
                        li.file,
                        li.line,
                        _(
                            "{text}: harmless for the WebSocket (after the 101 HAProxy tunnels the connection); it only closes keep-alive HTTP connections"
                        ).format(text=li.text),
                        li.text,
                        li.text,
                        ADVICE,
                    )
                )
    return out
