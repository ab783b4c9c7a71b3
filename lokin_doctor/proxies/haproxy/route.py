"""The route a WebSocket opening request takes through HAProxy, read statically.

A request is what a browser sends for the URL: ``GET path``, ``Host`` (with the port when it is not the
scheme's default, as browsers send it: ``hdr(host) -i example.com`` does not match ``example.com:8080``),
``Upgrade: websocket``, ``Connection: Upgrade``. ACLs are evaluated with HAProxy's matching methods
(``str``, ``beg``, ``end``, ``sub``, ``reg``, ``dom``, ``dir``, ``len``, ``found``, integers) on the fetches
that the request determines (``path``, ``url``, ``base``, ``hdr(NAME)``/``req.hdr(NAME)``, ``hdr_cnt``,
``method``, ``ssl_fc``, ``dst_port``...); every other fetch is unknown, and a condition that depends on it
is unknown too (three-valued logic: the route says so instead of guessing).

Order, as HAProxy applies it: the frontend's ``http-request`` rules (a ``deny``/``return``/``tarpit``/
``reject``/``redirect`` answers the request itself), then the first ``use_backend`` whose condition holds,
else ``default_backend`` (a ``listen`` section is its own backend), then the backend's ``http-request``
rules.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from lokin_doctor.proxies.haproxy.conf import Bind, Config, Line, Section, binds

#: Predefined ACLs (HAProxy manual 7.4) for a WebSocket opening request.
PREDEFINED = {
    "TRUE": True,
    "FALSE": False,
    "HTTP": True,
    "HTTP_1.0": False,
    "HTTP_1.1": True,
    "HTTP_CONTENT": False,
    "HTTP_URL_ABS": False,
    "HTTP_URL_SLASH": True,
    "HTTP_URL_STAR": False,
    "METH_GET": True,
    "METH_HEAD": False,
    "METH_POST": False,
    "METH_PUT": False,
    "METH_DELETE": False,
    "METH_OPTIONS": False,
    "METH_TRACE": False,
    "METH_CONNECT": False,
    "REQ_CONTENT": False,
    "WAIT_END": True,
    "LOCALHOST": None,
    "RDP_COOKIE": False,
}

#: ``http-request`` actions after which HAProxy answers the request itself.
ANSWERS = ("deny", "reject", "tarpit", "return", "redirect", "auth", "silent-drop")

#: Fetch names whose ACL form carries the match method as a suffix (``path_beg`` = ``path -m beg``).
SUFFIXES = ("beg", "end", "sub", "reg", "dom", "dir", "len", "found", "cnt", "val", "ip")


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: str
    headers: tuple[tuple[str, str], ...]
    secure: bool
    port: int

    def header(self, name: str) -> list[str]:
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    @classmethod
    def websocket(cls, host_header: str, path: str, port: int, secure: bool) -> Request:
        bare, _, query = path.partition("?")
        return cls(
            "GET",
            bare or "/",
            query,
            (
                ("host", host_header),
                ("upgrade", "websocket"),
                ("connection", "Upgrade"),
                ("sec-websocket-version", "13"),
            ),
            secure,
            port,
        )


# --------------------------------------------------------------------------- fetches and matching


def _fetch(name: str, arg: str | None, req: Request) -> list[str] | None:
    """The samples of a fetch for this request (None: not known statically)."""
    name = name.lower()
    if name.startswith("req."):
        name = name[4:]
    if name in ("path",):
        return [req.path]
    if name in ("url", "uri"):
        return [req.path + ("?" + req.query if req.query else "")]
    if name == "query":
        return [req.query] if req.query else []
    if name == "base":
        host = (req.header("host") or [""])[0]
        return [host + req.path]
    if name in ("hdr", "fhdr"):
        if arg is None:
            return None
        return req.header(arg)
    if name in ("hdr_cnt", "fhdr_cnt"):
        return [str(len(req.header(arg or "")))] if arg else None
    if name == "method":
        return [req.method]
    if name == "ver":
        return ["1.1"]
    if name == "ssl_fc":
        return ["1" if req.secure else "0"]
    if name in ("dst_port", "so_port"):  # the port the client connected to
        return [str(req.port)]
    return None


@dataclass(frozen=True)
class Criterion:
    fetch: str
    arg: str | None
    converters: tuple[str, ...]
    method: str
    ignore_case: bool
    values: tuple[str, ...]
    #: The values came from -f FILE (read when possible, else unknown).
    unknown: bool = False


_FETCH = re.compile(r"^([a-z][a-z0-9_.]*)(?:\(([^)]*)\))?((?:,[a-z0-9_]+(?:\([^)]*\))?)*)$", re.I)


def parse_criterion(words: Sequence[str]) -> Criterion | None:
    """``path_beg -i /ws /api`` / ``hdr(host) -m dom example.com`` / ``req.hdr(host),lower -m str x``."""
    if not words:
        return None
    m = _FETCH.match(words[0])
    if not m:
        return None
    fetch, arg, conv = m.group(1).lower(), m.group(2), m.group(3)
    converters = tuple(c for c in conv.split(",") if c)
    method = ""
    base = fetch[4:] if fetch.startswith("req.") else fetch
    for suffix in SUFFIXES:
        if base.endswith("_" + suffix) and base not in ("hdr_cnt", "fhdr_cnt"):
            method = suffix
            fetch = fetch[: -len(suffix) - 1]
            break
    if base.startswith("hdr_") and base not in ("hdr_cnt", "fhdr_cnt"):
        method = base[4:]
        fetch = "hdr"
    ignore_case = False
    unknown = False
    values: list[str] = []
    i = 1
    while i < len(words):
        w = words[i]
        if w == "--":
            values.extend(words[i + 1 :])
            break
        if w == "-i":
            ignore_case = True
        elif w == "-m" and i + 1 < len(words):
            method = words[i + 1].lower()
            i += 1
        elif w in ("-f", "-M", "-u") and i + 1 < len(words):
            if w == "-f":
                read = _pattern_file(words[i + 1])
                if read is None:
                    unknown = True
                else:
                    values.extend(read)
            i += 1
        elif w in ("-n",):
            pass
        else:
            values.extend(words[i:])
            break
        i += 1
    if not method:
        method = (
            "int"
            if base in ("hdr_cnt", "fhdr_cnt", "dst_port", "so_port")
            else "bool"
            if base == "ssl_fc"
            else "str"
        )
    return Criterion(fetch, arg, converters, method, ignore_case, tuple(values), unknown)


def _pattern_file(path: str) -> list[str] | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return [
                ln.strip()
                for ln in f.read(1 << 20).splitlines()
                if ln.strip() and not ln.strip().startswith("#")
            ]
    except OSError:
        return None


def _convert(samples: list[str], converters: Sequence[str]) -> list[str] | None:
    out = samples
    for c in converters:
        name = c.split("(", 1)[0].lower()
        if name == "lower":
            out = [s.lower() for s in out]
        elif name == "upper":
            out = [s.upper() for s in out]
        elif name == "host_only":
            out = [
                re.sub(r":\d+$", "", s.strip("[]")) if not s.startswith("[") else s[1:].split("]")[0]
                for s in out
            ]
        elif name == "port_only":
            out = [s.rsplit(":", 1)[1] if re.search(r":\d+$", s) else "" for s in out]
        else:
            return None
    return out


def _int_match(sample: str, values: Sequence[str]) -> bool:
    try:
        n = int(sample)
    except ValueError:
        return False
    ops = {"eq": n.__eq__, "ge": n.__ge__, "gt": n.__gt__, "le": n.__le__, "lt": n.__lt__}
    if values and values[0] in ops and len(values) > 1:
        try:
            return bool(ops[values[0]](int(values[1])))
        except ValueError:
            return False
    for v in values:
        low, dash, high = v.partition(":")
        try:
            if dash and (low == "" or n >= int(low)) and (high == "" or n <= int(high)):
                return True
            if not dash and n == int(v):
                return True
        except ValueError:
            continue
    return False


def match(c: Criterion, req: Request) -> bool | None:
    """Whether the criterion matches the request (None: not known statically)."""
    if c.unknown:
        return None
    samples = _fetch(c.fetch, c.arg, req)
    if samples is None:
        return None
    converted = _convert(samples, c.converters)
    if converted is None:
        return None
    samples = converted
    method = c.method
    if method == "found":
        return bool(samples)
    if method == "bool":
        return any(s not in ("", "0") for s in samples)
    if method in ("int", "cnt"):
        return any(_int_match(s, c.values) for s in samples)
    if method == "len":
        return any(_int_match(str(len(s)), c.values) for s in samples)
    for s in samples:
        for v in c.values:
            a, b = (s.lower(), v.lower()) if c.ignore_case else (s, v)
            if method == "str" and a == b:
                return True
            if method == "beg" and a.startswith(b):
                return True
            if method == "end" and a.endswith(b):
                return True
            if method == "sub" and b in a:
                return True
            if method == "reg":
                try:
                    if re.search(v, s, re.I if c.ignore_case else 0):
                        return True
                except re.error:
                    return None
            if method == "dom" and b and re.search(r"(^|[/?.:])" + re.escape(b) + r"($|[/?.:])", a):
                return True
            if method == "dir" and b and re.search(r"(^|/)" + re.escape(b.strip("/")) + r"($|/)", a):
                return True
    if method not in ("str", "beg", "end", "sub", "reg", "dom", "dir"):
        return None
    return False


# --------------------------------------------------------------------------- conditions


def acls(section: Section) -> dict[str, list[Line]]:
    """The section's named ACLs: several lines with one name are OR-ed."""
    out: dict[str, list[Line]] = {}
    for li in section.all("acl"):
        if len(li.words) >= 3:
            out.setdefault(li.words[1], []).append(li)
    return out


def _acl_value(name: str, table: dict[str, list[Line]], req: Request) -> bool | None:
    if name in table:
        results = [match(c, req) if (c := parse_criterion(li.words[2:])) else None for li in table[name]]
        if any(r is True for r in results):
            return True
        return None if any(r is None for r in results) else False
    return PREDEFINED.get(name)


def split_condition(words: Sequence[str]) -> tuple[list[str], list[str] | None, bool]:
    """A rule's words before ``if``/``unless``, the condition's words (None: no condition), and negation."""
    for i, w in enumerate(words):
        if w in ("if", "unless"):
            return list(words[:i]), list(words[i + 1 :]), w == "unless"
    return list(words), None, False


def evaluate(cond: Sequence[str], table: dict[str, list[Line]], req: Request) -> bool | None:
    """A condition: terms AND-ed, ``||``/``or`` between groups, ``!`` negates, ``{ ... }`` anonymous ACLs."""
    groups: list[list[bool | None]] = [[]]
    i = 0
    while i < len(cond):
        w = cond[i]
        if w in ("||", "or"):
            groups.append([])
            i += 1
            continue
        negate = False
        if w == "!":
            negate = True
            i += 1
            w = cond[i] if i < len(cond) else ""
        elif w.startswith("!") and w != "!{":
            negate = True
            w = w[1:]
        value: bool | None
        if w in ("{", "!{"):
            if w == "!{":
                negate = True
            end = i + 1
            while end < len(cond) and cond[end] != "}":
                end += 1
            crit = parse_criterion(cond[i + 1 : end])
            value = match(crit, req) if crit else None
            i = end + 1
        else:
            value = _acl_value(w, table, req)
            i += 1
        if negate and value is not None:
            value = not value
        groups[-1].append(value)

    def all3(vals: list[bool | None]) -> bool | None:
        if any(v is False for v in vals):
            return False
        return None if any(v is None for v in vals) else True

    results = [all3(g) for g in groups if g]
    if any(r is True for r in results):
        return True
    return None if any(r is None for r in results) else False


def rule_applies(
    line: Line, start: int, table: dict[str, list[Line]], req: Request
) -> tuple[list[str], bool | None]:
    """A rule's words (from ``start``) before its condition, and whether it applies to the request."""
    words, cond, unless = split_condition(line.words[start:])
    if cond is None:
        return words, True
    value = evaluate(cond, table, req)
    if value is not None and unless:
        value = not value
    return words, value


# --------------------------------------------------------------------------- the route


@dataclass(frozen=True)
class Step:
    """A rule met on the way: what it does to the request and whether it applies (None: unknown)."""

    line: Line
    action: str
    applies: bool | None


@dataclass
class Path:
    frontend: Section
    bind: Bind
    mode: str
    backend: Section | None = None
    backend_line: Line | None = None
    why: list[str] = field(default_factory=list)
    #: http-request rules that answer the request (deny/return...), applying or maybe applying.
    answered: list[Step] = field(default_factory=list)
    #: http-request rules that touch Upgrade/Connection.
    header_rules: list[Step] = field(default_factory=list)
    #: use_backend lines whose condition cannot be read (the route may differ).
    uncertain: list[Line] = field(default_factory=list)
    sent_path: str = "/"


def select_frontend(config: Config, port: int, address: str | None) -> tuple[Section, Bind] | None:
    """The frontend/listen section whose ``bind`` takes a connection to ``address:port`` (exact first)."""
    found = [
        (s, b)
        for s in config.proxies()
        if s.kind in ("frontend", "listen")
        for b in binds(s)
        if b.covers(port, address)
    ]
    if not found:
        return None
    exact = [(s, b) for s, b in found if b.address is not None]
    return (exact or found)[0]


def _rules(section: Section, req: Request, path: Path) -> bool:
    """Apply a section's http-request rules; True when one surely answers the request itself."""
    table = acls(section)
    for li in section.lines:
        if li.keyword == "redirect":  # the old form: redirect location|prefix|scheme ... [if cond]
            _, applies = rule_applies(li, 1, table, req)
            if applies is not False:
                path.answered.append(Step(li, "redirect", applies))
                if applies:
                    return True
            continue
        if li.keyword != "http-request" or len(li.words) < 2:
            continue
        action = li.words[1].lower()
        words, applies = rule_applies(li, 1, table, req)
        if applies is False:
            continue
        if action in ANSWERS:
            path.answered.append(Step(li, action, applies))
            if applies:
                return True
        elif (
            action in ("set-header", "del-header", "replace-header", "replace-value", "add-header")
            and len(words) > 1
        ):
            if words[1].lower() in ("upgrade", "connection"):
                path.header_rules.append(Step(li, action, applies))
        elif action in ("set-path", "replace-path", "set-uri", "replace-uri") and applies:
            path.sent_path = _rewrite(action, words[1:], path.sent_path)
    return False


def _rewrite(action: str, args: Sequence[str], current: str) -> str:
    if action in ("set-path", "set-uri") and args and "%[" not in args[0]:
        return args[0]
    if action in ("replace-path", "replace-uri") and len(args) >= 2:
        try:
            return re.sub(args[0], re.sub(r"\\(\d)", r"\\\1", args[1]), current, count=1)
        except re.error:
            return current
    return current


def select(
    config: Config, *, host_header: str, port: int, path: str, address: str | None, secure: bool
) -> Path | None:
    """The route of a WebSocket request for ``path`` with ``Host: host_header`` on ``address:port``."""
    picked = select_frontend(config, port, address)
    if picked is None:
        return None
    frontend, bind = picked
    req = Request.websocket(host_header, path, port, secure or bind.ssl)
    mode = config.mode(frontend)
    out = Path(frontend, bind, mode, sent_path=req.path)
    out.why.append(f"{frontend.title} at {frontend.where}: {bind.line.text} takes port {port}")
    if mode == "http" and _rules(frontend, req, out):
        return out
    table = acls(frontend)
    for li in frontend.all("use_backend"):
        words, applies = rule_applies(li, 1, table, req)
        if not words or "%[" in words[0]:
            out.uncertain.append(li)
            continue
        if applies is True:
            out.backend_line = li
            out.backend = config.backend(words[0])
            out.why.append(f"{li.text} at {li.where} matches")
            break
        if applies is None:
            out.uncertain.append(li)
    if out.backend_line is None:
        default = frontend.last("default_backend")
        if default is None and frontend.kind == "frontend":
            defaults = config.defaults_for(frontend)
            default = defaults.last("default_backend") if defaults else None
        if default is not None and default.args:
            out.backend_line = default
            out.backend = config.backend(default.args[0])
            out.why.append(f"{default.text} at {default.where} (no use_backend matches)")
        elif frontend.kind == "listen":
            out.backend = frontend
            out.why.append(f"{frontend.title} is its own backend (no use_backend matches)")
    if out.backend is not None and out.backend is not frontend and config.mode(out.backend) == "http":
        _rules(out.backend, req, out)
    return out
