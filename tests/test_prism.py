"""Tests of the prism problem: generator, goldens, evaluator, ADRS semantics and hardening."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import problem_modules
import yaml

REPO = Path(__file__).resolve().parents[1]
PROBLEM = REPO / "src" / "sysevolve" / "problems" / "prism"
BASELINES = PROBLEM / "baselines"
MODULES = ("evaluator", "prism_instances", "prism_runner", "prism_score")
GREEDY, EVOLVED, FIRST_FIT = (BASELINES / f"{n}.py" for n in ("prism_greedy", "evolved_reference", "first_fit"))


@pytest.fixture
def problem(monkeypatch):
    """The problem folder on sys.path with fresh imports of its modules."""
    with problem_modules(PROBLEM, MODULES) as modules:
        yield modules


@pytest.fixture
def evaluate(problem):
    return problem["evaluator"].evaluate


def write_program(tmp_path, body: str, name: str = "candidate.py", greedy: bool = False) -> Path:
    """A candidate file; with greedy=True it can call `_greedy.compute_model_placement`."""
    path = tmp_path / name
    path.write_text((GREEDY_IMPORT if greedy else "") + textwrap.dedent(body))
    return path


# A candidate built on the honest greedy: `GREEDY_CALL` gives its placement.
GREEDY_IMPORT = f"""
import importlib.util as _u
_s = _u.spec_from_file_location("_greedy", {str(GREEDY)!r})
_greedy = _u.module_from_spec(_s)
_s.loader.exec_module(_greedy)
"""


# --- generator ----------------------------------------------------------------------------------

def test_generator_goldens(problem):
    gen = problem["prism_instances"].generate
    search = gen(42)
    assert len(search) == 50 and sum(len(i.sizes) for i in search) == 706
    first = search[0]
    assert first.gpu_num == 8 and len(first.sizes) == 16
    assert list(zip(first.sizes, first.rates, first.slos))[:3] == [(24, 8, 9), (16, 3, 7), (20, 8, 9)]
    models = first.models()
    assert [m.model_name for m in models[:2]] == ["model_0", "model_1"]
    assert [m.cur_gpu_id for m in models] == list(range(16))
    for inst in search + gen(1001):
        assert 5 <= inst.gpu_num <= 9 and len(inst.sizes) == 2 * inst.gpu_num
        assert all(10 <= s <= 29 for s in inst.sizes) and all(1 <= r <= 9 for r in inst.rates)
        assert all(5 <= o <= 9 for o in inst.slos)


def test_generator_matches_the_legacy_global_generator(problem):
    """The ADRS draws: numpy.random.seed(seed), then randint in the documented order."""
    np = pytest.importorskip("numpy")
    state = np.random.get_state()
    try:
        for seed in (42, 1001, 1002, 1003):
            np.random.seed(seed)
            expected = []
            for _ in range(50):
                g = np.random.randint(5, 10)
                expected.append((g, [(np.random.randint(10, 30), np.random.randint(1, 10),
                                      np.random.randint(5, 10)) for _ in range(2 * g)]))
            got = [(i.gpu_num, list(zip(i.sizes, i.rates, i.slos)))
                   for i in problem["prism_instances"].generate(seed)]
            assert got == expected, seed
    finally:
        np.random.set_state(state)


def test_legacy_randint_matches_numpy(problem):
    np = pytest.importorskip("numpy")
    legacy_randint = problem["prism_instances"].legacy_randint
    ranges = [(0, 2), (5, 6), (3, 100), (-7, 7), (0, 2**31), (10, 2**32 + 9)]
    for seed in (0, 1, 7, 2**32 - 1):
        ours, theirs = legacy_randint(seed), np.random.RandomState(seed)
        for k in range(3000):
            low, high = ranges[k % len(ranges)]
            assert ours(low, high) == theirs.randint(low, high), (seed, k, low, high)
    with pytest.raises(ValueError, match="seed"):
        legacy_randint(-1)


def test_splits(problem):
    seeds = problem["prism_instances"].split_seeds
    assert seeds("search") == (42,) and seeds("holdout") == (1001, 1002, 1003)
    with pytest.raises(ValueError, match="unknown split"):
        seeds("test")


# --- goldens (spec section 5) -------------------------------------------------------------------

def test_search_goldens(evaluate):
    greedy = evaluate(GREEDY).metrics
    evolved = evaluate(EVOLVED).metrics
    first_fit = evaluate(FIRST_FIT).metrics
    assert greedy["combined_score"] == pytest.approx(21.8916, abs=1e-4)
    assert greedy["mean_max_kvpr"] == pytest.approx(0.0478661, abs=1e-7)
    assert evolved["combined_score"] == pytest.approx(25.7181, abs=1e-4)
    assert evolved["mean_max_kvpr"] == pytest.approx(0.0404562, abs=1e-7)
    assert evolved["combined_score"] / greedy["combined_score"] - 1 == pytest.approx(0.175, abs=5e-4)
    assert 1 - evolved["mean_max_kvpr"] / greedy["mean_max_kvpr"] == pytest.approx(0.155, abs=5e-4)
    assert first_fit["combined_score"] == pytest.approx(1.0000031, abs=1e-6)
    assert round(first_fit["mean_max_kvpr"] * 50 / 1e6, 3) == 16.0  # 16 GPUs filled to 80 GB
    for m in (greedy, evolved, first_fit):
        assert m["bound_score"] == pytest.approx(29.4038, abs=1e-4)
        assert m["mean_lower_bound"] == pytest.approx(0.0352066, abs=1e-7)
        assert m["success_rate"] == 1.0 and m["tampered_models"] == 0
    assert greedy["gap"] == pytest.approx(0.7431, abs=1e-4)
    assert evolved["gap"] == pytest.approx(0.8714, abs=1e-4)
    assert evolved["min_max_kvpr"] == pytest.approx(0.02551, abs=1e-5)
    assert evolved["max_max_kvpr"] == pytest.approx(0.06074, abs=1e-5)


def test_holdout_goldens(evaluate):
    greedy = evaluate(GREEDY, split="holdout")
    evolved = evaluate(EVOLVED, split="holdout")
    expected = {  # seed: (greedy, evolved, bound, greedy gap, evolved gap)
        1001: (21.3352, 24.7214, 28.3310, 0.7523, 0.8707),
        1002: (20.1321, 24.4307, 27.7002, 0.7303, 0.8795),
        1003: (21.4302, 25.5285, 28.9048, 0.7472, 0.8794),
    }
    g, e = greedy.metrics, evolved.metrics
    for seed, (gs, es, bound, ggap, egap) in expected.items():
        assert g[f"combined_score_s{seed}"] == pytest.approx(gs, abs=1e-4)
        assert e[f"combined_score_s{seed}"] == pytest.approx(es, abs=1e-4)
        assert g[f"bound_score_s{seed}"] == pytest.approx(bound, abs=1e-4)
        assert g[f"gap_s{seed}"] == pytest.approx(ggap, abs=1e-4)
        assert e[f"gap_s{seed}"] == pytest.approx(egap, abs=1e-4)
    assert greedy.artifacts["num_instances"] == 150
    assert g["initial_combined_score"] == pytest.approx(g["combined_score"])
    assert "warnings" not in greedy.artifacts and "warnings" not in evolved.artifacts


def test_adrs_semantics_reproduces_the_baselines(evaluate):
    for path, score in ((GREEDY, 21.8916), (EVOLVED, 25.7181)):
        m = evaluate(path, semantics="adrs").metrics
        assert m["combined_score"] == pytest.approx(score, abs=1e-4)
        assert m["max_kvpr"] == pytest.approx(score - 1, abs=1e-4)  # the ADRS name of 1/mean
        assert m["success_rate"] == 1.0 and m["failed_instances"] == 0
    assert evaluate(FIRST_FIT, semantics="adrs").metrics["combined_score"] == pytest.approx(1.0000031, abs=1e-6)
    with pytest.raises(ValueError, match="unknown semantics"):
        evaluate(GREEDY, semantics="openevolve")


def test_program_layout():
    code = (PROBLEM / "initial_program.py").read_text()
    head, rest = code.split("# EVOLVE-BLOCK-START\n")
    region, tail = rest.split("# EVOLVE-BLOCK-END\n")
    assert "GPU_MEM_SIZE = 80" in head and "class Model" in head
    assert "def compute_model_placement(gpu_num, models)" in region and tail.strip() == ""
    assert GREEDY.read_text() == code  # the prism_greedy baseline is the initial program
    config = yaml.safe_load((PROBLEM / "problem.yaml").read_text())
    assert config["name"] == "prism" and config["splits"] == ["search", "holdout"]
    assert (config["metric"], config["direction"], config["timeout_s"]) == ("combined_score", "maximize", 20)
    for baseline in (EVOLVED, FIRST_FIT):
        assert baseline.read_text().count("# EVOLVE-BLOCK-START") == 1


def test_candidate_random_is_seeded(evaluate, tmp_path):
    path = write_program(tmp_path, """
        import random

        def compute_model_placement(gpu_num, models):
            order = list(models)
            random.shuffle(order)
            placement = {g: [] for g in range(gpu_num)}
            for k, m in enumerate(sorted(order, key=lambda m: -m.model_size)):
                placement[k % gpu_num].append(m)
            return placement
    """)
    first = evaluate(path, seed=3).metrics["combined_score"]
    assert evaluate(path, seed=3).metrics["combined_score"] == first


def test_quick_evaluation_is_fast(evaluate):
    evaluate(GREEDY)  # warm caches, as the sandbox's imports would
    best = min(_timed(evaluate, GREEDY) for _ in range(3))
    assert best < 1.0


def _timed(fn, *args):
    began = time.perf_counter()
    fn(*args)
    return time.perf_counter() - began


# --- hostile candidates (spec section 7) --------------------------------------------------------

INVALID = {  # body of compute_model_placement -> part of the one-line reason
    "invented_gpu_ids": ("return {j: [m] for j, m in enumerate(models)}", "instance 0: GPU id 8 outside range(8)"),
    "negative_gpu_id": ("return {-1: list(models)}", "GPU id -1 outside range"),
    "bool_key": ("return {True: list(models)}", "GPU key <bool True> is not an int"),
    "str_key": ("return {'0': list(models)}", "GPU key <str '0'> is not an int"),
    "numpy_key": ("import numpy\n    return {numpy.int64(0): list(models)}", "instance 0: GPU key <int64 "),
    "lightest_only": ("return {0: [min(models, key=lambda m: m.req_rate / m.slo)]}", "is placed on no GPU"),
    "empty_dict": ("return {}", "model model_0 is placed on no GPU (16 of 16 models missing)"),
    "all_empty": ("return {g: [] for g in range(gpu_num)}", "placed on no GPU"),
    "duplicate": ("return {0: [models[0]], 1: [models[0]] + models[1:]}", "model model_0 is placed twice (GPUs 0 and 1)"),
    "unknown_model": ("return {0: [type(models[0])('ghost', 1, 1, 5, 0)] + list(models)}", "unknown model 'ghost'"),
    "not_a_model": ("return {0: [42]}", "unknown model None"),
    "over_memory": ("return {0: list(models)}", "GPU 0 holds 293 GB of models, more than 80 GB"),
    "tuple_values": ("return {g: tuple(models) if g == 0 else () for g in range(gpu_num)}", "GPU 0 maps to a tuple"),
    "not_a_dict": ("return [list(models)]", "returned list, expected a dict"),
    "none": ("return None", "returned NoneType"),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_placements_are_rejected(evaluate, tmp_path, case):
    body, reason = INVALID[case]
    path = write_program(tmp_path, f"def compute_model_placement(gpu_num, models):\n    {body}\n")
    with pytest.raises(ValueError) as info:
        evaluate(path)
    message = str(info.value)
    assert reason in message and "\n" not in message
    assert message.startswith("instance 0: ")


def test_exploits_score_high_only_under_adrs(evaluate, tmp_path):
    """Spec 5: the published exploit scores, reproduced under ADRS semantics, rejected by default."""
    invented = write_program(tmp_path, "def compute_model_placement(gpu_num, models):\n"
                             "    return {j: [m] for j, m in enumerate(models)}\n", "invented.py")
    lightest = write_program(tmp_path, "def compute_model_placement(gpu_num, models):\n"
                             "    return {0: [min(models, key=lambda m: m.req_rate / m.slo)]}\n", "lightest.py")
    for path, adrs_score in ((invented, 40.29), (lightest, 368.5)):
        result = evaluate(path, semantics="adrs")
        assert round(result.metrics["combined_score"], 1 if adrs_score > 100 else 2) == adrs_score
        assert "above the valid bound 29.4038" in result.artifacts["warnings"][0]  # spec 7.8
        with pytest.raises(ValueError):
            evaluate(path)


def test_failing_on_hard_instances_invalidates(evaluate, tmp_path):
    """Spec 7.4: failing on purpose on the 20 hardest instances (25.72 -> 28.59 under ADRS)."""
    path = write_program(tmp_path, f"""
        import importlib.util as _u
        _s = _u.spec_from_file_location("_evolved", {str(EVOLVED)!r})
        _evolved = _u.module_from_spec(_s)
        _s.loader.exec_module(_evolved)

        def compute_model_placement(gpu_num, models):
            placement = _evolved.compute_model_placement(gpu_num, models)
            worst = max(sum(m.req_rate / m.slo for m in ms) / (80 - sum(m.model_size for m in ms))
                        for ms in placement.values())
            if worst > 0.0408:  # the 20 instances where the evolved program does worst
                raise RuntimeError("skip this one")
            return placement
    """)
    adrs = evaluate(path, semantics="adrs")
    assert adrs.metrics["combined_score"] == pytest.approx(28.59, abs=0.01)
    assert adrs.metrics["failed_instances"] == 20 and adrs.metrics["success_rate"] == 0.6
    assert "20 instances failed and were skipped" in adrs.artifacts["warnings"][0]
    with pytest.raises(RuntimeError, match=r"^instance \d+: compute_model_placement raised "
                                           r"RuntimeError: skip this one$"):
        evaluate(path)


def test_mutating_the_models_has_no_effect(evaluate, tmp_path):
    """Spec 7.3: zero rates and shrunken sizes on the given objects; scored from our copies."""
    path = write_program(tmp_path, greedy=True, body="""
        def compute_model_placement(gpu_num, models):
            placement = _greedy.compute_model_placement(gpu_num, models)
            for m in models:
                m.req_rate, m.model_size = 0, 1
            return placement
    """)
    result = evaluate(path)
    assert result.metrics["combined_score"] == pytest.approx(21.8916, abs=1e-4)
    assert result.metrics["tampered_models"] == 706
    assert "changed fields (ignored" in result.artifacts["warnings"][0]


def test_fake_model_objects_are_scored_from_our_copies(evaluate, tmp_path):
    """New objects with the right names but invented numbers (and a hostile Model class)."""
    path = write_program(tmp_path, """
        from dataclasses import dataclass

        @dataclass
        class Model:
            model_name: str
            model_size: int
            req_rate: int
            slo: int
            cur_gpu_id: int

            def __post_init__(self):
                self.slo = float("nan")  # would poison the ADRS arithmetic

        def compute_model_placement(gpu_num, models):
            fake = {g: [] for g in range(gpu_num)}
            for k, m in enumerate(models):
                fake[k % gpu_num].append(Model(m.model_name, 0, 0, 1, 0))
            return fake
    """)
    result = evaluate(path)  # round robin, scored with the real sizes and rates
    assert 0 < result.metrics["combined_score"] < 21.8916
    assert result.metrics["tampered_models"] == 706


def test_unusable_model_class_is_reported(evaluate, tmp_path):
    path = write_program(tmp_path, """
        class Model:
            def __init__(self, name):
                pass

        def compute_model_placement(gpu_num, models):
            return {}
    """)
    with pytest.raises(ValueError, match="^instance 0: cannot build models with the program's "
                                         "Model class: TypeError"):
        evaluate(path)


def test_patching_the_evaluator_does_not_change_the_score(evaluate, tmp_path):
    path = write_program(tmp_path, greedy=True, body="""
        import prism_score, prism_runner, evaluator

        def compute_model_placement(gpu_num, models):
            prism_score.max_kvpr = lambda gpus, inst: 1e-9
            prism_score.validate = lambda encoded, inst: ([], [])
            evaluator._summary = lambda *a: {"combined_score": 1e9}
            return _greedy.compute_model_placement(gpu_num, models)
    """)
    assert evaluate(path).metrics["combined_score"] == pytest.approx(21.8916, abs=1e-4)


def test_forged_messages_are_rejected(evaluate, tmp_path):
    """The candidate can write to its result pipe; what it writes is validated like the rest."""
    path = write_program(tmp_path, greedy=True, body="""
        import os

        def compute_model_placement(gpu_num, models):
            for fd in range(3, 64):
                try:
                    os.write(fd, b'{"i": 0, "result": {"type": "dict", "gpus": "lots"}}\\n')
                except OSError:
                    pass
            return _greedy.compute_model_placement(gpu_num, models)
    """)
    with pytest.raises(ValueError, match="^instance 0: malformed result message"):
        evaluate(path)


def test_flooding_the_pipe_is_rejected(evaluate, tmp_path):
    path = write_program(tmp_path, """
        import os

        def compute_model_placement(gpu_num, models):
            for fd in range(3, 64):
                try:
                    os.write(fd, b"x" * 5_000_000)
                except OSError:
                    pass
            return {}
    """)
    with pytest.raises(ValueError, match="^instance 0: the program's process sent an oversized message$"):
        evaluate(path)


def test_inherited_descriptors_are_closed(evaluate, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("the harness's result pipe, say")
    fd = os.open(secret, os.O_RDONLY)
    try:
        path = write_program(tmp_path, greedy=True, body=f"""
            import os

            def compute_model_placement(gpu_num, models):
                try:
                    os.read({fd}, 10)
                except OSError:
                    return _greedy.compute_model_placement(gpu_num, models)
                raise RuntimeError("inherited descriptor {fd} is open")
        """)
        assert evaluate(path).metrics["combined_score"] == pytest.approx(21.8916, abs=1e-4)
    finally:
        os.close(fd)


def test_runaway_call_is_killed(evaluate, tmp_path):
    """Spec 7.5: the parent kills the candidate's process; a thread timeout would not."""
    path = write_program(tmp_path, greedy=True, body="""
        import signal

        def compute_model_placement(gpu_num, models):
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            signal.signal(signal.SIGALRM, signal.SIG_IGN)
            if len(models) == 14:
                while True:
                    pass
            return _greedy.compute_model_placement(gpu_num, models)
    """)
    began = time.perf_counter()
    with pytest.raises(ValueError, match=r"^instance \d+: timeout: the call ran past the instance limit"):
        evaluate(path, instance_timeout_s=0.3)
    assert time.perf_counter() - began < 5
    # ADRS semantics: the killed instances are skipped, a fresh process takes the rest
    adrs = evaluate(path, semantics="adrs", instance_timeout_s=0.2)
    assert 0 < adrs.metrics["failed_instances"] < 50
    assert adrs.metrics["success_rate"] == 1 - adrs.metrics["failed_instances"] / 50


def test_evaluation_time_limit(evaluate, tmp_path):
    path = write_program(tmp_path, greedy=True, body="""
        import time

        def compute_model_placement(gpu_num, models):
            time.sleep(0.05)
            return _greedy.compute_model_placement(gpu_num, models)
    """)
    with pytest.raises(ValueError, match="timeout: the call ran past the evaluation limit"):
        evaluate(path, evaluation_timeout_s=0.5)


def test_exiting_process_and_load_failures(evaluate, tmp_path):
    path = write_program(tmp_path, "import os\n\ndef compute_model_placement(gpu_num, models):\n    os._exit(0)\n")
    with pytest.raises(RuntimeError, match="^instance 0: the program's process exited during the call$"):
        evaluate(path)
    path = write_program(tmp_path, "def place(gpu_num, models):\n    return {}\n")
    with pytest.raises(RuntimeError, match=r"cannot load program: .*does not define compute_model_placement"):
        evaluate(path)
    path = write_program(tmp_path, "def compute_model_placement(:\n")
    with pytest.raises(RuntimeError, match="cannot load program: SyntaxError"):
        evaluate(path)
    path = write_program(tmp_path, "raise SystemExit(3)\n")
    with pytest.raises(RuntimeError, match="cannot load program: SystemExit: 3"):
        evaluate(path)
    path = write_program(tmp_path, "def compute_model_placement(gpu_num, models):\n    raise ValueError('a\\nb')\n")
    with pytest.raises(RuntimeError, match="^instance 0: compute_model_placement raised ValueError: a b$"):
        evaluate(path)


def test_holdout_is_not_in_the_search_process(tmp_path):
    """Spec 7.6: no hold-out instance exists in the candidate's process on the search split.

    Run in a fresh interpreter, as the harness runs every evaluation (this test process has
    generated hold-out instances for other tests).
    """
    path = write_program(tmp_path, greedy=True, body="""
        import gc

        def compute_model_placement(gpu_num, models):
            for obj in gc.get_objects():
                if type(obj).__name__ == "Instance" and getattr(obj, "seed", 42) != 42:
                    raise RuntimeError(f"found a hold-out instance of seed {obj.seed}")
            return _greedy.compute_model_placement(gpu_num, models)
    """)
    script = ("import sys; sys.path.insert(0, sys.argv[1]); import evaluator; "
              "print(evaluator.evaluate(sys.argv[2]).metrics['combined_score'])")
    done = subprocess.run([sys.executable, "-c", script, str(PROBLEM), str(path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert float(done.stdout.split()[-1]) == pytest.approx(21.8916, abs=1e-4)


def test_memorised_search_instances_are_flagged_on_holdout(evaluate, tmp_path, problem):
    """Spec 7.6: good on the 50 known instances, careless elsewhere; the holdout report says so."""
    path = write_program(tmp_path, f"""
        import importlib.util as _u
        import numpy as np
        _s = _u.spec_from_file_location("_evolved", {str(EVOLVED)!r})
        _evolved = _u.module_from_spec(_s)
        _s.loader.exec_module(_evolved)

        def _known():
            rng = np.random.RandomState(42)
            seen = set()
            for _ in range(50):
                g = rng.randint(5, 10)
                seen.add(tuple(tuple(rng.randint(lo, hi) for lo, hi in ((10, 30), (1, 10), (5, 10)))
                               for _ in range(2 * g)))
            return seen

        KNOWN = _known()

        def compute_model_placement(gpu_num, models):
            key = tuple((m.model_size, m.req_rate, m.slo) for m in models)
            if key in KNOWN:
                return _evolved.compute_model_placement(gpu_num, models)
            placement = {{g: [] for g in range(gpu_num)}}  # first fit elsewhere
            for m in models:
                for g in range(gpu_num):
                    if sum(x.model_size for x in placement[g]) + m.model_size <= 80:
                        placement[g].append(m)
                        break
            return placement
    """)
    assert evaluate(path).metrics["combined_score"] == pytest.approx(25.7181, abs=1e-4)
    held = evaluate(path, split="holdout")
    assert held.metrics["combined_score"] < held.metrics["initial_combined_score"]
    assert "below the initial program's 20.9480" in held.artifacts["warnings"][-1]


def test_bound_check_flags_a_defective_scorer(problem, tmp_path):
    """Spec 7.8: a score above the valid bound is reported as an evaluator defect."""
    score = problem["prism_score"]
    score.max_kvpr = lambda gpus, inst: 1e-3  # simulate a broken scorer
    result = problem["evaluator"].evaluate(GREEDY)
    warnings = result.artifacts["warnings"]
    assert any("evaluator defect" in w for w in warnings)
    assert any("above the valid bound" in w for w in warnings)


# --- end to end ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_cli_run_and_eval(tmp_path, capsys):
    from sysevolve.cli import main

    assert main(["run", "prism", "--iterations", "20", "--out", str(tmp_path / "r"), "--seed", "0"]) == 0
    capsys.readouterr()
    assert main(["status", str(tmp_path / "r"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["iterations"] == 20
    assert info["initial_score"] == pytest.approx(21.8916, abs=1e-4)
    assert main(["eval", "prism", str(EVOLVED)]) == 0
    out = capsys.readouterr().out
    assert "combined_score" in out and "25.718" in out
