"""Evaluator of the txn_scheduling problem, offline variant (spec sections 2.2, 3 and 7).

The candidate's `get_best_schedule(workload, num_seqs)` is called once per workload with a fresh
read-only view; its schedule is validated and its makespan recomputed with a private copy of the
cost model loaded before the candidate is imported, so nothing the candidate reports or patches
(the `txn_model` module it can import, `workload.cost`) reaches the score. The candidate runs in
this process: isolation from a deliberately hostile program is the job of the harness sandbox.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import random
import sys
import time
from pathlib import Path

import txn_model
import txn_workloads
from sysevolve.evaluation.result import EvaluationResult
from sysevolve.evaluation.scan import memorised_data_warnings

NUM_SEQS = 10
DATA_ENV = "SYSEVOLVE_DATA"
LITERAL_WARN_LEN = 50
_HERE = Path(__file__).resolve().parent
_SMF_FULL_TOTALS: dict[tuple[str, str], int] = {}  # (split, data source) -> total; deterministic
_program_ids = itertools.count()


class WorkloadView:
    """The read-only workload a candidate sees (spec 2.2); a fresh one per call."""

    __slots__ = ("_txns", "_lens", "_cost", "_budget")

    def __init__(self, txns: tuple, lens: tuple, time_budget_s: float):
        object.__setattr__(self, "_txns", txns)
        object.__setattr__(self, "_lens", lens)
        object.__setattr__(self, "_cost", txn_model.PrefixCost(txns, lens))
        object.__setattr__(self, "_budget", time_budget_s)

    def __setattr__(self, name, value):
        raise AttributeError("the workload view is read-only")

    @property
    def num_txns(self) -> int:
        return len(self._txns)

    @property
    def txns(self) -> tuple:
        """Transaction i is a tuple of (op_type, key, pos) operations; no-ops are not listed."""
        return self._txns

    @property
    def time_budget_s(self) -> float:
        return self._budget

    def txn_len(self, i: int) -> int:
        """Token count of transaction i, no-ops included."""
        if not 0 <= i < len(self._lens):
            raise IndexError(f"transaction index {i} out of range 0..{len(self._lens) - 1}")
        return self._lens[i]

    def cost(self, seq) -> int:
        """Makespan of a (partial) sequence of transaction indices."""
        return self._cost(seq)


def evaluate(program_path, split: str = "search", seed: int = 0, data_dir=None,
             time_budget_s: float = 10.0) -> EvaluationResult:
    """Scores the program at `program_path` on a split; raises ValueError/RuntimeError if invalid."""
    scorer = _private_model()
    data_file = _data_file(data_dir) if split == "search" else None
    workloads = txn_workloads.split_workloads(split, data_file)
    source = "synthetic" if data_file is None else str(data_file)
    reference = _smf_full_total(scorer, split, source, workloads)
    warnings = literal_warnings(Path(program_path).read_text(encoding="utf-8"))

    schedules, walls = {}, {}
    saved_random = random.getstate()
    module_name = f"_txn_candidate_{os.getpid()}_{next(_program_ids)}"
    try:
        random.seed(seed)
        program = _load_program(program_path, module_name)
        for w in workloads:
            schedules[w.name], walls[w.name] = _run_one(program, w, seed, time_budget_s)
    finally:
        sys.modules.pop(module_name, None)
        random.setstate(saved_random)

    metrics = {}
    for w in workloads:
        metrics[f"makespan_{w.name}"] = scorer.makespan(w.txns, w.lens, schedules[w.name])
    total = sum(metrics.values())
    metrics["total_makespan"] = total
    metrics["combined_score"] = 1e6 / (1 + total)
    metrics["reduction_vs_smf_full"] = 1 - total / reference
    for name, wall in walls.items():
        metrics[f"wall_s_{name}"] = wall
    artifacts = {"split": split, "seed": seed, "time_budget_s": time_budget_s,
                 "data": source, "smf_full_total": reference}
    if warnings:
        artifacts["warnings"] = warnings
    return EvaluationResult(metrics, artifacts)


def _private_model():
    """A copy of txn_model that is not in sys.modules, so patching `txn_model` cannot reach it."""
    spec = importlib.util.spec_from_file_location("_txn_model_scorer", _HERE / "txn_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _data_file(data_dir) -> Path | None:
    """The real workloads file: from data_dir (must exist), else $SYSEVOLVE_DATA if present."""
    if data_dir is not None:
        path = Path(data_dir) / "txn_scheduling" / "workloads.json"
        if not path.is_file():
            raise FileNotFoundError(f"real workloads not found at {path}")
        return path
    env = os.environ.get(DATA_ENV)
    if env:
        path = Path(env) / "txn_scheduling" / "workloads.json"
        if path.is_file():
            return path
    return None


def _smf_full_total(scorer, split: str, source: str, workloads) -> int:
    key = (split, source)
    if key not in _SMF_FULL_TOTALS:
        _SMF_FULL_TOTALS[key] = sum(
            scorer.makespan(w.txns, w.lens, scorer.smf_full_order(w.txns, w.lens))
            for w in workloads
        )
    return _SMF_FULL_TOTALS[key]


def _load_program(program_path, module_name: str):
    """Imports the candidate under a fresh module name; returns its get_best_schedule."""
    try:
        spec = importlib.util.spec_from_file_location(module_name, program_path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:  # any failure to load is the candidate's
        raise RuntimeError(f"cannot load program: {_one_line(exc)}") from exc
    fn = getattr(module, "get_best_schedule", None)
    if not callable(fn):
        raise ValueError("program does not define get_best_schedule(workload, num_seqs)")
    return fn


def _run_one(get_best_schedule, workload, seed: int, budget: float) -> tuple[list[int], float]:
    """Calls the candidate on one workload; returns (validated schedule, wall seconds)."""
    view = WorkloadView(workload.txns, workload.lens, budget)
    random.seed(seed)
    began = time.perf_counter()
    try:
        result = get_best_schedule(view, NUM_SEQS)
    except (Exception, SystemExit) as exc:
        raise RuntimeError(
            f"workload {workload.name}: get_best_schedule raised {_one_line(exc)}") from exc
    wall = time.perf_counter() - began
    limit = 1.5 * budget + 1.0
    if wall > limit:
        raise ValueError(f"workload {workload.name}: timeout: the call took {wall:.1f} s, "
                         f"limit {limit:.1f} s (time_budget_s={budget:g})")
    try:
        return validate_schedule(result, len(workload.txns)), wall
    except ValueError as exc:
        raise ValueError(f"workload {workload.name}: {exc}") from None


def validate_schedule(result, n: int) -> list[int]:
    """The schedule in `result` (a list/tuple of ints, or (anything, list)) if a permutation of 0..n-1."""
    if type(result) is tuple and len(result) == 2 and type(result[1]) in (list, tuple):
        result = result[1]  # (makespan, schedule): the claimed makespan is ignored
    if type(result) not in (list, tuple):
        raise ValueError(f"get_best_schedule returned {type(result).__name__}, "
                         "expected a list of ints or a (makespan, list) tuple")
    schedule = list(result)  # validate and score the same snapshot
    if len(schedule) != n:
        raise ValueError(f"schedule has {len(schedule)} entries, expected {n}")
    seen = bytearray(n)
    for pos, t in enumerate(schedule):
        if type(t) is not int:
            raise ValueError(f"schedule entry {pos} is {type(t).__name__} {t!r}, expected a plain int")
        if not 0 <= t < n:
            raise ValueError(f"schedule entry {pos} is {t}, outside 0..{n - 1}")
        if seen[t]:
            raise ValueError(f"transaction {t} appears more than once in the schedule")
        seen[t] = 1
    return schedule


def literal_warnings(source: str) -> list[str]:
    """A warning for a literal run of >= {LITERAL_WARN_LEN} integers (memorised schedule?)."""
    return memorised_data_warnings(source, LITERAL_WARN_LEN, "schedule")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
