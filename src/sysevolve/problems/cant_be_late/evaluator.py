"""Evaluator of the cant_be_late problem (spec sections 2.2, 3 and 7).

The candidate's policy runs in a process of its own (`cbl_runner`); this process owns the traces,
the clock, billing, progress, preemption and the safety override (`cbl_sim`) and computes every
cost from the actions it applied. All runs advance in lockstep: one round trip per tick.
"""

from __future__ import annotations

import numpy as np

import cbl_policies
import cbl_runner
import cbl_sim
import cbl_traces
from sysevolve.evaluation.result import EvaluationResult

STD_WEIGHT = 0.25
ADRS_FAILURE_SCORE = -100000.0
WORST_SHOWN = 5
SHARD_RUNS = 2000  # larger evaluations run the candidate in two processes


def evaluate(program_path, split: str = "search", semantics: str = "hardened", data_dir=None,
             windows: int | None = None, policy_timeout_s: float = 100.0) -> EvaluationResult:
    """Scores the policy at `program_path`; raises with a one-line reason if any run is invalid.

    semantics: "hardened" (default) or "adrs" (the original override, late finishes only counted,
    a failed run scores -100000). windows: only the first N windows per environment (quick checks;
    not comparable with full-split scores).
    """
    if semantics not in cbl_sim.SEMANTICS:
        raise ValueError(f"unknown semantics {semantics!r} (known: {', '.join(cbl_sim.SEMANTICS)})")
    if windows is not None and (type(windows) is not int or windows < 1):
        raise ValueError(f"windows must be a positive int, not {windows!r}")
    grid, source = cbl_traces.split_grid(split, data_dir, windows)
    cbl_sim.check_config(grid.traces, grid.duration, grid.deadline, grid.overhead)
    artifacts = {"split": split, "semantics": semantics, "data": source, "runs": len(grid)}
    archive = cbl_traces.real_archive(data_dir)
    warnings = cbl_traces.archive_warnings(archive) if archive else []
    if windows is not None:
        warnings.append(f"only {windows} window(s) per environment: not comparable with full-split scores")

    try:
        result, reference = _run_policy(program_path, grid, semantics, policy_timeout_s)
        late = result.late(grid.deadline)
        if semantics == "hardened":
            check_deadlines(result, grid)
    except (cbl_runner.PolicyError, ValueError) as exc:
        if semantics != "adrs":
            raise
        artifacts["failure"] = str(exc)
        return EvaluationResult({"combined_score": ADRS_FAILURE_SCORE, "score": ADRS_FAILURE_SCORE},
                                artifacts)

    metrics = cost_metrics(result.cost, grid)
    up = float(reference.cost.mean())
    metrics["cost_reduction_vs_up"] = 1 - metrics["avg_cost"] / up
    for kind, name in ((cbl_sim.NONE, "none"), (cbl_sim.SPOT, "spot"), (cbl_sim.ON_DEMAND, "on_demand")):
        metrics[f"ticks_{name}"] = int(result.ticks[:, kind].sum())
    if semantics == "adrs":
        metrics["late_runs"] = int(late.sum())
        metrics["max_late_min"] = float(max(0.0, np.max(result.finish - grid.deadline)) / 60)
    artifacts["up_avg_cost"] = up
    artifacts.update(feedback(result.cost, grid))
    if warnings:
        artifacts["warnings"] = warnings
    return EvaluationResult(metrics, artifacts)


def check_deadlines(result, grid) -> None:
    """Raises ValueError naming the first run that finished after its deadline."""
    late = result.late(grid.deadline)
    if late.any():
        i = int(np.argmax(late))
        raise ValueError(f"run {i} ({grid.scenario(i)}): finished "
                         f"{(result.finish[i] - grid.deadline[i]) / 60:.1f} min after the deadline "
                         f"({int(late.sum())} late runs)")


def _run_policy(program_path, grid, semantics: str, timeout_s: float):
    """(candidate's result, Uniform Progress's result) on the grid's runs.

    Uniform Progress (the trusted numpy policy, for cost_reduction_vs_up) rides along in the same
    lockstep simulation as a second copy of the runs, decided while the candidate thinks.
    """
    n = len(grid)
    twice = [np.concatenate([a, a]) for a in (grid.traces, grid.duration, grid.deadline, grid.overhead)]
    shards = 1 if n <= SHARD_RUNS else 2  # fixed by the split, not the machine: deterministic
    with cbl_runner.PolicyPool(program_path, timeout_s, n, shards) as candidate:
        def policy(batch):
            k = int(np.searchsorted(batch.ids, n))  # ids ascend: the candidate's runs come first
            if k:
                candidate.send(batch.part(slice(0, k)))
            reference = cbl_policies.uniform_progress(batch.part(slice(k, None)))
            return np.concatenate([candidate.receive(), reference]) if k else reference

        try:
            candidate.start(grid.duration, grid.deadline, grid.overhead, cbl_sim.GAP_S)
            result = cbl_sim.simulate(*twice, policy, semantics)
        except cbl_runner.PolicyError as exc:
            if exc.run is not None and 0 <= exc.run < n:
                raise type(exc)(f"{exc} [{grid.scenario(exc.run)}]", exc.run) from None
            raise
    return result.part(slice(0, n)), result.part(slice(n, None))


def scenarios(grid) -> dict[tuple[str, float, float], np.ndarray]:
    """(env, deadline h, overhead h) -> indices of its runs, in grid order."""
    keys = list(zip(grid.env, np.round(grid.deadline / 3600, 6), np.round(grid.overhead / 3600, 6)))
    groups: dict[tuple, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    return {k: np.array(v) for k, v in groups.items()}


def cost_metrics(cost: np.ndarray, grid) -> dict[str, float]:
    """Score, spread and per-deadline and per-scenario means of the runs' costs."""
    mean, std = float(cost.mean()), float(cost.std())
    metrics = {"combined_score": -mean - STD_WEIGHT * std, "score": -mean, "avg_cost": mean,
               "cost_std": std, "min_cost": float(cost.min()), "max_cost": float(cost.max()),
               "runs": len(cost)}
    hours = grid.deadline / 3600
    for h in sorted(set(hours.tolist())):
        metrics[f"avg_cost_T{h:g}"] = float(cost[hours == h].mean())
    for (env, t, o), idx in scenarios(grid).items():
        metrics[f"cost_mean_{env}_T{t:g}_d{o:g}"] = float(cost[idx].mean())
        metrics[f"cost_std_{env}_T{t:g}_d{o:g}"] = float(cost[idx].std())
    return metrics


def feedback(cost: np.ndarray, grid) -> dict:
    """What the model may read: per-scenario statistics and the worst scenarios, no trace data."""
    rows = sorted(((float(cost[idx].mean()), float(cost[idx].std()), env, t, o)
                   for (env, t, o), idx in scenarios(grid).items()), reverse=True)
    lines = [f"{env:<18} deadline {t:g} h  overhead {o:g} h  mean ${m:7.2f}  std ${s:6.2f}"
             for m, s, env, t, o in rows]
    return {"worst_scenarios": lines[:WORST_SHOWN], "scenario_stats": "\n".join(lines)}
