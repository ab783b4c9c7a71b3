"""Cause codes of the socketio layer (see lokin_doctor/causes/__init__.py): a Socket.IO / Engine.IO
server, recognised from its answers and verified for real by the ``socketio`` check."""

from __future__ import annotations

from lokin_doctor.causes import Layer, Tag, cause  # noqa: F401
from lokin_doctor.i18n import N_

L = Layer.SOCKETIO

SOCKETIO_PLAIN_CLIENT = cause(
    "socketio.plain-client",
    L,
    N_(
        "the URL is a Socket.IO server: a plain WebSocket client (new WebSocket(url)) cannot talk to it, it speaks the Engine.IO protocol on its own path"
    ),
    N_(
        'connect with socket.io-client (io("https://host")), or open the Engine.IO URL /socket.io/?EIO=4&transport=websocket and speak its packets'
    ),
)
SOCKETIO_VERSION_MISMATCH = cause(
    "socketio.version-mismatch",
    L,
    N_(
        "client and server speak different Engine.IO protocols: a Socket.IO 2 server (EIO=3) with a 3.x/4.x client (EIO=4), or the reverse"
    ),
    N_(
        "use the client major that matches the server (socket.io-client 4 for socket.io 4), or start the socket.io 4 server with allowEIO3: true for Socket.IO 2 clients"
    ),
    tags=(Tag.NOT_A_URL_PROBLEM,),
)
SOCKETIO_CONNECT_REFUSED = cause(
    "socketio.connect-refused",
    L,
    N_(
        "the Engine.IO session opened, but the Socket.IO CONNECT was refused (44 CONNECT_ERROR: a middleware such as an auth check, or an unknown namespace)"
    ),
    N_(
        "send what the middleware expects (socket.io-client's auth option: io(url, {auth: {token}})), or fix the io.use() middleware / the namespace name"
    ),
    tags=(Tag.NOT_A_URL_PROBLEM,),
)
SOCKETIO_NO_OPEN_PACKET = cause(
    "socketio.no-open-packet",
    L,
    N_(
        "the upgrade to the Engine.IO URL succeeded but no open packet (0{...}) came: the server at that path is not an Engine.IO server, or a proxy ate the first frame"
    ),
    N_(
        "point the client at the path the socket.io server uses (its path option, /socket.io/ by default) and check that the proxy passes WebSocket frames through"
    ),
)
SOCKETIO_NO_CONNECT_REPLY = cause(
    "socketio.no-connect-reply",
    L,
    N_(
        "the Engine.IO session opened but the Socket.IO CONNECT (40) got no answer in time: the server is not a Socket.IO server (bare engine.io) or is stuck"
    ),
    N_(
        "use the client of the server's library (engine.io-client for a bare engine.io server), or read the server's log for a handler that never calls next()"
    ),
)
SOCKETIO_FORBIDDEN = cause(
    "socketio.forbidden",
    L,
    N_(
        "the Engine.IO server refused the handshake (403, code 4 Forbidden): its allowRequest hook said no (Origin, cookie or token)"
    ),
    N_(
        "send what allowRequest checks (the page's Origin: --origin https://your-site, the cookie or token), or allow that origin on the server (cors / allowRequest)"
    ),
    tags=(Tag.NOT_A_URL_PROBLEM,),
)
SOCKETIO_WEBSOCKET_DISABLED = cause(
    "socketio.websocket-disabled",
    L,
    N_(
        "the Socket.IO server takes HTTP long-polling only (transports: ['polling']): a WebSocket client is refused with Transport unknown"
    ),
    N_(
        "add websocket to the server's transports option (the default is ['polling', 'websocket']), or let socket.io-client use polling"
    ),
    warn=True,
)
SOCKETIO_SESSION_UNKNOWN = cause(
    "socketio.session-unknown",
    L,
    N_(
        "the Engine.IO server does not know the session it just opened (400 Session ID unknown): requests of one client reach different server processes"
    ),
    N_(
        "enable sticky sessions in the load balancer (nginx ip_hash / hash $remote_addr, HAProxy cookie), or make socket.io-client use transports: ['websocket'] only"
    ),
)
SOCKETIO_UPGRADE_LOST = cause(
    "socketio.upgrade-lost",
    L,
    N_(
        "the Engine.IO server got transport=websocket as a plain HTTP request (400 Bad request): a proxy in front does not forward the WebSocket upgrade"
    ),
    N_(
        'forward the upgrade for the Socket.IO path in the proxy (nginx: proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection "upgrade";)'
    ),
    tags=(Tag.UPGRADE_LOST,),
)
