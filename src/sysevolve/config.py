"""Typed, frozen run configuration loaded from YAML.

Layers, later wins: defaults, the problem folder's `config.yaml`, the user's `--config` file,
command-line flags. OpenEvolve's configuration keys are translated (see `openevolve.py`), so an
OpenEvolve example folder loads unchanged. Any other unknown key, or a value of the wrong type,
is a `ConfigError` whose one-line message names the key and what is allowed.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sysevolve.openevolve import UnknownKey, origin_of, translate


REDACTED = "<redacted: literal keys are never stored>"  # stands for an API key in a stored config


class ConfigError(ValueError):
    """A configuration file or value is wrong; the message is one line naming the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RunConfig(_Section):
    """When the loop stops."""

    iterations: int = Field(100, ge=0, description="proposals to make, the initial program not counted")
    max_wall_s: float | None = Field(None, gt=0, description="wall-clock budget in seconds")
    target_score: float | None = Field(None, description="stop once the best score reaches this")
    patience: int | None = Field(None, ge=1, description="stop after this many iterations without improvement")


class SelectionConfig(_Section):
    """The archive: islands, MAP-Elites cells and how parents and inspirations are drawn."""

    num_islands: int = Field(4, ge=1)
    population_size: int = Field(1000, ge=1, description="programs kept per island")
    feature_dimensions: tuple[str, ...] = ("code_length",)
    feature_bins: int = Field(10, ge=1)
    exploitation_ratio: float = Field(0.7, ge=0, le=1)
    exploration_ratio: float = Field(0.2, ge=0, le=1)
    elite_fraction: float = Field(0.1, gt=0, le=1)
    num_top_inspirations: int = Field(2, ge=0)
    num_diverse_inspirations: int = Field(2, ge=0)
    migration_interval: int = Field(20, ge=0, description="programs added between migrations; 0 disables")
    migration_rate: float = Field(0.1, ge=0, le=1)

    @model_validator(mode="after")
    def _consistent(self) -> "SelectionConfig":
        if len(set(self.feature_dimensions)) != len(self.feature_dimensions):
            raise ValueError(f"feature_dimensions has duplicates: {list(self.feature_dimensions)}")
        if self.exploitation_ratio + self.exploration_ratio > 1 + 1e-9:
            raise ValueError("exploitation_ratio + exploration_ratio must be at most 1 (the rest is fitness-weighted)")
        return self


class ProposalConfig(_Section):
    """The solution generator."""

    concurrency: int = Field(2, ge=1, description="proposals in flight at once")
    crossover_rate: float = Field(0.1, ge=0, le=1, description="offline proposer: chance of a crossover")
    mode: Literal["diff", "rewrite", "mixed"] = Field("diff", description="how models write edits")
    rewrite_fraction: float = Field(0.25, ge=0, le=1, description="mode mixed: share of rewrites")
    repair: bool = Field(True, description="one more turn for an edit that does not apply")
    offline: bool = Field(False, description="use the offline proposer even when models are configured")


class ModelConfig(_Section):
    """One model of the ensemble; unset fields take the llm section's values."""

    name: str
    weight: float = Field(1.0, ge=0)
    api_base: str | None = None
    api_key: str | None = Field(None, description="literal or ${ENV_VAR}; never stored")
    temperature: float | None = Field(None, ge=0)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    timeout: float | None = Field(None, gt=0, description="seconds per HTTP request")
    extra_body: dict[str, Any] = Field({}, description="passed through, e.g. reasoning_effort")
    price_in: float | None = Field(None, ge=0, description="USD per million input tokens")
    price_out: float | None = Field(None, ge=0, description="USD per million output tokens")


class LLMConfig(_Section):
    """The model ensemble, shared defaults for its models, and how calls are retried."""

    models: tuple[ModelConfig, ...] = ()
    api_base: str | None = Field(None, description="default: $OPENAI_BASE_URL, else OpenAI")
    api_key: str | None = Field(None, description="default: $OPENAI_API_KEY")
    temperature: float | None = Field(0.7, ge=0)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(4096, ge=1)
    timeout: float = Field(120.0, gt=0)
    extra_body: dict[str, Any] = {}
    selection: Literal["weighted", "ucb"] = "weighted"
    retries: int = Field(4, ge=0, description="retries of a call on 429, 5xx, timeouts, connection errors")
    retry_base_s: float = Field(1.0, ge=0, description="first backoff; doubles, with jitter")
    retry_max_s: float = Field(60.0, ge=0)
    call_deadline_s: float = Field(600.0, gt=0, description="hard limit on one call, retries included")
    set_aside_after: int = Field(3, ge=1, description="consecutive failed calls that bench a model")
    set_aside_s: float = Field(60.0, ge=0)
    max_outage_s: float = Field(600.0, gt=0, description="stop when every model failed this long")


class PromptConfig(_Section):
    """The prompt generator."""

    system_message: str | None = Field(None, description="default: the problem's description")
    template_dir: str | None = Field(None, description="folder of .j2 templates overriding ours")
    num_recent_attempts: int = Field(5, ge=0)
    max_artifact_chars: int = Field(4000, ge=0)


class BudgetConfig(_Section):
    """Spending limits; the run stops cleanly once one is reached."""

    max_cost_usd: float | None = Field(None, ge=0)
    max_tokens: int | None = Field(None, ge=0)
    max_proposals: int | None = Field(None, ge=0)


class EvaluationConfig(_Section):
    """The evaluation harness."""

    workers: int | None = Field(None, ge=1, description="evaluations at once; default: number of cores")
    timeout_s: float = Field(60.0, gt=0)
    memory_mb: int | None = Field(2048, ge=64)
    cpu_s: int | None = Field(None, ge=1, description="CPU-time limit; default: timeout plus 5 s")
    max_output_mb: float = Field(10.0, gt=0, description="stdout+stderr beyond this kills the evaluation")
    cascade: bool = True
    cascade_thresholds: tuple[float, ...] = ()
    recheck_best: bool = Field(True, description="evaluate each new best once more; flag it if the score moves")
    recheck_tolerance: float = Field(1e-9, ge=0, description="relative change that counts as not reproduced")
    tampering: Literal["warn", "reject", "off"] = Field(
        "warn", description="static scan of evolved code for tampering routes: warn, reject or off"
    )
    evaluator_kwargs: dict[str, Any] = Field(
        {}, description="keyword arguments for evaluate(), over problem.yaml's (e.g. semantics: adrs)"
    )

    def resolved_workers(self) -> int:
        return self.workers or os.cpu_count() or 1


class Config(_Section):
    """Everything a run needs besides the problem itself."""

    seed: int = 0
    run: RunConfig = RunConfig()
    selection: SelectionConfig = SelectionConfig()
    proposals: ProposalConfig = ProposalConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    llm: LLMConfig = LLMConfig()
    prompt: PromptConfig = PromptConfig()
    budget: BudgetConfig = BudgetConfig()


def _deep_merge(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _allowed_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return sorted(model.model_fields)


def _one_line(error: ValidationError, source: str, raw: dict | None = None) -> str:
    first = error.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "(top level)"
    if first["type"] == "extra_forbidden":
        allowed = _allowed_keys(Config, first["loc"])
        close = difflib.get_close_matches(str(first["loc"][-1]), allowed, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return f"{source}: unknown key '{key}'{hint}; allowed here: {', '.join(allowed)}"
    theirs = origin_of(key, raw or {})
    named = f"'{key}' (OpenEvolve '{theirs}')" if theirs else f"'{key}'"
    return f"{source}: bad value for {named}: {first['msg']} (got {first.get('input')!r})"


def read_yaml(path: Path) -> dict:
    """A YAML mapping from `path`, or ConfigError."""
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values, got {type(data).__name__}")
    return data


def build_config(layers: list[tuple[str, dict]]) -> tuple[Config, list[str]]:
    """Merge (source name, raw mapping) layers into a Config.

    Returns the config and the OpenEvolve keys that were recognised but have no effect here.
    """
    merged: dict = {}
    ignored: list[str] = []
    for source, raw in layers:
        try:
            native, unused = translate(raw)
        except UnknownKey as exc:
            raise ConfigError(f"{source}: {exc}") from None
        ignored += unused
        try:
            Config.model_validate(native)  # validate each layer alone, to name its source
        except ValidationError as exc:
            raise ConfigError(_one_line(exc, source, raw)) from None
        merged = _deep_merge(merged, native)
    try:
        return Config.model_validate(merged), ignored
    except ValidationError as exc:
        raise ConfigError(_one_line(exc, "config")) from None


def validate_config(data: dict, source: str) -> Config:
    """A Config from native keys (e.g. as stored in a run), or a one-line ConfigError."""
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_one_line(exc, source)) from None

