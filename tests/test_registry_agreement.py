"""The registry, the docs and the tests agree: every cause code is declared once (lokin_doctor/causes), has a
row in the generated docs/causes.md, is named by at least one test, and the docs name no code that does not
exist. Adding a cause is one registry entry, its use and its test; this file says which part is missing."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CAUSES_DIR = ROOT / "lokin_doctor" / "causes"
DOCS = ROOT / "docs"


def _declared() -> dict[str, str]:
    """code -> constant name, read from the layer modules' source (a fresh view: no test's own causes)."""
    found: dict[str, str] = {}
    for path in sorted(CAUSES_DIR.glob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            value = getattr(node, "value", None)
            if (
                isinstance(node, ast.Assign)
                and isinstance(value, ast.Call)
                and getattr(value.func, "id", "") == "cause"
                and isinstance(node.targets[0], ast.Name)
            ):
                found[value.args[0].value] = node.targets[0].id  # type: ignore[attr-defined]
    return found


def _timeout_family() -> list[str]:
    """The per-check ``<id>.timeout`` codes (one shared text, declared in a loop by causes/internal.py)."""
    from lokin_doctor import causes
    from lokin_doctor.causes import Layer

    return [c.code for c in causes.all_causes() if c.layer is Layer.INTERNAL and c.code.endswith(".timeout")]


def _tests_text() -> str:
    me = Path(__file__).resolve()
    return "".join(
        p.read_text(encoding="utf-8", errors="replace")
        for p in (ROOT / "tests").rglob("*.py")
        if "node_modules" not in p.parts and p.resolve() != me
    )


def test_the_source_declares_what_the_registry_holds() -> None:
    from lokin_doctor import causes

    declared = set(_declared())
    registry = {c.code for c in causes.all_causes()} - set(_timeout_family())
    # the registry may hold a test's own causes (declared while the suite runs), never fewer than the source
    assert declared <= registry | {"internal-error"}
    assert len(declared) > 150


def test_every_code_is_named_by_a_test() -> None:
    tests = _tests_text()
    untested = [
        code
        for code, name in sorted(_declared().items())
        if not code.endswith(".timeout") and f'"{code}"' not in tests and not re.search(rf"\b{name}\b", tests)
    ]
    assert untested == [], (
        f"{len(untested)} codes no test names (write the test that produces each): {untested}"
    )


def test_the_timeout_family_is_produced_by_a_test() -> None:
    # tests/test_runner.py makes a check overrun the deadline and asserts its own <id>.timeout code.
    assert "check_timeout" in _tests_text() or ".timeout" in (ROOT / "tests" / "test_runner.py").read_text()
    assert len(_timeout_family()) >= 10


def test_docs_causes_md_is_the_registry_rendered() -> None:
    rendered = subprocess.run(
        [sys.executable, "-m", "lokin_doctor.causes.doc"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    committed = (DOCS / "causes.md").read_text(encoding="utf-8")
    assert committed == rendered, (
        "docs/causes.md is stale: python -m lokin_doctor.causes.doc > docs/causes.md"
    )


def test_every_code_has_a_docs_row_and_the_docs_name_no_stale_code() -> None:
    declared = _declared()
    causes_md = (DOCS / "causes.md").read_text(encoding="utf-8")
    missing = [c for c in declared if not c.endswith(".timeout") and f"`{c}`" not in causes_md]
    assert missing == []
    prefixes = {c.split(".", 1)[0] for c in declared}
    every_doc = "".join(p.read_text(encoding="utf-8") for p in DOCS.glob("*.md"))
    named = set(re.findall(r"`([a-z][a-z0-9-]*\.[a-z0-9]+(?:-[a-z0-9]+)*)`", every_doc))
    stale = sorted(
        code
        for code in named
        if code.split(".", 1)[0] in prefixes
        and code not in declared
        and not code.endswith(".timeout")
        # file names and modules that look like codes (nginx.conf, proxy.py, dns.py...) are not codes
        and not re.search(r"\.(py|conf|md|json|pem|js|cfg|html|txt|service|yml|yaml|sh|log)$", code)
    )
    assert stale == [], f"docs name codes the registry does not declare: {stale}"
