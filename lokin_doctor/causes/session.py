"""Cause codes of the session layer (see lokin_doctor/causes/__init__.py)."""

from __future__ import annotations

from lokin_doctor.causes import Layer, Tag, cause  # noqa: F401
from lokin_doctor.i18n import N_

L = Layer.SESSION

HOLD_CLOSED_BY_SERVER = cause(
    "hold.closed-by-server",
    L,
    N_("the server sent a close frame (code and reason in the evidence)"),
    N_("raise the server's idle/keepalive timeout"),
)
HOLD_DROPPED = cause(
    "hold.dropped",
    L,
    N_("dropped (1006) despite server pings: not an idle timeout (max connection age, restart, NAT)"),
    N_("read the proxy's and server's logs at that time"),
    tags=(Tag.IDLE_CUT,),
)
HOLD_IDLE_TIMEOUT = cause(
    "hold.idle-timeout",
    L,
    N_(
        "dropped without a close frame (1006) after a fixed idle time, no server ping in between: a proxy's idle timeout; named when it matches a known default (nginx `proxy_read_timeout` 60 s, cloud load balancers 60 s, Cloudflare ~100 s, AWS NLB 350 s)"
    ),
    N_(
        "`proxy_read_timeout 86400s; proxy_send_timeout 86400s;` in the location, or server pings more often than the timeout (ws: `setInterval(() => client.ping(), 30000)`; websockets: `ping_interval`)"
    ),
    tags=(Tag.IDLE_CUT,),
)
HOLD_NO_CONNECTION = cause(
    "hold.no-connection",
    L,
    N_("the hold check's own handshake failed, so nothing was held"),
    N_("fix what the handshake check reports, then hold again"),
)
SESSION_CLOSED = cause(
    "session.closed",
    L,
    N_("the server sent a close frame while messages were being exchanged"),
    N_("read the server's log for why it closed (the close code and reason are in the evidence)"),
)
SESSION_CLOSED_AT_ONCE = cause(
    "session.closed-at-once",
    L,
    N_(
        "the server closed the connection before answering the first ping (its close code says why: 1008 policy, 1011 handler error, 1001 going away)"
    ),
    N_(
        "read the close code and reason in the evidence and the server's log at that time; send the token, Origin or first message the server's policy wants"
    ),
)
SESSION_CLOSED_SOON = cause(
    "session.closed-soon",
    L,
    N_(
        "the server greeted and answered the ping, then closed the connection during the --linger window (or while a greeting was awaited)"
    ),
    N_(
        "read the close code in the evidence: 1011, read the handler's log; 1008, send the token, Origin or first message it wants; 1000, its handler closes every connection"
    ),
)
SESSION_DROPPED = cause(
    "session.dropped",
    L,
    N_("the TCP connection died before the first pong, without a close frame (1006)"),
    N_("read the server's log at that time; a proxy or a crash cut the connection"),
)
SESSION_DROPPED_SOON = cause(
    "session.dropped-soon",
    L,
    N_(
        "the connection was cut without a close frame right after the upgrade (1006: a crash, a killed process or a proxy)"
    ),
    N_("read the server's log at that time (a crash, an out-of-memory kill) and the proxy's error log"),
)
SESSION_EXPECT_MISMATCH = cause(
    "session.expect-mismatch",
    L,
    N_("no reply to `--send` matched `--expect`"),
    N_("check the server's protocol for this message (does it echo? what does it answer?)"),
)
SESSION_FRAME_TOO_BIG = cause(
    "session.frame-too-big",
    L,
    N_(
        "a frame header announcing more than 1 MiB (even 2^62 bytes): refused at the header, at once; `close_code_sent` is 1009"
    ),
    N_(
        "the server sends (or claims to send) a huge message: check what it sends on connect; if the header is garbage, something else than a WebSocket server writes to the connection"
    ),
)
SESSION_INVALID_UTF8 = cause(
    "session.invalid-utf8",
    L,
    N_("a text message (or a close reason) that is not valid UTF-8; `close_code_sent` is 1007"),
    N_(
        "the server sends text frames that are not UTF-8: send binary frames for bytes, or encode the text as UTF-8 (Buffer.from(s, 'utf8'), str.encode())"
    ),
)
SESSION_NO_GREETING = cause(
    "session.no-greeting",
    L,
    N_("no first message from the server within --timeout"),
    N_("check the server sends its welcome message on connect, or raise --timeout"),
)
SESSION_NO_PONG = cause(
    "session.no-pong",
    L,
    N_("a ping got no pong within the deadline (a blocked event loop, a proxy swallowing control frames)"),
    N_("check the server's event loop is not blocked and that the proxy passes WebSocket control frames"),
)
SESSION_PROTOCOL_ERROR = cause(
    "session.protocol-error",
    L,
    N_(
        "the server sent a frame the protocol rejects (reserved opcode, RSV bits without an extension, masking, a bad close code, a broken fragment sequence); `close_code_sent` is 1002"
    ),
    N_(
        "the server (or a proxy) writes invalid WebSocket frames (reserved opcode, RSV bits without an extension, bad masking, a bad close code): upgrade or fix the server's WebSocket library, and make sure nothing else writes to the socket after the upgrade"
    ),
)
