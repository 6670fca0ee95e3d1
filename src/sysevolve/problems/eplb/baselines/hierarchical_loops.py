"""Baseline: the hierarchical policy with plain Python loops over layers and items.

The same algorithm and outputs as `hierarchical.py` (the initial program), written the way
DeepSeek's original is: the greedy loops visit one array element at a time. It is the slow
reference for the paper's speed comparisons; `hierarchical.py` runs each greedy step for all
layers at once.
"""

# EVOLVE-BLOCK-START
import numpy as np


def balanced_packing(weight, num_packs):
    """Per row: heaviest item first into the lightest pack with room; returns (pack, rank)."""
    rows, n = weight.shape
    per_pack = n // num_packs
    pack = np.zeros((rows, n), dtype=np.int64)
    rank = np.zeros((rows, n), dtype=np.int64)
    order = np.argsort(-weight, axis=1, kind="stable").tolist()
    values = weight.tolist()
    for i in range(rows):
        loads = [0.0] * num_packs
        filled = [0] * num_packs
        for item in order[i]:
            chosen = min((p for p in range(num_packs) if filled[p] < per_pack),
                         key=loads.__getitem__)
            pack[i, item] = chosen
            rank[i, item] = filled[chosen]
            loads[chosen] += values[i][item]
            filled[chosen] += 1
    return pack, rank


def replicate(weight, num_phy):
    """Per row: each extra replica to the item with the largest load per replica."""
    rows, n = weight.shape
    phy2item = np.zeros((rows, num_phy), dtype=np.int64)
    rank = np.zeros((rows, num_phy), dtype=np.int64)
    count = np.ones((rows, n), dtype=np.int64)
    phy2item[:, :n] = np.arange(n)
    for i in range(rows):
        for t in range(n, num_phy):
            item = int((weight[i] / count[i]).argmax())
            phy2item[i, t] = item
            rank[i, t] = count[i, item]
            count[i, item] += 1
    return phy2item, rank, count


def rebalance_hierarchical(weight, num_phy, num_groups, num_nodes, num_gpus):
    """Groups to nodes, replicas inside each node, replicas to the node's GPUs."""
    layers, experts = weight.shape
    group_size = experts // num_groups
    groups_per_node = num_groups // num_nodes
    experts_per_node = experts // num_nodes
    phy_per_node = num_phy // num_nodes
    phy_per_gpu = num_phy // num_gpus

    group_pack, group_rank = balanced_packing(
        weight.reshape(layers, num_groups, group_size).sum(axis=2), num_nodes)
    log2mlog = np.zeros((layers, experts), dtype=np.int64)
    for l in range(layers):
        for e in range(experts):
            g = e // group_size
            log2mlog[l, e] = ((group_pack[l, g] * groups_per_node + group_rank[l, g]) * group_size
                              + e % group_size)
    mlog2log = np.zeros_like(log2mlog)
    for l in range(layers):
        for e in range(experts):
            mlog2log[l, log2mlog[l, e]] = e

    node_weight = np.zeros((layers * num_nodes, experts_per_node), dtype=np.int64)
    for l in range(layers):
        for m in range(experts):
            node_weight[l * num_nodes + m // experts_per_node, m % experts_per_node] = \
                weight[l, mlog2log[l, m]]
    phy2mlog, phy_rank, mlog_count = replicate(node_weight, phy_per_node)

    phy_load = np.zeros((layers * num_nodes, phy_per_node))
    for r in range(layers * num_nodes):
        for j in range(phy_per_node):
            item = phy2mlog[r, j]
            phy_load[r, j] = node_weight[r, item] / mlog_count[r, item]
    gpu, gpu_rank = balanced_packing(phy_load, num_gpus // num_nodes)

    phy2log = np.zeros((layers, num_phy), dtype=np.int64)
    log2phy = np.full((layers, experts, num_phy - experts + 1), -1, dtype=np.int64)
    logcnt = np.zeros((layers, experts), dtype=np.int64)
    for r in range(layers * num_nodes):
        l, k = divmod(r, num_nodes)
        for j in range(phy_per_node):
            slot = k * phy_per_node + gpu[r, j] * phy_per_gpu + gpu_rank[r, j]
            e = mlog2log[l, k * experts_per_node + phy2mlog[r, j]]
            phy2log[l, slot] = e
            log2phy[l, e, phy_rank[r, j]] = slot
            logcnt[l, e] += 1
    return phy2log, log2phy, logcnt


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    """Hierarchical policy, or the global one (one group, one node) if groups do not divide."""
    weight = np.asarray(weight, dtype=np.int64)
    if num_groups % num_nodes == 0:
        return rebalance_hierarchical(weight, num_replicas, num_groups, num_nodes, num_gpus)
    return rebalance_hierarchical(weight, num_replicas, 1, 1, num_gpus)
# EVOLVE-BLOCK-END
