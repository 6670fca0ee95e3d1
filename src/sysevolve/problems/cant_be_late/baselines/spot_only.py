"""Baseline: always request spot (idle while unavailable; the safety override adds on-demand)."""
# EVOLVE-BLOCK-START
from cbl_api import ClusterType, Strategy


class SpotOnlyStrategy(Strategy):
    NAME = "spot_only"

    def _step(self, last_cluster_type: ClusterType, has_spot: bool) -> ClusterType:
        return ClusterType.SPOT
# EVOLVE-BLOCK-END
