"""The run's single source of truth: one SQLite file, `run.db`, in write-ahead-log mode.

Every program is stored when it is proposed (status "pending", or the reason its edit was
rejected) and updated in the same transaction that records its evaluation; the initial program
is stored together with its evaluation. A run killed at any instant therefore loses at most the
proposals and evaluations that were in flight, and never stores an evaluation twice. Programs
carry the order in which their fate was settled, and resume replays them in that order into a
fresh archive. One process at a time may write a run: the writer holds a lock file beside it.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from sysevolve.program import Program
from sysevolve.proposals.base import PROPOSER_PREFIX, LLMCall

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
    settled_seq  INTEGER UNIQUE,          -- order in which the status became final
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
CREATE TABLE IF NOT EXISTS llm_calls (
    id            INTEGER PRIMARY KEY,
    program_id    INTEGER NOT NULL REFERENCES programs(id),  -- the proposal it was made for
    model         TEXT NOT NULL,
    messages      TEXT NOT NULL,          -- JSON list of chat messages
    response      TEXT NOT NULL,
    input_tokens  INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cost_usd      REAL NOT NULL,
    latency_s     REAL NOT NULL,
    attempts      INTEGER NOT NULL,
    outcome       TEXT NOT NULL,          -- ok, or the cause of failure
    error         TEXT,
    at            REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS llm_calls_program ON llm_calls(program_id);
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


class RunLocked(RuntimeError):
    """Another process is writing this run."""


@dataclass(frozen=True)
class Evaluation:
    """One evaluation of a program, as stored."""

    split: str
    ok: bool
    score: float | None
    metrics: dict
    artifacts: dict
    failure: str | None
    duration_s: float


class Store:
    """Reads and writes one run's `run.db`; `writer=True` takes the run's lock or fails."""

    def __init__(self, path: Path, writer: bool = False):
        self.path = Path(path)
        self._lock = self._take_lock() if writer else None
        self._db = sqlite3.connect(self.path, isolation_level=None)  # explicit transactions
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL survives a killed process
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)
        if self.get_meta("schema_version") is None:
            self.set_meta("schema_version", SCHEMA_VERSION)

    def _take_lock(self):
        handle = open(self.path.with_name(self.path.name + ".lock"), "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            handle.close()
            raise RunLocked(f"{self.path.parent} is in use by another sysevolve process (pid {holder})") from None
        handle.truncate(0)
        handle.write(str(os.getpid()))
        handle.flush()
        return handle

    def close(self) -> None:
        """Close the database and release the run's lock; closing twice is harmless."""
        self._db.close()
        if self._lock is not None:
            self._lock.close()  # closing the file releases the lock
            self._lock = None

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
    def add_program(self, program: Program, seed: int | None = None, discarded: int = 0,
                    evaluation: Evaluation | None = None, calls: tuple[LLMCall, ...] = ()) -> int:
        """Store a new program with, in the same transaction, the model calls that made it and
        (for the initial program) its search evaluation."""
        with self._transaction():
            settled = None if program.status == "pending" else self._next_settled_seq()
            cursor = self._db.execute(
                "INSERT INTO programs(parent_id, iteration, island, code, edit, edit_summary, "
                "proposer, seed, discarded, status, settled_seq, failure, score, metrics, "
                "artifacts, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (program.parent_id, program.iteration, program.island, program.code, program.edit,
                 program.edit_summary, program.proposer, seed, discarded, program.status, settled,
                 program.failure, program.score, json.dumps(program.metrics),
                 json.dumps(program.artifacts), time.time()),
            )
            program_id = int(cursor.lastrowid)
            for call in calls:
                self._db.execute(
                    "INSERT INTO llm_calls(program_id, model, messages, response, input_tokens, "
                    "output_tokens, cost_usd, latency_s, attempts, outcome, error, at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (program_id, call.model, json.dumps(list(call.messages)), call.response,
                     call.input_tokens, call.output_tokens, call.cost_usd, call.latency_s,
                     call.attempts, call.outcome, call.error, time.time()),
                )
            if evaluation is not None:
                self._record(program_id, evaluation)
        return program_id

    def record_evaluation(self, program_id: int, evaluation: Evaluation) -> None:
        """Store one evaluation; a search-split evaluation also settles a pending program."""
        with self._transaction():
            self._record(program_id, evaluation)

    def _next_settled_seq(self) -> int:
        return self._db.execute("SELECT COALESCE(MAX(settled_seq), 0) + 1 FROM programs").fetchone()[0]

    def _record(self, program_id: int, e: Evaluation) -> None:
        now = time.time()
        metrics_json, artifacts_json = json.dumps(e.metrics), json.dumps(e.artifacts)
        self._db.execute(
            "INSERT INTO evaluations(program_id, split, ok, score, metrics, artifacts, failure, "
            "duration_s, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (program_id, e.split, int(e.ok), e.score, metrics_json, artifacts_json, e.failure,
             e.duration_s, now),
        )
        if e.split != "search":
            return
        updated = self._db.execute(
            "UPDATE programs SET status = ?, settled_seq = ?, score = ?, metrics = ?, "
            "artifacts = ?, failure = ?, evaluated_at = ? WHERE id = ? AND status = 'pending'",
            ("ok" if e.ok else "failed", self._next_settled_seq(), e.score, metrics_json,
             artifacts_json, e.failure, now, program_id),
        ).rowcount
        if updated != 1:
            raise RuntimeError(f"program {program_id} is not pending; refusing a second search evaluation")

    def program(self, program_id: int) -> Program:
        row = self._db.execute(
            f"SELECT {_PROGRAM_COLUMNS} FROM programs WHERE id = ?", (program_id,)
        ).fetchone()
        if row is None:
            raise KeyError(f"no program {program_id} in {self.path}")
        return _program(row)

    def add_warning(self, program_id: int, warning: str) -> None:
        """Append `warning` to a program's artifacts["warnings"]."""
        with self._transaction():
            row = self._db.execute("SELECT artifacts FROM programs WHERE id = ?", (program_id,)).fetchone()
            artifacts = json.loads(row[0]) if row else {}
            artifacts["warnings"] = list(artifacts.get("warnings", [])) + [warning]
            self._db.execute("UPDATE programs SET artifacts = ? WHERE id = ?",
                             (json.dumps(artifacts), program_id))

    def settled_programs(self) -> Iterator[Program]:
        """Programs whose fate is known, in the order it became known."""
        rows = self._db.execute(
            f"SELECT {_PROGRAM_COLUMNS} FROM programs WHERE settled_seq IS NOT NULL ORDER BY settled_seq"
        ).fetchall()
        for row in rows:
            yield _program(row)

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

    def failure_reasons(self, limit: int = 10) -> list[tuple[str, str, int]]:
        """The most frequent (status, reason) pairs among failed programs."""
        return self._db.execute(
            "SELECT status, failure, COUNT(*) AS n FROM programs "
            "WHERE status IN ('failed', 'invalid_edit', 'proposal_failed') "
            "GROUP BY status, failure ORDER BY n DESC LIMIT ?",
            (limit,),
        ).fetchall()

    # --- model calls ------------------------------------------------------------------------
    def spending(self) -> tuple[float, int]:
        """Total (cost in USD, input plus output tokens) of every stored model call."""
        cost, tokens = self._db.execute(
            "SELECT COALESCE(SUM(cost_usd), 0), COALESCE(SUM(input_tokens + output_tokens), 0) "
            "FROM llm_calls"
        ).fetchone()
        return float(cost), int(tokens)

    def cost_by_program(self) -> dict[int, float]:
        rows = self._db.execute("SELECT program_id, SUM(cost_usd) FROM llm_calls GROUP BY program_id")
        return {program_id: cost for program_id, cost in rows.fetchall()}

    def usage_by_model(self) -> list[dict]:
        """Per model: calls, failed calls by cause, tokens, cost, proposals and improvements."""
        rows = self._db.execute(
            "SELECT model, COUNT(*), SUM(input_tokens), SUM(output_tokens), SUM(cost_usd), "
            "SUM(outcome = 'ok'), COUNT(DISTINCT program_id) FROM llm_calls GROUP BY model ORDER BY model"
        ).fetchall()
        usage = []
        for model, calls, tokens_in, tokens_out, cost, ok, proposals in rows:
            causes = dict(self._db.execute(
                "SELECT outcome, COUNT(*) FROM llm_calls WHERE model = ? AND outcome != 'ok' "
                "GROUP BY outcome ORDER BY outcome", (model,)
            ).fetchall())
            improvements = self._db.execute(
                "SELECT COUNT(*) FROM programs child JOIN programs parent ON child.parent_id = parent.id "
                "WHERE child.proposer = ? AND child.status = 'ok' AND child.score > parent.score",
                (PROPOSER_PREFIX + model,),
            ).fetchone()[0]
            usage.append({
                "model": model, "calls": calls, "ok_calls": ok, "failed_calls": causes,
                "input_tokens": tokens_in, "output_tokens": tokens_out, "cost_usd": cost,
                "proposals": proposals, "improvements": improvements,
            })
        return usage

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
