"""A broadcast to every open connection of this process (the local half of ``LokinServer.broadcast``).

No backpressure from the receivers (as websockets' ``broadcast``): a target whose write buffer
already holds more than ``limit`` bytes is closed with 1008 instead of being sent more.

Without extensions a server frame is the same bytes for every client, so it is serialized once and
written to each transport (bench/RESULTS.md section 8.2); a client's replies already queued in its
protocol go out first, so the order it sees is unchanged. With permessage-deflate each connection
compresses with its own context: one frame per connection, through its protocol.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from websockets.frames import Frame, Opcode
from websockets.protocol import State

if TYPE_CHECKING:
    from lokin_doctor.server.connection import LokinConnection

_OPEN = State.OPEN
_TOO_SLOW = "too slow: not reading its messages"


def deliver(clients: Iterable[LokinConnection], payload: bytes, *, per_connection: bool, limit: int) -> int:
    """Send the text message ``payload`` to every open connection of ``clients``; how many got it."""
    if per_connection:
        return _each(clients, payload, limit)
    frame = Frame(Opcode.TEXT, payload).serialize(mask=False)
    sent = 0
    for target in clients:
        protocol = target.protocol
        if protocol.state is not _OPEN:
            continue
        transport = target.transport
        if transport.get_write_buffer_size() > limit:
            protocol.fail(1008, _TOO_SLOW)
            target.flush()
            continue
        if protocol.writes:  # replies queued earlier in this event go out first, in order
            target.flush()
        if not transport.is_closing():
            transport.write(frame)
            sent += 1
    return sent


def _each(clients: Iterable[LokinConnection], payload: bytes, limit: int) -> int:
    sent = 0
    for target in clients:
        protocol = target.protocol
        if protocol.state is not _OPEN:
            continue
        if target.transport.get_write_buffer_size() > limit:
            protocol.fail(1008, _TOO_SLOW)
        else:
            protocol.send_text(payload)
            sent += 1
        target.flush()
    return sent
