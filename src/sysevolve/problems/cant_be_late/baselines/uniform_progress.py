"""Baseline: Uniform Progress (NSDI'24 "Can't Be Late"), the published reference policy."""
# EVOLVE-BLOCK-START
import math

from cbl_api import ClusterType, Strategy


class UniformProgressStrategy(Strategy):
    """Spot whenever available; on-demand only while behind the line t * D / T (with hysteresis)."""

    NAME = "uniform_progress"

    def _step(self, last_cluster_type: ClusterType, has_spot: bool) -> ClusterType:
        t, gap = self.env.elapsed_seconds, self.env.gap_seconds
        D, T, d = self.task_duration, self.deadline, self.restart_overhead
        done = sum(self.task_done_time)
        work_left = D - done
        if work_left <= 1e-3:
            return ClusterType.NONE
        decision = ClusterType.SPOT if has_spot else ClusterType.NONE
        if t * D / T - done > 0:  # behind uniform progress
            decision = ClusterType.SPOT if has_spot else ClusterType.ON_DEMAND
        # Hysteresis: once on on-demand, stay until two restarts ahead of the line.
        if self.env.cluster_type == ClusterType.ON_DEMAND and (t + 2 * d) * D / T - done >= 0:
            decision = ClusterType.ON_DEMAND
        if math.ceil((work_left + d) / gap) >= math.floor((T - t) / gap):
            return ClusterType.ON_DEMAND
        if has_spot:
            return ClusterType.SPOT
        return decision
# EVOLVE-BLOCK-END
