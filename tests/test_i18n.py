"""French (issue 13, item 2): the catalog is complete and compiled, and the CLI speaks French under
LANG=fr_FR.UTF-8 or --lang fr, with cause codes, JSON keys and JUnit types unchanged."""

from __future__ import annotations

import gettext
import re
import string
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from lokin_doctor import i18n
from tests.helpers import run_cli
from tests.peers.fixtures import free_port

ROOT = Path(__file__).resolve().parent.parent
PO = ROOT / "lokin_doctor/locale/fr/LC_MESSAGES/lokin_doctor.po"
MO = PO.with_suffix(".mo")
#: The cause registry's meanings and fixes (lokin_doctor/causes) have their own catalog.
CAUSES_PO = PO.with_name("lokin_doctor_causes.po")
CATALOGS = (PO, CAUSES_PO)
FR = {"LANG": "fr_FR.UTF-8", "LC_ALL": "", "LC_MESSAGES": ""}
EN = {"LANG": "C.UTF-8", "LC_ALL": "", "LC_MESSAGES": ""}
NET_ONLY = ("--only", "handshake,session", "--no-variants")


def _catalog(po: Path = PO) -> Any:
    with po.open("rb") as f:
        return read_po(f, locale="fr")


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


@pytest.mark.parametrize("po", CATALOGS, ids=lambda p: p.stem)
def test_every_message_has_a_french_translation_with_the_same_placeholders(po: Path) -> None:
    catalog = _catalog(po)
    ids = [m for m in catalog if m.id]
    assert len(ids) > 100
    for m in ids:
        assert not m.fuzzy, m.id
        singular = m.id[0] if isinstance(m.id, tuple) else m.id
        strings = m.string if isinstance(m.string, tuple) else (m.string,)
        assert strings and all(strings), f"untranslated: {m.id!r}"
        for s in strings:
            assert _fields(s) == _fields(singular), (m.id, s)  # a lost {code} would hide the cause code


def test_the_catalog_holds_every_marked_message_of_the_source() -> None:
    """What scripts/i18n would extract today is in the .po: nobody added a text and forgot the catalog."""
    known = {m.id[0] if isinstance(m.id, tuple) else m.id for po in CATALOGS for m in _catalog(po) if m.id}
    method_map = [("**.py", "python")]
    keywords = {"_": None, "N_": None, "ngettext": (1, 2)}
    extracted = {
        msg if isinstance(msg, str) else msg[0]
        for _file, _line, msg, _comments, _context in extract_from_dir(
            str(ROOT / "lokin_doctor"), method_map, keywords=keywords
        )
    }
    assert extracted, "nothing extracted"
    assert extracted - known == set(), "run scripts/i18n and translate the new messages"


@pytest.mark.parametrize("po", CATALOGS, ids=lambda p: p.stem)
def test_the_compiled_catalog_matches_the_po(po: Path) -> None:
    with po.with_suffix(".mo").open("rb") as f:
        mo = gettext.GNUTranslations(f)
    for m in _catalog(po):
        if m.id and not isinstance(m.id, tuple):
            assert mo.gettext(m.id) == m.string, f"stale .mo for {m.id!r}: run scripts/i18n"
        elif m.id:
            assert mo.ngettext(m.id[0], m.id[1], 1) == m.string[0]
            assert mo.ngettext(m.id[0], m.id[1], 5) == m.string[-1]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"LANG": "fr_FR.UTF-8"}, "fr"),
        ({"LC_MESSAGES": "fr_CA.UTF-8", "LANG": "en_US.UTF-8"}, "fr"),
        ({"LC_ALL": "C.UTF-8", "LANG": "fr_FR.UTF-8"}, "en"),  # the first one set wins, as in POSIX
        ({"LC_ALL": "", "LANG": "fr_BE"}, "fr"),
        ({}, "en"),
    ],
)
def test_language_from_the_environment(env: dict[str, str], expected: str) -> None:
    assert i18n.env_language(env) == expected


def test_lang_option_is_read_before_click() -> None:
    assert i18n.lang_from_argv(["all", "--lang", "fr", "x"]) == "fr"
    assert i18n.lang_from_argv(["--lang=en", "all"]) == "en"
    assert i18n.lang_from_argv(["all", "--", "--lang", "fr"]) is None


def _refused() -> str:
    return f"ws://127.0.0.1:{free_port()}/"


@pytest.mark.parametrize(
    ("args", "env"), [((), FR), (("--lang", "fr"), EN)], ids=["LANG=fr_FR.UTF-8", "--lang fr"]
)
def test_report_in_french_codes_unchanged(args: tuple[str, ...], env: dict[str, str]) -> None:
    url = _refused()
    run = run_cli("all", url, *NET_ONLY, *args, env=env)
    assert run.code == 1
    out = run.stdout
    assert "✗ Cause première (tcp, tcp.refused) :" in out
    assert "  Correctif : " in out
    assert "1 sur 2 réussies, 1 en échec, 2 ignorées en " in out
    assert "[tcp.refused]" in out  # cause codes stay English
    for english in ("Root cause", "Fix:", "passed", "skipped", "failed"):
        assert english not in out


def test_lang_en_wins_over_a_french_environment() -> None:
    run = run_cli("all", _refused(), *NET_ONLY, "--lang", "en", env=FR)
    assert "Root cause (tcp, tcp.refused):" in run.stdout and "Cause première" not in run.stdout


def test_json_is_the_same_in_french(ws_server: Any) -> None:
    url = _refused()
    en = run_cli("all", url, *NET_ONLY, "--json", env=EN).report
    fr = run_cli("all", url, *NET_ONLY, "--json", env=FR).report
    assert list(fr) == list(en) and fr["root_cause"]["code"] == en["root_cause"]["code"] == "tcp.refused"
    assert [(c["id"], c["status"], c["code"]) for c in fr["checks"]] == [
        (c["id"], c["status"], c["code"]) for c in en["checks"]
    ]


def test_junit_and_markdown_in_french() -> None:
    url = _refused()
    junit = run_cli("all", url, *NET_ONLY, "-f", "junit", "--lang", "fr")
    assert junit.code == 1
    failure = ET.fromstring(junit.stdout).find("testsuite/testcase[@name='tcp']/failure")
    assert failure is not None and failure.get("type") == "tcp.refused"  # the type stays the code
    assert (failure.get("message") or "").startswith("échec : ") and "Correctif :" in (
        failure.get("message") or ""
    )
    md = run_cli("all", url, *NET_ONLY, "-f", "markdown", "--lang", "fr").stdout
    assert md.startswith("## Rapport lokin-doctor : ")
    assert f"### Cible `{url}` : ❌ problème trouvé" in md
    assert "| vérification | statut | résumé | code |" in md and "| Système |" in md
    assert "**Cause première** (tcp, `tcp.refused`)" in md and "<summary>Éléments relevés</summary>" in md


COMMANDS = [
    "all",
    "check-port",
    "check-process",
    "handshake",
    "probe-wss",
    "load",
    "watch",
    "monitor",
    "serve",
]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_in_french(command: str) -> None:
    run = run_cli(command, "--help", env={**FR, "COLUMNS": "200"})
    assert run.code == 0
    out = run.stdout
    assert out.startswith("Utilisation : ")
    assert "Afficher ce message et quitter." in out and "Show this message" not in out
    assert "Options:" in out and "--lang en|fr" in out
    assert "[default:" not in out and "Usage:" not in out
    first_help = out.split("\n\n")[1].strip()
    assert not re.match(r"(Run|Who|Is|A complete|The|Load|Connect|Live)\b", first_help), first_help


def test_root_help_and_usage_errors_in_french() -> None:
    root = run_cli("--help", env=FR)
    assert "Commandes:" in root.stdout and "Trouver pourquoi une page" in root.stdout
    for args, needle in (
        (["all", "--timeout", "x"], "valeur invalide pour --timeout"),
        (["all", "--no-such-option"], "option inconnue : --no-such-option"),
        (["all", "--format", "xml"], "--format 'xml' invalide"),
        (["probe-wss"], "probe-wss a besoin de l'URL"),
        (["all", "--lang", "de"], "--lang 'de' invalide"),
    ):
        run = run_cli(*args, env=FR)
        assert run.code == 2 and run.stdout == ""
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("lokin-doctor: erreur : ") and needle in lines[0], (
            lines
        )


async def _tool(*args: str, env: dict[str, str]) -> Any:
    import asyncio

    return await asyncio.to_thread(run_cli, *args, env=env)


async def test_load_and_watch_in_french() -> None:
    from lokin_doctor.server import ServerConfig, running_server

    config = ServerConfig(host="127.0.0.1", port=0, quiet=True, max_per_ip=0)
    async with running_server(config) as server:
        load = await _tool("load", server.url, "-n", "3", "--duration", "0.2", "--messages", "1", env=FR)
        watch = await _tool("watch", server.url, "--max-time", "0.5", "--lang", "fr", env=EN)
    assert load.code == 0, load.stderr
    assert load.stdout.startswith(f"test de charge de {server.url} ")
    assert "  connexions    3/3 ouvertes, 0 en échec" in load.stdout and "  résultat      PASS" in load.stdout
    assert watch.code == 0, watch.stderr
    assert f"surveillance de {server.url} (5 nouveaux essais, " in watch.stdout
    assert "tentative 1" in watch.stdout and "connecté à 127.0.0.1:" in watch.stdout
    assert "bilan : connected ; 1 tentative, 1 connexion, " in watch.stdout  # the result keyword stays
    assert "(100.0 % de disponibilité)" in watch.stdout
    refused = await _tool("watch", _refused(), "--retries", "0", env=FR)
    assert refused.code == 1
    assert "tcp.refused" in refused.stdout and "correctif : " in refused.stdout
    assert "abandon après 1 tentative (0 nouvel essai)" in refused.stdout


# -- the checks' own sentences (summaries and hints made in lokin_doctor/checks/*) ---------------------


def _english_words(text: str) -> list[str]:
    """English sentence words that must not survive in French output (technical tokens aside)."""
    words = (
        " the ",
        " nothing ",
        " is not ",
        " cannot ",
        " start the ",
        " check the ",
        " listens ",
        " refused on ",
    )
    return [w for w in words if w in f" {text} "]


def test_all_on_a_closed_port_speaks_french_with_the_same_codes() -> None:
    """The whole chain on a port nobody listens on: every summary and hint French, codes English."""
    url = _refused()
    port = url.rsplit(":", 1)[1].strip("/")
    fr = run_cli("all", url, "--no-variants", "--json", env=FR)
    en = run_cli("all", url, "--no-variants", "--json", env=EN)
    assert fr.code == en.code == 1
    # On this shared machine another helper's server may match --process: either layer names the cause.
    assert fr.root_code in ("process.not-running", "process.wrong-port", "tcp.refused"), fr.stdout
    tcp_fr, tcp_en = fr.check("tcp"), en.check("tcp")
    assert (tcp_fr["status"], tcp_fr["code"]) == (tcp_en["status"], tcp_en["code"]) == ("fail", "tcp.refused")
    assert (
        tcp_fr["summary"]
        == f"connexion refusée sur 127.0.0.1:{port} : rien n'accepte de connexions à cette adresse"
    )
    assert tcp_fr["hint"].startswith(f"démarrez le serveur WebSocket sur le port {port} (node server.js, ou ")
    assert f"lokin-doctor serve --port {port}" in tcp_fr["hint"]  # commands stay as they are
    # English is unchanged, byte for byte.
    assert tcp_en["summary"] == f"connection refused on 127.0.0.1:{port}: nothing accepts connections there"
    assert tcp_en["hint"] == (
        f"start the WebSocket server on port {port} (node server.js, or lokin-doctor serve --port {port}), "
        "or fix the port in the client URL"
    )
    root = fr.report["root_cause"]
    assert root["code"] == fr.root_code and not _english_words(root["summary"] + " " + root["hint"]), root
    if root["code"] == "process.not-running":
        assert root["summary"].startswith(
            "le serveur WebSocket ne tourne pas : aucun processus ne correspond à"
        )
        assert root["hint"].startswith(f"démarrez-le : node server.js (écoute sur {port})")
    port_fr = fr.check("port")
    assert port_fr["code"] == "port.not-listening"
    assert port_fr["summary"] == f"rien n'écoute sur le port {port} sur cette machine"
    for c in fr.report["checks"]:
        assert not _english_words(c["summary"]), c  # dns, process, port, supervisor, firewall, tcp, skips
        assert set(c) == set(en.check(c["id"])), c["id"]  # JSON keys unchanged


def test_a_misbehaving_peers_404_is_told_in_french(bad_server: Any) -> None:
    peer = bad_server("not-found")
    url = f"ws://{peer.address}/ws"
    text = run_cli("all", url, "--only", "tcp,handshake,session", "--no-variants", "--lang", "fr")
    assert text.code == 1
    # The summary names who answered and what it said (issue 18), in French too.
    said = "HTTP 404 Not Found, envoyé par un serveur qui dit être 'lokin-bad-peer', corps 'Not Found'"
    assert f"{said} : aucun point d'accès WebSocket au chemin /ws  [handshake.not-found]" in text.stdout
    assert "corrigez le chemin dans l'URL du client (/ ou /ws) ou le bloc location du proxy" in text.stdout
    assert f"Cause première (handshake, handshake.not-found) : {said} : aucun point d'accès" in text.stdout
    assert "no WebSocket endpoint" not in text.stdout and "fix the path" not in text.stdout
    en = run_cli("all", url, "--only", "tcp,handshake,session", "--no-variants", "--json", env=EN)
    hs = en.check("handshake")
    assert (hs["code"], hs["summary"]) == (
        "handshake.not-found",
        "HTTP 404 Not Found from a server that says it is 'lokin-bad-peer', body 'Not Found': "
        "no WebSocket endpoint at path /ws",
    )


@pytest.mark.parametrize(
    ("args", "french", "english"),
    [
        (
            ("--expect", "pong"),
            "--expect demande --send : dites quoi envoyer, puis ce à quoi la réponse doit correspondre",
            "--expect needs --send: say what to send, then what the reply must match",
        ),
        (
            ("--timeout", "0"),
            "--timeout doit être un nombre de secondes, au-dessus de 0 et au plus 3600, pas 0.0",
            "--timeout must be a number of seconds, above 0 and at most 3600, not 0.0",
        ),
        (
            ("--origin", "https://example.com/path"),
            "--origin 'https://example.com/path' invalide ; une origine ressemble à https://example.com (sans chemin)",
            "invalid --origin 'https://example.com/path'; an origin looks like https://example.com (no path)",
        ),
        (
            ("--dns-server", "dns.example"),
            "--dns-server 'dns.example' invalide : 'dns.example' n'est pas une adresse IP (les noms ne sont pas acceptés)",
            "invalid --dns-server 'dns.example': 'dns.example' is not an IP address (names are not accepted)",
        ),
    ],
    ids=["settings", "validate-number", "validate-origin", "validate-dns-server"],
)
def test_option_validation_errors_in_french(args: tuple[str, ...], french: str, english: str) -> None:
    url = _refused()
    fr = run_cli("all", url, *args, env=FR)
    en = run_cli("all", url, *args, env=EN)
    assert fr.code == en.code == 2
    assert len(fr.stderr.strip().splitlines()) == 1 and french in fr.stderr, fr.stderr
    assert english in en.stderr, en.stderr


def test_serve_help_options_in_french() -> None:
    run = run_cli("serve", "--help", env={**FR, "COLUMNS": "200"})
    assert run.code == 0
    flat = " ".join(run.stdout.split())
    assert "Port TCP ; 0 en choisit un libre (affiché sur la ligne ready)." in flat
    assert "Ni bannière ni lignes de journal." in flat
    assert "No banner and no log lines." not in flat
    en = " ".join(run_cli("serve", "--help", env={**EN, "COLUMNS": "200"}).stdout.split())
    assert "TCP port; 0 picks a free one (printed on the ready line)." in en


def test_check_texts_follow_the_language_chosen_after_import() -> None:
    """Module-level texts (N_) are translated when a result is made, not when the module is imported."""
    from lokin_doctor.checks.chain import hold, session

    try:
        i18n.set_language("fr")
        assert session.close_meaning(1011) == (
            "le gestionnaire du serveur a échoué (une exception dans son gestionnaire de connexion ou de message)"
        )
        assert session.close_meaning(4001) == (
            "le code de fermeture 4001 est propre à l'application : cherchez-le dans le code du serveur"
        )
        assert hold.culprit(100.0) == "délai d'inactivité de Cloudflare (~100 s)"
        i18n.set_language("en")
        assert session.close_meaning(1011) == (
            "the server's handler failed (an exception in its connection or message handler)"
        )
        assert hold.culprit(100.0) == "Cloudflare's idle timeout (~100 s)"
    finally:
        i18n.set_language(None)


# -- serve's description and usage errors, monitor's screen, tcp's mixed failures -----------------------


def test_serve_description_in_french_english_unchanged() -> None:
    fr = " ".join(run_cli("serve", "--help", env={**FR, "COLUMNS": "200"}).stdout.split())
    assert "Lance le serveur WebSocket LOK IN (remplace server.js) : accueil, ping/pong, diffusion" in fr
    assert "Run the LOK IN WebSocket server" not in fr
    en = " ".join(run_cli("serve", "--help", env={**EN, "COLUMNS": "200"}).stdout.split())
    assert (
        "Run the LOK IN WebSocket server (replaces server.js): welcome, ping/pong, broadcast, echo; "
        "test page on /, /health, /metrics. Stop with Ctrl-C or SIGTERM (clients get 1001)." in en
    )


@pytest.mark.parametrize(
    ("args", "french", "english"),
    [
        (
            ("--port", "70000"),
            "lokin-doctor: erreur : --port 70000 : doit être un nombre entier de 0 à 65535 (0 choisit un port libre)",
            "lokin-doctor: error: --port 70000: must be a whole number from 0 to 65535 (0 picks a free port)",
        ),
        (
            ("--workers", "0"),
            "lokin-doctor: erreur : --workers 0 : doit être un nombre entier de 1 à 256, ou auto (un par cœur)",
            "lokin-doctor: error: --workers 0: must be a whole number from 1 to 256, or auto (one per core)",
        ),
        (
            ("--workers", "3"),
            "lokin-doctor: erreur : --workers 3 : 3 processus demandent --redis redis://HÔTE:PORT/DB pour qu’une",
            "lokin-doctor: error: --workers 3: 3 processes need --redis redis://HOST:PORT/DB so a broadcast",
        ),
        (
            ("--ping-timeout", "-1"),
            "--ping-timeout -1 : doit être un nombre de secondes >= 0 (0 désactive) et <= 86400, par ex. 10",
            "--ping-timeout -1: must be a number of seconds >= 0 (0 turns it off) and <= 86400, e.g. 10",
        ),
        (
            ("--redis", "http://x"),
            "--redis http://x : 'http://x' a le schéma 'http' ; utilisez redis://HÔTE:PORT/DB, par ex.",
            "--redis http://x: 'http://x' has scheme 'http'; use redis://HOST:PORT/DB, e.g.",
        ),
    ],
    ids=["port", "workers-range", "workers-redis", "seconds", "redis-url"],
)
def test_serve_usage_errors_in_french(args: tuple[str, ...], french: str, english: str) -> None:
    fr = run_cli("serve", *args, env=FR)
    en = run_cli("serve", *args, env=EN)
    assert fr.code == en.code == 2 and fr.stdout == en.stdout == ""
    assert len(fr.stderr.strip().splitlines()) == 1 and french in fr.stderr, fr.stderr
    assert len(en.stderr.strip().splitlines()) == 1 and english in en.stderr, en.stderr


async def test_monitor_once_in_french_against_a_real_serve() -> None:
    import os

    from lokin_doctor.server import ServerConfig, running_server

    config = ServerConfig(host="127.0.0.1", port=0, quiet=True)
    async with running_server(config) as server:
        port = str(server.port)
        fr = await _tool("monitor", "--port", port, "--once", env={**FR, "COLUMNS": "80"})
        en = await _tool("monitor", "--port", port, "--once", env={**EN, "COLUMNS": "80"})
    assert fr.code == en.code == 0, (fr.stderr, en.stderr)
    assert f"lokin-doctor monitor  port {port}  " in fr.stdout
    for words in (
        "processus serveur",
        "commande",
        "durée",
        f"connexions ESTABLISHED vers :{port} : ",
        "adresse distante",
        "sockets en écoute",
        "famille",
        "/health (",
    ):
        assert words in fr.stdout, (words, fr.stdout)
    assert str(os.getpid()) in fr.stdout  # the process table is there, pid whole
    for english in ("server process", "ESTABLISHED connections", "remote address", "listening sockets"):
        assert english not in fr.stdout
        assert english in en.stdout, (english, en.stdout)
    assert "command" in en.stdout and "uptime" in en.stdout and "commande" not in en.stdout
    assert max(len(line) for line in fr.stdout.splitlines()) <= 80
    closed = await _tool("monitor", "--port", port, "--once", "--no-health", env=FR)
    assert closed.code == 1
    assert f"rien n'écoute sur le port {port} : le serveur ne tourne pas (tcp.refused)" in closed.stdout


def test_monitor_usage_errors_in_french() -> None:
    fr = run_cli("monitor", "--count", "0", env=FR)
    assert fr.code == 2 and fr.stderr == "lokin-doctor: erreur : --count doit valoir au moins 1, pas 0\n"
    en = run_cli("monitor", "--count", "0", env=EN)
    assert en.code == 2 and en.stderr == "lokin-doctor: error: --count must be at least 1, not 0\n"


def test_tcp_mixed_failures_are_whole_french_sentences() -> None:
    """No English word spliced into the French: the mixed-outcome case has its own sentences."""
    from lokin_doctor.checks.chain import tcp

    source = Path(tcp.__file__).read_text()
    assert '_("fail")' not in source and '_("refuse")' not in source
    try:
        i18n.set_language("fr")
        for english in (
            "{host} resolves to both families and {family_now} is fail on port {port} while {family_other} answers",
            "{n_failed} of {n_addresses} addresses fail on port {port}: {failed}",
        ):
            french = i18n._(english)
            words = re.sub(r"\{[^}]*\}", "", french)  # placeholders ({n_failed}) are not words
            assert french != english and "fail" not in words, french
            assert "échoue" in french
    finally:
        i18n.set_language(None)


def test_load_failures_and_usage_errors_in_french_codes_unchanged() -> None:
    url = _refused()
    port = url.rsplit(":", 1)[1].strip("/")
    fr = run_cli("load", url, "-n", "2", "--duration", "0.2", env=FR)
    en = run_cli("load", url, "-n", "2", "--duration", "0.2", env=EN)
    assert fr.code == en.code == 1
    assert "tcp.refused x2: connexion refusée sur 127.0.0.1:" in fr.stdout
    assert f"correctif : démarrez le serveur WebSocket sur le port {port} (node server.js, ou " in fr.stdout
    assert "FAIL: 2 connexions en échec > --max-errors 0 (tcp.refused x2)" in fr.stdout
    assert "connection refused" not in fr.stdout and "failed connections" not in fr.stdout
    assert "tcp.refused x2: connection refused on 127.0.0.1:" in en.stdout
    assert "result        FAIL: 2 failed connections > --max-errors 0 (tcp.refused x2)" in en.stdout
    remote = run_cli("load", "ws://10.255.255.1:9/", "-n", "1", env=FR)
    assert remote.code == 2 and remote.stdout == ""
    assert remote.stderr == (
        "lokin-doctor: erreur : 10.255.255.1 n'est pas une adresse de loopback : un test de charge ne vise que "
        "cette machine sauf si vous ajoutez --allow-remote (ne le pointez jamais par mégarde sur un hôte de "
        "production)\n"
    )


def test_serve_on_a_taken_port_says_so_in_french() -> None:
    import os
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        fr = run_cli("serve", "--host", "127.0.0.1", "--port", str(port), env=FR)
        en = run_cli("serve", "--host", "127.0.0.1", "--port", str(port), env=EN)
    assert fr.code == en.code == 1
    assert len(fr.stderr.strip().splitlines()) == 1, fr.stderr
    assert f"le port {port} est déjà utilisé par pid {os.getpid()}" in fr.stderr, fr.stderr
    assert "arrêtez-le ou choisissez un autre port avec --port" in fr.stderr
    assert f"port {port} is already in use by pid {os.getpid()}" in en.stderr, en.stderr


def test_serve_banner_in_french_ready_line_unchanged() -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, **FR, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "lokin_doctor", "serve", "--host", "0.0.0.0", "--port", "0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines: list[str] = []
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # bounded: the banner is a dozen lines, then the ready line
            lines.append(line)
            if " ready " in line or len(lines) > 40:
                break
    finally:
        proc.kill()
        proc.wait()
    text = "".join(lines)
    assert "Serveur WebSocket LOK IN - lokin-doctor" in text, text
    assert "  Écoute :" in text and "(joignable depuis le réseau)" in text
    assert "  ATTENTION : exposé sur 0.0.0.0 sans --allow-origin" in text
    assert "accepting WebSocket connections" in lines[-1]  # the ready line supervisors wait for stays
    assert "Listening:" not in text and "WARNING" not in text


def test_every_registry_cause_speaks_french() -> None:
    """Each cause's meaning and fix is a msgid of the causes catalog with a French translation (a new layer
    module that forgot N_() would show English to a French user)."""
    from lokin_doctor import causes

    # the package's own causes (a test may declare one of its own, in English, while the suite runs)
    sources = "".join(p.read_text() for p in (ROOT / "lokin_doctor/causes").glob("*.py"))
    english = [c for c in causes.all_causes() if f'"{c.code}"' in sources or c.code.endswith(".timeout")]
    assert len(english) > 150
    i18n.set_language("fr")
    try:
        untranslated = [c.code for c in english if c.meaning_text() == c.meaning or c.fix_text() == c.fix]
    finally:
        i18n.set_language(None)
    assert untranslated == [], "run scripts/i18n and translate lokin_doctor_causes.po"
