"""Validated run settings: what the user asked for, checked once, before any network traffic."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

from lokin_doctor.i18n import _
from lokin_doctor.instruments import proxyenv
from lokin_doctor.instruments.sysinfo import DEFAULT_PROCESS_PATTERNS
from lokin_doctor.target import DEFAULT_URL, Target, TargetError, page_websocket_url, parse_target
from lokin_doctor.validate import UsageError

#: Directives that only an nginx configuration (or a snippet of one) has at its top level.
_NGINX_TOP = frozenset(
    [
        "http",
        "events",
        "stream",
        "mail",
        "server",
        "upstream",
        "location",
        "include",
        "user",
        "worker_processes",
        "pid",
        "error_log",
        "load_module",
        "daemon",
        "master_process",
        "worker_rlimit_nofile",
        "env",
        "pcre_jit",
        "thread_pool",
        "lock_file",
        "timer_resolution",
        "working_directory",
        "worker_cpu_affinity",
        "worker_priority",
        "worker_shutdown_timeout",
        "map",
        "geo",
        "split_clients",
        "limit_req_zone",
        "limit_conn_zone",
        "log_format",
        "access_log",
    ]
)


def _nginx_config_problem(path: str) -> str | None:
    """``--nginx-config`` must be a file nginx would read: crossplane parses it and it has nginx directives."""
    from lokin_doctor.proxies.nginx.conf import ConfigError, load

    example = _("give nginx's main configuration file, e.g. /etc/nginx/nginx.conf")
    try:
        config = load(path)
    except (ConfigError, OSError, UnicodeDecodeError, ValueError) as exc:
        return _(
            "--nginx-config {path!r} cannot be read as an nginx configuration ({reason}); {example}"
        ).format(path=path, reason=exc, example=example)
    main_errors = [e for e in config.errors if e.get("file") == config.main]
    if main_errors or not any(d.name in _NGINX_TOP for d in config.directives):
        said = str(main_errors[0].get("error") or "") if main_errors else ""
        reason = said or _("no nginx directive in it")
        return _("--nginx-config {path!r} is not an nginx configuration ({reason}); {example}").format(
            path=path, reason=reason, example=example
        )
    return None


def _proxy_config_problem(path: str) -> str | None:
    """``--proxy-config`` must exist and read as HAProxy, Apache httpd or Caddy configuration."""
    if not os.path.isfile(path):
        return _(
            "--proxy-config {path!r} does not exist or is not a file; give the proxy's main configuration file, e.g. /etc/haproxy/haproxy.cfg, /etc/apache2/apache2.conf or /etc/caddy/Caddyfile"
        ).format(path=path)
    from lokin_doctor.proxies.detect import recognise

    try:
        kind = recognise(path)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return _("--proxy-config {path!r} cannot be read ({reason})").format(path=path, reason=exc)
    if kind is not None:
        return None
    if _nginx_config_problem(path) is None:
        return _(
            "--proxy-config {path!r} is an nginx configuration; give it with --nginx-config instead"
        ).format(path=path)
    return _(
        "--proxy-config {path!r} reads as no HAProxy, Apache httpd or Caddy configuration (no section, directive or site block of theirs in it)"
    ).format(path=path)


class SettingsError(UsageError, ValueError):
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
    #: Seconds the session stays connected, passive, after the greeting and the ping (0: off).
    linger: float = 1.0
    #: Client certificate and key (PEM) offered in TLS handshakes (mutual TLS).
    client_cert: str | None = None
    client_key: str | None = None
    #: True when the target came from the user rather than the default (affects variant hints only).
    explicit_target: bool = field(default=True)
    #: ``--nginx-config FILE``: the nginx configuration to read instead of the running nginx's.
    nginx_config: str | None = None
    #: ``--proxy-config FILE``: the HAProxy, Apache or Caddy configuration to read instead of the running one's.
    proxy_config: str | None = None
    #: --browser: load --page-url in Chromium first (docs/browser.md); browser_path is the resolved binary.
    browser: bool = False
    browser_path: str | None = None
    browser_args: tuple[str, ...] = ()
    #: A WebSocket URL was typed (not derived from --page-url): --browser compares it with the page's.
    target_given: bool = False
    #: ``--proxy URL`` (a forward proxy for every connection) and ``--no-proxy`` (always direct).
    proxy: str | None = None
    no_proxy: bool = False
    #: The proxy variables of the environment (http_proxy, HTTPS_PROXY, no_proxy...) when the settings
    #: were built: the route is decided from them, as curl and websockets decide it.
    proxy_env: tuple[tuple[str, str], ...] = ()

    def route(self, target: Target | None = None) -> proxyenv.Route:
        """Which way a connection to ``target`` (default: the target) goes: direct or through which proxy."""
        t = target or self.target
        return proxyenv.choose(
            t.host, t.port, t.secure, dict(self.proxy_env), explicit=self.proxy, disabled=self.no_proxy
        )

    #: ``--resolve HOST:PORT:ADDR``: (host, port, addresses) entries, curl's semantics.
    resolve: tuple[tuple[str, int, tuple[str, ...]], ...] = ()

    def resolved(self, host: str, port: int) -> tuple[str, ...] | None:
        """The addresses --resolve gives for ``host:port``, or None when it gives none."""
        name = host.lower().rstrip(".")
        for h, p, addresses in self.resolve:
            if h == name and p == port:
                return addresses
        return None


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
    linger: float = 1.0,
    client_cert: str | None = None,
    client_key: str | None = None,
    nginx_config: str | None = None,
    proxy_config: str | None = None,
    browser: bool = False,
    browser_path: str | None = None,
    browser_args: list[str] | tuple[str, ...] = (),
    proxy: str | None = None,
    no_proxy: bool = False,
    resolve: list[str] | tuple[str, ...] = (),
) -> Settings:
    """Validate every option; raise :class:`SettingsError` with a one-line message on bad input."""
    from lokin_doctor import validate

    def check(problem: str | None) -> None:
        if problem is not None:
            raise SettingsError(problem)

    check(validate.number("--timeout", timeout, high=3600))
    check(validate.number("--linger", linger, low_ok=True, high=3600))
    check(validate.url_argument(url))
    for option, value, example in (
        ("--backend", backend, "ws://10.0.0.5:8080/"),
        ("--page-url", page_url, "https://example.com/"),
    ):
        if value is not None and not value.strip():
            raise SettingsError(
                _("empty {option}; give a URL such as {example}, or leave the option out").format(
                    option=option, example=example
                )
            )

    def parse_as(option: str | None, parse: Any, value: str) -> Any:
        """The value parsed; a bad one is the usage error, naming the option it came from."""
        try:
            return parse(value)
        except TargetError as exc:
            raise SettingsError(f"{option}: {exc}" if option else str(exc), option) from None

    if page_url:
        parse_as("--page-url", page_websocket_url, page_url)  # validates the page URL itself
    if url:
        target = parse_as(None, parse_target, url)
    elif page_url:
        target = page_websocket_url(page_url)
    else:
        target = parse_target(DEFAULT_URL)
    backend_target = parse_as("--backend", parse_target, backend) if backend else None
    parsed_headers = []
    for h in headers:
        parsed, problem = validate.header(h)
        check(problem)
        assert parsed is not None
        parsed_headers.append(parsed)
    for sub in subprotocols:
        check(validate.subprotocol(sub))
    patterns = tuple(process_patterns) or DEFAULT_PROCESS_PATTERNS
    for option, p in (
        *(("--process", p) for p in patterns),
        *((("--expect", expect),) if expect is not None else ()),
    ):
        if option == "--process" and not p.strip():
            raise SettingsError(
                _("empty --process pattern; give a regular expression such as 'node .*server\\.js'")
            )
        try:
            re.compile(p)
        except re.error as exc:
            raise SettingsError(
                _("invalid regular expression for {option} {p!r}: {exc}").format(option=option, p=p, exc=exc)
            ) from None
    if expect is not None and send is None:
        raise SettingsError(_("--expect needs --send: say what to send, then what the reply must match"))
    if ca_file is not None:
        check(validate.ca_file(ca_file))
    check(validate.client_cert(client_cert, client_key))
    if hold is not None:
        check(validate.number("--hold", hold, high=86400))
    if origin is not None:
        check(validate.origin(origin))
    dns: tuple[str, int] | None = None
    if dns_server is not None:
        dns, problem = validate.dns_server(dns_server)
        check(problem)
    if nginx_config is not None and not os.path.isfile(nginx_config):
        raise SettingsError(
            _(
                "--nginx-config {nginx_config!r} does not exist or is not a file; give nginx's main configuration file, e.g. /etc/nginx/nginx.conf"
            ).format(nginx_config=nginx_config)
        )
    if nginx_config is not None:
        check(_nginx_config_problem(nginx_config))
    check(_proxy_problem(proxy, no_proxy))
    overrides = []
    for entry in resolve:
        parsed_resolve, problem = validate.resolve(entry)
        check(problem)
        assert parsed_resolve is not None
        overrides.append(parsed_resolve)
    if proxy_config is not None:
        problem = _proxy_config_problem(proxy_config)
        if problem is not None:
            raise SettingsError(problem, "--proxy-config")
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
        dns_server=dns,
        ca_file=ca_file,
        insecure=insecure,
        backend=backend_target,
        hold=hold,
        page_url=page_url,
        variants=variants,
        linger=linger,
        client_cert=client_cert,
        client_key=client_key,
        explicit_target=bool(url or page_url),
        nginx_config=os.path.abspath(nginx_config) if nginx_config is not None else None,
        proxy_config=os.path.abspath(proxy_config) if proxy_config is not None else None,
        browser=browser,
        browser_path=browser_exe,
        browser_args=tuple(browser_args),
        target_given=bool(url),
        proxy=proxy.strip() if proxy is not None else None,
        no_proxy=no_proxy,
        proxy_env=tuple(
            (k, v) for k, v in os.environ.items() if k.lower() in proxyenv.ENV_NAMES and v is not None
        ),
        resolve=tuple(overrides),
    )


def _proxy_problem(proxy: str | None, no_proxy: bool) -> str | None:
    """``--proxy`` must be http://, https:// or socks5://host:port; not with ``--no-proxy``."""
    if proxy is None:
        return None
    if no_proxy:
        return _("--proxy and --no-proxy contradict each other; give one of them")
    try:
        proxyenv.parse_proxy_url(proxy)
    except proxyenv.ProxyUrlError as exc:
        return _(
            "invalid --proxy {value!r} ({reason}); give http://host:port, https://host:port or socks5://host:port (credentials as http://user:password@host:port)"
        ).format(value=proxy, reason=exc)
    return None


def _browser_settings(
    browser: bool, path: str | None, args: tuple[str, ...], page_url: str | None, ca_file: str | None
) -> str | None:
    """Validate the --browser options; return the Chromium binary to launch (found before any traffic)."""
    if not browser:
        if path is not None:
            raise SettingsError(_("--browser-path needs --browser (load the page in Chromium)"))
        if args:
            raise SettingsError(_("--browser-arg needs --browser (load the page in Chromium)"))
        return None
    if not page_url:
        raise SettingsError(
            _("--browser needs --page-url: the page to open, e.g. --page-url https://example.com/")
        )
    for arg in args:
        if not arg.startswith("--") or len(arg) < 3:
            raise SettingsError(
                _(
                    "invalid --browser-arg {arg!r}; give one Chromium switch, e.g. '--host-resolver-rules=MAP example.com 127.0.0.1'"
                ).format(arg=arg)
            )
    from lokin_doctor.instruments.chromium import BrowserMissingError, certutil_path, find_browser

    try:
        found = find_browser(path)
    except BrowserMissingError as exc:
        raise SettingsError(str(exc)) from None
    if ca_file is not None and certutil_path() is None:
        raise SettingsError(
            _(
                "--ca-file with --browser needs certutil to trust the CA in Chromium; install it (sudo apt-get install libnss3-tools)"
            )
        )
    return found


def read_targets(path: str) -> list[str]:
    """``--targets FILE``: one URL a line; blank lines and lines starting with # are ignored."""
    if not path.strip():
        raise SettingsError(_("--targets is empty; give a text file with one URL a line"), "--targets")
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(
            _("--targets {path!r} cannot be read ({reason}); give a text file with one URL a line").format(
                path=path, reason=getattr(exc, "strerror", None) or type(exc).__name__
            ),
            "--targets",
        ) from None
    urls = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    if not urls:
        raise SettingsError(
            _("--targets {path!r} lists no URL; write one URL a line").format(path=path), "--targets"
        )
    return urls
