"""The one spine: ``cli.main(argv, env)`` alone prints errors and picks exit codes; every format is a string."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lokin_doctor import causes, i18n
from lokin_doctor.cli import main
from lokin_doctor.environment import MockEnvironment
from lokin_doctor.model import ExitCode, Report, ok


def _run(*args: str, **environ: str) -> tuple[int, MockEnvironment]:
    env = MockEnvironment({"LANG": "C.UTF-8", "NO_COLOR": "1", **environ})
    return main(list(args), env), env


def _one_line_usage(code: int, env: MockEnvironment, needle: str) -> None:
    assert code == ExitCode.USAGE, env.err
    lines = env.err.splitlines()
    assert len(lines) == 1, env.err
    assert lines[0].startswith("lokin-doctor: error: "), lines
    assert needle in lines[0]
    assert "Traceback" not in env.err and env.out == ""


def test_usage_error_is_one_line_exit_2_in_process() -> None:
    code, env = _run("all", "ws://127.0.0.1:9/", "--timeout", "nan")
    _one_line_usage(code, env, "--timeout")


def test_unexpected_exception_is_exit_1_traceback_only_under_debug(monkeypatch: pytest.MonkeyPatch) -> None:
    import lokin_doctor.runner as runner

    def boom(*a: Any, **k: Any) -> Any:
        raise RuntimeError("kaboom")

    monkeypatch.setattr(runner, "run_report", boom)
    code, env = _run("handshake", "ws://127.0.0.1:9/")
    assert code == 1 and "Traceback" not in env.err
    assert env.err.splitlines() == ["lokin-doctor: error: internal error: RuntimeError: kaboom"]
    code, env = _run("handshake", "ws://127.0.0.1:9/", "--debug")
    assert code == 1 and "Traceback" in env.err and "kaboom" in env.err


def test_ctrl_c_is_130(monkeypatch: pytest.MonkeyPatch) -> None:
    import lokin_doctor.runner as runner

    def interrupted(*a: Any, **k: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run_report", interrupted)
    code, env = _run("handshake", "ws://127.0.0.1:9/")
    assert code == ExitCode.INTERRUPTED and env.err == "lokin-doctor: interrupted\n"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("serve", "--host", "nonsense.invalid"), "--host"),
        (("serve", "--certfile", "missing.pem"), "--certfile"),
        (("serve", "--keyfile", "k.pem"), "--keyfile"),
        (("all", "--targets", ""), "--targets"),
        (("all", "ws://127.0.0.1:9/", "--fail-on", "sometimes"), "--fail-on"),
        (("monitor", "--port", "0"), "--port"),
    ],
)
def test_bad_values_exit_2_before_any_start(args: tuple[str, ...], needle: str) -> None:
    code, env = _run(*args)
    _one_line_usage(code, env, needle)


def test_serve_certfile_that_is_not_a_certificate(tmp_path: Path) -> None:
    bogus = tmp_path / "cert.pem"
    bogus.write_text("not a certificate\n")
    code, env = _run("serve", "--certfile", str(bogus))
    _one_line_usage(code, env, "--certfile")


@pytest.mark.parametrize(
    "content", ["root:*:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n", "hello world\n"]
)
def test_a_file_that_is_not_nginx_config_is_a_usage_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "shadow"
    path.write_text(content)
    code, env = _run("all", "ws://127.0.0.1:9/", "--nginx-config", str(path))
    _one_line_usage(code, env, "not an nginx configuration")


def _report(*results: Any) -> Report:
    return Report("ws://127.0.0.1:9/", tuple(results), None, 1.0)


def _warned() -> Report:
    warn = causes.require("tls.expires-soon").warn("tls", "the certificate expires in 3 days", "renew it")
    return _report(ok("dns", "resolves"), warn)


def test_junit_warning_is_a_failure_only_under_fail_on_warn() -> None:
    from lokin_doctor.formats import render

    i18n.set_language("en")
    lenient = render("junit", [_warned()])
    assert "<failure" not in lenient and 'failures="0"' in lenient
    assert "warning: the certificate expires in 3 days" in lenient  # still said, in system-out
    strict = render("junit", [_warned()], fail_on_warn=True)
    assert '<failure type="tls.expires-soon"' in strict and 'failures="1"' in strict
    assert _warned().exit_code(strict=False) == 0 and _warned().exit_code(strict=True) == 1


def test_every_format_returns_a_string_text_included() -> None:
    from lokin_doctor.formats import FORMATS, render

    i18n.set_language("en")
    for fmt in FORMATS:
        out = render(fmt, [_warned()])
        assert isinstance(out, str) and out.endswith("\n") and "tls" in out
    plain = render("text", [_warned()])
    assert "\x1b[" not in plain
    assert "\x1b[" in render("text", [_warned()], colors=True)


def test_colour_is_chosen_from_the_injected_environment() -> None:
    from lokin_doctor.environment import MockEnvironment as Mock

    assert Mock({}, stdout_isatty=True).colors
    assert not Mock({"NO_COLOR": "1"}, stdout_isatty=True).colors
    assert not Mock({"TERM": "dumb"}, stdout_isatty=True).colors
    assert not Mock({}, stdout_isatty=False).colors


def test_check_port_runs_firewall_and_check_process_supervisor() -> None:
    import json

    code, env = _run("check-port", "ws://127.0.0.1:9/", "--json")
    ids = [c["id"] for c in json.loads(env.out)["checks"]]
    assert "port" in ids and "firewall" in ids, ids
    code, env = _run("check-process", "ws://127.0.0.1:9/", "--json")
    ids = [c["id"] for c in json.loads(env.out)["checks"]]
    assert "process" in ids and "supervisor" in ids, ids


def test_strict_is_fail_on_warn() -> None:
    from lokin_doctor.cli import _fail_on

    assert _fail_on(True, "fail") and _fail_on(False, "warn") and not _fail_on(False, "fail")
