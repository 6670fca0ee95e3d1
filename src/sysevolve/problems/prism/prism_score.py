"""Scoring of placements: KV-cache pressure, validation, the pooled lower bound.

A placement arrives from the candidate's process already encoded (see prism_runner):
a list of (key, value type, items) with items as (given name, model_name, size, rate, slo).
The hardened path validates it against the evaluator's own instance and scores with the
evaluator's own numbers; the ADRS path scores the returned fields as the original did.
"""

from __future__ import annotations

import math

from prism_instances import GPU_MEM_SIZE, Instance

FULL_GPU_KVPR = 1e6  # a GPU with no KV memory left (ADRS constant)


def gpu_kvpr(weight: float, used: float) -> float:
    """KVPR of one GPU: SLO-weighted demand over free memory; 1e6 when no memory is left."""
    free = GPU_MEM_SIZE - used
    return weight / free if free > 0 else FULL_GPU_KVPR


def lower_bound(inst: Instance) -> float:
    """max KVPR >= pooled demand / pooled free memory, for every placement."""
    weight = sum(r / s for r, s in zip(inst.rates, inst.slos))
    return weight / (GPU_MEM_SIZE * inst.gpu_num - sum(inst.sizes))


class PlacementError(ValueError):
    """An invalid placement; the message is one line."""


def validate(encoded, inst: Instance) -> tuple[list[list[int]], list[str]]:
    """(model indices per GPU, tampering notes) of a valid placement; PlacementError otherwise."""
    if encoded["type"] != "dict":
        raise PlacementError(
            f"returned {encoded['type']}, expected a dict {{gpu_id: [Model, ...]}}")
    index = {name: j for j, name in enumerate(inst.names)}
    where: dict[int, int] = {}
    gpus: list[list[int]] = []
    tampered: list[str] = []
    for key, vtype, items in encoded["gpus"]:
        if type(key) is not int:
            raise PlacementError(f"GPU key {key} is not an int")
        if not 0 <= key < inst.gpu_num:
            raise PlacementError(f"GPU id {key} outside range({inst.gpu_num})")
        if vtype != "list":
            raise PlacementError(f"GPU {key} maps to a {vtype}, expected a list of models")
        placed = []
        for given, name, size, rate, slo in items:
            ident = given if given is not None else name
            if ident not in index:
                raise PlacementError(f"GPU {key} holds an unknown model {_short(ident)}")
            j = index[ident]
            if j in where:
                raise PlacementError(f"model {ident} is placed twice (GPUs {where[j]} and {key})")
            where[j] = key
            placed.append(j)
            if (name, size, rate, slo) != (ident, inst.sizes[j], inst.rates[j], inst.slos[j]):
                tampered.append(ident)
        used = sum(inst.sizes[j] for j in placed)
        if used > GPU_MEM_SIZE:
            raise PlacementError(
                f"GPU {key} holds {used} GB of models, more than {GPU_MEM_SIZE} GB")
        gpus.append(placed)
    if len(where) != len(index):
        missing = next(n for j, n in enumerate(inst.names) if j not in where)
        raise PlacementError(f"model {missing} is placed on no GPU "
                             f"({len(index) - len(where)} of {len(index)} models missing)")
    return gpus, tampered


def max_kvpr(gpus: list[list[int]], inst: Instance) -> float:
    """The maximum KVPR over the GPUs of a validated placement (an empty GPU counts 0)."""
    worst = 0.0
    for placed in gpus:
        weight = sum(inst.rates[j] / inst.slos[j] for j in placed)
        used = sum(inst.sizes[j] for j in placed)
        worst = max(worst, gpu_kvpr(weight, used))
    return worst


def adrs_max_kvpr(encoded) -> float:
    """The original metric on the returned fields: no validation, non-finite mapped to 0.

    Raises ValueError where the original would have raised (not a dict, non-numeric fields).
    """
    if encoded["type"] != "dict":
        raise PlacementError(f"returned {encoded['type']}")
    worst = -math.inf
    for key, vtype, items in encoded["gpus"]:
        if items is None:
            raise PlacementError(f"GPU {key} maps to a {vtype}")
        fields = [(size, rate, slo) for _, _, size, rate, slo in items]
        if any(v is None for f in fields for v in f):
            raise PlacementError(f"GPU {key} holds an object without numeric fields")
        weight = sum(rate / slo for _, rate, slo in fields)
        worst = max(worst, gpu_kvpr(weight, sum(size for size, _, _ in fields)))
    return worst if math.isfinite(worst) else 0.0


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
