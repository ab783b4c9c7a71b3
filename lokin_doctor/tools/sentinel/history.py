"""The sentinel's history: every run of every target in one SQLite file (the standard library's ``sqlite3``).

Schema (``PRAGMA user_version`` 1), one table, documented in ``docs/sentinel.md``::

    runs(id INTEGER PRIMARY KEY, target, started, last_started, repeats, duration, status, root_cause,
         failing_check, summary, hint, phases JSON, cert_not_after, state, signature, report BLOB)

``report`` is the JSON report compressed with zlib. A healthy run identical to the previous row of its target
(same status, no root cause, same check statuses and codes, same confirmed state) is *folded* into that row:
``repeats`` and ``last_started`` grow, the row keeps the latest report (so a folded row still shows what the
last run saw) and its latest duration and phases. Incidents are not stored: they are computed from the rows'
confirmed ``state`` (the sentinel's ``--confirm``), so a blip that was never confirmed opens none.

WAL and a ``busy_timeout`` let two sentinels (and ``history`` readers) share one file. Every sqlite error
becomes a :class:`HistoryError`: one line naming the file and what to do (a full disk, a corrupt file, a lock
held too long, a file that cannot be written). The object is thread-safe (one lock): the engine writes from a
worker thread so a slow disk never delays a probe.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from lokin_doctor.i18n import _
from lokin_doctor.tools.sentinel.records import Incident, Run
from lokin_doctor.validate import CommandError

SCHEMA_VERSION = 1

#: A run the stop cut before it finished: kept in the history, never a state change.
CUT = "cut"

_SCHEMA = """
CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    target TEXT NOT NULL,
    started REAL NOT NULL,
    last_started REAL NOT NULL,
    repeats INTEGER NOT NULL DEFAULT 1,
    duration REAL NOT NULL,
    status TEXT NOT NULL,
    root_cause TEXT,
    failing_check TEXT,
    summary TEXT NOT NULL DEFAULT '',
    hint TEXT,
    phases TEXT NOT NULL DEFAULT '{}',
    cert_not_after REAL,
    state TEXT,
    signature TEXT,
    report BLOB
);
CREATE INDEX runs_target_started ON runs(target, started);
CREATE INDEX runs_started ON runs(started);
"""

_COLUMNS = (
    "id, target, started, last_started, repeats, duration, status, root_cause, failing_check, summary, "
    "hint, phases, cert_not_after, state"
)


class HistoryError(CommandError):
    """The history file cannot be opened, read or written: one line naming it (exit 1 at start-up; while the
    sentinel runs, a line on stderr and the probing goes on)."""


def default_path(environ: dict[str, str] | None = None) -> Path:
    """``$XDG_DATA_HOME/lokin-doctor/history.sqlite``, else ``~/.local/share/lokin-doctor/history.sqlite``."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_DATA_HOME") or ""
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".local" / "share"
    return root / "lokin-doctor" / "history.sqlite"


def explain(exc: BaseException, path: str | os.PathLike[str], busy_timeout: float = 5.0) -> str:
    """The one line a sqlite3 (or OS) error means for the history at ``path``."""
    text = str(exc)
    low = text.lower()
    if "disk is full" in low or "disk full" in low or getattr(exc, "errno", None) == 28:
        return _(
            "the history {path} cannot grow: the disk is full ({error}); free space or use --keep"
        ).format(path=path, error=text)
    if "not a database" in low or "malformed" in low or "file is encrypted" in low:
        return _(
            "the history {path} is not a readable SQLite database (corrupt, or another kind of file): move it "
            "aside and a new one is started ({error})"
        ).format(path=path, error=text)
    if "locked" in low or "busy" in low:
        return _(
            "the history {path} stayed locked by another program for more than {seconds:g} s ({error})"
        ).format(path=path, seconds=busy_timeout, error=text)
    if "readonly" in low or "read-only" in low or "unable to open" in low or isinstance(exc, OSError):
        reason = getattr(exc, "strerror", None) or text
        return _(
            "the history {path} cannot be written ({error}): check the directory's permissions or give "
            "another --history"
        ).format(path=path, error=reason)
    return _("the history {path} failed: {error}").format(path=path, error=f"{type(exc).__name__}: {text}")


def signature(report: dict[str, Any] | None) -> str | None:
    """What two healthy runs must share to be folded: each check's id, status and code."""
    if not report:
        return None
    checks = report.get("checks") or []
    return json.dumps([[c.get("id"), c.get("status"), c.get("code")] for c in checks], separators=(",", ":"))


def _pack(report: dict[str, Any] | None) -> bytes | None:
    if report is None:
        return None
    return zlib.compress(json.dumps(report, separators=(",", ":"), default=str).encode("utf-8"), 6)


def _unpack(blob: bytes | None) -> dict[str, Any] | None:
    if blob is None:
        return None
    value = json.loads(zlib.decompress(blob).decode("utf-8"))
    return value if isinstance(value, dict) else None


def code_matches(code: str | None, wanted: str) -> bool:
    """``tcp.refused`` matches ``tcp.refused`` and ``tcp`` (a whole layer)."""
    return code is not None and (code == wanted or code.startswith(wanted.rstrip(".") + "."))


class History:
    """The runs of every target, in one SQLite file."""

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 5.0) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        try:
            if self.path.parent and not self.path.parent.exists():
                self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.path.exists() and not self.path.is_file():
                raise HistoryError(
                    _("the history {path} is not a file; give a file path to --history").format(
                        path=self.path
                    )
                )
            db = sqlite3.connect(
                str(self.path), timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
            self._db = db
            db.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            for attempt in range(20):  # two sentinels creating one file at once: the loser waits its turn
                try:
                    self._setup(db)
                    break
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) or attempt == 19:
                        raise
                    time.sleep(0.05 * (attempt + 1))
        except HistoryError:
            self._abandon()
            raise
        except (sqlite3.Error, OSError) as exc:
            self._abandon()
            raise HistoryError(explain(exc, self.path, busy_timeout)) from None

    def _abandon(self) -> None:
        if self._db is not None:
            try:
                self._db.close()
            except sqlite3.Error:
                pass
            self._db = None

    def _setup(self, db: sqlite3.Connection) -> None:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise HistoryError(
                _(
                    "the history {path} was written by a newer lokin-doctor (schema {version}, this one reads "
                    "{known}): upgrade, or give another --history"
                ).format(path=self.path, version=version, known=SCHEMA_VERSION)
            )
        if version == 0:
            # Before the first page is written: freed pages then go back to the file system a few at a time
            # after a prune (incremental_vacuum), never a whole VACUUM. A no-op on a file that has tables.
            db.execute("PRAGMA auto_vacuum = INCREMENTAL")
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":  # e.g. a file system without shared memory: still usable
            db.execute("PRAGMA journal_mode = DELETE")
        db.execute("PRAGMA synchronous = NORMAL")
        if version == SCHEMA_VERSION:
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            # Re-read under the write lock: another sentinel may have created it meanwhile.
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                tables = db.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
                if tables:
                    raise HistoryError(
                        _(
                            "{path} is a SQLite database but not a lokin-doctor history; give another --history"
                        ).format(path=self.path)
                    )
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    # -- plumbing ------------------------------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise HistoryError(_("the history {path} is closed").format(path=self.path))
        return self._db

    def _guard(self) -> _Guard:
        return _Guard(self)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                try:
                    self._db.close()
                finally:
                    self._db = None

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing -------------------------------------------------------------------------------------------

    def record(self, run: Run) -> Run:
        """Store ``run``; the stored row is returned (with its id; a folded healthy repeat: the folded row)."""
        sig = signature(run.report)
        with self._guard() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                stored = self._fold(db, run, sig) or self._insert(db, run, sig)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        return stored

    def _fold(self, db: sqlite3.Connection, run: Run, sig: str | None) -> Run | None:
        if not run.healthy or run.status == CUT or run.root_cause is not None or sig is None:
            return None
        row = db.execute(
            "SELECT id, status, root_cause, signature, state, repeats, started FROM runs "
            "WHERE target = ? ORDER BY started DESC, id DESC LIMIT 1",
            (run.target,),
        ).fetchone()
        if row is None:
            return None
        row_id, status, root, row_sig, state, repeats, started = row
        if (status, root, row_sig, state) != (run.status, None, sig, run.state) or run.started < started:
            return None
        db.execute(
            "UPDATE runs SET repeats = repeats + 1, last_started = ?, duration = ?, summary = ?, phases = ?, "
            "cert_not_after = ?, report = ? WHERE id = ?",
            (
                run.started,
                run.duration,
                run.summary,
                json.dumps(run.phases),
                run.cert_not_after,
                _pack(run.report),
                row_id,
            ),
        )
        return replace(run, id=row_id, repeats=repeats + 1, started=started, last_started=run.started)

    def _insert(self, db: sqlite3.Connection, run: Run, sig: str | None) -> Run:
        last = run.last_started if run.last_started is not None else run.started
        cur = db.execute(
            "INSERT INTO runs (target, started, last_started, repeats, duration, status, root_cause, "
            "failing_check, summary, hint, phases, cert_not_after, state, signature, report) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                run.target,
                run.started,
                last,
                run.repeats,
                run.duration,
                run.status,
                run.root_cause,
                run.failing_check,
                run.summary,
                run.hint,
                json.dumps(run.phases),
                run.cert_not_after,
                run.state,
                sig,
                _pack(run.report),
            ),
        )
        return replace(run, id=cur.lastrowid, last_started=last)

    def prune(self, *, older_than: float | None = None, max_bytes: int | None = None) -> int:
        """Delete old runs; return how many rows went.

        ``older_than``: an age in seconds (runs whose last repeat began longer ago than that go);
        ``max_bytes``: the oldest runs go until the file's used pages fit. The newest row of each target is
        always kept (its state is where a restarted sentinel picks up). Cheap enough to call after every run:
        an indexed DELETE, the page count, a few freed pages handed back (``incremental_vacuum``), no VACUUM.
        """
        deleted = 0
        keep = "id NOT IN (SELECT max(id) FROM runs GROUP BY target)"
        with self._guard() as db:
            if older_than is not None:
                cutoff = time.time() - older_than
                deleted += db.execute(
                    f"DELETE FROM runs WHERE last_started < ? AND {keep}", (cutoff,)
                ).rowcount
            if max_bytes is not None:
                for _round in range(64):  # bounded: each round drops a tenth of what is left, or more
                    if self._used_bytes(db) <= max_bytes:
                        break
                    total = db.execute("SELECT count(*) FROM runs").fetchone()[0]
                    batch = max(1, total // 10)
                    gone = db.execute(
                        f"DELETE FROM runs WHERE id IN (SELECT id FROM runs WHERE {keep} "
                        "ORDER BY started, id LIMIT ?)",
                        (batch,),
                    ).rowcount
                    deleted += gone
                    if not gone:
                        break
                    db.execute("PRAGMA incremental_vacuum")
            if deleted:
                db.execute("PRAGMA incremental_vacuum")
        return deleted

    @staticmethod
    def _used_bytes(db: sqlite3.Connection) -> int:
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        free = db.execute("PRAGMA freelist_count").fetchone()[0]
        size = db.execute("PRAGMA page_size").fetchone()[0]
        return int((pages - free) * size)

    def size(self) -> int:
        """Bytes the history's pages use (the main file; the WAL is folded back at checkpoints)."""
        with self._guard() as db:
            return self._used_bytes(db)

    # -- reading -------------------------------------------------------------------------------------------

    def run(self, run_id: int) -> Run | None:
        """One run with its report (a folded row: the report of its latest repeat)."""
        with self._guard() as db:
            row = db.execute(f"SELECT {_COLUMNS}, report FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            return None
        try:
            report = _unpack(row[-1])
        except (zlib.error, ValueError, UnicodeDecodeError) as exc:
            raise HistoryError(
                explain(sqlite3.DatabaseError(f"malformed report: {exc}"), self.path)
            ) from None
        return replace(_to_run(row[:-1]), report=report)

    def runs(
        self,
        target: str | None = None,
        since: float | None = None,
        until: float | None = None,
        code: str | None = None,
        limit: int | None = None,
    ) -> list[Run]:
        """Runs newest first, without their reports; ``since``/``until`` keep rows that overlap the window,
        ``code`` the runs whose root cause is that code (or of that layer: ``tcp``)."""
        where, args = _where(target, since, until)
        if code is not None:
            where.append("(root_cause = ? OR root_cause LIKE ?)")
            args += [code, code.rstrip(".") + ".%"]
        sql = f"SELECT {_COLUMNS} FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY started DESC, id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        with self._guard() as db:
            rows = db.execute(sql, args).fetchall()
        return [_to_run(r) for r in rows]

    def latest(self, target: str) -> Run | None:
        found = self.runs(target=target, limit=1)
        return found[0] if found else None

    def targets(self) -> list[str]:
        with self._guard() as db:
            return [r[0] for r in db.execute("SELECT DISTINCT target FROM runs ORDER BY target")]

    def count(self) -> int:
        """How many rows (a folded row counts once)."""
        with self._guard() as db:
            return int(db.execute("SELECT count(*) FROM runs").fetchone()[0])

    def incidents(
        self,
        target: str | None = None,
        since: float | None = None,
        until: float | None = None,
        code: str | None = None,
    ) -> list[Incident]:
        """Incidents newest first: those that overlap ``since``/``until``, with ``code`` among their causes."""
        names = [target] if target is not None else self.targets()
        found: list[Incident] = []
        for name in names:
            with self._guard() as db:
                rows = db.execute(
                    f"SELECT {_COLUMNS} FROM runs WHERE target = ? ORDER BY started, id", (name,)
                ).fetchall()
            found.extend(incidents_of(_to_run(r) for r in rows))
        kept = [
            i
            for i in found
            if (since is None or i.end is None or i.end >= since)
            and (until is None or i.start <= until)
            and (code is None or any(code_matches(c, code) for c in i.causes))
        ]
        return sorted(kept, key=lambda i: (i.start, i.first_run), reverse=True)


class _Guard:
    """The lock, the open connection, and every sqlite error turned into a :class:`HistoryError`."""

    def __init__(self, history: History) -> None:
        self.history = history

    def __enter__(self) -> sqlite3.Connection:
        self.history._lock.acquire()
        try:
            return self.history._conn()
        except BaseException:
            self.history._lock.release()
            raise

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.history._lock.release()
        if isinstance(exc, (sqlite3.Error, OSError)) and not isinstance(exc, HistoryError):
            raise HistoryError(explain(exc, self.history.path, self.history.busy_timeout)) from None


def _where(target: str | None, since: float | None, until: float | None) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    args: list[Any] = []
    if target is not None:
        where.append("target = ?")
        args.append(target)
    if since is not None:
        where.append("last_started >= ?")
        args.append(since)
    if until is not None:
        where.append("started <= ?")
        args.append(until)
    return where, args


def _to_run(row: Sequence[Any]) -> Run:
    (
        row_id,
        target,
        started,
        last,
        repeats,
        duration,
        status,
        root,
        failing,
        summary,
        hint,
        phases,
        cert,
        state,
    ) = row
    try:
        phase_map = {str(k): float(v) for k, v in json.loads(phases or "{}").items()}
    except (ValueError, TypeError, AttributeError):
        phase_map = {}
    return Run(
        target=target,
        started=started,
        duration=duration,
        status=status,
        root_cause=root,
        failing_check=failing,
        summary=summary or "",
        hint=hint,
        phases=phase_map,
        cert_not_after=cert,
        report=None,
        repeats=repeats,
        last_started=last,
        id=row_id,
        state=state,
    )


def is_down(run: Run) -> bool:
    """The run's confirmed state when the sentinel stored one, else its own status."""
    if run.state is not None:
        return run.state == "down"
    return not run.healthy


def incidents_of(runs: Iterator[Run] | Sequence[Run]) -> list[Incident]:
    """The incidents of one target's runs (oldest first in, oldest first out).

    An incident opens when the confirmed state goes down and starts at the first failing run of the streak
    that confirmed it; it ends at the first healthy run of the streak that confirmed the recovery (None while
    it lasts). Cut runs (the sentinel stopped in the middle) change nothing.
    """
    out: list[Incident] = []
    current: dict[str, Any] | None = None  # the open incident
    streak: dict[str, Any] | None = None  # the failing runs since the last healthy one
    first_ok: Run | None = None  # the first healthy run since the last failing one
    for run in runs:
        if run.status == CUT:
            continue
        if run.healthy:
            streak = None
            first_ok = first_ok or run
        else:
            first_ok = None
            if streak is None:
                streak = {"opener": run, "runs": 0, "causes": [], "last": run}
            _add(streak, run)
            if current is not None:
                _add(current, run)
        down = is_down(run)
        if current is None and down and streak is not None:
            current = {**streak, "causes": list(streak["causes"])}
        elif current is not None and not down:
            out.append(_incident(current, end=(first_ok or run).started))
            current = None
    if current is not None:
        out.append(_incident(current, end=None))
    return out


def _add(agg: dict[str, Any], run: Run) -> dict[str, Any]:
    agg["runs"] += run.repeats
    agg["last"] = run
    if run.root_cause and run.root_cause not in agg["causes"]:
        agg["causes"].append(run.root_cause)
    return agg


def _incident(current: dict[str, Any], end: float | None) -> Incident:
    opener: Run = current["opener"]
    last: Run = current["last"]
    return Incident(
        target=opener.target,
        start=opener.started,
        end=end,
        root_cause=opener.root_cause,
        failing_check=opener.failing_check,
        summary=opener.summary,
        hint=opener.hint,
        first_run=opener.id or 0,
        last_run=last.id or 0,
        runs=max(1, current["runs"]),
        causes=tuple(current["causes"]),
    )
