"""Cost model of transaction scheduling: parsing (spec 3.1) and lock-timing placement (3.2).

The model exists twice on purpose. `makespan` replays a schedule exactly as the spec states it
(per-key entry lists with stable insertion) and is what scores are computed with. `Timeline`
keeps three numbers per key and prices appending a transaction without replaying the prefix;
greedy searches (and the candidate's `workload.cost`) use it. Tests check that both agree.

This module is imported by plain name from the problem folder (it is not a package module).
"""

from __future__ import annotations

import operator
from bisect import bisect_right
from typing import NamedTuple, Sequence

Op = tuple  # (op_type, key, pos): "r" or "w", key as a string, 1-based token index


class Workload(NamedTuple):
    """A batch of parsed transactions: `txns[i]` is a tuple of ops, `lens[i]` its token count."""

    name: str
    txns: tuple
    lens: tuple


def parse_txn(text: str) -> tuple[tuple[Op, ...], int]:
    """Parses one transaction string into (ops, length); no-ops count in length only."""
    tokens = text.split(" ")
    ops = []
    for pos, token in enumerate(tokens, start=1):
        if token == "*":
            continue
        op_type, dash, key = token.partition("-")
        if op_type not in ("r", "w") or not dash or not key:
            raise ValueError(f"malformed token {token!r} at position {pos} of transaction {text!r}")
        ops.append((op_type, key, pos))
    return tuple(ops), len(tokens)


def make_workload(name: str, texts: Sequence[str]) -> Workload:
    """Parses transaction strings (index order) into a Workload."""
    parsed = [parse_txn(text) for text in texts]
    return Workload(name, tuple(ops for ops, _ in parsed), tuple(n for _, n in parsed))


def makespan(txns: Sequence, lens: Sequence[int], schedule: Sequence[int]) -> int:
    """Makespan of `schedule` (a full or partial order of indices), replayed from scratch."""
    times: dict[str, list[int]] = {}  # key -> entry times, non-decreasing
    types: dict[str, list[str]] = {}  # key -> entry types, parallel to `times`
    total = 0
    for t in schedule:
        ops = txns[t]
        start = 1
        for op_type, key, pos in ops:
            key_times = times.get(key)
            if not key_times:
                continue
            key_types = types[key]
            if op_type == "w" or key_types[-1] == "w":
                required = key_times[-1] + 1
            else:
                required = 0  # only reads so far: shared locks
                for j in range(len(key_types) - 1, -1, -1):
                    if key_types[j] == "w":
                        required = key_times[j] + 1
                        break
            start = max(start, required - pos + 1)
        total = max(total, start + lens[t] - 1)
        for op_type, key, pos in ops:
            when = start + pos - 1
            key_times = times.setdefault(key, [])
            at = bisect_right(key_times, when)
            key_times.insert(at, when)
            types.setdefault(key, []).insert(at, op_type)
    return total


class Timeline:
    """Incremental form of the model: transactions placed so far, summarised per key.

    Per key it keeps [time of the last entry, type of the last entry, time of the latest write
    or -1], where "last" is the final entry of the spec's stably sorted list. That is all the
    placement rule ever reads, so pricing or adding a transaction costs O(its ops).
    """

    __slots__ = ("txns", "lens", "keys", "makespan")

    def __init__(self, txns: Sequence, lens: Sequence[int]):
        self.txns = txns
        self.lens = lens
        self.keys: dict[str, list] = {}
        self.makespan = 0

    def start_of(self, t: int) -> int:
        """Start time transaction `t` would get if appended now."""
        start = 1
        keys = self.keys
        for op_type, key, pos in self.txns[t]:
            state = keys.get(key)
            if state is None:
                continue
            if op_type == "w" or state[1] == "w":
                required = state[0] + 1
            else:
                required = state[2] + 1  # 0 when the key has only reads
            if required - pos + 1 > start:
                start = required - pos + 1
        return start

    def cost_with(self, t: int) -> int:
        """Makespan of the placed transactions followed by `t` (nothing is changed)."""
        return max(self.makespan, self.start_of(t) + self.lens[t] - 1)

    def add(self, t: int) -> None:
        """Appends transaction `t`."""
        start = self.start_of(t)
        for op_type, key, pos in self.txns[t]:
            when = start + pos - 1
            state = self.keys.get(key)
            if state is None:
                self.keys[key] = [when, op_type, when if op_type == "w" else -1]
                continue
            if when >= state[0]:  # stable insertion: it lands after every entry <= when
                state[0] = when
                state[1] = op_type
            if op_type == "w" and when > state[2]:
                state[2] = when
        self.makespan = max(self.makespan, start + self.lens[t] - 1)


class PrefixCost:
    """`cost(seq)` for candidates: exact, and fast when calls share the prefix seq[:-1].

    It keeps a Timeline for the last prefix it saw and extends it when the next call's prefix
    starts with it (the greedy pattern `cost(sequence + [t])`); otherwise it rebuilds.
    """

    def __init__(self, txns: Sequence, lens: Sequence[int]):
        self._txns = txns
        self._lens = lens
        self._prefix: list[int] = []
        self._timeline = Timeline(txns, lens)

    def _index(self, t) -> int:
        t = operator.index(t)
        if not 0 <= t < len(self._txns):
            raise IndexError(f"transaction index {t} out of range 0..{len(self._txns) - 1}")
        return t

    def __call__(self, seq: Sequence[int]) -> int:
        seq = list(seq)
        if not seq:
            return 0
        head, last = seq[:-1], self._index(seq[-1])
        done = len(self._prefix)
        if len(head) < done or head[:done] != self._prefix:
            self._prefix, self._timeline, done = [], Timeline(self._txns, self._lens), 0
        for t in head[done:]:
            t = self._index(t)
            self._timeline.add(t)
            self._prefix.append(t)
        return self._timeline.cost_with(last)


def smf_full_order(txns: Sequence, lens: Sequence[int]) -> list[int]:
    """SMF with every candidate considered: start at 0, append the cheapest, ties to lowest index."""
    n = len(txns)
    if n == 0:
        return []
    timeline = Timeline(txns, lens)
    timeline.add(0)
    order, remaining = [0], list(range(1, n))
    while remaining:
        best = min(remaining, key=timeline.cost_with)  # first minimum = lowest index
        timeline.add(best)
        order.append(best)
        remaining.remove(best)
    return order
