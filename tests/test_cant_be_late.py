"""Tests of the cant_be_late problem: traces, simulator, golden values, hardening, end to end."""

from __future__ import annotations

import hashlib
import json
import textwrap
from pathlib import Path

import numpy as np
import pytest

from conftest import problem_modules
import yaml

REPO = Path(__file__).resolve().parents[1]
PROBLEM = REPO / "src" / "sysevolve" / "problems" / "cant_be_late"
DATA_DIR = REPO.parent / "shared" / "data"
ARCHIVE = DATA_DIR / "cant_be_late" / "real_traces.tar.gz"
ARCHIVE_SHA256 = "26813d4c6dbe0b60e3d0ff7dc264427a665736c6199aa48a8f0c8aba0437d503"
MODULES = ("evaluator", "cbl_api", "cbl_sim", "cbl_traces", "cbl_policies", "cbl_runner")
INITIAL = PROBLEM / "initial_program.py"
BASELINES = PROBLEM / "baselines"

SEARCH_FILES = [0, 107, 117, 126, 135, 145, 154, 163, 172, 182, 191, 20, 21, 219, 228, 238, 247,
                256, 266, 275, 284, 294, 33, 42, 51, 61, 70, 8, 9, 99]
SEARCH_OFFSETS = [684, 62, 1136, 623, 671, 37, 789, 142, 794, 511, 3, 474, 969, 764, 1168, 714, 747,
                  1184, 599, 570, 423, 789, 1044, 1126, 1022, 16, 214, 451, 382, 641]

needs_real = pytest.mark.skipif(
    not ARCHIVE.is_file(),
    reason=f"real trace archive not found at {ARCHIVE}; skipping golden-value test",
)


@pytest.fixture(scope="module")
def cbl():
    """The problem folder on sys.path with fresh imports of its modules."""
    with problem_modules(PROBLEM, MODULES) as modules:
        yield modules


@pytest.fixture(autouse=True)
def _synthetic_by_default(monkeypatch):
    """Tests choose real data explicitly; a SYSEVOLVE_DATA of the caller's shell is ignored."""
    monkeypatch.delenv("SYSEVOLVE_DATA", raising=False)


@pytest.fixture
def evaluate(cbl):
    return cbl["evaluator"].evaluate


def write_program(tmp_path, body: str, name: str = "candidate.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


GREEDY_BODY = '''
        gap = self.env.gap_seconds
        work_left = self.task_duration - sum(self.task_done_time)
        if work_left <= 1e-9:
            return ClusterType.NONE
        left = max(0, math.floor((self.deadline - self.env.elapsed_seconds) / gap))
        if math.ceil((work_left + self.restart_overhead) / gap) >= left:
            return ClusterType.ON_DEMAND
        if math.ceil((work_left + 2 * self.restart_overhead) / gap) >= left:
            if self.env.cluster_type == ClusterType.SPOT and has_spot:
                return ClusterType.SPOT
            return ClusterType.ON_DEMAND
        return ClusterType.SPOT if has_spot else ClusterType.NONE
'''


def greedy_program(tmp_path, before: str = "", after: str = "", head: str = "", name="candidate.py"):
    """The greedy seed with extra code before/after its decision (as `action`), for hostile tests."""
    decide = textwrap.indent(textwrap.dedent(GREEDY_BODY).strip("\n"), " " * 8)
    return write_program(tmp_path, f"""\
import math
from cbl_api import ClusterType, Strategy
{textwrap.dedent(head)}

class Hostile(Strategy):
    NAME = "greedy_safety"

    def _decide(self, has_spot):
{decide}
    def _step(self, last_cluster_type, has_spot):
{textwrap.indent(textwrap.dedent(before), "        ")}
        action = self._decide(has_spot)
{textwrap.indent(textwrap.dedent(after), "        ")}
        return action
""", name)


def vector_run(cbl, grid, policy: str, semantics: str = "hardened"):
    sim, policies = cbl["cbl_sim"], cbl["cbl_policies"]
    return sim.simulate(grid.traces, grid.duration, grid.deadline, grid.overhead,
                        policies.POLICIES[policy], semantics)


def stats(cost):
    return cost.mean(), cost.std(), -cost.mean() - 0.25 * cost.std()


# --- traces -------------------------------------------------------------------------------------

def test_synthetic_generator_goldens(cbl):
    traces = cbl["cbl_traces"]
    s0 = traces.synthetic(0)
    avail = [1 - s0.bases[env].mean() for env in traces.ENVIRONMENTS]
    assert avail == pytest.approx([0.946, 0.281, 0.654, 0.564], abs=1e-3)
    assert s0.offsets["us-west-2a_k80_1"][:5] == (319, 323, 37, 808, 1209)
    assert all(len(b) == 1781 for b in s0.bases.values())
    assert traces.synthetic(0).offsets == s0.offsets  # deterministic
    assert traces.synthetic(1).offsets != s0.offsets


def test_window_selection(cbl):
    traces = cbl["cbl_traces"]
    assert traces.search_files() == SEARCH_FILES
    holdout = traces.holdout_files()
    assert len(holdout) == 270 and not set(holdout) & set(SEARCH_FILES)
    assert sorted(holdout + SEARCH_FILES) == list(range(300))


def test_grid_shapes_and_splits(cbl):
    traces = cbl["cbl_traces"]
    grid, source = traces.split_grid("search")
    assert len(grid) == 1080 and grid.traces.shape == (1080, 554) and source.startswith("synthetic")
    assert sorted(set(grid.deadline / 3600)) == [52, 70, 92]
    assert sorted(set(np.round(grid.overhead / 3600, 6))) == [0.02, 0.2, 0.4]
    assert set(grid.duration) == {48 * 3600}
    holdout, _ = traces.split_grid("holdout")
    assert len(holdout) == 1080 and not np.array_equal(holdout.traces, grid.traces)
    assert len(traces.split_grid("all")[0]) == 2160
    assert len(traces.split_grid("search", limit=2)[0]) == 72
    with pytest.raises(ValueError, match="unknown split"):
        traces.split_grid("test")


@needs_real
def test_real_archive(cbl, tmp_path):
    traces = cbl["cbl_traces"]
    assert hashlib.sha256(ARCHIVE.read_bytes()).hexdigest() == ARCHIVE_SHA256
    real = traces.load_real(ARCHIVE, cache_dir=tmp_path)  # no cache there: reads the archive
    cached = traces.load_real(ARCHIVE, cache_dir=tmp_path)
    assert len(list(tmp_path.iterdir())) == 1 and cached.offsets == real.offsets
    assert all(np.array_equal(cached.bases[e], real.bases[e]) for e in traces.ENVIRONMENTS)
    avail = [1 - real.bases[env].mean() for env in traces.ENVIRONMENTS]
    assert avail == pytest.approx([0.954, 0.252, 0.687, 0.595], abs=1e-3)
    for env in traces.ENVIRONMENTS:
        assert [real.offsets[env][f] for f in SEARCH_FILES] == SEARCH_OFFSETS
    grid, source = traces.split_grid("holdout", DATA_DIR)
    assert len(grid) == 9720 and source == str(ARCHIVE)
    assert len(traces.split_grid("all", DATA_DIR)[0]) == 10800


def test_missing_data_dir_is_an_error(evaluate, tmp_path):
    with pytest.raises(FileNotFoundError, match="real trace archive not found"):
        evaluate(INITIAL, data_dir=tmp_path)


# --- simulator ----------------------------------------------------------------------------------

def test_prices(cbl):
    sim = cbl["cbl_sim"]
    assert sim.tick_cost(sim.ON_DEMAND) == pytest.approx(0.51)
    assert sim.tick_cost(sim.SPOT) == pytest.approx(0.16218, abs=1e-5)
    assert 288 * sim.tick_cost(sim.ON_DEMAND) == pytest.approx(146.88)
    assert 288 * sim.tick_cost(sim.SPOT) == pytest.approx(46.71, abs=5e-3)


@pytest.mark.parametrize("semantics", ["hardened", "adrs"])
def test_vectorised_simulator_matches_reference(cbl, semantics):
    """Random actions on 72 runs: the lockstep numpy simulator equals the one-run reference."""
    sim, traces = cbl["cbl_sim"], cbl["cbl_traces"]
    grid, _ = traces.split_grid("search", limit=2)
    rng = np.random.default_rng(5)
    bias = rng.random(len(grid))  # per-run mix of actions, from mostly NONE to mostly ON_DEMAND
    table = np.where(rng.random((len(grid), 554)) < bias[:, None], sim.SPOT,
                     rng.integers(0, 3, (len(grid), 554)))
    result = sim.simulate(grid.traces, grid.duration, grid.deadline, grid.overhead,
                          lambda b: table[b.ids, b.tick], semantics)
    for i in range(len(grid)):
        cost, finish = sim.simulate_run(grid.traces[i], grid.duration[i], grid.deadline[i],
                                        grid.overhead[i], lambda o: table[i, o["tick"]], semantics)
        assert (result.cost[i], result.finish[i]) == (cost, finish)


def test_hardened_override_never_misses_a_deadline(cbl):
    sim, traces = cbl["cbl_sim"], cbl["cbl_traces"]
    grid, _ = traces.split_grid("all")
    rng = np.random.default_rng(11)
    table = rng.choice([sim.NONE, sim.SPOT, sim.ON_DEMAND], p=[0.3, 0.6, 0.1], size=(len(grid), 554))
    late = {s: sim.simulate(grid.traces, grid.duration, grid.deadline, grid.overhead,
                            lambda b: table[b.ids, b.tick], s).late(grid.deadline).sum()
            for s in ("hardened", "adrs")}
    assert late["hardened"] == 0 and late["adrs"] > 0  # the ADRS hole is real, and closed


def test_configuration_errors(cbl):
    sim = cbl["cbl_sim"]
    trace = np.zeros((1, 554), dtype=np.uint8)
    with pytest.raises(ValueError, match="exceeds the deadline"):
        sim.simulate(trace, [48 * 3600], [48 * 3600], [720], lambda b: np.zeros(1, int))
    with pytest.raises(ValueError, match="traces have 100 ticks"):
        sim.simulate(trace[:, :100], [48 * 3600], [52 * 3600], [72], lambda b: np.zeros(1, int))
    with pytest.raises(ValueError, match="unknown semantics"):
        sim.simulate(trace, [48 * 3600], [52 * 3600], [72], lambda b: np.zeros(1, int), "lax")


def test_late_finish_is_invalid_under_hardened(cbl):
    ev, sim, traces = cbl["evaluator"], cbl["cbl_sim"], cbl["cbl_traces"]
    grid, _ = traces.split_grid("search", limit=1)
    finish = grid.deadline.copy()
    finish[5] += 90  # 1.5 minutes late
    late = sim.Result(np.zeros(len(grid)), finish, np.zeros((len(grid), 3), int))
    with pytest.raises(ValueError, match=r"run 5 \(.*\): finished 1.5 min after the deadline"):
        ev.check_deadlines(late, grid)


def test_sharded_policy_processes(cbl, tmp_path):
    """Large splits run the candidate in two processes: same decisions, global run numbers."""
    sim, runner, traces = cbl["cbl_sim"], cbl["cbl_runner"], cbl["cbl_traces"]
    grid, _ = traces.split_grid("search", limit=2)
    with runner.PolicyPool(INITIAL, 60, len(grid), shards=2) as pool:
        assert [p.first_run for p in pool.procs] == [0, 36]
        pool.start(grid.duration, grid.deadline, grid.overhead, sim.GAP_S)

        def policy(batch):
            pool.send(batch)
            return pool.receive()

        result = sim.simulate(grid.traces, grid.duration, grid.deadline, grid.overhead, policy)
    assert np.array_equal(result.cost, vector_run(cbl, grid, "greedy_seed").cost)
    path = greedy_program(tmp_path, before="""
        if self.task_duration == 7.0:
            raise KeyError("seven")
    """)
    duration = np.array([1.0, 2, 3, 4, 7, 5])
    with runner.PolicyPool(path, 60, 6, shards=2) as pool:
        pool.start(duration, duration + 700, duration, sim.GAP_S)
        batch = sim.Batch(0, 0.0, 600.0, np.arange(6), np.ones(6, bool), *np.zeros((4, 6)),
                          duration, duration + 700, duration)
        pool.send(batch)
        reason = r"^run 4, tick 0: _step raised KeyError: 'seven'$"
        with pytest.raises(runner.PolicyError, match=reason) as info:
            pool.receive()
    assert info.value.run == 4


# --- golden values: synthetic (regression) ------------------------------------------------------

def test_initial_program_synthetic_search(evaluate, cbl):
    result = evaluate(INITIAL)
    m = result.metrics
    assert (m["avg_cost"], m["cost_std"], m["combined_score"]) == pytest.approx(
        (95.9752, 38.8074, -105.6771), abs=1e-4)
    assert m["runs"] == 1080 and m["score"] == -m["avg_cost"]
    assert m["ticks_none"] + m["ticks_spot"] + m["ticks_on_demand"] > 1080 * 288
    assert m["cost_reduction_vs_up"] == pytest.approx(1 - 95.975225 / 89.734653, abs=1e-6)
    assert len([k for k in m if k.startswith("cost_mean_")]) == 36
    assert "late_runs" not in m
    a = result.artifacts
    assert len(a["worst_scenarios"]) == 5 and a["scenario_stats"].count("\n") == 35
    assert a["data"].startswith("synthetic") and "warnings" not in a
    # the program in its own process decides exactly as the trusted numpy policy
    grid, _ = cbl["cbl_traces"].split_grid("search")
    assert m["avg_cost"] == vector_run(cbl, grid, "greedy_seed").cost.mean()


def test_uniform_progress_synthetic(evaluate, cbl):
    adrs = evaluate(BASELINES / "uniform_progress.py", semantics="adrs").metrics
    assert (adrs["avg_cost"], adrs["cost_std"], adrs["combined_score"]) == pytest.approx(
        (89.7347, 34.9041, -98.4607), abs=1e-4)
    assert adrs["late_runs"] == 22 and 0 < adrs["max_late_min"] <= 4.0 + 1e-9
    assert adrs["cost_reduction_vs_up"] == 0  # the program decides as the reference policy
    search, _ = cbl["cbl_traces"].split_grid("search")
    hardened = vector_run(cbl, search, "uniform_progress")
    assert hardened.late(search.deadline).sum() == 0 and hardened.cost.mean() == adrs["avg_cost"]
    holdout, _ = cbl["cbl_traces"].split_grid("holdout")  # synthetic seed 1
    up = {s: vector_run(cbl, holdout, "uniform_progress", s) for s in ("adrs", "hardened")}
    assert stats(up["hardened"].cost)[0] == pytest.approx(87.9191, abs=1e-4)
    assert stats(up["hardened"].cost)[2] == pytest.approx(-97.2040, abs=1e-4)
    assert up["adrs"].late(holdout.deadline).sum() == 28
    assert up["hardened"].late(holdout.deadline).sum() == 0


@pytest.mark.parametrize("name", ["greedy_seed", "uniform_progress", "spot_only", "on_demand_only"])
def test_baseline_programs_match_numpy_policies(evaluate, cbl, name):
    """The numpy policies used for the large golden grids decide exactly as the programs."""
    grid, _ = cbl["cbl_traces"].split_grid("holdout", limit=3)
    metrics = evaluate(BASELINES / f"{name}.py", split="holdout", windows=3).metrics
    assert metrics["avg_cost"] == vector_run(cbl, grid, name).cost.mean()


def test_initial_program_synthetic_holdout(evaluate, cbl):
    # evaluate() on this split is exercised by test_baseline_programs_match_numpy_policies
    grid, _ = cbl["cbl_traces"].split_grid("holdout")  # synthetic seed 1
    mean, _, combined = stats(vector_run(cbl, grid, "greedy_seed").cost)
    assert (mean, combined) == pytest.approx((93.1806, -103.1133), abs=1e-4)
    with pytest.raises(ValueError, match="unknown split"):
        evaluate(INITIAL, split="test")


def test_program_layout(cbl):
    code = INITIAL.read_text()
    head, rest = code.split("# EVOLVE-BLOCK-START\n")
    region, tail = rest.split("# EVOLVE-BLOCK-END\n")
    assert "from cbl_api import ClusterType, Strategy" in region and "def _step" in region
    assert head.lstrip().startswith('"""') and tail.strip() == ""
    assert (BASELINES / "greedy_seed.py").read_text() == code
    for name in ("uniform_progress", "spot_only", "on_demand_only"):
        assert "# EVOLVE-BLOCK-START" in (BASELINES / f"{name}.py").read_text()
    config = yaml.safe_load((PROBLEM / "problem.yaml").read_text())
    assert config["name"] == "cant_be_late"
    assert (config["metric"], config["direction"]) == ("combined_score", "maximize")
    assert config["splits"] == ["search", "holdout"]


# --- golden values: real traces -----------------------------------------------------------------

@needs_real
def test_real_search_goldens_via_evaluate(evaluate, monkeypatch):
    greedy = evaluate(INITIAL, data_dir=DATA_DIR)
    m = greedy.metrics
    assert m["avg_cost"] == pytest.approx(96.515436, abs=1e-6)
    assert (m["cost_std"], m["combined_score"]) == pytest.approx((40.9211, -106.7457), abs=1e-4)
    assert [m[f"avg_cost_T{t}"] for t in (52, 70, 92)] == pytest.approx([117.86, 96.43, 75.26], abs=1e-2)
    assert greedy.artifacts["data"] == str(ARCHIVE) and "warnings" not in greedy.artifacts
    up = evaluate(BASELINES / "uniform_progress.py", data_dir=DATA_DIR).metrics
    assert up["avg_cost"] == pytest.approx(94.677149, abs=1e-6)
    assert (up["cost_std"], up["combined_score"]) == pytest.approx((41.0603, -104.9422), abs=1e-4)
    assert [up[f"avg_cost_T{t}"] for t in (52, 70, 92)] == pytest.approx([106.83, 90.57, 86.62], abs=1e-2)
    assert m["cost_reduction_vs_up"] == pytest.approx(1 - 96.515436 / 94.677149, abs=1e-7)
    monkeypatch.setenv("SYSEVOLVE_DATA", str(DATA_DIR))  # the environment selects the same data
    assert evaluate(INITIAL, windows=1).artifacts["data"] == str(ARCHIVE)


@needs_real
def test_real_late_counts_search(cbl):
    grid, _ = cbl["cbl_traces"].split_grid("search", DATA_DIR)
    for policy, late_adrs in (("greedy_seed", 0), ("uniform_progress", 21), ("spot_only", 12)):
        adrs = vector_run(cbl, grid, policy, "adrs")
        hardened = vector_run(cbl, grid, policy, "hardened")
        assert adrs.late(grid.deadline).sum() == late_adrs, policy
        assert hardened.late(grid.deadline).sum() == 0
        assert np.array_equal(adrs.cost, hardened.cost)  # an idle tick costs nothing
        if policy == "uniform_progress":
            lateness = (adrs.finish - grid.deadline)[adrs.late(grid.deadline)] / 60
            assert round(lateness.min(), 1) == 0.4 and lateness.max() == pytest.approx(4.0)
    spot = stats(hardened.cost)
    assert (spot[0], spot[2]) == pytest.approx((96.4812, -106.7072), abs=1e-4)
    od = vector_run(cbl, grid, "on_demand_only").cost
    assert (od.mean(), od.std()) == pytest.approx((147.90, 0.4164), abs=1e-4)


@needs_real
def test_real_holdout_and_all_goldens(cbl):
    traces = cbl["cbl_traces"]
    search, _ = traces.split_grid("search", DATA_DIR)
    holdout, _ = traces.split_grid("holdout", DATA_DIR)
    expected = {"greedy_seed": ((95.3448, 41.6141, -105.7483), 0, (95.4618, -105.8485)),
                "uniform_progress": ((93.6997, 41.3056, -104.0261), 148, (93.7974, -104.1180))}
    for policy, (hold, late_adrs, all_300) in expected.items():
        adrs = vector_run(cbl, holdout, policy, "adrs")
        hardened = vector_run(cbl, holdout, policy, "hardened")
        assert stats(hardened.cost) == pytest.approx(hold, abs=1e-4)
        assert adrs.late(holdout.deadline).sum() == late_adrs
        assert hardened.late(holdout.deadline).sum() == 0
        both = np.concatenate([vector_run(cbl, search, policy).cost, hardened.cost])
        mean, _, combined = stats(both)
        assert (mean, combined) == pytest.approx(all_300, abs=1e-4)


@needs_real
def test_real_adrs_full_eval_set(cbl):
    """us-west-2b_k80_1 only, all 300 windows, 9 configurations: the ADRS `full_eval` numbers."""
    traces = cbl["cbl_traces"]
    real = traces.load_real(ARCHIVE)
    wins = traces.windows_of(real, range(300))
    grid = traces.build_grid({"us-west-2b_k80_1": wins["us-west-2b_k80_1"]})
    assert len(grid) == 2700
    assert vector_run(cbl, grid, "greedy_seed").cost.mean() == pytest.approx(129.92, abs=1e-2)
    up = vector_run(cbl, grid, "uniform_progress", "adrs")
    assert up.cost.mean() == pytest.approx(137.01, abs=1e-2)
    assert up.late(grid.deadline).sum() == 72


# --- hardening: one hostile program per exploit category (spec 7) -------------------------------

@pytest.fixture(scope="module")
def honest(cbl):
    """Metrics of the greedy seed on the quick grid (2 windows per environment, synthetic)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("SYSEVOLVE_DATA", raising=False)
        return cbl["evaluator"].evaluate(INITIAL, windows=2).metrics


def test_7_1_tampering_with_progress_state_has_no_effect(evaluate, tmp_path, honest):
    # Decide honestly, then tamper: the next tick's observation must be untouched.
    path = greedy_program(tmp_path, after="""
        self.task_done_time.append(self.task_duration)  # the ADRS $0 exploit
        self.remaining_restart_overhead = 0.0
        self.task_duration = 0.0
        self.deadline = 1e12
        self.task_done = True
        self.cost = 0.0
        self.history = []
        try:
            self.env.cluster_type = ClusterType.NONE
        except AttributeError:
            pass
    """)
    path.write_text(path.read_text() + textwrap.dedent("""
        def step(self):  # ADRS's bookkeeping entry point: never called here
            return ClusterType.NONE
        Hostile.step = step
    """))
    assert evaluate(path, windows=2).metrics == honest
    # Tamper first and then believe it: "done", so never run. The harness still finishes the
    # job (on-demand at the end), on time, and bills it.
    path = greedy_program(tmp_path, before="self.task_done_time.append(self.task_duration)")
    m = evaluate(path, windows=2).metrics
    assert m["avg_cost"] > 140 and m["combined_score"] < honest["combined_score"]


def test_7_2_no_trace_or_future_is_reachable(evaluate, tmp_path, honest, monkeypatch):
    monkeypatch.setenv("SYSEVOLVE_DATA", str(tmp_path))  # no archive there: synthetic data
    path = greedy_program(tmp_path, head="""
    import gc, os, sys

    def _hunt(strategy):
        found = []
        for name in ("trace", "traces", "_trace", "data", "future", "spot_trace"):
            if hasattr(strategy.env, name) or hasattr(strategy, name):
                found.append(name)
        if os.environ.get("SYSEVOLVE_DATA"):
            found.append("SYSEVOLVE_DATA")
        for module in ("cbl_traces", "cbl_sim", "evaluator", "cbl_runner",
                       "sysevolve.problems.cant_be_late.cbl_traces"):
            try:
                __import__(module)
                found.append(module)
            except ImportError:
                pass
        for obj in gc.get_objects():
            if isinstance(obj, (list, tuple, bytes, bytearray)) and len(obj) in (554, 1781):
                if all(x in (0, 1) for x in obj):
                    found.append(f"{type(obj).__name__} of {len(obj)}")
        frame = sys._getframe()
        while frame is not None:
            for key in frame.f_locals:
                if key in ("traces", "grid", "avail", "trace", "windows"):
                    found.append(f"frame local {key}")
            frame = frame.f_back
        if found:
            raise RuntimeError("FOUND " + ", ".join(found))

    _hunted = []
    """, before="""
        if not _hunted:
            _hunted.append(1)
            _hunt(self)
    """)
    assert evaluate(path, windows=2).metrics == honest


def test_7_3_printed_scores_are_ignored(evaluate, tmp_path, honest):
    path = greedy_program(tmp_path, head="""
    import sys
    print("mean: 0.0")
    print('{"combined_score": 1e9, "avg_cost": 0}')
    sys.stderr.write("combined_score: 1000000\\n")
    """, before="""
        if self.env.tick == 0:
            print("avg_cost: 0.0")
    """)
    assert evaluate(path, windows=2).metrics == honest


INVALID_ACTIONS = {
    "int": "1",
    "bool": "True",
    "none": "None",
    "lowercase_name": "'spot'",
    "tuple_with_cost": "(ClusterType.SPOT, 0.0)",
    "lookalike": "type('Fake', (), {'__eq__': lambda s, o: True, '__hash__': lambda s: 0})()",
    "numpy_int": "__import__('numpy').int64(1)",
}


@pytest.mark.parametrize("case", sorted(INVALID_ACTIONS))
def test_7_4_invalid_actions_are_rejected(evaluate, tmp_path, case):
    bad = INVALID_ACTIONS[case]
    path = greedy_program(tmp_path, after=f"action = {bad} if self.env.tick == 3 else action")
    with pytest.raises(RuntimeError) as info:
        evaluate(path, windows=1)
    message = str(info.value)
    assert message.startswith("run 0, tick 3: invalid action") and "\n" not in message
    assert "[us-west-2a_k80_1 T=52h d=0.02h]" in message


def test_7_4_names_are_valid_actions(evaluate, tmp_path, honest):
    path = greedy_program(tmp_path, after="action = action.name")
    assert evaluate(path, windows=2).metrics == honest


def test_7_4_crashes_and_load_errors(evaluate, tmp_path):
    path = greedy_program(tmp_path, before="x = 1 / (self.env.tick - 7)")
    reason = r"^run 0, tick 7: _step raised ZeroDivisionError: division by zero"
    with pytest.raises(RuntimeError, match=reason):
        evaluate(path, windows=1)
    cases = {
        "def f(:\n": "cannot load program: SyntaxError",
        "raise SystemExit(3)\n": "cannot load program: SystemExit: 3",
        "class S:\n    pass\n": "program defines no subclass of Strategy",
        "from cbl_api import Strategy\nclass A(Strategy): pass\nclass B(Strategy): pass\n":
            r"several Strategy subclasses \(A, B\)",
        "from cbl_api import Strategy\nclass A(Strategy):\n    def __init__(self):\n        1/0\n":
            "run 0: creating the policy raised ZeroDivisionError",
        "import os\nfrom cbl_api import Strategy\nclass A(Strategy):\n    def _step(self, l, h):\n"
        "        os._exit(3)\n": "tick 0: the policy process exited with code 3 without an answer",
    }
    for source, reason in cases.items():
        with pytest.raises(RuntimeError, match=reason):
            evaluate(write_program(tmp_path, source), windows=1)


def test_7_4_timeout(evaluate, tmp_path):
    path = greedy_program(tmp_path, head="import time", before="time.sleep(0.2 * (self.env.tick == 2))")
    with pytest.raises(RuntimeError, match=r"tick 2: timeout: the policy took longer than 0.5 s"):
        evaluate(path, windows=1, policy_timeout_s=0.5)


def test_7_4_adrs_option_scores_failures(evaluate, tmp_path):
    path = greedy_program(tmp_path, after="action = 'FAST'")
    result = evaluate(path, windows=1, semantics="adrs")
    assert result.metrics == {"combined_score": -100000.0, "score": -100000.0}
    assert "invalid action 'FAST'" in result.artifacts["failure"]


def test_7_5_the_override_hole_is_closed(evaluate):
    """spot_only exploits the ADRS hole (idle ticks in the critical zone); hardened: on time."""
    adrs = evaluate(BASELINES / "spot_only.py", semantics="adrs", windows=10).metrics
    hardened = evaluate(BASELINES / "spot_only.py", windows=10).metrics
    assert adrs["late_runs"] > 0 and "late_runs" not in hardened
    assert hardened["avg_cost"] == adrs["avg_cost"]


def test_7_6_forged_channel_messages_are_rejected(evaluate, tmp_path):
    # A "cost" frame written straight into the result channel at import time.
    path = greedy_program(tmp_path, head="""
    import os, struct, sys
    os.write(int(sys.argv[2]), struct.pack("<IB", 8, ord("C")) + struct.pack("<d", 0.0))
    """)
    with pytest.raises(RuntimeError, match="malformed message from the policy process"):
        evaluate(path, windows=1)
    # An extra, well-formed answer: it is taken for the next tick's and its size is wrong.
    path = greedy_program(tmp_path, head="import os, struct, sys", after="""
        if self.env.tick == 1:
            os.write(int(sys.argv[2]), struct.pack("<IB", 1, ord("A")) + bytes([3]))
    """)
    with pytest.raises(RuntimeError, match="malformed message|invalid action code"):
        evaluate(path, windows=1)


def test_7_7_holdout_is_never_given_to_search(cbl):
    traces = cbl["cbl_traces"]
    search, _ = traces.split_grid("search")
    holdout, _ = traces.split_grid("holdout")
    rows = {bytes(r) for r in search.traces}
    assert not any(bytes(r) in rows for r in holdout.traces)
    # the policy process receives observations only (see test_7_2): nothing of any split's traces


def test_7_8_no_files_are_written(evaluate, tmp_path, monkeypatch):
    work = tmp_path / "scratch"
    work.mkdir()
    monkeypatch.chdir(work)
    evaluate(INITIAL, windows=2)
    assert list(work.iterdir()) == []


def test_7_9_deterministic_even_with_random_draws(evaluate, tmp_path):
    path = greedy_program(tmp_path, head="import random", after="""
        if action == ClusterType.NONE and random.random() < 0.5:
            action = ClusterType.ON_DEMAND
    """)
    first = evaluate(path, windows=2).metrics
    assert evaluate(path, windows=2).metrics == first


def test_7_10_class_names_need_not_be_unique(evaluate, tmp_path, honest):
    one = greedy_program(tmp_path, name="one.py")
    two = greedy_program(tmp_path, name="two.py")
    assert evaluate(one, windows=2).metrics == honest == evaluate(two, windows=2).metrics
    # a hierarchy: the most derived class is the policy
    three = write_program(tmp_path, one.read_text() + textwrap.dedent("""
        class Cheaper(Hostile):
            def _step(self, last_cluster_type, has_spot):
                return ClusterType.SPOT if has_spot else super()._step(last_cluster_type, has_spot)
    """), "three.py")
    assert evaluate(three, windows=2).metrics["combined_score"] != honest["combined_score"]


def test_adrs_style_program_runs_unchanged(evaluate, tmp_path, honest):
    source = INITIAL.read_text().replace(
        "from cbl_api import ClusterType, Strategy",
        "from sky_spot.strategies.strategy import Strategy\nfrom sky_spot.utils import ClusterType")
    source = source.replace('NAME = "greedy_safety"', '''NAME = "greedy_safety"

    def __init__(self, args):
        super().__init__(args)

    def reset(self, env, task):
        super().reset(env, task)''')
    path = write_program(tmp_path, source)
    path = path.rename(tmp_path / "adrs_style.py")
    assert evaluate(path, windows=2).metrics == honest


# --- end to end ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_run_and_eval_end_to_end(tmp_path, capsys):
    from sysevolve.cli import main

    out = tmp_path / "r"
    assert main(["run", "cant_be_late", "--iterations", "20", "--out", str(out), "--seed", "0"]) == 0
    assert (out / "best" / "best_program.py").is_file()
    capsys.readouterr()
    assert main(["eval", "cant_be_late", str(BASELINES / "uniform_progress.py")]) == 0
    printed = capsys.readouterr().out
    assert "combined_score" in printed and "-98.46" in printed and "cost_reduction_vs_up" in printed
    # through the real sandbox: a program that prints fake scores still gets its honest score
    fake = write_program(tmp_path, INITIAL.read_text().replace(
        "class GreedySafetyStrategy", 'print("combined_score: 0")\nclass GreedySafetyStrategy'))
    assert main(["eval", "cant_be_late", str(fake), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["metrics"]["combined_score"] == pytest.approx(-105.6771, abs=1e-4)
    assert "combined_score: 0" in document["artifacts"]["stdout"]
