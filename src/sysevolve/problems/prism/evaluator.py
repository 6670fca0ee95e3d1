"""Evaluator of the prism problem: multi-LLM GPU placement (spec sections 3, 4 and 7).

The candidate's `compute_model_placement(gpu_num, models)` runs in a forked process of its own
(prism_runner); this process generates the instances, enforces the time limits, validates every
placement and recomputes its KV-cache pressure from its own copy of the instance. Default
semantics are hardened; `semantics="adrs"` reproduces the original ADRS evaluator, holes
included (no validation, failed instances skipped at a cost of 1/num_instances each).
"""

from __future__ import annotations

import time
from pathlib import Path

import prism_instances
import prism_runner
import prism_score
from sysevolve.evaluation.result import EvaluationResult

SEMANTICS = ("hardened", "adrs")
_HERE = Path(__file__).resolve().parent
_INITIAL_HOLDOUT: dict[str, float] = {}  # semantics -> the initial program's holdout score


def evaluate(program_path, split: str = "search", semantics: str = "hardened", seed: int = 0,
             instance_timeout_s: float = 1.0,
             evaluation_timeout_s: float = 20.0) -> EvaluationResult:
    """Scores the program at `program_path` on a split; raises ValueError/RuntimeError if invalid.

    `seed` seeds `random` and `numpy.random` in the candidate's process before each call.
    """
    if semantics not in SEMANTICS:
        raise ValueError(f"unknown semantics {semantics!r} (known: {', '.join(SEMANTICS)})")
    limits = (seed, instance_timeout_s, evaluation_timeout_s)
    metrics, artifacts = _evaluate(program_path, split, semantics, limits)
    warnings = artifacts.setdefault("warnings", [])
    if split == "holdout" and metrics["combined_score"] > 0:
        initial = _initial_holdout_score(semantics, limits)
        metrics["initial_combined_score"] = initial
        if metrics["combined_score"] < initial:
            warnings.append(f"holdout combined_score {metrics['combined_score']:.4f} is below the "
                            f"initial program's {initial:.4f} on the same hold-out instances "
                            "(memorised or overfitted to the search instances?)")
    if not warnings:
        del artifacts["warnings"]
    return EvaluationResult(metrics, artifacts)


def _evaluate(program_path, split: str, semantics: str, limits) -> tuple[dict, dict]:
    seed, instance_timeout_s, evaluation_timeout_s = limits
    seeds = prism_instances.split_seeds(split)
    instances = [inst for s in seeds for inst in prism_instances.generate(s)]
    began = time.perf_counter()
    try:
        outcomes = prism_runner.run_program(
            program_path, instances, seed=seed, instance_timeout_s=instance_timeout_s,
            total_timeout_s=evaluation_timeout_s, keep_going=semantics == "adrs")
    except prism_runner.LoadError as exc:
        raise RuntimeError(f"cannot load program: {exc}") from None
    wall = time.perf_counter() - began
    if semantics == "adrs":
        metrics, artifacts = _score_adrs(instances, outcomes)
    else:
        metrics, artifacts = _score_hardened(instances, outcomes, seeds)
    metrics["wall_s"] = wall
    metrics["max_call_s"] = max(o.wall_s for o in outcomes)
    artifacts.update(split=split, semantics=semantics, seeds=list(seeds),
                     num_instances=len(instances))
    warnings = artifacts.setdefault("warnings", [])
    if metrics["combined_score"] > metrics["bound_score"] + 1e-9:
        warnings.append(f"combined_score {metrics['combined_score']:.4f} is above the valid bound "
                        f"{metrics['bound_score']:.4f}: an evaluator defect or an exploited hole")
    return metrics, artifacts


def _label(inst) -> str:
    if inst.seed in prism_instances.SPLIT_SEEDS["search"]:
        return f"instance {inst.index}"
    return f"seed {inst.seed} instance {inst.index}"


def _score_hardened(instances, outcomes, seeds):
    """Every instance must succeed with a valid placement; scores from the evaluator's copies."""
    kvprs, bounds, warnings, tampered = [], [], [], 0
    for inst, outcome in zip(instances, outcomes):
        if outcome.error is not None:
            crashed = outcome.error.startswith(("compute_model_placement raised",
                                                "the program's process exited"))
            kind = RuntimeError if crashed else ValueError  # else a timeout or malformed output
            raise kind(f"{_label(inst)}: {outcome.error}")
        try:
            gpus, changed = prism_score.validate(outcome.encoded, inst)
        except prism_score.PlacementError as exc:
            raise ValueError(f"{_label(inst)}: {exc}") from None
        if changed:
            tampered += len(changed)
            if len(warnings) < 5:
                warnings.append(f"{_label(inst)}: returned models {', '.join(changed[:4])} with "
                                "changed fields (ignored: scores use the evaluator's own copies)")
        kvprs.append(prism_score.max_kvpr(gpus, inst))
        bounds.append(prism_score.lower_bound(inst))
        if kvprs[-1] < bounds[-1] * (1 - 1e-12) and len(warnings) < 10:
            warnings.append(f"evaluator defect: {_label(inst)} scores {kvprs[-1]} below its "
                            f"lower bound {bounds[-1]}")
    if len(outcomes) != len(instances):  # cannot happen: the runner stops only on a failure
        raise RuntimeError("internal error: missing outcomes")
    metrics = _summary(kvprs, bounds)
    metrics.update(success_rate=1.0, tampered_models=tampered)
    if len(seeds) > 1:
        for s in seeds:
            picked = [k for k, inst in enumerate(instances) if inst.seed == s]
            part = _summary([kvprs[k] for k in picked], [bounds[k] for k in picked])
            for name in ("combined_score", "mean_max_kvpr", "bound_score", "gap"):
                metrics[f"{name}_s{s}"] = part[name]
    return metrics, {"warnings": warnings}


def _summary(kvprs, bounds) -> dict:
    mean = sum(kvprs) / len(kvprs)
    mean_bound = sum(bounds) / len(bounds)
    return {
        "combined_score": 1 / mean + 1,
        "mean_max_kvpr": mean,
        "min_max_kvpr": min(kvprs),
        "max_max_kvpr": max(kvprs),
        "bound_score": 1 / mean_bound + 1,
        "mean_lower_bound": mean_bound,
        "gap": sum(b / k for b, k in zip(bounds, kvprs)) / len(kvprs),
    }


def _score_adrs(instances, outcomes):
    """The original aggregation: failures skipped, each costing 1/num_instances of the score."""
    kvprs, failures = [], []
    for inst, outcome in zip(instances, outcomes):
        try:
            if outcome.error is not None:
                raise ValueError(outcome.error)
            kvprs.append(prism_score.adrs_max_kvpr(outcome.encoded))
        except (ArithmeticError, ValueError) as exc:
            failures.append(f"{_label(inst)}: {exc}")
    mean_bound = sum(map(prism_score.lower_bound, instances)) / len(instances)
    success = len(kvprs) / len(instances)
    mean = sum(kvprs) / len(kvprs) if kvprs else 0.0
    inverse = 1 / mean if mean != 0 else 0.0
    metrics = {
        "combined_score": inverse + success if kvprs else 0.0,
        "max_kvpr": inverse,  # the ADRS name of the inverse mean
        "mean_max_kvpr": mean,
        "success_rate": success,
        "failed_instances": len(failures),
        "bound_score": 1 / mean_bound + 1,
        "mean_lower_bound": mean_bound,
    }
    warnings = []
    if failures:
        warnings.append(f"{len(failures)} instances failed and were skipped (ADRS semantics); "
                        f"first: {failures[0]}")
    artifacts = {"warnings": warnings}
    if failures:
        artifacts["failures"] = failures[:20]
    return metrics, artifacts


def _initial_holdout_score(semantics: str, limits) -> float:
    """The shipped initial program's holdout score, the bar an evolved program should clear."""
    if semantics not in _INITIAL_HOLDOUT:
        metrics, _ = _evaluate(_HERE / "initial_program.py", "holdout", semantics, limits)
        _INITIAL_HOLDOUT[semantics] = metrics["combined_score"]
    return _INITIAL_HOLDOUT[semantics]
