"""Command line: sysevolve run | resume | status | best | eval | problems."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from sysevolve import __version__
from sysevolve.config import ConfigError
from sysevolve.engine import InitialProgramFailed
from sysevolve.evaluation.harness import Harness
from sysevolve.evaluation.scan import tampering_warnings
from sysevolve.problem import ProblemError, builtin_problems, load_problem
from sysevolve.progress import ProgressBar
from sysevolve.proposals.edits import unified_diff
from sysevolve.proposals.regions import evolvable_lines
from sysevolve.rundir import db_path, is_run_dir
from sysevolve.runs import (Run, RunError, create_run, evaluation_env, open_run, remove_run,
                            resolve_config, summary)
from sysevolve.store import Store

console = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


# --- run / resume -----------------------------------------------------------------------------
async def _drive(run: Run, signals: list[int]) -> str:
    """Evaluate the initial program if needed, then run the loop under a progress bar.

    SIGTERM cancels the loop like Ctrl-C does; `signals` records that it came.
    """
    task = asyncio.current_task()

    def terminate() -> None:
        signals.append(signal.SIGTERM)
        task.cancel()

    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, terminate)
    await run.engine.prepare(run.problem.initial_code())
    stats = run.engine.stats
    console.print(f"  initial program: score {_fmt(stats.initial_score)}; "
                  f"{stats.iterations} of {run.config.run.iterations} iterations done")
    with ProgressBar(run.config.run.iterations, stats.settled, console) as bar:
        run.engine.on_progress = bar.update
        bar.update(stats)
        reason = await run.engine.run()
        bar.update(stats)
    return reason


def _execute(run: Run, new: bool) -> int:
    console.print(f"[bold]sysevolve[/] {run.problem.name} -> {run.run_dir}")
    for note in run.notes:
        console.print(f"  {note}")
    signals: list[int] = []
    try:
        reason = asyncio.run(_drive(run, signals))
    except InitialProgramFailed as exc:
        err.print(f"[red]error:[/] {exc}")
        run.close()
        if new:
            remove_run(run.run_dir)  # nothing was evolved: leave no half-made run behind
        return 1
    except (KeyboardInterrupt, asyncio.CancelledError):
        console.print(f"interrupted; continue with: sysevolve resume {run.run_dir}")
        return 128 + (signals[0] if signals else signal.SIGINT)
    finally:
        run.close()
    _print_outcome(run.run_dir, reason)
    return 0


def _print_outcome(run_dir: Path, reason: str) -> None:
    store = Store(db_path(run_dir))
    try:
        info = summary(store)
    finally:
        store.close()
    console.print(f"stopped: {reason}")
    best, initial = info["best_score"], info["initial_score"]
    gain = ""
    if best is not None and initial not in (None, 0):
        gain = f" ({(best - initial) / abs(initial):+.1%} vs initial)"
    console.print(f"best score {_fmt(best)}{gain}, initial {_fmt(initial)}; "
                  f"{info['iterations']} iterations, {info['failed']} failed evaluations, "
                  f"{info['invalid_edits']} invalid edits")
    console.print(f"best program: {run_dir / 'best' / 'best_program.py'}")


def cmd_run(args) -> int:
    overrides: dict = {}
    if args.iterations is not None:
        overrides.setdefault("run", {})["iterations"] = args.iterations
    if args.seed is not None:
        overrides["seed"] = args.seed
    if args.workers is not None:
        overrides.setdefault("evaluation", {})["workers"] = args.workers
    if args.offline:
        overrides.setdefault("proposals", {})["offline"] = True
    run = create_run(args.problem, config_file=args.config, overrides=overrides,
                     out_dir=args.out, data_dir=args.data)
    return _execute(run, new=True)


def cmd_resume(args) -> int:
    return _execute(open_run(args.run_dir, iterations=args.iterations), new=False)


# --- inspection -------------------------------------------------------------------------------
def _open_store(run_dir: Path) -> Store:
    if not is_run_dir(run_dir):
        raise RunError(f"{run_dir} is not a run directory (no run.db)")
    return Store(db_path(run_dir))


def cmd_status(args) -> int:
    store = _open_store(args.run_dir)
    try:
        info = summary(store)
    finally:
        store.close()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    table = Table(title=f"{args.run_dir} ({info['problem']})", show_header=False)
    for key in ("iterations", "iteration_budget", "best_score", "initial_score", "best_program_id",
                "programs", "evaluated", "failed", "invalid_edits", "proposal_failures",
                "discarded_unparseable", "pending", "tokens", "cost_usd", "stop_reason"):
        table.add_row(key.replace("_", " "), _fmt(info[key]))
    console.print(table)
    if info["models"]:
        console.print(_models_table(info["models"]))
    if info["failure_reasons"]:
        reasons = Table(title="most frequent failures")
        for column in ("status", "count", "reason"):
            reasons.add_column(column)
        for row in info["failure_reasons"]:
            reasons.add_row(row["status"], str(row["count"]), row["reason"] or "")
        console.print(reasons)
    return 0


def _models_table(models: list[dict]) -> Table:
    table = Table(title="models")
    for column in ("model", "calls", "failed calls", "tokens in", "tokens out", "cost USD",
                   "proposals", "improvements"):
        table.add_column(column, justify="left" if column in ("model", "failed calls") else "right")
    for m in models:
        failed = ", ".join(f"{cause} {n}" for cause, n in m["failed_calls"].items()) or "-"
        table.add_row(m["model"], str(m["calls"]), failed, str(m["input_tokens"]),
                      str(m["output_tokens"]), f"{m['cost_usd']:.4f}", str(m["proposals"]),
                      str(m["improvements"]))
    return table


def cmd_best(args) -> int:
    store = _open_store(args.run_dir)
    try:
        best, initial = store.best_program(), store.initial_program()
    finally:
        store.close()
    if best is None:
        err.print("no program of this run has evaluated successfully yet")
        return 1
    if args.diff:
        diff = unified_diff(initial.code, best.code)
        print(diff or "# the best program is the initial program")
    else:
        print(best.code, end="")
    return 0


def cmd_eval(args) -> int:
    problem = load_problem(args.problem)
    if args.split not in problem.splits:
        raise RunError(f"problem {problem.name} has no '{args.split}' split (splits: {', '.join(problem.splits)})")
    config, _ = resolve_config(problem, args.config)
    program = Path(args.program)
    if not program.is_file():
        raise RunError(f"{program}: no such program file")
    harness = Harness(problem, config.evaluation, evaluation_env(args.data))
    outcome = asyncio.run(harness.evaluate(program.read_text(), split=args.split))
    if args.json:
        print(json.dumps({"ok": outcome.ok, "score": outcome.score, "metrics": outcome.metrics,
                          "failure": outcome.failure, "duration_s": outcome.duration_s,
                          "artifacts": outcome.artifacts}, indent=2, default=str))
        return 0 if outcome.ok else 1
    if not outcome.ok:
        err.print(f"[red]evaluation failed:[/] {outcome.failure}")
        return 1
    table = Table(title=f"{program} on {problem.name} ({args.split} split)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("[bold]score[/]", _fmt(outcome.score))
    for key, value in sorted(outcome.metrics.items()):
        table.add_row(key, _fmt(value))
    console.print(table)
    code = program.read_text()
    screened = [f"tampering route: {w}" for w in tampering_warnings(code, evolvable_lines(code))]
    for warning in screened + list(outcome.artifacts.get("warnings", []) or []):
        console.print(f"[yellow]warning:[/] {warning}")
    console.print(f"evaluated in {outcome.duration_s:.2f} s")
    return 0


def cmd_problems(args) -> int:
    for name, path in builtin_problems().items():
        problem = load_problem(path)
        first = next((line.strip() for line in problem.description.splitlines() if line.strip()), "")
        console.print(f"[bold]{name}[/]  {first}")
    return 0


# --- parser -----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sysevolve", description="Evolve programs for systems problems.")
    parser.add_argument("--version", action="version", version=f"sysevolve {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="start a new run on a problem")
    p.add_argument("problem", help="built-in problem name or problem folder")
    p.add_argument("--config", type=Path, help="YAML configuration file")
    p.add_argument("--iterations", type=int, help="proposals to make")
    p.add_argument("--out", type=Path, help="run directory (default runs/<problem>-<timestamp>)")
    p.add_argument("--seed", type=int, help="random seed")
    p.add_argument("--workers", type=int, help="evaluations at once (default: number of cores)")
    p.add_argument("--data", type=Path, help="folder with real data (layout of shared/data)")
    p.add_argument("--offline", action="store_true",
                   help="offline proposer only: no model is called, even if one is configured")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("resume", help="continue a stopped or killed run")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--iterations", type=int, help="new total iteration budget of the run")
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("status", help="progress and counts of a run")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("best", help="print the best program of a run")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--diff", action="store_true", help="show the diff against the initial program")
    p.set_defaults(func=cmd_best)

    p = sub.add_parser("eval", help="score one program file exactly as the loop would")
    p.add_argument("problem", help="built-in problem name or problem folder")
    p.add_argument("program", help="program file")
    p.add_argument("--split", default="search", help="a split the problem declares (search, holdout, ...)")
    p.add_argument("--config", type=Path, help="YAML configuration file (evaluation limits)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--data", type=Path, help="folder with real data (layout of shared/data)")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("problems", help="list the built-in problems")
    p.set_defaults(func=cmd_problems)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, ProblemError, RunError) as exc:
        err.print(f"[red]error:[/] {exc}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
