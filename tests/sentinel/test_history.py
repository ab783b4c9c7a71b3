"""The history on real SQLite files: folding, incidents from the confirmed state, pruning, two writers, and
every file trouble (corrupt, not ours, locked, unwritable) as one HistoryError line."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from lokin_doctor.tools.sentinel.history import History, HistoryError
from lokin_doctor.tools.sentinel.records import Run

REPORT = {"checks": [{"id": "tcp", "status": "ok", "code": None}], "status": "ok"}
FAILED = {"checks": [{"id": "tcp", "status": "fail", "code": "tcp.refused"}], "status": "fail"}


def _run(
    t: float, status: str = "ok", code: str | None = None, state: str | None = None, target: str = "ws://a/"
) -> Run:
    return Run(
        target,
        t,
        0.1,
        status,
        code,
        "tcp" if code else None,
        "s",
        "fix" if code else None,
        {"connect": 0.001},
        None,
        FAILED if code else REPORT,
        state=state,
    )


def test_a_healthy_repeat_is_folded_and_keeps_the_latest_report(tmp_path: Path) -> None:
    with History(tmp_path / "sub" / "h.sqlite") as h:
        first = h.record(_run(10, state="up"))
        again = h.record(_run(20, state="up"))
        assert again.id == first.id and again.repeats == 2 and again.last_started == 20
        failing = h.record(_run(30, "fail", "tcp.refused", "up"))
        assert failing.id != first.id
        assert h.count() == 2
        stored = h.run(first.id or 0)
        assert stored is not None and stored.report == REPORT and stored.repeats == 2


def test_incidents_follow_the_confirmed_state(tmp_path: Path) -> None:
    with History(tmp_path / "h.sqlite") as h:
        seq = [
            ("ok", None, "up"),
            ("fail", "tcp.refused", "up"),
            ("ok", None, "up"),  # a blip, never confirmed
            ("fail", "tcp.refused", "up"),
            ("fail", "tcp.timeout", "down"),
            ("ok", None, "up"),
        ]
        for i, (status, code, state) in enumerate(seq):
            h.record(_run(100 + 10 * i, status, code, state))
        incidents = h.incidents()
        assert len(incidents) == 1
        inc = incidents[0]
        assert (inc.start, inc.end, inc.root_cause, inc.runs) == (130, 150, "tcp.refused", 2)
        assert inc.causes == ("tcp.refused", "tcp.timeout")
        assert h.incidents(code="tcp.timeout") == incidents and h.incidents(code="dns") == []
        assert h.incidents(code="tcp") == incidents  # a whole layer
        assert h.incidents(since=151) == [] and h.incidents(until=129) == []


def test_prune_by_age_and_by_size_keeps_each_targets_latest_row(tmp_path: Path) -> None:
    now = time.time()
    with History(tmp_path / "h.sqlite") as h:
        for i in range(200):
            h.record(_run(now - 86400 * 3 + i, "fail", "tcp.refused", "down"))
        h.record(_run(now - 86400 * 3, "fail", "tcp.refused", "down", target="ws://b/"))
        assert h.prune(older_than=86400) == 199  # each target keeps its newest row
        assert h.targets() == ["ws://a/", "ws://b/"]
        big = {
            "checks": [
                {"id": "tcp", "status": "fail", "code": "tcp.refused", "summary": os.urandom(8000).hex()}
            ]
        }
        for i in range(40):
            h.record(Run("ws://a/", now + i, 0.1, "fail", "tcp.refused", report={**big, "n": i}))
        before = h.size()
        assert before > 400_000
        h.prune(max_bytes=before // 3)
        assert h.size() <= before // 3
        assert (tmp_path / "h.sqlite").stat().st_size < before  # freed pages handed back, no VACUUM
        assert h.latest("ws://a/") is not None and h.latest("ws://b/") is not None


def test_two_writers_on_one_file(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    errors: list[BaseException] = []

    def write(target: str) -> None:
        try:
            with History(path) as h:
                for i in range(50):
                    h.record(_run(1000 + i, "fail", "tcp.refused", "down", target=target))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(f"ws://{n}/",)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    with History(path) as h:
        assert len(h.runs(target="ws://a/")) == 50 and len(h.runs(target="ws://b/")) == 50


def test_a_corrupt_file_is_one_clear_error_and_is_not_touched(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    path.write_bytes(b"not a database at all " * 500)
    with pytest.raises(HistoryError, match="not a readable SQLite database"):
        History(path)
    assert path.read_bytes().startswith(b"not a database")


def test_another_sqlite_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE t (x)")
    with pytest.raises(HistoryError, match="not a lokin-doctor history"):
        History(path)


def test_a_lock_held_too_long_is_a_history_error(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    History(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        h = History(path, busy_timeout=0.2)
        with pytest.raises(HistoryError, match="locked"):
            h.record(_run(1))
        h.close()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with History(path) as h:
        assert h.record(_run(2)).id == 1  # nothing else lost: the file works again


def test_an_unwritable_place_is_a_history_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(HistoryError, match="cannot be written"):
        History(blocker / "h.sqlite")
