"""Tests for the prompt generator (sysevolve.proposals.prompts)."""

from __future__ import annotations

import re

import pytest

from sysevolve.config import PromptConfig
from sysevolve.program import Program
from sysevolve.proposals.base import ProposalRequest
from sysevolve.proposals.prompts import PromptBuilder, PromptError, format_number, truncate

CODE = """\
import math


def schedule(jobs):
    # EVOLVE-BLOCK-START
    return sorted(jobs)
    # EVOLVE-BLOCK-END
"""

SEARCH = "<<<<<<< SEARCH"


def program(id, code=CODE, **fields) -> Program:
    fields.setdefault("status", "ok")
    return Program(id, code, **fields)


def make_request(**fields) -> ProposalRequest:
    parent = program(
        7, score=0.5, metrics={"combined_score": 0.5, "latency": 12.3456789},
        artifacts={"stdout": "", "stderr": "a warning\n", "split": "search"},
    )
    fields.setdefault("parent", parent)
    fields.setdefault("inspirations", ())
    return ProposalRequest(iteration=3, seed=1, **fields)


def first_python_block(text: str) -> str:
    return re.search(r"```python\n(.*?)\n```", text, re.DOTALL).group(1)


def text_of(messages: list[dict]) -> str:
    return "\n".join(m["content"] for m in messages)


@pytest.mark.parametrize("mode", ["diff", "rewrite"])
def test_both_modes_render_system_then_user_with_the_parent_first(mode):
    messages = PromptBuilder("Schedule jobs fast.").messages(make_request(), mode)
    assert [m["role"] for m in messages] == ["system", "user"]
    system, user = messages[0]["content"], messages[1]["content"]
    assert system.startswith("Schedule jobs fast.")
    assert "# EVOLVE-BLOCK-START" in system
    assert first_python_block(user) == CODE.rstrip("\n")
    assert "Score: 0.5" in user and "latency: 12.3457" in user  # 6 significant digits
    assert "maximize `combined_score`" in user


def test_search_marker_tells_the_modes_apart_even_in_quoted_failures():
    rejected = program(9, parent_id=7, status="invalid_edit",
                       failure="'>>>>>>> REPLACE' without a '<<<<<<< SEARCH' before it")
    request = make_request(recent=(rejected,))
    builder = PromptBuilder("Schedule jobs fast.")
    assert SEARCH in builder.messages(request, "diff")[0]["content"]
    rewrite = builder.messages(request, "rewrite")
    assert SEARCH not in text_of(rewrite)
    assert "edit rejected: '>>>>>>> REPLACE' without a" in rewrite[1]["content"]
    repaired = builder.repair(rewrite, "```python\nx\n```", "rewrite has no markers", "rewrite")
    assert SEARCH not in text_of(repaired)


def test_minimize_direction_is_explained():
    user = PromptBuilder("d", metric="latency", direction="minimize").messages(make_request(), "diff")[1]
    assert "minimize `latency`; lower is better" in user["content"]
    assert "higher score is better" in user["content"]


def test_system_message_setting_replaces_the_description():
    settings = PromptConfig(system_message="You are a scheduler expert.")
    builder = PromptBuilder("Schedule jobs fast.", settings=settings)
    system = builder.messages(make_request(), "diff")[0]["content"]
    assert system.startswith("You are a scheduler expert.")
    assert "Schedule jobs fast." not in system
    assert SEARCH in system


def test_template_dir_overrides_just_that_template(tmp_path):
    (tmp_path / "system.j2").write_text("CUSTOM SYSTEM for {{ mode }}\n")
    builder = PromptBuilder("d", settings=PromptConfig(template_dir=str(tmp_path)))
    system, user = builder.messages(make_request(), "diff")
    assert system["content"] == "CUSTOM SYSTEM for diff\n"
    assert first_python_block(user["content"]) == CODE.rstrip("\n")  # user.j2 is still ours


def test_problem_templates_override_and_template_dir_wins_over_them(tmp_path):
    problem = tmp_path / "problem"
    (problem / "templates").mkdir(parents=True)
    (problem / "templates" / "format_diff.j2").write_text("PROBLEM RULES <<<<<<< SEARCH\n")
    (problem / "templates" / "repair.j2").write_text("PROBLEM REPAIR: {{ error }}\n")
    builder = PromptBuilder("d", problem_dir=problem)
    system = builder.messages(make_request(), "diff")[0]["content"]
    assert system.rstrip().endswith("PROBLEM RULES <<<<<<< SEARCH")

    own = tmp_path / "own"
    own.mkdir()
    (own / "repair.j2").write_text("OWN REPAIR: {{ error }}\n")
    builder = PromptBuilder("d", settings=PromptConfig(template_dir=str(own)), problem_dir=problem)
    assert builder.repair([], "answer", "boom", "diff")[-1]["content"] == "OWN REPAIR: boom\n"


def test_missing_template_dir_is_an_error(tmp_path):
    with pytest.raises(PromptError, match="not a folder"):
        PromptBuilder("d", settings=PromptConfig(template_dir=str(tmp_path / "nope")))


def test_artifacts_are_truncated_keeping_head_and_tail():
    stderr = "HEAD" + "x" * 5000 + "TAIL"
    artifacts = {"stdout": "", "stderr": stderr, "traceback": "Trace", "seed": 3}
    parent = program(7, score=1.0, artifacts=artifacts)
    builder = PromptBuilder("d", settings=PromptConfig(max_artifact_chars=100))
    user = builder.messages(make_request(parent=parent), "diff")[1]["content"]
    assert "[... 4908 characters cut ...]" in user
    assert "HEAD" in user and "TAIL" in user
    assert "stdout" not in user  # empty artifacts are left out
    assert user.index("stderr") < user.index("Trace") < user.index("seed: 3")


def test_truncate_and_format_number():
    assert truncate("abcdef", 6) == "abcdef"
    assert truncate("abcdefgh", 4) == "ab\n[... 4 characters cut ...]\ngh"
    assert format_number(1234567.0) == "1.23457e+06"
    assert format_number(0.1 + 0.2) == "0.3"
    assert format_number(-0.25, signed=True) == "-0.25"
    assert format_number(None) == "n/a"


def test_recent_attempts_show_each_outcome_with_its_reason():
    recent = (
        program(10, parent_id=7, score=0.75, edit_summary="use a heap"),
        program(11, parent_id=7, score=0.25),
        program(12, parent_id=3, score=0.4),
        program(13, parent_id=7, status="failed", failure="timeout after 10 s (killed)"),
        program(14, parent_id=7, status="invalid_edit", failure="SEARCH block 1 matches nothing"),
        program(15, parent_id=7, status="proposal_failed", failure="empty answer"),
    )
    builder = PromptBuilder("d", settings=PromptConfig(num_recent_attempts=6))
    user = builder.messages(make_request(recent=recent), "diff")[1]["content"]
    lines = user[user.index("# Recent attempts"):].splitlines()
    assert lines[1] == "1. Edit of the current program: improved, score 0.75 (+0.25)"
    assert lines[2] == "   Change: use a heap"
    assert lines[3] == "2. Edit of the current program: no better, score 0.25 (-0.25)"
    assert lines[4] == "3. Edit of another program: scored 0.4"
    assert "evaluation failed: timeout after 10 s (killed)" in lines[5]
    assert "edit rejected: SEARCH block 1 matches nothing" in lines[6]
    assert "no proposal: empty answer" in lines[7]


def test_only_the_newest_recent_attempts_are_shown():
    recent = tuple(
        program(10 + i, parent_id=7, status="proposal_failed", failure=f"cause {i}") for i in range(5)
    )
    user = PromptBuilder("d", settings=PromptConfig(num_recent_attempts=2)).messages(
        make_request(recent=recent), "diff")[1]["content"]
    assert "cause 2" not in user and "1. Edit of the current program: no proposal: cause 3" in user
    none = PromptBuilder("d", settings=PromptConfig(num_recent_attempts=0)).messages(
        make_request(recent=recent), "diff")[1]["content"]
    assert "Recent attempts" not in none


def test_inspirations_identical_to_the_parent_are_omitted_and_differences_shown():
    better = program(3, CODE.replace("sorted(jobs)", "sorted(jobs, reverse=True)"), score=0.9,
                     metrics={"combined_score": 0.9, "latency": 12.3456789})
    other = program(4, CODE.replace("sorted(jobs)", "list(jobs)"), score=0.1,
                    metrics={"combined_score": 0.1, "latency": 3.0})
    twin = program(5, CODE, score=0.5)
    request = make_request(inspirations=(twin, other, better))
    user = PromptBuilder("d").messages(request, "diff")[1]["content"]
    assert user.count("```python") == 3
    assert first_python_block(user) == CODE.rstrip("\n")
    order = [user.index(s) for s in ("# Top programs", "reverse=True", "# Diverse", "list(jobs)")]
    assert order == sorted(order)
    top = user[user.index("# Top programs"):user.index("# Diverse")]
    assert "combined_score 0.9 (0.5)" in top and "latency" not in top  # equal metrics are not listed
    assert "latency 3 (12.3457)" in user


def test_empty_sections_are_left_out():
    parent = program(7, score=1.0)
    user = PromptBuilder("d").messages(make_request(parent=parent), "rewrite")[1]["content"]
    for heading in ("Metrics:", "Evaluator feedback", "Top programs", "Diverse", "Recent attempts"):
        assert heading not in user
    assert user.rstrip().endswith("in a ```python block.")


def test_messages_are_deterministic():
    request = make_request(inspirations=(program(3, CODE + "# x\n", score=0.9),))
    builder = PromptBuilder("d")
    assert builder.messages(request, "diff") == builder.messages(request, "diff")


def test_repair_appends_the_answer_and_quotes_the_one_line_error():
    builder = PromptBuilder("d")
    messages = builder.messages(make_request(), "diff")
    error = "SEARCH block 2 matches nothing\nsecond line"
    repaired = builder.repair(messages, "my answer", error, "diff")
    assert repaired[:2] == messages and len(messages) == 2
    assert repaired[2] == {"role": "assistant", "content": "my answer"}
    assert repaired[3]["role"] == "user"
    assert "SEARCH block 2 matches nothing" in repaired[3]["content"]
    assert "second line" not in repaired[3]["content"]
    assert "SEARCH/REPLACE" in repaired[3]["content"]


def test_broken_override_raises_a_clear_error(tmp_path):
    (tmp_path / "user.j2").write_text("{{ parent.code }}\n{{ parnt.score }}\n")
    builder = PromptBuilder("d", settings=PromptConfig(template_dir=str(tmp_path)))
    with pytest.raises(PromptError, match=r"user\.j2, line 2: 'parnt' is undefined"):
        builder.messages(make_request(), "diff")

    (tmp_path / "user.j2").write_text("{% if %}\n")
    with pytest.raises(PromptError, match=r"user\.j2, line 1"):
        builder.messages(make_request(), "diff")


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError, match="mode"):
        PromptBuilder("d").messages(make_request(), "mixed")
