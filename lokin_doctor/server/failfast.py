"""Invalid UTF-8 in a text frame that has not fully arrived yet: fail at once (1007).

websockets' sans-I/O parser hands over a frame only once its whole payload is there, so a large
text frame whose first bytes are already invalid UTF-8 would be buffered to the end (up to
``--max-message-size``) before being refused; Autobahn grades that NON-STRICT (6.4.3, 6.4.4).
websockets has no hook for a partial payload, so this module looks at the parser while it
waits: ``Frame.parse`` suspended in ``read_exact(length)`` for the payload, its locals holding
the opcode, RSV1 and mask. It unmasks the bytes received so far and feeds them to an incremental
UTF-8 decoder, remembering how far it got, so each byte is checked once.

Only a *stalled* parser is looked at (the reader buffer still holds bytes after a read): frames
that arrive whole cost nothing here. If websockets' internals change shape (other code objects,
other local names), :func:`check` finds nothing and returns None: the message is then refused at
its end, as before, never crashes. tests/server/test_byte_order.py pins the behaviour.
"""

from __future__ import annotations

import codecs
from typing import TYPE_CHECKING, Any

from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader
from websockets.utils import apply_mask

if TYPE_CHECKING:
    from lokin_doctor.server.connection import LokinProtocol

_FRAME_PARSE = Frame.parse.__func__.__code__  # type: ignore[attr-defined]
_READ_EXACT = StreamReader.read_exact.__code__
_TEXT, _CONT = Opcode.TEXT, Opcode.CONT
_utf8_decoder = codecs.getincrementaldecoder("utf-8")


class Progress:
    """How far the payload of the stalled frame was checked (one per frame, dropped after it)."""

    __slots__ = ("checked", "decoder", "parse")

    def __init__(self, parse: Any, decoder: codecs.IncrementalDecoder) -> None:
        self.parse = parse  # the Frame.parse generator of that frame
        self.checked = 0
        self.decoder = decoder


def _waiting_for_payload(protocol: LokinProtocol) -> tuple[Any, dict[str, Any]] | None:
    """(Frame.parse generator, its locals) when the parser waits for a frame's payload."""
    gen: Any = protocol.parser
    for _ in range(8):  # parse -> parse -> Protocol.parse -> Frame.parse -> read_exact
        if gen is None:
            return None
        if getattr(gen, "gi_code", None) is _FRAME_PARSE:
            inner = gen.gi_yieldfrom
            if inner is None or getattr(inner, "gi_code", None) is not _READ_EXACT:
                return None
            local = gen.gi_frame.f_locals
            if "mask_bytes" not in local or inner.gi_frame.f_locals.get("n") != local.get("length"):
                return None  # still reading the header
            return gen, local
        gen = getattr(gen, "gi_yieldfrom", None)
    return None


def check(
    protocol: LokinProtocol, progress: Progress | None, message: codecs.IncrementalDecoder | None
) -> Progress | None:
    """Check the received part of a stalled text frame; raise UnicodeDecodeError if it is invalid.

    Args:
        protocol: The connection's protocol, its parser suspended.
        progress: What an earlier call checked of this frame, or None.
        message: The decoder of the fragmented text message this frame continues, or None.

    Returns:
        The progress to pass next time (None when no text payload is pending).
    """
    found = _waiting_for_payload(protocol)
    if found is None:
        return None
    parse, local = found
    opcode = local.get("opcode")
    if local.get("rsv1") or not (opcode is _TEXT or (opcode is _CONT and message is not None)):
        return None  # binary, or compressed (checked once inflated, by on_data)
    if progress is None or progress.parse is not parse:
        decoder = _utf8_decoder()
        if opcode is _CONT and message is not None:
            decoder.setstate(message.getstate())  # continue from where the message's decoder is
        progress = Progress(parse, decoder)
    buffer = protocol.reader.buffer
    start, end = progress.checked, len(buffer)
    if end > start:
        mask: bytes = local["mask_bytes"]
        shift = start % 4
        progress.decoder.decode(apply_mask(bytes(buffer[start:end]), mask[shift:] + mask[:shift]), False)
        progress.checked = end
    return progress
