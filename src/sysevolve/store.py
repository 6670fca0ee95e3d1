"""The run's single source of truth: one SQLite file, `run.db`, in write-ahead-log mode.

Every program is stored when it is proposed (status "pending", or the reason its edit was
rejected) and updated in the same transaction that records its evaluation, so a run killed at
any instant loses at most the proposals that were still in flight, and never stores an
evaluated program twice. Resume replays the programs table into a fresh archive.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterator

from sysevolve.program import Program

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL                   -- JSON
);
CREATE TABLE IF NOT EXISTS programs (
    id           INTEGER PRIMARY KEY,
    parent_id    INTEGER REFERENCES programs(id),
    iteration    INTEGER NOT NULL,        -- 0 for the initial program
    island       INTEGER NOT NULL,
    code         TEXT NOT NULL,           -- empty when no child program could be made
    edit         TEXT NOT NULL,           -- what the proposer returned (diff for rewrites)
    edit_summary TEXT NOT NULL,
    proposer     TEXT NOT NULL,
    seed         INTEGER,                 -- the proposal's random seed
    discarded    INTEGER NOT NULL DEFAULT 0,  -- children the proposer threw away first
    status       TEXT NOT NULL,           -- pending | ok | failed | invalid_edit | proposal_failed
    failure      TEXT,
    score        REAL,
    metrics      TEXT NOT NULL DEFAULT '{}',
    artifacts    TEXT NOT NULL DEFAULT '{}',
    created_at   REAL NOT NULL,
    evaluated_at REAL
);
CREATE INDEX IF NOT EXISTS programs_status ON programs(status);
CREATE TABLE IF NOT EXISTS evaluations (
    id         INTEGER PRIMARY KEY,
    program_id INTEGER NOT NULL REFERENCES programs(id),
    split      TEXT NOT NULL,
    ok         INTEGER NOT NULL,
    score      REAL,
    metrics    TEXT NOT NULL,
    artifacts  TEXT NOT NULL,
    failure    TEXT,
    duration_s REAL NOT NULL,
    at         REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id   INTEGER PRIMARY KEY,
    at   REAL NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL                    -- JSON
);
"""

_PROGRAM_COLUMNS = (
    "id, parent_id, iteration, island, code, edit, edit_summary, proposer, status, failure, "
    "score, metrics, artifacts"
)


def _program(row: tuple) -> Program:
    (id_, parent, iteration, island, code, edit, summary, proposer, status, failure, score,
     metrics, artifacts) = row
    return Program(
        id=id_, code=code, parent_id=parent, island=island, iteration=iteration, status=status,
        score=score, metrics=json.loads(metrics), artifacts=json.loads(artifacts), failure=failure,
        proposer=proposer, edit=edit, edit_summary=summary,
    )


class Store:
    """Reads and writes one run's `run.db`."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._db = sqlite3.connect(self.path, isolation_level=None)  # explicit transactions
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL survives a killed process
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)
        if self.get_meta("schema_version") is None:
            self.set_meta("schema_version", SCHEMA_VERSION)

    def close(self) -> None:
        self._db.close()

    def _transaction(self):
        return _Transaction(self._db)

    # --- meta -------------------------------------------------------------------------------
    def set_meta(self, key: str, value: Any) -> None:
        self._db.execute(
            "INSERT INTO meta(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, json.dumps(value)),
        )

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    # --- programs ---------------------------------------------------------------------------
    def add_program(self, program: Program, seed: int | None = None, rng_state: Any = None,
                    discarded: int = 0) -> int:
        """Store a new program and, in the same transaction, the engine's random state."""
        with self._transaction():
            cursor = self._db.execute(
                "INSERT INTO programs(parent_id, iteration, island, code, edit, edit_summary, "
                "proposer, seed, discarded, status, failure, score, metrics, artifacts, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (program.parent_id, program.iteration, program.island, program.code, program.edit,
                 program.edit_summary, program.proposer, seed, discarded, program.status,
                 program.failure,
                 program.score, json.dumps(program.metrics), json.dumps(program.artifacts),
                 time.time()),
            )
            if rng_state is not None:
                self.set_meta("rng_state", rng_state)
        return int(cursor.lastrowid)

    def record_evaluation(self, program_id: int, split: str, ok: bool, score: float | None,
                          metrics: dict, artifacts: dict, failure: str | None,
                          duration_s: float) -> None:
        """Store one evaluation; a search-split evaluation also settles the program's status."""
        now = time.time()
        metrics_json, artifacts_json = json.dumps(metrics), json.dumps(artifacts)
        with self._transaction():
            self._db.execute(
                "INSERT INTO evaluations(program_id, split, ok, score, metrics, artifacts, failure, "
                "duration_s, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (program_id, split, int(ok), score, metrics_json, artifacts_json, failure,
                 duration_s, now),
            )
            if split == "search":
                self._db.execute(
                    "UPDATE programs SET status = ?, score = ?, metrics = ?, artifacts = ?, "
                    "failure = ?, evaluated_at = ? WHERE id = ?",
                    ("ok" if ok else "failed", score, metrics_json, artifacts_json, failure, now,
                     program_id),
                )

    def program(self, program_id: int) -> Program:
        row = self._db.execute(
            f"SELECT {_PROGRAM_COLUMNS} FROM programs WHERE id = ?", (program_id,)
        ).fetchone()
        if row is None:
            raise KeyError(f"no program {program_id} in {self.path}")
        return _program(row)

    def programs(self, status: str | None = None) -> Iterator[Program]:
        """Programs in the order they were stored, optionally only those with `status`."""
        query = f"SELECT {_PROGRAM_COLUMNS} FROM programs"
        args: tuple = ()
        if status is not None:
            query += " WHERE status = ?"
            args = (status,)
        for row in self._db.execute(query + " ORDER BY id", args).fetchall():
            yield _program(row)

    def initial_program(self) -> Program | None:
        row = self._db.execute(
            f"SELECT {_PROGRAM_COLUMNS} FROM programs WHERE iteration = 0 ORDER BY id LIMIT 1"
        ).fetchone()
        return _program(row) if row else None

    def best_program(self) -> Program | None:
        row = self._db.execute(
            f"SELECT {_PROGRAM_COLUMNS} FROM programs WHERE status = 'ok' "
            "ORDER BY score DESC, id ASC LIMIT 1"
        ).fetchone()
        return _program(row) if row else None

    def iterations_done(self) -> int:
        """Proposals stored so far (the initial program is not one)."""
        return self._db.execute("SELECT COUNT(*) FROM programs WHERE iteration > 0").fetchone()[0]

    def last_iteration(self) -> int:
        return self._db.execute("SELECT COALESCE(MAX(iteration), 0) FROM programs").fetchone()[0]

    def status_counts(self) -> dict[str, int]:
        rows = self._db.execute("SELECT status, COUNT(*) FROM programs GROUP BY status").fetchall()
        return {status: count for status, count in rows}

    def discarded_proposals(self) -> int:
        """Children proposers threw away before proposing (unparseable mutations)."""
        return self._db.execute("SELECT COALESCE(SUM(discarded), 0) FROM programs").fetchone()[0]

    def evaluation_count(self, program_id: int, split: str = "search") -> int:
        return self._db.execute(
            "SELECT COUNT(*) FROM evaluations WHERE program_id = ? AND split = ?",
            (program_id, split),
        ).fetchone()[0]

    def failure_reasons(self, limit: int = 10) -> list[tuple[str, str, int]]:
        """The most frequent (status, reason) pairs among failed programs."""
        return self._db.execute(
            "SELECT status, failure, COUNT(*) AS n FROM programs "
            "WHERE status IN ('failed', 'invalid_edit', 'proposal_failed') "
            "GROUP BY status, failure ORDER BY n DESC LIMIT ?",
            (limit,),
        ).fetchall()

    # --- events -----------------------------------------------------------------------------
    def add_event(self, kind: str, **data: Any) -> None:
        self._db.execute(
            "INSERT INTO events(at, kind, data) VALUES (?, ?, ?)",
            (time.time(), kind, json.dumps(data)),
        )

    def events(self, kind: str | None = None) -> list[tuple[float, str, dict]]:
        query, args = "SELECT at, kind, data FROM events", ()
        if kind:
            query, args = query + " WHERE kind = ?", (kind,)
        rows = self._db.execute(query + " ORDER BY id", args).fetchall()
        return [(at, k, json.loads(data)) for at, k, data in rows]


class _Transaction:
    def __init__(self, db: sqlite3.Connection):
        self._db = db

    def __enter__(self):
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb):
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
        return False
