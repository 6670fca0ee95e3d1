"""The proposer seam: what the engine asks for, and what a proposer gives back.

A proposer (the offline mutator here, an LLM ensemble later) only produces text. The edits
module turns that text into a child program; the engine never trusts a proposer to do it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from sysevolve.program import Program

EditFormat = Literal["diff", "rewrite"]
PROPOSER_PREFIX = "llm:"  # programs proposed by a model record proposer "llm:<model name>"


def one_line(error: BaseException) -> str:
    """`Type: first line of the message`, for stored failure reasons."""
    text = str(error)
    return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"


@dataclass(frozen=True)
class ProposalRequest:
    """Everything a proposer may look at to propose one child.

    `recent` holds the latest settled attempts (newest last) with their outcome: status,
    score, failure reason, and `parent_id` to compare with the parent's score.
    """

    parent: Program
    inspirations: tuple[Program, ...]
    iteration: int
    seed: int  # a proposer that needs randomness uses random.Random(seed), never global state
    recent: tuple[Program, ...] = ()


@dataclass(frozen=True)
class LLMCall:
    """One call to a model, as stored: what was asked, what came back, what it cost.

    `outcome` is "ok" or the cause of failure: rate_limited, server_error, timeout,
    connection_error, bad_response, empty_answer, truncated, no_edit, edit_rejected, ...
    """

    model: str
    messages: tuple[dict, ...]
    response: str
    input_tokens: int
    output_tokens: int
    cost_usd: float
    latency_s: float
    outcome: str
    error: str | None = None
    attempts: int = 1


@dataclass(frozen=True)
class Proposal:
    """A proposer's answer.

    `text` holds SEARCH/REPLACE blocks (format "diff") or a whole program (format "rewrite").
    `failure` is set, with `text` empty, when the proposer could not produce an edit; the
    engine counts it by its reason and goes on.
    """

    text: str
    format: EditFormat
    proposer: str
    summary: str = ""
    failure: str | None = None
    discarded: int = 0  # children the proposer made and threw away (e.g. unparseable) first
    calls: tuple[LLMCall, ...] = ()  # model calls made for this proposal, in order


class ProposalCancelled(Exception):
    """A proposal cancelled (the run is stopping) after some model calls were made: they are
    paid for, so the engine stores them."""

    def __init__(self, proposer: str, calls: tuple[LLMCall, ...]):
        super().__init__(f"cancelled after {len(calls)} model call(s)")
        self.proposer = proposer
        self.calls = calls


class ProposerUnavailable(RuntimeError):
    """The proposer cannot propose at all any more (e.g. every model is down); stop the run."""


class Proposer(Protocol):
    """Anything that can propose an edit of a parent program.

    Two methods are optional, and the engine calls them when present:
    `observe(child, parent_score, cost_usd)` after each child's fate is known (also when a
    run is replayed on resume), to learn from outcomes; `async aclose()` when the loop ends.
    """

    name: str

    async def propose(self, request: ProposalRequest) -> Proposal: ...
