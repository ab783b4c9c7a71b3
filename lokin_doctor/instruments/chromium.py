"""Drive a real headless Chromium (Playwright over the DevTools Protocol) and record what a page does.

The doctor's ``--browser`` pre-step: load the page, wait (bounded) for the WebSockets its own script
opens, and record for each one its URL, when it was opened, the handshake status, the frames (counts and
the first few), the close code and reason, and the browser's error text; plus the page's console
messages (Chromium's mixed-content and CSP messages, the page's own "Impossible de se connecter…"),
script errors, failed loads and certificate errors. The result is plain data
(:class:`Observation`), written into the run's facts; ``checks/browser.py`` turns it into a verdict.

Playwright is an optional extra (``lokin-doctor[browser]``) and is imported only inside
:func:`observe`: a run without ``--browser`` never loads it. ``playwright install`` is never run: the
browser is the system's (Debian ``chromium``), the one Playwright installed, or ``--browser-path``.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import importlib.util
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Any

#: Frames kept per socket and direction, and characters kept per frame or console line.
MAX_FRAMES = 5
MAX_TEXT = 200
MAX_CONSOLE = 30
#: Sockets recorded per page (a page reconnecting in a tight loop opens hundreds); the rest are counted.
MAX_SOCKETS = 20
#: Once every socket the page opened has settled (closed, failed, or open this long), stop watching.
SETTLE_S = 0.6
#: A socket open this long without a frame is settled too (servers that wait for the client).
OPEN_QUIET_S = 1.0
#: Time past the deadline the browser gets to close (it is killed with Playwright's driver after that).
CLOSE_GRACE_S = 2.0
#: Starting Chromium is local work, not network time: bounded on its own (a loaded machine is slow).
LAUNCH_TIMEOUT_S = 30.0

SYSTEM_BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
INSTALL_HINT = (
    "install one (Debian/Ubuntu: sudo apt-get install chromium; or pip install 'lokin-doctor[browser]' "
    "&& playwright install chromium) or give --browser-path"
)
#: Always passed to Chromium: headless in a sandbox-less container, no traffic of its own.
BASE_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)

# Records every `new WebSocket(...)` the page makes, including the ones the browser refuses before any
# packet (mixed content, CSP), with the close code and reason no DevTools event carries. A Proxy keeps
# `instanceof WebSocket` and the constants working. Runs before the page's own scripts, outside its CSP.
_INIT_SCRIPT = """
(() => {
  const report = window.__lokinDoctorEvent;
  const Native = window.WebSocket;
  if (!Native || typeof report !== 'function') return;
  let n = 0;
  const frame = Math.random().toString(36).slice(2);  // ids are per document: iframes have their own
  const send = (o) => { try { report(JSON.stringify(o)); } catch (e) {} };
  window.WebSocket = new Proxy(Native, {
    construct(target, args, newTarget) {
      const id = frame + ':' + (++n);
      let url = String(args[0]);
      try { url = new URL(url, location.href).href; } catch (e) {}
      send({event: 'created', id, url, t: performance.now()});
      let sock;
      try {
        sock = Reflect.construct(target, args, newTarget);
      } catch (e) {
        send({event: 'throw', id, url, error: String(e && e.name || e) + ': ' + String(e && e.message || '')});
        throw e;
      }
      sock.addEventListener('open', () => send({event: 'open', id, url, t: performance.now()}));
      sock.addEventListener('error', () => send({event: 'error', id, url, t: performance.now()}));
      sock.addEventListener('close', (ev) => send({event: 'close', id, url, code: ev.code,
        reason: ev.reason, clean: ev.wasClean, t: performance.now()}));
      return sock;
    }
  });
})();
"""


LOAD_TIMEOUT = "the page did not finish loading in the time the browser had"


class BrowserMissingError(RuntimeError):
    """No usable browser or no Playwright: the message is one line with the install command."""


def find_browser(path: str | None) -> str:
    """The Chromium executable to use: ``path``, the system's, or Playwright's own.

    Raises:
        BrowserMissingError: when Playwright is not installed or no Chromium exists.
    """
    if importlib.util.find_spec("playwright") is None:
        raise BrowserMissingError(
            "--browser needs the playwright package: pip install 'lokin-doctor[browser]'"
        )
    if path is not None:
        found = shutil.which(path) if os.sep not in path else path
        if not found or not os.path.isfile(found) or not os.access(found, os.X_OK):
            raise BrowserMissingError(
                f"--browser-path {path!r} is not an executable file; give the path of a Chromium or "
                "Chrome binary, e.g. /usr/bin/chromium"
            )
        return found
    for name in SYSTEM_BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    roots = [os.environ.get("PLAYWRIGHT_BROWSERS_PATH") or "", os.path.expanduser("~/.cache/ms-playwright")]
    for root in roots:
        if not root:
            continue
        for pattern in ("chromium-*/chrome-linux*/chrome", "chromium_headless_shell-*/*/headless_shell"):
            hits = sorted(glob.glob(os.path.join(root, pattern)), reverse=True)
            if hits:
                return hits[0]
    raise BrowserMissingError(f"--browser: no Chromium or Chrome found; {INSTALL_HINT}")


def certutil_path() -> str | None:
    return shutil.which("certutil")


@dataclass(eq=False)  # compared by identity: two sockets to one URL are two sockets
class SocketSeen:
    """One WebSocket the page opened, as the browser saw it.

    Attributes:
        url: the URL passed to ``new WebSocket``.
        opened_ms: when the page opened it, in ms after navigation started.
        status: the handshake's HTTP status (101 on success), when one came back.
        state: ``open`` (handshake done, still open), ``closed``, ``failed`` (never opened),
            ``blocked`` (refused by the browser before any packet), ``connecting`` (no answer yet).
        error: the browser's own error text (e.g. "Error during WebSocket handshake: Unexpected
            response code: 404", "net::ERR_CONNECTION_REFUSED", a SecurityError).
        frames_sent, frames_received: counts of data frames.
        first_sent, first_received: the first :data:`MAX_FRAMES` of each, each capped at
            :data:`MAX_TEXT` characters.
        close_code, close_reason, close_clean: from the page's ``close`` event.
        response_headers: the handshake response's headers, when one came back.
    """

    url: str
    opened_ms: float | None = None
    status: int | None = None
    state: str = "connecting"
    error: str | None = None
    frames_sent: int = 0
    frames_received: int = 0
    first_sent: list[str] = field(default_factory=list)
    first_received: list[str] = field(default_factory=list)
    close_code: int | None = None
    close_reason: str | None = None
    close_clean: bool | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    _open_at: float | None = field(default=None, repr=False)
    _settled_at: float | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if not k.startswith("_")}


@dataclass
class Observation:
    """What the browser saw while loading the page (plain data; ``to_dict`` for the JSON report).

    Attributes:
        page_url: the URL loaded.
        final_url: where it ended (after redirects).
        page_status: the main document's HTTP status, when it loaded.
        load_error: Chromium's net error when the page did not load (``net::ERR_CERT_...``).
        sockets: every WebSocket the page opened, in order.
        console: console lines ``"level: text"`` (the page's and Chromium's own), capped.
        page_errors: uncaught script errors.
        failed_requests: sub-resources that failed ``"URL: net::ERR_..."``.
        waited_s: how long the page was watched after its response arrived.
        browser: executable and version.
        error: the browser could not be started or driven (then nothing else is known).
        called_connect: the page had no socket of its own and exposed ``window.lokin.connect()``,
            which was called once (``serve``'s test page).
        launch_ms: how long Chromium took to start (not counted in ``--timeout``).
        sockets_not_recorded: sockets opened past :data:`MAX_SOCKETS`, counted only.
        loaded: the page reached its ``load`` event within the window (None: it never answered).
        page_said: the page's own first error or warning on the console (not Chromium's), e.g.
            "Impossible de se connecter au serveur".
        ready_at: event-loop time when the browser was up and the page load began.
    """

    page_url: str
    final_url: str | None = None
    page_status: int | None = None
    load_error: str | None = None
    sockets: list[SocketSeen] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    waited_s: float = 0.0
    browser: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    called_connect: bool = False
    launch_ms: float | None = None
    ready_at: float | None = None
    loaded: bool | None = None
    page_said: str | None = None
    sockets_not_recorded: int = 0

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k not in ("sockets", "ready_at")}
        out["sockets"] = [s.to_dict() for s in self.sockets]
        return out


#: Console lines Chromium writes itself about a connection (kept whatever the page logs before them).
_BROWSER_VERDICT = re.compile(
    r"^(Mixed Content:|WebSocket connection to |Connecting to '.*' violates|Refused to connect)"
)


def _cap(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def _frame_text(payload: str | bytes) -> str:
    if isinstance(payload, bytes):
        return f"<{len(payload)} bytes binary>"
    return _cap(payload)


def _nss_home(ca_file: str, certutil: str) -> str:
    """A temporary HOME whose NSS database trusts ``ca_file`` (what Chromium on Linux reads)."""
    home = tempfile.mkdtemp(prefix="lokin-doctor-browser-")
    db = os.path.join(home, ".pki", "nssdb")
    os.makedirs(db)
    subprocess.run(
        [certutil, "-N", "-d", f"sql:{db}", "--empty-password"], check=True, capture_output=True, timeout=10
    )
    pems = _split_pems(ca_file)
    for i, pem in enumerate(pems):
        path = os.path.join(home, f"ca-{i}.pem")
        with open(path, "w", encoding="ascii") as fh:
            fh.write(pem)
        subprocess.run(
            [certutil, "-A", "-d", f"sql:{db}", "-t", "C,,", "-n", f"lokin-doctor-ca-{i}", "-i", path],
            check=True,
            capture_output=True,
            timeout=10,
        )
    return home


def _split_pems(ca_file: str) -> list[str]:
    with open(ca_file, encoding="ascii", errors="replace") as fh:
        text = fh.read()
    end = "-----END CERTIFICATE-----"
    out = []
    for chunk in text.split(end):
        start = chunk.find("-----BEGIN CERTIFICATE-----")
        if start >= 0:
            out.append(chunk[start:] + end + "\n")
    return out


class _Recorder:
    """Collects the page's events; the callbacks run on the event loop, in Playwright's order."""

    def __init__(self, obs: Observation, t0: float) -> None:
        self.obs = obs
        self.t0 = t0
        self.by_id: dict[str, SocketSeen] = {}  # init-script id -> socket
        self.by_request: dict[str, SocketSeen] = {}  # DevTools requestId -> socket
        self.changed = asyncio.Event()
        # Three sources see each socket once, in no fixed order (the init script, Playwright's
        # WebSocket object, DevTools): each ties itself to the first socket of that URL it has not.
        self._tied: dict[str, set[int]] = {"init": set(), "playwright": set(), "devtools": set()}

    def _now(self) -> float:
        return time.monotonic()

    def _new(self, url: str, *, count: bool = False) -> SocketSeen:
        """A socket seen for the first time; past :data:`MAX_SOCKETS` it is tracked but not reported
        (``count``: the init script's record, the one source that sees each socket once)."""
        sock = SocketSeen(url=url, opened_ms=round((self._now() - self.t0) * 1000, 1))
        if len(self.obs.sockets) < MAX_SOCKETS:
            self.obs.sockets.append(sock)
        elif count:
            self.obs.sockets_not_recorded += 1
        return sock

    def _take(self, source: str, url: str) -> SocketSeen:
        tied = self._tied[source]
        bare = url.rstrip("/")
        for sock in self.obs.sockets:
            if sock.url.rstrip("/") == bare and id(sock) not in tied:
                break
        else:
            sock = self._new(url, count=source == "init")
        tied.add(id(sock))
        return sock

    def settle(self, sock: SocketSeen, state: str) -> None:
        if sock.state in ("closed", "failed", "blocked") and state == "closed":
            return
        sock.state = state
        if sock._settled_at is None:
            sock._settled_at = self._now()
        self.changed.set()

    # --- the init script (window.__lokinDoctorEvent) ---
    def page_event(self, raw: str) -> None:
        import json

        try:
            ev = json.loads(raw)
        except ValueError:
            return
        url = str(ev.get("url", ""))
        sid = str(ev.get("id", ""))
        kind = ev.get("event")
        if kind == "created":
            self.by_id[sid] = self._take("init", url)
        sock = self.by_id.get(sid)
        if sock is None:
            return
        if kind == "throw":
            sock.error = str(ev.get("error"))
            self.settle(sock, "blocked")
        elif kind == "open":
            sock.state = "open"
            sock._open_at = self._now()
            if sock.status is None:
                sock.status = 101
        elif kind == "error":
            if sock.state in ("connecting",):
                self.settle(sock, "failed")
        elif kind == "close":
            sock.close_code = ev.get("code")
            sock.close_reason = ev.get("reason") or None
            sock.close_clean = ev.get("clean")
            self.settle(sock, "closed" if sock._open_at is not None else "failed")
        self.changed.set()

    # --- Playwright's WebSocket object ---
    def websocket(self, ws: Any) -> None:
        sock = self._take("playwright", ws.url)

        def sent(payload: str | bytes) -> None:
            sock.frames_sent += 1
            if len(sock.first_sent) < MAX_FRAMES:
                sock.first_sent.append(_frame_text(payload))
            self.changed.set()

        def received(payload: str | bytes) -> None:
            sock.frames_received += 1
            if len(sock.first_received) < MAX_FRAMES:
                sock.first_received.append(_frame_text(payload))
            self.changed.set()

        def error(text: str) -> None:
            sock.error = _cap(str(text))
            self.changed.set()

        ws.on("framesent", sent)
        ws.on("framereceived", received)
        ws.on("socketerror", error)

    # --- DevTools Network events (handshake status and headers) ---
    def ws_created(self, params: dict[str, Any]) -> None:
        self.by_request[str(params.get("requestId"))] = self._take("devtools", str(params.get("url", "")))

    def ws_response(self, params: dict[str, Any]) -> None:
        sock = self.by_request.get(str(params.get("requestId")))
        if sock is None:
            return
        response = params.get("response") or {}
        status = response.get("status")
        if isinstance(status, int):
            sock.status = status
        headers = response.get("headers") or {}
        sock.response_headers = {str(k): _cap(str(v)) for k, v in list(headers.items())[:20]}

    def ws_frame_error(self, params: dict[str, Any]) -> None:
        sock = self.by_request.get(str(params.get("requestId")))
        if sock is not None and params.get("errorMessage"):
            sock.error = _cap(str(params["errorMessage"]))
            self.changed.set()

    # --- the page ---
    def console(self, msg: Any) -> None:
        where = str((msg.location or {}).get("url") or "")
        if where.endswith("/favicon.ico"):
            return  # Chromium asks for one on every page; its 404 says nothing about the WebSocket
        text = str(msg.text)
        # Chromium's own verdicts are kept even past a chatty page's first lines.
        room = 2 * MAX_CONSOLE if _BROWSER_VERDICT.search(text) else MAX_CONSOLE
        if len(self.obs.console) < room:
            self.obs.console.append(f"{msg.type}: {_cap(text)}")
        if (
            msg.type in ("error", "warning")
            and self.obs.page_said is None
            and not _BROWSER_VERDICT.search(text)
            and not text.startswith("Failed to load resource")
        ):
            self.obs.page_said = _cap(text)
        self.changed.set()

    def page_error(self, exc: Any) -> None:
        if len(self.obs.page_errors) < MAX_CONSOLE:
            self.obs.page_errors.append(_cap(str(exc)))

    def request_failed(self, request: Any) -> None:
        if len(self.obs.failed_requests) < MAX_CONSOLE:
            self.obs.failed_requests.append(f"{_cap(request.url)}: {request.failure}")

    def settled(self) -> bool:
        """Every socket closed, failed, blocked, or open long enough to have shown its first frames."""
        now = self._now()
        if not self.obs.sockets:
            return False
        for sock in self.obs.sockets:
            if sock.state == "open":
                assert sock._open_at is not None
                if sock.frames_received == 0 and now - sock._open_at < OPEN_QUIET_S:
                    return False
                if sock.frames_received and now - sock._open_at < SETTLE_S:
                    return False
            elif sock.state == "connecting":
                return False
        last = max((s._settled_at or s._open_at or 0.0) for s in self.obs.sockets)
        return now - last >= SETTLE_S or all(s.state == "open" for s in self.obs.sockets)


async def observe(
    page_url: str,
    *,
    window: float,
    executable: str,
    ca_file: str | None = None,
    insecure: bool = False,
    extra_args: tuple[str, ...] = (),
    launch_timeout: float = LAUNCH_TIMEOUT_S,
) -> Observation:
    """Start headless Chromium (within ``launch_timeout`` s), then load ``page_url`` and watch it for
    ``window`` seconds at most; ``Observation.ready_at`` says when that window began.

    Never raises for browser trouble: a browser that cannot start becomes ``Observation.error``.
    """
    loop = asyncio.get_running_loop()
    obs = Observation(page_url=page_url, browser={"executable": executable})
    home: str | None = None
    try:
        if ca_file:
            certutil = certutil_path()
            if certutil is None:  # the CLI checks this first; a clear message all the same
                obs.error = "--ca-file with --browser needs certutil (sudo apt-get install libnss3-tools)"
                return obs
            home = await asyncio.to_thread(_nss_home, ca_file, certutil)
        # The watch ends on time by itself; this bound only covers a browser that hangs.
        async with asyncio.timeout(launch_timeout + window + CLOSE_GRACE_S):
            await _drive(obs, page_url, window, launch_timeout, executable, home, insecure, extra_args)
    except TimeoutError:
        if obs.page_status is None and obs.load_error is None and not obs.sockets:
            obs.error = obs.error or f"Chromium did not start or answer within {launch_timeout:g} s"
    except Exception as exc:  # a browser that will not start is a finding, not a crash
        obs.error = _cap(f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}")
    finally:
        if home is not None:
            shutil.rmtree(home, ignore_errors=True)
    if obs.ready_at is None:
        obs.ready_at = loop.time()
    return obs


async def _drive(
    obs: Observation,
    page_url: str,
    window: float,
    launch_timeout: float,
    executable: str,
    home: str | None,
    insecure: bool,
    extra_args: tuple[str, ...],
) -> None:
    from playwright.async_api import Error as PlaywrightError
    from playwright.async_api import async_playwright

    loop = asyncio.get_running_loop()
    env = {**os.environ, "HOME": home} if home else None
    started = loop.time()
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=executable,
            headless=True,
            args=[*BASE_ARGS, *extra_args],
            env=env,  # type: ignore[arg-type]
            timeout=launch_timeout * 1000,
        )
        try:
            obs.browser["version"] = browser.version
            context = await browser.new_context(ignore_https_errors=insecure)
            page = await context.new_page()
            t0 = time.monotonic()
            rec = _Recorder(obs, t0)
            await context.expose_function("__lokinDoctorEvent", rec.page_event)
            await context.add_init_script(script=_INIT_SCRIPT)
            page.on("websocket", rec.websocket)
            page.on("console", rec.console)
            page.on("pageerror", rec.page_error)
            page.on("requestfailed", rec.request_failed)
            cdp = await context.new_cdp_session(page)
            cdp.on("Network.webSocketCreated", rec.ws_created)
            cdp.on("Network.webSocketHandshakeResponseReceived", rec.ws_response)
            cdp.on("Network.webSocketFrameError", rec.ws_frame_error)
            await cdp.send("Network.enable")
            obs.ready_at = loop.time()
            obs.launch_ms = round((obs.ready_at - started) * 1000, 1)
            deadline = obs.ready_at + window
            remaining_ms = max(1.0, (deadline - loop.time()) * 1000)
            try:
                # "commit": the response arrived (net and certificate errors are raised before it).
                response = await page.goto(page_url, wait_until="commit", timeout=remaining_ms)
            except PlaywrightError as exc:
                text = str(exc).strip().splitlines()[0] if str(exc) else type(exc).__name__
                if "Timeout" in type(exc).__name__ or "Timeout" in text:
                    obs.load_error = LOAD_TIMEOUT
                else:
                    obs.load_error = _cap(text.removeprefix("Page.goto: "))
                return
            obs.final_url = page.url
            obs.page_status = response.status if response is not None else None
            loaded = time.monotonic()
            try:
                # A page whose image or script hangs may still open its socket: watch it meanwhile.
                await page.wait_for_load_state("load", timeout=max(1.0, (deadline - loop.time()) * 1000))
                obs.loaded = True
            except PlaywrightError:
                obs.loaded = False
            if obs.loaded and not obs.sockets:
                with contextlib.suppress(PlaywrightError):
                    # serve's test page connects on a click; it exposes window.lokin.connect() for that.
                    called = await page.evaluate(
                        "() => { const l = window.lokin; if (l && typeof l.connect === 'function' "
                        "&& !window.__lokinDoctorCalled) { window.__lokinDoctorCalled = true; l.connect(); "
                        "return true; } return false; }"
                    )
                    obs.called_connect = bool(called)
            while loop.time() < deadline and not rec.settled():
                rec.changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.1):
                        await rec.changed.wait()
                obs.waited_s = round(time.monotonic() - loaded, 2)
            obs.waited_s = round(time.monotonic() - loaded, 2)
        finally:
            with contextlib.suppress(Exception):
                await browser.close()
