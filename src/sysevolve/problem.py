"""A problem: a folder with the program to improve and the evaluator that scores it.

Layout (OpenEvolve's example layout loads unchanged):
  initial_program.py   the program; evolvable lines between EVOLVE-BLOCK markers
  evaluator.py         evaluate(program_path[, split=...]) -> dict | object with .metrics
  problem.yaml         optional: name, description, metric, direction, timeout_s, splits
  config.yaml          optional: run configuration defaults for this problem
Built-in problems live in `sysevolve/problems/<name>/` and are named by `<name>`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sysevolve.config import ConfigError, read_yaml

BUILTIN_DIR = Path(__file__).parent / "problems"
INITIAL_PROGRAM = "initial_program.py"
EVALUATOR = "evaluator.py"


class ProblemError(ValueError):
    """A problem cannot be found or its folder is malformed; the message is one line."""


class _ProblemFile(BaseModel):
    """The schema of problem.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = None
    description: str = ""
    metric: str = "combined_score"
    direction: Literal["maximize", "minimize"] = "maximize"
    timeout_s: float | None = Field(None, gt=0)
    evolvable_files: tuple[str, ...] = (INITIAL_PROGRAM,)
    splits: tuple[str, ...] = ("search",)
    evaluator_kwargs: dict[str, Any] = {}


@dataclass(frozen=True)
class Problem:
    """A loaded problem folder."""

    name: str
    root: Path
    description: str = ""
    metric: str = "combined_score"
    direction: str = "maximize"
    timeout_s: float | None = None
    splits: tuple[str, ...] = ("search",)
    evaluator_kwargs: dict[str, Any] = field(default_factory=dict)
    config_layer: dict[str, Any] = field(default_factory=dict)

    @property
    def initial_program(self) -> Path:
        return self.root / INITIAL_PROGRAM

    @property
    def evaluator(self) -> Path:
        return self.root / EVALUATOR

    def initial_code(self) -> str:
        return self.initial_program.read_text()


def builtin_problems() -> dict[str, Path]:
    """Built-in problem names and their folders."""
    return {
        path.name: path
        for path in sorted(BUILTIN_DIR.iterdir())
        if path.is_dir() and (path / EVALUATOR).exists()
    }


def resolve_problem_dir(spec: str | Path) -> Path:
    """The folder named by `spec`: a built-in problem name or a path."""
    path = Path(spec)
    if path.is_dir():
        return path.resolve()
    builtins = builtin_problems()
    if str(spec) in builtins:
        return builtins[str(spec)]
    names = ", ".join(builtins) or "none"
    raise ProblemError(f"no problem '{spec}': not a folder, and not a built-in problem (built-ins: {names})")


def load_problem(spec: str | Path) -> Problem:
    """Load the problem named by `spec` (built-in name or folder path)."""
    root = resolve_problem_dir(spec)
    for required in (INITIAL_PROGRAM, EVALUATOR):
        if not (root / required).is_file():
            raise ProblemError(f"{root}: missing {required} (a problem folder needs {INITIAL_PROGRAM} and {EVALUATOR})")
    meta = _read_problem_file(root)
    if meta.evolvable_files != (INITIAL_PROGRAM,):
        raise ProblemError(
            f"{root / 'problem.yaml'}: evolvable_files {list(meta.evolvable_files)} not supported yet; "
            f"only [{INITIAL_PROGRAM}] is"
        )
    config_layer = read_yaml(root / "config.yaml") if (root / "config.yaml").exists() else {}
    description = meta.description or _openevolve_system_message(config_layer)
    return Problem(
        name=meta.name or root.name,
        root=root,
        description=description,
        metric=meta.metric,
        direction=meta.direction,
        timeout_s=meta.timeout_s,
        splits=meta.splits,
        evaluator_kwargs=dict(meta.evaluator_kwargs),
        config_layer=config_layer,
    )


def _read_problem_file(root: Path) -> _ProblemFile:
    path = root / "problem.yaml"
    if not path.exists():
        return _ProblemFile()
    try:
        return _ProblemFile.model_validate(read_yaml(path))
    except ConfigError as exc:
        raise ProblemError(str(exc)) from None
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        allowed = ", ".join(sorted(_ProblemFile.model_fields))
        if first["type"] == "extra_forbidden":
            raise ProblemError(f"{path}: unknown key '{key}' (allowed keys: {allowed})") from None
        raise ProblemError(f"{path}: bad value for '{key}': {first['msg']} (got {first.get('input')!r})") from None


def _openevolve_system_message(config_layer: dict) -> str:
    """OpenEvolve examples describe the problem in config.yaml's prompt.system_message."""
    prompt = config_layer.get("prompt")
    message = prompt.get("system_message") if isinstance(prompt, dict) else None
    return message if isinstance(message, str) else ""
