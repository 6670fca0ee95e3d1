"""The evolution loop: the only place that knows about time and concurrency.

One coordinator coroutine keeps up to `proposals.concurrency` proposals and
`evaluation.workers` evaluations in flight, independently and without generation barriers.
Every decision (which parent, which seed, which island) is taken in the coordinator, in the
order results arrive, so the archive is never touched concurrently.

Randomness: iteration i draws from its own `random.Random(f"{seed}:{i}")`, so the random
stream of an iteration does not depend on how many draws came before it, and a resumed run
needs no saved generator state: the run's seed and the iteration number are the state.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import math
import random
import time
from dataclasses import dataclass, field
from typing import Callable

from sysevolve.archive import Archive
from sysevolve.config import Config
from sysevolve.evaluation.harness import Harness
from sysevolve.evaluation.sandbox import EvaluationOutcome
from sysevolve.program import Program
from sysevolve.proposals.base import (Proposal, ProposalCancelled, ProposalRequest, Proposer,
                                     ProposerUnavailable, one_line)
from sysevolve.evaluation.scan import tampering_warnings
from sysevolve.proposals.edits import EditError, make_child
from sysevolve.proposals.regions import evolvable_lines
from sysevolve.rundir import BestProgramFolder
from sysevolve.store import Evaluation, Store


WALL_CLOCK = "wall-clock budget reached"
RECENT_ATTEMPTS = 20  # settled attempts kept for prompts (the prompt config shows fewer)


class InitialProgramFailed(RuntimeError):
    """The initial program does not evaluate; the loop cannot start."""


@dataclass
class RunStats:
    """Live counters of a run, for the progress display and the final summary."""

    iterations: int = 0  # proposals launched or stored
    settled: int = 0  # proposals whose fate is known (evaluated, rejected or failed)
    evaluated: int = 0
    failed: int = 0
    invalid_edits: int = 0
    proposal_failures: int = 0
    best_score: float | None = None
    initial_score: float | None = None
    best_iteration: int = 0
    since_improvement: int = 0  # settled proposals since the best score last improved
    cost_usd: float = 0.0  # model calls, stored ones only
    tokens: int = 0
    started_at: float = field(default_factory=time.monotonic)

    @property
    def failures(self) -> int:
        return self.failed + self.invalid_edits + self.proposal_failures


@dataclass(frozen=True)
class _Launch:
    """What the coordinator decided when it started a proposal."""

    iteration: int
    island: int
    parent: Program
    seed: int


class Engine:
    """Runs the loop for one run directory until a stopping condition holds."""

    def __init__(
        self,
        *,
        config: Config,
        store: Store,
        archive: Archive,
        proposer: Proposer,
        harness: Harness,
        best_folder: BestProgramFolder,
        on_progress: Callable[[RunStats], None] | None = None,
    ):
        self.config = config
        self.store = store
        self.archive = archive
        self.proposer = proposer
        self.harness = harness
        self.best_folder = best_folder
        self.on_progress = on_progress or (lambda stats: None)
        self.stats = RunStats()
        self.stop_reason: str | None = None
        self._next_iteration = 1
        self._recent: collections.deque[Program] = collections.deque(maxlen=RECENT_ATTEMPTS)
        self._scores: dict[int, float | None] = {}  # program id -> score, for parents' scores
        self._costs: dict[int, float] = {}  # program id -> cost of the calls that made it
        self._eval_queue: list[Program] = []
        self._proposals: dict[asyncio.Task, _Launch] = {}
        self._evaluations: dict[asyncio.Task, tuple[Program, str]] = {}  # kind: search | recheck
        self._rechecks: list[Program] = []  # new bests to evaluate once more, before anything else

    # --- start-up ---------------------------------------------------------------------------
    async def prepare(self, initial_code: str) -> None:
        """Evaluate and store the initial program if the run has none, then rebuild state.

        The initial program is stored only together with a successful evaluation, so a run
        killed during that first evaluation simply evaluates it again on resume.
        """
        if self.store.initial_program() is None:
            outcome = await self.harness.evaluate(initial_code)
            if not outcome.ok:
                raise InitialProgramFailed(f"the initial program fails evaluation: {outcome.failure}")
            self.store.add_program(Program(id=0, code=initial_code), evaluation=_evaluation(outcome))
        self._rebuild()

    def _rebuild(self) -> None:
        """Replay the store into the archive and counters (fresh start and resume alike)."""
        self.stats.iterations = self.store.iterations_done()
        self.stats.cost_usd, self.stats.tokens = self.store.spending()
        self._costs = self.store.cost_by_program()
        for program in self.store.settled_programs():
            self._settle(program)
        self._eval_queue = list(self.store.programs(status="pending"))
        self._next_iteration = self.store.last_iteration() + 1
        self.stats.started_at = time.monotonic()
        best = self.store.best_program()
        if best is not None:
            self.best_folder.write(best)  # a kill may have come between a result and best/

    def _settle(self, program: Program) -> bool:
        """Count a program whose fate is known and add it to the archive if it evaluated.

        Returns True when it is a new best.
        """
        stats = self.stats
        stats.since_improvement += 1
        self._scores[program.id] = program.score
        if program.iteration > 0:
            stats.settled += 1
            self._recent.append(program)
            observe = getattr(self.proposer, "observe", None)
            if observe is not None:
                observe(program, self._scores.get(program.parent_id), self._costs.get(program.id, 0.0))
        if program.status == "invalid_edit":
            stats.invalid_edits += 1
            return False
        if program.status == "proposal_failed":
            stats.proposal_failures += 1
            return False
        stats.evaluated += 1
        if not program.evaluated_ok:
            stats.failed += 1
            return False
        if program.iteration == 0 and stats.initial_score is None:
            stats.initial_score = program.score
        self.archive.add(program)
        if stats.best_score is None or program.score > stats.best_score:
            stats.best_score = program.score
            stats.best_iteration = program.iteration
            stats.since_improvement = 0
            return True
        return False

    # --- the loop ---------------------------------------------------------------------------
    async def run(self) -> str:
        """Run until a stopping condition; returns the reason. Cancelling stops cleanly."""
        self._check_stop()
        try:
            while True:
                # Evaluations first: a queue they drain makes room for new proposals.
                self._launch_evaluations()
                if self.stop_reason is None:
                    self._launch_proposals()
                if not self._proposals and not self._evaluations:
                    break
                done, _ = await asyncio.wait(
                    list(self._proposals) + list(self._evaluations),
                    timeout=self._time_left(),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                for task in done:
                    if task in self._proposals:
                        self._finish_proposal(task, self._proposals.pop(task))
                    else:
                        self._finish_evaluation(task, *self._evaluations.pop(task))
                self._check_stop()
                self.on_progress(self.stats)
                if self.stop_reason == WALL_CLOCK:
                    await self._cancel_in_flight()
                    break
        except asyncio.CancelledError:
            self.stop_reason = "interrupted"
            await self._cancel_in_flight()
            raise
        finally:
            self.store.add_event("stopped", reason=self.stop_reason, stats=_stats_dict(self.stats))
            close = getattr(self.proposer, "aclose", None)
            if close is not None:
                await close()
        return self.stop_reason or "nothing left to do"

    def _launch_proposals(self) -> None:
        settings = self.config
        budget = min(settings.run.iterations, settings.budget.max_proposals or math.inf)
        while (
            not self._spending_limit()
            and
            len(self._proposals) < settings.proposals.concurrency
            and self.stats.iterations < budget
            and len(self._eval_queue) < settings.evaluation.resolved_workers()
        ):
            iteration = self._next_iteration
            self._next_iteration += 1
            island = iteration % settings.selection.num_islands
            rng = random.Random(f"{settings.seed}:{iteration}")
            selection = self.archive.sample(rng, island)
            seed = rng.getrandbits(32)
            launch = _Launch(iteration, island, selection.parent, seed)
            request = ProposalRequest(selection.parent, selection.inspirations, iteration, seed,
                                      recent=tuple(self._recent))
            task = asyncio.create_task(self.proposer.propose(request))
            self._proposals[task] = launch
            self.stats.iterations += 1

    def _launch_evaluations(self) -> None:
        workers = self.config.evaluation.resolved_workers()
        while (self._rechecks or self._eval_queue) and len(self._evaluations) < workers:
            if self._rechecks:
                program, kind = self._rechecks.pop(0), "recheck"
            else:
                program, kind = self._eval_queue.pop(0), "search"
            task = asyncio.create_task(self.harness.evaluate(program.code))
            self._evaluations[task] = (program, kind)

    def _finish_proposal(self, task: asyncio.Task, launch: _Launch) -> None:
        if isinstance(task.exception(), ProposerUnavailable):
            self.stop_reason = f"the proposer is unavailable: {task.exception()}"
            self.stats.iterations -= 1  # nothing was proposed: the iteration is not spent
            return
        proposal = _proposal_result(task, self.proposer.name)
        child = Program(
            id=0, code="", parent_id=launch.parent.id, island=launch.island,
            iteration=launch.iteration, proposer=proposal.proposer, edit=proposal.text,
            edit_summary=proposal.summary,
        )
        if proposal.failure:
            child = dataclasses.replace(child, status="proposal_failed", failure=proposal.failure)
        else:
            try:
                made = make_child(launch.parent.code, proposal)
            except EditError as exc:
                child = dataclasses.replace(child, status="invalid_edit", failure=str(exc))
            else:
                summary = "; ".join(filter(None, [proposal.summary, made.warning]))
                child = dataclasses.replace(child, code=made.code, edit=made.edit, edit_summary=summary)
                child = self._screen(child)
        program_id = self.store.add_program(child, seed=launch.seed, discarded=proposal.discarded,
                                            calls=proposal.calls)
        child = dataclasses.replace(child, id=program_id)
        self._costs[program_id] = sum(call.cost_usd for call in proposal.calls)
        self.stats.cost_usd += self._costs[program_id]
        self.stats.tokens += sum(call.input_tokens + call.output_tokens for call in proposal.calls)
        if child.status == "pending":
            self._eval_queue.append(child)
        else:
            self._settle(child)

    def _screen(self, child: Program) -> Program:
        """Scan the child's evolvable code for tampering routes: warn, or reject it."""
        policy = self.config.evaluation.tampering
        if policy == "off":
            return child
        found = tampering_warnings(child.code, evolvable_lines(child.code))
        if not found:
            return child
        if policy == "reject":
            more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
            return dataclasses.replace(child, status="invalid_edit",
                                       failure=f"tampering route in evolved code: {found[0]}{more}")
        return dataclasses.replace(child, artifacts={"warnings": [f"tampering route: {w}" for w in found]})

    def _finish_evaluation(self, task: asyncio.Task, program: Program, kind: str) -> None:
        outcome = task.result()  # the sandbox reports candidate failures; it does not raise
        if kind == "recheck":
            self._check_reproduced(program, outcome)
        else:
            self._record(program, outcome)

    def _check_reproduced(self, program: Program, again: EvaluationOutcome) -> None:
        """Flag a new best whose score a second evaluation does not reproduce."""
        self.store.record_evaluation(program.id, _evaluation(again, "recheck"))
        tolerance = self.config.evaluation.recheck_tolerance * max(1.0, abs(program.score))
        if again.ok and abs(again.score - program.score) <= tolerance:
            return
        second = f"{again.score:.6g}" if again.ok else f"a failure ({again.failure})"
        warning = f"score did not reproduce: {program.score:.6g}, then {second} on re-evaluation"
        self.store.add_warning(program.id, warning)
        self.store.add_event("best_not_reproduced", program_id=program.id, warning=warning)
        best = self.store.best_program()
        if best is not None and best.id == program.id:
            self.best_folder.write(best)

    def _record(self, program: Program, outcome: EvaluationOutcome) -> None:
        screened = program.artifacts.get("warnings", [])  # found before the evaluation
        if screened:
            warnings = screened + list(outcome.artifacts.get("warnings", []))
            outcome = dataclasses.replace(outcome, artifacts={**outcome.artifacts, "warnings": warnings})
        self.store.record_evaluation(program.id, _evaluation(outcome))
        evaluated = dataclasses.replace(
            program, status="ok" if outcome.ok else "failed", score=outcome.score,
            metrics=outcome.metrics, artifacts=outcome.artifacts, failure=outcome.failure,
        )
        if self._settle(evaluated):
            self.best_folder.write(evaluated)
            if self.config.evaluation.recheck_best and evaluated.iteration > 0:
                self._rechecks.append(evaluated)
            self.store.add_event("new_best", program_id=evaluated.id, score=evaluated.score,
                                 iteration=evaluated.iteration)

    # --- stopping ---------------------------------------------------------------------------
    def _time_left(self) -> float | None:
        limit = self.config.run.max_wall_s
        if limit is None:
            return None
        return max(0.0, limit - (time.monotonic() - self.stats.started_at))

    def _check_stop(self) -> None:
        if self.stop_reason is not None:
            return
        run, budget, stats = self.config.run, self.config.budget, self.stats
        if run.max_wall_s is not None and self._time_left() == 0:
            self.stop_reason = WALL_CLOCK
        elif run.target_score is not None and stats.best_score is not None and stats.best_score >= run.target_score:
            self.stop_reason = f"target score {run.target_score:g} reached"
        elif run.patience is not None and stats.since_improvement >= run.patience:
            self.stop_reason = f"no improvement in {run.patience} iterations"
        elif spent := self._spending_limit():
            self.stop_reason = spent
        elif stats.iterations >= run.iterations and not self._proposals:
            self.stop_reason = f"iteration budget of {run.iterations} used"
        elif budget.max_proposals is not None and stats.iterations >= budget.max_proposals and not self._proposals:
            self.stop_reason = f"proposal budget of {budget.max_proposals} used"

    def _spending_limit(self) -> str | None:
        """Which spending limit is reached, if any (calls in flight still finish)."""
        budget, stats = self.config.budget, self.stats
        if budget.max_cost_usd is not None and stats.cost_usd >= budget.max_cost_usd:
            return f"cost budget of ${budget.max_cost_usd:g} reached (${stats.cost_usd:.4f} spent)"
        if budget.max_tokens is not None and stats.tokens >= budget.max_tokens:
            return f"token budget of {budget.max_tokens} reached ({stats.tokens} used)"
        return None

    async def _cancel_in_flight(self) -> None:
        tasks = list(self._proposals) + list(self._evaluations)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for task, launch in self._proposals.items():
            if task.cancelled():
                self.stats.iterations -= 1  # nothing was proposed or paid for: no iteration spent
            else:
                self._finish_proposal(task, launch)  # done just in time, or paid calls to store
        self._proposals.clear()
        self._evaluations.clear()  # their programs stay "pending" and are evaluated on resume


def _proposal_result(task: asyncio.Task, proposer_name: str) -> Proposal:
    """The task's proposal; a proposer that raised counts as a failed proposal, not a crash."""
    exc = task.exception()
    if isinstance(exc, ProposalCancelled):
        return Proposal(text="", format="rewrite", proposer=exc.proposer, calls=exc.calls,
                        failure="cancelled: the run stopped during this proposal")
    if exc is not None:
        reason = f"proposer raised {one_line(exc)}"
        return Proposal(text="", format="rewrite", proposer=proposer_name, failure=reason)
    return task.result()


def _evaluation(outcome: EvaluationOutcome, split: str = "search") -> Evaluation:
    return Evaluation(split, outcome.ok, outcome.score, outcome.metrics, outcome.artifacts,
                      outcome.failure, outcome.duration_s)


def _stats_dict(stats: RunStats) -> dict:
    return {k: v for k, v in dataclasses.asdict(stats).items() if k != "started_at"}
