"""Fitness: the single number the search maximises, derived from an evaluator's metrics.

Higher fitness is always better: for a metric to minimise, fitness is its negation.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

DIRECTIONS = ("maximize", "minimize")


def as_number(value: Any) -> float | None:
    """`value` as a finite float when it is a real number (bools excluded), else None."""
    # numbers.Real also admits numpy scalars, which evaluators return all the time.
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def numeric_metrics(metrics: Mapping[Any, Any]) -> dict[str, float]:
    """The finite numeric entries of `metrics` as floats; bools and everything else dropped."""
    kept = {}
    for key, value in metrics.items():
        number = as_number(value)
        if number is not None:
            kept[str(key)] = number
    return kept


def fitness(
    metrics: Mapping[Any, Any], metric: str = "combined_score", direction: str = "maximize"
) -> float | None:
    """`metrics[metric]` if numeric, else the mean of the numeric metrics, else None.

    Both are negated when `direction` is "minimize", so that higher is better.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, not {direction!r}")
    value = as_number(metrics.get(metric))
    if value is None:
        numbers_only = numeric_metrics(metrics)
        if not numbers_only:
            return None
        value = sum(numbers_only.values()) / len(numbers_only)
    return -value if direction == "minimize" else value
