"""The Socket.IO peers (tests/peers/sio.py): real socket.io 4 and 2 servers."""

from tests.peers.sio import socketio_server  # noqa: F401
