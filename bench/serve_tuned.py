#!/usr/bin/env python3
"""``lokin-doctor serve`` with tuning applied from the outside, to measure recommendations without
editing lokin_doctor/server (another engineer's code).

    python bench/serve_tuned.py [--gc-threshold 50000,20,100] [--gc-freeze] [--max-queue N]
                                [--write-limit BYTES] [--no-uvloop] [--drop-headers] -- SERVE-ARGS...

Unknown arguments go to ``lokin-doctor serve`` unchanged (``--port``, ``-q``, ``--ping-interval 0``...).
Defaults apply the set recommended in bench/RESULTS.md (R1, R2): ``--gc-threshold 50000,20,100 --gc-freeze
--drop-headers``.
``--plain`` applies nothing (same as ``lokin-doctor serve``).

* ``--gc-threshold``: ``gc.set_threshold``; the default (700, 10, 10) runs a generation-0 collection every
  700 container allocations, and with 10,000 connections alive each older-generation pass walks every
  websockets object of every connection.
* ``--gc-freeze``: ``gc.freeze()`` once the server listens: everything allocated at start-up (modules,
  classes, the app) moves to the permanent generation and is never traversed again.
* ``--max-queue`` / ``--write-limit``: passed to ``websockets.asyncio.server.serve``.
* ``--drop-headers``: once a connection is open, forget the handshake's request headers and response
  (websockets keeps both on the connection for its whole life).
"""

from __future__ import annotations

import argparse
import gc
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("--plain", action="store_true")
    ap.add_argument("--gc-threshold", default="50000,20,100")
    ap.add_argument("--gc-freeze", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--max-queue", type=int, default=None)
    ap.add_argument("--write-limit", type=int, default=None)
    ap.add_argument("--no-uvloop", action="store_true")
    ap.add_argument("--drop-headers", action=argparse.BooleanOptionalAction, default=True)
    ns, rest = ap.parse_known_args()
    if rest and rest[0] == "--":
        rest = rest[1:]

    import lokin_doctor.server.app as app_mod

    if not ns.plain:
        if ns.gc_threshold:
            gc.set_threshold(*(int(x) for x in ns.gc_threshold.split(",")))
        extra: dict[str, Any] = {}
        if ns.max_queue is not None:
            extra["max_queue"] = ns.max_queue or None
        if ns.write_limit is not None:
            extra["write_limit"] = ns.write_limit
        if extra:
            original_serve = app_mod.serve

            def serve(*args: Any, **kwargs: Any) -> Any:
                kwargs.update(extra)
                return original_serve(*args, **kwargs)

            app_mod.serve = serve  # type: ignore[assignment]
        if ns.drop_headers:
            from websockets.datastructures import Headers

            _NO_HEADERS = Headers()

            original_handler = app_mod.LokinServer._handler

            async def _handler(self: Any, connection: Any) -> None:
                # The handshake is over: its headers (~2.5 KB) are not needed. The same Request object
                # is also held by the suspended frame of ServerProtocol.parse(), so drop its headers
                # rather than the reference.
                connection.request.headers = _NO_HEADERS
                connection.response = None
                await original_handler(self, connection)

            app_mod.LokinServer._handler = _handler  # type: ignore[method-assign]
        if ns.gc_freeze:
            original_start = app_mod.LokinServer.start

            async def start(self: Any) -> None:
                await original_start(self)
                gc.collect()
                gc.freeze()

            app_mod.LokinServer.start = start  # type: ignore[method-assign]
    if ns.no_uvloop:
        import lokin_doctor.commands.serve as serve_cmd

        serve_cmd._loop_factory = lambda: None  # type: ignore[attr-defined]

    from lokin_doctor.cli import main as cli_main

    sys.argv = ["lokin-doctor", "serve", *rest]
    cli_main()


if __name__ == "__main__":
    main()
