"""The evaluation harness: scores a program of a problem, always through the sandbox."""

from __future__ import annotations

from sysevolve.config import EvaluationConfig
from sysevolve.evaluation.sandbox import (
    EvaluationOutcome,
    EvaluationRequest,
    SandboxLimits,
    evaluate_in_sandbox,
)
from sysevolve.problem import INITIAL_PROGRAM, Problem


class Harness:
    """Evaluates programs of one problem with the run's limits.

    `env` holds the variables evaluations may see (for example SYSEVOLVE_DATA); everything
    else that looks like a secret is scrubbed by the sandbox.
    """

    def __init__(self, problem: Problem, settings: EvaluationConfig, env: dict[str, str] | None = None):
        self.problem = problem
        self.settings = settings
        self.env = dict(env or {})

    def limits(self) -> SandboxLimits:
        s = self.settings
        return SandboxLimits(
            timeout_s=s.timeout_s,
            memory_mb=s.memory_mb,
            cpu_s=s.cpu_s,
            max_output_bytes=int(s.max_output_mb * 1_000_000),
        )

    def request(self, code: str, split: str = "search") -> EvaluationRequest:
        thresholds = tuple(self.settings.cascade_thresholds) if self.settings.cascade else None
        return EvaluationRequest(
            problem_dir=self.problem.root,
            program_code=code,
            program_filename=INITIAL_PROGRAM,
            split=split,
            cascade_thresholds=thresholds,
            evaluator_kwargs={**self.problem.evaluator_kwargs, **self.settings.evaluator_kwargs},
            metric=self.problem.metric,
            direction=self.problem.direction,
            env=self.env,
        )

    async def evaluate(self, code: str, split: str = "search") -> EvaluationOutcome:
        """Score `code` on `split` in a fresh sandboxed child process."""
        return await evaluate_in_sandbox(self.request(code, split), self.limits())
