"""Evaluation time of every built-in problem's initial program and reference baselines.

Each program is scored exactly as the loop scores it (a fresh sandboxed child process per
evaluation), on the search split and on the holdout split, `--repeats` times; the table shows
the fastest wall time (the least disturbed by other work on the machine), the score, and the
time relative to the initial program's on the same split.

Usage: python bench/problems.py [--repeats N] [--problems a,b]
"""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

from rich.console import Console
from rich.table import Table

from sysevolve.evaluation.harness import Harness
from sysevolve.problem import builtin_problems, load_problem
from sysevolve.runs import evaluation_env, resolve_config


def programs_of(root: Path) -> list[tuple[str, Path]]:
    baselines = sorted((root / "baselines").glob("*.py")) if (root / "baselines").is_dir() else []
    return [("initial", root / "initial_program.py")] + [(p.stem, p) for p in baselines]


def fastest(harness: Harness, code: str, split: str, repeats: int):
    """(best wall seconds, outcome of the last run)."""
    times, outcome = [], None
    for _ in range(repeats):
        outcome = asyncio.run(harness.evaluate(code, split))
        times.append(outcome.duration_s)
    return min(times), outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--problems", help="comma-separated names (default: all built-ins)")
    parser.add_argument("--data", type=Path, default=None,
                        help="real data folder (default: $SYSEVOLVE_DATA, else synthetic)")
    args = parser.parse_args()
    names = args.problems.split(",") if args.problems else list(builtin_problems())
    table = Table(title=f"evaluation time per program (best of {args.repeats}, sandboxed, "
                        f"data: {args.data or os.environ.get('SYSEVOLVE_DATA') or 'synthetic'})")
    for column in ("problem", "program", "split", "seconds", "x initial", "score"):
        table.add_column(column, justify="left" if column in ("problem", "program", "split") else "right")
    for name in names:
        problem = load_problem(name)
        config, _ = resolve_config(problem)
        harness = Harness(problem, config.evaluation, evaluation_env(args.data))
        for split in problem.splits:
            reference = None
            for label, path in programs_of(problem.root):
                seconds, outcome = fastest(harness, path.read_text(), split, args.repeats)
                reference = reference or seconds
                score = f"{outcome.score:.6g}" if outcome.ok else f"failed: {outcome.failure[:40]}"
                table.add_row(name, label, split, f"{seconds:.2f}", f"{seconds / reference:.2f}", score)
    Console(width=140).print(table)


if __name__ == "__main__":
    main()
