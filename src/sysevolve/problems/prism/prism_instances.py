"""Prism instances: the ADRS generator and the seeds of each split.

An instance is a number of 80 GB GPUs and twice as many models, each with a size (GB), a
request rate and an SLO. Only the seeds of the requested split are ever generated.

ADRS drew the instances with numpy's legacy generator (`numpy.random.seed(seed)` then
`randint`). The same draws come from Python's own Mersenne Twister put in the state numpy
seeds, with numpy's masked rejection sampling on top: bit-identical (the tests compare with
numpy), about ten times faster, and the evaluator does not pay numpy's import time.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

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
    """The ADRS instances of `seed`, drawn in the original order (gpu_num, then per model
    size, rate, slo) exactly as numpy.random.RandomState(seed).randint would draw them."""
    key = (seed, num_tests)
    if key not in _CACHE:
        randint = legacy_randint(seed)
        instances = []
        for index in range(num_tests):
            gpu_num = randint(5, 10)
            sizes, rates, slos = [], [], []
            for _ in range(2 * gpu_num):
                sizes.append(randint(10, 30))
                rates.append(randint(1, 10))
                slos.append(randint(5, 10))
            instances.append(
                Instance(seed, index, gpu_num, tuple(sizes), tuple(rates), tuple(slos)))
        _CACHE[key] = tuple(instances)
    return _CACHE[key]


def legacy_randint(seed: int):
    """randint(low, high) drawing what numpy.random.RandomState(seed).randint(low, high) draws."""
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed {seed} outside [0, 2**32)")
    state = [seed]
    for i in range(1, 624):  # MT19937 init_genrand, as numpy's legacy integer seeding
        prev = state[-1]
        state.append((1812433253 * (prev ^ (prev >> 30)) + i) & 0xFFFFFFFF)
    mt = random.Random()
    mt.setstate((3, tuple(state) + (624,), None))  # 624: regenerate before the first output
    bits = mt.getrandbits  # getrandbits(32) is one raw 32-bit Mersenne Twister output

    def randint(low: int, high: int) -> int:
        span = high - low - 1
        if not 0 <= span < 2**32 - 1:
            raise ValueError(f"randint({low}, {high}): range not supported")
        if span == 0:
            return low  # numpy draws nothing for a single value
        mask = (1 << span.bit_length()) - 1
        while True:  # numpy's masked rejection sampling on 32-bit words
            value = bits(32) & mask
            if value <= span:
                return low + value

    return randint


def split_seeds(split: str) -> tuple[int, ...]:
    """The generator seeds of a split; ValueError for an unknown split."""
    if split not in SPLIT_SEEDS:
        raise ValueError(f"unknown split {split!r} (known: {', '.join(SPLIT_SEEDS)})")
    return SPLIT_SEEDS[split]
