"""Deadline-aware spot scheduling: the greedy policy ADRS evolved from (spec 2.3).

Each tick (10 minutes) `_step` chooses what runs next: ClusterType.SPOT (cheap, only when spot
capacity is available, may be preempted), ClusterType.ON_DEMAND (about 3.14x the price, never
preempted) or ClusterType.NONE (free, no progress). The harness owns the clock, the billing and a
safety override that switches to on-demand when the deadline is at stake.
"""
# EVOLVE-BLOCK-START
import math

from cbl_api import ClusterType, Strategy


class GreedySafetyStrategy(Strategy):
    """Spot whenever available; on-demand once the remaining slack covers only one restart."""

    NAME = "greedy_safety"

    def _step(self, last_cluster_type: ClusterType, has_spot: bool) -> ClusterType:
        gap = self.env.gap_seconds
        work_left = self.task_duration - sum(self.task_done_time)
        if work_left <= 1e-9:
            return ClusterType.NONE
        ticks_left = max(0, math.floor((self.deadline - self.env.elapsed_seconds) / gap))
        need_one_restart = math.ceil((work_left + self.restart_overhead) / gap)
        need_two_restarts = math.ceil((work_left + 2 * self.restart_overhead) / gap)
        if need_one_restart >= ticks_left:
            return ClusterType.ON_DEMAND
        if need_two_restarts >= ticks_left:
            # One more preemption would leave no slack: stay on a running spot, else on-demand.
            if self.env.cluster_type == ClusterType.SPOT and has_spot:
                return ClusterType.SPOT
            return ClusterType.ON_DEMAND
        return ClusterType.SPOT if has_spot else ClusterType.NONE

    @classmethod
    def _from_args(cls, parser):
        args, _ = parser.parse_known_args()
        return cls(args)
# EVOLVE-BLOCK-END
