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
    "max_code_length", "convergence_threshold", "early_stopping_metric",
    "max_tasks_per_child", "allow_full_rewrites", "diff_pattern",
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

    Raises UnknownKey for a misspelled key inside an OpenEvolve-only section.
    """
    native: dict = {}
    unused: list[str] = []
    for key, value in raw.items():
        if key in _SECTION_KEYS and isinstance(value, dict):
            _translate_section(key, value, native, unused)
        elif key == "prompt" and isinstance(value, dict):
            _merge(native, "prompt", _translate_prompt(value, native, unused))
        elif key == "llm" and isinstance(value, dict):
            _merge(native, "llm", _translate_llm(value, unused))
        elif key == "diff_based_evolution":
            _set(native, "proposals.mode", "diff" if value else "rewrite")
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


def _merge(native: dict, key: str, section: dict) -> None:
    native[key] = {**native.get(key, {}), **section}


def _translate_section(key: str, value: dict, native: dict, unused: list[str]) -> None:
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


# OpenEvolve prompt keys for features sysevolve does not have.
_UNUSED_PROMPT = {
    "island_system_messages", "evaluator_system_message", "programs_as_changes_description",
    "system_message_changes_description", "initial_changes_description",
    "use_template_stochasticity", "template_variations", "use_meta_prompting",
    "meta_prompt_weight", "include_artifacts", "artifact_security_filter",
    "suggest_simplification_after_chars", "include_changes_under_chars",
    "concise_implementation_max_lines", "comprehensive_implementation_min_lines",
    "diff_summary_max_line_len", "diff_summary_max_lines", "code_length_threshold",
}


def _translate_prompt(value: dict, native: dict, unused: list[str]) -> dict:
    kept = {}
    for sub, sub_value in value.items():
        dotted = f"prompt.{sub}"
        if dotted in _MOVES:
            _set(native, _MOVES[dotted], sub_value)
        elif sub == "max_artifact_bytes":
            kept.setdefault("max_artifact_chars", sub_value)
        elif sub == "include_artifacts" and sub_value is False:
            kept["max_artifact_chars"] = 0
        elif sub in _UNUSED_PROMPT:
            unused.append(dotted)
        else:
            kept[sub] = sub_value
    return kept


# OpenEvolve model keys with no effect here (per model or for the whole llm section).
_UNUSED_MODEL = {"retries", "retry_delay", "random_seed", "system_message", "provider",
                 "init_client", "manual_mode", "max_budget_usd", "max_ai_credits",
                 "allow_all_tools"}
_UNUSED_LLM = {"evaluator_models", "random_seed", "manual_mode", "provider", "init_client",
               "system_message", "max_budget_usd", "max_ai_credits", "allow_all_tools",
               "name", "weight"}


def _translate_model(model: Any, where: str, unused: list[str]) -> Any:
    if not isinstance(model, dict):
        return model
    kept: dict = {}
    for key, value in model.items():
        if key == "reasoning_effort":
            kept.setdefault("extra_body", {})["reasoning_effort"] = value
        elif key in _UNUSED_MODEL:
            unused.append(f"{where}.{key}")
        else:
            kept[key] = value
    return kept


def _translate_llm(value: dict, unused: list[str]) -> dict:
    """OpenEvolve's llm section: primary/secondary models, retry_delay, reasoning_effort."""
    kept: dict = {}
    models = [_translate_model(m, f"llm.models[{i}]", unused)
              for i, m in enumerate(value.get("models") or [])]
    for rank, default_weight in (("primary", 1.0), ("secondary", 0.2)):
        name = value.get(f"{rank}_model")
        weight = value.get(f"{rank}_model_weight")
        if name and (weight is None or weight > 0):
            models.append({"name": name, "weight": default_weight if weight is None else weight})
    for key, sub_value in value.items():
        if key in ("models", "primary_model", "primary_model_weight", "secondary_model",
                   "secondary_model_weight"):
            continue
        if key == "retry_delay":
            kept["retry_base_s"] = sub_value
        elif key == "reasoning_effort":
            kept.setdefault("extra_body", {})["reasoning_effort"] = sub_value
        elif key in _UNUSED_LLM:
            unused.append(f"llm.{key}")
        else:
            kept[key] = sub_value
    if models:
        kept["models"] = models
    return kept


def _convert(dotted: str, value: Any, unused: list[str]) -> Any:
    if dotted == "database.feature_dimensions" and isinstance(value, list):
        return _features(value, unused)
    if dotted == "database.feature_bins" and isinstance(value, dict):
        unused.append("database.feature_bins (per-dimension; the largest is used for all)")
        return max(value.values()) if value else 10
    return value
