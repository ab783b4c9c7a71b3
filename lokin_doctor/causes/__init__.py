"""The cause registry: every cause code the doctor can report, declared once.

A :class:`Cause` is a diagnosis with a stable kebab-case code (``tcp.refused``; CI scripts match on it), its
one-line meaning and its usual fix (both English msgids, translated where they are shown), the statuses it is
reported with, and its relations to other causes as typed :class:`Tag` values. Checks and tools build their
results from these objects (``TCP_REFUSED.fail(...)``), so a misspelt code is a NameError at import and a type
error under mypy, never a silently new code.

The registry is split by layer, as the chain is: one module per layer under this package. Importing this
package loads them all (a few hundred small frozen objects, well under a millisecond): ``explain``, the docs
generator and the agreement test need the whole table; a check needs only its own names.

Model: pip's ``exceptions`` (a diagnosis with a reference, a message and a hint, asserted when it is built).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lokin_doctor.model import CheckResult

_CODE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*\.[a-z0-9]+(-[a-z0-9]+)*$|^internal-error$")


class Tag(enum.Enum):
    """Relations between causes, read by the checks that weigh one finding against another."""

    #: The URL reaches the right server, which answers something specific: another URL would not fix it
    #: (variants does not look for one; the browser does not call it a wrong URL).
    NOT_A_URL_PROBLEM = "not-a-url-problem"
    #: What answered on the port is not the WebSocket server: the port's owner explains it (the handshake's
    #: fix names that program).
    OWNER_EXPLAINS = "owner-explains"
    #: A proxy in front did not pass the upgrade on (the config checks confirm their finding with it).
    UPGRADE_LOST = "upgrade-lost"
    #: The proxy answered for a backend that is down or unreachable.
    BACKEND_DOWN = "backend-down"
    #: A connection that opened was cut after some time (idle timeouts of proxies and platforms).
    IDLE_CUT = "idle-cut"
    #: A certificate problem (the browser refuses the page's socket for it too).
    CERTIFICATE = "certificate"
    #: Nothing accepts connections on the port.
    NOTHING_LISTENS = "nothing-listens"
    #: Packets are dropped on the way (a firewall, a host that is down).
    DROPPED = "dropped"
    #: A forward proxy (HTTPS_PROXY, --proxy) refused or broke the way out.
    FORWARD_PROXY = "forward-proxy"
    #: An advisory: true and worth knowing, never a reason to change the status.
    NOTE = "note"


class Layer(enum.Enum):
    """Where in the chain a cause sits; the docs group the table by it."""

    DNS = "dns"
    TCP = "tcp"
    HOST = "host"
    TLS = "tls"
    HTTP = "http"
    SESSION = "session"
    PRODUCTION = "production"
    FORWARD_PROXY = "forward-proxy"
    SOCKETIO = "socketio"
    PROXY_CONFIG = "proxy-config"
    PLATFORM = "platform"
    BROWSER = "browser"
    TOOLS = "tools"
    SENTINEL = "sentinel"
    INTERNAL = "internal"


class Cause(str):
    """One cause code of the registry: a ``str`` whose value is its code, so it goes wherever a code goes (a
    report's JSON, a set of codes, a dict key) and compares equal to it; the diagnosis rides along.

    Attributes:
        code: the stable code, ``layer.cause-name`` in kebab-case.
        layer: where in the chain it sits.
        meaning: one line: what it means (an English msgid of the lokin_doctor_causes catalog).
        fix: the usual fix, imperative; a result's own hint is more specific and wins.
        statuses: the statuses it is reported with (``fail``, ``warn``, or both).
        tags: relations other checks read.
        doc: the docs page that tells more (``checks.md``, ``local-checks.md``...).

    A function that takes a ``Cause`` refuses a bare string (``model.fail`` raises TypeError; mypy too): a
    misspelt code cannot become a new one. Immutable, like the string it is.
    """

    code: str
    layer: Layer
    meaning: str
    fix: str
    statuses: tuple[str, ...]
    tags: frozenset[Tag]
    doc: str

    def __new__(
        cls,
        code: str,
        layer: Layer,
        meaning: str,
        fix: str,
        statuses: tuple[str, ...] = ("fail",),
        tags: frozenset[Tag] = frozenset(),
        doc: str = "checks.md",
    ) -> Cause:
        if not _CODE.match(code):
            raise ValueError(f"cause code {code!r} is not layer.kebab-case")
        if not meaning or not fix:
            raise ValueError(f"cause {code}: a meaning and a fix are required")
        if not set(statuses) <= {"fail", "warn"} or not statuses:
            raise ValueError(f"cause {code}: statuses must be fail and/or warn")
        if code in _REGISTRY:
            raise ValueError(f"cause {code} declared twice")
        self = super().__new__(cls, code)
        values = {
            "code": code,
            "layer": layer,
            "meaning": meaning,
            "fix": fix,
            "statuses": tuple(statuses),
            "tags": frozenset(tags),
            "doc": doc,
        }
        for name, value in values.items():
            object.__setattr__(self, name, value)
        _REGISTRY[code] = self
        return self

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cause {self.code} is immutable")

    def __repr__(self) -> str:
        return f"Cause({self.code!r})"

    def __reduce__(self) -> tuple[Any, ...]:  # a copy or a pickle is the registry's own object
        return (require, (self.code,))

    def has(self, tag: Tag) -> bool:
        return tag in self.tags

    def fail(self, check_id: str, summary: str, hint: str | None = None, **evidence: Any) -> CheckResult:
        """A ``fail`` result of this cause; ``hint`` defaults to the cause's own fix, translated."""
        from lokin_doctor.model import fail

        return fail(check_id, self, summary, hint if hint is not None else self.fix_text(), **evidence)

    def warn(self, check_id: str, summary: str, hint: str | None = None, **evidence: Any) -> CheckResult:
        """A ``warn`` result of this cause; ``hint`` defaults to the cause's own fix, translated."""
        from lokin_doctor.model import warn

        return warn(check_id, self, summary, hint if hint is not None else self.fix_text(), **evidence)

    def meaning_text(self) -> str:
        from lokin_doctor.i18n import _

        return _(self.meaning)

    def fix_text(self) -> str:
        from lokin_doctor.i18n import _

        return _(self.fix)


_REGISTRY: dict[str, Cause] = {}


def cause(
    code: str,
    layer: Layer,
    meaning: str,
    fix: str,
    *,
    warn: bool = False,
    fail: bool = True,
    tags: tuple[Tag, ...] = (),
    doc: str = "checks.md",
) -> Cause:
    """Declare a cause (used by the layer modules; each call registers it)."""
    statuses = tuple(s for s, on in (("fail", fail), ("warn", warn)) if on)
    return Cause(code, layer, meaning, fix, statuses, frozenset(tags), doc)


def get(code: str) -> Cause | None:
    """The cause of a code, or None when the registry has no such code."""
    _load_all()
    return _REGISTRY.get(code)


def require(code: str) -> Cause:
    """The cause of a code built at run time (``dns.`` + a resolver error); KeyError names an undeclared one."""
    found = get(code)
    if found is None:
        raise KeyError(f"cause code {code!r} is not declared in lokin_doctor/causes")
    return found


def has(code: str | None, tag: Tag) -> bool:
    """Whether the cause of ``code`` carries ``tag`` (False for None and unknown codes)."""
    if code is None:
        return False
    found = get(code)
    return found is not None and tag in found.tags


def tagged(tag: Tag) -> frozenset[str]:
    """Every code that carries ``tag``."""
    _load_all()
    return frozenset(c.code for c in _REGISTRY.values() if tag in c.tags)


#: Layers whose causes are read in a configuration file, not seen on the wire.
CONFIG_LAYERS = frozenset({Layer.PROXY_CONFIG})


def observed(codes: Iterable[str | None], tag: Tag) -> set[str]:
    """The codes among ``codes`` that carry ``tag`` and were seen on the wire, not read in a proxy's
    configuration: what confirms (or, when empty, fails to confirm) a configuration finding with that tag."""
    found = set()
    for code in codes:
        c = get(code) if code else None
        if c is not None and tag in c.tags and c.layer not in CONFIG_LAYERS:
            found.add(c.code)
    return found


def all_causes() -> Iterator[Cause]:
    """Every cause, sorted by code."""
    _load_all()
    return iter(sorted(_REGISTRY.values(), key=lambda c: c.code))


#: The layer modules, in chain order.
MODULES = (
    "internal",
    "dns",
    "tcp",
    "host",
    "tls",
    "http",
    "session",
    "production",
    "forward",
    "socketio",
    "proxyconf",
    "haproxy",
    "apache",
    "caddy",
    "platform",
    "browser",
    "tools",
    "sentinel",
)

_loaded = False


def _load_all() -> None:
    global _loaded
    if _loaded:
        return
    import importlib

    for name in MODULES:
        try:
            importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:  # a layer not written yet
            if exc.name != f"{__name__}.{name}":
                raise
    _loaded = True
