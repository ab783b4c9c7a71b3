"""Caddy's configuration, read: the JSON Caddy runs (from its admin API, ``caddy adapt`` of a Caddyfile, or a
JSON file), the route a request takes through it by Caddy's own rules, and the Caddyfile lines that wrote
each part (the JSON has no line numbers: :class:`Caddyfile` finds them back).

Routing, as ``caddyhttp`` does it: the server whose ``listen`` takes the port; its ``routes`` in order, a
route applies when one of its matcher sets matches (every matcher of a set: ``host``, ``path``,
``path_regexp``, ``header``, ``method``, ``protocol``, ``not``; others are unknown); handlers run in order
(``subroute`` recurses, ``rewrite`` changes the path: ``strip_path_prefix``, ``uri``), a terminal handler
(``reverse_proxy``, ``static_response``, ``file_server``...) answers; ``terminal: true`` stops the route
list; in a ``group`` only the first matching route runs. Pure but for :func:`adapt` and :func:`load`.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lokin_doctor.proxies.base import ConfigError

#: Handlers that write the response (the chain ends there).
TERMINAL = (
    "reverse_proxy",
    "static_response",
    "file_server",
    "error",
    "templates_only",
    "acme_server",
    "authentication_only",
)

# --------------------------------------------------------------------------- Caddyfile lines


@dataclass(frozen=True)
class CLine:
    file: str
    line: int
    depth: int
    words: tuple[str, ...]
    text: str
    opens: bool

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    cur: list[str] = []
    quote = None
    i = 0
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\" and i + 1 < len(text):
                cur.append(text[i + 1])
                i += 2
                continue
            if c == quote:
                quote = None
                out.append("".join(cur))
                cur = []
            else:
                cur.append(c)
        elif c in '"`':
            quote = c
        elif c in " \t":
            if cur:
                out.append("".join(cur))
                cur = []
        elif c == "#" and not cur:
            break
        else:
            cur.append(c)
        i += 1
    if cur:
        out.append("".join(cur))
    return out


@dataclass
class Caddyfile:
    """A Caddyfile's lines with their nesting depth (``import FILE`` inlined; snippets are not followed)."""

    main: str
    lines: list[CLine] = field(default_factory=list)

    @classmethod
    def read(cls, path: str, depth: int = 0) -> Caddyfile:
        out = cls(os.path.abspath(path))
        out._read(path, 0, depth)
        return out

    def _read(self, path: str, level: int, nested: int) -> int:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read(4 << 20)
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
        for number, raw in enumerate(text.splitlines(), 1):
            words = _tokens(raw.strip())
            if not words:
                continue
            closes = words[0] == "}"
            if closes:
                level = max(0, level - 1)
                words = words[1:]
                if not words:
                    continue
            if words[0] == "import" and len(words) > 1 and nested < 8:
                import glob as g

                pattern = (
                    words[1] if os.path.isabs(words[1]) else os.path.join(os.path.dirname(path), words[1])
                )
                for inc in sorted(g.glob(pattern)):
                    if os.path.isfile(inc):
                        level = self._read(inc, level, nested + 1)
                continue
            opens = words[-1] == "{"
            self.lines.append(
                CLine(
                    os.path.abspath(path),
                    number,
                    level,
                    tuple(w for w in words if w != "{"),
                    raw.strip(),
                    opens,
                )
            )
            if opens:
                level += 1
            if words[-1] == "}" and len(words) > 1:
                level = max(0, level - 1)
        return level

    def sites(self) -> list[tuple[CLine, int, int]]:
        """Site blocks: (head line, index of the head, index past the block)."""
        out = []
        for i, li in enumerate(self.lines):
            if li.depth == 0 and li.opens and li.words and not (i == 0 and not li.words):
                end = next(
                    (j for j in range(i + 1, len(self.lines)) if self.lines[j].depth == 0), len(self.lines)
                )
                out.append((li, i, end))
        return out

    def site_for(self, host: str, port: int) -> tuple[CLine, int, int] | None:
        """The site block whose address names ``host`` and ``port`` (an address without a port, or
        without a host, counts less)."""
        best: tuple[int, tuple[CLine, int, int]] | None = None
        loopback = {"localhost", "127.0.0.1", "::1"}
        for site in self.sites():
            for addr in site[0].words:
                a = re.sub(r"^[a-z]+://", "", addr.rstrip(","))
                m = re.match(r"^(.*?)(?::(\d+))?$", a)
                h, p = (m.group(1), m.group(2) or "") if m else (a, "")
                host_ok = h in ("", host) or fnmatch.fnmatch(host, h) or (h in loopback and host in loopback)
                score = 2 if p == str(port) else 1 if not p else 0
                if host_ok and score and (best is None or score > best[0]):
                    best = (score, site)
        return best[1] if best else None

    def find(self, start: int, end: int, pred: Any) -> CLine | None:
        return next((li for li in self.lines[start:end] if pred(li)), None)


# --------------------------------------------------------------------------- the JSON and its routes


@dataclass(frozen=True)
class Config:
    main: str
    files: tuple[str, ...]
    data: Mapping[str, Any]
    #: Where the JSON came from: "caddy adapt", "admin API", "json".
    source: str
    caddyfile: Caddyfile | None = None

    def servers(self) -> dict[str, Mapping[str, Any]]:
        http = ((self.data.get("apps") or {}).get("http") or {}) if isinstance(self.data, Mapping) else {}
        return dict(http.get("servers") or {})

    def admin(self) -> str | None:
        """The admin endpoint's address (None: ``admin off`` or a unix socket); Caddy's default localhost:2019."""
        admin = self.data.get("admin") or {}
        if admin.get("disabled"):
            return None
        listen = str(admin.get("listen") or "localhost:2019")
        if listen.startswith("unix/"):
            return None
        return listen.split("/", 1)[-1] if listen.startswith("tcp/") else listen


def duration_s(value: Any) -> float | None:
    """A Caddy JSON duration: nanoseconds as a number, or a Go duration string (``30s``, ``1h30m``)."""
    if isinstance(value, (int, float)):
        return float(value) / 1e9
    if isinstance(value, str):
        units = {
            "ns": 1e-9,
            "us": 1e-6,
            "µs": 1e-6,
            "ms": 1e-3,
            "s": 1.0,
            "m": 60.0,
            "h": 3600.0,
            "d": 86400.0,
        }
        total, pos = 0.0, 0
        for m in re.finditer(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d)", value):
            if m.start() != pos:
                return None
            total += float(m.group(1)) * units[m.group(2)]
            pos = m.end()
        return total if pos == len(value) and pos else None
    return None


def _listen_ports(spec: str) -> tuple[str | None, int, int] | None:
    spec = spec.split("/", 1)[-1] if "/" in spec.split(":", 1)[0] else spec
    host, sep, ports = spec.rpartition(":")
    if not sep:
        return None
    low, _, high = ports.partition("-")
    if not low.isdigit():
        return None
    h = host.strip("[]") or None
    return (None if h in (None, "0.0.0.0", "::") else h), int(low), int(high or low)


@dataclass(frozen=True)
class Request:
    host: str
    path: str
    headers: Mapping[str, str]


def _host_match(patterns: Sequence[str], host: str) -> bool:
    host = host.lower()
    for p in patterns:
        p = p.lower()
        if p == host or (
            "*" in p and len(p.split(".")) == len(host.split(".")) and fnmatch.fnmatchcase(host, p)
        ):
            return True
    return False


def _path_match(patterns: Sequence[str], path: str) -> bool:
    lower = path.lower()
    for p in patterns:
        p = p.lower()
        if p == "*" or p == lower:
            return True
        if p.startswith("*") and p.endswith("*") and len(p) > 1 and p[1:-1] in lower:
            return True
        if p.endswith("*") and lower.startswith(p[:-1]):
            return True
        if p.startswith("*") and lower.endswith(p[1:]):
            return True
        if "*" in p[1:-1] and fnmatch.fnmatchcase(lower, p):
            return True
    return False


def _header_match(spec: Mapping[str, Sequence[str]], req: Request) -> bool:
    for name, values in spec.items():
        have = req.headers.get(name.lower())
        if have is None:
            return False
        if not values:
            continue
        ok = False
        for v in values:
            if (
                v == "*"
                or v == have
                or (v.startswith("*") and v.endswith("*") and v[1:-1] in have)
                or v.endswith("*")
                and have.startswith(v[:-1])
                or v.startswith("*")
                and have.endswith(v[1:])
            ):
                ok = True
        if not ok:
            return False
    return True


def match_set(ms: Mapping[str, Any], req: Request) -> bool | None:
    """Every matcher of one set (AND); None when one cannot be read statically."""
    result: bool | None = True
    for kind, spec in ms.items():
        value: bool | None
        if kind == "host":
            value = _host_match(spec, req.host)
        elif kind == "path":
            value = _path_match(spec, req.path)
        elif kind == "path_regexp":
            try:
                value = re.search(spec.get("pattern", ""), req.path) is not None
            except re.error:
                value = None
        elif kind == "header":
            value = _header_match(spec, req)
        elif kind == "method":
            value = "GET" in [m.upper() for m in spec]
        elif kind == "protocol":
            value = spec in ("http", "http/1.1", "http/1")
        elif kind == "not":
            inner = [match_set(s, req) for s in spec]
            value = None if None in inner else not any(inner)
        else:
            value = None
        if value is False:
            return False
        if value is None:
            result = None
    return result


def route_matches(route: Mapping[str, Any], req: Request) -> bool | None:
    sets = route.get("match")
    if not sets:
        return True
    results = [match_set(s, req) for s in sets]
    if any(r is True for r in results):
        return True
    return None if None in results else False


@dataclass
class Step:
    """A handler met on the way: its JSON, where it sits in the JSON (a pointer) and the path before it."""

    handler: Mapping[str, Any]
    pointer: str
    path_before: str


@dataclass
class Walk:
    server: str
    listen: str
    steps: list[Step] = field(default_factory=list)
    terminal: Step | None = None
    uncertain: list[str] = field(default_factory=list)
    path: str = "/"
    hosts: list[str] = field(default_factory=list)
    #: The path the client asked for (``path`` is what the handlers made of it).
    asked: str = "/"


def _rewrite(h: Mapping[str, Any], path: str) -> str:
    if h.get("strip_path_prefix"):
        prefix = str(h["strip_path_prefix"])
        if path.lower().startswith(prefix.lower()):
            path = path[len(prefix) :]
            if not path.startswith("/"):
                path = "/" + path
    if h.get("strip_path_suffix") and path.endswith(str(h["strip_path_suffix"])):
        path = path[: -len(str(h["strip_path_suffix"]))]
    uri = h.get("uri")
    if isinstance(uri, str) and "{" not in uri:
        path = uri.split("?", 1)[0] or path
    for sub in h.get("uri_substring") or []:
        path = path.replace(sub.get("find", ""), sub.get("replace", ""), sub.get("limit") or -1)
    for rx in h.get("path_regexp") or []:
        try:
            path = re.sub(rx.get("find", ""), rx.get("replace", ""), path)
        except re.error:
            pass
    return path


def _walk(routes: Sequence[Mapping[str, Any]], req: Request, pointer: str, out: Walk) -> bool:
    """Run ``routes``; True once a terminal handler answered."""
    groups_done: set[str] = set()
    for i, route in enumerate(routes):
        group = route.get("group")
        if group and group in groups_done:
            continue
        here = Request(req.host, out.path, req.headers)
        matched = route_matches(route, here)
        if matched is False:
            continue
        if matched is None:
            out.uncertain.append(f"{pointer}/{i}")
            continue
        if group:
            groups_done.add(group)
        hosts = [h for s in route.get("match") or [] for h in s.get("host", [])]
        out.hosts.extend(hosts)
        for j, h in enumerate(route.get("handle") or []):
            at = f"{pointer}/{i}/handle/{j}"
            name = h.get("handler")
            if name == "subroute":
                if _walk(h.get("routes") or [], req, f"{at}/routes", out):
                    return True
                continue
            step = Step(h, at, out.path)
            out.steps.append(step)
            if name == "rewrite":
                out.path = _rewrite(h, out.path)
            if name in TERMINAL:
                out.terminal = step
                return True
        if route.get("terminal"):
            return False
    return False


def select(config: Config, *, host: str, port: int, path: str, address: str | None) -> Walk | None:
    """The route of a WebSocket request for ``path`` with ``Host: host`` to ``address:port``."""
    req = Request(
        host, path.split("?", 1)[0] or "/", {"upgrade": "websocket", "connection": "Upgrade", "host": host}
    )
    for name, server in config.servers().items():
        for spec in server.get("listen") or []:
            parsed = _listen_ports(str(spec))
            if parsed is None:
                continue
            h, low, high = parsed
            if not low <= port <= high or (
                h and address and h != address and not (h == "localhost" and address == "127.0.0.1")
            ):
                continue
            walk = Walk(name, str(spec), path=req.path, asked=req.path)
            _walk(server.get("routes") or [], req, f"/apps/http/servers/{name}/routes", walk)
            return walk
    return None


def adapt(path: str, binary: str, timeout: float, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``caddy adapt --config PATH --adapter caddyfile``: the JSON Caddy would run."""
    from lokin_doctor.proxies.base import run_quiet

    out = run_quiet([binary, "adapt", "--config", path, "--adapter", "caddyfile"], timeout, env)
    if out is None:
        raise ConfigError(f"caddy adapt --config {path} did not run")
    code, stdout, stderr = out
    if code != 0:
        said = (stderr.strip().splitlines() or ["failed"])[-1]
        raise ConfigError(f"caddy adapt --config {path}: {said}")
    try:
        data = json.loads(stdout)
    except ValueError as exc:
        raise ConfigError(f"caddy adapt --config {path} gave no JSON ({exc})") from None
    return data if isinstance(data, dict) else {}


def is_json(path: str) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            head = f.read(4096).lstrip()
    except OSError:
        return False
    return (
        head.startswith("{")
        and '"' in head[:200]
        and ('"apps"' in head or '"admin"' in head or '"logging"' in head)
    )


def load(path: str, binary: str | None, timeout: float, env: Mapping[str, str] | None = None) -> Config:
    """A Caddyfile (adapted with ``caddy adapt``) or a JSON config file."""
    if is_json(path):
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read {path}: {exc}") from None
        return Config(os.path.abspath(path), (os.path.abspath(path),), data, "json")
    caddyfile = Caddyfile.read(path)
    if binary is None:
        raise ConfigError("caddy is not installed here, so the Caddyfile cannot be adapted to its JSON")
    data = adapt(path, binary, timeout, env)
    files = tuple(dict.fromkeys(li.file for li in caddyfile.lines)) or (caddyfile.main,)
    return Config(caddyfile.main, files, data, "caddy adapt", caddyfile)
