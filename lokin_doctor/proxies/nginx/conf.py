"""nginx's configuration, read: crossplane's parse output -> the server and location that serve a URL,
with nginx's own matching rules, and the settings in force there. The findings and the corrected block
are in :mod:`lokin_doctor.proxies.nginx.findings`.

Pure: nothing here reads the machine except :func:`load` (crossplane reads the files it is given), so
tests feed configs directly.

Matching follows nginx's documentation ("How nginx processes a request", ``listen``, ``server_name``,
``location``): a listen on the exact address:port beats a wildcard one; then the exact ``server_name``,
the longest leading wildcard, the longest trailing wildcard, the first matching regex, else the
``default_server`` (else the first server) of that address:port. Locations: an exact ``=`` match wins;
else the longest prefix; it wins outright with ``^~``; otherwise the regexes (``~``, ``~*``) are tried in
order of appearance, those nested in the longest prefix first, and the first match wins; else the prefix.
``proxy_set_header`` is inherited from the enclosing level only when the level itself has none.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

#: nginx's defaults for what the checks read.
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_HTTP_VERSION = "1.0"


class ConfigError(Exception):
    """The configuration could not be read at all (missing file, permission)."""


@dataclass(frozen=True)
class Directive:
    """One directive of the configuration, with the file and line it was read from."""

    name: str
    args: tuple[str, ...]
    file: str
    line: int
    block: tuple[Directive, ...] | None = None

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    def children(self, name: str) -> list[Directive]:
        return [d for d in self.block or () if d.name == name]

    def text(self) -> str:
        """The directive as nginx syntax, without its block."""
        return " ".join([self.name, *(_quote(a) for a in self.args)])


def _quote(arg: str) -> str:
    if arg == "" or re.search(r"[\s;{}\"'#]", arg):
        return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return arg


@dataclass(frozen=True)
class Config:
    """A parsed configuration: the main file's directives with includes expanded in place."""

    main: str
    directives: tuple[Directive, ...]
    files: tuple[str, ...]
    errors: tuple[dict[str, Any], ...] = ()

    def http(self) -> Directive | None:
        return next((d for d in self.directives if d.name == "http"), None)


def from_crossplane(payload: Mapping[str, Any]) -> Config:
    """Turn ``crossplane.parse()`` output into a :class:`Config`, expanding includes with their files."""
    configs: list[Mapping[str, Any]] = list(payload.get("config") or [])
    if not configs:
        raise ConfigError("crossplane returned no configuration")

    def build(stmts: Sequence[Mapping[str, Any]], file: str, depth: int) -> list[Directive]:
        out: list[Directive] = []
        for s in stmts:
            name = str(s.get("directive", ""))
            if name == "#":
                continue
            if name == "include" and "includes" in s and depth < 20:
                for index in s["includes"]:
                    inc = configs[index]
                    out.extend(build(inc.get("parsed") or [], str(inc["file"]), depth + 1))
                continue
            block = s.get("block")
            out.append(
                Directive(
                    name,
                    tuple(str(a) for a in s.get("args") or ()),
                    file,
                    int(s.get("line") or 0),
                    tuple(build(block, file, depth)) if block is not None else None,
                )
            )
        return out

    first = configs[0]
    errors = tuple(dict(e) for e in payload.get("errors") or ())
    return Config(
        main=str(first["file"]),
        directives=tuple(build(first.get("parsed") or [], str(first["file"]), 0)),
        files=tuple(str(c["file"]) for c in configs),
        errors=errors,
    )


def load(path: str) -> Config:
    """Parse ``path`` and the files it includes with crossplane."""
    import crossplane  # a small pure-Python parser, imported only when a config is read

    try:
        open(path).close()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    payload = crossplane.parse(path, comments=False, check_ctx=False, check_args=False)
    return from_crossplane(payload)


# --------------------------------------------------------------------------- listen / server_name


@dataclass(frozen=True)
class Listen:
    address: str | None  # None: every address (``listen 8080``, ``*:8080``, ``[::]:8080``)
    port: int
    ipv6: bool
    default: bool
    ssl: bool
    directive: Directive | None


def parse_listen(d: Directive) -> Listen | None:
    """One ``listen`` directive; None for unix sockets and what cannot be read."""
    if not d.args:
        return None
    spec = d.args[0]
    flags = set(d.args[1:])
    if spec.startswith("unix:"):
        return None
    address: str | None
    if spec.startswith("["):
        host, _, rest = spec[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else "80"
        address, ipv6 = host, True
    elif spec.isdigit():
        address, port_text, ipv6 = None, spec, False
    elif ":" in spec:
        address, _, port_text = spec.rpartition(":")
        ipv6 = False
    else:
        address, port_text, ipv6 = spec, "80", False
    if not port_text.isdigit():
        return None
    if address in ("*", "::", "0.0.0.0"):
        address = None
    if address == "localhost":
        address = "127.0.0.1"
    return Listen(
        address, int(port_text), ipv6, bool(flags & {"default_server", "default"}), "ssl" in flags, d
    )


def server_listens(server: Directive) -> list[Listen]:
    found = [li for d in server.children("listen") if (li := parse_listen(d)) is not None]
    if not server.children("listen"):
        found.append(Listen(None, 80, False, False, False, None))
    return found


def server_names(server: Directive) -> list[str]:
    return [a.lower() for d in server.children("server_name") for a in d.args]


def _name_match(
    names_by_server: list[tuple[Directive, list[str]]], host: str
) -> tuple[Directive, str] | None:
    host = host.lower().rstrip(".")
    for server, names in names_by_server:
        if host in names:
            return server, f"server_name {host} (exact)"
    best: tuple[int, Directive, str] | None = None
    for server, names in names_by_server:
        for n in names:
            suffix = n[1:] if n.startswith("*.") else n if n.startswith(".") else None
            if suffix is None:
                continue
            if (host.endswith(suffix) or (n.startswith(".") and host == n[1:])) and (
                best is None or len(n) > best[0]
            ):
                best = (len(n), server, f"server_name {n} (leading wildcard)")
    if best:
        return best[1], best[2]
    for server, names in names_by_server:
        for n in names:
            if n.endswith(".*") and host.startswith(n[:-1]) and (best is None or len(n) > best[0]):
                best = (len(n), server, f"server_name {n} (trailing wildcard)")
    if best:
        return best[1], best[2]
    for server, names in names_by_server:
        for n in names:
            if n.startswith("~"):
                try:
                    if re.search(n[1:], host):
                        return server, f"server_name {n} (regular expression)"
                except re.error:
                    continue
    return None


def _same_address(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return a == b


def select_server(
    config: Config, port: int, host: str, address: str | None = None
) -> tuple[Directive, Listen, str] | None:
    """The ``server`` that handles a connection to ``address:port`` with ``Host: host``.

    ``address`` is the local address the client connected to (None when unknown: wildcard listens first).
    Returns the server, the listen that took the connection and why this server was chosen.
    """
    http = config.http()
    if http is None:
        return None
    candidates: list[tuple[Directive, Listen]] = [
        (s, li) for s in http.children("server") for li in server_listens(s) if li.port == port
    ]
    if not candidates:
        return None
    v6 = address is not None and ":" in address
    exact = [
        (s, li)
        for s, li in candidates
        if li.address is not None and address and _same_address(li.address, address)
    ]
    if exact:
        group = exact
    else:
        wildcard = [
            (s, li) for s, li in candidates if li.address is None and (li.ipv6 == v6 or address is None)
        ]
        group = wildcard or ([] if address is not None else candidates)
    if not group:
        return None
    seen: list[tuple[Directive, Listen]] = []
    for s, li in group:
        if all(s is not t for t, _ in seen):
            seen.append((s, li))
    match = _name_match([(s, server_names(s)) for s, _ in seen], host)
    if match:
        server, why = match
        li = next(li for s, li in seen if s is server)
        return server, li, why
    for s, li in seen:
        if li.default:
            return s, li, f"default_server of port {port} (no server_name matches {host})"
    s, li = seen[0]
    return s, li, f"first server listening on port {port} (no server_name matches {host}, no default_server)"


# --------------------------------------------------------------------------- locations


@dataclass(frozen=True)
class Location:
    modifier: str  # "=", "^~", "~", "~*", "" (prefix) or "@" (named)
    pattern: str
    directive: Directive


def parse_location(d: Directive) -> Location:
    args = d.args
    if len(args) >= 2:
        return Location(args[0], args[1], d)
    arg = args[0] if args else ""
    for mod in ("^~", "~*", "=", "~"):
        if arg.startswith(mod) and len(arg) > len(mod):
            return Location(mod, arg[len(mod) :], d)
    if arg.startswith("@"):
        return Location("@", arg, d)
    return Location("", arg, d)


def _regex_matches(loc: Location, path: str) -> bool:
    try:
        flags = re.IGNORECASE if loc.modifier == "~*" else 0
        return re.search(loc.pattern, path, flags) is not None
    except re.error:
        return False


def _find_location(block: Directive, path: str, chain: list[Directive]) -> tuple[list[Directive], str] | None:
    locs = [parse_location(d) for d in block.children("location")]
    for loc in locs:
        if loc.modifier == "=" and loc.pattern == path:
            return [*chain, loc.directive], f"location = {loc.pattern} (exact match)"
    prefixes = [lo for lo in locs if lo.modifier in ("", "^~") and path.startswith(lo.pattern)]
    best = max(prefixes, key=lambda lo: len(lo.pattern), default=None)
    candidate: tuple[list[Directive], str] | None = None
    if best is not None:
        candidate = (
            [*chain, best.directive],
            f"location {best.modifier + ' ' if best.modifier else ''}{best.pattern} (longest prefix)",
        )
        inner = _find_location(best.directive, path, [*chain, best.directive])
        if inner is not None:
            if "exact" in inner[1] or "regular expression" in inner[1] or best.modifier == "^~":
                return inner
            candidate = inner
        if best.modifier == "^~":
            return [
                *chain,
                best.directive,
            ], f"location ^~ {best.pattern} (longest prefix, ^~: no regex tried)"
    for loc in locs:
        if loc.modifier in ("~", "~*") and _regex_matches(loc, path):
            why = f"location {loc.modifier} {loc.pattern} (regular expression, first match in order"
            if best is not None:
                why += f"; it wins over the prefix location {best.pattern} at {best.directive.where}"
            return [*chain, loc.directive], why + ")"
    return candidate


def select_location(server: Directive, path: str) -> tuple[list[Directive], str] | None:
    """The location that serves ``path``, as the list of nested locations (outermost first) and why."""
    return _find_location(server, path, [])


# --------------------------------------------------------------------------- effective settings


def effective(levels: Sequence[Directive], name: str) -> Directive | None:
    """The directive in force: the innermost level that sets it (last occurrence there)."""
    for level in reversed(levels):
        found = level.children(name)
        if found:
            return found[-1]
    return None


def effective_headers(levels: Sequence[Directive]) -> tuple[list[Directive], Directive | None]:
    """``proxy_set_header`` in force and the level they come from (none set anywhere: nginx's defaults)."""
    for level in reversed(levels):
        found = level.children("proxy_set_header")
        if found:
            return found, level
    return [], None


def parse_time(text: str) -> float | None:
    """nginx time: ``60``, ``60s``, ``500ms``, ``1m30s``, ``2h``; None when unreadable."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "M": 2592000, "y": 31536000}
    if text.isdigit():
        return float(text)
    total = 0.0
    pos = 0
    for m in re.finditer(r"(\d+)(ms|s|m|h|d|w|M|y)", text):
        if m.start() != pos:
            return None
        total += int(m.group(1)) * units[m.group(2)]
        pos = m.end()
    return total if pos == len(text) and pos else None


@dataclass(frozen=True)
class Upstream:
    host: str
    port: int
    uri: str | None  # the URI part of proxy_pass (None: the request URI is passed unchanged)
    scheme: str
    via: Directive | None = None  # the upstream block's server line, when proxy_pass names an upstream


def proxy_targets(config: Config, proxy_pass: Directive) -> list[Upstream]:
    """Where ``proxy_pass`` sends requests: its host:port, or each server of the named upstream."""
    if not proxy_pass.args:
        return []
    url = proxy_pass.args[0]
    if "$" in url or "://" not in url:
        return []
    parts = urlsplit(url)
    scheme = parts.scheme
    netloc = parts.netloc
    uri = url.split(netloc, 1)[1] if netloc else ""
    uri_part = uri if uri else None
    if netloc.startswith("unix:"):
        return []
    default_port = 443 if scheme == "https" else 80
    http = config.http()
    if http is not None and ":" not in netloc:
        for up in http.children("upstream"):
            if up.args and up.args[0] == netloc:
                out = []
                for srv in up.children("server"):
                    if not srv.args or srv.args[0].startswith("unix:"):
                        continue
                    host, port = _host_port(srv.args[0], default_port)
                    out.append(Upstream(host, port, uri_part, scheme, srv))
                return out
    host, port = _host_port(netloc, default_port)
    return [Upstream(host, port, uri_part, scheme)]


def _host_port(text: str, default_port: int) -> tuple[str, int]:
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else default_port
    host, sep, port = text.rpartition(":")
    if sep and port.isdigit():
        return host, int(port)
    return text, default_port


def maps(config: Config) -> dict[str, Directive]:
    """``map SOURCE $VAR {...}`` blocks of the http level, by output variable name (``$connection_upgrade``)."""
    http = config.http()
    if http is None:
        return {}
    return {d.args[1]: d for d in http.children("map") if len(d.args) >= 2}


def _map_value_for_upgrade(m: Directive) -> str | None:
    """What a map gives a request carrying ``Upgrade: websocket`` (its source being $http_upgrade)."""
    entries = {d.name: d.args[0] if d.args else "" for d in m.block or ()}
    if m.args[0] != "$http_upgrade":
        return entries.get("default", "")
    for key in ("websocket", "WebSocket", "~*websocket"):
        if key in entries:
            return entries[key]
    return entries.get("default", "")
