#!/usr/bin/env python3
"""The baseline of ``doctor_speed.py``: the least a script can do to say "the server answers".

    python bench/bare_client.py ws://127.0.0.1:8080/

Connect (opening handshake), one ping and its pong, close; exit 0, or 1 with the error.
"""

from __future__ import annotations

import asyncio
import sys

from websockets.asyncio.client import connect


async def main(url: str) -> None:
    async with connect(url, open_timeout=5, close_timeout=5) as ws:
        pong = await ws.ping()
        await asyncio.wait_for(pong, 5)


if __name__ == "__main__":
    try:
        asyncio.run(main(sys.argv[1]))
    except Exception as exc:
        sys.stderr.write(f"bare_client: {type(exc).__name__}: {exc}\n")
        sys.exit(1)
