"""Workloads of the txn_scheduling problem: the real-file loader (spec 4.1), the synthetic
generators (4.2, draw for draw) and the workloads of each split (4.3).

Imported by plain name from the problem folder, like `txn_model`.
"""

from __future__ import annotations

import json
import random
from bisect import bisect_left
from itertools import accumulate
from pathlib import Path

from txn_model import Workload, make_workload

HOLDOUT_SEEDS = (1, 2, 3)


def load_real(path: str | Path) -> list[Workload]:
    """Loads workloads.json: keys WORKLOAD_<k>, each a JSON string of {"txn<i>": "..."}."""
    with open(path, encoding="utf-8") as f:
        outer = json.load(f)
    workloads = []
    for name, encoded in outer.items():
        inner = json.loads(encoded)
        texts = [inner[f"txn{i}"] for i in range(len(inner))]
        workloads.append(make_workload("w" + name.rsplit("_", 1)[-1].lower(), texts))
    return workloads


def w1_like(seed: int, n: int = 100, ops: int = 16, hot: int = 4, kmax: int = 6000,
            s: float = 1.6, p_read: float = 0.445, jitter: float = 0.1) -> list[str]:
    """Hot keys 1..hot in every transaction plus Zipf-like cold keys, at anchored positions."""
    rng = random.Random(seed)
    cold = range(hot + 1, kmax + 1)
    cum = list(accumulate((k - hot) ** -s for k in cold))
    anchor: dict[int, float] = {}
    texts = []
    for _ in range(n):
        chosen = list(range(1, hot + 1))
        while len(chosen) < ops:
            key = cold[bisect_left(cum, rng.random() * cum[-1])]
            if key not in chosen:
                chosen.append(key)
        for key in chosen:
            if key not in anchor:
                anchor[key] = rng.random()
        place = {key: anchor[key] + rng.gauss(0, jitter) for key in chosen}
        chosen.sort(key=place.__getitem__)
        texts.append(" ".join(f"{'r' if rng.random() < p_read else 'w'}-{key}" for key in chosen))
    return texts


def w2_like(seed: int, n_long: int = 50, n_short: int = 50, groups: int = 4, width: int = 10,
            pad: int = 18) -> list[str]:
    """Long read-read-write transactions padded with no-ops, then short read-write pairs."""
    rng = random.Random(seed)
    texts = []
    for i in range(n_long + n_short):
        a = rng.randint(1, groups)
        b = rng.randint(width * a + 1, width * a + width)
        if i < n_long:
            texts.append(" ".join([f"r-{a}", f"r-{b}", f"w-{b}"] + ["*"] * pad))
        else:
            texts.append(f"r-{a} w-{a} r-{b} w-{b} *")
    return texts


def w3_like(seed: int, n: int = 100, pad: int = 7) -> list[str]:
    """Read x, no-ops, write y; the two halves swap the key ranges of x and y."""
    rng = random.Random(seed)
    texts = []
    for i in range(n):
        if i < n / 2:
            x, y = rng.randint(1, 5), rng.randint(6, 10)
        else:
            x, y = rng.randint(6, 10), rng.randint(1, 5)
        texts.append(" ".join([f"r-{x}"] + ["*"] * pad + [f"w-{y}"]))
    return texts


GENERATORS = {"w1": w1_like, "w2": w2_like, "w3": w3_like}


def generated(seed: int, suffix: str = "") -> list[Workload]:
    """The three generated workloads of one seed, named w1, w2, w3 (plus `suffix`)."""
    return [make_workload(kind + suffix, gen(seed)) for kind, gen in GENERATORS.items()]


def split_workloads(split: str, data_file: str | Path | None = None) -> list[Workload]:
    """Workloads of a split: search = real file if given else seed 0; holdout = seeds 1-3."""
    if split == "search":
        return load_real(data_file) if data_file is not None else generated(0)
    if split == "holdout":
        return [
            make_workload(f"{kind}_s{seed}", gen(seed))
            for kind, gen in GENERATORS.items()
            for seed in HOLDOUT_SEEDS
        ]
    raise ValueError(f"unknown split {split!r}; expected 'search' or 'holdout'")
