"""Prism instances: the ADRS generator (legacy numpy seeding) and the seeds of each split.

An instance is a number of 80 GB GPUs and twice as many models, each with a size (GB), a
request rate and an SLO. Only the seeds of the requested split are ever generated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GPU_MEM_SIZE = 80  # GB per GPU
NUM_TESTS = 50
SPLIT_SEEDS = {"search": (42,), "holdout": (1001, 1002, 1003)}


@dataclass
class Model:
    """A model as the candidate sees it (the evaluator's own copy if the program has none)."""

    model_name: str
    model_size: int
    req_rate: int
    slo: int
    cur_gpu_id: int


@dataclass(frozen=True)
class Instance:
    """One placement problem; model j is named f"model_{j}" and had cur_gpu_id j."""

    seed: int
    index: int
    gpu_num: int
    sizes: tuple[int, ...]
    rates: tuple[int, ...]
    slos: tuple[int, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f"model_{j}" for j in range(len(self.sizes)))

    def models(self, model_class=Model) -> list:
        """Fresh model objects in input order."""
        return [model_class(model_name=f"model_{j}", model_size=s, req_rate=r, slo=o, cur_gpu_id=j)
                for j, (s, r, o) in enumerate(zip(self.sizes, self.rates, self.slos))]


_CACHE: dict[tuple[int, int], tuple[Instance, ...]] = {}


def generate(seed: int, num_tests: int = NUM_TESTS) -> tuple[Instance, ...]:
    """The ADRS instances of `seed`: draws in the original order from a legacy RandomState."""
    key = (seed, num_tests)
    if key not in _CACHE:
        rng = np.random.RandomState(seed)
        randint = rng.randint
        instances = []
        for index in range(num_tests):
            gpu_num = int(randint(5, 10))
            sizes, rates, slos = [], [], []
            for _ in range(2 * gpu_num):  # interleaved draws: size, rate, slo per model
                sizes.append(int(randint(10, 30)))
                rates.append(int(randint(1, 10)))
                slos.append(int(randint(5, 10)))
            instances.append(Instance(seed, index, gpu_num, tuple(sizes), tuple(rates), tuple(slos)))
        _CACHE[key] = tuple(instances)
    return _CACHE[key]


def split_seeds(split: str) -> tuple[int, ...]:
    """The generator seeds of a split; ValueError for an unknown split."""
    if split not in SPLIT_SEEDS:
        raise ValueError(f"unknown split {split!r} (known: {', '.join(SPLIT_SEEDS)})")
    return SPLIT_SEEDS[split]
