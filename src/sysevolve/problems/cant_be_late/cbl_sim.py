"""The tick simulator of spec 3.2: billing, preemption, progress, restarts and the safety override.

`simulate` advances every run of an evaluation together, one tick at a time, with numpy over the
runs still active (lockstep): one policy call per tick returns the actions of all of them.
`simulate_run` is the same semantics for one run in plain Python, the reference the vectorised
version is tested against.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

NONE, SPOT, ON_DEMAND = 0, 1, 2
GAP_S = 600.0
OD_PRICE = 3.06  # $/h
SPOT_PRICE = 3.06 / (3.06 / 0.9731)  # $/h, computed as ADRS computes it
PRICES = (0.0, SPOT_PRICE, OD_PRICE)
SEMANTICS = ("hardened", "adrs")
PENDING_EPS = 1e-3  # pending overhead below this is zero
DONE_EPS = 1e-8  # work left at or below this is done
ZONE_EPS = 1e-3  # the override acts only while more work than this is left
LATE_EPS = 1e-6  # a finish later than deadline + this is late


def tick_cost(kind: int, gap: float = GAP_S) -> float:
    """Dollars billed for one tick of `kind`."""
    return PRICES[kind] * gap / 3600


@dataclass(frozen=True)
class Batch:
    """The observations of the active runs at one tick (what the policy may see), as arrays."""

    tick: int
    elapsed: float
    gap: float
    ids: np.ndarray  # run index in the evaluation
    has_spot: np.ndarray  # bool
    last: np.ndarray  # type that ran during the previous tick
    current: np.ndarray  # type running now, after preemption
    work_done: np.ndarray  # seconds
    pending: np.ndarray  # remaining restart overhead, seconds
    duration: np.ndarray  # seconds
    deadline: np.ndarray
    overhead: np.ndarray

    def part(self, rows: slice) -> Batch:
        """The same tick for a slice of the active runs (views, no copies)."""
        return Batch(self.tick, self.elapsed, self.gap, *(getattr(self, f)[rows] for f in _COLUMNS))


_COLUMNS = ("ids", "has_spot", "last", "current", "work_done", "pending", "duration", "deadline",
            "overhead")


@dataclass(frozen=True)
class Result:
    """Per run: cost ($), finish time (s) and ticks spent NONE / SPOT / ON_DEMAND."""

    cost: np.ndarray
    finish: np.ndarray
    ticks: np.ndarray  # (runs, 3)

    def late(self, deadline: np.ndarray) -> np.ndarray:
        return self.finish > deadline + LATE_EPS

    def part(self, rows: slice) -> Result:
        return Result(self.cost[rows], self.finish[rows], self.ticks[rows])


def check_config(traces: np.ndarray, duration, deadline, overhead, gap: float = GAP_S) -> None:
    """Raises ValueError for an infeasible job (D + d > T) or a trace shorter than the deadline."""
    bad = np.flatnonzero(np.asarray(duration) + np.asarray(overhead) > np.asarray(deadline))
    if bad.size:
        raise ValueError(f"run {bad[0]}: duration + restart overhead exceeds the deadline")
    needed = int(np.max(np.ceil(np.asarray(deadline) / gap)))
    if traces.shape[1] < needed:
        raise ValueError(f"traces have {traces.shape[1]} ticks, the deadline needs {needed}")


def simulate(traces, duration, deadline, overhead, policy, semantics: str = "hardened",
             gap: float = GAP_S) -> Result:
    """Runs every row of `traces` (1 = spot unavailable) to completion; `policy(Batch)` -> codes."""
    if semantics not in SEMANTICS:
        raise ValueError(f"unknown semantics {semantics!r} (known: {', '.join(SEMANTICS)})")
    traces = np.asarray(traces)
    duration, deadline, overhead = (np.asarray(a, dtype=float) for a in (duration, deadline, overhead))
    check_config(traces, duration, deadline, overhead, gap)
    runs, length = traces.shape
    fee = np.array([tick_cost(k, gap) for k in (NONE, SPOT, ON_DEMAND)])
    out_cost, out_finish = np.zeros(runs), np.full(runs, np.nan)
    out_ticks = np.zeros((runs, 3), dtype=np.int64)

    ids = np.arange(runs)
    avail = np.ascontiguousarray((traces == 0).T)  # (tick, run): fixed; rows gathered by ids
    D, T, d = duration, deadline, overhead
    prev = np.zeros(runs, dtype=np.int8)
    work, pending, cost = np.zeros(runs), np.zeros(runs), np.zeros(runs)
    ticks = np.zeros((runs, 3), dtype=np.int64)
    for k in range(length):
        has_spot = avail[k][ids]
        cost += fee[prev]
        current = np.where((prev == SPOT) & ~has_spot, NONE, prev).astype(np.int8)
        running = prev != NONE
        useful = np.where(running, np.maximum(gap - pending, 0.0), 0.0)
        consumed = gap - useful
        pending = np.where(running, pending - consumed, pending)
        pending[running & (pending < PENDING_EPS)] = 0.0
        useful = np.minimum(useful, D - work)
        work = work + useful

        done = D - work <= DONE_EPS
        if done.any():
            gone = ids[done]
            out_cost[gone] = cost[done]
            out_finish[gone] = (k - 1) * gap + consumed[done] + useful[done]
            out_ticks[gone] = ticks[done]
            keep = ~done
            ids, D, T, d = ids[keep], D[keep], T[keep], d[keep]
            prev, current, has_spot = prev[keep], current[keep], has_spot[keep]
            work, pending, cost, ticks = work[keep], pending[keep], cost[keep], ticks[keep]
            if not ids.size:
                break

        batch = Batch(k, k * gap, gap, ids, has_spot, prev, current, work, pending, D, T, d)
        request = _checked(policy(batch), ids.size, k)

        rem_time = np.floor((T - k * gap) / gap) * gap
        need = np.ceil((D - work + d) / gap) * gap
        zone = (D - work > ZONE_EPS) & (need >= rem_time)
        if zone.any():
            spot_kept = prev if semantics == "adrs" else current
            keep_spot = (spot_kept == SPOT) & (pending < PENDING_EPS)
            request = np.where(zone, np.where(keep_spot, SPOT, ON_DEMAND), request)
        request = np.where((request == SPOT) & ~has_spot, NONE, request).astype(np.int8)
        restart = (request != NONE) & (request != current)
        pending = np.where(restart, d, pending)
        ticks[np.arange(ids.size), request] += 1
        prev = request
    if ids.size:
        raise RuntimeError(f"{ids.size} runs did not finish within the {length}-tick traces")
    return Result(out_cost, out_finish, out_ticks)


def _checked(codes, n: int, tick: int) -> np.ndarray:
    codes = np.asarray(codes)
    if codes.shape != (n,) or codes.dtype.kind not in "iub":
        raise ValueError(f"tick {tick}: the policy returned {codes.dtype} {codes.shape}, "
                         f"expected {n} action codes")
    if n and (codes.min() < NONE or codes.max() > ON_DEMAND):
        raise ValueError(f"tick {tick}: action code outside 0..2")
    return codes.astype(np.int8)


def simulate_run(trace, duration: float, deadline: float, overhead: float, step,
                 semantics: str = "hardened", gap: float = GAP_S) -> tuple[float, float]:
    """One run in plain Python; `step(obs: dict) -> code`. Returns (cost, finish time)."""
    prev, work, pending, cost = NONE, 0.0, 0.0, 0.0
    for k, value in enumerate(trace):
        has_spot = value == 0
        cost += tick_cost(prev, gap)
        current = NONE if prev == SPOT and not has_spot else prev
        if prev != NONE:
            useful = max(gap - pending, 0.0)
            consumed = gap - useful
            pending -= consumed
            if pending < PENDING_EPS:
                pending = 0.0
            useful = min(useful, duration - work)
            work += useful
            if duration - work <= DONE_EPS:
                return cost, (k - 1) * gap + consumed + useful
        obs = dict(tick=k, elapsed=k * gap, gap=gap, has_spot=has_spot, last=prev,
                   current=current, work_done=work, pending=pending, duration=duration,
                   deadline=deadline, overhead=overhead)
        request = step(obs)
        rem_time = math.floor((deadline - k * gap) / gap) * gap
        need = math.ceil((duration - work + overhead) / gap) * gap
        if duration - work > ZONE_EPS and need >= rem_time:
            spot_kept = prev if semantics == "adrs" else current
            request = SPOT if spot_kept == SPOT and pending < PENDING_EPS else ON_DEMAND
        if request == SPOT and not has_spot:
            request = NONE
        if request != NONE and request != current:
            pending = overhead
        prev = request
    raise RuntimeError(f"the run did not finish within the {len(trace)}-tick trace")
