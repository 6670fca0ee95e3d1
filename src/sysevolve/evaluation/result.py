"""What an evaluator may return besides a plain dict: metrics plus artifacts.

The shape is OpenEvolve's (`.metrics`, `.artifacts`), so evaluators written for it work here;
the built-in problems' evaluators return this class.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class EvaluationResult:
    """Numeric metrics (`combined_score` is the fitness) plus JSON-able artifacts (feedback,
    warnings) for the researcher and the next prompt."""

    metrics: dict[str, float]
    artifacts: dict[str, Any] = field(default_factory=dict)
