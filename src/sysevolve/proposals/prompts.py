"""The prompt generator: chat messages that ask a model for one edit of a parent program.

Messages are rendered from jinja2 templates (`system.j2`, `user.j2`, `repair.j2` and the
`format_<mode>.j2` rules they include). A template is looked up by name in the config's
`prompt.template_dir`, then in `<problem>/templates/`, then here, so a researcher can replace
any single one. This module prepares plain values (formatted numbers, truncated feedback,
outcomes in words) so templates stay simple; `request` is passed too, for overrides that want more.
"""

from __future__ import annotations

import json
import re
import traceback
from pathlib import Path
from typing import Any, Literal

import jinja2

from sysevolve.config import ConfigError, PromptConfig
from sysevolve.program import Program
from sysevolve.proposals.base import ProposalRequest
from sysevolve.proposals.edits import SEARCH_LINE
from sysevolve.proposals.regions import END_MARKER, START_MARKER

Mode = Literal["diff", "rewrite"]
MODES = ("diff", "rewrite")
PACKAGE_TEMPLATES = Path(__file__).parent / "templates"
FIRST_ARTIFACTS = ("stderr", "traceback", "warnings")  # shown first; other keys follow in order
INLINE_CHARS = 120  # shorter one-line artifacts are listed inline instead of in a fence
# Servers and tests tell the modes apart by this literal, so rewrite prompts must never hold it,
# not even inside a quoted failure reason of an earlier diff attempt.
SEARCH_STAND_IN = "(SEARCH marker)"


class PromptError(ConfigError):
    """A template is missing or broken; the message names the template and line."""


class PromptBuilder:
    """Builds the messages of one proposal, and of a repair turn after a rejected edit."""

    def __init__(
        self,
        description: str,
        metric: str = "combined_score",
        direction: str = "maximize",
        settings: PromptConfig = PromptConfig(),
        problem_dir: Path | None = None,
    ):
        if direction not in ("maximize", "minimize"):
            raise ValueError(f"direction must be 'maximize' or 'minimize', not {direction!r}")
        self.description = description
        self.metric = metric
        self.direction = direction
        self.settings = settings
        loaders = [jinja2.FileSystemLoader(str(d)) for d in self._template_dirs(problem_dir)]
        self.env = jinja2.Environment(
            loader=jinja2.ChoiceLoader(loaders),
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["num"] = format_number
        self.env.filters["fenced"] = fenced

    def _template_dirs(self, problem_dir: Path | None) -> list[Path]:
        dirs = []
        if self.settings.template_dir:
            own = Path(self.settings.template_dir).expanduser()
            if not own.is_dir():
                raise PromptError(f"prompt.template_dir {str(own)!r} is not a folder")
            dirs.append(own)
        if problem_dir is not None and (Path(problem_dir) / "templates").is_dir():
            dirs.append(Path(problem_dir) / "templates")
        return dirs + [PACKAGE_TEMPLATES]

    def check(self) -> None:
        """Render every template once with a sample request, so that a broken override fails
        when the run starts (as a PromptError), not on every proposal."""
        parent = Program(id=1, code="# EVOLVE-BLOCK-START\nx = 1\n# EVOLVE-BLOCK-END\n",
                         status="ok", score=1.0, metrics={self.metric: 1.0},
                         artifacts={"stderr": "warning"})
        child = Program(id=2, code=parent.code.replace("1", "2"), parent_id=1, iteration=1,
                        status="failed", failure="evaluator raised ValueError: sample")
        request = ProposalRequest(parent, (child,), 1, 0, recent=(child,))
        for mode in ("diff", "rewrite"):
            messages = self.messages(request, mode)
            self.repair(messages, "answer", "SEARCH block 1 matches nothing", mode)

    def messages(self, request: ProposalRequest, mode: Mode) -> list[dict]:
        """The system and user messages asking for one edit of `request.parent`."""
        _check_mode(mode)
        parent = request.parent
        context = {
            "mode": mode,
            "request": request,
            "metric": self.metric,
            "direction": self.direction,
            "has_markers": _has_markers(parent.code),
            "start_marker": START_MARKER,
            "end_marker": END_MARKER,
        }
        system = self._render(
            "system.j2", context, description=(self.settings.system_message or self.description).strip()
        )
        top, diverse = self._inspirations(request)
        user = self._render(
            "user.j2",
            context,
            parent=self._parent_view(parent),
            top=top,
            diverse=diverse,
            recent=self._recent_view(request),
        )
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        return _for_mode(mode, messages)

    def repair(self, messages: list[dict], answer: str, error: str, mode: Mode) -> list[dict]:
        """`messages` plus the rejected `answer` and a turn asking to fix it, quoting `error`."""
        _check_mode(mode)
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        turn = self._render(
            "repair.j2",
            {"mode": mode, "start_marker": START_MARKER, "end_marker": END_MARKER},
            error=lines[0] if lines else "unknown error",
        )
        return _for_mode(
            mode,
            [*messages, {"role": "assistant", "content": answer}, {"role": "user", "content": turn}],
        )

    # --- views: plain values for the templates ----------------------------------------------

    def _parent_view(self, parent: Program) -> dict[str, Any]:
        return {
            "code": parent.code,
            "score": format_number(parent.score),
            "failure": parent.failure,
            "metrics": [(name, format_number(value)) for name, value in parent.metrics.items()],
            "feedback": self._feedback(parent.artifacts),
        }

    def _feedback(self, artifacts: dict[str, Any]) -> list[dict[str, Any]]:
        """Non-empty artifacts, errors first, each truncated to the configured budget."""
        limit = self.settings.max_artifact_chars
        if limit == 0:
            return []
        keys = [k for k in FIRST_ARTIFACTS if k in artifacts]
        keys += [k for k in artifacts if k not in FIRST_ARTIFACTS]
        items = []
        for key in keys:
            text = _as_text(artifacts[key]).strip("\n")
            if not text.strip():
                continue
            text = truncate(text, limit)
            inline = "\n" not in text and len(text) <= INLINE_CHARS
            items.append({"name": str(key), "text": text, "inline": inline})
        return items

    def _inspirations(self, request: ProposalRequest) -> tuple[list[dict], list[dict]]:
        """(top, diverse): inspirations scoring above the parent, then the others.

        The request does not say which inspirations the selector drew as top and which as
        diverse, so the split is by score; that is also what tells the model most.
        """
        parent = request.parent
        seen_code = {parent.code}
        top, diverse = [], []
        for program in request.inspirations:
            if program.code in seen_code:  # the parent itself, or a copy of it or of another
                continue
            seen_code.add(program.code)
            view = {
                "code": program.code,
                "score": format_number(program.score),
                "differences": _metric_differences(program.metrics, parent.metrics),
            }
            better = program.score is not None and (parent.score is None or program.score > parent.score)
            (top if better else diverse).append((program, view))
        top.sort(key=lambda pair: -pair[0].score)  # stable: ties keep the selector's order
        return [view for _, view in top], [view for _, view in diverse]

    def _recent_view(self, request: ProposalRequest) -> list[dict[str, Any]]:
        """The latest settled attempts, oldest first, each with its outcome in words."""
        count = self.settings.num_recent_attempts
        settled = [p for p in request.recent if p.status != "pending"]
        return [
            {
                "outcome": _outcome(attempt, request.parent),
                "on_parent": attempt.parent_id == request.parent.id,
                "summary": " ".join(attempt.edit_summary.split()),
            }
            for attempt in (settled[-count:] if count else [])
        ]

    # --- rendering ---------------------------------------------------------------------------

    def _render(self, name: str, context: dict[str, Any], **extra: Any) -> str:
        try:
            return self.env.get_template(name).render({**context, **extra})
        except jinja2.TemplateNotFound as exc:
            raise PromptError(f"template {exc.name!r} not found") from None
        except jinja2.TemplateSyntaxError as exc:
            where = exc.filename or exc.name or name
            raise PromptError(f"template {where}, line {exc.lineno}: {exc.message}") from None
        except jinja2.TemplateError as exc:
            raise PromptError(f"template {_where(exc, name)}: {exc}") from None


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be 'diff' or 'rewrite', not {mode!r}")


def _for_mode(mode: Mode, messages: list[dict]) -> list[dict]:
    if mode == "diff":
        return messages
    return [{**m, "content": m["content"].replace(SEARCH_LINE, SEARCH_STAND_IN)} for m in messages]


def _where(exc: BaseException, name: str) -> str:
    """`file, line N` of the template frame where a render error was raised, when known."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.endswith(".j2")]
    return f"{frames[-1].filename}, line {frames[-1].lineno}" if frames else repr(name)


def _has_markers(code: str) -> bool:
    return any(line.strip().startswith(START_MARKER) for line in code.splitlines())


def _outcome(attempt: Program, parent: Program) -> str:
    """What became of an attempt: improved, no better, or why it failed."""
    reason = " ".join((attempt.failure or "no reason given").split())
    if attempt.status == "failed":
        return f"evaluation failed: {reason}"
    if attempt.status == "invalid_edit":
        return f"edit rejected: {reason}"
    if attempt.status == "proposal_failed":
        return f"no proposal: {reason}"
    if attempt.score is None:
        return "not scored"
    score = format_number(attempt.score)
    # Only the current parent's score is known here; another parent's is not in the request.
    if attempt.parent_id != parent.id or parent.score is None:
        return f"scored {score}"
    delta = attempt.score - parent.score
    verdict = "improved" if delta > 0 else "no better"
    return f"{verdict}, score {score} ({format_number(delta, signed=True)})"


def _metric_differences(
    theirs: dict[str, float], ours: dict[str, float]
) -> list[tuple[str, str, str]]:
    """(name, their value, parent's value) for each metric that differs; "n/a" where absent."""
    names = list(theirs) + [name for name in ours if name not in theirs]
    return [
        (name, format_number(theirs.get(name)), format_number(ours.get(name)))
        for name in names
        if format_number(theirs.get(name)) != format_number(ours.get(name))
    ]


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return format_number(value)
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return "\n".join(value)
    try:
        return json.dumps(value, default=str, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(value)


def format_number(value: float | None, signed: bool = False) -> str:
    """`value` with up to 6 significant digits ("n/a" for None)."""
    if value is None:
        return "n/a"
    return f"{value:+.6g}" if signed else f"{value:.6g}"


def truncate(text: str, limit: int) -> str:
    """`text` cut to its first and last `limit` / 2 characters, with a marker saying how many went."""
    if len(text) <= limit:
        return text
    head = (limit + 1) // 2
    tail = limit - head
    parts = [text[:head], f"[... {len(text) - limit} characters cut ...]"]
    return "\n".join(parts + [text[-tail:]] if tail else parts)


def fenced(text: str, language: str = "") -> str:
    """`text` in a Markdown code fence longer than any run of backticks inside it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{text.rstrip(chr(10))}\n{fence}"
