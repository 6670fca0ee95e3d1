"""Static scans of evolved code: memorised data and tampering routes."""

from __future__ import annotations

import asyncio

import pytest

from sysevolve.evaluation.scan import longest_integer_literal, memorised_data_warnings, tampering_warnings
from sysevolve.proposals.base import Proposal
from sysevolve.runs import create_run

HOSTILE = {
    "sys._getframe(1).f_globals": "frame",
    "__import__('gc').get_objects()": "",  # hidden behind __import__: not caught statically
    "gc.get_objects()": "heap scan",
    "inspect.stack()": "stack inspection",
    "sys.modules['evaluator'] = None": "sys.modules",
    "time.perf_counter = lambda: 0.0": "patches time.perf_counter",
    "setattr(time, 'time', lambda: 0.0)": "patches module time",
    "open('/proc/self/environ').read()": "outside the scratch directory",
    "open('../holdout.json')": "outside the scratch directory",
    "__builtins__['len'] = None": "__builtins__",
    "import ctypes": "ctypes",
}


@pytest.mark.parametrize("statement, expected", list(HOSTILE.items()))
def test_each_tampering_route_is_named(statement, expected):
    source = f"import sys, gc, time, inspect\ndef f():\n    {statement}\n"
    found = tampering_warnings(source)
    if expected:
        assert any(expected in w and w.startswith("line 3:") for w in found), found
    else:
        assert found == []


def test_honest_code_raises_no_warning():
    source = "import random\ndef f(xs):\n    random.shuffle(xs)\n    return sorted(xs, key=len)\n"
    assert tampering_warnings(source) == []
    assert tampering_warnings("def f(:\n") == []  # does not parse: nothing to say


def test_only_the_given_lines_are_scanned():
    source = "import gc\nX = gc.get_objects()\ndef f():\n    return gc.get_objects()\n"
    assert [w.split(":")[0] for w in tampering_warnings(source, lines={4})] == ["line 4"]


def test_memorised_integers():
    assert longest_integer_literal("S = " + repr(list(range(60)))) == 60
    assert longest_integer_literal("S = " + repr(" ".join(map(str, range(70))))) == 70
    assert memorised_data_warnings("S = " + repr(list(range(49)))) == []
    assert "60 integers" in memorised_data_warnings("S = " + repr(list(range(60))), what="x")[0]


class OneProposal:
    name = "scripted"

    def __init__(self, body: str):
        self.body = body

    async def propose(self, request):
        code = f"# EVOLVE-BLOCK-START\ndef guess():\n{self.body}# EVOLVE-BLOCK-END\n"
        return Proposal(code, "rewrite", self.name)


def _run(tmp_path, toy_problem, policy: str):
    run = create_run(toy_problem, out_dir=tmp_path / policy, overrides={
        "run": {"iterations": 1}, "evaluation": {"tampering": policy}})
    run.engine.proposer = OneProposal("    import gc\n    n = len(gc.get_objects())\n    return 7.5\n")
    try:
        asyncio.run(run.engine.prepare(run.problem.initial_code()))
        asyncio.run(run.engine.run())
        return [p for p in run.store.programs() if p.iteration == 1][0]
    finally:
        run.close()


def test_engine_warns_and_still_scores(tmp_path, toy_problem):
    child = _run(tmp_path, toy_problem, "warn")
    assert child.status == "ok" and child.score == pytest.approx(1.0)
    assert any("heap scan" in w for w in child.artifacts["warnings"])


def test_engine_can_reject(tmp_path, toy_problem):
    child = _run(tmp_path, toy_problem, "reject")
    assert child.status == "invalid_edit"
    assert child.failure.startswith("tampering route in evolved code: line ")
    assert "heap scan (gc.get_objects)" in child.failure


def test_a_new_best_that_does_not_reproduce_is_flagged(tmp_path, toy_problem):
    import json
    import shutil

    from conftest import run_loop
    from sysevolve.store import Store

    folder = tmp_path / "noisy"
    shutil.copytree(toy_problem, folder)
    evaluator = (folder / "evaluator.py").read_text()
    (folder / "evaluator.py").write_text(evaluator.replace(
        'return {"combined_score": 1.0 / (1.0 + abs(x - 7.5)), "x": x}',
        # a little noise that differs from one evaluation process to the next
        'import os\n    noise = (os.getpid() % 97 + 1) * 1e-7\n'
        '    return {"combined_score": 1.0 / (1.0 + abs(x - 7.5)) + noise, "x": x}'))
    out = tmp_path / "run"
    run_loop(folder, out, run={"iterations": 20}, seed=1)
    store = Store(out / "run.db")
    try:
        flagged = [p for p in store.programs() if any("did not reproduce" in w for w in p.artifacts.get("warnings", []))]
        events = store.events("best_not_reproduced")
        rechecked = store._db.execute("SELECT COUNT(*) FROM evaluations WHERE split = 'recheck'").fetchone()[0]
    finally:
        store.close()
    assert rechecked >= 2  # the toy problem improves several times in 20 iterations
    assert flagged and len(events) == len(flagged)
    best = json.loads((out / "best" / "best_program_info.json").read_text())
    assert best["id"] not in {p.id for p in flagged} or best["warnings"]


def test_a_deterministic_best_is_not_flagged(tmp_path, toy_problem):
    from conftest import run_loop
    from sysevolve.store import Store

    out = tmp_path / "run"
    run_loop(toy_problem, out, run={"iterations": 10}, seed=1)
    store = Store(out / "run.db")
    try:
        assert store.events("best_not_reproduced") == []
        assert store._db.execute("SELECT COUNT(*) FROM evaluations WHERE split = 'recheck'").fetchone()[0] > 0
    finally:
        store.close()
