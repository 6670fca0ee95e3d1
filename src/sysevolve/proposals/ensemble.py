"""Choosing a model for each proposal, and benching models that keep failing.

`weighted` samples models by their configured weights. `ucb` is a bandit that learns which
model yields improvements per dollar: each model's index is its smoothed improvement rate,
divided by its cost per call relative to the cheapest model's, plus an exploration bonus.
Its state is a pure function of the observed outcomes, so it is rebuilt on resume by replaying
the stored programs; `state()` shows it.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from typing import Callable

from sysevolve.proposals.llm import Model


@dataclass
class _Record:
    """What the ensemble knows about one model."""

    pulls: int = 0
    improvements: int = 0
    cost_usd: float = 0.0
    consecutive_failures: int = 0
    benched_until: float = 0.0
    last_error: str = ""


@dataclass
class Ensemble:
    """The models, their weights and records, and the selection rule."""

    models: list[Model]
    selection: str = "weighted"
    set_aside_after: int = 3
    set_aside_s: float = 60.0
    clock: Callable[[], float] = time.monotonic
    records: dict[str, _Record] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.models:
            raise ValueError("an ensemble needs at least one model")
        self.records = {m.name: _Record() for m in self.models}
        self.started = self.clock()
        self.last_success = self.started

    # --- choosing ---------------------------------------------------------------------------
    def available(self) -> list[Model]:
        now = self.clock()
        return [m for m in self.models if self.records[m.name].benched_until <= now]

    def seconds_until_available(self) -> float:
        now = self.clock()
        return max(0.0, min(self.records[m.name].benched_until for m in self.models) - now)

    def choose(self, rng: random.Random) -> Model | None:
        """A model for the next call, or None while every model is set aside."""
        candidates = self.available()
        if not candidates:
            return None
        if self.selection == "ucb":
            return self._ucb(candidates)
        weights = [m.weight for m in candidates]
        if sum(weights) <= 0:
            weights = [1.0] * len(candidates)
        return rng.choices(candidates, weights=weights)[0]

    def _ucb(self, candidates: list[Model]) -> Model:
        for model in candidates:  # every model once, in config order
            if self.records[model.name].pulls == 0:
                return model
        total = sum(self.records[m.name].pulls for m in candidates)
        per_call = {m.name: self.records[m.name].cost_usd / self.records[m.name].pulls for m in candidates}
        cheapest = min((c for c in per_call.values() if c > 0), default=0.0)

        def index(model: Model) -> float:
            r = self.records[model.name]
            rate = (r.improvements + 1) / (r.pulls + 2)
            relative_cost = per_call[model.name] / cheapest if cheapest > 0 and per_call[model.name] > 0 else 1.0
            return rate / relative_cost + math.sqrt(2 * math.log(total) / r.pulls)

        return max(candidates, key=index)

    # --- learning ---------------------------------------------------------------------------
    def call_finished(self, name: str, ok: bool, error: str = "") -> None:
        """Track failing calls; a model failing `set_aside_after` times in a row is benched."""
        record = self.records.get(name)
        if record is None:
            return
        if ok:
            record.consecutive_failures = 0
            self.last_success = self.clock()
            return
        record.consecutive_failures += 1
        record.last_error = error
        if record.consecutive_failures >= self.set_aside_after:
            # Bench longer each time it fails again right after coming back.
            rounds = record.consecutive_failures - self.set_aside_after
            record.benched_until = self.clock() + self.set_aside_s * 2 ** min(rounds, 6)

    def observe(self, name: str, improved: bool, cost_usd: float) -> None:
        """The outcome of a proposal the model wrote: did its child beat its parent, at what cost."""
        record = self.records.get(name)
        if record is None:
            return  # a model no longer in the config (resumed with another ensemble)
        record.pulls += 1
        record.improvements += int(improved)
        record.cost_usd += cost_usd

    def outage_s(self) -> float:
        """Seconds since any model last answered (or since start)."""
        return self.clock() - self.last_success

    def last_errors(self) -> str:
        return "; ".join(f"{name}: {r.last_error}" for name, r in self.records.items() if r.last_error)

    def state(self) -> dict:
        return {
            name: {"pulls": r.pulls, "improvements": r.improvements, "cost_usd": r.cost_usd,
                   "consecutive_failures": r.consecutive_failures}
            for name, r in self.records.items()
        }
