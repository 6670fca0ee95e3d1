"""Placements of the eplb problem: conversion, validation (spec 3.2) and load balance (3.3, 3.6).

A placement of one window is the candidate's triple (phy2log [L, R], log2phy [L, E, X],
logcnt [L, E]). The hardened score derives every load from phy2log alone; log2phy and logcnt are
only checked for consistency with it.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

OUTPUTS = ("phy2log", "log2phy", "logcnt")
_INT64_MAX = np.iinfo(np.int64).max


class Layout(NamedTuple):
    """Physical slots and the cluster they live on (DeepSeek-V3 defaults, spec 1)."""

    num_replicas: int = 288
    num_groups: int = 8
    num_nodes: int = 4
    num_gpus: int = 32


class InvalidPlacement(ValueError):
    """The candidate's output is not a valid placement; the message is one line."""


def materialise(result) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The three outputs as fresh C-contiguous int64 arrays owned by the evaluator.

    Runs inside the timed window, so lazy or array-like outputs pay for their own conversion.
    """
    if not isinstance(result, (tuple, list)) or len(result) != 3:
        raise InvalidPlacement(f"rebalance_experts returned {type(result).__name__}; "
                               "expected a tuple (phy2log, log2phy, logcnt)")
    return tuple(_int_array(name, value) for name, value in zip(OUTPUTS, result))


def _int_array(name: str, value) -> np.ndarray:
    try:
        array = np.array(value, order="C")  # always a copy, never a subclass
    except Exception as exc:  # ragged lists, a failing __array__, ...
        raise InvalidPlacement(f"{name} is not an array: {type(exc).__name__}") from None
    if array.dtype.kind not in "iu":
        raise InvalidPlacement(f"{name} has dtype {array.dtype}; expected integers "
                               "(bool and float ids are rejected)")
    if array.dtype.kind == "u" and array.size and array.max() > _INT64_MAX:
        raise InvalidPlacement(f"{name} holds values beyond the int64 range")
    return array.astype(np.int64, copy=False)


def validate(phy2log, log2phy, logcnt, num_experts: int) -> np.ndarray:
    """Checks a placement (int64 arrays) against spec 3.2; returns the replica counts [L, E]."""
    if phy2log.ndim != 2:
        raise InvalidPlacement(f"phy2log has shape {phy2log.shape}; expected [layers, slots]")
    layers, slots = phy2log.shape
    if logcnt.shape != (layers, num_experts):
        raise InvalidPlacement(f"logcnt has shape {logcnt.shape}; expected {(layers, num_experts)}")
    if log2phy.ndim != 3 or log2phy.shape[:2] != (layers, num_experts):
        raise InvalidPlacement(f"log2phy has shape {log2phy.shape}; "
                               f"expected {(layers, num_experts)} + (max replicas,)")
    _first(phy2log < 0, phy2log >= num_experts, message=lambda l, s: (
        f"layer {l}: slot {s} holds expert {phy2log[l, s]}, outside 0..{num_experts - 1}"))
    rows = np.arange(layers)[:, None]
    counts = np.bincount((rows * num_experts + phy2log).ravel(),
                         minlength=layers * num_experts).reshape(layers, num_experts)
    _first(counts == 0, message=lambda l, e: f"layer {l}: expert {e} is on no slot")
    _first(logcnt != counts, message=lambda l, e: (
        f"layer {l}: logcnt of expert {e} is {logcnt[l, e]} but {counts[l, e]} slot(s) hold it"))
    width, most = log2phy.shape[2], int(counts.max())
    if not most <= width <= slots:
        raise InvalidPlacement(f"log2phy lists {width} slots per expert; expected between the "
                               f"largest replica count {most} and {slots}")
    head, tail = log2phy[:, :, :most], log2phy[:, :, most:]
    _first(tail != -1, message=lambda l, e, k: (
        f"layer {l}: log2phy entry {most + k} of expert {e} is {tail[l, e, k]}; "
        f"entries after its {counts[l, e]} replica(s) must be -1"))
    listed = np.arange(most) < counts[:, :, None]
    _first(~listed & (head != -1), message=lambda l, e, k: (
        f"layer {l}: log2phy entry {k} of expert {e} is {head[l, e, k]}; "
        f"entries after its {counts[l, e]} replica(s) must be -1"))
    slot = head[listed]
    layer_of, expert_of, _ = np.nonzero(listed)
    _first((slot < 0) | (slot >= slots), message=lambda i: (
        f"layer {layer_of[i]}: log2phy of expert {expert_of[i]} lists {slot[i]}, "
        f"not a slot in 0..{slots - 1}"))
    _first(phy2log[layer_of, slot] != expert_of, message=lambda i: (
        f"layer {layer_of[i]}: log2phy of expert {expert_of[i]} lists slot {slot[i]}, "
        f"which holds expert {phy2log[layer_of[i], slot[i]]}"))
    # Every slot holding e is listed for e, and sum(counts) = slots: each slot exactly once.
    times = np.bincount(layer_of * slots + slot, minlength=layers * slots).reshape(layers, slots)
    _first(times != 1, message=lambda l, s: (
        f"layer {l}: log2phy lists slot {s} {times[l, s]} times; expected once"))
    return counts


def _first(*masks, message) -> None:
    """Raises InvalidPlacement naming the first True entry of the union of `masks`."""
    bad = masks[0] if len(masks) == 1 else np.logical_or.reduce(masks)
    if bad.any():
        raise InvalidPlacement(message(*(int(i) for i in np.argwhere(bad)[0])))


def slot_loads(phy2log: np.ndarray, counts: np.ndarray, window: np.ndarray) -> np.ndarray:
    """S[l, s] = W[l, e] / c[l, e] for the expert e in slot s (spec 3.3)."""
    rows = np.arange(phy2log.shape[0])[:, None]
    return window[rows, phy2log] / counts[rows, phy2log]


def balancedness(loads: np.ndarray) -> float:
    """Sum over layers of the mean load over sum over layers of the max load; 0 without load."""
    if not loads.sum() > 0:
        return 0.0
    return float(loads.mean(axis=1).sum() / loads.max(axis=1).sum())


def step_balance(phy2log, counts, window, num_gpus: int) -> tuple[float, float]:
    """(b_gpu, b_slot) of a validated placement on `window`."""
    slots = slot_loads(phy2log, counts, window)
    gpus = slots.reshape(slots.shape[0], num_gpus, -1).sum(axis=2)
    return balancedness(gpus), balancedness(slots)


def adrs_slot_balance(log2phy, logcnt, window, num_replicas: int) -> float:
    """The ADRS evaluator's per-slot balancedness (spec 3.6), faithful to its quirks.

    Nothing is validated. For each (layer, expert) with load > 0 and logcnt > 0, load / logcnt
    goes to the slots log2phy[l, e, :logcnt] as one fancy-index addition: a slot id repeated
    within that list counts once, -1 is the last slot, an id outside -R..R-1 is an IndexError.
    (Vectorised; loads accumulate in float64 where the original used float32, a difference far
    below the golden tolerances.)
    """
    log2phy, logcnt = np.asarray(log2phy), np.asarray(logcnt)
    if log2phy.dtype.kind not in "iu":
        raise IndexError("arrays used as indices must be of integer type")
    layers, experts = window.shape
    counts = logcnt.astype(np.int64)
    active = (window > 0) & (counts > 0)
    listed = active[:, :, None] & (np.arange(log2phy.shape[2]) < counts[:, :, None])
    layer_of, expert_of, _ = np.nonzero(listed)
    slot = log2phy[listed].astype(np.int64)
    if ((slot < -num_replicas) | (slot >= num_replicas)).any():
        raise IndexError(f"index out of bounds for {num_replicas} slots")
    slot %= num_replicas
    key = np.unique((layer_of * experts + expert_of) * num_replicas + slot)  # one add per triple
    pair, slot = np.divmod(key, num_replicas)
    layer_of, expert_of = np.divmod(pair, experts)
    share = window[layer_of, expert_of] / counts[layer_of, expert_of]
    total = np.bincount(layer_of * num_replicas + slot, weights=share,
                        minlength=layers * num_replicas).reshape(layers, num_replicas)
    if total.sum() == 0:
        return 0.0
    return float(total.mean(axis=1).sum() / total.max(axis=1).sum())
