"""The LLM proposer: prompt a model of the ensemble, and return its edit as text.

Each proposal draws its edit format (diff or rewrite) and its model from
`random.Random(request.seed)`. An answer that holds no edit, or one whose edit does not apply
(when `repair` is on, after one more turn showing the model the error), is returned as is and
rejected by the engine with the reason; every call made is returned with the proposal so the
engine can store it with the program it produced.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from dataclasses import replace

from sysevolve.program import Program
from sysevolve.proposals.base import (PROPOSER_PREFIX, LLMCall, Proposal, ProposalCancelled,
                                     ProposalRequest, ProposerUnavailable)
from sysevolve.proposals.edits import EditError, make_child, parse_blocks
from sysevolve.proposals.ensemble import Ensemble
from sysevolve.proposals.llm import CallFailed, ModelClient
from sysevolve.proposals.prompts import PromptBuilder

_PYTHON_FENCE = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)```", re.DOTALL)


def extract_edit(answer: str, mode: str) -> tuple[str, str] | None:
    """(edit text, format) from a model's answer, or None when it holds no edit.

    A diff-mode answer that gives a whole program instead is accepted as a rewrite, and the
    other way round; what matters is that the model's edit is used, not how it was asked for.
    """
    try:
        has_blocks = bool(parse_blocks(answer))
    except EditError:
        has_blocks = True  # malformed blocks: let the edits module say exactly what is wrong
    fenced = max(_PYTHON_FENCE.findall(answer), key=len, default="")
    if has_blocks and (mode == "diff" or not fenced):
        return answer, "diff"
    if fenced.strip():
        return fenced, "rewrite"
    return None


def summary_of(answer: str) -> str:
    """The model's first line of prose, as a one-line description of its edit."""
    for line in answer.splitlines():
        text = line.strip().strip("#*").strip()
        if text and not text.startswith(("```", "<<<<<<<")):
            return text[:200]
    return ""


class LLMProposer:
    """Proposes edits with an ensemble of models behind OpenAI-compatible endpoints."""

    name = "llm"

    def __init__(self, ensemble: Ensemble, clients: dict[str, ModelClient], prompts: PromptBuilder,
                 mode: str = "diff", rewrite_fraction: float = 0.25, repair: bool = True,
                 max_outage_s: float = 600.0):
        self.ensemble = ensemble
        self.clients = clients
        self.prompts = prompts
        self.mode = mode
        self.rewrite_fraction = rewrite_fraction
        self.repair = repair
        self.max_outage_s = max_outage_s

    async def propose(self, request: ProposalRequest) -> Proposal:
        rng = random.Random(request.seed)
        mode = self._edit_format(rng)
        client = await self._client(rng)
        calls: list[LLMCall] = []
        try:
            return await self._converse(request, mode, client, calls)
        except asyncio.CancelledError:
            if calls:  # the run is stopping: the calls already made are still paid for
                raise ProposalCancelled(PROPOSER_PREFIX + client.model.name, tuple(calls)) from None
            raise

    async def _converse(self, request: ProposalRequest, mode: str, client: ModelClient,
                        calls: list[LLMCall]) -> Proposal:
        """Ask for an edit, and once more (if `repair`) when it does not apply."""
        proposer = PROPOSER_PREFIX + client.model.name
        messages = self.prompts.messages(request, mode)
        answer, edit = await self._ask(client, messages, mode, request.parent, calls)
        if calls[-1].outcome == "edit_rejected" and self.repair:
            retry = self.prompts.repair(messages, answer, calls[-1].error or "", mode)
            second, repaired = await self._ask(client, retry, mode, request.parent, calls)
            if repaired is not None:  # applied or not, the engine judges the latest edit
                answer, edit = second, repaired
        if edit is None:
            last = calls[-1]
            return Proposal("", mode, proposer, failure=f"{last.outcome}: {last.error}", calls=tuple(calls))
        return Proposal(edit[0], edit[1], proposer, summary=summary_of(answer), calls=tuple(calls))

    async def aclose(self) -> None:
        """Close the HTTP connections (the engine calls this when its loop ends)."""
        endpoints = {id(c.endpoint): c.endpoint for c in self.clients.values()}
        for endpoint in endpoints.values():
            await endpoint.close()

    def observe(self, child: Program, parent_score: float | None, cost_usd: float) -> None:
        """Teach the bandit whether the child beat its parent, and at what cost."""
        if not child.proposer.startswith(PROPOSER_PREFIX):
            return
        improved = child.evaluated_ok and parent_score is not None and child.score > parent_score
        self.ensemble.observe(child.proposer[len(PROPOSER_PREFIX):], improved, cost_usd)

    def _edit_format(self, rng: random.Random) -> str:
        if self.mode == "mixed":
            return "rewrite" if rng.random() < self.rewrite_fraction else "diff"
        return self.mode

    async def _client(self, rng: random.Random) -> ModelClient:
        """A model to call; waits while every model is benched, until the outage limit."""
        while True:
            if self.ensemble.outage_s() >= self.max_outage_s:
                raise ProposerUnavailable(
                    f"every model has failed for {self.ensemble.outage_s():.0f} s "
                    f"(llm.max_outage_s = {self.max_outage_s:g}); last errors: "
                    f"{self.ensemble.last_errors() or 'none'}"
                )
            model = self.ensemble.choose(rng)
            if model is not None:
                return self.clients[model.name]
            wait = self.ensemble.seconds_until_available()
            await asyncio.sleep(max(0.01, min(wait, self.max_outage_s - self.ensemble.outage_s())))

    async def _ask(self, client: ModelClient, messages: list[dict], mode: str, parent: Program,
                   calls: list[LLMCall]) -> tuple[str, tuple[str, str] | None]:
        """Call the model; append the call, its outcome judged, to `calls`.

        Returns the answer text and the edit in it (None when the call failed or the answer
        holds no edit); the call's outcome says whether the edit applies to `parent`. A
        call whose answer holds no edit counts as a failure of the model (it may be benched);
        an edit that does not apply is the model's mistake but not an outage.
        """
        model = client.model
        started = time.monotonic()
        try:
            completion = await client.complete(messages)
        except CallFailed as failed:
            self.ensemble.call_finished(model.name, ok=False, error=f"{failed.cause}: {failed}")
            calls.append(LLMCall(
                model=model.name, messages=tuple(messages), response=failed.response,
                input_tokens=failed.input_tokens, output_tokens=failed.output_tokens,
                cost_usd=model.cost(failed.input_tokens, failed.output_tokens),
                latency_s=time.monotonic() - started, outcome=failed.cause, error=str(failed),
                attempts=failed.attempts,
            ))
            return "", None
        call = LLMCall(
            model=model.name, messages=tuple(messages), response=completion.text,
            input_tokens=completion.input_tokens, output_tokens=completion.output_tokens,
            cost_usd=model.cost(completion.input_tokens, completion.output_tokens),
            latency_s=time.monotonic() - started, outcome="ok", attempts=completion.attempts,
        )
        edit = extract_edit(completion.text, mode)
        if edit is None:
            call = replace(call, outcome="no_edit", error="the answer holds no SEARCH/REPLACE block or program")
            self.ensemble.call_finished(model.name, ok=False, error="no_edit")
        else:
            self.ensemble.call_finished(model.name, ok=True)
            error = _apply_error(parent, edit)
            if error is not None:
                call = replace(call, outcome="edit_rejected", error=error)
        calls.append(call)
        return completion.text, edit


def _apply_error(parent: Program, edit: tuple[str, str]) -> str | None:
    try:
        make_child(parent.code, Proposal(edit[0], edit[1], "check"))  # type: ignore[arg-type]
    except EditError as error:
        return str(error)
    return None


