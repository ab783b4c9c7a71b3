"""The test page in a real Chromium: connect, client id, echo, then the retry policy when the
server goes away (ends "failed") or comes back (reconnects).

Needs Debian's chromium at /usr/bin/chromium and the playwright package (never
``playwright install``). Missing either: skipped locally, a failure when ``CI`` is set.
"""

from __future__ import annotations

import importlib.util
import os
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from lokin_doctor.server import ServerConfig, running_server

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
SCREENSHOT = ARTIFACTS / "test-page.png"


def _missing() -> str | None:
    if not os.access(CHROMIUM, os.X_OK):
        return f"{CHROMIUM} not found (apt-get install -y chromium)"
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is not installed (pip install playwright)"
    return None


@pytest.fixture(name="browser")
async def browser_fixture() -> AsyncIterator[Browser]:
    reason = _missing()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield launched
        finally:
            await launched.close()


async def status_is(page: Page, *wanted: str, timeout: float = 5000) -> str:
    """Wait until #status shows one of ``wanted``; return it."""
    await page.wait_for_function(
        "wanted => wanted.includes(document.getElementById('status').textContent)",
        arg=list(wanted),
        timeout=timeout,
    )
    return str(await page.text_content("#status"))


async def attempts(page: Page) -> list[float]:
    # Functions, not expression strings: Playwright evaluates strings with eval(), which the
    # page's Content-Security-Policy (rightly) forbids.
    values: Any = await page.evaluate("() => window.lokinAttempts")
    return [float(v) for v in values]


async def test_page_connects_and_shows_the_client_id(browser: Browser) -> None:
    async with running_server(ServerConfig(port=0, quiet=True)) as server:
        page = await browser.new_page(viewport={"width": 1200, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        await page.goto(server.http_url)
        assert await page.text_content("#status") == "disconnected"
        assert await page.input_value("#url") == server.url  # prefilled from the page location
        await page.click("#connect")
        assert await status_is(page, "connected") == "connected"
        await page.wait_for_function(
            "() => document.getElementById('client-id').textContent.startsWith('user_')"
        )
        client_id = str(await page.text_content("#client-id"))
        assert re.fullmatch(r"user_[0-9a-f]{10}", client_id)
        assert server.connections == 1
        # Round trip measured from the automatic ping, then an echo through the send box.
        await page.wait_for_function("() => /ms$/.test(document.getElementById('diag-rtt').textContent)")
        await page.fill("#message", "bonjour LOK IN")
        await page.click("#send")
        await page.wait_for_function(
            "() => [...document.querySelectorAll('#log .in')].some(e => e.textContent === '\u2190 bonjour LOK IN')"
        )
        assert "1 (OPEN)" in str(await page.text_content("#diag-ready-state"))
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(SCREENSHOT), full_page=True)
        print(f"screenshot: {SCREENSHOT}")
        await page.click("#disconnect")
        assert await status_is(page, "disconnected") == "disconnected"
        assert "1000" in str(await page.text_content("#diag-close-code"))
        assert errors == []


async def test_retries_follow_the_schedule_then_fail(browser: Browser) -> None:
    delay, tries = 150, 5
    async with running_server(ServerConfig(port=0, quiet=True)) as server:
        page = await browser.new_page()
        await page.goto(f"{server.http_url}?retryDelay={delay}&maxRetries={tries}")
        await page.click("#connect")
        await status_is(page, "connected")
        before = len(await attempts(page))
        await server.close()  # clients get 1001; the page starts its retry cycle
        assert await status_is(page, "retrying") == "retrying"
        stopped = time.monotonic()
        assert await status_is(page, "failed", timeout=8000) == "failed"
    elapsed = time.monotonic() - stopped
    retried = (await attempts(page))[before:]
    assert len(retried) == tries  # up to 5 tries, then "failed"
    gaps = [b - a for a, b in zip(retried, retried[1:], strict=False)]
    expected = [delay * 1.5**n for n in range(1, tries)]  # 225, 337.5, 506, 759 ms
    for gap, want in zip(gaps, expected, strict=True):
        assert want - 20 <= gap <= want * 1.25 + 60, (gaps, expected)
    for previous, gap in zip(gaps, gaps[1:], strict=False):
        assert 1.3 <= gap / previous <= 1.7, gaps  # each wait ~1.5x the previous one
    assert elapsed < sum([delay, *expected]) / 1000 + 3
    log = str(await page.text_content("#log"))
    assert "Giving up after 5 tries" in log and "Retry 4 in" in log


async def test_page_reconnects_when_the_server_comes_back(browser: Browser) -> None:
    delay = 200
    async with running_server(ServerConfig(port=0, quiet=True)) as first:
        port = first.port
        page = await browser.new_page()
        await page.goto(f"{first.http_url}?retryDelay={delay}&maxRetries=5")
        await page.click("#connect")
        await status_is(page, "connected")
        await page.wait_for_function(
            "() => document.getElementById('client-id').textContent.startsWith('user_')"
        )
        old_id = await page.text_content("#client-id")
        before = len(await attempts(page))
    # The server is gone: wait for one failed retry, then start it again on the same port.
    await page.wait_for_function("n => window.lokinAttempts.length >= n", arg=before + 1, timeout=5000)
    assert await page.text_content("#status") == "retrying"
    async with running_server(ServerConfig(port=port, quiet=True)) as second:
        assert await status_is(page, "connected", timeout=8000) == "connected"
        await page.wait_for_function(
            "id => document.getElementById('client-id').textContent.startsWith('user_') "
            "&& document.getElementById('client-id').textContent !== id",
            arg=old_id,
        )
        assert second.connections == 1
        assert "Connection established" in str(await page.text_content("#log"))
