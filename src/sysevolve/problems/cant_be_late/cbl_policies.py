"""The reference policies of spec 2.3 and 2.4 as numpy functions of a `cbl_sim.Batch`.

They decide exactly as the programs in `baselines/` do (tests hold them to the same costs), but
in the evaluator's process and over all runs at once: the evaluator uses `uniform_progress` for
the `cost_reduction_vs_up` reference, and tests use them for the golden values on large splits.
"""

from __future__ import annotations

import numpy as np

from cbl_sim import NONE, ON_DEMAND, SPOT


def greedy_seed(b) -> np.ndarray:
    """The ADRS initial program: spot while the slack allows, on-demand when it runs out."""
    work_left = b.duration - b.work_done
    left = np.maximum(0, np.floor((b.deadline - b.elapsed) / b.gap))
    need1 = np.ceil((work_left + b.overhead) / b.gap)
    need2 = np.ceil((work_left + 2 * b.overhead) / b.gap)
    keep_spot = (b.current == SPOT) & b.has_spot
    action = np.where(b.has_spot, SPOT, NONE)
    action = np.where(need2 >= left, np.where(keep_spot, SPOT, ON_DEMAND), action)
    action = np.where(need1 >= left, ON_DEMAND, action)
    return np.where(work_left <= 1e-9, NONE, action)


def uniform_progress(b) -> np.ndarray:
    """Uniform Progress (NSDI'24): on-demand only while behind the line t * D / T."""
    t, D, T, d = b.elapsed, b.duration, b.deadline, b.overhead
    work_left = D - b.work_done
    decision = np.where(b.has_spot, SPOT, NONE)
    behind = t * D / T - b.work_done > 0
    decision = np.where(behind, np.where(b.has_spot, SPOT, ON_DEMAND), decision)
    hysteresis = (b.current == ON_DEMAND) & ((t + 2 * d) * D / T - b.work_done >= 0)
    decision = np.where(hysteresis, ON_DEMAND, decision)
    urgent = np.ceil((work_left + d) / b.gap) >= np.floor((T - t) / b.gap)
    action = np.where(urgent, ON_DEMAND, np.where(b.has_spot, SPOT, decision))
    return np.where(work_left <= 1e-3, NONE, action)


def spot_only(b) -> np.ndarray:
    """Always SPOT (idle when unavailable; the safety override adds on-demand at the end)."""
    return np.full(len(b.ids), SPOT)


def on_demand_only(b) -> np.ndarray:
    """Always ON_DEMAND."""
    return np.full(len(b.ids), ON_DEMAND)


POLICIES = {f.__name__: f for f in (greedy_seed, uniform_progress, spot_only, on_demand_only)}
