"""Shared fixtures (the real peers live in tests/peers/fixtures.py), the suite's language and its tiers.

**Language and proxies.** Tests pin their own: English, whatever the developer's machine says (this team runs
``LANG=fr_FR.UTF-8``). The variables are set here, at collection, before any test imports the CLI (its help
texts are translated when it is imported) and before any subprocess inherits them; a test of French asks for it
(``--lang fr``, or ``LANG=fr_FR.UTF-8`` in its own environment). After each test the language follows the
environment again, so a test that forced one leaves no trace.

**Tiers** (markers, registered in pyproject.toml): ``browser`` (headless Chromium), ``root`` (network
namespaces, firewall rules, another user's processes), ``slow`` (a test that takes seconds by design: holds,
restarts, load). ``pytest -m "not slow and not browser and not root"`` is the fast tier.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest_plugins = ["tests.peers.fixtures"]

for _var in ("LC_ALL", "LC_MESSAGES", "LANGUAGE"):
    os.environ.pop(_var, None)
os.environ["LANG"] = "C.UTF-8"
# Nor does a proxy of the developer's machine apply: the doctor honours HTTPS_PROXY & co. like curl (loopback
# included), and the forward-proxy tests set their own.
for _var in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
    os.environ.pop(_var, None)
    os.environ.pop(_var.upper(), None)

_HERE = Path(__file__).parent

#: Tiers by place: every test of these folders/files carries the marker (a test can add its own).
_TIER_BY_PATH = {
    "browser": ("browser/", "server/test_page_browser.py"),
    "root": ("local/test_firewall.py",),
}


@pytest.fixture(autouse=True)
def _language_follows_the_environment() -> Iterator[None]:
    yield
    from lokin_doctor import i18n

    i18n.set_language(None)


def _slow_ids() -> frozenset[str]:
    """tests/slow.txt: measured, not guessed (scripts/tiers writes it from a run's --durations)."""
    try:
        text = (_HERE / "slow.txt").read_text(encoding="utf-8")
    except FileNotFoundError:
        return frozenset()
    return frozenset(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    slow = _slow_ids()
    for item in items:
        if item.nodeid in slow:
            item.add_marker("slow")
        try:
            rel = Path(str(item.path)).relative_to(_HERE).as_posix()
        except ValueError:
            continue
        for marker, places in _TIER_BY_PATH.items():
            if any(rel.startswith(p) or rel == p for p in places):
                item.add_marker(marker)
