"""The Typer app: options -> Settings -> runner -> render -> exit code.

Start-up time matters (a verdict in under a second): this module imports only typer and the
standard library at the top; everything heavy is imported inside the command that needs it.
The operator commands live with their engines (``lokin_doctor/tools/<name>/command.py``; ``serve``'s in
``lokin_doctor/server/command.py``) and register themselves through ``register(app)``.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

from lokin_doctor import i18n

# The language is chosen before typer is imported and before the help texts below are built.
i18n.setup_from_argv()

import typer  # noqa: E402

from lokin_doctor import __version__  # noqa: E402
from lokin_doctor.i18n import _  # noqa: E402
from lokin_doctor.model import ExitCode  # noqa: E402
from lokin_doctor.options import (  # noqa: E402
    JsonOpt,
    OptionSpec,
    ProbeUrlArg,
    TargetsOpt,
    UrlArg,
    UrlsArg,
)

if TYPE_CHECKING:  # imported lazily at run time: start-up cost
    from lokin_doctor.environment import Environment
    from lokin_doctor.model import Report
    from lokin_doctor.settings import Settings

app = typer.Typer(
    name="lokin-doctor",
    help=_(
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
COMMAND_MODULES = (
    "lokin_doctor.server.command",
    "lokin_doctor.tools.load.command",
    "lokin_doctor.tools.watch.command",
    "lokin_doctor.tools.monitor.command",
    "lokin_doctor.tools.sentinel.command",
)


def usage_error(message: str, option: str | None = None) -> NoReturn:
    """Raise the one usage error; :func:`main` prints it (one line on stderr) and exits 2."""
    from lokin_doctor.validate import UsageError

    raise UsageError(message, option)


def _version(value: bool) -> None:
    if value:
        from lokin_doctor import environment

        environment.current().stdout.write(f"lokin-doctor {__version__}\n")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help=_("Print the version and exit.")),
    ] = False,
) -> None:
    """lokin-doctor."""


# Options shared by the check commands. Defaults live here so `--help` shows them.


def _settings(url: str | None, **options: Any) -> Settings:
    """Validated settings (``build_settings`` keywords); a bad value raises the usage error (exit 2)."""
    from lokin_doctor.settings import build_settings

    return build_settings(url, **options)


def _output_format(fmt: str, json_out: bool) -> str:
    from lokin_doctor.formats import FORMATS

    if fmt not in FORMATS:
        usage_error(
            _("invalid --format {value!r}; use one of {formats}").format(
                value=fmt, formats=", ".join(FORMATS)
            )
        )
    if json_out and fmt not in ("text", "json"):
        usage_error(
            _("--json is short for --format json; give one of them, not --json with --format {fmt}").format(
                fmt=fmt
            )
        )
    return "json" if json_out else fmt


def _emit(reports: list[Report], out: Output, *, many: bool) -> None:
    """Every format is a string; stdout gets the report and nothing else."""
    from lokin_doctor import environment
    from lokin_doctor.formats import render as render_format

    if out.redact:
        from lokin_doctor.formats.redact import redact_reports

        reports = redact_reports(reports)
    env = environment.current()
    env.stdout.write(
        render_format(
            out.fmt, reports, verbose=out.verbose, colors=env.colors, fail_on_warn=out.strict, many=many
        )
    )
    env.stdout.flush()


def _fail_on(strict: bool, fail_on: str) -> bool:
    """``--fail-on warn|fail`` (``--strict`` is ``--fail-on warn``): True when a warning fails the run."""
    if fail_on not in ("warn", "fail"):
        usage_error(_("invalid --fail-on {value!r}; use warn or fail").format(value=fail_on), "--fail-on")
    return strict or fail_on == "warn"


@dataclass(frozen=True)
class Output:
    """How a check command shows its report and turns it into an exit code (the options every one has)."""

    fmt: str
    redact: bool
    strict: bool
    verbose: bool
    debug: bool

    @classmethod
    def of(
        cls, json_out: bool, fmt: str, *, redact: bool, strict: bool, verbose: bool, debug: bool
    ) -> Output:
        return cls(_output_format(fmt, json_out), redact, strict, verbose, debug)


def _run(
    settings: Settings | list[Settings],
    only: list[str] | None,
    out: Output,
    *,
    embedded: bool = False,
    many: bool = False,
) -> NoReturn:
    """Run one target (or several, ``many``), print the report in ``out.fmt``, exit with the overall code."""
    from lokin_doctor.runner import UnknownCheckError, run_report, run_reports

    debug = out.debug
    settings_list = settings if isinstance(settings, list) else [settings]
    try:
        if len(settings_list) == 1 and not many:
            reports = [run_report(settings_list[0], only=only, embedded=embedded, debug=debug)]
        else:
            reports = run_reports(settings_list, only=only, debug=debug)
    except UnknownCheckError as exc:
        usage_error(str(exc), "--only")
    _emit(reports, out, many=many)
    raise typer.Exit(max(report.exit_code(out.strict) for report in reports))


@dataclass(frozen=True)
class Invocation:
    """What a check command's body receives: the URL argument, the Settings keywords of its options (built
    from the table in :mod:`lokin_doctor.options`), how to show the report, and its own options."""

    url: Any
    settings: dict[str, Any]
    out: Output
    own: dict[str, Any]


def check_command(
    name: str,
    help_text: str,
    *,
    url: Any = UrlArg,
    own: tuple[OptionSpec, ...] = (),
) -> Callable[[Callable[[Invocation], None]], Callable[[Invocation], None]]:
    """Register a check command whose options come from the table (``options.COMMAND_OPTIONS[name]``): each
    option is declared once, its value validated once (``build_settings``), and passed whole."""
    from lokin_doctor.options import (
        COMMAND_OPTIONS,
        OUTPUT_OPTIONS,
        SETTING_BY_PARAM,
        settings_keywords,
        signature_command,
    )

    setting_specs = [SETTING_BY_PARAM[p] for p in COMMAND_OPTIONS[name]]
    head, tail = setting_specs[:1], setting_specs[1:]  # --timeout first, as every command lists it
    specs = [*head, *OUTPUT_OPTIONS, *own, *tail]

    def decorate(body: Callable[[Invocation], None]) -> Callable[[Invocation], None]:
        def command(values: dict[str, Any]) -> None:
            out = Output.of(
                values["json_out"],
                values["fmt"],
                redact=values["redact"],
                strict=_fail_on(values["strict"], values["fail_on"]),
                verbose=values["verbose"],
                debug=values["debug"],
            )
            body(
                Invocation(
                    values["url"],
                    settings_keywords(setting_specs, values),
                    out,
                    {s.param: values[s.param] for s in own},
                )
            )

        app.command(name, help=help_text)(signature_command(body.__name__, url, specs, command))
        return body

    return decorate


@check_command(
    "all",
    _("Run the whole checklist, name the root cause and the fix (exit 0 healthy, 1 problem, 2 usage)."),
    url=UrlsArg,
    own=(
        OptionSpec("targets", TargetsOpt, None),
        OptionSpec(
            "only",
            Annotated[
                list[str] | None,
                typer.Option("--only", help=_("Run only these checks (and what they need); repeatable.")),
            ],
            None,
        ),
        OptionSpec(
            "list_checks",
            Annotated[bool, typer.Option("--list-checks", help=_("List the checks and exit."))],
            False,
        ),
        OptionSpec(
            "embedded",
            Annotated[
                bool,
                typer.Option(
                    "--embedded", help=_("Start the embedded server on a free loopback port and diagnose it.")
                ),
            ],
            False,
        ),
    ),
)
def all_command(run: Invocation) -> None:
    from lokin_doctor.settings import read_targets

    if run.own["list_checks"]:
        from lokin_doctor import environment, render
        from lokin_doctor.runner import CHECKS

        env = environment.current()
        env.stdout.write(render.lines_text(render.check_list_lines(CHECKS), colors=env.colors))
        raise typer.Exit()
    targets = run.own["targets"]
    urls: list[str | None] = [*(run.url or []), *(read_targets(targets) if targets is not None else [])]
    embedded = run.own["embedded"]
    if embedded and urls:
        usage_error(_("--embedded diagnoses the embedded server; give no URL with it"))
    many = len(urls) > 1 or targets is not None
    settings_list = [_settings(one_url, **run.settings) for one_url in (urls or [None])]
    _run(
        settings_list if many else settings_list[0],
        run.own["only"],
        run.out,
        embedded=embedded,
        many=many,
    )


@check_command(
    "check-port",
    _("Who listens on the target's port on this machine (pid, command line, bound address)."),
)
def check_port_command(run: Invocation) -> None:
    _run(_settings(run.url, **run.settings), ["port", "firewall"], run.out)


@check_command(
    "check-process",
    _("Is the WebSocket server process running, and does it listen on the target's port."),
)
def check_process_command(run: Invocation) -> None:
    _run(_settings(run.url, **run.settings), ["process", "supervisor"], run.out)


@check_command(
    "handshake",
    _("A complete RFC 6455 opening handshake, then the session (greeting, ping, --send/--expect, close)."),
)
def handshake_command(run: Invocation) -> None:
    _run(_settings(run.url, **run.settings), ["handshake", "session"], run.out)


@check_command(
    "probe-wss",
    _(
        "The production chain: DNS records, every backend, TLS, the proxy, nearby variants, idle hold, the page."
    ),
    url=ProbeUrlArg,
)
def probe_wss_command(run: Invocation) -> None:
    from lokin_doctor.runner import REMOTE_CHECKS

    if run.url is None and not run.settings.get("page_url"):  # an empty URL is settings' "empty URL" error
        usage_error(
            _("probe-wss needs the URL to probe (e.g. wss://example.com/ws) or --page-url to derive it")
        )
    settings = _settings(run.url, **run.settings)
    checks = [
        *REMOTE_CHECKS,
        *(["nginx"] if run.settings.get("nginx_config") else []),
        *(["proxy-config"] if run.settings.get("proxy_config") else []),
    ]
    _run(settings, checks, run.out)


@app.command("explain", help=_("What a cause code means and how to fix it (--list: every code)."))
def explain_command(
    code: Annotated[
        str | None, typer.Argument(show_default=False, help=_("A cause code, e.g. tcp.refused."))
    ] = None,
    list_codes: Annotated[bool, typer.Option("--list", help=_("List every code with its meaning."))] = False,
    json_out: JsonOpt = False,
) -> None:
    import json

    from lokin_doctor import causes, environment

    out = environment.current().stdout

    def entry(c: causes.Cause) -> dict[str, Any]:
        return {
            "code": c.code,
            "layer": c.layer.value,
            "meaning": c.meaning_text(),
            "fix": c.fix_text(),
            "statuses": list(c.statuses),
            "tags": sorted(t.value for t in c.tags),
            "doc": f"docs/{c.doc}",
        }

    if list_codes:
        if code is not None:
            usage_error(_("give a code or --list, not both"), "--list")
        every = list(causes.all_causes())
        if json_out:
            out.write(json.dumps([entry(c) for c in every], indent=2, ensure_ascii=False) + "\n")
        else:
            width = max(len(c.code) for c in every)
            out.write("".join(f"{c.code:<{width}}  {c.meaning_text()}\n" for c in every))
        raise typer.Exit()
    if code is None:
        usage_error(_("explain needs a cause code (e.g. tcp.refused), or --list"))
    found = causes.get(code.strip())
    if found is None:
        import difflib

        near = difflib.get_close_matches(code.strip(), [c.code for c in causes.all_causes()], n=3, cutoff=0.5)
        hint = (
            _("did you mean {codes}?").format(codes=", ".join(near))
            if near
            else _("lokin-doctor explain --list shows every code")
        )
        usage_error(_("unknown cause code {code!r}; {hint}").format(code=code, hint=hint))
    if json_out:
        out.write(json.dumps(entry(found), indent=2, ensure_ascii=False) + "\n")
        raise typer.Exit()
    info = entry(found)
    out.write(
        f"{found.code}\n\n{info['meaning']}\n\n"
        + _("Fix:")
        + f" {info['fix']}\n\n"
        + _("Reported as: {statuses}").format(statuses=", ".join(_(s) for s in found.statuses))
        + "\n"
        + (_("Related: {tags}").format(tags=", ".join(info["tags"])) + "\n" if info["tags"] else "")
        + _("More: {doc}").format(doc=info["doc"])
        + "\n"
    )


def _register_commands() -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(app)


_register_commands()


def _lang_callback(ctx: Any, param: Any, value: str | None) -> None:
    """``--lang`` was already applied by :func:`i18n.setup_from_argv`; here it is only validated."""
    if value is not None and value not in i18n.LANGUAGES:
        usage_error(_("invalid --lang {value!r}; use en or fr").format(value=value))


def _add_lang_option(group: Any) -> None:
    """``--lang en|fr`` on every command (theirs included), without touching their signatures."""
    from typer.core import TyperOption

    for command in [group, *group.commands.values()]:
        if any(p.name == "lang" for p in command.params):
            continue
        command.params.append(
            TyperOption(
                param_decls=["--lang"],
                metavar="en|fr",
                expose_value=False,
                is_eager=True,
                callback=_lang_callback,
                help=_("Language of the messages: en or fr (default: from LC_ALL, LC_MESSAGES, LANG)."),
            )
        )


def _lean_app(argv: list[str]) -> typer.Typer:
    """The app with only the command being run: Typer builds every command's Click object from its type
    hints on each start (~30 ms for all of them); one is enough unless the root itself is asked for."""
    import copy

    args = iter(argv)
    name = None
    for arg in args:
        if arg == "--lang":
            next(args, None)
        elif not arg.startswith("-"):
            name = arg
            break
        elif arg != "--" and not arg.startswith("--lang="):
            return app  # --help, --version...: the root's business
    wanted = [c for c in app.registered_commands if (c.name or "") == name]
    if name is None or len(wanted) != 1:
        return app  # no command, or an unknown one: the full app says what exists
    lean = copy.copy(app)
    lean.registered_commands = wanted
    return lean


def main(argv: list[str] | None = None, env: Environment | None = None) -> int:
    """The one spine: run the command of ``argv`` in ``env``; the only place that prints errors and picks
    exit codes (model: httpie's ``core.raw_main``).

    A usage or tool error is one line on stderr and exit 2; Ctrl-C is exit 130; an unexpected exception is
    one line and exit 1, its traceback only under ``--debug``. The console script and ``python -m
    lokin_doctor`` call it with no arguments (``sys.exit(main())``); tests pass a ``MockEnvironment``.
    """
    from lokin_doctor import environment

    real = env is None
    env = env or environment.Environment()
    args = list(sys.argv[1:] if argv is None else argv)
    previous = environment._current
    environment.set_current(env)
    forced = i18n._forced
    i18n.set_language(i18n.lang_from_argv(args) if i18n.lang_from_argv(args) in i18n.LANGUAGES else None)
    if not real:
        i18n.set_language(i18n.language() if i18n._forced else i18n.env_language(dict(env.environ)))
    try:
        with _streams(env, real):
            return _raw_main(args, env)
    finally:
        env.stdout.flush()
        environment.set_current(previous)
        i18n.set_language(forced) if not real else None


def _raw_main(args: list[str], env: Environment) -> int:
    from lokin_doctor.validate import CommandError, UsageError

    if env.environ.get("NO_COLOR") is not None:
        os.environ.setdefault("TERM", "dumb")
    i18n.patch_click()  # Click's own texts ("Usage:", "Options", errors) in the chosen language
    i18n.patch_click_texts()
    try:
        command = typer.main.get_command(_lean_app(args))
        _add_lang_option(command)
        # Click's main() without its exception handling (Typer's turns Ctrl-C into a silent exit 130):
        # every outcome comes here.
        with command.make_context("lokin-doctor", args) as ctx:
            code = command.invoke(ctx)
    except UsageError as exc:
        return _error(env, exc.message, ExitCode.USAGE)
    except CommandError as exc:
        return _error(env, exc.message, exc.exit_code)
    except KeyboardInterrupt:
        env.stderr.write("lokin-doctor: " + _("interrupted") + "\n")
        return ExitCode.INTERRUPTED
    except Exception as exc:
        exit_code = getattr(exc, "exit_code", None)
        if type(exc).__name__ == "Exit" and isinstance(exit_code, int):  # typer.Exit / ctx.exit()
            return exit_code
        if type(exc).__name__ == "Abort":  # Click's own Ctrl-C
            env.stderr.write("lokin-doctor: " + _("interrupted") + "\n")
            return ExitCode.INTERRUPTED
        format_message = getattr(exc, "format_message", None)
        if type(exc).__name__ == "NoArgsIsHelpError":  # no command: the help itself, not an error line
            env.stderr.write(str(exc.format_message()).rstrip("\n") + "\n")  # type: ignore[attr-defined]
            return ExitCode.USAGE
        if format_message is not None:  # Click's usage errors
            message = i18n.click_error(format_message())
            failed_ctx = getattr(exc, "ctx", None)
            if failed_ctx is not None:
                message = _(i18n.SEE_HELP).format(message=message, command=failed_ctx.command_path)
            return _error(env, message, getattr(exc, "exit_code", ExitCode.USAGE))
        if "--debug" in args:
            import traceback

            traceback.print_exception(exc, file=env.stderr)
        return _error(env, _("internal error: {error}").format(error=f"{type(exc).__name__}: {exc}"), 1)
    return code if isinstance(code, int) else ExitCode.OK


def _error(env: Environment, message: str, code: int) -> int:
    env.stderr.write("lokin-doctor: " + _("error: {message}").format(message=message) + "\n")
    return int(code)


@contextlib.contextmanager
def _streams(env: Environment, real: bool) -> Iterator[None]:
    """Point sys.stdout/stderr/stdin (and os.environ) at an injected environment for the run."""
    if real:
        yield
        return
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env.environ)
    try:
        with (
            contextlib.redirect_stdout(env.stdout),
            contextlib.redirect_stderr(env.stderr),
            _stdin(env.stdin),
        ):
            yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def _stdin(stream: Any) -> Iterator[None]:
    saved, sys.stdin = sys.stdin, stream
    try:
        yield
    finally:
        sys.stdin = saved
