"""Validated run settings: what the user asked for, checked once, before any network traffic."""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field

from lokin_doctor.sysinfo import DEFAULT_PROCESS_PATTERNS
from lokin_doctor.target import DEFAULT_URL, Target, TargetError, page_websocket_url, parse_target


class SettingsError(ValueError):
    """A bad option value; the message is one line saying what is wrong and what is valid."""


@dataclass(frozen=True)
class Settings:
    target: Target
    timeout: float = 5.0
    origin: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    subprotocols: tuple[str, ...] = ()
    process_patterns: tuple[str, ...] = DEFAULT_PROCESS_PATTERNS
    send: str | None = None
    expect: str | None = None
    dns_server: tuple[str, int] | None = None
    ca_file: str | None = None
    insecure: bool = False
    backend: Target | None = None
    hold: float | None = None
    page_url: str | None = None
    variants: bool = True
    #: True when the target came from the user rather than the default (affects variant hints only).
    explicit_target: bool = field(default=True)
    #: --browser: load --page-url in Chromium first (docs/browser.md); browser_path is the resolved binary.
    browser: bool = False
    browser_path: str | None = None
    browser_args: tuple[str, ...] = ()
    #: A WebSocket URL was typed (not derived from --page-url): --browser compares it with the page's.
    target_given: bool = False


def _parse_dns_server(text: str) -> tuple[str, int]:
    value = text.strip()
    host, port = value, 53
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        if rest.startswith(":"):
            port_text = rest[1:]
            if not port_text.isdigit():
                raise SettingsError(
                    f"invalid --dns-server {text!r}; use HOST or HOST:PORT, e.g. 127.0.0.1:5353"
                )
            port = int(port_text)
    elif value.count(":") == 1:
        host, _, port_text = value.partition(":")
        if not port_text.isdigit():
            raise SettingsError(f"invalid --dns-server {text!r}; use HOST or HOST:PORT, e.g. 127.0.0.1:5353")
        port = int(port_text)
    if not host or not 1 <= port <= 65535:
        raise SettingsError(
            f"invalid --dns-server {text!r}; use HOST or HOST:PORT with a port from 1 to 65535"
        )
    return host, port


def build_settings(
    url: str | None,
    *,
    timeout: float = 5.0,
    origin: str | None = None,
    headers: list[str] | tuple[str, ...] = (),
    subprotocols: list[str] | tuple[str, ...] = (),
    process_patterns: list[str] | tuple[str, ...] = (),
    send: str | None = None,
    expect: str | None = None,
    dns_server: str | None = None,
    ca_file: str | None = None,
    insecure: bool = False,
    backend: str | None = None,
    hold: float | None = None,
    page_url: str | None = None,
    variants: bool = True,
    browser: bool = False,
    browser_path: str | None = None,
    browser_args: list[str] | tuple[str, ...] = (),
) -> Settings:
    """Validate every option; raise :class:`SettingsError` with a one-line message on bad input."""
    if not math.isfinite(timeout) or not 0 < timeout <= 3600:
        raise SettingsError(f"--timeout must be a number of seconds above 0 and at most 3600, not {timeout}")
    try:
        if url:
            target = parse_target(url)
        elif page_url:
            target = page_websocket_url(page_url)
        else:
            target = parse_target(DEFAULT_URL)
        backend_target = parse_target(backend) if backend else None
        if page_url:
            page_websocket_url(page_url)  # validates the page URL itself
    except TargetError as exc:
        raise SettingsError(str(exc)) from None
    parsed_headers = []
    for h in headers:
        name, sep, value = h.partition(":")
        if not sep or not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name.strip()):
            raise SettingsError(
                f"invalid --header {h!r}; write it as 'Name: value', e.g. 'Authorization: Bearer x'"
            )
        parsed_headers.append((name.strip(), value.strip()))
    patterns = tuple(process_patterns) or DEFAULT_PROCESS_PATTERNS
    for p in (*patterns, *([expect] if expect is not None else [])):
        try:
            re.compile(p)
        except re.error as exc:
            raise SettingsError(f"invalid regular expression {p!r}: {exc}") from None
    if expect is not None and send is None:
        raise SettingsError("--expect needs --send: say what to send, then what the reply must match")
    if ca_file is not None and not os.path.isfile(ca_file):
        raise SettingsError(
            f"--ca-file {ca_file!r} does not exist or is not a file; give a PEM file of CA certificates"
        )
    if hold is not None and (not math.isfinite(hold) or not 0 < hold <= 86400):
        raise SettingsError(f"--hold must be a number of seconds above 0 and at most 86400, not {hold}")
    if origin is not None and not re.fullmatch(r"(null|[a-zA-Z][a-zA-Z0-9+.-]*://[^\s/]+)", origin):
        raise SettingsError(
            f"invalid --origin {origin!r}; an origin looks like https://example.com (no path)"
        )
    browser_exe = _browser_settings(browser, browser_path, tuple(browser_args), page_url, ca_file)
    return Settings(
        target=target,
        timeout=timeout,
        origin=origin,
        headers=tuple(parsed_headers),
        subprotocols=tuple(subprotocols),
        process_patterns=patterns,
        send=send,
        expect=expect,
        dns_server=_parse_dns_server(dns_server) if dns_server else None,
        ca_file=ca_file,
        insecure=insecure,
        backend=backend_target,
        hold=hold,
        page_url=page_url,
        variants=variants,
        explicit_target=bool(url or page_url),
        browser=browser,
        browser_path=browser_exe,
        browser_args=tuple(browser_args),
        target_given=bool(url),
    )


def _browser_settings(
    browser: bool, path: str | None, args: tuple[str, ...], page_url: str | None, ca_file: str | None
) -> str | None:
    """Validate the --browser options; return the Chromium binary to launch (found before any traffic)."""
    if not browser:
        if path is not None:
            raise SettingsError("--browser-path needs --browser (load the page in Chromium)")
        if args:
            raise SettingsError("--browser-arg needs --browser (load the page in Chromium)")
        return None
    if not page_url:
        raise SettingsError(
            "--browser needs --page-url: the page to open, e.g. --page-url https://example.com/"
        )
    for arg in args:
        if not arg.startswith("--") or len(arg) < 3:
            raise SettingsError(
                f"invalid --browser-arg {arg!r}; give one Chromium switch, e.g. "
                "'--host-resolver-rules=MAP example.com 127.0.0.1'"
            )
    from lokin_doctor.browser import BrowserMissingError, certutil_path, find_browser

    try:
        found = find_browser(path)
    except BrowserMissingError as exc:
        raise SettingsError(str(exc)) from None
    if ca_file is not None and certutil_path() is None:
        raise SettingsError(
            "--ca-file with --browser needs certutil to trust the CA in Chromium; "
            "install it (sudo apt-get install libnss3-tools)"
        )
    return found
