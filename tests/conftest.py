"""Shared fixtures: the real peers live in tests/peers/fixtures.py."""

pytest_plugins = ["tests.peers.fixtures"]
