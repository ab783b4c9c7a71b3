"""``firewall``: does a rule of this machine drop or reject TCP to the target port?

Read as root with ``nft -j list ruleset`` (nftables, which also holds iptables-nft's rules), else
``iptables-save``/``ip6tables-save`` (legacy iptables); skipped with the reason otherwise. The rules of
every base chain on the ``input`` hook are walked in order for a new connection (a SYN, ``ct state
new``) to the port, twice: from another machine, and over loopback (this doctor's own view). A rule
whose match cannot be decided here (``ip saddr``, sets by name...) is reported as conditional.

* ``firewall.drops-port``: a ``drop`` rule (or a chain's drop policy) takes the connection: clients see
  ``tcp.timeout`` (the SYN is never answered);
* ``firewall.rejects-port``: a ``reject`` rule: clients see ``tcp.refused`` (reset) or unreachable.

Failing when the loopback view is blocked too, or when the target is reached from elsewhere; a warning
when only other machines are blocked and the target is loopback (right behind a proxy on this machine).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Any

from lokin_doctor.causes.host import FIREWALL_DROPS_PORT, FIREWALL_REJECTS_PORT
from lokin_doctor.causes.tcp import TCP_REFUSED, TCP_TIMEOUT
from lokin_doctor.context import Context
from lokin_doctor.i18n import _
from lokin_doctor.model import CheckResult, fail, ok, skip, warn


@dataclass(frozen=True)
class Verdict:
    action: str  # "accept", "drop", "reject"
    family: str
    table: str
    chain: str
    handle: int | None  # None: the chain's policy
    text: str
    conditional: tuple[str, ...] = field(default=())  # rules that may drop it, undecided here
    tool: str = "nft"  # what reads and changes it: "nft", "iptables", "ip6tables", "iptables-legacy"...

    @property
    def where(self) -> str:
        rule = f"rule handle {self.handle}" if self.handle is not None else f"policy {self.action}"
        return f"table {self.family} {self.table}, chain {self.chain}, {rule}"


# --------------------------------------------------------------------------- nftables (JSON)


def _port_in(right: Any, port: int) -> bool | None:
    if isinstance(right, int):
        return right == port
    if isinstance(right, str):
        return int(right) == port if right.isdigit() else None
    if isinstance(right, dict):
        if "range" in right:
            lo, hi = right["range"]
            return bool(lo <= port <= hi) if isinstance(lo, int) and isinstance(hi, int) else None
        if "set" in right:
            results = [_port_in(x, port) for x in right["set"]]
            if any(r is True for r in results):
                return True
            return None if any(r is None for r in results) else False
    return None


def _values(right: Any) -> list[str] | None:
    if isinstance(right, str):
        return [right]
    if isinstance(right, list):
        return [str(x) for x in right]
    if isinstance(right, dict) and "set" in right:
        return [str(x) for x in right["set"]]
    return None


def _match(m: dict[str, Any], port: int, loopback: bool) -> bool | None:
    """Whether one nft ``match`` holds for a new TCP connection to ``port`` (None: cannot tell)."""
    op = m.get("op", "==")
    left, right = m.get("left"), m.get("right")
    result: bool | None = None
    if isinstance(left, dict) and "payload" in left:
        p = left["payload"]
        if p.get("protocol") == "tcp" and p.get("field") == "dport":
            result = _port_in(right, port)
        elif p.get("protocol") in ("udp", "icmp", "icmpv6", "sctp"):
            result = False
        elif p.get("protocol") in ("ip", "ip6") and p.get("field") in ("protocol", "nexthdr"):
            vals = _values(right)
            result = None if vals is None else "tcp" in vals or "6" in vals
        elif p.get("protocol") in ("ip", "ip6") and p.get("field") == "saddr" and loopback:
            vals = _values(right) or []
            result = True if any(v.startswith("127.") or v == "::1" for v in vals) else None
    elif isinstance(left, dict) and "meta" in left:
        key = left["meta"].get("key")
        vals = _values(right)
        if key in ("iif", "iifname") and vals is not None:
            result = "lo" in vals if loopback else (False if vals == ["lo"] else None)
        elif key in ("l4proto", "protocol") and vals is not None:
            result = "tcp" in vals or "6" in vals
        elif key == "nfproto" and vals is not None:
            result = True  # both families are walked alike
    elif isinstance(left, dict) and "ct" in left and left["ct"].get("key") == "state":
        vals = _values(right)
        if isinstance(right, dict) and "set" not in right:
            vals = None
        result = None if vals is None else "new" in vals
        if op == "in" and result is not None:
            return result
    if result is None:
        return None
    return not result if op == "!=" else result


def _expr_text(expr: list[dict[str, Any]]) -> str:
    parts: list[str] = []
    for e in expr:
        if "match" in e:
            m = e["match"]
            left, right = m.get("left"), m.get("right")
            if isinstance(left, dict) and "payload" in left:
                ltxt = f"{left['payload'].get('protocol')} {left['payload'].get('field')}"
            elif isinstance(left, dict) and "meta" in left:
                ltxt = str(left["meta"].get("key"))
            elif isinstance(left, dict) and "ct" in left:
                ltxt = f"ct {left['ct'].get('key')}"
            else:
                ltxt = json.dumps(left)
            op = m.get("op", "==")
            parts.append(f"{ltxt} {'' if op in ('==', 'in') else op + ' '}{_right_text(right)}")
        elif "reject" in e:
            r = e["reject"]
            parts.append("reject" + (f" with {r['type']}" if isinstance(r, dict) and r.get("type") else ""))
        else:
            for verb in ("accept", "drop", "return", "counter", "log"):
                if verb in e:
                    parts.append(verb)
            for verb in ("jump", "goto"):
                if verb in e:
                    parts.append(f"{verb} {e[verb].get('target')}")
    return " ".join(parts)


def _right_text(right: Any) -> str:
    if isinstance(right, dict) and "set" in right:
        return "{ " + ", ".join(_right_text(x) for x in right["set"]) + " }"
    if isinstance(right, dict) and "range" in right:
        return f"{right['range'][0]}-{right['range'][1]}"
    if isinstance(right, list):
        return ",".join(map(str, right))
    return str(right)


def nft_verdict(ruleset: dict[str, Any], port: int, loopback: bool) -> Verdict | None:
    """What the input hook does with a new TCP connection to ``port``; None when no chain blocks it."""
    items = ruleset.get("nftables") or []
    chains: dict[tuple[str, str, str], dict[str, Any]] = {}
    rules: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for item in items:
        if "chain" in item:
            c = item["chain"]
            chains[(c["family"], c["table"], c["name"])] = c
        elif "rule" in item:
            r = item["rule"]
            rules.setdefault((r["family"], r["table"], r["chain"]), []).append(r)
    base = sorted(
        (c for c in chains.values() if c.get("hook") == "input" and c.get("family") in ("inet", "ip", "ip6")),
        key=lambda c: (c.get("prio", 0), c["family"], c["table"]),
    )
    conditional: list[str] = []

    def walk(key: tuple[str, str, str], depth: int) -> Verdict | None | str:
        for r in rules.get(key, []):
            expr = r.get("expr") or []
            decided: bool | None = True
            verdict_stmt: tuple[str, Any] | None = None
            for e in expr:
                if "match" in e:
                    got = _match(e["match"], port, loopback)
                    if got is False:
                        decided = False
                        break
                    if got is None:
                        decided = None
                elif "xt" in e:
                    # iptables-nft's compat extensions (multiport, REJECT...): nft cannot show them;
                    # iptables-save does (read_rules reads it too).
                    xt = e["xt"] or {}
                    if xt.get("type") == "match":
                        decided = None if decided is not False else decided
                    elif xt.get("type") == "target" and str(xt.get("name", "")).upper() in ("REJECT", "DROP"):
                        verdict_stmt = (str(xt["name"]).lower(), None)
                for verb in ("accept", "drop", "reject", "jump", "goto", "return"):
                    if verb in e:
                        verdict_stmt = (verb, e[verb])
            if decided is False or verdict_stmt is None:
                continue
            verb, arg = verdict_stmt
            text = _expr_text(expr)
            where = f"table {key[0]} {key[1]}, chain {key[2]}, rule handle {r.get('handle')}: {text}"
            if decided is None:
                if verb in ("drop", "reject"):
                    conditional.append(where)
                continue
            if verb in ("jump", "goto") and depth < 16:
                target = (key[0], key[1], str(arg.get("target")))
                inner = walk(target, depth + 1)
                if inner == "return" or inner is None:
                    if verb == "goto":
                        return "return"
                    continue
                return inner
            if verb == "return":
                return "return"
            if verb in ("accept", "drop", "reject"):
                return Verdict(verb, key[0], key[1], key[2], r.get("handle"), text)
        return None

    accepted: Verdict | None = None
    for c in base:
        key = (c["family"], c["table"], c["name"])
        got = walk(key, 0)
        if isinstance(got, Verdict):
            if got.action != "accept":
                return Verdict(**{**got.__dict__, "conditional": tuple(conditional)})
            accepted = got  # an accept ends this chain only: the next base chain still sees it
            continue
        if c.get("policy") == "drop":
            return Verdict("drop", key[0], key[1], key[2], None, "policy drop", tuple(conditional))
    if accepted is not None:
        return Verdict(**{**accepted.__dict__, "conditional": tuple(conditional)})
    if conditional:
        return Verdict("accept", "", "", "", None, "", tuple(conditional))
    return None


# --------------------------------------------------------------------------- iptables-save (text)


def iptables_verdict(
    text: str, port: int, loopback: bool, family: str = "ip", tool: str = "iptables"
) -> Verdict | None:
    """The same walk over ``iptables-save`` output (table filter, chain INPUT and its jumps)."""
    table = None
    policies: dict[str, str] = {}
    rules: dict[str, list[tuple[int, list[str]]]] = {}
    n = 0
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("*"):
            table = line[1:]
        elif table == "filter" and line.startswith(":"):
            name, policy = line[1:].split()[:2]
            policies[name] = policy
        elif table == "filter" and line.startswith("-A "):
            n += 1
            words = line.split()
            rules.setdefault(words[1], []).append((n, words[2:]))
    conditional: list[str] = []

    def decide(words: list[str]) -> tuple[bool | None, str | None, str | None]:
        decided: bool | None = True
        target = None
        i = 0
        neg = False
        while i < len(words):
            w = words[i]
            nxt = words[i + 1] if i + 1 < len(words) else ""
            if w == "!":
                neg = True
                i += 1
                continue
            got: bool | None = True
            if w in ("-p", "--protocol"):
                got = nxt in ("tcp", "6", "all")
                i += 1
            elif w in ("--dport", "--destination-port"):
                lo, __, hi = nxt.partition(":")
                got = int(lo or 0) <= port <= int(hi or lo or 65535)
                i += 1
            elif w == "--dports":
                got = any(
                    int(a) <= port <= int(b or a) for a, _, b in (p.partition(":") for p in nxt.split(","))
                )
                i += 1
            elif w in ("-i", "--in-interface"):
                got = (nxt == "lo") if loopback else (False if nxt == "lo" else None)
                i += 1
            elif w == "--ctstate" or w == "--state":
                got = "NEW" in nxt.split(",")
                i += 1
            elif w in ("-j", "--jump", "-g", "--goto"):
                target = nxt
                i += 2
                break
            elif w in ("-m", "--match", "--comment"):
                i += 1
                got = True
            elif w.startswith("-"):
                got = None
                if nxt and not nxt.startswith("-"):
                    i += 1
            if got is not None and neg:
                got = not got
            neg = False
            if got is False:
                return False, target, None
            if got is None:
                decided = None
            i += 1
        return decided, target, None

    def walk(chain: str, depth: int) -> Verdict | None | str:
        for num, words in rules.get(chain, []):
            decided, target, __ = decide(words)
            if decided is False or target is None:
                continue
            text = f"-A {chain} " + " ".join(words)
            if decided is None:
                if target in ("DROP", "REJECT"):
                    conditional.append(f"table {family} filter, chain {chain}, rule {num}: {text}")
                continue
            if target in ("ACCEPT", "DROP", "REJECT"):
                return Verdict(target.lower(), family, "filter", chain, num, text, tool=tool)
            if target == "RETURN":
                return "return"
            if target in rules and depth < 16:
                inner = walk(target, depth + 1)
                if isinstance(inner, Verdict):
                    return inner
        return None

    got = walk("INPUT", 0)
    if isinstance(got, Verdict):
        return (
            Verdict(**{**got.__dict__, "conditional": tuple(conditional)}) if got.action != "accept" else None
        )
    if policies.get("INPUT") == "DROP":
        return Verdict("drop", family, "filter", "INPUT", None, "policy DROP", tuple(conditional), tool)
    if conditional:
        return Verdict("accept", "", "", "", None, "", tuple(conditional), tool)
    return None


# --------------------------------------------------------------------------- the check


def _run(argv: list[str], timeout: float) -> tuple[int, str, str]:
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=max(0.2, timeout), check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return -1, "", str(exc)
    return p.returncode, p.stdout, p.stderr


def _tool(name: str) -> str | None:
    return shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/sbin/{name}") if os.access(p, os.X_OK)), None
    )


Views = dict[str, Verdict | None]


def _blocks(v: Verdict | None) -> bool:
    return v is not None and v.action in ("drop", "reject")


def _merge(into: Views, other: Views) -> None:
    """A view is blocked if any rule set blocks it (the kernel runs them all)."""
    for view, v in other.items():
        if _blocks(v) and not _blocks(into.get(view)) or into.get(view) is None:
            into[view] = v


def _saved(
    tools: list[tuple[str, str, str]], port: int, timeout: float
) -> tuple[Views, list[str], str | None]:
    """Views from ``*-save`` outputs: (tool path, family, name) each; the names that had rules."""
    views: Views = {}
    used: list[str] = []
    for path, family, name in tools:
        rc, out, err = _run([path], timeout)
        if rc != 0:
            return views, used, (err.strip().splitlines() or [f"{name}-save exited {rc}"])[0]
        if "-A " not in out and ":INPUT DROP" not in out:
            continue
        used.append(f"{name}-save")
        part: Views = {
            view: iptables_verdict(out, port, lo, family, tool=name)
            for view, lo in (("remote", False), ("loopback", True))
        }
        _merge(views, part)
    return views, used, None


def _legacy_tables_loaded(family: str) -> bool:
    """Does the kernel hold legacy iptables tables? /proc/net/ip{,6}_tables_names lists them (empty or
    absent: none, so no ``*-legacy-save`` subprocess is worth its ~10 ms). True where /proc cannot say."""
    if not os.path.isdir("/proc/net"):
        return True
    path = "/proc/net/ip_tables_names" if family == "ip" else "/proc/net/ip6_tables_names"
    try:
        with open(path) as f:
            return bool(f.read().strip())
    except FileNotFoundError:
        return False
    except OSError:
        return True


def read_rules(port: int, timeout: float) -> tuple[str, Views, str | None]:
    """(sources read, verdict per view ("remote", "loopback"), why the rules could not be read).

    nftables first (it also holds iptables-nft's rules, ufw's and firewalld's); ``iptables-save`` too when
    nft is missing or shows iptables compat extensions it cannot decode; ``iptables-legacy-save`` when
    present (legacy tables filter packets alongside nftables).
    """
    views: Views = {}
    sources: list[str] = []
    nft = _tool("nft")
    nft_error = None
    has_xt = False
    if nft is not None:
        rc, out, err = _run([nft, "-j", "list", "ruleset"], timeout)
        if rc == 0:
            try:
                ruleset = json.loads(out or '{"nftables": []}')
            except ValueError:
                ruleset = None
                nft_error = _("nft -j list ruleset printed no JSON")
            if ruleset is not None:
                sources.append("nft -j list ruleset")
                views = {
                    "remote": nft_verdict(ruleset, port, False),
                    "loopback": nft_verdict(ruleset, port, True),
                }
                has_xt = '"xt"' in out
        else:
            nft_error = (err.strip().splitlines() or [f"nft exited {rc}"])[0]
    tools: list[tuple[str, str, str]] = []
    if nft is None or nft_error or has_xt:
        for name, family in (("iptables", "ip"), ("ip6tables", "ip6")):
            path = _tool(f"{name}-save")
            if path is not None:
                tools.append((path, family, name))
    for name, family in (("iptables-legacy", "ip"), ("ip6tables-legacy", "ip6")):
        path = _tool(f"{name}-save")
        if path is not None and _legacy_tables_loaded(family):
            tools.append((path, family, name))
    saved, used, save_error = _saved(tools, port, timeout)
    _merge(views, saved)
    sources += used
    if not sources:
        if nft is None and not tools:
            return "", {}, _("neither nft nor iptables-save is installed")
        why = nft_error or save_error
        if why:
            return "", {}, why
        sources.append("nft -j list ruleset" if nft is not None else "iptables-save")
    return " + ".join(sources), views, None


def _describe(v: Verdict) -> str:
    if v.tool == "nft":
        rule = f"rule handle {v.handle} ({v.text})" if v.handle is not None else "its policy (drop)"
        return f"table {v.family} {v.table}, chain {v.chain}, {rule}"
    rule = f"rule {v.handle} ({v.text})" if v.handle is not None else "its policy (DROP)"
    return f"{v.tool} table {v.table}, chain {v.chain}, {rule}"


async def check(ctx: Context) -> CheckResult:
    if os.geteuid() != 0:
        return skip(
            "firewall",
            _("skipped: reading the firewall rules needs root (sudo lokin-doctor all ...)"),
            applicable=False,
        )
    port = ctx.target.port
    budget = min(2.0, max(0.2, ctx.remaining()))
    source, views, why = await asyncio.to_thread(read_rules, port, budget)
    if why is not None:
        return skip("firewall", _("skipped: {why}").format(why=why), source=source)
    remote, loop = views.get("remote"), views.get("loopback")
    ev: dict[str, Any] = {"source": source, "port": port}
    for name, v in (("remote", remote), ("loopback", loop)):
        if v is not None:
            ev[name] = {
                "action": v.action,
                "where": v.where,
                "rule": v.text,
                "conditional": list(v.conditional),
            }
    blocked = [v for v in (loop, remote) if v is not None and v.action in ("drop", "reject")]
    if not blocked:
        cond = [c for v in (remote, loop) if v is not None for c in v.conditional]
        note = (
            _("; rules that may, depending on the source: {cond}").format(cond="; ".join(sorted(set(cond))))
            if cond
            else ""
        )
        return ok(
            "firewall",
            _("no rule of this machine ({source}) drops or rejects TCP port {port}{note}").format(
                source=source, port=port, note=note
            ),
            **ev,
        )
    v = blocked[0]
    code = FIREWALL_REJECTS_PORT if v.action == "reject" else FIREWALL_DROPS_PORT
    seen = (
        _("clients get a reset or 'unreachable' at once (tcp.refused)")
        if v.action == "reject"
        else _("clients' SYNs go unanswered: they see tcp.timeout")
    )
    scope = (
        _("every client, loopback included")
        if loop is not None and loop in blocked
        else _("clients on other machines")
    )
    tcp = ctx.results.get("tcp")
    if tcp is not None and tcp.code in (TCP_TIMEOUT, TCP_REFUSED):
        seen += _(" (the {code} above)").format(code=tcp.code)
    summary = _("{v} {action}s new TCP connections to port {port} from {scope}: {seen}").format(
        v=_describe(v), action=v.action, port=port, scope=scope, seen=seen
    )
    if v.tool == "nft":
        delete = (
            f"nft delete rule {v.family} {v.table} {v.chain} handle {v.handle}"
            if v.handle is not None
            else None
        )
        allow = f"nft insert rule {v.family} {v.table} {v.chain} tcp dport {port} accept"
    else:
        delete = f"{v.tool} -D {v.chain} {v.handle}" if v.handle is not None else None
        allow = f"{v.tool} -I {v.chain} -p tcp --dport {port} -j ACCEPT"
    hint = _(
        "open port {port}: {allow}{value}; make it permanent in /etc/nftables.conf (or ufw allow {port}/tcp, firewall-cmd --add-port={port}/tcp --permanent)"
    ).format(
        port=port,
        allow=allow,
        value=_(" (or remove the rule: {delete})").format(delete=delete) if delete else "",
    )
    local_target = ctx.target.host in ("localhost",) or (
        ctx.target.ip is not None and ctx.target.ip.is_loopback
    )
    if (loop is None or loop not in blocked) and local_target:
        return warn(
            "firewall",
            code,
            _("{summary}; fine if port {port} sits behind a proxy on this machine").format(
                summary=summary, port=port
            ),
            _("if clients connect to port {port} directly, {hint}").format(port=port, hint=hint),
            **ev,
        )
    return fail("firewall", code, summary, hint, **ev)


def finalize(ctx: Context, result: CheckResult) -> CheckResult:
    """Name the tcp check's symptom once it is known (the firewall check does not wait for tcp)."""
    tcp = ctx.results.get("tcp")
    if result.code not in (FIREWALL_DROPS_PORT, FIREWALL_REJECTS_PORT) or tcp is None:
        return result
    note = _(" (the {code} above)").format(code=tcp.code)
    if tcp.code in (TCP_TIMEOUT, TCP_REFUSED) and note not in result.summary:
        from dataclasses import replace

        return replace(result, summary=result.summary + note)
    return result
