"""Baseline: shortest makespan first with every remaining transaction considered."""


# EVOLVE-BLOCK-START
def get_best_schedule(workload, num_seqs):
    """Start with transaction 0; append the cheapest remaining one, ties to the lowest index."""
    sequence = [0]
    remaining = list(range(1, workload.num_txns))
    while remaining:
        # min() keeps the first minimum and `remaining` stays sorted: ties go to the lowest index.
        best = min(remaining, key=lambda t: workload.cost(sequence + [t]))
        sequence.append(best)
        remaining.remove(best)
    return sequence
# EVOLVE-BLOCK-END
