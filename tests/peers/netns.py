"""A sandbox of the test's own for what must fail for real without touching the machine's network or its
DNS configuration: ``unshare -rmn`` (a user, mount and network namespace; no root needed where user
namespaces are allowed) with only a loopback interface (brought up, no route anywhere else, so a connect
to any other address fails at once and no packet leaves the machine), and files of the test bind-mounted
over /etc ones (``resolv.conf``, ``nsswitch.conf``). Inside, an optional DNS responder of our own answers
every query on 127.0.0.1:53 with one rcode; then the CLI runs (``python -m lokin_doctor ARGS``).

``isolated_cli(args, etc={"resolv.conf": "nameserver 127.0.0.1\\n"}, dns_rcode=3) -> CliRun`` (a missing
``unshare`` or a kernel without user namespaces fails the test under ``CI``, skips it otherwise).

:class:`RcodeResponder` is that responder on its own (UDP, one thread, bounded): for ``--dns-server``
pointed at 127.0.0.1:PORT in the test's own process.

``python -m tests.peers.netns SPEC.json`` is the part that runs inside the namespace.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.helpers import CliRun
from tests.peers._common import LOOPBACK, missing, scaled

ROOT = Path(__file__).resolve().parents[2]

#: DNS response codes (RFC 1035, RFC 2136).
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED, YXDOMAIN = 0, 1, 2, 3, 4, 5, 6


def dns_reply(query: bytes, rcode: int) -> bytes | None:
    """The answer to ``query`` with ``rcode``, its question echoed and no records; None if not a query."""
    if len(query) < 12:
        return None
    qid, flags, qdcount = struct.unpack("!HHH", query[:6])
    if flags & 0x8000 or qdcount != 1:
        return None
    end = 12
    while end < len(query) and query[end]:
        end += query[end] + 1
    question = query[12 : end + 5]
    if len(question) < end - 12 + 5:
        return None
    # QR, the query's RD, RA, and the rcode.
    out_flags = 0x8000 | (flags & 0x0100) | 0x0080 | (rcode & 0xF)
    return struct.pack("!HHHHHH", qid, out_flags, 1, 0, 0, 0) + question


class RcodeResponder:
    """A UDP DNS server on ``host:port`` that answers every query with ``rcode`` (a thread; ``stop()``)."""

    def __init__(self, rcode: int, host: str = LOOPBACK, port: int = 0) -> None:
        self.rcode = rcode
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self.sock.settimeout(0.2)
        self.port: int = self.sock.getsockname()[1]
        self.queries = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=f"dns-rcode-{rcode}", daemon=True)

    def start(self) -> RcodeResponder:
        self._thread.start()
        return self

    def _serve(self) -> None:
        deadline = time.monotonic() + 300  # bounded, whatever the test does
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                data, addr = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            reply = dns_reply(data, self.rcode)
            if reply is not None:
                self.queries += 1
                self.sock.sendto(reply, addr)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


def _usable(unshare: str) -> bool:
    probe = subprocess.run([unshare, "-rmn", "true"], capture_output=True, timeout=scaled(10), check=False)
    return probe.returncode == 0


def isolated_cli(
    args: list[str],
    tmp_path: Path,
    *,
    etc: dict[str, str] | None = None,
    dns_rcode: int | None = None,
    timeout: float = 60.0,
    env: dict[str, str] | None = None,
) -> CliRun:
    """``lokin-doctor ARGS`` in a fresh user+mount+network namespace (see the module's docstring)."""
    unshare = shutil.which("unshare") or "/usr/bin/unshare"
    if not os.path.exists(unshare) or not _usable(unshare):
        missing("unshare -rmn does not work here (util-linux, user namespaces)")
    files = {}
    for name, text in (etc or {}).items():
        path = tmp_path / f"etc-{name}"
        path.write_text(text)
        files[f"/etc/{name}"] = str(path)
    spec = tmp_path / "netns.json"
    spec.write_text(json.dumps({"args": args, "files": files, "dns_rcode": dns_rcode, "timeout": timeout}))
    full_env = {**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(ROOT), **(env or {})}
    full_env.pop("LOKIN_URL", None)
    t0 = time.monotonic()
    proc = subprocess.run(
        [unshare, "-rmn", sys.executable, "-m", "tests.peers.netns", str(spec)],
        capture_output=True,
        text=True,
        timeout=scaled(timeout + 15),
        env=full_env,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    run = CliRun(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - t0)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stdout, proc.stdout
    return run


def _inside(spec_path: str) -> int:
    """In the namespace: loopback up, the files mounted, the responder started, then the CLI."""
    spec = json.loads(Path(spec_path).read_text())
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True, timeout=10)
    for target, source in spec["files"].items():
        subprocess.run(["mount", "--bind", source, target], check=True, timeout=10)
    responder = None
    if spec["dns_rcode"] is not None:
        responder = RcodeResponder(int(spec["dns_rcode"]), port=53).start()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "lokin_doctor", *spec["args"]],
            capture_output=True,
            text=True,
            timeout=float(spec["timeout"]),
            stdin=subprocess.DEVNULL,
            check=False,
        )
    finally:
        if responder is not None:
            responder.stop()
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(_inside(sys.argv[1]))


def report_in_netns(unshare: str, lines: list[str], report: Path, *logs: Path) -> dict[str, object]:
    """Run a bash script (``lines``) in a new network namespace (``unshare -n``: root) whose doctor writes its
    JSON report to ``report``; that report (no traceback allowed; the logs are shown when it is empty)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    proc = subprocess.run(
        [unshare, "-n", "bash", "-c", "\n".join(lines)],
        env=env,
        capture_output=True,
        text=True,
        timeout=scaled(60),
        check=False,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    text = report.read_text() if report.exists() else ""
    assert text, proc.stderr + "".join(p.read_text() for p in logs if p.exists())
    return json.loads(text)  # type: ignore[no-any-return]
