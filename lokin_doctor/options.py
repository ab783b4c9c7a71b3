"""The options the check commands share (``all``, ``check-port``, ``check-process``, ``handshake``,
``probe-wss``): one ``Annotated`` type each, so every command declares the same option the same way and
``--help`` shows its default. Help texts are translated when this module is imported, after the CLI
has chosen the language (``i18n.setup_from_argv``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from lokin_doctor.i18n import _

UrlArg = Annotated[
    str | None,
    typer.Argument(
        envvar="LOKIN_URL",
        show_envvar=False,
        show_default=False,
        help=_(
            "WebSocket URL (ws://, wss://, http(s):// mapped to ws(s)://), host:port, host or port; "
            "default: $LOKIN_URL, else ws://localhost:8080/."
        ),
    ),
]
TimeoutOpt = Annotated[
    float,
    typer.Option(
        "--timeout", "-t", help=_("One deadline in seconds for the whole run (every network step).")
    ),
]
JsonOpt = Annotated[
    bool,
    typer.Option("--json", help=_("Short for --format json: the JSON report on stdout, nothing else.")),
]
FormatOpt = Annotated[
    str,
    typer.Option(
        "--format",
        "-f",
        metavar="text|json|junit|markdown",
        help=_("Report format: text (terminal), json, junit (CI test results) or markdown (to paste)."),
    ),
]
RedactOpt = Annotated[
    bool,
    typer.Option(
        "--redact",
        help=_("Replace host names, addresses, tokens and cookies by placeholders (HOST-1, IP-1, TOKEN-1)."),
    ),
]
StrictOpt = Annotated[bool, typer.Option("--strict", help=_("Short for --fail-on warn."))]
FailOnOpt = Annotated[
    str,
    typer.Option(
        "--fail-on",
        metavar="warn|fail",
        help=_("What makes the run fail (exit 1, a JUnit <failure>): fail (default) or warn (warnings too)."),
    ),
]
VerboseOpt = Annotated[
    bool, typer.Option("--verbose", "-v", help=_("Show each check's evidence and passed checks' details."))
]
DebugOpt = Annotated[bool, typer.Option("--debug", help=_("Show tracebacks of internal errors on stderr."))]
OriginOpt = Annotated[
    str | None, typer.Option("--origin", help=_("Origin header to send (as a browser page would)."))
]
HeaderOpt = Annotated[
    list[str] | None,
    typer.Option("--header", "-H", help=_("Extra request header 'Name: value' (repeatable).")),
]
SubprotocolOpt = Annotated[
    list[str] | None, typer.Option("--subprotocol", help=_("Sec-WebSocket-Protocol to offer (repeatable)."))
]
ProcessOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--process",
        help=_(
            "Regular expression for the server's command line (repeatable). "
            "Default: 'node ... server.js' or 'lokin-doctor serve'."
        ),
    ),
]
SendOpt = Annotated[str | None, typer.Option("--send", help=_("After the upgrade, send this text message."))]
ExpectOpt = Annotated[
    str | None, typer.Option("--expect", help=_("Regular expression a reply to --send must match."))
]
DnsServerOpt = Annotated[
    str | None,
    typer.Option(
        "--dns-server",
        help=_("Ask this DNS server (IP[:PORT], IPv6 in brackets: [::1]:53) instead of the system resolver."),
    ),
]
ResolveOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--resolve",
        metavar="HOST:PORT:ADDR",
        help=_(
            "Connect to ADDR for HOST:PORT, still sending HOST as the TLS server name and Host header (curl's syntax; repeatable)."
        ),
    ),
]
CaFileOpt = Annotated[
    str | None, typer.Option("--ca-file", help=_("PEM file of CA certificates to trust (private CA)."))
]
ProxyOpt = Annotated[
    str | None,
    typer.Option(
        "--proxy",
        metavar="URL",
        help=_(
            "Connect through this forward proxy (http://[user:password@]host:port, https://, socks5://) "
            "instead of the one of HTTPS_PROXY/HTTP_PROXY/ALL_PROXY; NO_PROXY still applies."
        ),
    ),
]
NoProxyOpt = Annotated[
    bool,
    typer.Option(
        "--no-proxy", help=_("Connect directly, whatever HTTPS_PROXY, HTTP_PROXY or ALL_PROXY say.")
    ),
]
InsecureOpt = Annotated[
    bool,
    typer.Option(
        "--insecure", "-k", help=_("Go on past a bad certificate (still reported) to test the upgrade.")
    ),
]
BackendOpt = Annotated[
    str | None,
    typer.Option(
        "--backend",
        help=_("The backend URL behind the proxy, to compare with (default: same host, port 8080)."),
    ),
]
HoldOpt = Annotated[
    float | None,
    typer.Option("--hold", help=_("Keep an idle connection open this many seconds and report how it died.")),
]
PageUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--page-url",
        help=_(
            "The web page's URL (https://site/): derive its WebSocket URL, check CSP, mixed content, Origin."
        ),
    ),
]
VariantsOpt = Annotated[
    bool,
    typer.Option(
        "--variants/--no-variants", help=_("When the target fails, try nearby URLs (ws/wss, ports, paths).")
    ),
]
NginxConfigOpt = Annotated[
    str | None,
    typer.Option(
        "--nginx-config",
        help=_(
            "nginx's main configuration file to check (default: the running nginx's, when it holds the port)."
        ),
    ),
]
ProxyConfigOpt = Annotated[
    str | None,
    typer.Option(
        "--proxy-config",
        help=_(
            "HAProxy, Apache httpd or Caddy configuration file to check (default: the running proxy's, when it holds the port)."
        ),
    ),
]

LingerOpt = Annotated[
    float,
    typer.Option(
        "--linger",
        help=_(
            "After the greeting and the ping, stay connected (passively) this many seconds, inside "
            "--timeout, and report a close or a drop in that window; 0 turns it off."
        ),
    ),
]

ClientCertOpt = Annotated[
    str | None,
    typer.Option(
        "--client-cert",
        help=_("PEM client certificate to offer in TLS (mutual TLS); may hold the key too."),
    ),
]
ClientKeyOpt = Annotated[
    str | None, typer.Option("--client-key", help=_("PEM private key of --client-cert (unencrypted)."))
]

BrowserOpt = Annotated[
    bool,
    typer.Option(
        "--browser",
        help=_(
            "Load --page-url in headless Chromium and diagnose the WebSockets it really opens "
            "(needs lokin-doctor[browser]); no URL needed."
        ),
    ),
]
BrowserPathOpt = Annotated[
    str | None,
    typer.Option(
        "--browser-path", help=_("Chromium/Chrome binary for --browser (default: found automatically).")
    ),
]
BrowserArgOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--browser-arg",
        help=_(
            "Extra Chromium switch for --browser (repeatable), e.g. "
            "'--host-resolver-rules=MAP example.com 127.0.0.1'."
        ),
    ),
]

UrlsArg = Annotated[
    list[str] | None,
    typer.Argument(
        envvar="LOKIN_URL",
        show_envvar=False,
        show_default=False,
        help=_(
            "WebSocket URL(s), checked at the same time: ws://, wss://, http(s)://, host:port, host or port; "
            "default: $LOKIN_URL, else ws://localhost:8080/."
        ),
    ),
]
TargetsOpt = Annotated[
    str | None,
    typer.Option(
        "--targets", metavar="FILE", help=_("Also check the URLs of this file (one a line, # comments).")
    ),
]

ProbeUrlArg = Annotated[
    str | None,
    typer.Argument(
        envvar="LOKIN_URL",
        show_envvar=False,
        show_default=False,
        help=_(
            "The production WebSocket URL (wss://host/path), or $LOKIN_URL; required unless --page-url gives it."
        ),
    ),
]


# -- the table: each option once, with its default and the Settings field it fills -----------------------


@dataclass(frozen=True)
class OptionSpec:
    """One option of the check commands: its parameter, its Annotated type (flag and help), its default, and
    the :func:`lokin_doctor.settings.build_settings` keyword it fills (None: an output option, not a setting).
    ``many``: a repeatable option, ``None`` when absent, passed on as a tuple."""

    param: str
    annotation: Any
    default: Any
    setting: str | None = None
    many: bool = False


OUTPUT_OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec("json_out", JsonOpt, False),
    OptionSpec("fmt", FormatOpt, "text"),
    OptionSpec("redact", RedactOpt, False),
    OptionSpec("strict", StrictOpt, False),
    OptionSpec("fail_on", FailOnOpt, "fail"),
    OptionSpec("verbose", VerboseOpt, False),
    OptionSpec("debug", DebugOpt, False),
)

#: Every option that fills Settings, in the order ``--help`` lists them.
SETTING_OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec("timeout", TimeoutOpt, 5.0, "timeout"),
    OptionSpec("origin", OriginOpt, None, "origin"),
    OptionSpec("header", HeaderOpt, None, "headers", many=True),
    OptionSpec("subprotocol", SubprotocolOpt, None, "subprotocols", many=True),
    OptionSpec("process", ProcessOpt, None, "process_patterns", many=True),
    OptionSpec("send", SendOpt, None, "send"),
    OptionSpec("expect", ExpectOpt, None, "expect"),
    OptionSpec("dns_server", DnsServerOpt, None, "dns_server"),
    OptionSpec("resolve", ResolveOpt, None, "resolve", many=True),
    OptionSpec("ca_file", CaFileOpt, None, "ca_file"),
    OptionSpec("proxy", ProxyOpt, None, "proxy"),
    OptionSpec("no_proxy", NoProxyOpt, False, "no_proxy"),
    OptionSpec("insecure", InsecureOpt, False, "insecure"),
    OptionSpec("backend", BackendOpt, None, "backend"),
    OptionSpec("hold", HoldOpt, None, "hold"),
    OptionSpec("page_url", PageUrlOpt, None, "page_url"),
    OptionSpec("variants", VariantsOpt, True, "variants"),
    OptionSpec("linger", LingerOpt, 1.0, "linger"),
    OptionSpec("client_cert", ClientCertOpt, None, "client_cert"),
    OptionSpec("client_key", ClientKeyOpt, None, "client_key"),
    OptionSpec("nginx_config", NginxConfigOpt, None, "nginx_config"),
    OptionSpec("proxy_config", ProxyConfigOpt, None, "proxy_config"),
    OptionSpec("browser", BrowserOpt, False, "browser"),
    OptionSpec("browser_path", BrowserPathOpt, None, "browser_path"),
    OptionSpec("browser_arg", BrowserArgOpt, None, "browser_args", many=True),
)
SETTING_BY_PARAM = {s.param: s for s in SETTING_OPTIONS}

#: The setting options each check command takes (``all`` and ``sentinel`` take every one).
ALL = tuple(s.param for s in SETTING_OPTIONS)
COMMAND_OPTIONS: dict[str, tuple[str, ...]] = {
    "all": ALL,
    "check-port": ("timeout",),
    "check-process": ("timeout", "process"),
    "handshake": (
        "timeout",
        "origin",
        "header",
        "subprotocol",
        "send",
        "expect",
        "resolve",
        "ca_file",
        "proxy",
        "no_proxy",
        "insecure",
        "linger",
        "client_cert",
        "client_key",
    ),
    "probe-wss": (
        "timeout",
        "origin",
        "header",
        "dns_server",
        "resolve",
        "ca_file",
        "proxy",
        "no_proxy",
        "insecure",
        "backend",
        "hold",
        "page_url",
        "variants",
        "linger",
        "client_cert",
        "client_key",
        "nginx_config",
        "proxy_config",
        "browser",
        "browser_path",
        "browser_arg",
    ),
}


def settings_keywords(
    specs: tuple[OptionSpec, ...] | list[OptionSpec], values: dict[str, Any]
) -> dict[str, Any]:
    """The ``build_settings`` keywords of the given option values (a repeatable option absent is ``()``)."""
    out: dict[str, Any] = {}
    for s in specs:
        if s.setting is None or s.param not in values:
            continue
        value = values[s.param]
        out[s.setting] = tuple(value or ()) if s.many else value
    return out


def signature_command(
    name: str, url: Any, specs: Sequence[OptionSpec], body: Callable[[dict[str, Any]], Any]
) -> Callable[..., Any]:
    """A function Typer reads as a command: a ``url`` argument of type ``url``, then one parameter per spec
    (its Annotated type and default), calling ``body`` with every value by parameter name. The check
    commands (``cli.check_command``) and the tools that take the same options (``sentinel``) are built so."""
    import inspect

    def command(**values: Any) -> Any:
        return body(values)

    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    params = [inspect.Parameter("url", kind, annotation=url, default=None)]
    params += [inspect.Parameter(s.param, kind, annotation=s.annotation, default=s.default) for s in specs]
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__name__ = name
    return command
