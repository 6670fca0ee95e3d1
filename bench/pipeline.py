"""Pipelining: are model calls and evaluations really overlapped?

N proposals go through the whole loop: a fake OpenAI-compatible server on 127.0.0.1 answers
every call after L seconds, and an evaluator sleeps E seconds inside the real sandbox. With
C_llm calls and C_eval evaluations in flight, no schedule can finish before
max(N*L/C_llm, N*E/C_eval); the table prints wall time over that bound. A design that runs each
proposal's call and evaluation back to back in one worker gets about 2.0 when L = E.
The sandbox's own start-up (about 0.06 s per evaluation, see bench/engine.py) is part of the
measured time and not of the bound, so the table also shows the same runs with an evaluation
that only sleeps E in the engine's process: that isolates how well the engine overlaps work.

Usage: python bench/pipeline.py [--proposals N]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fake_llm import FakeLLM  # noqa: E402  (the test suite's fake model server)

from sysevolve.evaluation.sandbox import EvaluationOutcome  # noqa: E402
from sysevolve.runs import create_run  # noqa: E402

PROGRAM = """# EVOLVE-BLOCK-START
def value():
    return 1.0
# EVOLVE-BLOCK-END
"""

EVALUATOR = """
import importlib.util, time

def evaluate(program_path):
    time.sleep({seconds})
    spec = importlib.util.spec_from_file_location("candidate", program_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {{"combined_score": float(module.value())}}
"""


def problem(root: Path, seconds: float) -> Path:
    folder = root / f"sleep-{seconds}"
    folder.mkdir(exist_ok=True)
    (folder / "initial_program.py").write_text(PROGRAM)
    (folder / "evaluator.py").write_text(EVALUATOR.format(seconds=seconds))
    return folder


class SleepingHarness:
    """An evaluation that sleeps E seconds in the engine's process: no sandbox cost at all."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    async def evaluate(self, code: str, split: str = "search") -> EvaluationOutcome:
        await asyncio.sleep(self.seconds)
        return EvaluationOutcome(ok=True, metrics={"combined_score": 1.0}, score=1.0,
                                 artifacts={}, failure=None, duration_s=self.seconds)


def measure(root: Path, n: int, latency: float, eval_s: float, c_llm: int, c_eval: int,
            sandboxed: bool) -> float:
    """Wall time of n proposals, initial evaluation excluded."""
    name = f"run-{latency}-{eval_s}-{c_llm}-{c_eval}-{sandboxed}"
    with FakeLLM(latency_s=latency) as fake:
        run = create_run(problem(root, eval_s), out_dir=root / name, overrides={
            "run": {"iterations": n},
            "proposals": {"concurrency": c_llm},
            "evaluation": {"workers": c_eval},
            "llm": {"models": [{"name": "fake", "api_base": fake.base_url, "api_key": "none"}]},
        })

        async def go() -> float:
            await run.engine.prepare(run.problem.initial_code())
            if not sandboxed:
                run.engine.harness = SleepingHarness(eval_s)
            started = time.perf_counter()
            await run.engine.run()
            return time.perf_counter() - started

        try:
            return asyncio.run(go())
        finally:
            run.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proposals", type=int, default=64)
    args = parser.parse_args()
    n = args.proposals
    settings = [  # (L, E, C_llm, C_eval)
        (0.5, 0.5, 4, 4),
        (1.0, 0.25, 4, 2),
        (0.25, 1.0, 4, 4),
        (0.5, 0.5, 8, 2),
    ]
    table = Table(title=f"pipeline: {n} proposals, fake model latency L, evaluator time E")
    for column in ("L s", "E s", "C_llm", "C_eval", "bound s", "engine only: wall s", "ratio",
                   "with sandbox: wall s", "ratio"):
        table.add_column(column, justify="right")
    with tempfile.TemporaryDirectory() as tmp:
        for latency, eval_s, c_llm, c_eval in settings:
            bound = max(n * latency / c_llm, n * eval_s / c_eval)
            alone = measure(Path(tmp), n, latency, eval_s, c_llm, c_eval, sandboxed=False)
            boxed = measure(Path(tmp), n, latency, eval_s, c_llm, c_eval, sandboxed=True)
            table.add_row(f"{latency:g}", f"{eval_s:g}", str(c_llm), str(c_eval), f"{bound:.2f}",
                          f"{alone:.2f}", f"{alone / bound:.2f}", f"{boxed:.2f}", f"{boxed / bound:.2f}")
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
