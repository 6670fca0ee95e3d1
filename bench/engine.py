"""Engine throughput: iterations per second with an instant proposer and a trivial evaluator.

Three configurations, measured in the same run:
  in-process   the evaluation is an in-memory function: what is left is the engine itself
               (selection, edit application, SQLite writes, archive updates), so its time per
               iteration is the engine's overhead;
  sandbox      the same trivial evaluator run the way the loop runs every candidate, in a
               fresh limited child process, with 1 and 2 workers;
  raw sandbox  the child processes alone, started back to back with no engine, the baseline
               the sandboxed loop is compared against.

Usage: python bench/engine.py [--iterations N]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from sysevolve.evaluation.sandbox import EvaluationOutcome, evaluate_in_sandbox
from sysevolve.proposals.base import Proposal
from sysevolve.runs import create_run

TRIVIAL_PROGRAM = """# EVOLVE-BLOCK-START
def value():
    return {value}
# EVOLVE-BLOCK-END
"""

TRIVIAL_EVALUATOR = """
import importlib.util

def evaluate(program_path):
    spec = importlib.util.spec_from_file_location("candidate", program_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {"combined_score": float(module.value())}
"""


class InstantProposer:
    """Returns a new program at once: the cost of proposing is zero."""

    name = "instant"

    async def propose(self, request):
        code = TRIVIAL_PROGRAM.format(value=request.seed % 1000)
        return Proposal(text=code, format="rewrite", proposer=self.name)


class InProcessHarness:
    """Scores a program without any process: isolates the engine's own cost."""

    async def evaluate(self, code: str, split: str = "search") -> EvaluationOutcome:
        value = float(code.split("return ")[1].split()[0])
        return EvaluationOutcome(ok=True, metrics={"combined_score": value}, score=value,
                                 artifacts={}, failure=None, duration_s=0.0)


def _problem(root: Path) -> Path:
    folder = root / "trivial"
    folder.mkdir()
    (folder / "initial_program.py").write_text(TRIVIAL_PROGRAM.format(value=0))
    (folder / "evaluator.py").write_text(TRIVIAL_EVALUATOR)
    return folder


async def _loop(run) -> None:
    await run.engine.prepare(run.problem.initial_code())
    await run.engine.run()


def time_loop(problem: Path, out: Path, iterations: int, workers: int, in_process: bool) -> float:
    run = create_run(problem, out_dir=out, overrides={
        "run": {"iterations": iterations},
        "evaluation": {"workers": workers},
        "proposals": {"concurrency": workers + 1},
    })
    run.engine.proposer = InstantProposer()
    if in_process:
        run.engine.harness = InProcessHarness()
    try:
        started = time.perf_counter()
        asyncio.run(_loop(run))
        return time.perf_counter() - started
    finally:
        run.close()


def time_raw_sandbox(problem: Path, evaluations: int) -> float:
    run = create_run(problem, out_dir=problem.parent / "raw")
    request, limits = run.engine.harness.request(TRIVIAL_PROGRAM.format(value=1)), run.engine.harness.limits()
    run.close()

    async def many():
        for _ in range(evaluations):
            outcome = await evaluate_in_sandbox(request, limits)
            assert outcome.ok, outcome.failure

    started = time.perf_counter()
    asyncio.run(many())
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=200)
    args = parser.parse_args()
    n = args.iterations
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        problem = _problem(root)
        engine_s = time_loop(problem, root / "a", n * 5, 2, in_process=True)
        raw_s = time_raw_sandbox(problem, n // 2)
        sandbox_1 = time_loop(problem, root / "b", n, 1, in_process=False)
        sandbox_2 = time_loop(problem, root / "c", n, 2, in_process=False)

    raw_per_eval = raw_s / (n // 2)
    table = Table(title="engine throughput (instant proposer, trivial evaluator)")
    for column in ("configuration", "iterations", "seconds", "iterations/s", "ms per iteration",
                   "vs raw sandbox, 1 worker"):
        table.add_column(column, justify="right")
    rows = [
        ("in-process evaluation (engine overhead)", n * 5, engine_s),
        ("raw sandbox, no engine, sequential", n // 2, raw_s),
        ("engine + sandbox, 1 worker", n, sandbox_1),
        ("engine + sandbox, 2 workers", n, sandbox_2),
    ]
    for name, count, seconds in rows:
        per = seconds / count
        table.add_row(name, str(count), f"{seconds:.2f}", f"{count / seconds:.1f}",
                      f"{per * 1000:.2f}", f"{raw_per_eval / per:.2f}x")
    Console(width=140).print(table)


if __name__ == "__main__":
    main()
