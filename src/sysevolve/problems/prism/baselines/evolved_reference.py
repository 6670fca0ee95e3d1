"""Baseline: a re-implementation of the evolved program of the ADRS release.

Written from its description (sysevolve spec `prism`, section 2): a greedy that looks at the
global maximum KV-cache pressure each placement would produce, then a local search of single
moves and pairwise swaps that lower that maximum.
"""

from dataclasses import dataclass

GPU_MEM_SIZE = 80  # GB per GPU


@dataclass
class Model:
    model_name: str   # unique within an instance
    model_size: int   # GB of weights
    req_rate: int     # requests per second
    slo: int          # latency objective; demand is weighted by req_rate / slo
    cur_gpu_id: int


# EVOLVE-BLOCK-START
EPS = 1e-9


def _kvpr(weight, free):
    return weight / free if free > 0 else float("inf")


def _weight(models):
    # Always summed afresh in list order, so a predicted KVPR is exactly the one a move
    # produces (incremental updates drift and can make the local search cycle).
    return sum(m.req_rate / m.slo for m in models)


class _State:
    """Per-GPU model lists, weights (sum of req_rate / slo), free memory and KVPR."""

    def __init__(self, gpu_num):
        self.lists = [[] for _ in range(gpu_num)]
        self.weight = [0.0] * gpu_num
        self.free = [GPU_MEM_SIZE] * gpu_num
        self.value = [0.0] * gpu_num
        self.ranked = [(0.0, g) for g in range(gpu_num)]  # (KVPR, id), highest first

    def kvpr(self, g):
        return self.value[g]

    def gmax_with(self, changes):
        """The maximum KVPR over all GPUs if GPU g had the model list changes[g]."""
        worst = float("-inf")
        for new in changes.values():
            worst = max(worst, _kvpr(_weight(new), GPU_MEM_SIZE - sum(m.model_size for m in new)))
        for value, g in self.ranked:  # the highest GPU left unchanged
            if g not in changes:
                return max(worst, value)
        return worst

    def others_below(self, changed, cur):
        """True if every GPU not in `changed` has KVPR below `cur` (else no change can help)."""
        for value, g in self.ranked:
            if g not in changed:
                return value < cur
        return True

    def lowers(self, changes, cur):
        """gmax_with(changes) < cur, given others_below(changes, cur)."""
        return all(_kvpr(_weight(new), GPU_MEM_SIZE - sum(m.model_size for m in new)) < cur
                   for new in changes.values())

    def set(self, g, models):
        self.lists[g] = models
        self.weight[g] = _weight(models)
        self.free[g] = GPU_MEM_SIZE - sum(m.model_size for m in models)
        self.value[g] = _kvpr(self.weight[g], self.free[g])
        self.ranked = sorted(((v, i) for i, v in enumerate(self.value)), reverse=True)


def _without(models, m):
    return [x for x in models if x is not m]


def _greedy(gpu_num, models, state):
    """Each model to the GPU whose use gives the lowest global maximum KVPR."""
    for m in sorted(models, key=lambda m: (m.req_rate / m.slo, m.model_size), reverse=True):
        best, best_value = None, None
        for g in range(gpu_num):
            if m.model_size > state.free[g]:
                continue
            value = state.gmax_with({g: state.lists[g] + [m]})
            if (best is None or value < best_value - EPS
                    or (abs(value - best_value) <= EPS and state.free[g] > state.free[best])):
                best, best_value = g, value
        if best is None:
            raise ValueError(f"model {m.model_name} ({m.model_size} GB) fits on no GPU")
        state.set(best, state.lists[best] + [m])


def _improving_move(state, cur):
    """Applies the first single move that lowers the maximum below `cur`; True if one did."""
    gpu_num = len(state.lists)
    for src in sorted(range(gpu_num), key=state.kvpr, reverse=True):
        for m in list(state.lists[src]):
            for dst in range(gpu_num):
                if dst == src or state.free[dst] < m.model_size:
                    continue
                if not state.others_below((src, dst), cur):
                    continue
                change = {src: _without(state.lists[src], m), dst: state.lists[dst] + [m]}
                if state.lowers(change, cur):
                    for g, new in change.items():
                        state.set(g, new)
                    return True
    return False


def _improving_swap(state, cur):
    """Applies the first pairwise swap that lowers the maximum below `cur`; True if one did."""
    gpu_num = len(state.lists)
    for g1 in range(gpu_num):
        for g2 in range(g1 + 1, gpu_num):
            if not state.others_below((g1, g2), cur):
                continue
            for m1 in state.lists[g1]:
                for m2 in state.lists[g2]:
                    ds = m2.model_size - m1.model_size
                    if state.free[g1] - ds < 0 or state.free[g2] + ds < 0:
                        continue
                    change = {g1: _without(state.lists[g1], m1) + [m2],
                              g2: _without(state.lists[g2], m2) + [m1]}
                    if state.lowers(change, cur):
                        for g, new in change.items():
                            state.set(g, new)
                        return True
    return False


def compute_model_placement(gpu_num, models):
    """Look-ahead greedy on the global maximum KVPR, then moves and swaps until none helps."""
    state = _State(gpu_num)
    _greedy(gpu_num, models, state)
    while True:
        cur = state.gmax_with({})
        if not (_improving_move(state, cur) or _improving_swap(state, cur)):
            break
    return {g: state.lists[g] for g in range(gpu_num)}
# EVOLVE-BLOCK-END
