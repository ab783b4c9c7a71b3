"""``--redact``: host names, addresses, tokens and cookies replaced by placeholders, the same everywhere.

A report pasted into a public issue should not give away the company's host names, its addresses or a
session token. Every string of the reports (target, summaries, hints, evidence keys and values, root
cause) goes through one :class:`Redactor`, so a host is ``HOST-1`` in the table, the evidence and the
root cause alike, and a second host is ``HOST-2``.

What is replaced:

* host names: the target's, and every host found in a URL, a ``Host:``/``Origin:`` header or an evidence
  field about names (``host``, ``names``, ``cname``, ``san``...) -> ``HOST-n``;
* IP addresses (IPv4, IPv6) -> ``IP-n``;
* the value of ``Authorization``, ``Cookie``, ``Set-Cookie`` (header lines or evidence keys), ``Bearer``
  tokens and URL query values (``?token=...``) -> ``TOKEN-n`` / ``COOKIE-n``.

Kept, because they are the same on every machine and carry the diagnosis: ``localhost``, loopback
addresses (``127.0.0.0/8``, ``::1``) and the wildcard addresses ``0.0.0.0`` and ``::``; ports and paths.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from lokin_doctor.model import CheckResult, Report, RootCause

_URL_HOST = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://(?:[^@/\s]*@)?(\[[0-9a-fA-F:.]+\]|[^/\s:?#'\"\]\[,;)]+)")
_HEADER_HOST = re.compile(r"\b(?:Host|Origin)\s*[:=]\s*(?:[a-z][a-z0-9+.-]*://)?([A-Za-z0-9.-]+)", re.I)
_HOSTNAME = re.compile(
    r"(?=.{1,253}$)(\*\.)?([A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}\.?"
)
_NAME_KEYS = re.compile(r"host|name|cname|san|sni|server_name|origin|location|domain", re.I)
_COOKIE_HEADER = re.compile(
    r"\b(Cookie|Set-Cookie)(\s*[:=]\s*)([^\s;,]+(?:;\s*[^\s;,=]+(?:=[^\s;,]*)?)*)", re.I
)
_AUTH_HEADER = re.compile(
    r"\b(Authorization|Proxy-Authorization|X-Api-Key)(\s*[:=]\s*)((?:[A-Za-z]+\s+)?[^\s,;]+)", re.I
)
_BEARER = re.compile(r"\b(Bearer|Basic|Token)\s+([A-Za-z0-9._~+/=-]{4,})", re.I)
_QUERY = re.compile(r"([?&][A-Za-z0-9_.-]+=)([^&\s#'\"]+)")
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
_IPV6 = re.compile(r"(?<![0-9A-Za-z:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?:%[\w]+)?(?![0-9A-Za-z:])")
_SECRET_KEYS = re.compile(
    r"^(authorization|proxy-authorization|cookie|set-cookie|token|password|secret)$", re.I
)
_KEEP_HOSTS = {"localhost"}
#: File names that look like host names (``server.js``): never treated as hosts.
_NOT_TLDS = {
    "js",
    "py",
    "conf",
    "json",
    "html",
    "txt",
    "log",
    "pem",
    "crt",
    "key",
    "sock",
    "service",
    "mo",
    "po",
}


def _keep_ip(text: str) -> bool:
    try:
        ip = ipaddress.ip_address(text.split("%")[0])
    except ValueError:
        return True  # not an address after all
    return ip.is_loopback or ip.is_unspecified


class Redactor:
    def __init__(self) -> None:
        self.hosts: dict[str, str] = {}
        self.ips: dict[str, str] = {}
        self.secrets: dict[str, str] = {}

    # -- collection -------------------------------------------------------------------------------------
    def add_host(self, host: str) -> None:
        host = host.strip().strip("[]").rstrip(".").lower()
        if not host or host in _KEEP_HOSTS or host.endswith(".localhost"):
            return
        try:
            ipaddress.ip_address(host.split("%")[0])
            return  # addresses are handled by their own pattern
        except ValueError:
            pass
        if not _HOSTNAME.fullmatch(host) or host.rpartition(".")[2] in _NOT_TLDS:
            return
        base = host[2:] if host.startswith("*.") else host
        if base not in self.hosts:
            self.hosts[base] = f"HOST-{len(self.hosts) + 1}"

    def collect(self, value: Any, key: str = "") -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                self.collect(str(k))
                self.collect(v, str(k))
        elif isinstance(value, list | tuple | set):
            for v in value:
                self.collect(v, key)
        elif isinstance(value, str):
            for m in _URL_HOST.finditer(value):
                self.add_host(m.group(1))
            for m in _HEADER_HOST.finditer(value):
                self.add_host(m.group(1))
            if key and _NAME_KEYS.search(key):
                for word in re.split(r"[\s,;]+", value):
                    self.add_host(word)

    # -- replacement ------------------------------------------------------------------------------------
    def _secret(self, value: str, kind: str) -> str:
        value = value.strip()
        if value not in self.secrets:
            count = sum(1 for p in self.secrets.values() if p.startswith(kind))
            self.secrets[value] = f"{kind}-{count + 1}"
        return self.secrets[value]

    def _ip(self, match: re.Match[str]) -> str:
        text = match.group(0)
        if _IPV6.fullmatch(text) and text.count(":") < 2:
            return text
        try:
            ipaddress.ip_address(text.split("%")[0])
        except ValueError:
            return text  # a time (12:30:45), a MAC-like token...
        if _keep_ip(text):
            return text
        key = text.split("%")[0].lower()
        if key not in self.ips:
            self.ips[key] = f"IP-{len(self.ips) + 1}"
        return self.ips[key]

    def text(self, value: str) -> str:
        def header(m: re.Match[str]) -> str:
            kind = "COOKIE" if "cookie" in m.group(1).lower() else "TOKEN"
            return f"{m.group(1)}{m.group(2)}{self._secret(m.group(3), kind)}"

        value = _COOKIE_HEADER.sub(header, value)
        value = _AUTH_HEADER.sub(header, value)
        value = _BEARER.sub(lambda m: f"{m.group(1)} {self._secret(m.group(2), 'TOKEN')}", value)
        value = _QUERY.sub(lambda m: m.group(1) + self._secret(m.group(2), "TOKEN"), value)
        for host in sorted(self.hosts, key=len, reverse=True):
            value = re.sub(
                rf"(?<![A-Za-z0-9-]){re.escape(host)}(?![A-Za-z0-9-])", self.hosts[host], value, flags=re.I
            )
        value = _IPV4.sub(self._ip, value)
        value = _IPV6.sub(self._ip, value)
        return value

    def value(self, value: Any, key: str = "") -> Any:
        if isinstance(value, dict):
            return {self.text(str(k)): self.value(v, str(k)) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.value(v, key) for v in value)
        if isinstance(value, str):
            if key and _SECRET_KEYS.match(key):
                return self._secret(value, "COOKIE" if "cookie" in key.lower() else "TOKEN")
            return self.text(value)
        return value

    def result(self, r: CheckResult) -> CheckResult:
        return replace(
            r,
            summary=self.text(r.summary),
            hint=self.text(r.hint) if r.hint else r.hint,
            evidence=self.value(r.evidence),
        )

    def report(self, report: Report) -> Report:
        rc = report.root_cause
        return replace(
            report,
            target=self.text(report.target),
            results=tuple(self.result(r) for r in report.results),
            root_cause=RootCause(rc.check, rc.code, self.text(rc.summary), self.text(rc.hint))
            if rc
            else None,
        )


def redact_reports(reports: Sequence[Report]) -> list[Report]:
    """The reports with host names, addresses, tokens and cookies replaced, consistently across all."""
    redactor = Redactor()
    for report in reports:
        redactor.collect(report.target)
        for r in report.results:
            redactor.collect(r.summary)
            redactor.collect(r.hint or "")
            redactor.collect(r.evidence)
    return [redactor.report(report) for report in reports]
