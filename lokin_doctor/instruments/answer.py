"""Read a whole non-101 answer: who sent it and what it said, sans I/O.

:func:`read_answer` takes what the observer kept of a reply that is not a valid 101 (status, reason,
headers as pairs, a bounded body) and returns a frozen :class:`Answer`:

* **who answered** (:class:`Sender`): the program or platform that wrote the reply, from the signature
  table of :mod:`lokin_doctor.instruments.senders`, with the evidence that named it; and the senders the
  reply went **through** (a CDN's ``cf-ray``, ``Via: 1.1 google``...). With nothing to name it, the
  sender is what the reply is (an event stream, a web page, an SPA's index.html) or "a server that says
  it is X" (its own ``Server`` header), never a guess;
* **what it said**: an HTML page's ``<title>`` and ``<h1>``, its first line of text, a JSON body's
  ``message``/``error``/``detail``, the first line of a text body, the headers of interest (``Server``,
  ``Via``, ``Sec-WebSocket-Version``, ``Retry-After``, ``WWW-Authenticate``, ``Location``...) and the
  request ids CDNs and load balancers add.

The reading of the status (cause, summary, hint) is the handshake check's status table
(:mod:`lokin_doctor.checks.chain.answer_table`); this module only reads.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from lokin_doctor.i18n import _
from lokin_doctor.instruments import senders as sig
from lokin_doctor.instruments.senders import Kind, Role

#: How much of the body is searched and parsed (the observer keeps up to 64 KiB).
BODY_SCAN = 16 * 1024
#: Longest text quoted from a reply (a title, a message, a line).
QUOTE_MAX = 160


@dataclass(frozen=True)
class Sender:
    """Who wrote a reply (or what it is, when nothing names who wrote it)."""

    id: str
    name: str
    kind: Kind
    #: The facts that named it: ``Server: nginx/1.22.1``, ``body: <center>nginx</center>``...
    evidence: tuple[str, ...] = ()
    version: str | None = None
    #: The facts fit this sender, but another program could write the same.
    likely: bool = False
    #: For an unknown sender: what it says it is (its Server header, or X-Powered-By).
    says: str | None = None

    @property
    def known(self) -> bool:
        return self.kind not in (Kind.UNKNOWN,) and self.id not in ("web-site", "event-stream", "spa")

    def display(self) -> str:
        """The sender as a summary names it: "nginx 1.22.1", "probably the Node.js ws server",
        'a server that says it is "Kestrel-ish/2"'."""
        if self.id == "via":
            return _("a proxy (Via: {via})").format(via=self.says)
        if self.says is not None:
            return _("a server that says it is {says!r}").format(says=self.says)
        name = _(self.name)
        if self.version:
            name = f"{name} {self.version}"
        return _("{name} (probably)").format(name=name) if self.likely else name


@dataclass(frozen=True)
class Answer:
    """A whole non-101 reply, read."""

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]
    sender: Sender
    #: The senders the reply went through (CDNs, load balancers, proxies), outermost first.
    through: tuple[Sender, ...] = ()
    content_type: str | None = None
    title: str | None = None
    heading: str | None = None
    #: A JSON body's message (``message``, ``error``, ``error.message``, ``detail``...).
    message: str | None = None
    #: The first line of text (of a text body, or an HTML page's first visible line after its heading).
    first_line: str | None = None
    #: The versions a ``Sec-WebSocket-Version`` header offers (RFC 6455 4.4), in its order.
    versions: tuple[str, ...] = ()
    body_text: str = ""

    def header(self, name: str) -> str | None:
        lname = name.lower()
        for k, v in self.headers:
            if k.lower() == lname:
                return v
        return None

    @property
    def line(self) -> str:
        """``HTTP 502 Bad Gateway``."""
        return f"HTTP {self.status} {self.reason}".rstrip()

    @property
    def said(self) -> str | None:
        """What the reply said, in its own words: the page title, else its heading, the JSON message or
        the first line of text (None for an empty body)."""
        for text in (self.title, self.heading, self.message, self.first_line):
            if text:
                return text
        return None

    def said_phrase(self) -> str:
        """``, page title '502 Bad Gateway'``: what it said, for a summary (empty when it said nothing)."""
        if self.title:
            return _(", page title {title!r}").format(title=self.title)
        if self.heading:
            return _(", page heading {heading!r}").format(heading=self.heading)
        if self.message:
            return _(", message {message!r}").format(message=self.message)
        if self.first_line:
            return _(", body {line!r}").format(line=self.first_line)
        return ""

    def detail_phrase(self) -> str:
        """The page's text line after its title (HAProxy's "No server is available..."), for a summary."""
        line = self.first_line
        if (
            line
            and (self.title or self.heading)
            and not any(line in t for t in (self.title, self.heading) if t)
        ):
            return f" ({line})"
        return ""

    @property
    def edge(self) -> Sender | None:
        """The outermost infrastructure the reply came from: the first sender it went through, or the
        sender itself when it is a proxy, CDN, load balancer or platform."""
        if self.through:
            return self.through[0]
        if self.sender.kind in (Kind.PROXY, Kind.CDN, Kind.LOAD_BALANCER, Kind.PLATFORM):
            return self.sender
        return None

    def involves(self, *ids: str) -> bool:
        """Whether the sender or one the reply went through is one of ``ids``."""
        return self.sender.id in ids or any(s.id in ids for s in self.through)

    def who(self) -> str:
        """``nginx 1.22.1`` / ``the Node.js ws server through nginx, Cloudflare``."""
        text = self.sender.display()
        if self.through:
            text += _(" through {names}").format(names=", ".join(s.display() for s in self.through))
        return text

    def headers_of_interest(self) -> dict[str, str]:
        return _pick(self.headers, sig.HEADERS_OF_INTEREST)

    def request_ids(self) -> dict[str, str]:
        return _pick(self.headers, sig.REQUEST_ID_HEADERS)

    def evidence(self) -> dict[str, Any]:
        """The ``answer`` block of the handshake's evidence (JSON keys stay English)."""
        ev: dict[str, Any] = {
            "sender": self.sender.id,
            "sender_name": self.sender.display(),
            "sender_kind": self.sender.kind.value,
            "sender_evidence": list(self.sender.evidence),
            "status": self.status,
            "reason": self.reason,
        }
        if self.through:
            ev["through"] = [{"sender": s.id, "evidence": list(s.evidence)} for s in self.through]
        for key, value in (
            ("title", self.title),
            ("heading", self.heading),
            ("message", self.message),
            ("first_line", self.first_line),
            ("content_type", self.content_type),
        ):
            if value:
                ev[key] = value
        if self.versions:
            ev["versions_offered"] = list(self.versions)
        if hoi := self.headers_of_interest():
            ev["headers_of_interest"] = hoi
        if rid := self.request_ids():
            ev["request_ids"] = rid
        return ev


def _pick(headers: Iterable[tuple[str, str]], names: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in headers:
        lk = k.lower()
        if lk in names:
            out[lk] = f"{out[lk]}, {v}" if lk in out else v
    return out


# -- reading the body -----------------------------------------------------------------------------------

_TITLE = re.compile(r"<title[^>]*>(.*?)</title\s*>", re.I | re.S)
_H1 = re.compile(r"<h1[^>]*>(.*?)</h1\s*>", re.I | re.S)
_TAG = re.compile(r"<[^>]+>")
_DROP = re.compile(r"<(script|style|head)[^>]*>.*?</\1\s*>|<!--.*?-->", re.I | re.S)
_SPACE = re.compile(r"\s+")
_SPA = re.compile(
    r"<div\s+id=[\"'](?:root|app|__next|__nuxt|svelte)[\"']|<app-root|<script[^>]+type=[\"']module[\"']", re.I
)
_JSON_KEYS = ("message", "error", "detail", "error_description", "msg", "reason", "title", "description")


def _clean(text: str) -> str:
    text = html.unescape(_TAG.sub(" ", text))
    text = _SPACE.sub(" ", text).strip()
    return text[:QUOTE_MAX].rstrip() + ("…" if len(text) > QUOTE_MAX else "")


def _json_message(text: str) -> str | None:
    try:
        data = json.loads(text)
    except ValueError:
        return None
    for _depth in range(3):  # {"error": {"message": "..."}} and the like, bounded
        if not isinstance(data, dict):
            return None
        for key in _JSON_KEYS:
            value = data.get(key)
            if isinstance(value, str) and value.strip():
                return _clean(value)
            if isinstance(value, int | float) and not isinstance(value, bool):
                continue
        nested = next((data[k] for k in _JSON_KEYS if isinstance(data.get(k), dict)), None)
        if nested is None:
            nested = next((v[0] for k in ("errors",) if isinstance(v := data.get(k), list) and v), None)
        if nested is None:
            return None
        data = nested
    return None


def _text_lines(markup: str) -> list[str]:
    """The visible lines of an HTML page (scripts, styles and the head dropped)."""
    body = _SPACE.sub(" ", _DROP.sub(" ", markup))
    body = re.sub(
        r"</?(?:br|p|div|h\d|center|li|tr|hr|pre|body|address|table)\b[^>]*>", "\n", body, flags=re.I
    )
    lines = []
    for raw in _TAG.sub(" ", body).split("\n"):
        line = _SPACE.sub(" ", html.unescape(raw)).strip()
        if line:
            lines.append(line[:QUOTE_MAX])
    return lines


def read_body(body: bytes, content_type: str | None) -> dict[str, str | None]:
    """Title, heading, message and first line of a bounded body."""
    text = body[:BODY_SCAN].decode("utf-8", "replace")
    ctype = (content_type or "").lower()
    out: dict[str, str | None] = {"title": None, "heading": None, "message": None, "first_line": None}
    stripped = text.lstrip()
    is_html = "html" in ctype or stripped[:15].lower().startswith(("<!doctype", "<html", "<head", "<body"))
    if "json" in ctype or stripped.startswith(("{", "[")):
        out["message"] = _json_message(stripped)
        if out["message"] is not None:
            return out
    if is_html or _TITLE.search(text):
        if m := _TITLE.search(text):
            out["title"] = _clean(m.group(1)) or None
        if m := _H1.search(text):
            out["heading"] = _clean(m.group(1)) or None
        lines = _text_lines(text)
        skip = {out["title"], out["heading"]}
        rest = [ln for ln in lines if ln not in skip and not re.fullmatch(r"(nginx|openresty)(/[\d.]+)?", ln)]
        out["first_line"] = rest[0] if rest else None
        return out
    for line in text.splitlines():
        if line.strip():
            out["first_line"] = _clean(line)
            break
    return out


# -- who answered -------------------------------------------------------------------------------------


def _evidence_text(s: sig.Signature, header_value: str | None, match: re.Match[str] | None) -> str:
    if s.header is not None:
        return f"{s.header}: {header_value}" if header_value else s.header
    snippet = match.group(0) if match is not None else ""
    snippet = _SPACE.sub(" ", snippet).strip()
    if len(snippet) > 80:
        snippet = snippet[:80] + "…"
    return f"body: {snippet}"


def _version(match: re.Match[str] | None) -> str | None:
    if match is None or not match.re.groups:
        return None
    return match.group(1) or None


def _matches(
    status: int, headers: tuple[tuple[str, str], ...], body: str
) -> list[tuple[sig.Signature, str, str | None]]:
    """Every signature that fits the reply, in table order: (signature, evidence, version)."""
    found = []
    lowered = [(k.lower(), v) for k, v in headers]
    for s in sig.SIGNATURES:
        if s.status is not None and s.status != status:
            continue
        if s.header is None:
            m = s.regex().search(body)
            if m is not None:
                found.append((s, _evidence_text(s, None, m), _version(m)))
            continue
        for name, value in lowered:
            if name != s.header:
                continue
            m = s.regex().search(value)
            if m is not None:
                found.append((s, _evidence_text(s, value, m), _version(m)))
                break
    return found


def _sender(sender_id: str, evidence: list[str], version: str | None, likely: bool) -> Sender:
    info = sig.info(sender_id)
    return Sender(info.id, info.name, info.kind, tuple(evidence), version, likely)


def identify(
    status: int, headers: tuple[tuple[str, str], ...], body: str, content_type: str | None
) -> tuple[Sender, tuple[Sender, ...]]:
    """(who wrote the reply, the senders it went through).

    The origin is the first origin signature of the table that fits (a body signature before a header's,
    since proxies rewrite ``Server``); else a path sender whose own status this is (Cloudflare's 52x);
    else what the reply is (an event stream, a web page) or an unknown sender that says what its
    ``Server`` header says. Path senders, and origin signatures that lost, are the way it went.
    """
    found = _matches(status, headers, body)
    evidence: dict[str, list[str]] = {}
    versions: dict[str, str | None] = {}
    for s, ev, version in found:
        evidence.setdefault(s.sender, [])
        if ev not in evidence[s.sender]:
            evidence[s.sender].append(ev)
        if version and not versions.get(s.sender):
            versions[s.sender] = version
    origin: tuple[str, bool] | None = None
    for s, _ev, _version in found:
        if s.role is Role.ORIGIN:
            origin = (s.sender, s.likely)
            break
    if origin is None:
        for s, _ev, _version in found:
            if status in sig.info(s.sender).own_statuses:
                origin = (s.sender, False)
                break
    through_ids: list[str] = []
    for s, _ev, _version in found:
        if origin is not None and s.sender == origin[0]:
            continue
        info = sig.info(s.sender)
        on_way = s.role is Role.PATH or info.kind in (Kind.PROXY, Kind.CDN, Kind.LOAD_BALANCER, Kind.PLATFORM)
        if on_way and s.sender not in through_ids:
            through_ids.append(s.sender)
    through = tuple(_sender(i, evidence[i], versions.get(i), False) for i in through_ids)
    via = next((v for k, v in headers if k.lower() == "via" and v.strip()), None)
    if via is not None and not any(s.header == "via" for s, _e, _v in found):
        info = sig.info("via")
        through += (Sender(info.id, info.name, info.kind, (f"via: {via}",), None, False, via),)
    if origin is not None:
        sender_id, likely = origin
        return _sender(sender_id, evidence[sender_id], versions.get(sender_id), likely), through
    path_server = any(s.header == "server" and s.role is Role.PATH for s, _e, _v in found)
    return _unnamed(status, headers, body, content_type, path_server), through


def _unnamed(
    status: int,
    headers: tuple[tuple[str, str], ...],
    body: str,
    content_type: str | None,
    path_server: bool = False,
) -> Sender:
    """What a reply no signature names is, or what it says it is (a Server header that names a CDN or
    platform on the way, which rewrites it on every reply, says nothing of who wrote this one)."""
    ctype = (content_type or "").lower()
    server = (
        None if path_server else next((v for k, v in headers if k.lower() == "server" and v.strip()), None)
    )
    powered = next((v for k, v in headers if k.lower() == "x-powered-by" and v.strip()), None)
    if ctype.startswith("text/event-stream"):
        return _sender("event-stream", [f"content-type: {content_type}"], None, False)
    if 200 <= status < 300 and (
        "html" in ctype or body.lstrip()[:15].lower().startswith(("<!doctype", "<html"))
    ):
        spa = _SPA.search(body)
        if spa is not None and server is None:
            return _sender("spa", [f"body: {spa.group(0)}"], None, False)
        if server is None:
            return _sender("web-site", [f"content-type: {content_type or 'text/html'}"], None, False)
    info = sig.info("unknown")
    says = server or powered
    evidence = (f"server: {server}",) if server else ((f"x-powered-by: {powered}",) if powered else ())
    return Sender(info.id, info.name, info.kind, evidence, None, False, says)


def parse_versions(value: str | None) -> tuple[str, ...]:
    """``13, 8`` -> ("13", "8")."""
    if not value:
        return ()
    return tuple(v.strip() for v in value.split(",") if v.strip())


def read_answer(status: int, reason: str, headers: Iterable[tuple[str, str]], body: bytes = b"") -> Answer:
    """Read one non-101 reply: who sent it, what it said (see the module docstring)."""
    pairs = tuple((str(k), str(v)) for k, v in headers)
    content_type = next((v for k, v in pairs if k.lower() == "content-type"), None)
    text = body[:BODY_SCAN].decode("utf-8", "replace")
    parts = read_body(body, content_type)
    sender, through = identify(status, pairs, text, content_type)
    versions = parse_versions(next((v for k, v in pairs if k.lower() == "sec-websocket-version"), None))
    return Answer(
        status=status,
        reason=reason,
        headers=pairs,
        sender=sender,
        through=through,
        content_type=content_type,
        title=parts["title"],
        heading=parts["heading"],
        message=parts["message"],
        first_line=parts["first_line"],
        versions=versions,
        body_text=text,
    )
