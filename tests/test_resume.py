"""A run killed with SIGKILL resumes without losing or duplicating any evaluated program."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from conftest import FIXTURES

pytestmark = pytest.mark.slow

BUDGET = 40


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "sysevolve", *args]


def _count(db, query: str) -> int:
    try:
        with sqlite3.connect(db) as conn:
            return conn.execute(query).fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def _evaluated(db) -> dict[int, tuple]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT id, code, status, score FROM programs WHERE status IN ('ok', 'failed')"
        ).fetchall()
    return {row[0]: row[1:] for row in rows}


def test_resume_after_sigkill(tmp_path):
    out = tmp_path / "run"
    db = out / "run.db"
    child = subprocess.Popen(
        _cli("run", str(FIXTURES / "toy"), "--iterations", str(BUDGET), "--out", str(out),
             "--workers", "2", "--seed", "4"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while _count(db, "SELECT COUNT(*) FROM programs WHERE status = 'ok'") < 8:
        assert child.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.05)
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()

    before = _evaluated(db)
    done_before = _count(db, "SELECT COUNT(*) FROM programs WHERE iteration > 0")
    assert 0 < done_before < BUDGET

    resumed = subprocess.run(_cli("resume", str(out)), capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr

    after = _evaluated(db)
    for program_id, record in before.items():
        assert after[program_id] == record  # nothing evaluated before the kill changed or vanished
    assert _count(db, "SELECT COUNT(*) FROM programs WHERE iteration > 0") == BUDGET
    assert _count(db, "SELECT COUNT(*) FROM programs WHERE status = 'pending'") == 0
    # every program was evaluated on the search split at most once
    assert _count(db, "SELECT COUNT(*) FROM (SELECT program_id FROM evaluations WHERE split = 'search'"
                      " GROUP BY program_id HAVING COUNT(*) > 1)") == 0
    assert _count(db, "SELECT COUNT(DISTINCT iteration) FROM programs") == BUDGET + 1
    assert (out / "best" / "best_program.py").exists()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_stops_cleanly_and_resumes(tmp_path, sig):
    out = tmp_path / "run"
    db = out / "run.db"
    child = subprocess.Popen(
        _cli("run", str(FIXTURES / "toy"), "--iterations", str(BUDGET), "--out", str(out),
             "--workers", "2"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 60
    while _count(db, "SELECT COUNT(*) FROM programs WHERE status = 'ok'") < 5:
        assert child.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    child.send_signal(sig)
    stdout, stderr = child.communicate(timeout=30)
    assert child.returncode == 128 + sig, stderr
    assert "sysevolve resume" in stdout
    status = subprocess.run(_cli("status", str(out), "--json"), capture_output=True, text=True)
    assert '"stop_reason": "interrupted"' in status.stdout

    resumed = subprocess.run(_cli("resume", str(out)), capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert _count(db, "SELECT COUNT(*) FROM programs WHERE iteration > 0") == BUDGET
    assert _count(db, "SELECT COUNT(*) FROM programs WHERE status = 'pending'") == 0


def test_resume_of_a_run_killed_before_its_initial_program_was_stored(tmp_path):
    from conftest import resume_loop
    from sysevolve.runs import create_run

    out = tmp_path / "run"
    create_run(FIXTURES / "toy", out_dir=out, overrides={"run": {"iterations": 5}}).close()
    _, reason = resume_loop(out)
    assert "budget" in reason
    assert _count(out / "run.db", "SELECT COUNT(*) FROM programs WHERE iteration = 0") == 1
    assert _count(out / "run.db", "SELECT COUNT(*) FROM programs") == 6


def test_a_run_has_one_writer_at_a_time(tmp_path):
    from sysevolve.runs import RunError, create_run, open_run

    out = tmp_path / "run"
    first = create_run(FIXTURES / "toy", out_dir=out)
    try:
        with pytest.raises(RunError, match="in use by another sysevolve process"):
            open_run(out)
    finally:
        first.close()
    open_run(out).close()  # free again once the first writer is gone


def test_bad_resume_budget_is_rejected_and_changes_nothing(tmp_path):
    from conftest import resume_loop
    from sysevolve.config import ConfigError
    from sysevolve.runs import open_run

    out = tmp_path / "run"
    from conftest import run_loop
    run_loop(FIXTURES / "toy", out, run={"iterations": 3})
    with pytest.raises(ConfigError) as info:
        open_run(out, iterations=-1)
    assert "run.iterations" in str(info.value) and "\n" not in str(info.value)
    _, reason = resume_loop(out, iterations=6)
    assert _count(out / "run.db", "SELECT COUNT(*) FROM programs WHERE iteration > 0") == 6


def test_resume_rebuilds_the_same_archive_and_best_folder(tmp_path):
    import shutil

    from conftest import run_loop
    from sysevolve.runs import open_run

    out = tmp_path / "run"
    live, _ = run_loop(FIXTURES / "toy", out, run={"iterations": 40}, seed=5,
                       selection={"num_islands": 3, "migration_interval": 4, "population_size": 6})
    shutil.rmtree(out / "best")
    reopened = open_run(out)
    try:
        reopened.engine._rebuild()
        rebuilt, original = reopened.engine.archive, live.engine.archive
        assert rebuilt.island_sizes() == original.island_sizes()
        for island in range(3):
            assert [p.id for p in rebuilt.programs(island)] == [p.id for p in original.programs(island)]
        assert rebuilt.migrations() == original.migrations()
        assert (out / "best" / "best_program.py").exists()
    finally:
        reopened.close()


def test_evaluations_die_with_a_killed_engine(tmp_path):
    pids = tmp_path / "pids"
    pids.mkdir()
    child = subprocess.Popen(
        _cli("run", str(FIXTURES / "sleepy"), "--iterations", "4", "--out", str(tmp_path / "run"),
             "--workers", "2"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "SLEEPY_PID_DIR": str(pids)},
    )
    deadline = time.monotonic() + 60
    while len(list(pids.iterdir())) < 2:
        assert child.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    child.kill()  # SIGKILL the engine only, not its process group
    child.wait()
    evaluation_pids = [int(p.name) for p in pids.iterdir()]
    deadline = time.monotonic() + 5
    while any(_alive(pid) for pid in evaluation_pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in evaluation_pids)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie has exited already
        return stat.read().split()[2] != "Z"
