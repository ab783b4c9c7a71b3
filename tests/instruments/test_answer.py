"""The whole answer, read from bytes: who sent it, what it said, and the status table's reading.

Every canned reply of tests/instruments/answers.py goes through the sans-I/O handshake observer (as the
wire does), then ``classify``: the exact cause code, the sender, and a summary that names the sender and
quotes what it said. No socket here; tests/test_answers_e2e.py replays the same bytes over TCP.
"""

from __future__ import annotations

import pytest
from websockets.client import ClientProtocol
from websockets.uri import parse_uri

from lokin_doctor.checks.chain import answer_table
from lokin_doctor.checks.chain.handshake import classify, proxy_name
from lokin_doctor.i18n import set_language
from lokin_doctor.instruments.answer import read_answer, read_body
from lokin_doctor.instruments.observer import HandshakeObserver, OutcomeKind
from lokin_doctor.instruments.wire import Outcome, from_observation
from lokin_doctor.target import parse_target
from tests.instruments.answers import CORPUS, Canned, http, nginx_page

URL = "ws://example.test:8080/ws"
TARGET = parse_target(URL)


@pytest.fixture(autouse=True)
def _english() -> None:
    set_language("en")


def observe(raw: bytes) -> Outcome:
    proto = ClientProtocol(parse_uri(URL))
    proto.send_request(proto.connect())
    obs = HandshakeObserver(proto)
    obs.data_to_send()
    obs.data(raw)
    if not obs.done:
        obs.timeout() if obs.grace else obs.eof()
    assert obs.outcome is not None
    return from_observation(obs.outcome, "127.0.0.1", 8080)


@pytest.mark.parametrize("canned", CORPUS, ids=[c.name for c in CORPUS])
def test_each_canned_answer_gets_its_reading(canned: Canned) -> None:
    out = observe(canned.raw)
    assert out.kind is OutcomeKind.STATUS, (out.kind, out.error)
    result = classify(out, TARGET)
    assert result.code == canned.code, (result.summary, result.hint)
    answer = result.evidence["answer"]
    assert answer["sender"] == canned.sender, answer
    assert [t["sender"] for t in answer.get("through", [])] == list(canned.through), answer
    text = f"{result.summary}\n{result.hint}"
    for words in canned.says:
        assert words in text, (words, text)
    # The summary always starts with the status line and names who sent it.
    assert result.summary.startswith(f"HTTP {out.status}"), result.summary
    assert answer["sender_name"] in result.summary


def test_the_corpus_is_large_and_covers_every_new_code() -> None:
    codes = {c.code for c in CORPUS}
    assert len(CORPUS) >= 30
    for row in answer_table.READINGS:
        if str(row.cause).startswith(
            ("platform.origin-dns", "platform.origin-error", "platform.origin-unreachable")
        ):
            continue  # same rows as their Cloudflare siblings, reached below
    assert {
        "handshake.version-unsupported",
        "handshake.event-stream",
        "handshake.no-backend",
        "handshake.headers-too-large",
        "handshake.method-not-allowed",
        "handshake.client-error",
        "handshake.misdirected",
        "handshake.captive-portal",
        "platform.origin-refused",
        "platform.edge-blocked",
        "platform.no-websocket",
    } <= codes


@pytest.mark.parametrize(
    ("status", "extra", "code"),
    [
        ("520 ", b"", "platform.origin-error"),
        ("523 ", b"", "platform.origin-unreachable"),
        ("526 ", b"", "platform.origin-cert-invalid"),
        ("530 ", b"error code: 1016", "platform.origin-dns"),
    ],
)
def test_other_cloudflare_statuses(status: str, extra: bytes, code: str) -> None:
    raw = http(status, [("Server", "cloudflare"), ("CF-RAY", "8a1b2c3d4e5f6789-CDG")], extra)
    result = classify(observe(raw), TARGET)
    assert result.code == code and "from Cloudflare" in result.summary


def test_a_52x_without_cloudflare_is_not_called_cloudflare() -> None:
    result = classify(observe(http("521 ", [("Server", "MyServer/2")])), TARGET)
    assert result.code == "handshake.server-error"
    assert "Cloudflare's status" in result.summary and "'MyServer/2'" in result.summary


def test_426_offering_13_is_a_dropped_upgrade_and_names_no_version_problem() -> None:
    raw = http("426 Upgrade Required", [("Sec-WebSocket-Version", "13"), ("Server", "nginx/1.22.1")])
    result = classify(observe(raw), TARGET)
    assert result.code == "handshake.upgrade-dropped"
    assert result.evidence["answer"]["versions_offered"] == ["13"]


def test_versions_offered_are_read_in_order() -> None:
    a = read_answer(426, "Upgrade Required", [("Sec-WebSocket-Version", "8, 7")])
    assert a.versions == ("8", "7")
    assert answer_table.read(a, TARGET, None)[0] == "handshake.version-unsupported"


def test_headers_of_interest_and_request_ids_are_quoted() -> None:
    a = read_answer(
        503,
        "Service Unavailable",
        [
            ("Server", "cloudflare"),
            ("CF-RAY", "abc-CDG"),
            ("Retry-After", "120"),
            ("WWW-Authenticate", "Bearer"),
            ("X-Request-Id", "r-1"),
            ("X-Amzn-Trace-Id", "Root=1-2-3"),
        ],
    )
    ev = a.evidence()
    assert ev["headers_of_interest"]["retry-after"] == "120"
    assert ev["headers_of_interest"]["www-authenticate"] == "Bearer"
    assert ev["request_ids"] == {"cf-ray": "abc-CDG", "x-request-id": "r-1", "x-amzn-trace-id": "Root=1-2-3"}
    assert ev["through"][0]["sender"] == "cloudflare"


def test_body_reading_title_heading_json_and_first_line() -> None:
    assert read_body(nginx_page("502 Bad Gateway"), "text/html")["title"] == "502 Bad Gateway"
    got = read_body(b'{"error": {"code": 5, "message": "quota exceeded"}}', "application/json")
    assert got["message"] == "quota exceeded"
    assert read_body(b"\n\nfirst line\nsecond", "text/plain")["first_line"] == "first line"
    page = read_body(b"<html><body><h1>503 Down</h1>\nBack soon.\n</body></html>", None)
    assert page["heading"] == "503 Down" and page["first_line"] == "Back soon."
    long = read_body(b"<title>" + b"x" * 500 + b"</title>", "text/html")["title"]
    assert long is not None and len(long) <= 161


def test_an_unknown_via_is_named_as_a_proxy() -> None:
    a = read_answer(502, "Bad Gateway", [("Via", "1.1 corp-gw")])
    assert a.through and a.through[0].display() == "a proxy (Via: 1.1 corp-gw)"


def test_proxy_name_reads_the_innermost_proxy() -> None:
    raw = http("502 Bad Gateway", [("Server", "cloudflare"), ("CF-RAY", "x")], nginx_page("502 Bad Gateway"))
    assert proxy_name(observe(raw)) == "nginx"
    assert proxy_name(observe(http("404 Not Found", [("Server", "Python/3.11 websockets/17.0")]))) is None


def test_an_unknown_status_is_reported_as_what_it_is() -> None:
    result = classify(observe(http("499 Client Closed Request", [("Server", "nginx")])), TARGET)
    assert result.code == "handshake.client-error"
    result = classify(observe(http("444 Whatever", [])), TARGET)
    assert result.code == "handshake.unexpected-status"
    assert result.summary.startswith("HTTP 444 Whatever from a server that does not say what it is: ")


def test_french_summary_keeps_the_sender_and_what_it_said() -> None:
    set_language("fr")
    try:
        result = classify(observe(CORPUS[0].raw), TARGET)
    finally:
        set_language("en")
    assert result.summary.startswith(
        "HTTP 502 Bad Gateway, envoyé par nginx 1.22.1, titre de page '502 Bad Gateway' : "
    )
    assert "le proxy fonctionne mais son backend ne répond pas" in result.summary


def test_docs_list_every_reading_code_and_sender() -> None:
    from pathlib import Path

    from lokin_doctor import causes
    from lokin_doctor.instruments.senders import SENDERS

    docs = (Path(__file__).resolve().parents[2] / "docs" / "checks.md").read_text()
    codes = {str(r.cause) for r in answer_table.READINGS}
    codes |= {c.code for c in causes.all_causes() if c.code.startswith("platform.")}
    codes |= {"tls.no-sni", "tls.unknown-name", "handshake.unexpected-status"}
    assert {c for c in codes if f"`{c}`" not in docs} == set()
    assert {s for s in SENDERS if f"`{s}`" not in docs} == set()
