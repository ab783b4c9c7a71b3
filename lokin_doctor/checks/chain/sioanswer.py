"""The Socket.IO reading of one HTTP answer: an Engine.IO error (``{"code":0,"message":"Transport
unknown"}``...) becomes its socketio cause. Shared by the ``handshake`` check (its row names the cause
whoever reads it: backends, variants, load, watch) and the ``socketio`` check; imports neither.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from lokin_doctor.causes.socketio import (
    SOCKETIO_FORBIDDEN,
    SOCKETIO_PLAIN_CLIENT,
    SOCKETIO_SESSION_UNKNOWN,
    SOCKETIO_UPGRADE_LOST,
    SOCKETIO_VERSION_MISMATCH,
    SOCKETIO_WEBSOCKET_DISABLED,
)
from lokin_doctor.i18n import _
from lokin_doctor.instruments import engineio
from lokin_doctor.instruments.observer import OutcomeKind

if TYPE_CHECKING:
    from lokin_doctor.instruments.wire import Outcome
    from lokin_doctor.model import CheckResult
    from lokin_doctor.target import Target

CHECK_ID = "socketio"


def ws_url(target: Target, resource: str) -> str:
    return replace(target, resource=resource).url


def client_hint(target: Target, path: str, protocol: int | None) -> str:
    major = "2" if protocol == 3 else "4"
    eio = 3 if protocol == 3 else 4
    option = "" if path == engineio.DEFAULT_PATH else f', {{path: "{path.rstrip("/")}"}}'
    return _(
        'connect with socket.io-client {major} (io("{origin}"{option})) instead of new WebSocket(url); a plain WebSocket client must use {url} and speak Engine.IO (send "40" to connect, answer each "2" with "3")'
    ).format(
        major=major,
        origin=target.http_origin,
        option=option,
        url=ws_url(target, engineio.endpoint(path, eio=eio)),
    )


def classify_answer(out: Outcome, target: Target, check_id: str = "handshake") -> CheckResult | None:
    """The Socket.IO cause of an HTTP answer that is an Engine.IO error, or None (not Engine.IO's, or
    an error with no reading of its own)."""
    if out.kind != OutcomeKind.STATUS:
        return None
    said = engineio.recognise(out.status, out.headers, out.body)
    if said is None:
        return None
    url = engineio.read_url(target.resource)
    ev = {**out.evidence(), "engine_io_error": {"code": said.code, "message": said.message}}
    line = f"HTTP {out.status} {out.reason}".rstrip()
    where = ev["address"]
    if not url.is_engineio:
        return SOCKETIO_PLAIN_CLIENT.fail(
            check_id,
            _(
                "{line} {message!r} from {where}: an Engine.IO (Socket.IO) server answered, which a plain WebSocket client cannot talk to"
            ).format(line=line, message=said.message, where=where),
            client_hint(target, engine_path(url.path), None),
            **ev,
        )
    if said.code == engineio.UNSUPPORTED_PROTOCOL:
        return SOCKETIO_VERSION_MISMATCH.fail(
            check_id,
            _(
                "{line} 'Unsupported protocol version': the server is Socket.IO 3/4 and refuses the Engine.IO {eio} of this URL (a Socket.IO 2 client)"
            ).format(line=line, eio=url.eio or "?"),
            _(
                "upgrade the client to socket.io-client 4 (EIO=4), or start the server with allowEIO3: true to accept Socket.IO 2 clients"
            ),
            **ev,
        )
    if said.code == engineio.BAD_REQUEST and url.transport == "websocket" and said.transport == "polling":
        return SOCKETIO_UPGRADE_LOST.fail(
            check_id,
            _(
                "{line} {message!r} as a plain HTTP answer: the Engine.IO server got transport=websocket without the Upgrade header, so something in front drops the upgrade"
            ).format(line=line, message=said.message),
            _(
                'forward the upgrade for {path} in the proxy (nginx: proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection "upgrade";)'
            ).format(path=url.path),
            **ev,
        )
    if said.code == engineio.UNKNOWN_TRANSPORT and url.transport == "websocket":
        return SOCKETIO_WEBSOCKET_DISABLED.fail(
            check_id,
            _(
                "{line} 'Transport unknown' to transport=websocket: this Socket.IO server takes HTTP long-polling only"
            ).format(line=line),
            SOCKETIO_WEBSOCKET_DISABLED.fix_text(),
            **ev,
        )
    if said.code == engineio.FORBIDDEN:
        return SOCKETIO_FORBIDDEN.fail(
            check_id,
            _("{line}: the Engine.IO server's allowRequest refused the handshake ({message!r})").format(
                line=line, message=said.message
            ),
            SOCKETIO_FORBIDDEN.fix_text(),
            **ev,
        )
    if said.code == engineio.UNKNOWN_SID:
        sids = url.query.get("sid")
        sid = sids[0] if sids else None
        if sid is not None:
            # A URL copied with its sid (the browser's developer tools show it): the sid lived on one
            # server process for one client; the socketio check opens sessions of its own to tell a
            # stale sid from a load balancer without sticky sessions.
            return SOCKETIO_SESSION_UNKNOWN.fail(
                check_id,
                _(
                    "{line} 'Session ID unknown' to the URL's sid={sid}: an Engine.IO session id is valid only on the server process that opened it, while that session lives"
                ).format(line=line, sid=sid),
                _(
                    "drop sid= from the URL (socket.io-client adds it to the requests of its own session); if socket.io-client itself gets this error, its requests reach different server processes: {fix}"
                ).format(fix=SOCKETIO_SESSION_UNKNOWN.fix_text()),
                **ev,
            )
        return SOCKETIO_SESSION_UNKNOWN.fail(
            check_id,
            _("{line} 'Session ID unknown': the Engine.IO server does not know this session").format(
                line=line
            ),
            SOCKETIO_SESSION_UNKNOWN.fix_text(),
            **ev,
        )
    return None


def engine_path(path: str) -> str:
    """The Engine.IO path a plain URL most likely meant (``/socket.io/`` unless it names one)."""
    return path if path.rstrip("/").endswith("/socket.io") else engineio.DEFAULT_PATH
