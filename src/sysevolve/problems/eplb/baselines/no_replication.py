"""Baseline: no balancing; slot e holds expert e and the spare slots copy the hottest experts.

Slot s < E holds expert s; the R - E spare slots hold the R - E experts with the largest load
(one extra replica each, in decreasing-load order, ties to the lower index). A floor for balance.
"""

# EVOLVE-BLOCK-START
import numpy as np


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    """Returns (phy2log, log2phy, logcnt) of the identity placement plus the hottest experts."""
    weight = np.asarray(weight)
    layers, experts = weight.shape
    spare = num_replicas - experts
    hottest = np.argsort(-weight, axis=1, kind="stable")[:, :spare]
    phy2log = np.concatenate([np.tile(np.arange(experts), (layers, 1)), hottest], axis=1)
    rows = np.arange(layers)[:, None]
    logcnt = np.ones((layers, experts), dtype=np.int64)
    logcnt[rows, hottest] = 2
    log2phy = np.full((layers, experts, num_replicas - experts + 1), -1, dtype=np.int64)
    log2phy[:, :, 0] = np.arange(experts)
    log2phy[rows, hottest, 1] = experts + np.arange(spare)
    return phy2log, log2phy, logcnt
# EVOLVE-BLOCK-END
