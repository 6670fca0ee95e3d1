"""MoE expert-parallelism load balancer: DeepSeek's hierarchical EPLB policy (numpy port).

`rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus)` receives the token
count of every (layer, logical expert) in the last window and returns a placement of replicas on
physical slots (slot s is on GPU s // (num_replicas // num_gpus)). The harness scores the
per-GPU balance of that placement on the next window, and the time the call takes.
"""

# EVOLVE-BLOCK-START
import numpy as np


def balanced_packing(weight, num_packs):
    """Packs the n items of every row into `num_packs` packs of exactly n / num_packs items.

    Heaviest item first (ties: lower index), each into the lightest pack that still has room
    (ties: lower pack). Returns (pack, rank), both [rows, n]: the pack of every item and its
    arrival rank inside the pack.
    """
    rows, n = weight.shape
    per_pack = n // num_packs
    if per_pack == 1:
        pack = np.tile(np.arange(n), (rows, 1))
        return pack, np.zeros_like(pack)
    order = np.argsort(-weight, axis=1, kind="stable")
    row = np.arange(rows)
    loads = np.zeros((rows, num_packs))
    filled = np.zeros((rows, num_packs), dtype=np.int64)
    pack = np.empty((rows, n), dtype=np.int64)
    rank = np.empty((rows, n), dtype=np.int64)
    for j in range(n):  # the greedy is sequential in the items, independent across rows
        item = order[:, j]
        chosen = np.where(filled < per_pack, loads, np.inf).argmin(axis=1)
        pack[row, item] = chosen
        rank[row, item] = filled[row, chosen]
        loads[row, chosen] += weight[row, item]
        filled[row, chosen] += 1
    return pack, rank


def replicate(weight, num_phy):
    """Gives each of the n items of every row one replica, then each extra replica to the item
    with the largest load per replica (ties: lower index).

    Returns (phy2item [rows, num_phy], rank [rows, num_phy], count [rows, n]); replica j < n
    is item j, replica n + t is the item chosen at step t, its rank the item's count before.
    """
    rows, n = weight.shape
    row = np.arange(rows)
    phy2item = np.empty((rows, num_phy), dtype=np.int64)
    phy2item[:, :n] = np.arange(n)
    rank = np.zeros((rows, num_phy), dtype=np.int64)
    count = np.ones((rows, n), dtype=np.int64)
    for t in range(n, num_phy):
        item = (weight / count).argmax(axis=1)
        phy2item[:, t] = item
        rank[:, t] = count[row, item]
        count[row, item] += 1
    return phy2item, rank, count


def rebalance_hierarchical(weight, num_phy, num_groups, num_nodes, num_gpus):
    """Groups to nodes, replicas inside each node, replicas to the node's GPUs."""
    layers, experts = weight.shape
    group_size = experts // num_groups
    groups_per_node = num_groups // num_nodes
    experts_per_node = experts // num_nodes
    phy_per_node = num_phy // num_nodes
    phy_per_gpu = num_phy // num_gpus

    # 1. Pack expert groups onto nodes; number the experts node by node ("mlog" order).
    group_load = weight.reshape(layers, num_groups, group_size).sum(axis=2)
    group_pack, group_rank = balanced_packing(group_load, num_nodes)
    first = (group_pack * groups_per_node + group_rank) * group_size
    log2mlog = (first[:, :, None] + np.arange(group_size)).reshape(layers, experts)
    mlog2log = np.argsort(log2mlog, axis=1)

    # 2. Replicate the experts of each node (one row per (layer, node)) to its slots.
    node_weight = np.take_along_axis(weight, mlog2log, axis=1).reshape(-1, experts_per_node)
    phy2mlog, phy_rank, mlog_count = replicate(node_weight, phy_per_node)

    # 3. Pack each node's replicas onto its GPUs by load per replica.
    phy_load = np.take_along_axis(node_weight / mlog_count, phy2mlog, axis=1)
    gpu, gpu_rank = balanced_packing(phy_load, num_gpus // num_nodes)
    node = np.arange(layers * num_nodes) % num_nodes
    slot = (gpu * phy_per_gpu + gpu_rank + (node * phy_per_node)[:, None]).reshape(layers, num_phy)
    mlog = (phy2mlog + (node * experts_per_node)[:, None]).reshape(layers, num_phy)
    logical = np.take_along_axis(mlog2log, mlog, axis=1)

    phy2log = np.empty((layers, num_phy), dtype=np.int64)
    np.put_along_axis(phy2log, slot, logical, axis=1)
    logcnt = np.take_along_axis(mlog_count.reshape(layers, experts), log2mlog, axis=1)
    log2phy = np.full((layers, experts, num_phy - experts + 1), -1, dtype=np.int64)
    log2phy[np.arange(layers)[:, None], logical, phy_rank.reshape(layers, num_phy)] = slot
    return phy2log, log2phy, logcnt


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    """Returns (phy2log [L, R], log2phy [L, E, R - E + 1], logcnt [L, E]) for weight [L, E].

    Hierarchical policy when the expert groups divide evenly over the nodes, otherwise the
    same procedure with one group and one node (the global policy).
    """
    weight = np.asarray(weight, dtype=np.int64)
    if num_groups % num_nodes == 0:
        return rebalance_hierarchical(weight, num_replicas, num_groups, num_nodes, num_gpus)
    return rebalance_hierarchical(weight, num_replicas, 1, 1, num_gpus)
# EVOLVE-BLOCK-END
