"""The offline proposer: operators stay inside evolvable regions; children parse; runs repeat."""

from __future__ import annotations

import ast
import asyncio
import io
import random
import tokenize

import pytest

from sysevolve.program import Program
from sysevolve.proposals import mutate
from sysevolve.proposals.base import ProposalRequest
from sysevolve.proposals.mutate import (
    OfflineProposer,
    crossover,
    flip_comparison,
    perturb_number,
    swap_min_max,
    swap_statements,
)
from sysevolve.proposals.regions import find_regions, region_texts

PROGRAM = '''\
"""Fixed header: 0.25 and x < y must survive."""
import math

THRESHOLD = 0.75
LIMIT = 10


def helper(x):
    return min(x, LIMIT) if x > 2 else max(x, 1)


# EVOLVE-BLOCK-START
def policy(x, y):
    """Docstring mentions 3.5 and x <= y."""
    a = 1
    b = a + 1
    c = 2.5 * x
    d = 7
    label = "rate 0.9 < 1"
    if x < y and c >= 0.5 and a == b:
        return min(a, d)
    return max(b, c) + 4
# EVOLVE-BLOCK-END


def run(x):
    return policy(x, 3) if x >= 2 else min(x, 1.5)
'''

OPERATORS = [perturb_number, flip_comparison, swap_min_max, swap_statements]
SEEDS = range(60)


def fixed_lines(code: str) -> list[str]:
    """Every line outside the evolvable regions, markers included."""
    regions = find_regions(code)
    lines = code.splitlines()
    return [line for i, line in enumerate(lines) if not any(r.start <= i < r.end for r in regions)]


def tokens(code: str) -> list[tokenize.TokenInfo]:
    return list(tokenize.generate_tokens(io.StringIO(code).readline))


def request(code: str, seed: int = 0, inspirations: tuple[Program, ...] = ()) -> ProposalRequest:
    return ProposalRequest(parent=Program(id=1, code=code), inspirations=inspirations, iteration=1, seed=seed)


@pytest.mark.parametrize("op", OPERATORS, ids=lambda op: op.__name__)
def test_operators_change_only_region_lines(op):
    region = find_regions(PROGRAM)[0]
    old_lines = PROGRAM.splitlines()
    for seed in SEEDS:
        result = op(PROGRAM, random.Random(seed))
        assert result is not None
        child, summary = result
        assert child != PROGRAM and summary and "\n" not in summary
        new_lines = child.splitlines()
        assert len(new_lines) == len(old_lines)
        changed = [i for i, (o, n) in enumerate(zip(old_lines, new_lines)) if o != n]
        assert changed and all(region.start <= i < region.end for i in changed)
        ast.parse(child)


@pytest.mark.parametrize("op", OPERATORS, ids=lambda op: op.__name__)
def test_operators_are_pure_functions_of_the_rng(op):
    assert op(PROGRAM, random.Random(5)) == op(PROGRAM, random.Random(5))


def test_perturb_number_leaves_strings_alone_and_keeps_ints_ints():
    old = tokens(PROGRAM)
    strings = [t.string for t in old if t.type == tokenize.STRING]
    for seed in SEEDS:
        child, summary = perturb_number(PROGRAM, random.Random(seed))
        new = tokens(child)
        assert [t.string for t in new if t.type == tokenize.STRING] == strings
        diffs = [(o, n) for o, n in zip(old, new) if o.string != n.string]
        # One NUMBER replaced; a negative float may come back as "(", "-", NUMBER, ")".
        o, n = diffs[0]
        assert o.type == tokenize.NUMBER
        before = ast.literal_eval(o.string)
        if isinstance(before, int):
            assert len(diffs) == 1 and n.type == tokenize.NUMBER
            after = ast.literal_eval(n.string)
            assert isinstance(after, int) and after != before and after >= 0
        else:
            assert f"{o.string} ->" in summary


def test_perturb_number_needs_a_number_in_a_region():
    code = "X = 3\n# EVOLVE-BLOCK-START\ndef f(a):\n    return a\n# EVOLVE-BLOCK-END\n"
    assert perturb_number(code, random.Random(0)) is None


def test_float_perturbation_stays_within_a_factor_of_two_mostly():
    code = "def f():\n    return 0.5\n"
    values = []
    for seed in range(200):
        child, _ = perturb_number(code, random.Random(seed))
        values.append(ast.literal_eval(child.splitlines()[1].split("return ")[1].strip("()")))
    assert all(isinstance(v, float) and v != 0.5 for v in values)
    assert sum(0.25 <= v <= 1.0 for v in values) > 150


def test_flip_comparison_maps():
    seen = set()
    for seed in range(200):
        _, summary = flip_comparison("def f(a, b):\n    return a < b\n", random.Random(seed))
        seen.add(summary)
    assert seen == {"line 2: '<' -> '<='", "line 2: '<' -> '>'"}
    _, summary = flip_comparison("ok = a == b\n", random.Random(0))
    assert summary == "line 1: '==' -> '!='"


def test_swap_min_max_only_swaps_calls():
    code = "def max(a):\n    return a\nmax = 3\ny = obj.max(2)\nz = min(1, 2)\n"
    for seed in range(20):
        child, summary = swap_min_max(code, random.Random(seed))
        assert child == code.replace("min(1", "max(1") and summary == "line 5: min -> max"
    assert swap_min_max("max = 3\ny = obj.min(2)\n", random.Random(0)) is None


def test_swap_never_swaps_dependent_statements():
    for seed in SEEDS:
        child, _ = swap_statements(PROGRAM, random.Random(seed))
        lines = [line.strip() for line in child.splitlines()]
        assert lines.index("a = 1") < lines.index("b = a + 1")
    dependent = [
        "a = 1\nb = a + 1\n",
        "a = f()\na += 1\n",
        "xs.append(1)\nn = len(xs)\n",
        "self.x = 1\ny = self.x\n",
        "log(1)\nlog(2)\n",
        "a = 1; b = 2\n",
        "def f():\n    \"\"\"Doc.\"\"\"\n    return 1\n",
        "for i in range(3):\n    total = i\n    break\n",
    ]
    for code in dependent:
        assert swap_statements(code, random.Random(0)) is None, code


def test_swap_swaps_independent_statements_with_their_comments():
    code = "def f(x):\n    a = x * 2  # double\n    b = [\n        x,\n    ]\n    return a, b\n"
    child, summary = swap_statements(code, random.Random(0))
    assert child == "def f(x):\n    b = [\n        x,\n    ]\n    a = x * 2  # double\n    return a, b\n"
    assert summary.startswith("lines 2-5: swapped")


def test_swap_stays_inside_one_region():
    code = "a = 1\n# EVOLVE-BLOCK-START\nb = 2\n# EVOLVE-BLOCK-END\nc = 3\n"
    assert swap_statements(code, random.Random(0)) is None


def test_crossover_takes_a_region_from_the_other_program():
    code = "import os\n# EVOLVE-BLOCK-START\nA = 1\n# EVOLVE-BLOCK-END\nX = 0\n# EVOLVE-BLOCK-START\nB = 2\n# EVOLVE-BLOCK-END\n"
    other = code.replace("B = 2", "B = 20\nC = 3")
    child, summary = crossover(code, other, random.Random(0))
    assert region_texts(child) == ["A = 1\n", "B = 20\nC = 3\n"]
    assert fixed_lines(child) == fixed_lines(code)
    assert summary == "region 2: crossover"
    assert crossover(code, code, random.Random(0)) is None
    assert crossover(code, "A = 1\n", random.Random(0)) is None


def run(proposer: OfflineProposer, req: ProposalRequest):
    return asyncio.run(proposer.propose(req))


def test_propose_is_deterministic_and_seed_dependent():
    first = run(OfflineProposer(), request(PROGRAM, seed=3))
    again = run(OfflineProposer(), request(PROGRAM, seed=3))
    assert first == again and first.failure is None
    assert first.format == "rewrite" and first.proposer == "offline"
    texts = {run(OfflineProposer(), request(PROGRAM, seed=s)).text for s in range(10)}
    assert len(texts) > 5


def test_children_parse_and_keep_the_fixed_part():
    inspiration = Program(id=7, code=PROGRAM.replace("d = 7", "d = 70\n    e = d"), score=1.0)
    proposer = OfflineProposer(crossover_rate=0.5)
    crossed = 0
    for seed in range(40):
        proposal = run(proposer, request(PROGRAM, seed, (inspiration,)))
        assert proposal.failure is None and proposal.text != PROGRAM
        ast.parse(proposal.text)
        assert fixed_lines(proposal.text) == fixed_lines(PROGRAM)
        assert 1 <= len(proposal.summary.split("; ")) <= 3
        crossed += proposal.summary.startswith("region 1: crossover with program 7")
    assert crossed > 0


def test_crossover_partner_is_the_best_different_inspiration():
    worse = Program(id=2, code=PROGRAM.replace("d = 7", "d = 8"), score=0.1)
    better = Program(id=3, code=PROGRAM.replace("d = 7", "d = 9"), score=0.9)
    same = Program(id=4, code=PROGRAM, score=5.0)
    proposer = OfflineProposer(crossover_rate=1.0, mutations_per_child=(1, 1))
    proposal = run(proposer, request(PROGRAM, 0, (worse, same, better)))
    assert proposal.summary == "region 1: crossover with program 3"
    assert "d = 9" in proposal.text


def test_all_fixed_program_yields_a_failure_proposal():
    code = "import os\n# EVOLVE-BLOCK-START\n# EVOLVE-BLOCK-END\nX = 1 if 2 < 3 else min(4, 5)\n"
    proposal = run(OfflineProposer(max_attempts=5), request(code))
    assert proposal.text == "" and proposal.format == "rewrite"
    assert proposal.failure == "offline proposer found no mutation that parses after 5 attempts"


def test_unbalanced_markers_yield_a_failure_proposal():
    proposal = run(OfflineProposer(), request("# EVOLVE-BLOCK-START\nx = 1\n"))
    assert proposal.text == "" and "markers" in proposal.failure


def test_unparseable_children_are_discarded_and_counted(monkeypatch):
    monkeypatch.setattr(mutate, "MUTATIONS", (lambda code, rng: (code + "def (:\n", "broken"),))
    proposer = OfflineProposer(max_attempts=4, mutations_per_child=(1, 1))
    proposal = run(proposer, request(PROGRAM))
    assert proposal.failure and proposal.discarded == 4
