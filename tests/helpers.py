"""Run the CLI (in-process by default, through ``cli.main`` with an injected environment; in a subprocess
with ``subprocess=True``, as a user would) and read its JSON report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any


@dataclass
class CliRun:
    code: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def report(self) -> dict[str, Any]:
        return json.loads(self.stdout)  # type: ignore[no-any-return]

    def check(self, check_id: str) -> dict[str, Any]:
        for c in self.report["checks"]:
            if c["id"] == check_id:
                return c  # type: ignore[no-any-return]
        raise AssertionError(f"no {check_id} check in {self.stdout}")

    @property
    def root_code(self) -> str | None:
        rc = self.report["root_cause"]
        return rc["code"] if rc else None


def _loop_running() -> bool:
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60.0, subprocess: bool = False
) -> CliRun:
    """``lokin-doctor ARGS``: ``cli.main(args, MockEnvironment)`` in-process, or ``python -m lokin_doctor``
    when ``subprocess`` (or from inside a running event loop); fails the test on a traceback."""
    full_env = {**os.environ, "NO_COLOR": "1", **(env or {})}
    full_env.pop("LOKIN_URL", None) if env is None or "LOKIN_URL" not in env else None
    t0 = time.monotonic()
    # --embedded serves from the running process: in-process, the port's owner would be pytest. Help texts
    # are translated when the CLI module is imported: another language than the imported one needs a process.
    from lokin_doctor import i18n

    lang = i18n.lang_from_argv(args) or i18n.env_language(full_env)
    in_process = "--embedded" not in args and lang == "en" and not _loop_running()
    if not subprocess and in_process:
        from lokin_doctor.cli import main
        from lokin_doctor.environment import MockEnvironment

        mock = MockEnvironment(full_env)
        code = main(list(args), mock)
        run = CliRun(code, mock.out, mock.err, time.monotonic() - t0)
        assert "Traceback" not in run.stderr, run.stderr
        assert "Traceback" not in run.stdout, run.stdout
        return run
    return _spawn(args, full_env, timeout, t0)


def _spawn(args: tuple[str, ...], full_env: dict[str, str], timeout: float, t0: float) -> CliRun:

    proc = subprocess.run(
        [sys.executable, "-m", "lokin_doctor", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        stdin=subprocess.DEVNULL,
    )
    run = CliRun(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - t0)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stdout, proc.stdout
    return run
