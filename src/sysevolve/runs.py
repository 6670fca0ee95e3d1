"""Creating a run directory, reopening one, and wiring the loop's parts together."""

from __future__ import annotations

import os
import platform
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from sysevolve import __version__
from sysevolve.archive import Archive
from sysevolve.config import Config, ConfigError, build_config, read_yaml, validate_config
from sysevolve.engine import Engine, RunStats
from sysevolve.evaluation.harness import Harness
from sysevolve.problem import Problem, load_problem
from sysevolve.config import REDACTED
from sysevolve.proposals.base import Proposer
from sysevolve.proposals.mutate import OfflineProposer
from sysevolve.rundir import DB_NAME, BestProgramFolder, db_path, is_run_dir
from sysevolve.store import RunLocked, Store

DATA_ENV = "SYSEVOLVE_DATA"
_ENV_ONLY = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")


class RunError(RuntimeError):
    """A run cannot be created or reopened; the message is one line."""


@dataclass
class Run:
    """An open run: its folder, problem, resolved configuration, store and engine."""

    run_dir: Path
    problem: Problem
    config: Config
    store: Store
    engine: Engine
    notes: list[str] = field(default_factory=list)  # what the user should know at start

    def close(self) -> None:
        self.store.close()


def default_run_dir(problem_name: str) -> Path:
    return Path("runs") / f"{problem_name}-{time.strftime('%Y%m%d-%H%M%S')}"


def resolve_config(problem: Problem, config_file: Path | None = None,
                   overrides: dict | None = None) -> tuple[Config, list[str]]:
    """The run configuration for `problem`: defaults, problem files, user file, flags."""
    layers: list[tuple[str, dict]] = []
    if problem.timeout_s is not None:
        layers.append(("problem.yaml", {"evaluation": {"timeout_s": problem.timeout_s}}))
    if problem.config_layer:
        layers.append((str(problem.root / "config.yaml"), problem.config_layer))
    if config_file is not None:
        layers.append((str(config_file), read_yaml(config_file)))
    if overrides:
        layers.append(("command line", overrides))
    return build_config(layers)


def create_run(
    problem_spec: str | Path,
    *,
    config_file: Path | None = None,
    overrides: dict | None = None,
    out_dir: Path | None = None,
    data_dir: Path | None = None,
) -> Run:
    """A new run directory for `problem_spec`, with its configuration resolved and stored."""
    problem = load_problem(problem_spec)
    config, ignored = resolve_config(problem, config_file, overrides)
    env = evaluation_env(data_dir)
    proposer, note = _proposer(problem, config)  # before anything is written: it checks keys and templates
    run_dir = Path(out_dir) if out_dir else default_run_dir(problem.name)
    if is_run_dir(run_dir):
        raise RunError(f"{run_dir} already holds a run; continue it with `sysevolve resume {run_dir}`")
    run_dir.mkdir(parents=True, exist_ok=True)
    store = _writer(run_dir)
    store.set_meta("problem", {"name": problem.name, "root": str(problem.root)})
    store.set_meta("config", stored_config(config))
    store.set_meta("evaluation_env", env)
    store.set_meta("versions", {"sysevolve": __version__, "python": platform.python_version()})
    store.set_meta("random", {"seed": config.seed, "per_iteration": "random.Random(f'{seed}:{iteration}')"})
    store.add_event("created", ignored_keys=ignored)
    notes = [f"config keys with no effect in sysevolve: {', '.join(ignored)}"] if ignored else []
    return _open(run_dir, problem, config, store, env, notes + [note], proposer)


def open_run(run_dir: Path, *, iterations: int | None = None) -> Run:
    """Reopen a stopped or killed run; `iterations` raises or lowers its total budget."""
    run_dir = Path(run_dir)
    if not is_run_dir(run_dir):
        raise RunError(f"{run_dir} is not a run directory (no {db_path(run_dir).name})")
    store = _writer(run_dir)
    try:
        problem = load_problem(store.get_meta("problem")["root"])
        data = store.get_meta("config")
        if iterations is not None:
            data["run"]["iterations"] = iterations
        config = validate_config(data, "--iterations" if iterations is not None else str(run_dir))
    except Exception:
        store.close()
        raise
    store.set_meta("config", stored_config(config))
    env = store.get_meta("evaluation_env", {})
    try:
        proposer, note = _proposer(problem, config)
    except Exception:
        store.close()
        raise
    store.add_event("resumed", iterations_done=store.iterations_done())
    return _open(run_dir, problem, config, store, env, [note], proposer)


def remove_run(run_dir: Path) -> None:
    """Delete the files a run wrote into `run_dir`, and the folder if nothing else is in it."""
    for path in run_dir.glob(DB_NAME + "*"):
        path.unlink()
    if run_dir.is_dir() and not any(run_dir.iterdir()):
        run_dir.rmdir()


def _writer(run_dir: Path) -> Store:
    try:
        return Store(db_path(run_dir), writer=True)
    except RunLocked as exc:
        raise RunError(str(exc)) from None


def evaluation_env(data_dir: Path | None) -> dict[str, str]:
    """Environment variables evaluations may see: only where the real data is."""
    if data_dir is not None:
        if not Path(data_dir).is_dir():
            raise RunError(f"--data {data_dir}: not a directory")
        return {DATA_ENV: str(Path(data_dir).resolve())}
    if os.environ.get(DATA_ENV):
        return {DATA_ENV: os.environ[DATA_ENV]}
    return {}


def _open(run_dir: Path, problem: Problem, config: Config, store: Store, env: dict,
          notes: list[str], proposer: Proposer) -> Run:
    engine = Engine(
        config=config,
        store=store,
        archive=Archive(config.selection),
        proposer=proposer,
        harness=Harness(problem, config.evaluation, env),
        best_folder=BestProgramFolder(run_dir),
    )
    return Run(run_dir=run_dir, problem=problem, config=config, store=store, engine=engine, notes=notes)


def _proposer(problem: Problem, config: Config) -> tuple[Proposer, str]:
    """The LLM ensemble when models are configured (or OPENAI_* is set), else the offline one."""
    # Imported here: the openai SDK takes about a second to import, and most commands never need it.
    from sysevolve.proposals.ensemble import Ensemble
    from sysevolve.proposals.llm import make_clients, resolve_models
    from sysevolve.proposals.llm_proposer import LLMProposer
    from sysevolve.proposals.prompts import PromptBuilder

    if config.proposals.offline:
        return (OfflineProposer(crossover_rate=config.proposals.crossover_rate),
                "offline proposer (proposals.offline): mutations inside evolvable regions, no model calls")
    models = resolve_models(config.llm)
    unpriced = [m.name for m in models if m.price_in is None or m.price_out is None]
    if unpriced and config.budget.max_cost_usd is not None:
        raise ConfigError(f"budget.max_cost_usd needs a price for every model; none is known for "
                          f"{', '.join(unpriced)} (set price_in and price_out, USD per million tokens)")
    if not models:
        return (OfflineProposer(crossover_rate=config.proposals.crossover_rate),
                "no LLM configured (llm.models, or OPENAI_API_KEY / OPENAI_BASE_URL): "
                "using the offline proposer (mutations inside evolvable regions)")
    llm = config.llm
    ensemble = Ensemble(models, llm.selection, llm.set_aside_after, llm.set_aside_s)
    prompts = PromptBuilder(problem.description, problem.metric, problem.direction, config.prompt,
                            problem.root)
    prompts.check()
    proposer = LLMProposer(ensemble, make_clients(models, llm), prompts, config.proposals.mode,
                           config.proposals.rewrite_fraction, config.proposals.repair,
                           llm.max_outage_s)
    names = ", ".join(f"{m.name} (weight {m.weight:g}, {m.api_base})" for m in models)
    note = f"LLM ensemble, {llm.selection} selection: {names}"
    if unpriced:
        note += f"; no price known for {', '.join(unpriced)}: their cost counts as 0 (set price_in/price_out)"
    return proposer, note


def stored_config(config: Config) -> dict:
    """The config as stored in run.db: API keys given literally are replaced by a marker."""
    data = config.model_dump(mode="json")
    holders = [data["llm"], *data["llm"]["models"]]
    for holder in holders:
        key = holder.get("api_key")
        if key is not None and not _ENV_ONLY.fullmatch(key):
            holder["api_key"] = REDACTED
    return data


def summary(store: Store) -> dict:
    """The figures `sysevolve status` shows, from the store alone."""
    counts = store.status_counts()
    initial = store.initial_program()
    best = store.best_program()
    config = store.get_meta("config") or {}
    stopped = store.events("stopped")
    cost_usd, tokens = store.spending()
    return {
        "problem": (store.get_meta("problem") or {}).get("name"),
        "iterations": store.iterations_done(),
        "iteration_budget": config.get("run", {}).get("iterations"),
        "best_score": best.score if best else None,
        "best_program_id": best.id if best else None,
        "best_iteration": best.iteration if best else None,
        "initial_score": initial.score if initial else None,
        "programs": sum(counts.values()),
        "evaluated": counts.get("ok", 0) + counts.get("failed", 0),
        "failed": counts.get("failed", 0),
        "invalid_edits": counts.get("invalid_edit", 0),
        "proposal_failures": counts.get("proposal_failed", 0),
        "discarded_unparseable": store.discarded_proposals(),
        "pending": counts.get("pending", 0),
        "cost_usd": cost_usd,
        "tokens": tokens,
        "models": store.usage_by_model(),
        "stop_reason": stopped[-1][2].get("reason") if stopped else None,
        "failure_reasons": [
            {"status": status, "reason": reason, "count": n}
            for status, reason, n in store.failure_reasons()
        ],
    }


__all__ = ["Run", "RunError", "RunStats", "create_run", "open_run", "summary"]
