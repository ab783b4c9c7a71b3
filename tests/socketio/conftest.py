"""The Socket.IO peers (tests/peers/sio.py): real socket.io 4 and 2 servers; nginx with a site file
(tests/local/conftest.py) for the load balancer in front of two of them."""

from tests.local.conftest import nginx_site  # noqa: F401
from tests.peers.sio import socketio_server  # noqa: F401
