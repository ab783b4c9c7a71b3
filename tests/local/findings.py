"""Reading the proxy-config check's findings out of a CLI run (shared by the HAProxy, Apache, Caddy tests)."""

from __future__ import annotations

from typing import Any


def proxy_config(run: Any) -> dict[str, Any]:
    """The ``proxy-config`` check of a ``run_cli`` JSON run."""
    return run.check("proxy-config")  # type: ignore[no-any-return]


def finding(result: dict[str, Any], code: str) -> dict[str, Any]:
    """The first finding of ``code`` in a check result (the test fails when there is none)."""
    found = [f for f in result["evidence"].get("findings", []) if f["code"] == code]
    assert found, result
    return found[0]


def finding_codes(result: dict[str, Any]) -> set[str]:
    return {f["code"] for f in result["evidence"].get("findings", [])}
