"""What a cant_be_late policy sees: `ClusterType`, the `Strategy` base class and its views.

`Strategy` keeps the authoring style of the ADRS simulator (subclass it, implement `_step`), but
it is only a shim: before every `_step` call the policy process sets the attributes below from
that tick's observation, in fresh objects. Nothing written to them reaches the simulation, which
runs in the evaluator's process; the policy's only output is the action `_step` returns.

    self.task_duration, self.deadline, self.restart_overhead    seconds
    self.task_done_time               [work done so far, seconds]  (sum() it, as in ADRS)
    self.remaining_restart_overhead   seconds of the current (re)start still to be spent
    self.task_done                    always False when `_step` is called
    self.env.tick, .elapsed_seconds, .gap_seconds, .cluster_type   (a read-only view)
"""

from __future__ import annotations

import argparse
import enum
from collections import namedtuple


class ClusterType(enum.Enum):
    """What runs during a tick."""

    NONE = "NONE"
    SPOT = "SPOT"
    ON_DEMAND = "ON_DEMAND"


# Read-only views (tuples). `cluster_type` is what runs now, after this tick's preemption.
Env = namedtuple("Env", "tick elapsed_seconds gap_seconds cluster_type")
Task = namedtuple("Task", "duration deadline restart_overhead")


class Strategy:
    """Base class of a policy; one instance per run, created before the run's first tick."""

    NAME = "strategy"

    def __init__(self, args=None):
        self.args = args
        self.env = None
        self.task_duration = self.deadline = self.restart_overhead = 0.0
        self.task_done_time = []
        self.remaining_restart_overhead = 0.0
        self.task_done = False

    def reset(self, env: Env, task: Task) -> None:
        """Called once per run before its first tick; overriding methods should call super()."""
        self.env = env
        self.task_duration, self.deadline, self.restart_overhead = task

    def _step(self, last_cluster_type: ClusterType, has_spot: bool) -> ClusterType:
        """The action for this tick: ClusterType.NONE, .SPOT or .ON_DEMAND (or their names)."""
        raise NotImplementedError("a Strategy subclass must implement _step")


class ArgsParser(argparse.ArgumentParser):
    """The parser handed to `_from_args`: it never reads the command line (defaults only)."""

    def parse_known_args(self, args=None, namespace=None):
        return super().parse_known_args([] if args is None else args, namespace)

    def parse_args(self, args=None, namespace=None):
        return super().parse_args([] if args is None else args, namespace)
