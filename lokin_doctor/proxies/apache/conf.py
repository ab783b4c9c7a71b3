"""Apache httpd's configuration, read: directives with their file and line, sections, ``Include``/
``IncludeOptional`` (globs, directories, relative to ``ServerRoot``), ``Define``/``${VAR}``, and the
conditional sections ``<IfModule>``/``<IfDefine>``/``<IfVersion>``/``<IfFile>`` evaluated as httpd does
while it reads the files (a module counts once its ``LoadModule`` line was read).

No PyPI parser fits: ``apacheconfig`` (last release 2020) reads Config::General syntax and keeps no line
numbers; ``apache-conf-parser`` dates from 2011. httpd's format is simple: one directive a line, a trailing
backslash continues it, ``#`` starts a comment line, ``<Section args>``...``</Section>``, words split as
``ap_getword_conf`` does (double or single quotes group, a backslash escapes a quote inside them).

Then the virtual host and the route for a URL, by httpd's rules (:func:`select_vhost`,
:func:`select_proxy`). Pure: nothing reads the machine except :func:`load` (the files it is given).
"""

from __future__ import annotations

import fnmatch
import glob
import ipaddress
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from lokin_doctor.proxies.base import ConfigError

#: Modules compiled into Debian's apache2 (``apache2 -l``): always loaded.
STATIC_MODULES = frozenset(
    [
        "core_module",
        "so_module",
        "watchdog_module",
        "http_module",
        "log_config_module",
        "logio_module",
        "version_module",
        "unixd_module",
    ]
)

#: httpd's Timeout default (seconds), what a tunnel uses without ProxyTimeout or timeout=.
DEFAULT_TIMEOUT_S = 60.0

MAX_DEPTH = 16


@dataclass(frozen=True)
class Directive:
    name: str
    args: tuple[str, ...]
    file: str
    line: int
    text: str
    block: tuple[Directive, ...] | None = None

    @property
    def lname(self) -> str:
        return self.name.lower()

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    def children(self, *names: str) -> list[Directive]:
        wanted = {n.lower() for n in names}
        return [d for d in self.block or () if d.lname in wanted]

    def head(self) -> str:
        """``<VirtualHost *:80>`` for a section, the directive's text otherwise."""
        return self.text


@dataclass(frozen=True)
class Config:
    main: str
    files: tuple[str, ...]
    directives: tuple[Directive, ...]
    modules: frozenset[str]
    #: Where each module's LoadModule line is (module -> Directive).
    load_lines: Mapping[str, Directive] = field(default_factory=dict)
    server_root: str = "/etc/apache2"
    warnings: tuple[str, ...] = ()

    def top(self, *names: str) -> list[Directive]:
        wanted = {n.lower() for n in names}
        return [d for d in self.directives if d.lname in wanted]

    def vhosts(self) -> list[Directive]:
        return self.top("virtualhost")


def split_words(text: str) -> list[str]:
    """``ap_getword_conf``: blanks separate, quotes group (and are removed), ``\\"`` inside quotes."""
    words: list[str] = []
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in " \t":
            i += 1
        if i >= n:
            break
        q = text[i]
        if q in "\"'":
            i += 1
            cur = []
            while i < n and text[i] != q:
                if text[i] == "\\" and i + 1 < n and text[i + 1] in (q, "\\"):
                    i += 1
                cur.append(text[i])
                i += 1
            i += 1
            words.append("".join(cur))
        else:
            start = i
            while i < n and text[i] not in " \t":
                i += 1
            words.append(text[start:i])
    return words


def _module_id(name: str) -> str:
    """``mod_proxy.c`` / ``proxy_module`` / ``mod_proxy`` -> ``proxy_module``."""
    name = name.strip()
    if name.endswith("_module"):
        return name
    base = name[:-2] if name.endswith(".c") else name
    base = base[4:] if base.startswith("mod_") else base
    return f"{base}_module"


class _Reader:
    def __init__(
        self,
        server_root: str,
        defines: Mapping[str, str],
        env: Mapping[str, str],
        version: tuple[int, ...] | None,
        modules: set[str] | None,
    ) -> None:
        self.server_root = server_root
        self.defines = dict(defines)
        self.env = env
        self.version = version
        self.modules: set[str] = set(STATIC_MODULES) if modules is None else set(modules)
        self.load_lines: dict[str, Directive] = {}
        self.files: list[str] = []
        self.warnings: list[str] = []

    def expand(self, text: str) -> str:
        def sub(m: re.Match[str]) -> str:
            name = m.group(1)
            if name in self.defines:
                return self.defines[name]
            if name in self.env:
                return self.env[name]
            return m.group(0)

        return re.sub(r"\$\{([A-Za-z0-9_.:-]+)\}", sub, text)

    def resolve(self, path: str) -> str:
        return path if os.path.isabs(path) else os.path.join(self.server_root, path)

    def read_file(self, path: str, depth: int) -> list[Directive]:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read(4 << 20)
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
        self.files.append(os.path.abspath(path))
        lines = _logical_lines(text)
        out, _end = self.parse(lines, 0, os.path.abspath(path), depth, None)
        return out

    def parse(
        self, lines: list[tuple[int, str]], i: int, file: str, depth: int, closing: str | None
    ) -> tuple[list[Directive], int]:
        out: list[Directive] = []
        while i < len(lines):
            number, raw = lines[i]
            i += 1
            text = self.expand(raw)
            if text.startswith("</"):
                name = text[2:].rstrip(">").strip().lower()
                if closing is not None and name == closing:
                    return out, i
                self.warnings.append(f"{file}:{number}: unexpected {text}")
                continue
            if text.startswith("<") and text.endswith(">"):
                inner = text[1:-1].strip()
                words = split_words(inner)
                if not words:
                    continue
                name = words[0]
                args = tuple(words[1:])
                lname = name.lower()
                if lname in ("ifmodule", "ifdefine", "ifversion", "iffile", "ifdirective", "ifsection"):
                    keep = self.condition(lname, args)
                    # The section's body is read only when kept (LoadModule inside counts then).
                    if keep:
                        body, i = self.parse(lines, i, file, depth, lname)
                        out.extend(body)
                    else:
                        i = _skip(lines, i, lname)
                    continue
                if lname == "else" or lname == "elseif":
                    continue
                body, i = self.parse(lines, i, file, depth, lname)
                out.append(Directive(name, args, file, number, text, tuple(body)))
                continue
            words = split_words(text)
            if not words:
                continue
            name, args = words[0], tuple(words[1:])
            lname = name.lower()
            d = Directive(name, args, file, number, text)
            if lname in ("include", "includeoptional") and args:
                if depth >= MAX_DEPTH:
                    self.warnings.append(f"{file}:{number}: includes nested too deep")
                    continue
                out.extend(self.include(args[0], lname == "includeoptional", depth, d))
                continue
            if lname == "define" and args:
                self.defines[args[0]] = args[1] if len(args) > 1 else ""
            elif lname == "undefine" and args:
                self.defines.pop(args[0], None)
            elif lname == "serverroot" and args:
                self.server_root = args[0]
            elif lname == "loadmodule" and args:
                self.modules.add(args[0])
                self.load_lines[args[0]] = d
            out.append(d)
        return out, i

    def include(self, pattern: str, optional: bool, depth: int, at: Directive) -> list[Directive]:
        path = self.resolve(pattern)
        if os.path.isdir(path):
            matches = sorted(os.path.join(path, f) for f in os.listdir(path))
        elif glob.has_magic(path):
            matches = sorted(glob.glob(path))
        else:
            if not os.path.exists(path):
                if not optional:
                    self.warnings.append(f"{at.where}: Include {pattern}: no such file")
                return []
            matches = [path]
        out: list[Directive] = []
        for m in matches:
            if os.path.isdir(m):
                out.extend(self.include(m, optional, depth + 1, at))
            elif os.path.isfile(m):
                out.extend(self.read_file(m, depth + 1))
        return out

    def condition(self, kind: str, args: tuple[str, ...]) -> bool:
        if not args:
            return True
        arg = " ".join(args)
        negate = arg.startswith("!")
        arg = arg[1:].strip() if negate else arg
        value: bool
        if kind == "ifmodule":
            value = _module_id(arg) in self.modules
        elif kind == "ifdefine":
            value = arg in self.defines
        elif kind == "ifversion":
            value = _version_ok(args, self.version)
        elif kind == "iffile":
            value = os.path.exists(self.resolve(arg))
        else:
            value = True
        return not value if negate else value


def _version_ok(args: Sequence[str], version: tuple[int, ...] | None) -> bool:
    if version is None:
        return True
    words = list(args)
    op = "="
    if len(words) >= 2:
        op, want = words[0], words[1]
    else:
        want = words[0]
    if op in ("~",) or want.startswith("/"):
        return True
    try:
        target = tuple(int(x) for x in want.split("."))
    except ValueError:
        return True
    have = version[: len(target)]
    return {
        "=": have == target,
        "==": have == target,
        ">": have > target,
        ">=": have >= target,
        "<": have < target,
        "<=": have <= target,
    }.get(op, True)


def _skip(lines: list[tuple[int, str]], i: int, name: str) -> int:
    depth = 1
    while i < len(lines):
        text = lines[i][1]
        i += 1
        low = text.lower()
        if low.startswith("</" + name):
            depth -= 1
            if depth == 0:
                return i
        elif low.startswith("<" + name) and (len(low) == len(name) + 1 or low[len(name) + 1] in " \t>"):
            depth += 1
    return i


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, text) with ``\\``-continued lines joined and comment lines dropped."""
    out: list[tuple[int, str]] = []
    buf: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not buf:
            start = number
            if not line or line.startswith("#"):
                continue
        if line.endswith("\\"):
            buf.append(line[:-1].rstrip() + " ")
            continue
        buf.append(line)
        out.append((start, "".join(buf).strip()))
        buf = []
    if buf:
        out.append((start, "".join(buf).strip()))
    return out


def load(
    path: str,
    *,
    server_root: str | None = None,
    defines: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    version: tuple[int, ...] | None = None,
    modules: set[str] | None = None,
) -> Config:
    """Read ``path`` and what it includes; ``server_root`` is ``-d`` (default: the file's directory)."""
    root = server_root or os.path.dirname(os.path.abspath(path))
    reader = _Reader(root, defines or {}, os.environ if env is None else env, version, modules)
    directives = reader.read_file(path, 0)
    return Config(
        os.path.abspath(path),
        tuple(reader.files),
        tuple(directives),
        frozenset(reader.modules),
        dict(reader.load_lines),
        reader.server_root,
        tuple(reader.warnings),
    )


# --------------------------------------------------------------------------- virtual hosts


@dataclass(frozen=True)
class VhostAddr:
    address: str | None  # None: * or _default_
    port: int | None  # None: every port


def parse_vhost_addrs(d: Directive) -> list[VhostAddr]:
    out: list[VhostAddr] = []
    for a in d.args:
        if a.startswith("["):
            host, _, rest = a[1:].partition("]")
            port = rest[1:] if rest.startswith(":") else ""
        elif a.count(":") == 1 or (":" in a and not a.startswith("[") and a.count(":") == 1):
            host, _, port = a.rpartition(":")
        else:
            host, port = a, ""
        address: str | None = None if host in ("*", "_default_", "") else host
        if address == "localhost":
            address = "127.0.0.1"
        out.append(VhostAddr(address, int(port) if port.isdigit() else None))
    return out


def listen_ports(config: Config) -> list[tuple[str | None, int]]:
    out: list[tuple[str | None, int]] = []
    for d in config.top("listen"):
        if not d.args:
            continue
        spec = d.args[0]
        if spec.isdigit():
            out.append((None, int(spec)))
            continue
        host, _, port = spec.rpartition(":")
        if port.isdigit():
            host = host.strip("[]")
            out.append((None if host in ("", "*", "0.0.0.0", "::") else host, int(port)))
    return out


def _same(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return a == b


def names(vhost: Directive) -> list[str]:
    return [a.lower() for d in vhost.children("servername", "serveralias") for a in d.args]


def select_vhost(
    config: Config, port: int, host: str, address: str | None
) -> tuple[Directive | None, str] | None:
    """The virtual host for a connection to ``address:port`` with ``Host: host`` (None inside: the main
    server); None when httpd does not listen on ``port``."""
    listening = [
        (a, p)
        for a, p in listen_ports(config)
        if p == port and (a is None or address is None or _same(a, address))
    ]
    if not listening:
        return None
    host = host.lower().rstrip(".")
    candidates = []
    for v in config.vhosts():
        for va in parse_vhost_addrs(v):
            if va.port is not None and va.port != port:
                continue
            exact = va.address is not None and address is not None and _same(va.address, address)
            if va.address is None or exact or address is None:
                candidates.append((v, exact))
                break
    if not candidates:
        return None, f"no <VirtualHost> for port {port}: the main server configuration"
    by_ip = [v for v, e in candidates if e]
    group = by_ip or [v for v, _e in candidates]
    for v in group:
        for n in names(v):
            if n == host or (any(c in n for c in "*?") and fnmatch.fnmatchcase(host, n)):
                return v, f"ServerName/ServerAlias {n} of <VirtualHost {' '.join(v.args)}> at {v.where}"
    v = group[0]
    return (
        v,
        f"<VirtualHost {' '.join(v.args)}> at {v.where}, the first for port {port} (no ServerName matches {host})",
    )


# --------------------------------------------------------------------------- the proxy route


@dataclass(frozen=True)
class ProxyRoute:
    """How httpd proxies the path: the directive, the URL it proxies to, its key=value parameters."""

    kind: str  # ProxyPass, ProxyPassMatch, RewriteRule, Location
    directive: Directive
    url: str
    params: Mapping[str, str]
    sent_path: str
    #: The <Location> section holding the ProxyPass (kind Location).
    section: Directive | None = None


def _alias_match(path: str, alias: str) -> int:
    """mod_proxy's ``alias_match``: the length of ``path`` that ``alias`` matches (0: none); runs of
    slashes count as one and the match ends on a path segment."""
    i = j = 0
    while j < len(alias):
        if i >= len(path):
            return 0
        if alias[j] == "/":
            if path[i] != "/":
                return 0
            while j < len(alias) and alias[j] == "/":
                j += 1
            while i < len(path) and path[i] == "/":
                i += 1
            continue
        if path[i] != alias[j]:
            return 0
        i += 1
        j += 1
    if alias and alias[-1] != "/" and i < len(path) and path[i] != "/":
        return 0
    return i


def _params(words: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for w in words:
        k, sep, v = w.partition("=")
        if sep:
            out[k.lower()] = v
    return out


def _rewrite_conditions(conds: list[Directive], host: str, path: str) -> bool | None:
    result: bool | None = True
    ornext = False
    for c in conds:
        if len(c.args) < 2:
            return None
        test, pattern = c.args[0], c.args[1]
        flags = c.args[2].strip("[]").lower().split(",") if len(c.args) > 2 else []
        values = {
            "%{http:upgrade}": "websocket",
            "%{http:connection}": "Upgrade",
            "%{http_host}": host,
            "%{request_uri}": path,
            "%{request_method}": "GET",
        }
        value = values.get(test.lower())
        if value is None:
            ok: bool | None = None
        else:
            negate = pattern.startswith("!")
            pat = pattern[1:] if negate else pattern
            try:
                ok = re.search(pat, value, re.I if "nc" in flags or "nocase" in flags else 0) is not None
            except re.error:
                ok = None
            if ok is not None and negate:
                ok = not ok
        if ornext:
            result = True if (result or ok) else (None if None in (result, ok) else False)
        else:
            result = False if (result is False or ok is False) else (None if None in (result, ok) else True)
        ornext = "or" in flags or "ornext" in flags
    return result


def _rewrite(block: Sequence[Directive], host: str, path: str) -> tuple[ProxyRoute | None, list[Directive]]:
    """RewriteRule ... [P] of a context with RewriteEngine On; the rules whose conditions are unknown."""
    engine = [d for d in block if d.lname == "rewriteengine"]
    if not engine or engine[-1].args[:1] and engine[-1].args[0].lower() != "on":
        return None, []
    conds: list[Directive] = []
    unknown: list[Directive] = []
    current = path
    for d in block:
        if d.lname == "rewritecond":
            conds.append(d)
            continue
        if d.lname != "rewriterule" or len(d.args) < 2:
            continue
        pattern, subst = d.args[0], d.args[1]
        flags = d.args[2].strip("[]").lower().split(",") if len(d.args) > 2 else []
        these, conds = conds, []
        negate = pattern.startswith("!")
        try:
            m = re.search(pattern[1:] if negate else pattern, current, re.I if "nc" in flags else 0)
        except re.error:
            continue
        if (m is None) != negate:
            continue
        ok = _rewrite_conditions(these, host, current)
        if ok is False:
            continue
        if ok is None:
            unknown.append(d)
            continue
        target = subst
        if m is not None:
            for k, g in enumerate(m.groups(), 1):
                target = target.replace(f"${k}", g or "")
        if "p" in flags or "proxy" in flags:
            sent = re.sub(r"^[a-z]+://[^/]*", "", target) or "/"
            return ProxyRoute("RewriteRule", d, target, {}, sent), unknown
        if subst != "-":
            current = target if target.startswith("/") else current
        if "l" in flags or "last" in flags or "end" in flags:
            break
    return None, unknown


def _locations(block: Sequence[Directive], path: str) -> list[Directive]:
    out = []
    for d in block:
        if d.lname == "location" and d.args:
            if d.args[0] == "~" and len(d.args) > 1:
                try:
                    if re.search(d.args[1], path):
                        out.append(d)
                except re.error:
                    pass
            elif path.startswith(d.args[0]):
                out.append(d)
        elif d.lname == "locationmatch" and d.args:
            try:
                if re.search(d.args[0], path):
                    out.append(d)
            except re.error:
                pass
    return out


def select_proxy(
    config: Config, vhost: Directive | None, host: str, path: str
) -> tuple[ProxyRoute | None, list[str], list[Directive]]:
    """The proxying that serves ``path`` in ``vhost`` (None: the main server), why, and rules whose
    conditions cannot be read. Order as httpd runs them: mod_rewrite's ``[P]`` (translate_name, first),
    then a ``<Location>``'s ProxyPass (the last matching section), then the server's ProxyPass /
    ProxyPassMatch in order (the main server's before the virtual host's)."""
    why: list[str] = []
    block = list(vhost.block or ()) if vhost is not None else list(config.directives)
    found, unknown = _rewrite(block, host, path)
    if found is not None:
        why.append(f"{found.directive.text} at {found.directive.where} (mod_rewrite, before ProxyPass)")
        return found, why, unknown
    for loc in reversed(_locations(block, path)):
        for d in reversed(loc.children("proxypass")):
            if d.args and d.args[0] != "!":
                prefix = loc.args[-1] if loc.lname == "location" and loc.args[0] != "~" else ""
                rest = path[len(prefix) :] if prefix and path.startswith(prefix) else ""
                url = d.args[0]
                sent = (
                    re.sub(r"^[a-z]+://[^/]*", "", url) + rest
                    if prefix
                    else re.sub(r"^[a-z]+://[^/]*", "", url)
                )
                why.append(f"{loc.text} at {loc.where} holds {d.text}")
                return ProxyRoute("Location", d, url, _params(d.args[1:]), sent or "/", loc), why, unknown
            if d.args and d.args[0] == "!":
                why.append(f"{d.text} in {loc.text} at {d.where} excludes the path")
                return None, why, unknown
    levels = [list(config.directives), block] if vhost is not None else [block]
    for level in levels:
        for d in level:
            if d.lname == "proxypass" and len(d.args) >= 2:
                n = _alias_match(path, d.args[0])
                if not n:
                    continue
                if d.args[1] == "!":
                    why.append(f"{d.text} at {d.where} excludes the path")
                    return None, why, unknown
                url = d.args[1]
                sent = re.sub(r"^[a-z]+://[^/]*", "", url) + path[n:]
                why.append(f"{d.text} at {d.where} (first ProxyPass whose path matches)")
                return ProxyRoute("ProxyPass", d, url, _params(d.args[2:]), sent or "/"), why, unknown
            if d.lname == "proxypassmatch" and len(d.args) >= 2:
                try:
                    m = re.search(d.args[0], path)
                except re.error:
                    continue
                if not m:
                    continue
                if d.args[1] == "!":
                    why.append(f"{d.text} at {d.where} excludes the path")
                    return None, why, unknown
                url = d.args[1]
                for k, g in enumerate(m.groups(), 1):
                    url = url.replace(f"${k}", g or "")
                url = url.replace("$0", m.group(0))
                sent = re.sub(r"^[a-z]+://[^/]*", "", url)
                if url == d.args[1]:
                    # No substitution made: mod_proxy appends the request's path to the URL.
                    sent += path
                why.append(f"{d.text} at {d.where} (first ProxyPassMatch whose regex matches)")
                return ProxyRoute("ProxyPassMatch", d, url, _params(d.args[2:]), sent or "/"), why, unknown
    return None, why, unknown


def effective(
    config: Config, vhost: Directive | None, section: Directive | None, name: str
) -> Directive | None:
    """The directive in force: the section's, else the virtual host's, else the main server's (last one)."""
    for level in (section, vhost):
        if level is not None:
            found = level.children(name)
            if found:
                return found[-1]
    found = config.top(name)
    return found[-1] if found else None


def in_force_all(
    config: Config, vhost: Directive | None, section: Directive | None, name: str
) -> list[Directive]:
    out = list(config.top(name))
    for level in (vhost, section):
        if level is not None:
            out.extend(level.children(name))
    return out


def parse_seconds(text: str) -> float | None:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms)?", text.strip().lower())
    if not m:
        return None
    return float(m.group(1)) / (1000 if m.group(2) else 1)
