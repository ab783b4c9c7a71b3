"""``lokin-doctor explain CODE`` / ``--list``: the registry answers users, in their language."""

from __future__ import annotations

import json

from lokin_doctor import causes
from lokin_doctor.cli import main
from lokin_doctor.environment import MockEnvironment


def _run(*args: str, lang: str = "C.UTF-8") -> tuple[int, MockEnvironment]:
    env = MockEnvironment({"LANG": lang, "NO_COLOR": "1"})
    return main(list(args), env), env


def test_explain_a_code_in_english() -> None:
    code, env = _run("explain", "tcp.refused")
    assert code == 0, env.err
    cause = causes.require("tcp.refused")
    assert env.out.startswith("tcp.refused\n")
    assert cause.meaning in env.out and f"Fix: {cause.fix}" in env.out
    assert "docs/" + cause.doc in env.out and env.err == ""


def test_explain_in_french() -> None:
    code, env = _run("explain", "tcp.refused", lang="fr_FR.UTF-8")
    assert code == 0, env.err
    assert "Correctif" in env.out and "Signalé comme" in env.out
    # the meaning and the fix too, from the registry's own catalog; the code stays as it is
    cause = causes.require("tcp.refused")
    assert cause.meaning not in env.out and cause.fix not in env.out
    assert "tcp.refused" in env.out and "serveur" in env.out
    code, env = _run("explain", "tcp.refused", "--lang", "fr")
    assert "Correctif" in env.out and cause.meaning not in env.out


def test_unknown_code_suggests_the_nearest_and_exits_2() -> None:
    code, env = _run("explain", "tcp.refuse")
    assert code == 2 and env.out == ""
    assert (
        env.err.splitlines() == [env.err.strip()]
        and "unknown cause code 'tcp.refuse'; did you mean tcp.refused" in env.err
    )
    code, env = _run("explain", "code.inconnu", lang="fr_FR.UTF-8")
    assert code == 2 and "code de cause inconnu 'code.inconnu'" in env.err


def test_list_every_code_and_json() -> None:
    every = [c.code for c in causes.all_causes()]
    code, env = _run("explain", "--list")
    assert code == 0
    assert [line.split()[0] for line in env.out.splitlines()] == every
    code, env = _run("explain", "--list", "--json")
    data = json.loads(env.out)
    assert [d["code"] for d in data] == every
    assert {"code", "layer", "meaning", "fix", "statuses", "tags", "doc"} <= set(data[0])


def test_explain_needs_a_code() -> None:
    code, env = _run("explain")
    assert code == 2 and "explain needs a cause code" in env.err
