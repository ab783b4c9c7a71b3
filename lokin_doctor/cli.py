"""The Typer app: options -> Settings -> runner -> render -> exit code.

Start-up time matters (a verdict in under a second): this module imports only typer and the
standard library at the top; everything heavy is imported inside the command that needs it.
Other commands (serve, load, watch, monitor) live in ``lokin_doctor/commands/`` and register
themselves through ``register(app)``.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from lokin_doctor import __version__
from lokin_doctor.model import ExitCode

if TYPE_CHECKING:  # imported lazily at run time: start-up cost
    from lokin_doctor.settings import Settings

app = typer.Typer(
    name="lokin-doctor",
    help=(
        "Find out why a page cannot connect to its WebSocket server: which link of the chain is broken "
        "(DNS, TCP, port, process, TLS, proxy, upgrade, session) and how to fix it."
    ),
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# Command modules that call ``register(app)``; each keeps its heavy imports inside its functions.
COMMAND_MODULES = ("serve", "load", "watch", "monitor")


def usage_error(message: str) -> NoReturn:
    """One line on stderr, exit 2: the contract for every bad input."""
    sys.stderr.write(f"lokin-doctor: error: {message}\n")
    raise typer.Exit(ExitCode.USAGE)


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"lokin-doctor {__version__}\n")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """lokin-doctor."""


# Options shared by the check commands. Defaults live here so `--help` shows them.
UrlArg = Annotated[
    str | None,
    typer.Argument(
        envvar="LOKIN_URL",
        show_default="ws://localhost:8080/",
        help="WebSocket URL (ws://, wss://, http(s):// mapped to ws(s)://), host:port, host or port.",
    ),
]
TimeoutOpt = Annotated[
    float,
    typer.Option("--timeout", "-t", help="One deadline in seconds for the whole run (every network step)."),
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print the JSON report on stdout (schema 1), nothing else.")
]
StrictOpt = Annotated[bool, typer.Option("--strict", help="Exit 1 on warnings too.")]
VerboseOpt = Annotated[
    bool, typer.Option("--verbose", "-v", help="Show each check's evidence and passed checks' details.")
]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks of internal errors on stderr.")]
OriginOpt = Annotated[
    str | None, typer.Option("--origin", help="Origin header to send (as a browser page would).")
]
HeaderOpt = Annotated[
    list[str] | None, typer.Option("--header", "-H", help="Extra request header 'Name: value' (repeatable).")
]
SubprotocolOpt = Annotated[
    list[str] | None, typer.Option("--subprotocol", help="Sec-WebSocket-Protocol to offer (repeatable).")
]
ProcessOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--process",
        help="Regular expression for the server's command line (repeatable). "
        "Default: 'node ... server.js' or 'lokin-doctor serve'.",
    ),
]
SendOpt = Annotated[str | None, typer.Option("--send", help="After the upgrade, send this text message.")]
ExpectOpt = Annotated[
    str | None, typer.Option("--expect", help="Regular expression a reply to --send must match.")
]
DnsServerOpt = Annotated[
    str | None,
    typer.Option(
        "--dns-server",
        help="Ask this DNS server (IP[:PORT], IPv6 in brackets: [::1]:53) instead of the system resolver.",
    ),
]
CaFileOpt = Annotated[
    str | None, typer.Option("--ca-file", help="PEM file of CA certificates to trust (private CA).")
]
InsecureOpt = Annotated[
    bool,
    typer.Option(
        "--insecure", "-k", help="Go on past a bad certificate (still reported) to test the upgrade."
    ),
]
BackendOpt = Annotated[
    str | None,
    typer.Option(
        "--backend", help="The backend URL behind the proxy, to compare with (default: same host, port 8080)."
    ),
]
HoldOpt = Annotated[
    float | None,
    typer.Option("--hold", help="Keep an idle connection open this many seconds and report how it died."),
]
PageUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--page-url",
        help="The web page's URL (https://site/): derive its WebSocket URL, check CSP, mixed content, Origin.",
    ),
]
VariantsOpt = Annotated[
    bool,
    typer.Option(
        "--variants/--no-variants", help="When the target fails, try nearby URLs (ws/wss, ports, paths)."
    ),
]
NginxConfigOpt = Annotated[
    str | None,
    typer.Option(
        "--nginx-config",
        help="nginx's main configuration file to check (default: the running nginx's, when it holds the port).",
    ),
]

LingerOpt = Annotated[
    float,
    typer.Option(
        "--linger",
        help="After the greeting and the ping, stay connected (passively) this many seconds, inside "
        "--timeout, and report a close or a drop in that window; 0 turns it off.",
    ),
]

ClientCertOpt = Annotated[
    str | None,
    typer.Option(
        "--client-cert",
        help="PEM client certificate to offer in TLS (mutual TLS); may hold the key too.",
    ),
]
ClientKeyOpt = Annotated[
    str | None, typer.Option("--client-key", help="PEM private key of --client-cert (unencrypted).")
]

BrowserOpt = Annotated[
    bool,
    typer.Option(
        "--browser",
        help="Load --page-url in headless Chromium and diagnose the WebSockets it really opens "
        "(needs lokin-doctor[browser]); no URL needed.",
    ),
]
BrowserPathOpt = Annotated[
    str | None,
    typer.Option(
        "--browser-path", help="Chromium/Chrome binary for --browser (default: found automatically)."
    ),
]
BrowserArgOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--browser-arg",
        help="Extra Chromium switch for --browser (repeatable), e.g. "
        "'--host-resolver-rules=MAP example.com 127.0.0.1'.",
    ),
]


def _settings(url: str | None, **options: Any) -> Settings:
    """Validated settings (``build_settings`` keywords), or a one-line usage error (exit 2)."""
    from lokin_doctor.settings import SettingsError, build_settings

    try:
        return build_settings(url, **options)
    except SettingsError as exc:
        usage_error(str(exc))


def _run(
    settings: Settings,
    only: list[str] | None,
    *,
    json_out: bool,
    strict: bool,
    verbose: bool,
    debug: bool,
    embedded: bool = False,
) -> NoReturn:
    from lokin_doctor.runner import UnknownCheckError, run_report

    try:
        report = run_report(settings, only=only, embedded=embedded, debug=debug)
    except UnknownCheckError as exc:
        usage_error(str(exc))
    except KeyboardInterrupt:
        sys.stderr.write("lokin-doctor: interrupted\n")
        raise typer.Exit(ExitCode.INTERRUPTED) from None
    from lokin_doctor import render

    if json_out:
        sys.stdout.write(render.to_json(report) + "\n")
    else:
        render.print_report(report, verbose=verbose)
    raise typer.Exit(report.exit_code(strict))


@app.command("all")
def all_command(
    url: UrlArg = None,
    timeout: TimeoutOpt = 5.0,
    json_out: JsonOpt = False,
    strict: StrictOpt = False,
    verbose: VerboseOpt = False,
    debug: DebugOpt = False,
    only: Annotated[
        list[str] | None,
        typer.Option("--only", help="Run only these checks (and what they need); repeatable."),
    ] = None,
    list_checks: Annotated[bool, typer.Option("--list-checks", help="List the checks and exit.")] = False,
    embedded: Annotated[
        bool,
        typer.Option("--embedded", help="Start the embedded server on a free loopback port and diagnose it."),
    ] = False,
    origin: OriginOpt = None,
    header: HeaderOpt = None,
    subprotocol: SubprotocolOpt = None,
    process: ProcessOpt = None,
    send: SendOpt = None,
    expect: ExpectOpt = None,
    dns_server: DnsServerOpt = None,
    ca_file: CaFileOpt = None,
    insecure: InsecureOpt = False,
    backend: BackendOpt = None,
    hold: HoldOpt = None,
    page_url: PageUrlOpt = None,
    variants: VariantsOpt = True,
    linger: LingerOpt = 1.0,
    client_cert: ClientCertOpt = None,
    client_key: ClientKeyOpt = None,
    nginx_config: NginxConfigOpt = None,
    browser: BrowserOpt = False,
    browser_path: BrowserPathOpt = None,
    browser_arg: BrowserArgOpt = None,
) -> None:
    """Run the whole checklist, name the root cause and the fix (exit 0 healthy, 1 problem, 2 usage)."""
    if list_checks:
        from lokin_doctor import render
        from lokin_doctor.runner import CHECKS

        render.print_check_list(CHECKS)
        raise typer.Exit()
    if embedded and url:
        usage_error("--embedded diagnoses the embedded server; give no URL with it")
    settings = _settings(
        url,
        timeout=timeout,
        origin=origin,
        headers=header or (),
        subprotocols=subprotocol or (),
        process_patterns=process or (),
        send=send,
        expect=expect,
        dns_server=dns_server,
        ca_file=ca_file,
        insecure=insecure,
        backend=backend,
        hold=hold,
        page_url=page_url,
        variants=variants,
        linger=linger,
        client_cert=client_cert,
        client_key=client_key,
        nginx_config=nginx_config,
        browser=browser,
        browser_path=browser_path,
        browser_args=browser_arg or (),
    )
    _run(settings, only, json_out=json_out, strict=strict, verbose=verbose, debug=debug, embedded=embedded)


@app.command("check-port")
def check_port_command(
    url: UrlArg = None,
    timeout: TimeoutOpt = 5.0,
    json_out: JsonOpt = False,
    strict: StrictOpt = False,
    verbose: VerboseOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Who listens on the target's port on this machine (pid, command line, bound address)."""
    settings = _settings(url, timeout=timeout)
    _run(settings, ["port"], json_out=json_out, strict=strict, verbose=verbose, debug=debug)


@app.command("check-process")
def check_process_command(
    url: UrlArg = None,
    timeout: TimeoutOpt = 5.0,
    json_out: JsonOpt = False,
    strict: StrictOpt = False,
    verbose: VerboseOpt = False,
    debug: DebugOpt = False,
    process: ProcessOpt = None,
) -> None:
    """Is the WebSocket server process running, and does it listen on the target's port."""
    settings = _settings(url, timeout=timeout, process_patterns=process or ())
    _run(settings, ["process"], json_out=json_out, strict=strict, verbose=verbose, debug=debug)


@app.command("handshake")
def handshake_command(
    url: UrlArg = None,
    timeout: TimeoutOpt = 5.0,
    json_out: JsonOpt = False,
    strict: StrictOpt = False,
    verbose: VerboseOpt = False,
    debug: DebugOpt = False,
    origin: OriginOpt = None,
    header: HeaderOpt = None,
    subprotocol: SubprotocolOpt = None,
    send: SendOpt = None,
    expect: ExpectOpt = None,
    ca_file: CaFileOpt = None,
    insecure: InsecureOpt = False,
    linger: LingerOpt = 1.0,
    client_cert: ClientCertOpt = None,
    client_key: ClientKeyOpt = None,
) -> None:
    """A complete RFC 6455 opening handshake, then the session (greeting, ping, --send/--expect, close)."""
    settings = _settings(
        url,
        timeout=timeout,
        origin=origin,
        headers=header or (),
        subprotocols=subprotocol or (),
        send=send,
        expect=expect,
        ca_file=ca_file,
        insecure=insecure,
        linger=linger,
        client_cert=client_cert,
        client_key=client_key,
    )
    _run(settings, ["handshake", "session"], json_out=json_out, strict=strict, verbose=verbose, debug=debug)


@app.command("probe-wss")
def probe_wss_command(
    url: UrlArg = None,
    timeout: TimeoutOpt = 5.0,
    json_out: JsonOpt = False,
    strict: StrictOpt = False,
    verbose: VerboseOpt = False,
    debug: DebugOpt = False,
    origin: OriginOpt = None,
    header: HeaderOpt = None,
    dns_server: DnsServerOpt = None,
    ca_file: CaFileOpt = None,
    insecure: InsecureOpt = False,
    backend: BackendOpt = None,
    hold: HoldOpt = None,
    page_url: PageUrlOpt = None,
    variants: VariantsOpt = True,
    linger: LingerOpt = 1.0,
    client_cert: ClientCertOpt = None,
    client_key: ClientKeyOpt = None,
    nginx_config: NginxConfigOpt = None,
    browser: BrowserOpt = False,
    browser_path: BrowserPathOpt = None,
    browser_arg: BrowserArgOpt = None,
) -> None:
    """The production chain: DNS records, every backend, TLS, the proxy, nearby variants, idle hold, the page."""
    from lokin_doctor.runner import REMOTE_CHECKS

    settings = _settings(
        url,
        timeout=timeout,
        origin=origin,
        headers=header or (),
        dns_server=dns_server,
        ca_file=ca_file,
        insecure=insecure,
        backend=backend,
        hold=hold,
        page_url=page_url,
        variants=variants,
        linger=linger,
        client_cert=client_cert,
        client_key=client_key,
        nginx_config=nginx_config,
        browser=browser,
        browser_path=browser_path,
        browser_args=browser_arg or (),
    )
    checks = [*REMOTE_CHECKS, *(["nginx"] if nginx_config else [])]
    _run(settings, checks, json_out=json_out, strict=strict, verbose=verbose, debug=debug)


def _register_commands() -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"lokin_doctor.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"lokin_doctor.commands.{name}":
                raise
            continue
        module.register(app)


_register_commands()


def main() -> None:
    """Console-script entry point: no traceback ever reaches the user."""
    if os.environ.get("NO_COLOR") is not None:
        os.environ.setdefault("TERM", "dumb")
    try:
        app()
    except KeyboardInterrupt:
        sys.stderr.write("lokin-doctor: interrupted\n")
        sys.exit(ExitCode.INTERRUPTED)
