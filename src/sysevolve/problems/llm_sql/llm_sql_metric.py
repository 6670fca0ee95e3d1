"""The prefix-cache hit metric (spec 3.3): exact, deterministic, independent of row order.

ADRS inserted each row's prompt into a character trie and counted, for every row, its longest
common prefix with any earlier row. That total equals sum(len) minus the number of distinct
non-empty prefixes, which does not depend on the row order; it is computed here as the sum of
the longest common prefixes of neighbours in code-point order.
"""

from __future__ import annotations


def common_prefix_len(a: str, b: str) -> int:
    """Length of the longest common prefix of `a` and `b` (binary search on C-level slices)."""
    hi = min(len(a), len(b))
    if a[:hi] == b[:hi]:
        return hi
    lo = 0  # invariant: a[:lo] == b[:lo] and a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid
    return lo


def prefix_hits(prompts) -> tuple[int, int]:
    """(hits, total characters) of a collection of prompt strings."""
    ordered = sorted(prompts)
    total = sum(map(len, ordered))
    hits = sum(common_prefix_len(ordered[i - 1], ordered[i]) for i in range(1, len(ordered)))
    return hits, total


def hit_rate(rows) -> float:
    """Fraction of prompt characters served from the prefix cache; a row's prompt is its
    cells concatenated without separator. 0.0 for an empty table."""
    hits, total = prefix_hits("".join(row) for row in rows)
    return hits / total if total else 0.0
