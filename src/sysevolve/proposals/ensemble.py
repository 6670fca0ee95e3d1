"""Choosing a model for each proposal, and benching models that keep failing.

`weighted` samples models by their configured weights. `ucb` is a bandit that learns which
model yields improvements per dollar: each model's index is its smoothed improvement rate,
divided by its cost per call relative to the cheapest model's, plus an exploration bonus.
Its state is a pure function of the observed outcomes, so it is rebuilt on resume by replaying
the stored programs through `observe`.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from typing import Callable

from sysevolve.proposals.llm import Model


# Scale of UCB's exploration bonus. Improvement rates of LLM edits are small (a few percent to
# a few tens of percent), so the textbook bonus sqrt(2 ln N / n) would keep a useless model in
# play for hundreds of proposals; this scale lets the rates decide after a few dozen.
UCB_EXPLORATION = 0.5


@dataclass
class _Record:
    """What the ensemble knows about one model."""

    pulls: int = 0  # proposals whose outcome is known
    in_flight: int = 0  # proposals chosen but not yet settled (so UCB does not herd)
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
    records: dict[str, _Record] = field(init=False)
    failing_since: float | None = field(init=False, default=None)  # first failure after a success

    def __post_init__(self) -> None:
        if not self.models:
            raise ValueError("an ensemble needs at least one model")
        self.records = {m.name: _Record() for m in self.models}

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
            model = self._ucb(candidates)
        else:
            weights = [m.weight for m in candidates]
            if sum(weights) <= 0:
                weights = [1.0] * len(candidates)
            model = rng.choices(candidates, weights=weights)[0]
        self.records[model.name].in_flight += 1
        return model

    def _ucb(self, candidates: list[Model]) -> Model:
        """Highest index; a proposal in flight counts as a pull with no improvement yet."""
        def tried(model: Model) -> int:
            r = self.records[model.name]
            return r.pulls + r.in_flight

        for model in candidates:  # every model once, in config order
            if tried(model) == 0:
                return model
        total = sum(tried(m) for m in candidates)
        per_call = {m.name: self.records[m.name].cost_usd / max(self.records[m.name].pulls, 1)
                    for m in candidates}
        cheapest = min((c for c in per_call.values() if c > 0), default=0.0)

        def index(model: Model) -> float:
            r = self.records[model.name]
            rate = (r.improvements + 1) / (tried(model) + 2)
            cost = per_call[model.name]
            relative_cost = cost / cheapest if cheapest > 0 and cost > 0 else 1.0
            return rate / relative_cost + UCB_EXPLORATION * math.sqrt(math.log(total) / tried(model))

        return max(candidates, key=index)

    # --- learning ---------------------------------------------------------------------------
    def call_finished(self, name: str, ok: bool, error: str = "") -> None:
        """Track failing calls; a model failing `set_aside_after` times in a row is benched."""
        record = self.records.get(name)
        if record is None:
            return
        if ok:
            record.consecutive_failures = 0
            self.failing_since = None
            return
        if self.failing_since is None:
            self.failing_since = self.clock()
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
        record.in_flight = max(0, record.in_flight - 1)  # 0 when replayed on resume
        record.improvements += int(improved)
        record.cost_usd += cost_usd

    def outage_s(self) -> float:
        """Seconds every call has been failing (since the first failure after a success)."""
        return 0.0 if self.failing_since is None else self.clock() - self.failing_since

    def last_errors(self) -> str:
        return "; ".join(f"{name}: {r.last_error}" for name, r in self.records.items() if r.last_error)
