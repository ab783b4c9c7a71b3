"""HAProxy's configuration, read: sections, lines with their file and line, binds, ACLs and the route a
request takes (frontend -> ``use_backend``/``default_backend`` -> backend), by HAProxy's own rules.

No PyPI parser fits: ``pyhaproxy`` (last release 2019, a generated PEG parser) keeps no line numbers and
knows no quoting rules of 2.x; HAProxy's format is line-based sections, so this small parser follows the
manual's section 2.2 (quoting and escaping) and its tests check it against ``haproxy -c -f``.

* A line is words separated by blanks; ``#`` outside quotes starts a comment; a backslash escapes the next
  character outside single quotes (``\\ ``, ``\\#``, ``\\"``, ``\\xHH``); ``'...'`` is taken literally;
  ``"..."`` allows backslash escapes and ``${VAR}`` environment expansion (also done unquoted).
* A section starts with its keyword at the start of a line (``global``, ``defaults [NAME] [from NAME]``,
  ``frontend``, ``backend``, ``listen``, ``peers``, ``resolvers``...) and runs to the next one.
* A proxy inherits from the last ``defaults`` section above it (or the one its ``from NAME`` names).
* Conditional blocks (``.if``/``.elif``/``.else``/``.endif``) are evaluated for ``defined(VAR)`` only;
  other conditions keep the first branch (recorded in ``Config.warnings``).

Pure: nothing here reads the machine except :func:`load` (the files it is given).
"""

from __future__ import annotations

import glob
import ipaddress
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from lokin_doctor.proxies.base import ConfigError

SECTIONS = frozenset(
    [
        "global",
        "defaults",
        "frontend",
        "backend",
        "listen",
        "peers",
        "resolvers",
        "userlist",
        "program",
        "http-errors",
        "ring",
        "mailers",
        "cache",
        "fcgi-app",
        "crt-store",
        "log-forward",
        "traces",
        "acme",
    ]
)
PROXIES = ("frontend", "backend", "listen")

#: HAProxy's time units; a bare number is milliseconds.
UNITS = {"us": 0.000001, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


@dataclass(frozen=True)
class Line:
    """One configuration line: its words (keyword first), where it is, its text as written."""

    words: tuple[str, ...]
    file: str
    line: int
    text: str

    @property
    def keyword(self) -> str:
        return self.words[0] if self.words else ""

    @property
    def args(self) -> tuple[str, ...]:
        return self.words[1:]

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    def starts(self, *words: str) -> bool:
        return tuple(w.lower() for w in self.words[: len(words)]) == words


@dataclass(frozen=True)
class Section:
    kind: str
    name: str
    head: Line
    lines: tuple[Line, ...]
    #: ``defaults NAME from OTHER`` / ``frontend fe from NAME``: the defaults section named.
    parent: str | None = None

    @property
    def file(self) -> str:
        return self.head.file

    @property
    def line(self) -> int:
        return self.head.line

    @property
    def where(self) -> str:
        return self.head.where

    @property
    def title(self) -> str:
        return f"{self.kind} {self.name}".strip()

    def all(self, *words: str) -> list[Line]:
        return [li for li in self.lines if li.starts(*words)]

    def last(self, *words: str) -> Line | None:
        found = self.all(*words)
        return found[-1] if found else None


@dataclass(frozen=True)
class Config:
    main: str
    files: tuple[str, ...]
    sections: tuple[Section, ...]
    warnings: tuple[str, ...] = ()

    def proxies(self) -> list[Section]:
        return [s for s in self.sections if s.kind in PROXIES]

    def global_section(self) -> Section | None:
        return next((s for s in self.sections if s.kind == "global"), None)

    def backend(self, name: str) -> Section | None:
        return next((s for s in self.sections if s.kind in ("backend", "listen") and s.name == name), None)

    def defaults_for(self, section: Section) -> Section | None:
        """The defaults section a proxy inherits from: the one ``from NAME`` names, else the last above it."""
        if section.parent:
            return next((s for s in self.sections if s.kind == "defaults" and s.name == section.parent), None)
        found: Section | None = None
        for s in self.sections:
            if s is section:
                break
            if s.kind == "defaults":
                found = s
        return found

    def setting(self, section: Section, *words: str) -> Line | None:
        """The line in force for a proxy: its own last one, else its defaults' (and theirs, in turn)."""
        seen: set[int] = set()
        current: Section | None = section
        while current is not None and id(current) not in seen:
            seen.add(id(current))
            found = current.last(*words)
            if found is not None:
                return found
            current = self.defaults_for(current)
        return None

    def mode(self, section: Section) -> str:
        line = self.setting(section, "mode")
        return line.args[0].lower() if line is not None and line.args else "tcp"


# --------------------------------------------------------------------------- tokenizer


def split_words(text: str, env: Mapping[str, str] | None = None) -> list[str]:
    """The words of one line, HAProxy's quoting rules; comments dropped. Raises ValueError on an open quote."""
    env = os.environ if env is None else env
    words: list[str] = []
    cur: list[str] = []
    in_word = False
    i = 0
    n = len(text)
    quote: str | None = None

    def expand(at: int) -> tuple[str, int] | None:
        m = re.match(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:\[[^\]]*\])?\}", text[at:])
        if not m:
            return None
        name = m.group(1)
        return (env[name] if name in env else m.group(0)), at + m.end()

    while i < n:
        c = text[i]
        if quote == "'":
            if c == "'":
                quote = None
            else:
                cur.append(c)
            i += 1
            continue
        if quote == '"':
            if c == '"':
                quote = None
                i += 1
                continue
            if c == "\\" and i + 1 < n:
                cur.append(_unescape(text, i))
                i += 2 + (2 if text[i + 1] == "x" and re.match(r"[0-9a-fA-F]{2}", text[i + 2 : i + 4]) else 0)
                continue
            if c == "$":
                got = expand(i)
                if got:
                    cur.append(got[0])
                    i = got[1]
                    continue
            cur.append(c)
            i += 1
            continue
        if c in " \t\r":
            if in_word:
                words.append("".join(cur))
                cur, in_word = [], False
            i += 1
            continue
        if c == "#":
            break
        in_word = True
        if c == "\\" and i + 1 < n:
            cur.append(_unescape(text, i))
            i += 2 + (2 if text[i + 1] == "x" and re.match(r"[0-9a-fA-F]{2}", text[i + 2 : i + 4]) else 0)
            continue
        if c in "'\"":
            quote = c
            i += 1
            continue
        if c == "$":
            got = expand(i)
            if got:
                cur.append(got[0])
                i = got[1]
                continue
        cur.append(c)
        i += 1
    if quote is not None:
        raise ValueError(f"unmatched {quote} quote")
    if in_word:
        words.append("".join(cur))
    return words


def _unescape(text: str, i: int) -> str:
    nxt = text[i + 1]
    if nxt == "x" and re.match(r"[0-9a-fA-F]{2}", text[i + 2 : i + 4]):
        return chr(int(text[i + 2 : i + 4], 16))
    return {"t": "\t", "n": "\n", "r": "\r"}.get(nxt, nxt)


# --------------------------------------------------------------------------- files


def parse_text(text: str, file: str, env: Mapping[str, str] | None = None) -> tuple[list[Section], list[str]]:
    """Sections of one file, and what could not be read (kept as warnings)."""
    sections: list[Section] = []
    warnings: list[str] = []
    current: tuple[str, str, Line, list[Line], str | None] | None = None
    env = os.environ if env is None else env
    # .if / .else stack: each level is (taking this branch, a branch already taken)
    cond: list[tuple[bool, bool]] = []

    def close() -> None:
        nonlocal current
        if current is not None:
            kind, name, head, lines, parent = current
            sections.append(Section(kind, name, head, tuple(lines), parent))
        current = None

    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            words = split_words(stripped, env)
        except ValueError as exc:
            warnings.append(f"{file}:{number}: {exc}")
            continue
        if not words:
            continue
        key = words[0]
        if key.startswith("."):
            if key in (".if", ".elif"):
                value = _condition(words[1:], env)
                if value is None:
                    warnings.append(f"{file}:{number}: condition {' '.join(words[1:])!r} read as true")
                    value = True
                if key == ".if":
                    cond.append((value, value))
                elif cond:
                    _, taken = cond[-1]
                    cond[-1] = (value and not taken, taken or value)
            elif key == ".else" and cond:
                _, taken = cond[-1]
                cond[-1] = (not taken, True)
            elif key == ".endif" and cond:
                cond.pop()
            continue
        if not all(on for on, _ in cond):
            continue
        line = Line(tuple(words), file, number, stripped)
        if key in SECTIONS:  # a section keyword starts a section wherever it is indented
            close()
            name = ""
            parent = None
            rest = list(words[1:])
            if "from" in rest:
                at = rest.index("from")
                parent = rest[at + 1] if at + 1 < len(rest) else None
                rest = rest[:at]
            if rest:
                name = rest[0]
            current = (key, name, line, [], parent)
            continue
        if current is None:
            warnings.append(f"{file}:{number}: {key!r} outside any section")
            continue
        current[3].append(line)
    close()
    return sections, warnings


def _condition(words: Sequence[str], env: Mapping[str, str]) -> bool | None:
    text = " ".join(words).strip()
    m = re.fullmatch(r"(!?)\s*defined\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)", text)
    if m:
        value = m.group(2) in env
        return not value if m.group(1) else value
    if text in ("1", "0"):
        return text == "1"
    return None


def config_files(paths: Sequence[str]) -> list[str]:
    """HAProxy's ``-f`` arguments as files: a directory means its ``*.cfg`` files in lexical order."""
    out: list[str] = []
    for p in paths:
        if os.path.isdir(p):
            out.extend(sorted(glob.glob(os.path.join(glob.escape(p), "*.cfg"))))
        else:
            out.append(p)
    return out


def load(paths: str | Sequence[str], env: Mapping[str, str] | None = None) -> Config:
    """Parse every file of ``paths`` (HAProxy reads them in order, as one configuration)."""
    given = [paths] if isinstance(paths, str) else list(paths)
    files = config_files(given)
    if not files:
        raise ConfigError(f"no configuration file in {', '.join(given)}")
    sections: list[Section] = []
    warnings: list[str] = []
    for f in files:
        try:
            with open(f, encoding="utf-8", errors="replace") as fh:
                text = fh.read(4 << 20)
        except OSError as exc:
            raise ConfigError(f"cannot read {f}: {exc.strerror or exc}") from None
        found, warned = parse_text(text, os.path.abspath(f), env)
        sections.extend(found)
        warnings.extend(warned)
    return Config(
        os.path.abspath(files[0]), tuple(os.path.abspath(f) for f in files), tuple(sections), tuple(warnings)
    )


def parse_time(text: str) -> float | None:
    """HAProxy time (``30s``, ``500``, ``1m``, ``2h``; a bare number is milliseconds) in seconds."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(us|ms|s|m|h|d)?", text.strip())
    if not m:
        return None
    return float(m.group(1)) * UNITS[m.group(2) or "ms"]


def format_time(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    if seconds >= 1:
        return f"{seconds:g}s"
    return f"{seconds * 1000:g}ms"


# --------------------------------------------------------------------------- binds


@dataclass(frozen=True)
class Bind:
    address: str | None  # None: every address
    port_low: int
    port_high: int
    ssl: bool
    line: Line

    def covers(self, port: int, address: str | None) -> bool:
        if not self.port_low <= port <= self.port_high:
            return False
        if self.address is None or address is None:
            return True
        try:
            return ipaddress.ip_address(self.address) == ipaddress.ip_address(address)
        except ValueError:
            return self.address == address


def parse_binds(line: Line) -> list[Bind]:
    """One ``bind`` line: ``bind 127.0.0.1:8080,:8443 ssl crt x.pem`` (unix/abns/fd sockets skipped)."""
    if len(line.words) < 2:
        return []
    ssl = "ssl" in line.args[1:]
    out: list[Bind] = []
    for spec in line.args[0].split(","):
        spec = spec.strip()
        family = ""
        if "@" in spec:
            family, _, spec = spec.partition("@")
            if family not in ("ipv4", "ipv6", "tcp", "tcp4", "tcp6"):
                continue
        if spec.startswith("/"):
            continue
        if spec.startswith("["):
            host, _, rest = spec[1:].partition("]")
            port_text = rest[1:] if rest.startswith(":") else ""
        else:
            host, sep, port_text = spec.rpartition(":")
            if not sep:
                continue
        low, dash, high = port_text.partition("-")
        if not low.isdigit() or (dash and not high.isdigit()):
            continue
        address: str | None = host or None
        if address in ("*", "0.0.0.0", "::", "::ffff:0.0.0.0"):
            address = None
        if address == "localhost":
            address = "127.0.0.1"
        out.append(Bind(address, int(low), int(high) if dash else int(low), ssl, line))
    return out


def binds(section: Section) -> list[Bind]:
    return [b for li in section.all("bind") for b in parse_binds(li)]


@dataclass(frozen=True)
class Server:
    name: str
    host: str
    port: int | None
    line: Line
    disabled: bool = False


def parse_server(line: Line, default_port: int | None = None) -> Server | None:
    """``server NAME ADDR[:PORT] [params]`` (unix sockets and resolvers' names kept as written)."""
    if len(line.words) < 3:
        return None
    name, spec = line.words[1], line.words[2]
    if "@" in spec:
        family, _, spec = spec.partition("@")
        if family not in ("ipv4", "ipv6", "tcp", "tcp4", "tcp6"):
            return None
    if spec.startswith("/"):
        return None
    if spec.startswith("["):
        host, _, rest = spec[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif spec.count(":") > 1 and not spec.rsplit(":", 1)[1].isdigit():
        host, port_text = spec, ""
    else:
        host, sep, port_text = spec.rpartition(":")
        if not sep:
            host, port_text = spec, ""
    port = int(port_text) if port_text.isdigit() else default_port
    return Server(name, host, port, line, "disabled" in line.words[3:])


def servers(section: Section) -> list[Server]:
    return [s for li in section.all("server") if (s := parse_server(li)) is not None]
