"""The loop end to end with the offline proposer and real sandboxed evaluations."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from conftest import FIXTURES, run_loop
from sysevolve.engine import InitialProgramFailed
from sysevolve.proposals.base import Proposal
from sysevolve.proposals.mutate import OfflineProposer
from sysevolve.runs import create_run, summary
from sysevolve.store import Store


def _summary(out: Path) -> dict:
    store = Store(out / "run.db")
    try:
        return summary(store)
    finally:
        store.close()


def test_offline_loop_improves_toy_problem(tmp_path, toy_problem):
    out = tmp_path / "run"
    _, reason = run_loop(toy_problem, out, run={"iterations": 60}, seed=1,
                         evaluation={"workers": 2})
    info = _summary(out)
    assert info["iterations"] == 60
    assert info["best_score"] > info["initial_score"]
    # The optimum is 1.0 at x = 7.5; sixty mutations of x get within 2 of it.
    assert info["best_score"] >= 1 / 3
    best = json.loads((out / "best" / "best_program_info.json").read_text())
    assert best["score"] == pytest.approx(info["best_score"])
    assert "def guess" in (out / "best" / "best_program.py").read_text()
    assert "budget" in reason


def test_target_score_stops_early(tmp_path, toy_problem):
    out = tmp_path / "run"
    _, reason = run_loop(toy_problem, out, run={"iterations": 500, "target_score": 0.3}, seed=1)
    assert "target score" in reason
    assert _summary(out)["iterations"] < 500


def test_patience_stops_without_improvement(tmp_path, toy_problem):
    out = tmp_path / "run"
    _, reason = run_loop(toy_problem, out, run={"iterations": 500, "patience": 5}, seed=3,
                         evaluation={"workers": 1}, proposals={"concurrency": 1})
    assert "no improvement" in reason
    assert _summary(out)["iterations"] < 500


def test_wall_clock_budget_stops_and_leaves_resumable_run(tmp_path, toy_problem):
    out = tmp_path / "run"
    _, reason = run_loop(toy_problem, out, run={"iterations": 100000, "max_wall_s": 3.0})
    assert "wall-clock" in reason
    info = _summary(out)
    assert 0 < info["iterations"] < 100000


def test_initial_program_failure_stops_before_the_loop(tmp_path):
    run = create_run(FIXTURES / "broken_initial", out_dir=tmp_path / "run")
    try:
        with pytest.raises(InitialProgramFailed, match="ZeroDivisionError"):
            asyncio.run(run.engine.prepare(run.problem.initial_code()))
        assert run.store.iterations_done() == 0
    finally:
        run.close()


def test_openevolve_example_layout_runs_unchanged(tmp_path):
    """The example's models are unreachable here: the offline proposer stands in for them
    (test_llm.py runs the same folder against the fake model server)."""
    out = tmp_path / "run"
    run = create_run(FIXTURES / "openevolve_example", out_dir=out)
    run.engine.proposer = OfflineProposer()
    try:
        asyncio.run(run.engine.prepare(run.problem.initial_code()))
        asyncio.run(run.engine.run())
    finally:
        run.close()
    assert [m.name for m in run.config.llm.models] == ["gemini-2.0-flash-lite", "gemini-2.0-flash"]
    assert run.config.proposals.mode == "diff"  # diff_based_evolution
    assert run.config.run.iterations == 10  # max_iterations
    assert run.config.selection.num_islands == 3  # database.num_islands
    assert run.config.evaluation.cascade_thresholds == (0.1,)
    info = _summary(out)
    assert info["iterations"] == 10
    assert info["initial_score"] == pytest.approx(1 / 2.5)
    store = Store(out / "run.db")
    try:
        initial = store.initial_program()
        assert initial.artifacts.get("note") == "x=0.5"  # EvaluationResult.artifacts kept
        ignored = store.events("created")[0][2]["ignored_keys"]
        assert "checkpoint_interval" in ignored
    finally:
        store.close()


HOSTILE = {
    "infinite loop": ("    while True:\n        pass\n", "timeout"),
    "memory bomb": ("    blocks = []\n    while True:\n        blocks.append(bytearray(10**8))\n", "memory"),
    "hard exit": ("    import os\n    os._exit(3)\n", "exit code 3"),
    "exception": ("    raise RuntimeError('candidate gave up')\n", "RuntimeError"),
    "wrong type": ("    return 'seven'\n", "ValueError"),
    "huge output": ("    import sys\n    chunk = 'x' * 1000000\n    for _ in range(100):\n"
                    "        sys.stdout.write(chunk)\n    return 7.5\n", "output limit"),
}


class ScriptedProposer:
    """Proposes each hostile body once, then an honest one (a test double of the seam)."""

    name = "scripted"

    def __init__(self, bodies):
        self.bodies = list(bodies)

    async def propose(self, request):
        body = self.bodies.pop(0) if self.bodies else "    return 7.0\n"
        code = f"# EVOLVE-BLOCK-START\ndef guess():\n{body}# EVOLVE-BLOCK-END\n"
        return Proposal(text=code, format="rewrite", proposer=self.name, summary="scripted")


def test_misbehaving_candidates_fail_with_reasons_and_run_completes(tmp_path, toy_problem):
    out = tmp_path / "run"
    run = create_run(toy_problem, out_dir=out, overrides={
        "run": {"iterations": len(HOSTILE) + 2},
        "evaluation": {"timeout_s": 4, "memory_mb": 512, "workers": 2},
    })
    run.engine.proposer = ScriptedProposer([body for body, _ in HOSTILE.values()])
    try:
        asyncio.run(run.engine.prepare(run.problem.initial_code()))
        asyncio.run(run.engine.run())
        programs = {p.iteration: p for p in run.store.programs()}
    finally:
        run.close()
    for iteration, (name, (_, reason)) in enumerate(HOSTILE.items(), start=1):
        program = programs[iteration]
        assert program.status == "failed", name
        assert reason.lower() in program.failure.lower(), (name, program.failure)
    honest = [p for p in programs.values() if p.iteration > len(HOSTILE)]
    assert honest and all(p.status == "ok" for p in honest)
    assert _summary(out)["best_score"] == pytest.approx(1 / 1.5)
