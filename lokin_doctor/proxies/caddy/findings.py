"""Caddy findings: the route :mod:`lokin_doctor.proxies.caddy.conf` walked, checked for what breaks or cuts a
WebSocket, each with the Caddyfile's ``file:line`` (found back from the JSON), the current text and the
corrected text.

* no ``reverse_proxy`` at the end of the route: Caddy answers the path itself (an empty 200 by default);
* ``handle_path`` (or ``uri strip_prefix``) strips the prefix: the backend receives another path;
* ``reverse_proxy`` to a port of this machine where nothing listens: 502;
* ``stream_timeout`` (2.7+): every WebSocket is closed that old, busy or not;
* a note that a config reload closes every WebSocket: always before 2.7 (Debian ships 2.6, which has no
  ``stream_close_delay``), from 2.7 unless ``stream_close_delay`` is set.
"""

from __future__ import annotations

import re
from typing import Any

from lokin_doctor.causes.caddy import (
    CADDY_NOT_PROXIED,
    CADDY_RELOAD_CUTS,
    CADDY_STREAM_TIMEOUT,
    CADDY_STRIP_PREFIX,
    CADDY_UPSTREAM_DOWN,
)
from lokin_doctor.i18n import _
from lokin_doctor.proxies.base import (
    ADVICE,
    BACKEND,
    FIXED_TIMEOUT_S,
    PATH,
    ROUTE,
    TIMEOUT,
    Facts,
    Finding,
    Route,
    Upstream,
)
from lokin_doctor.proxies.caddy.conf import CLine, Config, Walk, duration_s

#: The release that added stream_timeout and stream_close_delay to reverse_proxy.
STREAM_RELEASE = (2, 7)
TAB = "\t"


def _dial(up: dict[str, Any]) -> tuple[str, int] | None:
    dial = str(up.get("dial") or "")
    if not dial or "{" in dial or dial.startswith("unix/"):
        return None
    dial = dial.split("/", 1)[-1] if dial.startswith(("tcp/", "tcp4/", "tcp6/")) else dial
    host, sep, port = dial.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]") or "localhost", int(port)


def upstreams(walk: Walk) -> list[tuple[Upstream, dict[str, Any]]]:
    if walk.terminal is None or walk.terminal.handler.get("handler") != "reverse_proxy":
        return []
    h = walk.terminal.handler
    scheme = "https" if (h.get("transport") or {}).get("tls") is not None else "http"
    out = []
    for up in h.get("upstreams") or []:
        parsed = _dial(up)
        if parsed:
            out.append((Upstream(parsed[0], parsed[1], scheme), up))
    return out


class Lines:
    """Where the JSON's parts were written in the Caddyfile (None without one: the JSON pointer is said)."""

    def __init__(self, config: Config, host: str, port: int) -> None:
        self.config = config
        cf = config.caddyfile
        self.site = cf.site_for(host, port) if cf is not None else None

    def _range(self) -> tuple[int, int]:
        if self.site is None:
            return 0, 0
        return self.site[1], self.site[2]

    def find(self, pred: Any, after: CLine | None = None) -> CLine | None:
        cf = self.config.caddyfile
        if cf is None:
            return None
        start, end = self._range()
        if after is not None:
            start = cf.lines.index(after) + 1
            end = next((j for j in range(start, end) if cf.lines[j].depth <= after.depth), end)
        return cf.find(start, end, pred)

    def head(self) -> CLine | None:
        return self.site[0] if self.site else None

    def reverse_proxy(self, dial: str | None) -> CLine | None:
        def named(li: CLine) -> bool:
            return li.words[:1] == ("reverse_proxy",) and (
                dial is None
                or any(dial in w or dial.split(":")[-1] == w.rsplit(":", 1)[-1] for w in li.words[1:])
            )

        return self.find(named) or self.find(lambda li: li.words[:1] == ("reverse_proxy",))


def _at(line: CLine | None, config: Config, pointer: str) -> tuple[str, int, str]:
    if line is not None:
        return line.file, line.line, line.text
    return config.main, 0, pointer


def to_route(config: Config, walk: Walk, host: str, port: int) -> Route:
    lines = Lines(config, host, port)
    ups = upstreams(walk)
    rp = lines.reverse_proxy(f"{ups[0][0].host}:{ups[0][0].port}") if ups else None
    head = lines.head()
    file, line, _text = _at(
        rp or head, config, walk.terminal.pointer if walk.terminal else f"/apps/http/servers/{walk.server}"
    )
    why = [f"server {walk.server} (listen {walk.listen}, {config.source})"]
    if head is not None:
        why.append(f"site {' '.join(head.words)} at {head.where}")
    for step in walk.steps:
        why.append(f"{step.handler.get('handler')} at {step.pointer}")
    described = f"site {' '.join(head.words)} ({head.where})" if head else f"server {walk.server}"
    if ups:
        described += f" -> reverse_proxy {', '.join(u.url() for u, _ in ups)}"
    return Route(
        "caddy",
        described,
        tuple(why),
        file,
        line,
        tuple(Upstream(u.host, u.port, u.scheme, file, line, _text) for u, _ in ups),
        walk.path if ups else None,
        (config, walk, lines),
    )


def analyse(config: Config, walk: Walk, lines: Lines, target_path: str, facts: Facts) -> list[Finding]:
    out: list[Finding] = []
    ws_port = next(iter(facts.ws_ports)) if facts.ws_ports and len(facts.ws_ports) == 1 else None
    head = lines.head()
    ups = upstreams(walk)
    if not ups:
        prefix = "/" + target_path.strip("/").split("/", 1)[0] if target_path.strip("/") else ""
        port = ws_port or 8080
        block = (
            f"handle {prefix}* {{\n{TAB}reverse_proxy 127.0.0.1:{port}\n}}"
            if prefix
            else f"reverse_proxy 127.0.0.1:{port}"
        )
        answered = walk.terminal.handler.get("handler") if walk.terminal else None
        said = (
            _("the route ends in {handler} ({pointer})").format(
                handler=answered, pointer=walk.terminal.pointer
            )
            if walk.terminal
            else _("no route matches it")
        )
        file, line, text = _at(head, config, f"/apps/http/servers/{walk.server}/routes")
        severity = "warn" if walk.uncertain else "fail"
        out.append(
            Finding(
                CADDY_NOT_PROXIED,
                severity,
                file,
                line,
                _(
                    "no reverse_proxy serves {path} ({said}): Caddy answers it itself, it never reaches the WebSocket server"
                ).format(path=target_path, said=said),
                text,
                f"{text}\n{TAB}" + block.replace("\n", f"\n{TAB}") if head else block,
                ROUTE,
            )
        )
        return out
    term = walk.terminal
    assert term is not None
    h = term.handler
    rp = lines.reverse_proxy(f"{ups[0][0].host}:{ups[0][0].port}")
    rp_file, rp_line, rp_text = _at(rp, config, term.pointer)
    # What the backend receives: the path once every rewrite before reverse_proxy ran.
    strips = [
        s for s in walk.steps if s.handler.get("handler") == "rewrite" and s.handler.get("strip_path_prefix")
    ]
    if strips and walk.path != target_path:
        prefix = str(strips[0].handler["strip_path_prefix"])
        hp = lines.find(
            lambda li: (
                li.words[:1] == ("handle_path",)
                and any(w.rstrip("*").rstrip("/") == prefix.rstrip("/") for w in li.words[1:])
            )
        )
        uri = lines.find(lambda li: li.words[:2] == ("uri", "strip_prefix"))
        at = hp or uri
        file, line, text = _at(at, config, strips[0].pointer)
        corrected = text.replace("handle_path", "handle", 1) if hp else ""
        out.append(
            Finding(
                CADDY_STRIP_PREFIX,
                "warn",
                file,
                line,
                _("{text} strips {prefix}: the backend receives {sent} instead of {path}").format(
                    text=text, prefix=prefix, sent=walk.path, path=target_path
                ),
                text,
                corrected,
                PATH,
            )
        )
    if facts.listening_ports is not None:
        dead = [(u, up) for u, up in ups if facts.local(u.host) and u.port not in facts.listening_ports]
        if dead and len(dead) == len(ups):
            u = dead[0][0]
            where = (
                _(" (the WebSocket server listens on {ports})").format(
                    ports=", ".join(map(str, sorted(facts.ws_ports)))
                )
                if facts.ws_ports
                else ""
            )
            corrected = re.sub(rf":{u.port}\b", f":{ws_port}", rp_text, count=1) if ws_port else rp_text
            out.append(
                Finding(
                    CADDY_UPSTREAM_DOWN,
                    "fail",
                    rp_file,
                    rp_line,
                    _(
                        "{text}: nothing listens on {host}:{port} on this machine{where}; Caddy answers 502"
                    ).format(text=rp_text, host=u.host, port=u.port, where=where),
                    rp_text,
                    corrected,
                    BACKEND,
                )
            )
    stream_timeout = duration_s(h.get("stream_timeout"))
    if stream_timeout:
        st = lines.find(lambda li: li.words[:1] == ("stream_timeout",), rp) if rp else None
        file, line, text = _at(st or rp, config, term.pointer + "/stream_timeout")
        held = facts.hold is not None and facts.hold >= stream_timeout
        severity = "warn" if held or stream_timeout < FIXED_TIMEOUT_S else "note"
        out.append(
            Finding(
                CADDY_STREAM_TIMEOUT,
                severity,
                file,
                line,
                _(
                    "stream_timeout {seconds:g} s: Caddy closes every WebSocket {seconds:g} s after it opened, busy or not"
                ).format(seconds=stream_timeout),
                text,
                "" if st else text,
                TIMEOUT,
                # Not an idle timeout: pings do not keep it open, only the hold's drop confirms it.
                None,
            )
        )
    version = facts.version
    close_delay = duration_s(h.get("stream_close_delay"))
    if not close_delay:
        said_version = ".".join(map(str, version)) if version else None
        if version is not None and version < STREAM_RELEASE:
            msg = _(
                "Caddy {version} closes every proxied WebSocket on a config reload (caddy reload, an admin API change); it has no stream_close_delay (Caddy 2.7 added it): clients must reconnect"
            ).format(version=said_version)
            corrected = rp_text
        else:
            msg = _(
                "a config reload (caddy reload, an admin API change) closes every proxied WebSocket at once: stream_close_delay keeps them open that long after a reload"
            )
            corrected = (
                f"{rp_text}\n{TAB}stream_close_delay 5m"
                if rp is not None and rp.opens
                else f"{rp_text} {{\n{TAB}stream_close_delay 5m\n}}"
            )
        out.append(Finding(CADDY_RELOAD_CUTS, "note", rp_file, rp_line, msg, rp_text, corrected, ADVICE))
    return out
