"""Baseline: always on-demand (the most expensive safe policy)."""
# EVOLVE-BLOCK-START
from cbl_api import ClusterType, Strategy


class OnDemandOnlyStrategy(Strategy):
    NAME = "on_demand_only"

    def _step(self, last_cluster_type: ClusterType, has_spot: bool) -> ClusterType:
        return ClusterType.ON_DEMAND
# EVOLVE-BLOCK-END
