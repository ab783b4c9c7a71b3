"""Tests of the production-path checks (issue 4) against real peers on loopback."""
