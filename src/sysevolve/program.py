"""The record of one program in a run, as the store keeps it and the archive sees it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["pending", "ok", "failed", "invalid_edit", "proposal_failed"]


@dataclass(frozen=True)
class Program:
    """One program: the initial one, or a child proposed from a parent.

    `score` is the fitness (higher is better) of an evaluated program, None otherwise.
    Status: "pending" (stored, not yet evaluated), "ok", "failed" (the evaluation failed),
    "invalid_edit" (the proposer's edit could not be applied) or "proposal_failed" (the
    proposer produced nothing). `failure` is the one-line reason for the last three.
    """

    id: int
    code: str
    parent_id: int | None = None
    island: int = 0
    iteration: int = 0
    status: Status = "pending"
    score: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    artifacts: dict[str, Any] = field(default_factory=dict)
    failure: str | None = None
    proposer: str = "initial"
    edit: str = ""
    edit_summary: str = ""

    @property
    def evaluated_ok(self) -> bool:
        return self.status == "ok" and self.score is not None
