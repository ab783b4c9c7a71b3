"""``--browser`` options: validated before any traffic (exit 2, one line), and no Playwright without it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import RESOLVER_RULES, connect_script
from tests.helpers import run_cli
from tests.peers._common import free_port

REPO = Path(__file__).resolve().parents[2]


def test_all_without_browser_does_not_import_playwright() -> None:
    port = free_port()
    code = (
        "import sys\n"
        "from lokin_doctor.cli import app\n"
        f"try:\n    app(['all', 'ws://127.0.0.1:{port}/', '--json', '--timeout', '1'], standalone_mode=False)\n"
        "except SystemExit:\n    pass\n"
        "print('playwright' in sys.modules, 'lokin_doctor.instruments.chromium' in sys.modules, "
        "'lokin_doctor.runner' in sys.modules)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    assert proc.stdout.strip().splitlines()[-1] == "False False True", proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--browser"], "--browser needs --page-url"),
        (
            ["--page-url", "http://127.0.0.1:9/", "--browser-path", "/usr/bin/chromium"],
            "--browser-path needs --browser",
        ),
        (
            ["--page-url", "http://127.0.0.1:9/", "--browser", "--browser-path", "/nonexistent/chrome"],
            "--browser-path '/nonexistent/chrome' is not an executable file",
        ),
        (
            ["--page-url", "http://127.0.0.1:9/", "--browser", "--browser-arg", "headless"],
            "invalid --browser-arg 'headless'",
        ),
    ],
)
def test_bad_browser_options(args: list[str], says: str) -> None:
    run = run_cli("all", *args)
    assert run.code == 2, run.stderr
    assert run.stdout == ""
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], run.stderr


def test_no_browser_found_names_the_install_command(tmp_path: Path) -> None:
    env = {"PATH": str(tmp_path), "HOME": str(tmp_path), "PLAYWRIGHT_BROWSERS_PATH": str(tmp_path)}
    run = run_cli("probe-wss", "--page-url", "http://127.0.0.1:9/", "--browser", env=env)
    assert run.code == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert "no Chromium or Chrome found" in lines[0] and "apt-get install chromium" in lines[0]


def test_playwrights_own_chromium_is_found(tmp_path: Path, page_server: Any) -> None:
    # No browser on PATH; a Chromium where `playwright install chromium` puts it: that one is used.
    binary = Path("/usr/lib/chromium/chromium")  # Debian's real binary behind /usr/bin/chromium
    if not binary.exists():
        pytest.skip(f"{binary} not found")
    exe = tmp_path / "ms-playwright" / "chromium-1234" / "chrome-linux" / "chrome"
    exe.parent.mkdir(parents=True)
    exe.symlink_to(binary)
    (tmp_path / "bin").mkdir()
    srv = page_server()
    page = srv.page("/", connect_script(f"'{srv.ws_url()}'"))
    env = {"PATH": str(tmp_path / "bin"), "PLAYWRIGHT_BROWSERS_PATH": str(tmp_path / "ms-playwright")}
    run = run_cli(
        "all",
        "--page-url",
        page,
        "--browser",
        "--browser-arg",
        RESOLVER_RULES,
        "--json",
        "--timeout",
        "10",
        env=env,
    )
    b = run.check("browser")
    assert b["status"] == "ok", run.stdout
    assert b["evidence"]["browser"]["executable"] == str(exe)


def test_a_binary_that_is_not_a_browser_is_a_finding(page_server: Any) -> None:
    srv = page_server()
    page = srv.page("/", connect_script(f"'{srv.ws_url()}'"))
    run = run_cli(
        "all", "--page-url", page, "--browser", "--browser-path", "/bin/true", "--json", "--timeout", "5"
    )
    assert run.code == 1
    assert run.root_code == "browser.launch-failed", run.stdout
    summary = run.report["root_cause"]["summary"]
    assert summary.startswith("Chromium (/bin/true) could not load") and "\n" not in summary
    assert run.check("session")["status"] == "ok"  # the chain ran on the derived URL all the same
