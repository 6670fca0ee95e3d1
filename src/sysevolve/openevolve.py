"""Translation of OpenEvolve configuration keys into sysevolve's own.

An OpenEvolve example folder (initial_program.py, evaluator.py, config.yaml) must load
unchanged. Its keys map onto ours where the concept exists; keys for features sysevolve does
not have (checkpoint files, log folders, trace files) are accepted and reported as unused, so
the user learns they have no effect instead of the run failing.
"""

from __future__ import annotations

import difflib
from typing import Any

# OpenEvolve key -> our dotted key.
_MOVES = {
    "max_iterations": "run.iterations",
    "random_seed": "seed",
    "early_stopping_patience": "run.patience",
    "database.population_size": "selection.population_size",
    "database.num_islands": "selection.num_islands",
    "database.elite_selection_ratio": "selection.elite_fraction",
    "database.exploration_ratio": "selection.exploration_ratio",
    "database.exploitation_ratio": "selection.exploitation_ratio",
    "database.feature_dimensions": "selection.feature_dimensions",
    "database.feature_bins": "selection.feature_bins",
    "database.migration_interval": "selection.migration_interval",
    "database.migration_rate": "selection.migration_rate",
    "database.random_seed": "seed",
    "evaluator.timeout": "evaluation.timeout_s",
    "evaluator.cascade_evaluation": "evaluation.cascade",
    "evaluator.cascade_thresholds": "evaluation.cascade_thresholds",
    "evaluator.parallel_evaluations": "evaluation.workers",
    "evaluator.memory_limit_mb": "evaluation.memory_mb",
    "prompt.num_top_programs": "selection.num_top_inspirations",
    "prompt.num_diverse_programs": "selection.num_diverse_inspirations",
}

# OpenEvolve keys with no counterpart here; accepted and reported as unused.
_UNUSED_TOP = {
    "checkpoint_interval", "log_level", "log_dir", "language", "file_suffix", "evolution_trace",
    "diff_based_evolution", "max_code_length", "convergence_threshold", "early_stopping_metric",
    "max_tasks_per_child", "allow_full_rewrites",
}
# Every key OpenEvolve's database and evaluator sections accept; anything else is a typo.
_SECTION_KEYS = {
    "database": {
        "db_path", "in_memory", "log_prompts", "population_size", "archive_size", "num_islands",
        "elite_selection_ratio", "exploration_ratio", "exploitation_ratio", "diversity_metric",
        "feature_dimensions", "feature_bins", "diversity_reference_size", "migration_interval",
        "migration_rate", "random_seed", "artifacts_base_path", "artifact_size_threshold",
        "cleanup_old_artifacts", "artifact_retention_days", "max_snapshot_artifacts",
        "novelty_llm", "embedding_model", "embedding_api_base", "similarity_threshold",
    },
    "evaluator": {
        "timeout", "max_retries", "memory_limit_mb", "cpu_limit", "cascade_evaluation",
        "cascade_thresholds", "parallel_evaluations", "distributed", "use_llm_feedback",
        "llm_feedback_weight", "enable_artifacts", "max_artifact_storage", "evaluator_args",
    },
}

# OpenEvolve's built-in feature names -> ours ("diversity" has no counterpart).
_FEATURE_NAMES = {"complexity": "code_length"}


def _set(tree: dict, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for part in parents:
        tree = tree.setdefault(part, {})
    tree[leaf] = value


def _features(names: list, unused: list[str]) -> list[str]:
    kept = []
    for name in names:
        if name in ("diversity", "score"):
            unused.append(f"database.feature_dimensions[{name}]")
        else:
            kept.append(_FEATURE_NAMES.get(name, name))
    return kept or ["code_length"]


class UnknownKey(ValueError):
    """A key in an OpenEvolve section that OpenEvolve itself does not know."""


def origin_of(native_key: str, raw: dict) -> str | None:
    """The OpenEvolve key in `raw` that was translated to our dotted `native_key`, if any."""
    for theirs, ours in _MOVES.items():
        section, _, leaf = theirs.rpartition(".")
        holder = raw.get(section) if section else raw
        if ours == native_key and isinstance(holder, dict) and leaf in holder:
            return theirs
    return None


def translate(raw: dict) -> tuple[dict, list[str]]:
    """Our native mapping for `raw`, and the OpenEvolve keys that have no effect here.

    Raises UnknownKey for a misspelled key inside an OpenEvolve section.
    """
    native: dict = {}
    unused: list[str] = []
    for key, value in raw.items():
        if key in _SECTION_KEYS and isinstance(value, dict):
            for sub, sub_value in value.items():
                dotted = f"{key}.{sub}"
                if sub not in _SECTION_KEYS[key]:
                    close = difflib.get_close_matches(sub, _SECTION_KEYS[key], n=1)
                    hint = f" (did you mean '{key}.{close[0]}'?)" if close else ""
                    raise UnknownKey(f"unknown OpenEvolve key '{dotted}'{hint}")
                if dotted in _MOVES:
                    _set(native, _MOVES[dotted], _convert(dotted, sub_value, unused))
                else:
                    unused.append(dotted)
        elif key == "prompt" and isinstance(value, dict):
            rest = {}
            for sub, sub_value in value.items():
                dotted = f"prompt.{sub}"
                if dotted in _MOVES:
                    _set(native, _MOVES[dotted], sub_value)
                else:
                    rest[sub] = sub_value
            native["prompt"] = rest
        elif key in _MOVES:
            if not (key == "random_seed" and "seed" in raw):
                _set(native, _MOVES[key], value)
        elif key in _UNUSED_TOP:
            unused.append(key)
        elif isinstance(value, dict) and isinstance(native.get(key), dict):
            native[key].update(value)
        else:
            native[key] = value
    return native, unused


def _convert(dotted: str, value: Any, unused: list[str]) -> Any:
    if dotted == "database.feature_dimensions" and isinstance(value, list):
        return _features(value, unused)
    if dotted == "database.feature_bins" and isinstance(value, dict):
        unused.append("database.feature_bins (per-dimension; the largest is used for all)")
        return max(value.values()) if value else 10
    return value
