"""The runner's contracts: dependency skips, one deadline, crashes become results, root-cause order."""

from __future__ import annotations

import asyncio
import io
import json
import time

import pytest

from lokin_doctor import render
from lokin_doctor.causes import Layer, cause
from lokin_doctor.causes.host import PROCESS_NOT_RUNNING
from lokin_doctor.causes.tcp import TCP_REFUSED
from lokin_doctor.context import Context
from lokin_doctor.model import CheckResult, Report, Status, fail, ok
from lokin_doctor.runner import CheckSpec, UnknownCheckError, root_cause, run_checks, select_checks
from lokin_doctor.settings import build_settings

#: A cause of this test's own check (a check the registry does not know).
FIRST_BROKEN = cause("first.broken", Layer.INTERNAL, "the test check broke", "mend it")


async def _ok(ctx: Context) -> CheckResult:
    return ok("first", "fine")


async def _fails(ctx: Context) -> CheckResult:
    return fail("first", FIRST_BROKEN, "it broke", "mend it")


async def _crashes(ctx: Context) -> CheckResult:
    raise RuntimeError("boom")


async def _hangs(ctx: Context) -> CheckResult:
    await asyncio.sleep(3600)
    raise AssertionError("unreachable")


async def _second(ctx: Context) -> CheckResult:
    return ok("second", "ran after first")


def _spec(check_id: str, func: str, **kw: object) -> CheckSpec:
    return CheckSpec(check_id, check_id, f"tests.test_runner:{func}", **kw)  # type: ignore[arg-type]


async def _run(specs: list[CheckSpec], timeout: float = 5.0) -> dict[str, CheckResult]:
    settings = build_settings("ws://127.0.0.1:9/", timeout=timeout)
    ctx = Context(settings=settings, deadline=asyncio.get_running_loop().time() + timeout)
    results = await run_checks(ctx, specs)
    return {r.id: r for r in results}


async def test_a_failed_prerequisite_skips_its_dependents() -> None:
    results = await _run([_spec("first", "_fails"), _spec("second", "_second", requires=("first",))])
    assert results["second"].status is Status.SKIP
    assert results["second"].summary == "skipped: first failed"


async def test_after_waits_but_does_not_skip() -> None:
    results = await _run([_spec("first", "_fails"), _spec("second", "_second", after=("first",))])
    assert results["second"].status is Status.OK


async def test_a_crash_becomes_an_internal_error_result() -> None:
    results = await _run([_spec("first", "_crashes"), _spec("second", "_second")])
    crashed = results["first"]
    assert crashed.status is Status.FAIL and crashed.code == "internal-error"
    assert "RuntimeError: boom" in crashed.summary and "--debug" in (crashed.hint or "")
    assert results["second"].status is Status.OK  # one check's bug hides nothing else


async def test_a_hung_check_costs_the_deadline_once() -> None:
    t0 = time.monotonic()
    results = await _run([_spec("first", "_hangs"), _spec("second", "_hangs")], timeout=0.5)
    elapsed = time.monotonic() - t0
    assert results["first"].code == "first.timeout" and results["second"].code == "second.timeout"
    assert elapsed < 0.5 + 0.25 + 0.5  # deadline + grace, concurrently: not twice


def test_only_pulls_in_prerequisites_and_rejects_unknown_ids() -> None:
    settings = build_settings("ws://127.0.0.1:9/")
    ids = [c.id for c in select_checks(settings, ["session"])]
    assert {"dns", "tcp", "handshake", "session"} <= set(ids)
    assert "hold" not in ids
    with pytest.raises(UnknownCheckError, match="unknown check 'nope'"):
        select_checks(settings, ["tcp,nope"])


def test_root_cause_is_the_deepest_failure() -> None:
    results = {
        "tcp": fail("tcp", TCP_REFUSED, "refused", "start it"),
        "process": fail("process", PROCESS_NOT_RUNNING, "not running", "start it"),
        "handshake": ok("handshake", "fine"),
    }
    rc = root_cause(results)
    assert rc is not None and rc.code == "process.not-running"
    assert root_cause({"tcp": ok("tcp", "fine")}) is None


def test_warn_and_fail_need_a_code_and_a_hint() -> None:
    with pytest.raises(ValueError):
        CheckResult("x", Status.FAIL, "broken")


def test_render_human_and_json() -> None:
    results = (
        ok("dns", "resolves"),
        fail("tcp", TCP_REFUSED, "refused on 127.0.0.1:9", "start the server"),
    )
    report = Report("ws://127.0.0.1:9/", results, root_cause({r.id: r for r in results}), 12.0)
    from rich.console import Console

    buf = io.StringIO()
    render.print_report(report, console=Console(file=buf, width=100, color_system=None))
    text = buf.getvalue()
    assert "✗ tcp" in text and "→ start the server" in text
    assert "Root cause (tcp, tcp.refused)" in text and "Fix: start the server" in text
    data = json.loads(render.to_json(report))
    assert data["schema"] == 1 and data["status"] == "fail"
    assert data["root_cause"] == {
        "check": "tcp",
        "code": "tcp.refused",
        "summary": "refused on 127.0.0.1:9",
        "hint": "start the server",
    }
    assert [c["id"] for c in data["checks"]] == ["dns", "tcp"]
    assert report.exit_code() == 1
    healthy = Report("u", (ok("dns", "x"),), None, 1.0)
    assert healthy.exit_code() == 0 and healthy.status is Status.OK
