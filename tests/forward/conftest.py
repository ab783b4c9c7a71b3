"""The forward proxy peer (tests/peers/tinyproxy.py): real tinyproxy."""

from tests.peers.tinyproxy import tinyproxy  # noqa: F401
