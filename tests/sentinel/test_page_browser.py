"""The status page in a real headless Chromium (Debian's, driven by Playwright): it shows the incident the test
caused (a real ``serve`` killed under a real sentinel), fits a phone's screen, and runs nothing the server's
Content-Security-Policy forbids.

Needs /usr/bin/chromium and the playwright package (never ``playwright install``); missing either: skipped
locally, a failure when ``CI`` is set.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.peers._common import free_port
from tests.sentinel.e2ekit import (  # noqa: F401
    SentinelProcess,
    WebhookSink,
    sentinel_process_fixture,
    serve_process_fixture,
    until,
    webhook_fixture,
)
from tests.server.conftest import ServeProcess

# The same headless Chromium as the test page's tests (skipped locally, a failure under CI when missing).
from tests.server.test_page_browser import (
    ARTIFACTS,
    browser_fixture,  # noqa: F401 - the fixture "browser"
)

if TYPE_CHECKING:
    from playwright.async_api import Browser

pytestmark = pytest.mark.browser
SCREENSHOT = ARTIFACTS / "sentinel-page.png"


async def test_the_page_shows_the_incident_the_test_caused_on_a_phone(
    tmp_path: Path,
    browser: Browser,
    serve_process: Callable[..., ServeProcess],
    sentinel_process: Callable[..., SentinelProcess],
    webhook: WebhookSink,
) -> None:
    port = free_port()
    url = f"ws://127.0.0.1:{port}/"
    serve = serve_process("--host", "127.0.0.1", "--port", str(port))
    serve.ready_port()
    sentinel = sentinel_process(
        url, "--every", "1", "--jitter", "0", "--confirm", "2", "--history", str(tmp_path / "h.sqlite"),
        "--metrics-port", "0", "--webhook", webhook.url,
    )  # fmt: skip
    page_url = sentinel.page_url()
    until(lambda: webhook.bodies or serve.proc.poll() is None, "the sentinel running")
    serve.stop()  # the incident
    until(lambda: "down" in webhook.states(), "the sentinel's down alert")
    code = next(b["root_cause"] for b in webhook.bodies if b["state"] == "down")

    context = await browser.new_context(viewport={"width": 375, "height": 740}, device_scale_factor=2)
    page = await context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    await page.goto(page_url, wait_until="load")

    section = page.locator("section.target").first
    assert await section.get_attribute("data-status") == "fail"
    assert (await section.locator("h2 .badge").text_content()) == code
    assert "failing since" in (await section.locator(".verdict").inner_text())
    row = section.locator("table.incidents tbody tr").first
    assert await row.get_attribute("class") == "ongoing"
    assert "ongoing" in (await row.inner_text())
    href = await row.locator("a").get_attribute("href")
    assert href is not None and re.fullmatch(r"/runs/\d+", href)
    first_code = await row.get_attribute("data-code")  # the first failing run's (the kill may cut one)
    assert first_code
    # The timelines draw it: a failing band, coloured, in the 24-hour strip.
    failing = section.locator("svg.timeline").first.locator('rect[data-state="3"]')
    assert await failing.count() >= 1
    assert (await failing.first.bounding_box() or {}).get("width", 0) > 0
    # A phone: nothing wider than the screen, the SVGs scaled to it.
    widths = await page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], widths
    svg_box = await section.locator("svg.timeline").first.bounding_box()
    assert svg_box is not None and svg_box["width"] <= 375
    # The full report, one click away, is the stored one.
    await row.locator("a").click()
    await page.wait_for_load_state("load")
    assert "/runs/" in page.url
    assert first_code in (await page.locator("#report").inner_text())
    await page.go_back()
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert not errors, errors  # the CSP (no script, nothing from elsewhere) refused nothing
    await context.close()
    assert sentinel.terminate() == 0
