#!/usr/bin/env python3
"""The same welcome and echo as bench/node/echo_server.js on picows (a Cython WebSocket library for
asyncio), uvloop: what a compiled protocol core would give serve (bench/RESULTS.md section 8).

    python bench/picows_server.py PORT        # HOST=127.0.0.1 by default; pip install picows

Single-frame messages only (the load client sends no fragments); pings are answered by picows; a
close frame is answered and the connection closed. Loopback only by default.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import string
import sys

import picows
from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, WSUpgradeRequest

_ALPHABET = string.ascii_lowercase + string.digits


class Echo(WSListener):  # type: ignore[misc]
    def on_ws_connected(self, transport: WSTransport) -> None:
        client_id = "user_" + "".join(random.choices(_ALPHABET, k=9))
        transport.send(WSMsgType.TEXT, json.dumps({"type": "welcome", "clientId": client_id}).encode())

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is WSMsgType.TEXT or frame.msg_type is WSMsgType.BINARY:
            transport.send(frame.msg_type, frame.get_payload_as_memoryview())
        elif frame.msg_type is WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code() if frame.payload_size >= 2 else WSCloseCode.OK)
            transport.disconnect()


def factory(request: WSUpgradeRequest) -> Echo:
    return Echo()


async def main(port: int) -> None:
    server = await picows.ws_create_server(
        factory,
        os.environ.get("HOST", "127.0.0.1"),
        port,
        websocket_handshake_timeout=10,
        backlog=2048,
        # picows allocates this per connection (16 KiB by default); PICOWS_READ_BUFFER=2048 to compare memory
        read_buffer_init_size=int(os.environ.get("PICOWS_READ_BUFFER", "16384")),
    )
    print(f"ready on port {port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    import uvloop

    uvloop.run(main(int(sys.argv[1])))
