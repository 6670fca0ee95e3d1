"""Tests for turning proposer text into child programs (sysevolve.proposals.edits)."""

from __future__ import annotations

import pytest

from sysevolve.proposals.base import Proposal
from sysevolve.proposals.edits import (
    EditError,
    SearchReplace,
    apply_proposal,
    apply_rewrite,
    apply_search_replace,
    check_syntax,
    parse_blocks,
    unified_diff,
)

MARKED = """\
import math


def score(txns):
    # EVOLVE-BLOCK-START
    total = 0
    for t in txns:
        total += t
    return total
    # EVOLVE-BLOCK-END


def api():
    return score([1, 2])
"""

TWO_REGIONS = """\
# EVOLVE-BLOCK-START
A = 1
# EVOLVE-BLOCK-END
FIXED = 0
# EVOLVE-BLOCK-START
B = 2
# EVOLVE-BLOCK-END
"""


def block(search: str, replace: str) -> str:
    return f"<<<<<<< SEARCH\n{search}=======\n{replace}>>>>>>> REPLACE\n"


# --- parse_blocks ---------------------------------------------------------------------------


def test_parse_blocks_ignores_prose_and_fences_and_trailing_whitespace():
    text = (
        "I will make the loop faster.\n"
        "```python\n"
        "<<<<<<< SEARCH   \n"
        "x = 1\n"
        "=======\t\n"
        "x = 2\n"
        ">>>>>>> REPLACE  \n"
        "```\n"
        "And remove a line:\n"
        "```\n" + block("y = 3\n", "") + "```\nDone.\n"
    )
    assert parse_blocks(text) == [SearchReplace("x = 1\n", "x = 2\n"), SearchReplace("y = 3\n", "")]


def test_parse_blocks_without_blocks_is_empty_and_apply_rejects():
    assert parse_blocks("just some prose\n") == []
    with pytest.raises(EditError, match="no SEARCH/REPLACE blocks found"):
        apply_search_replace(MARKED, "just some prose\n")


@pytest.mark.parametrize(
    "text, reason",
    [
        ("<<<<<<< SEARCH\nx = 1\n>>>>>>> REPLACE\n", "block 1 has no '======='"),
        (block("a\n", "b\n") + "<<<<<<< SEARCH\nx = 1\n", "block 2 has no '======='"),
        ("<<<<<<< SEARCH\nx = 1\n=======\nx = 2\n", "block 1 is not closed"),
        ("<<<<<<< SEARCH\nx\n=======\ny\n<<<<<<< SEARCH\n", "block 1 is not closed"),
        (">>>>>>> REPLACE\n", "block 1: .>>>>>>> REPLACE. without a"),
        (block("\n  \n", "x = 1\n"), "block 1 has empty search text"),
    ],
)
def test_parse_blocks_rejects_malformed_blocks(text, reason):
    with pytest.raises(EditError, match=reason):
        parse_blocks(text)


# --- apply_search_replace -------------------------------------------------------------------


def test_exact_match():
    child = apply_search_replace(MARKED, block("        total += t\n", "        total += 2 * t\n"))
    assert child == MARKED.replace("total += t", "total += 2 * t")


def test_indentation_tolerant_match_reindents_the_replacement():
    # The model dropped the function's indentation from both search and replace.
    edit = block("for t in txns:\n    total += t\n", "for t in txns:\n    if t > 0:\n        total += t\n")
    child = apply_search_replace(MARKED, edit)
    assert "    for t in txns:\n        if t > 0:\n            total += t\n    return total\n" in child
    check_syntax(child)


def test_over_indented_search_is_dedented():
    code = "def f():\n    x = 1\n    return x\n"
    edit = block("        x = 1\n", "        x = 2\n        y = 3\n")
    assert apply_search_replace(code, edit) == "def f():\n    x = 2\n    y = 3\n    return x\n"


def test_trailing_whitespace_tolerant_match():
    code = "x = 1   \ny = 2\n"
    assert apply_search_replace(code, block("x = 1\n", "x = 5\n")) == "x = 5\ny = 2\n"


def test_no_match_names_block_and_first_line():
    edit = block("    total = 0\n", "    total = 1\n") + block("for t in txns_missing:\n", "pass\n")
    with pytest.raises(EditError) as info:
        apply_search_replace(MARKED, edit)
    assert str(info.value) == "SEARCH block 2 matches nothing in the parent (first line: 'for t in txns_missing:')"


def test_ambiguous_match_reports_count():
    code = "x = 1\ny = 0\nx = 1\nx = 1\n"
    with pytest.raises(EditError, match=r"SEARCH block 1 matches 3 places.*add context lines"):
        apply_search_replace(code, block("x = 1\n", "x = 2\n"))


def test_exact_match_wins_over_tolerant_matches():
    # One exact match and one that only matches ignoring indentation: the exact one is used.
    code = "x = 1\nif True:\n    x = 1\n"
    assert apply_search_replace(code, block("x = 1\n", "x = 2\n")) == "x = 2\nif True:\n    x = 1\n"


def test_block_outside_region_is_rejected():
    with pytest.raises(EditError) as info:
        apply_search_replace(MARKED, block("def api():\n", "def api2():\n"))
    assert "SEARCH block 1 touches line 13, outside the evolvable regions (lines 6-9)" == str(info.value)


def test_block_deleting_a_marker_is_rejected():
    edit = block("    return total\n    # EVOLVE-BLOCK-END\n", "    return total\n")
    with pytest.raises(EditError, match="block 1 touches line 10, outside"):
        apply_search_replace(MARKED, edit)


def test_block_adding_a_marker_is_rejected():
    edit = block("    total = 0\n", "    total = 0\n    # EVOLVE-BLOCK-END\n    # EVOLVE-BLOCK-START\n")
    with pytest.raises(EditError, match="block 1 adds or removes EVOLVE-BLOCK markers"):
        apply_search_replace(MARKED, edit)


def test_blocks_apply_in_sequence():
    # Block 2 searches for a line that only exists after block 1.
    edit = block("    total = 0\n", "    total = 0\n    seen = 0\n") + block(
        "    seen = 0\n", "    seen = len(txns)\n"
    )
    child = apply_search_replace(MARKED, edit)
    assert "    total = 0\n    seen = len(txns)\n    for t in txns:\n" in child


def test_region_check_uses_shifted_lines():
    # Block 1 adds lines, so the region grows; block 2 edits the last region line after the shift.
    edit = block("    total = 0\n", "    total = 0\n    a = 1\n    b = 2\n") + block(
        "    return total\n", "    return total + a + b\n"
    )
    child = apply_search_replace(MARKED, edit)
    assert "    return total + a + b\n    # EVOLVE-BLOCK-END\n" in child


def test_a_failing_later_block_rejects_the_whole_edit():
    edit = block("    total = 0\n", "    total = 1\n") + block("def api():\n", "def other():\n")
    with pytest.raises(EditError, match="SEARCH block 2"):
        apply_search_replace(MARKED, edit)


def test_unmarked_file_is_entirely_evolvable_and_result_ends_with_newline():
    child = apply_search_replace("import os\nx = 1", block("import os\n", "import sys\n"))
    assert child == "import sys\nx = 1\n"


def test_second_region_can_be_edited():
    child = apply_search_replace(TWO_REGIONS, block("B = 2\n", "B = 3\n"))
    assert child == TWO_REGIONS.replace("B = 2", "B = 3")
    with pytest.raises(EditError, match=r"outside the evolvable regions \(lines 2-2, 6-6\)"):
        apply_search_replace(TWO_REGIONS, block("FIXED = 0\n", "FIXED = 1\n"))


# --- apply_rewrite --------------------------------------------------------------------------


def test_rewrite_splices_regions_and_keeps_parent_fixed_parts():
    rewrite = """\
```python
import math, os


def score(txns):
    # EVOLVE-BLOCK-START
    return sum(txns)
    # EVOLVE-BLOCK-END


def api():
    return 42
```"""
    child = apply_rewrite(MARKED, rewrite)
    old_body = "    total = 0\n    for t in txns:\n        total += t\n    return total\n"
    assert child == MARKED.replace(old_body, "    return sum(txns)\n")
    assert "import os" not in child and "return 42" not in child


def test_rewrite_without_markers_of_marked_parent_is_rejected():
    with pytest.raises(EditError, match="rewrite has no EVOLVE-BLOCK markers; keep"):
        apply_rewrite(MARKED, "def score(txns):\n    return sum(txns)\n")


def test_rewrite_with_wrong_region_count_is_rejected():
    rewrite = "# EVOLVE-BLOCK-START\nA = 5\n# EVOLVE-BLOCK-END\n"
    with pytest.raises(EditError, match="rewrite has 1 evolvable regions but the parent has 2"):
        apply_rewrite(TWO_REGIONS, rewrite)


def test_rewrite_of_unmarked_parent_replaces_the_file():
    assert apply_rewrite("x = 1\n", "```python\ny = 2\n```\n") == "y = 2\n"
    assert apply_rewrite("x = 1\n", "y = 2") == "y = 2\n"
    with pytest.raises(EditError, match="rewrite is empty"):
        apply_rewrite("x = 1\n", "```python\n```")


# --- dispatch, diff, syntax -----------------------------------------------------------------


def test_apply_proposal_dispatches_on_format():
    diff = Proposal(text=block("x = 1\n", "x = 2\n"), format="diff", proposer="test")
    rewrite = Proposal(text="x = 3\n", format="rewrite", proposer="test")
    assert apply_proposal("x = 1\n", diff) == "x = 2\n"
    assert apply_proposal("x = 1\n", rewrite) == "x = 3\n"


def test_unified_diff_labels_parent_and_child():
    diff = unified_diff("x = 1\ny = 2\n", "x = 1\ny = 3\n")
    assert diff.startswith("--- parent\n+++ child\n")
    assert "-y = 2\n+y = 3\n" in diff
    assert unified_diff("x\n", "x\n") == ""


def test_check_syntax():
    check_syntax("def f():\n    return 1\n")
    with pytest.raises(EditError, match=r"^child does not parse: line 2: "):
        check_syntax("def f():\nreturn 1\n")


def test_make_child_reports_dropped_changes_outside_regions():
    from sysevolve.proposals.base import Proposal
    from sysevolve.proposals.edits import make_child

    parent = "import os\n# EVOLVE-BLOCK-START\nx = 1\n# EVOLVE-BLOCK-END\n"
    rewrite = "import os\nimport math\n# EVOLVE-BLOCK-START\nx = math.pi\n# EVOLVE-BLOCK-END\n"
    child = make_child(parent, Proposal(rewrite, "rewrite", "test"))
    assert child.code == "import os\n# EVOLVE-BLOCK-START\nx = math.pi\n# EVOLVE-BLOCK-END\n"
    assert "import math" in child.warning and "dropped" in child.warning
    assert child.edit.startswith("--- parent")
    clean = make_child(parent, Proposal(parent.replace("x = 1", "x = 2"), "rewrite", "test"))
    assert clean.warning is None


def test_make_child_rejects_no_op_and_unparseable_edits():
    from sysevolve.proposals.base import Proposal
    from sysevolve.proposals.edits import make_child

    parent = "x = 1\n"
    with pytest.raises(EditError, match="unchanged"):
        make_child(parent, Proposal(parent, "rewrite", "test"))
    with pytest.raises(EditError, match="does not parse"):
        make_child(parent, Proposal("x = = 2\n", "rewrite", "test"))
