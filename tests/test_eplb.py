"""Tests of the eplb problem: balancer goldens, generator, loader, evaluator and its hardening."""

from __future__ import annotations

import hashlib
import importlib
import json
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PROBLEM = REPO / "src" / "sysevolve" / "problems" / "eplb"
DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"
REAL_FILE = DATA_DIR / "eplb" / "expert-load.json"
MODULES = ("evaluator", "eplb_sim", "eplb_workloads", "eplb_reference")
BASELINE_B_GPU = 0.686926  # synthetic seed 0, spec section 5
TINY_W = [90, 10, 40, 30, 20, 60, 5, 45]
TINY_NEXT = [80, 20, 40, 30, 20, 50, 10, 50]


@pytest.fixture
def problem(monkeypatch):
    """The problem folder on sys.path with fresh imports of its modules."""
    monkeypatch.delenv("SYSEVOLVE_DATA", raising=False)
    for name in MODULES + ("initial_program",):
        sys.modules.pop(name, None)
    sys.path.insert(0, str(PROBLEM))
    try:
        mods = {name: importlib.import_module(name) for name in MODULES}
        mods["initial"] = importlib.import_module("initial_program")
        yield mods
    finally:
        sys.path.remove(str(PROBLEM))
        for name in MODULES + ("initial_program",):
            sys.modules.pop(name, None)


def load_program(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.rebalance_experts


def write_program(tmp_path, body: str, name: str = "candidate.py") -> Path:
    """A candidate: `body` after the initial program's code (its rebalance_experts as `honest`)."""
    initial = (PROBLEM / "initial_program.py").read_text()
    path = tmp_path / name
    path.write_text(initial + "\n\nhonest = rebalance_experts\n\n" + textwrap.dedent(body))
    return path


def digest(array) -> str:
    return hashlib.blake2b(np.ascontiguousarray(array).tobytes(), digest_size=8).hexdigest()


# --- the hierarchical balancer and the simulator: tiny goldens ------------------------------------

def test_tiny_case_a(problem):
    sim = problem["eplb_sim"]
    phy2log, log2phy, logcnt = problem["initial"].rebalance_experts(np.array([TINY_W]), 12, 4, 2, 4)
    assert phy2log.tolist() == [[7, 0, 6, 0, 0, 1, 5, 5, 2, 3, 4, 2]]
    assert logcnt.tolist() == [[3, 1, 2, 1, 1, 2, 1, 1]]
    assert log2phy.shape == (1, 8, 5)
    firsts = {0: [3, 4, 1], 1: [5], 2: [11, 8], 3: [9], 4: [10], 5: [6, 7], 6: [2], 7: [0]}
    for e, slots in firsts.items():
        assert log2phy[0, e].tolist() == slots + [-1] * (5 - len(slots))
    counts = sim.validate(phy2log, log2phy, logcnt, 8)
    b_gpu, b_slot = sim.step_balance(phy2log, counts, np.array([TINY_W]), 4)
    assert (b_slot, b_gpu) == pytest.approx((0.555556, 0.937500), abs=1e-6)
    loads = sim.slot_loads(phy2log, counts, np.array([TINY_NEXT]))
    assert loads[0] == pytest.approx([50, 26.667, 10, 26.667, 26.667, 20, 25, 25, 20, 30, 20, 20],
                                     abs=1e-3)
    b_gpu, b_slot = sim.step_balance(phy2log, counts, np.array([TINY_NEXT]), 4)
    assert (b_slot, b_gpu) == pytest.approx((0.500000, 0.865385), abs=1e-6)


def test_tiny_case_b_global_policy(problem):
    phy2log, log2phy, logcnt = problem["initial"].rebalance_experts(np.array([TINY_W]), 12, 4, 3, 3)
    assert phy2log.tolist() == [[2, 5, 7, 6, 0, 5, 0, 1, 3, 0, 7, 4]]
    assert logcnt.tolist() == [[3, 1, 1, 1, 1, 2, 1, 2]]
    problem["eplb_sim"].validate(phy2log, log2phy, logcnt, 8)


def test_loops_baseline_matches_the_initial_program(problem):
    loops = load_program(PROBLEM / "baselines" / "hierarchical_loops.py", "_eplb_loops")
    fast = problem["initial"].rebalance_experts
    windows = problem["eplb_workloads"].synthetic_windows(0, windows=2)
    cases = [(w, 288, 8, 4, 32) for w in windows]
    cases += [(np.array([TINY_W]), 12, 4, 2, 4), (np.array([TINY_W]), 12, 4, 3, 3)]
    for case in cases:
        for a, b in zip(loops(*case), fast(*case)):
            assert np.array_equal(a, b)


def test_zero_load_scores_zero(problem):
    sim, initial = problem["eplb_sim"], problem["initial"]
    placement = initial.rebalance_experts(np.array([TINY_W]), 12, 4, 2, 4)
    counts = sim.validate(*placement, 8)
    assert sim.step_balance(placement[0], counts, np.zeros((1, 8), np.int64), 4) == (0.0, 0.0)


# --- data ---------------------------------------------------------------------------------------

def test_synthetic_windows(problem):
    workloads = problem["eplb_workloads"]
    windows = list(workloads.synthetic_windows(0))
    assert len(windows) == 24
    for w in windows:
        assert w.shape == (58, 256) and w.dtype == np.int64
        assert (w.sum(axis=1) == 1_048_576).all()
    again = next(workloads.synthetic_windows(0))
    assert np.array_equal(again, windows[0])
    assert not np.array_equal(next(workloads.synthetic_windows(1)), windows[0])


def test_split_streams(problem):
    workloads = problem["eplb_workloads"]
    assert [(s.name, s.steps) for s in workloads.split_streams("search")] == [("seed0", 23)]
    assert [(s.name, s.steps) for s in workloads.split_streams("holdout")] == [("seed1", 23),
                                                                                ("seed2", 23)]
    real = np.arange(23 * 2 * 4).reshape(23, 2, 4)
    assert [(s.name, s.steps) for s in workloads.split_streams("search", real)] == [("real", 22)]
    search = workloads.split_streams("search", real, real_holdout=True)
    holdout = workloads.split_streams("holdout", real, real_holdout=True)
    assert [(s.name, s.steps) for s in search] == [("real", 17)]
    assert [(s.name, s.steps) for s in holdout][-1] == ("real_holdout", 4)
    seen = list(search[0].windows()) + list(holdout[-1].windows())
    assert np.array_equal(np.stack(seen), real)  # disjoint, in order, nothing left out
    with pytest.raises(ValueError, match="unknown split 'test'"):
        workloads.split_streams("test")


def write_load_history(path: Path, records) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"load_history": [{"logical_expert_load": r.tolist()}
                                                 for r in records]}))


def test_real_loader_format(problem, tmp_path):
    workloads = problem["eplb_workloads"]
    rng = np.random.default_rng(5)
    records = rng.integers(0, 50, size=(250, 3, 4))
    path = tmp_path / "eplb" / "expert-load.json"
    write_load_history(path, records)
    windows = workloads.parse_real(path)
    assert windows.shape == (3, 3, 4)  # 100 + 100 + 50 records
    for k, (a, b) in enumerate([(0, 100), (100, 200), (200, 250)]):
        assert np.array_equal(windows[k], records[a:b].sum(axis=0))
    cache = tmp_path / "cache"
    assert np.array_equal(workloads.load_real(path, cache_dir=cache), windows)
    assert len(list(cache.glob("windows-*.npy"))) == 1
    assert np.array_equal(workloads.load_real(path, cache_dir=cache), windows)  # from the cache
    write_load_history(path, records[:99])
    with pytest.raises(ValueError, match="1 window"):
        workloads.parse_real(path)
    path.write_text('{"load_history": [{"logical_expert_load": [[1, 2]]}, '
                    '{"logical_expert_load": [[1, 2, 3]]}]}')
    with pytest.raises(ValueError, match="record 1 has a bad logical_expert_load"):
        workloads.parse_real(path)


def test_evaluate_with_a_real_format_file(problem, tmp_path, monkeypatch):
    """A made-up file in the real layout (the real one is not shipped) flows through evaluate."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    rng = np.random.default_rng(3)
    write_load_history(tmp_path / "data" / "eplb" / "expert-load.json",
                       rng.integers(0, 1000, size=(201, 2, 256)))
    evaluate = problem["evaluator"].evaluate
    result = evaluate(PROBLEM / "initial_program.py", data_dir=tmp_path / "data", timing_repeats=1)
    assert result.artifacts["streams"] == {"real": 2}
    assert result.artifacts["data"].endswith("expert-load.json")
    assert 0 < result.metrics["b_gpu"] <= 1
    assert result.metrics["b_gpu"] == result.metrics["b_gpu_baseline"]
    assert len(list((tmp_path / "cache").rglob("windows-*.npy"))) == 1
    monkeypatch.setenv("SYSEVOLVE_DATA", str(tmp_path / "data"))
    again = evaluate(PROBLEM / "initial_program.py", timing_repeats=1)
    assert again.metrics["b_gpu"] == result.metrics["b_gpu"]
    with pytest.raises(FileNotFoundError, match="real workload not found"):
        evaluate(PROBLEM / "initial_program.py", data_dir=tmp_path / "nowhere")


def test_real_file_with_the_wrong_shape(problem, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    write_load_history(tmp_path / "eplb" / "expert-load.json", np.ones((150, 2, 100), np.int64))
    with pytest.raises(ValueError, match="windows of 100 experts do not fit 8 groups"):
        problem["evaluator"].evaluate(PROBLEM / "initial_program.py", data_dir=tmp_path)


def test_reference_process_failures(problem):
    reference = problem["eplb_reference"]

    def replies():
        yield "first"
        raise ValueError("generator broke")

    with reference.Reference(replies()) as ref:
        assert ref.next() == "first"
        with pytest.raises(reference.ReferenceFailed,
                           match="the reference process failed: ValueError: generator broke"):
            ref.next()
        with pytest.raises(reference.ReferenceFailed, match="went away"):
            ref.next()


def test_real_file(problem):
    if not REAL_FILE.is_file():
        pytest.skip(f"real workload not found at {REAL_FILE}; skipping real-data test")
    windows = problem["eplb_workloads"].load_real(REAL_FILE)
    assert windows.ndim == 3 and windows.shape[1:] == (58, 256) and len(windows) >= 20
    result = problem["evaluator"].evaluate(PROBLEM / "initial_program.py", data_dir=DATA_DIR)
    assert result.artifacts["streams"] == {"real": len(windows) - 1}
    assert 0.5 < result.metrics["b_gpu"] < 0.9  # the paper reports 0.66 on real traffic


# --- evaluator: goldens on the synthetic workloads -----------------------------------------------

def test_initial_program_search(problem):
    result = problem["evaluator"].evaluate(PROBLEM / "initial_program.py")
    m = result.metrics
    assert m["b_slot"] == pytest.approx(0.200833, abs=1e-5)
    assert m["b_gpu"] == pytest.approx(BASELINE_B_GPU, abs=5e-4)
    assert m["b_gpu"] == m["b_gpu_baseline"]
    assert m["t_cand"] > 0 and m["t_base"] > 0
    assert m["speedup"] == pytest.approx(m["t_base"] / m["t_cand"])
    speed_term = 0.05 * min(max(np.log2(m["speedup"]), -2), 4)
    assert m["combined_score"] == pytest.approx(m["b_gpu"] + speed_term)
    assert result.artifacts["speed_credit"] is True
    assert result.artifacts["streams"] == {"seed0": 23}
    assert "warnings" not in result.artifacts


def test_no_replication_goldens_and_no_speed_credit(problem):
    """Spec 7.5: a faster program with worse balance gets no speed credit."""
    result = problem["evaluator"].evaluate(PROBLEM / "baselines" / "no_replication.py",
                                           timing_repeats=1)
    m = result.metrics
    assert (m["b_slot"], m["b_gpu"]) == pytest.approx((0.159195, 0.417839), abs=1e-5)
    assert m["speedup"] > 1  # it is faster ...
    assert m["combined_score"] == m["b_gpu"]  # ... and earns nothing for it
    assert result.artifacts["speed_credit"] is False
    assert any("no speed credit" in w for w in result.artifacts["warnings"])


def test_holdout_goldens(problem):
    result = problem["evaluator"].evaluate(PROBLEM / "initial_program.py", split="holdout",
                                           timing_repeats=1)
    m = result.metrics
    assert result.artifacts["streams"] == {"seed1": 23, "seed2": 23}
    assert m["b_slot_seed1"] == pytest.approx(0.198328, abs=1e-5)
    assert m["b_gpu_seed1"] == pytest.approx(0.687560, abs=5e-4)
    assert m["b_slot_seed2"] == pytest.approx(0.199261, abs=1e-5)
    assert m["b_gpu_seed2"] == pytest.approx(0.686482, abs=5e-4)
    assert m["b_gpu"] == pytest.approx((m["b_gpu_seed1"] + m["b_gpu_seed2"]) / 2)


def test_adrs_semantics(problem, tmp_path):
    evaluate = problem["evaluator"].evaluate
    m = evaluate(PROBLEM / "initial_program.py", semantics="adrs").metrics
    assert m["balancedness_score"] == pytest.approx(0.200833, abs=1e-5)
    assert m["speed_score"] == pytest.approx(0.02 / m["mean_step_s"])
    assert m["combined_score"] == pytest.approx((m["balancedness_score"] + m["speed_score"]) / 2)
    # Under ADRS a missing function or an exception scores 0 instead of failing.
    missing = tmp_path / "missing.py"
    missing.write_text("def rebalance(weight):\n    return None\n")
    result = evaluate(missing, semantics="adrs")
    assert result.metrics["combined_score"] == 0
    assert "Missing `rebalance_experts`" in result.artifacts["error"]
    with pytest.raises(ValueError, match="unknown semantics 'paper'"):
        evaluate(PROBLEM / "initial_program.py", semantics="paper")


def test_program_layout(problem):
    code = (PROBLEM / "initial_program.py").read_text()
    head, rest = code.split("# EVOLVE-BLOCK-START\n")
    region, tail = rest.split("# EVOLVE-BLOCK-END\n")
    assert "import numpy as np" in region and "def rebalance_experts(weight, num_replicas" in region
    assert tail.strip() == "" and "import" not in head
    assert (PROBLEM / "baselines" / "hierarchical.py").read_text() == code
    config = yaml.safe_load((PROBLEM / "problem.yaml").read_text())
    assert config["name"] == "eplb" and config["splits"] == ["search", "holdout"]
    assert (config["metric"], config["direction"]) == ("combined_score", "maximize")


# --- hardening 7.1: validation ------------------------------------------------------------------

INVALID = {
    # ADRS scores this per-slot balance 1.0: every expert claims every slot.
    "overclaim": ("""
        p, q, c = honest(weight, *args)
        q = np.tile(np.arange(args[0]), (*c.shape, 1))
        return p, q, np.full_like(c, args[0])""",
        "seed0 step 0: layer 0: logcnt of expert 0 is 288 but"),
    "drop_hot_expert": ("""
        p, q, c = honest(weight, *args)
        hot = weight.argmax(axis=1)
        rows = np.arange(len(c))
        c[rows, hot] = 0
        q[rows, hot] = -1
        return p, q, c""", "logcnt of expert"),
    "expert_on_no_slot": ("""
        p, q, c = honest(weight, *args)
        p[p == 0] = 1
        return p, q, c""", "layer 0: expert 0 is on no slot"),
    "duplicate_slot_ids": ("""
        p, q, c = honest(weight, *args)
        e = int(np.argmax(c[0]))
        q[0, e, 1] = q[0, e, 0]
        return p, q, c""", "layer 0: log2phy lists slot"),
    "minus_one_id": ("""
        p, q, c = honest(weight, *args)
        e = int(np.argmax(c[0]))
        q[0, e, 0] = -1
        return p, q, c""", "lists -1, not a slot in 0..287"),
    "out_of_range_slot": ("""
        p, q, c = honest(weight, *args)
        q[0, 0, 0] = 288
        return p, q, c""", "lists 288, not a slot in 0..287"),
    "expert_out_of_range": ("""
        p, q, c = honest(weight, *args)
        p[0, 0] = 256
        return p, q, c""", "layer 0: slot 0 holds expert 256, outside 0..255"),
    "float_ids": ("""
        p, q, c = honest(weight, *args)
        return p.astype(float), q, c""", "phy2log has dtype float64"),
    "bool_counts": ("""
        p, q, c = honest(weight, *args)
        return p, q, c > 0""", "logcnt has dtype bool"),
    "nan": ("""
        p, q, c = honest(weight, *args)
        p = p.astype(float)
        p[0, 0] = float("nan")
        return p.tolist(), q, c""", "phy2log has dtype float64"),
    "ragged_list": ("""
        p, q, c = honest(weight, *args)
        rows = p.tolist()
        rows[0] = rows[0][:-1]
        return rows, q, c""", "phy2log is not an array"),
    "short_log2phy": ("""
        p, q, c = honest(weight, *args)
        return p, q[:, :, :1], c""", "log2phy lists 1 slots per expert"),
    "wrong_shape": ("""
        p, q, c = honest(weight, *args)
        return p[:, :-1], q, c""", "expert"),
    "not_a_tuple": ("""
        return dict(zip("abc", honest(weight, *args)))""", "returned dict"),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_placements_are_rejected(problem, tmp_path, case):
    body, reason = INVALID[case]
    path = write_program(tmp_path, "def rebalance_experts(weight, *args):" + textwrap.indent(
        textwrap.dedent(body), "    ") + "\n")
    with pytest.raises(ValueError) as info:
        problem["evaluator"].evaluate(path, timing_repeats=1, max_steps=1)
    message = str(info.value)
    assert reason in message and "\n" not in message


def literal_adrs_balance(log2phy, logcnt, window, slots):
    """The ADRS simulation as its loop reads, for checking the vectorised one."""
    total = np.zeros((window.shape[0], slots))
    for layer in range(window.shape[0]):
        for expert in range(window.shape[1]):
            load, count = int(window[layer, expert]), int(logcnt[layer, expert])
            if load > 0 and count > 0:
                total[layer, log2phy[layer, expert, :count]] += load / count
    return float(total.mean(axis=1).sum() / total.max(axis=1).sum())


def test_adrs_simulation_quirks(problem):
    sim = problem["eplb_sim"]
    window, upcoming = (w[:6] for w in problem["eplb_workloads"].synthetic_windows(0, windows=2))
    _, q, c = problem["initial"].rebalance_experts(window, 288, 8, 4, 32)
    duplicated, minus_one, dropped = q.copy(), q.copy(), c.copy()
    duplicated[:, :, 1] = duplicated[:, :, 0]
    minus_one[0, :5, 0] = -1
    dropped[:, :10] = 0
    sparse = upcoming.copy()
    sparse[:, ::3] = 0
    for log2phy, logcnt, w in [(q, c, upcoming), (duplicated, c, upcoming),
                               (minus_one, c, upcoming), (q, dropped, upcoming),
                               (q, c + 40, upcoming), (q, c, sparse)]:
        assert sim.adrs_slot_balance(log2phy, logcnt, w, 288) == pytest.approx(
            literal_adrs_balance(log2phy, logcnt, w, 288), abs=1e-6)
    with pytest.raises(IndexError):
        sim.adrs_slot_balance(q + 1000, c, upcoming, 288)
    with pytest.raises(IndexError):
        sim.adrs_slot_balance(q.astype(float), c, upcoming, 288)


def test_adrs_evaluator_is_fooled_by_overclaiming(problem):
    """Why 7.1 exists: the ADRS scoring gives the over-claiming placement a perfect 1.0."""
    sim = problem["eplb_sim"]
    window = next(problem["eplb_workloads"].synthetic_windows(0))
    log2phy = np.tile(np.arange(288), (4, 256, 1))
    assert sim.adrs_slot_balance(log2phy, np.full((4, 256), 288), window[:4], 288) == \
        pytest.approx(1.0, abs=1e-5)
    honest = problem["initial"].rebalance_experts(window, 288, 8, 4, 32)
    assert sim.adrs_slot_balance(honest[1], honest[2], window, 288) < 0.5


def test_valid_alternative_forms_are_accepted(problem, tmp_path):
    """Nested lists, narrow or unsigned ints and a narrower log2phy (X = max count) are valid."""
    path = write_program(tmp_path, """
        def rebalance_experts(weight, *args):
            p, q, c = honest(weight, *args)
            return p.tolist(), q[:, :, :int(c.max())].astype(np.int16), c.astype(np.uint8)
    """)
    m = problem["evaluator"].evaluate(path, timing_repeats=1, max_steps=3).metrics
    assert m["b_gpu"] == m["b_gpu_baseline"]


# --- hardening 7.2 and 7.3: no foresight, inputs are copies ------------------------------------

def test_no_future_window_in_reach(problem, tmp_path):
    """The program walks the stack and the garbage collector for windows and generators."""
    log = tmp_path / "seen.txt"
    path = write_program(tmp_path, f"""
        import gc, hashlib, sys, types

        CALLS = [0]

        def _digest(a):
            return hashlib.blake2b(np.ascontiguousarray(a).tobytes(), digest_size=8).hexdigest()

        def _scan(value, shape, found, generators):
            if isinstance(value, np.ndarray) and value.shape == shape:
                found.add(_digest(value))
            elif isinstance(value, np.random.Generator):
                generators.append(value)

        def rebalance_experts(weight, *args):
            CALLS[0] += 1
            found, generators = set(), []
            frame = sys._getframe(1)
            while frame is not None:
                for value in list(frame.f_locals.values()):
                    _scan(value, weight.shape, found, generators)
                frame = frame.f_back
            if CALLS[0] in (2, 3):  # steps 0 and 1; the full heap scan is slow
                for obj in gc.get_objects():
                    _scan(obj, weight.shape, found, generators)
                    if isinstance(obj, types.GeneratorType) and obj.gi_frame is not None:
                        for value in obj.gi_frame.f_locals.values():
                            _scan(value, weight.shape, found, generators)
                    elif isinstance(obj, (list, tuple)):
                        for value in obj:
                            _scan(value, weight.shape, found, generators)
                    elif isinstance(obj, dict):
                        for value in list(obj.values()):
                            _scan(value, weight.shape, found, generators)
            with open({str(log)!r}, "a") as f:
                f.write(" ".join([_digest(weight), str(len(generators))] + sorted(found)) + "\\n")
            return honest(weight, *args)
    """)
    m = problem["evaluator"].evaluate(path, timing_repeats=1, max_steps=4).metrics
    assert m["b_gpu"] == m["b_gpu_baseline"]
    index = {digest(w): i for i, w in enumerate(problem["eplb_workloads"].synthetic_windows(0))}
    lines = [line.split() for line in log.read_text().splitlines()]
    assert len(lines) == 5  # the warm-up call and 4 steps
    for line in lines[1:]:
        now, generators, found = index[line[0]], int(line[1]), line[2:]
        assert generators == 0
        assert all(index.get(d, -1) <= now for d in found), "a future window was reachable"


def test_generator_module_is_not_importable(problem, tmp_path):
    """The naive foresight: regenerate the public search windows with the shipped generator."""
    path = write_program(tmp_path, """
        try:
            import eplb_workloads
            WINDOWS = [w for w in eplb_workloads.synthetic_windows(0)]
        except ImportError:
            WINDOWS = None

        def rebalance_experts(weight, *args):
            for i, w in enumerate(WINDOWS or []):
                if np.array_equal(w, weight) and i + 1 < len(WINDOWS):
                    return honest(WINDOWS[i + 1], *args)  # the placement for the next window
            return honest(weight, *args)
    """)
    m = problem["evaluator"].evaluate(path, timing_repeats=1, max_steps=3).metrics
    assert m["b_gpu"] == m["b_gpu_baseline"]  # no better than honest
    assert "eplb_workloads" in sys.modules  # restored for the evaluator's caller


def test_inputs_are_copies(problem, tmp_path):
    """Editing the input or any window the program can find changes no score, now or later."""
    path = write_program(tmp_path, """
        import sys

        def rebalance_experts(weight, *args):
            result = honest(weight, *args)
            weight[:] = 1  # a uniform window would balance perfectly
            frame = sys._getframe(1)
            while frame is not None:
                for value in list(frame.f_locals.values()):
                    if isinstance(value, np.ndarray) and value.shape == weight.shape:
                        value.setflags(write=True)
                        value[:] = 1
                frame = frame.f_back
            return result
    """)
    evaluate = problem["evaluator"].evaluate
    m = evaluate(path, timing_repeats=1, max_steps=3).metrics
    assert m["b_gpu"] == m["b_gpu_baseline"]
    again = evaluate(PROBLEM / "initial_program.py", timing_repeats=1, max_steps=3).metrics
    assert again["b_gpu"] == m["b_gpu"]  # nothing poisoned


# --- hardening 7.4 and 7.8: time --------------------------------------------------------------

TIMING_HACKS = {
    "patched_clocks": """
        import time

        def _frozen(*a):
            return 0.0

        for _name in ("perf_counter", "monotonic", "process_time", "time", "thread_time"):
            setattr(time, _name, _frozen)
        for _name in ("perf_counter_ns", "monotonic_ns", "process_time_ns", "time_ns"):
            setattr(time, _name, lambda: 0)

        def rebalance_experts(weight, *args):
            return honest(weight, *args)
    """,
    "cached_repeats": """
        _LAST = {}

        def rebalance_experts(weight, *args):
            key = weight.tobytes()
            if key not in _LAST:
                _LAST.clear()
                _LAST[key] = honest(weight, *args)
            return _LAST[key]
    """,
    "slowed_reference": """
        import time

        _argsort, _take = np.argsort, np.take_along_axis

        def _slow(fn):
            def wrapper(*a, **k):
                time.sleep(0.005)
                return fn(*a, **k)
            return wrapper

        np.argsort, np.take_along_axis = _slow(_argsort), _slow(_take)

        def rebalance_experts(weight, *args):
            np.argsort, np.take_along_axis = _argsort, _take
            try:
                return honest(weight, *args)
            finally:
                np.argsort, np.take_along_axis = _slow(_argsort), _slow(_take)
    """,
}


@pytest.mark.parametrize("case", sorted(TIMING_HACKS))
def test_timing_hacks_gain_nothing(problem, tmp_path, monkeypatch, case):
    # The program really patches this process's modules: restore them after the test.
    for name in dir(time):
        monkeypatch.setattr(time, name, getattr(time, name))
    for name in ("argsort", "take_along_axis"):
        monkeypatch.setattr(np, name, getattr(np, name))
    path = write_program(tmp_path, TIMING_HACKS[case])
    m = problem["evaluator"].evaluate(path, timing_repeats=2, max_steps=10).metrics
    assert m["b_gpu"] == m["b_gpu_baseline"]
    # Working hacks would give 3x (slowed reference) to 1000x; honest noise stays well below 1.6.
    assert m["t_cand"] > 0.02 and m["speedup"] < 1.6
    assert m["combined_score"] < m["b_gpu"] + 0.05 * np.log2(1.6)


def test_slowness_always_costs(problem, tmp_path):
    path = write_program(tmp_path, """
        import time

        def rebalance_experts(weight, *args):
            time.sleep(0.03)
            return honest(weight, *args)
    """)
    m = problem["evaluator"].evaluate(path, timing_repeats=1, max_steps=5).metrics
    assert m["speedup"] < 0.5
    assert m["combined_score"] < m["b_gpu"] - 0.04


def test_lazy_outputs_are_timed(problem, tmp_path):
    """Spec 7.8: work hidden in an array-like's conversion still counts."""
    path = write_program(tmp_path, """
        import time

        class Lazy:
            def __init__(self, value):
                self.value = value

            def __array__(self, dtype=None, copy=None):
                time.sleep(0.01)
                return self.value

        def rebalance_experts(weight, *args):
            return tuple(Lazy(x) for x in honest(weight, *args))
    """)
    m = problem["evaluator"].evaluate(path, timing_repeats=1, max_steps=5).metrics
    assert m["b_gpu"] == m["b_gpu_baseline"]
    assert m["speedup"] < 0.5


def test_background_threads_are_rejected(problem, tmp_path):
    """Spec 7.8: a placeholder returned at once and filled in later by a thread."""
    path = write_program(tmp_path, """
        import threading, time

        def rebalance_experts(weight, *args):
            p, q, c = honest(weight, *args)
            def fill():
                time.sleep(0.2)
            threading.Thread(target=fill).start()
            return p, q, c
    """)
    with pytest.raises(ValueError, match=r"seed0 step 0: the program left 1 thread\(s\) running"):
        problem["evaluator"].evaluate(path, timing_repeats=1)
    path = write_program(tmp_path, """
        import threading, time

        threading.Thread(target=time.sleep, args=(0.5,)).start()
    """)
    with pytest.raises(ValueError, match=r"after loading the program: the program left 1 thread"):
        problem["evaluator"].evaluate(path, timing_repeats=1)


# --- hardening 7.6 and 7.7: feedback and holdout ------------------------------------------------

def test_workload_never_echoed(problem, tmp_path, capfd):
    evaluate = problem["evaluator"].evaluate
    path = write_program(tmp_path, """
        import os, sys

        def rebalance_experts(weight, *args):
            print("WINDOW", weight.tolist())
            sys.stderr.write("WINDOW " + str(weight.sum(axis=1).tolist()) + "\\n")
            os.write(1, b"WINDOW raw\\n")
            return honest(weight, *args)
    """)
    result = evaluate(path, timing_repeats=1, max_steps=2)
    out, err = capfd.readouterr()
    assert "WINDOW" not in out + err
    artifacts = json.dumps(result.artifacts)
    assert len(artifacts) < 1000  # aggregates only
    path = write_program(tmp_path, """
        def rebalance_experts(weight, *args):
            raise ValueError(str(weight[0].tolist()))
    """)
    with pytest.raises(RuntimeError) as info:
        evaluate(path, timing_repeats=1)
    message = str(info.value)
    assert message.startswith(
        "warm-up call: rebalance_experts raised ValueError: <message withheld")
    assert "candidate.py line" in message and info.value.__cause__ is None
    honest_error = write_program(tmp_path, """
        def rebalance_experts(weight, *args):
            return np.zeros(3)[[5]]
    """)
    with pytest.raises(RuntimeError, match="IndexError: index 5 is out of bounds"):
        evaluate(honest_error, timing_repeats=1)


def test_memorised_literals_are_flagged(problem, tmp_path):
    table = list(range(300))
    path = write_program(tmp_path, f"""
        TABLE = {table!r}

        def rebalance_experts(weight, *args):
            return honest(weight, *args)
    """)
    result = problem["evaluator"].evaluate(path, timing_repeats=1, max_steps=1)
    assert result.artifacts["warnings"] == [
        "source embeds a literal sequence of 300 integers (memorised placements?)"]


def test_overfitting_to_search_is_flagged_on_holdout(problem, tmp_path):
    """Honest on the search windows it recognises, careless elsewhere: the holdout shows it."""
    known = [digest(w) for w in problem["eplb_workloads"].synthetic_windows(0)]
    path = write_program(tmp_path, f"""
        import hashlib

        KNOWN = set({known!r})

        def rebalance_experts(weight, *args):
            key = hashlib.blake2b(weight.tobytes(), digest_size=8).hexdigest()
            if key in KNOWN:
                return honest(weight, *args)
            layers, experts = weight.shape
            p = np.concatenate([np.tile(np.arange(experts), (layers, 1)),
                                np.tile(np.arange(args[0] - experts), (layers, 1))], axis=1)
            c = np.bincount((np.arange(layers)[:, None] * experts + p).ravel(),
                            minlength=layers * experts).reshape(layers, experts)
            q = np.full((layers, experts, 2), -1)
            q[:, :, 0] = np.arange(experts)
            q[:, :args[0] - experts, 1] = np.arange(experts, args[0])
            return p, q, c
    """)
    result = problem["evaluator"].evaluate(path, split="holdout", timing_repeats=1, max_steps=3)
    assert result.metrics["b_gpu"] < result.metrics["b_gpu_baseline"] - 0.1
    assert any("on the holdout split is below the hierarchical baseline" in w
               for w in result.artifacts["warnings"])


# --- failures and the command line ------------------------------------------------------------

def test_crashes_and_missing_function(problem, tmp_path):
    evaluate = problem["evaluator"].evaluate
    path = tmp_path / "p.py"
    path.write_text("def rebalance(weight):\n    return None\n")
    with pytest.raises(ValueError, match="does not define rebalance_experts"):
        evaluate(path)
    path.write_text("def rebalance_experts(:\n")
    with pytest.raises(RuntimeError, match="cannot load program: SyntaxError"):
        evaluate(path)
    path.write_text("def rebalance_experts(*a):\n    raise SystemExit(3)\n")
    with pytest.raises(RuntimeError, match="warm-up call: rebalance_experts raised SystemExit: 3"):
        evaluate(path)
    with pytest.raises(ValueError, match="timing_repeats must be at least 1"):
        evaluate(PROBLEM / "initial_program.py", timing_repeats=0)
    with pytest.raises(ValueError, match="max_steps must be at least 1"):
        evaluate(PROBLEM / "initial_program.py", max_steps=0)
    with pytest.raises(ValueError, match="unknown split"):
        evaluate(PROBLEM / "initial_program.py", split="test")


@pytest.mark.slow
def test_cli_run_and_eval(tmp_path, capsys):
    from sysevolve.cli import main

    assert main(["run", "eplb", "--iterations", "20", "--out", str(tmp_path / "r"),
                 "--seed", "0"]) == 0
    capsys.readouterr()
    assert main(["eval", "eplb", str(PROBLEM / "baselines" / "no_replication.py")]) == 0
    out = capsys.readouterr().out
    assert "b_gpu" in out and "0.417839" in out and "combined_score" in out
