"""Tests of the txn_scheduling problem: cost model, generators, evaluator and its hardening."""

from __future__ import annotations

import hashlib
import random
import textwrap
from pathlib import Path

import pytest

from conftest import problem_modules
import yaml

REPO = Path(__file__).resolve().parents[1]
PROBLEM = REPO / "src" / "sysevolve" / "problems" / "txn_scheduling"
DATA_DIR = REPO.parent / "shared" / "data"
REAL_FILE = DATA_DIR / "txn_scheduling" / "workloads.json"
REAL_SHA256 = "9c85c14024e71930e2ee95d618b8f1163835e2e043914e14b680fb888bc5ef5f"
MODULES = ("evaluator", "txn_model", "txn_workloads")

needs_real = pytest.mark.skipif(
    not REAL_FILE.is_file(),
    reason=f"real workloads not found at {REAL_FILE}; skipping golden-value test",
)


@pytest.fixture
def problem(monkeypatch):
    """The problem folder on sys.path with fresh imports of its modules (hostile tests patch them)."""
    monkeypatch.delenv("SYSEVOLVE_DATA", raising=False)
    with problem_modules(PROBLEM, MODULES) as modules:
        yield modules


@pytest.fixture
def real(problem):
    if not REAL_FILE.is_file():
        pytest.skip(f"real workloads not found at {REAL_FILE}; skipping golden-value test")
    return problem["txn_workloads"].load_real(REAL_FILE)


def makespans(model, workloads, schedule_of):
    return [model.makespan(w.txns, w.lens, schedule_of(w)) for w in workloads]


def write_program(tmp_path, body: str) -> Path:
    path = tmp_path / "candidate.py"
    path.write_text(textwrap.dedent(body))
    return path


# --- data and cost model ------------------------------------------------------------------------

@needs_real
def test_real_file_digest():
    assert hashlib.sha256(REAL_FILE.read_bytes()).hexdigest() == REAL_SHA256


def test_parse(problem):
    model = problem["txn_model"]
    assert model.parse_txn("r-12 * w-3-x *") == ((("r", "12", 1), ("w", "3-x", 3)), 4)
    for bad in ("r-1  w-2", "x-1", "r1", "r-", ""):
        with pytest.raises(ValueError, match="malformed token"):
            model.parse_txn(bad)


def test_cost_model_goldens_real(problem, real):
    model = problem["txn_model"]
    orders = {
        "identity": lambda w: range(100),
        "reversed": lambda w: range(99, -1, -1),
        "evens_odds": lambda w: list(range(0, 100, 2)) + list(range(1, 100, 2)),
        "first": lambda w: [0],
        "smf_full": lambda w: model.smf_full_order(w.txns, w.lens),
    }
    expected = {
        "identity": [452, 38, 47], "reversed": [456, 56, 47], "evens_odds": [468, 41, 60],
        "first": [16, 21, 9], "smf_full": [228, 55, 39],
    }
    for name, order in orders.items():
        assert makespans(model, real, order) == expected[name], name
        # the incremental form, as the candidate's workload.cost sees it
        assert [model.PrefixCost(w.txns, w.lens)(list(order(w))) for w in real] == expected[name]


def test_incremental_model_agrees_with_reference(problem):
    model, workloads = problem["txn_model"], problem["txn_workloads"]
    pool = workloads.split_workloads("search") + workloads.split_workloads("holdout")[::4]
    if REAL_FILE.is_file():
        pool += workloads.load_real(REAL_FILE)
    rng = random.Random(7)
    for w in pool:
        cost = model.PrefixCost(w.txns, w.lens)
        for _ in range(25):
            order = list(range(len(w.txns)))
            rng.shuffle(order)
            prefix = order[: rng.randint(0, len(order))]
            expected = model.makespan(w.txns, w.lens, prefix)
            assert cost(prefix) == expected
            timeline = model.Timeline(w.txns, w.lens)
            for t in prefix:
                timeline.add(t)
            assert timeline.makespan == expected
        # the greedy pattern: a growing prefix plus one probe
        seq = []
        for t in order:
            assert cost(seq + [t]) == model.makespan(w.txns, w.lens, seq + [t])
            seq.append(t)


# --- generators ---------------------------------------------------------------------------------

def test_generator_first_transactions(problem):
    workloads = problem["txn_workloads"]
    assert workloads.w1_like(0)[0] == "w-3 r-13 w-34 w-9 w-6 w-4 w-2 w-371 w-17 w-1 r-31 w-11 r-29 w-7 r-10 r-5"
    assert workloads.w2_like(0)[0] == "r-4 r-47 w-47" + " *" * 18
    assert workloads.w3_like(0)[0] == "r-4" + " *" * 7 + " w-9"


def test_generator_goldens(problem):
    model, workloads = problem["txn_model"], problem["txn_workloads"]
    search = workloads.split_workloads("search")
    holdout = workloads.split_workloads("holdout")
    assert [w.name for w in search] == ["w1", "w2", "w3"]
    assert [len(w.txns) for w in search + holdout] == [100] * 12
    assert makespans(model, search, lambda w: range(100)) == [483, 45, 39]
    assert makespans(model, search, lambda w: model.smf_full_order(w.txns, w.lens)) == [272, 61, 36]
    identity = makespans(model, holdout, lambda w: range(100))
    assert identity == [508, 433, 427, 36, 45, 51, 43, 45, 41]
    assert sum(identity) == 1629


# --- evaluator ----------------------------------------------------------------------------------

def test_initial_program_search_synthetic(problem):
    result = problem["evaluator"].evaluate(PROBLEM / "initial_program.py")
    m = result.metrics
    assert [m["makespan_w1"], m["makespan_w2"], m["makespan_w3"]] == [322, 62, 59]
    assert m["total_makespan"] == 443
    assert m["combined_score"] == pytest.approx(1e6 / 444)
    assert m["reduction_vs_smf_full"] == pytest.approx(1 - 443 / 369)
    assert all(m[f"wall_s_w{k}"] >= 0 for k in (1, 2, 3))
    assert result.artifacts["smf_full_total"] == 369
    assert result.artifacts["data"] == "synthetic"
    assert "warnings" not in result.artifacts


@needs_real
def test_real_data_goldens_via_evaluate(problem, monkeypatch):
    evaluate = problem["evaluator"].evaluate
    initial = evaluate(PROBLEM / "initial_program.py", data_dir=DATA_DIR).metrics
    assert [initial[f"makespan_w{k}"] for k in (1, 2, 3)] == [256, 56, 56]
    assert initial["total_makespan"] == 368
    full = evaluate(PROBLEM / "baselines" / "smf_full.py", data_dir=DATA_DIR).metrics
    assert [full[f"makespan_w{k}"] for k in (1, 2, 3)] == [228, 55, 39]
    assert full["reduction_vs_smf_full"] == 0
    ident = evaluate(PROBLEM / "baselines" / "identity.py", data_dir=DATA_DIR).metrics
    assert ident["total_makespan"] == 537
    # the environment variable selects the same data
    monkeypatch.setenv("SYSEVOLVE_DATA", str(DATA_DIR))
    assert evaluate(PROBLEM / "initial_program.py").metrics["total_makespan"] == 368


@needs_real
def test_smf_sampled_seed_statistics_real(problem):
    evaluate = problem["evaluator"].evaluate
    runs = [evaluate(PROBLEM / "baselines" / "smf_sampled.py", seed=s, data_dir=DATA_DIR).metrics
            for s in range(20)]
    means = [sum(r[f"makespan_w{k}"] for r in runs) / 20 for k in (1, 2, 3)]
    assert means == pytest.approx([253.1, 55.2, 55.25])
    totals = [r["total_makespan"] for r in runs]
    assert (min(totals), max(totals)) == (347, 384)


def test_holdout(problem):
    evaluate = problem["evaluator"].evaluate
    m = evaluate(PROBLEM / "initial_program.py", split="holdout").metrics
    assert [m[f"makespan_w1_s{s}"] for s in (1, 2, 3)] == [340, 317, 305]
    assert [m[f"makespan_w2_s{s}"] for s in (1, 2, 3)] == [53, 65, 70]
    assert [m[f"makespan_w3_s{s}"] for s in (1, 2, 3)] == [47, 59, 49]
    assert m["total_makespan"] == 1305
    ident = evaluate(PROBLEM / "baselines" / "identity.py", split="holdout").metrics
    assert ident["total_makespan"] == 1629
    with pytest.raises(ValueError, match="unknown split"):
        evaluate(PROBLEM / "initial_program.py", split="test")


def test_baselines(problem):
    evaluate = problem["evaluator"].evaluate
    totals = {name: evaluate(PROBLEM / "baselines" / f"{name}.py").metrics["total_makespan"]
              for name in ("identity", "smf_sampled", "smf_full")}
    assert totals == {"identity": 567, "smf_sampled": 443, "smf_full": 369}
    # smf_sampled is the initial program itself (a link)
    assert (PROBLEM / "baselines" / "smf_sampled.py").read_text() == (PROBLEM / "initial_program.py").read_text()


def test_deterministic_and_random_state_restored(problem):
    evaluate = problem["evaluator"].evaluate
    random.seed(123)
    before = random.getstate()
    first = evaluate(PROBLEM / "initial_program.py", seed=3).metrics
    assert random.getstate() == before
    second = evaluate(PROBLEM / "initial_program.py", seed=3).metrics
    strip = lambda m: {k: v for k, v in m.items() if not k.startswith("wall_s")}  # noqa: E731
    assert strip(first) == strip(second)


def test_missing_data_dir_is_an_error(problem, tmp_path):
    with pytest.raises(FileNotFoundError, match="real workloads not found"):
        problem["evaluator"].evaluate(PROBLEM / "initial_program.py", data_dir=tmp_path)


def test_program_layout(problem):
    code = (PROBLEM / "initial_program.py").read_text()
    head, rest = code.split("# EVOLVE-BLOCK-START\n")
    region, tail = rest.split("# EVOLVE-BLOCK-END\n")
    assert "import random" in head and "def get_best_schedule(workload, num_seqs)" in region
    assert tail.strip() == ""
    config = yaml.safe_load((PROBLEM / "problem.yaml").read_text())
    assert config["name"] == "txn_scheduling"
    assert (config["metric"], config["direction"]) == ("combined_score", "maximize")
    assert config["timeout_s"] == 120 and config["splits"] == ["search", "holdout"]


# --- hostile candidates -------------------------------------------------------------------------

INVALID = {
    "partial": ("return [0]", "workload w1: schedule has 1 entries, expected 100"),
    "duplicates": ("return [0] * 100", "transaction 0 appears more than once"),
    "floats": ("return [float(i) for i in range(100)]", "entry 0 is float 0.0, expected a plain int"),
    "bools": ("return [True] + list(range(1, 100))", "entry 0 is bool True"),
    "numpy": ("import numpy\n    return list(numpy.arange(100))", "entry 0 is int64"),
    "out_of_range": ("return list(range(1, 101))", "entry 99 is 100, outside 0..99"),
    "none": ("return None", "returned NoneType"),
    "claimed_only": ("return (0, None)", "schedule has 2 entries, expected 100"),
    "generator": ("return iter(range(100))", "returned range_iterator"),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_schedules_are_rejected(problem, tmp_path, case):
    body, reason = INVALID[case]
    path = write_program(tmp_path, f"def get_best_schedule(workload, num_seqs):\n    {body}\n")
    with pytest.raises(ValueError) as info:
        problem["evaluator"].evaluate(path)
    message = str(info.value)
    assert reason in message and "\n" not in message


def test_claimed_makespan_is_ignored(problem, tmp_path):
    path = write_program(tmp_path, """
        def get_best_schedule(workload, num_seqs):
            return (0, list(range(workload.num_txns)))
    """)
    m = problem["evaluator"].evaluate(path).metrics
    assert m["total_makespan"] == 567  # the identity order, recomputed


def test_patching_the_cost_model_does_not_change_the_score(problem, tmp_path):
    path = write_program(tmp_path, """
        import txn_model

        def get_best_schedule(workload, num_seqs):
            txn_model.makespan = lambda *args: 0
            txn_model.Timeline.cost_with = lambda self, t: 0
            txn_model.PrefixCost.__call__ = lambda self, seq: 0
            try:
                workload.cost = lambda seq: 0
            except AttributeError:
                pass
            type(workload).cost = lambda self, seq: 0
            assert workload.cost([0, 1]) == 0
            return list(range(workload.num_txns))
    """)
    result = problem["evaluator"].evaluate(path)
    assert result.metrics["total_makespan"] == 567
    assert result.artifacts["smf_full_total"] == 369


def test_view_is_read_only(problem, tmp_path):
    path = write_program(tmp_path, """
        def get_best_schedule(workload, num_seqs):
            workload.num_txns = 1
            return [0]
    """)
    with pytest.raises(RuntimeError, match="get_best_schedule raised AttributeError: the workload view is read-only"):
        problem["evaluator"].evaluate(path)


def test_literal_schedule_is_flagged(problem, tmp_path):
    schedule = list(range(99, -1, -1))
    path = write_program(tmp_path, f"""
        MEMO = {schedule!r}

        def get_best_schedule(workload, num_seqs):
            return list(MEMO)
    """)
    result = problem["evaluator"].evaluate(path)
    assert result.metrics["total_makespan"] > 0  # still scored honestly
    assert result.artifacts["warnings"] == [
        "source embeds a literal sequence of 100 integers (memorised schedule?)"]
    literal_warnings = problem["evaluator"].literal_warnings
    assert literal_warnings("S = " + repr(" ".join(map(str, schedule))))
    assert not literal_warnings("S = " + repr(list(range(49))))


def test_crashes_and_missing_function(problem, tmp_path):
    evaluate = problem["evaluator"].evaluate
    path = write_program(tmp_path, """
        def get_best_schedule(workload, num_seqs):
            raise ValueError("boom\\nsecond line")
    """)
    with pytest.raises(RuntimeError, match=r"^workload w1: get_best_schedule raised ValueError: boom second line$"):
        evaluate(path)
    path = write_program(tmp_path, "def get_best_schedule(workload, num_seqs):\n    raise SystemExit(3)\n")
    with pytest.raises(RuntimeError, match="get_best_schedule raised SystemExit: 3"):
        evaluate(path)
    path = write_program(tmp_path, "def schedule(workload):\n    return []\n")
    with pytest.raises(ValueError, match="does not define get_best_schedule"):
        evaluate(path)
    path = write_program(tmp_path, "def get_best_schedule(:\n")
    with pytest.raises(RuntimeError, match="cannot load program: SyntaxError"):
        evaluate(path)


def test_overrunning_the_budget_is_invalid(problem, tmp_path):
    path = write_program(tmp_path, """
        import time

        def get_best_schedule(workload, num_seqs):
            time.sleep(workload.time_budget_s * 1.5 + 1.05)
            return list(range(workload.num_txns))
    """)
    with pytest.raises(ValueError, match=r"workload w1: timeout: .* \(time_budget_s=0.01\)"):
        problem["evaluator"].evaluate(path, time_budget_s=0.01)
