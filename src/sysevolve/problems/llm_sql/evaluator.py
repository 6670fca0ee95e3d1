"""Evaluator of the llm_sql problem: per-row field orders for prefix-cache reuse (spec 3 and 7).

The program runs in a process of its own (llm_sql_harness): it gets each table as a call
argument, its results come back as JSON lists of strings, and this process validates every row
as a permutation of one input row's units and computes the hit metric itself. The speed term
compares the program's time with GGR's (the shipped reference, `baselines/ggr.py`) measured in
the same evaluation on the same tables.
"""

from __future__ import annotations

import ast
import os
from collections import Counter
from pathlib import Path

import llm_sql_data
import llm_sql_harness
import llm_sql_metric
from sysevolve.evaluation.result import EvaluationResult

HERE = Path(__file__).resolve().parent
REFERENCE = HERE / "baselines" / "ggr.py"
# The arguments ADRS's evaluator passed to reorder (spec 2.1); merges are applied by the harness.
REORDER_KWARGS = {"early_stop": 100000, "distinct_value_threshold": 0.7, "row_stop": 4,
                  "col_stop": 2, "col_merge": [], "parallel": True}
REFERENCE_LIMITS = (60.0, 60.0)  # seconds for the import, per table
HIT_WEIGHT, SPEED_WEIGHT = 0.95, 0.05
ADRS_RUNTIME_CAP_S = 12.0
LITERAL_WARN_ITEMS = 1000
LITERAL_WARN_CHARS = 20000


def evaluate(program_path, split: str = "search", data_dir=None, semantics: str = "hardened",
             table_time_limit_s: float = 10.0, import_time_limit_s: float = 10.0) -> EvaluationResult:
    """Scores the program at `program_path` on a split; raises with a one-line reason if invalid."""
    if semantics not in ("hardened", "adrs"):
        raise ValueError(f"unknown semantics {semantics!r} (known: hardened, adrs)")
    programs = [program_path] if semantics == "adrs" else [REFERENCE, program_path]
    # The reference runs first: nothing of the program has run yet that could slow it down.
    with llm_sql_harness.Programs(programs) as processes:
        instances = llm_sql_data.split_instances(split, llm_sql_data.data_root(data_dir))
        denied = _data_folders(data_dir)
        limits = (import_time_limit_s, table_time_limit_s)
        artifacts = {"split": split, "semantics": semantics,
                     "tables": {t.name: t.source for t in instances}}
        warnings = literal_warnings(Path(program_path).read_text(encoding="utf-8", errors="replace"))
        if warnings:
            artifacts["warnings"] = warnings
        if semantics == "adrs":
            return _evaluate_adrs(processes, instances, denied, limits, artifacts)
        try:
            reference, run = processes.run(instances, REORDER_KWARGS, denied,
                                           [REFERENCE_LIMITS, limits])
        except llm_sql_harness.ProgramFailure as exc:
            if exc.program == 0:  # our own failure, not the program's
                raise RuntimeError(f"the reference GGR failed: {exc}") from None
            raise

    ref_rates = [llm_sql_metric.hit_rate(rows) for rows in reference.outputs]  # trusted: not validated
    rates = [llm_sql_metric.hit_rate(validate_rows(t, rows)) for t, rows in zip(instances, run.outputs)]

    mean_rate = sum(rates) / len(rates)
    t_ref, t_cand = reference.total_s, run.total_s
    speed = t_ref / (t_ref + t_cand)
    metrics = {"combined_score": HIT_WEIGHT * mean_rate + SPEED_WEIGHT * speed,
               "mean_hit_rate": mean_rate,
               "speed_term": speed,
               "speedup_vs_ggr": t_ref / t_cand,
               "t_cand_s": t_cand,
               "t_ref_s": t_ref,
               "ggr_mean_hit_rate": sum(ref_rates) / len(ref_rates)}
    metrics.update({f"hit_rate_{t.name}": r for t, r in zip(instances, rates)})
    artifacts["import_s"] = {"program": run.import_s, "ggr": reference.import_s}
    artifacts["table_s"] = {t.name: {"program": a, "ggr": b}
                            for t, a, b in zip(instances, run.table_s, reference.table_s)}
    return EvaluationResult(metrics, artifacts)


def _evaluate_adrs(processes, instances, denied, limits, artifacts) -> EvaluationResult:
    """ADRS scoring: no validation, runtime cap of 12 s, 0 when any table fails (spec 3.4).

    The runtimes are the evaluator's own measurements of each call (ADRS timed in process)."""
    try:
        [run] = processes.run(instances, REORDER_KWARGS, denied, [limits])
        rates = [llm_sql_metric.hit_rate(["".join(map(str, row)) for row in rows])
                 for rows in run.outputs]
    except llm_sql_harness.ProgramFailure as exc:
        artifacts["error"] = str(exc)
        return EvaluationResult({"combined_score": 0.0, "runs_successfully": 0.0}, artifacts)
    except (TypeError, ValueError) as exc:  # output that is not rows of cells
        artifacts["error"] = f"output cannot be scored: {exc}"
        return EvaluationResult({"combined_score": 0.0, "runs_successfully": 0.0}, artifacts)
    mean_rate = sum(rates) / len(instances)
    mean_runtime = sum(run.table_s) / len(instances)
    metrics = {"combined_score": HIT_WEIGHT * mean_rate
               + SPEED_WEIGHT * (ADRS_RUNTIME_CAP_S - min(ADRS_RUNTIME_CAP_S, mean_runtime)) / ADRS_RUNTIME_CAP_S,
               "runs_successfully": 1.0,
               "mean_hit_rate": mean_rate,
               "total_runtime_s": sum(run.table_s)}
    metrics.update({f"hit_rate_{t.name}": r for t, r in zip(instances, rates)})
    return EvaluationResult(metrics, artifacts)


def validate_rows(instance, rows) -> list[list[str]]:
    """`rows` if every row is a reordering of the units of exactly one input row (spec 3.2)."""
    name, n, width = instance.name, len(instance.rows), len(instance.columns)
    if type(rows) is not list:
        raise ValueError(f"table {name}: the result is not a list of rows")
    if len(rows) != n:
        raise ValueError(f"table {name}: {len(rows)} rows returned, expected {n}")
    left = Counter(tuple(sorted(row)) for row in instance.rows)
    for i, row in enumerate(rows):
        if type(row) is not list or len(row) != width or not all(type(c) is str for c in row):
            raise ValueError(f"table {name}: row {i} is not a list of {width} strings (one per unit)")
        key = tuple(sorted(row))
        if left[key] <= 0:
            raise ValueError(f"table {name}: row {i} is not a reordering of the units of any "
                             "remaining input row (cells altered, dropped, duplicated or fused "
                             "units split)")
        left[key] -= 1
    return rows


def _data_folders(data_dir) -> list[Path]:
    """The folders of real data a program must not read: the given one and $SYSEVOLVE_DATA."""
    folders = [Path(data_dir)] if data_dir is not None else []
    env = os.environ.get(llm_sql_data.DATA_ENV)
    if env:
        folders.append(Path(env))
    return [f.resolve() for f in folders if f.is_dir()]


def literal_warnings(source: str) -> list[str]:
    """A warning when the source embeds a literal of >= 1,000 items or a string of >= 20,000
    characters (memorised orders?); the program is still scored."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    items, chars = 0, 0
    for node in ast.walk(tree):
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            items = max(items, len(node.elts))
        elif isinstance(node, ast.Dict):
            items = max(items, len(node.keys))
        elif isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)):
            chars = max(chars, len(node.value))
    warnings = []
    if items >= LITERAL_WARN_ITEMS:
        warnings.append(f"source embeds a literal of {items} items (memorised orders?)")
    if chars >= LITERAL_WARN_CHARS:
        warnings.append(f"source embeds a string of {chars} characters (memorised orders?)")
    return warnings
