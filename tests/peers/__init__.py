"""Real peers for the lokin-doctor test-suite: servers, proxies, DNS and certificates on loopback.

Every fixture lives in :mod:`tests.peers.fixtures`; helper modules sit beside it.
"""
