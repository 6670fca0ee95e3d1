"""Tests of the llm_sql problem: metric, data, GGR goldens, evaluator and its hardening."""

from __future__ import annotations

import csv
import hashlib
import importlib
import importlib.util
import json
import os
import random
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import problem_modules
import yaml

REPO = Path(__file__).resolve().parents[1]
PROBLEM = REPO / "src" / "sysevolve" / "problems" / "llm_sql"
DATA_DIR = REPO.parent / "shared" / "data"
BEER = DATA_DIR / "llm_sql" / "beer.csv"
BEER_MD5 = "5a13db468f5ea86044ed0f147ca18b53"
BEER_SHA256 = "4682ba58e198962b26725c3d7a67f7ac53118c183c771d3ad3d8db21c80581c3"
MODULES = ("evaluator", "llm_sql_api", "llm_sql_data", "llm_sql_harness", "llm_sql_metric",
           "llm_sql_runner", "llm_sql_synth", "llm_sql_wire")
KWARGS = dict(early_stop=100000, distinct_value_threshold=0.7, row_stop=4, col_stop=2,
              col_merge=[], parallel=True)

needs_real = pytest.mark.skipif(
    not BEER.is_file(), reason=f"real table not found at {BEER}; skipping golden-value test")


@pytest.fixture(scope="module")
def problem():
    """The problem folder on sys.path and its modules, imported once: programs run in processes
    of their own, so nothing a program does can reach these modules."""
    saved_env = os.environ.pop("SYSEVOLVE_DATA", None)
    with problem_modules(PROBLEM, MODULES) as modules:
        yield modules
        if saved_env is not None:
            os.environ["SYSEVOLVE_DATA"] = saved_env


def load_program(path: Path, name: str):
    """A program imported in this process (registered by name: GGR's process pool needs that)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def programs(problem):
    names = {"ggr": "initial_program.py", "identity": "baselines/identity.py",
             "fac": "baselines/fixed_ascending_cardinality.py"}
    modules = {k: load_program(PROBLEM / v, f"_llm_sql_test_{k}") for k, v in names.items()}
    yield modules
    for k in names:
        sys.modules.pop(f"_llm_sql_test_{k}", None)


def reorder(problem, module, columns, rows):
    table = problem["llm_sql_api"].Table(columns, rows)
    result, _ = module.Evolved().reorder(table, **KWARGS)
    return result.rows if hasattr(result, "rows") else result


def pct(problem, rows) -> float:
    return 100 * problem["llm_sql_metric"].hit_rate(rows)


def write_program(tmp_path, body: str, name: str = "candidate.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


HONEST = """
    from llm_sql_api import Algorithm

    class Evolved(Algorithm):
        def reorder(self, df, **kwargs):
            distinct = [len(set(df.column(j))) for j in range(len(df.columns))]
            order = sorted(range(len(df.columns)), key=lambda j: distinct[j])
            return [[row[j] for j in order] for row in df.rows], []
"""


# --- metric -------------------------------------------------------------------------------------

def trie_hits(prompts) -> int:
    """ADRS's definition: each prompt's longest common prefix with any earlier prompt."""
    hits, root = 0, {}
    for s in prompts:
        node, depth = root, 0
        while depth < len(s) and s[depth] in node:
            node, depth = node[s[depth]], depth + 1
        hits += depth
        node = root
        for ch in s:
            node = node.setdefault(ch, {})
    return hits


def test_metric_goldens(problem):
    metric = problem["llm_sql_metric"]
    assert metric.prefix_hits(["ab", "abc", "b"]) == (2, 6)
    assert metric.hit_rate([["a", "b"], ["abc"], ["b"]]) == pytest.approx(1 / 3)
    assert metric.prefix_hits(["xy", "xy"]) == (2, 4)
    assert metric.hit_rate([]) == 0.0
    rng = random.Random(1)
    for _ in range(30):
        prompts = ["".join(rng.choice("abc") for _ in range(rng.randint(0, 8)))
                   for _ in range(rng.randint(1, 40))]
        expected = trie_hits(prompts)
        for _ in range(3):
            rng.shuffle(prompts)  # any permutation of the rows: same hits
            assert trie_hits(prompts) == expected
            assert metric.prefix_hits(prompts) == (expected, sum(map(len, prompts)))


@needs_real
def test_real_file_digest():
    data = BEER.read_bytes()
    assert hashlib.md5(data).hexdigest() == BEER_MD5
    assert hashlib.sha256(data).hexdigest() == BEER_SHA256


@needs_real
def test_full_beer_metric_and_fixed_orders(problem, programs):
    data, metric = problem["llm_sql_data"], problem["llm_sql_metric"]
    header, rows = data.read_csv(BEER)
    assert len(rows) == 28479
    assert metric.prefix_hits("".join(r) for r in rows) == (332115, 2271333)  # file column order
    names, units = data.fuse(header, rows, data.DATASETS[0].merges)
    assert names[-1] == "beer/name_beer/beerId"
    assert units[0][-1] == rows[0][6] + rows[0][8]
    assert pct(problem, reorder(problem, programs["identity"], names, units)) == pytest.approx(14.4476, abs=1e-4)
    fac = reorder(problem, programs["fac"], names, units)
    assert metric.prefix_hits("".join(r) for r in fac)[0] == 1219259
    assert pct(problem, fac) == pytest.approx(53.6803, abs=1e-4)
    # the same without the merge, beer/beerId before beer/name
    order = [4, 5, 3, 2, 7, 8, 6, 1, 0]  # palate, appearance, taste, overall, style, id, name, time, user
    assert pct(problem, [[r[j] for j in order] for r in rows]) == pytest.approx(53.2576, abs=1e-4)


@needs_real
def test_ggr_goldens_on_prefixes_of_beer(problem, programs):
    data = problem["llm_sql_data"]
    header, rows = data.read_csv(BEER)
    for n, expected in ((2000, 67.96), (5000, 67.55), (10000, 73.88), (len(rows), 70.74)):
        names, units = data.fuse(header, rows[:n], data.DATASETS[0].merges)
        assert pct(problem, reorder(problem, programs["ggr"], names, units)) == pytest.approx(expected, abs=0.1), n


GGR_BLOCKS = [64.5811, 75.2355, 79.3413, 80.0010, 76.8274, 67.0972, 62.2268, 72.4844, 75.8582,
              69.9472, 62.8315, 60.4285, 66.0925]


@needs_real
def test_beer_block_goldens(problem, programs, monkeypatch):
    data, evaluate = problem["llm_sql_data"], problem["evaluator"].evaluate
    block0 = data.split_instances("search", DATA_DIR / "llm_sql")[0]
    beer = data.split_instances("holdout", DATA_DIR / "llm_sql")[:13]
    assert block0.name == "beer_b0" and [t.name for t in beer] == [f"beer_b{b}" for b in range(1, 14)]
    assert beer[-1].source == "beer.csv rows 26000-27999"
    for name, b0, mean in (("identity", 11.3961, 9.3051), ("fac", 39.0129, 51.9633)):
        rate = pct(problem, reorder(problem, programs[name], block0.columns, block0.rows))
        assert rate == pytest.approx(b0, abs=1e-4), name
        rates = [pct(problem, reorder(problem, programs[name], t.columns, t.rows)) for t in beer]
        assert sum(rates) / 13 == pytest.approx(mean, abs=1e-4), name
    rates = [pct(problem, reorder(problem, programs["ggr"], t.columns, t.rows)) for t in beer]
    assert rates == pytest.approx(GGR_BLOCKS, abs=0.05)
    assert sum(rates) / 13 == pytest.approx(70.2271, abs=0.05)
    # through the evaluator, with the data folder given or named by the environment
    m = evaluate(PROBLEM / "baselines" / "ggr.py", data_dir=DATA_DIR).metrics
    assert 100 * m["hit_rate_beer_b0"] == pytest.approx(67.9573, abs=0.05)
    assert "hit_rate_movies_like_s0" in m  # files not supplied: synthetic stand-ins
    monkeypatch.setenv("SYSEVOLVE_DATA", str(DATA_DIR))
    m = evaluate(PROBLEM / "baselines" / "identity.py").metrics
    assert 100 * m["hit_rate_beer_b0"] == pytest.approx(11.3961, abs=1e-4)


# --- data ---------------------------------------------------------------------------------------

def test_synthetic_profiles(problem):
    synth, data = problem["llm_sql_synth"], problem["llm_sql_data"]
    assert synth.allocate(10, [1, 1, 1]) == [4, 3, 3]
    assert sum(synth.allocate(2000, [1 / (i + 1) for i in range(100)])) == 2000
    for ds in data.DATASETS:
        header, rows = synth.generate(ds.profile, 0)
        assert len(rows) == 2000 and all(len(r) == len(header) for r in rows)
        assert all(isinstance(c, str) for r in rows for c in r)
        assert synth.generate(ds.profile, 0) == (header, rows)  # deterministic
        assert synth.generate(ds.profile, 1)[1] != rows
        names, units = data.fuse(header, rows, ds.merges)
        assert len(names) == len(header) - sum(len(g) - 1 for g in ds.merges)
    header, rows = synth.generate("beer_like", 0)
    ids = [r[header.index("beer/beerId")] for r in rows]
    runs = [ids[0]] + [b for a, b in zip(ids, ids[1:]) if a != b]
    assert len(runs) == len(set(runs)) <= 100  # grouped by entity, entities in id order
    assert len({r[header.index("review/time")] for r in rows}) == 2000
    assert len({r[header.index("review/palate")] for r in rows}) <= 5


def test_fused_units(problem):
    data = problem["llm_sql_data"]
    names = {t.name: t.columns for t in data.split_instances("search")}
    assert names["beer_like_s0"][-1] == "beer/name_beer/beerId"
    assert names["movies_like_s0"][-1] == "movieinfo_rottentomatoeslink_movietitle"
    assert names["bird_like_s0"][-1] == "Body_PostId"
    assert names["pdmx_like_s0"][-2:] == (
        "path_metadata", "isdraft_isofficial_hasannotations_isuserpublisher_subsetall_hasmetadata")
    assert names["products_like_s0"][-1] == "product_title_parent_asin"
    header = ["a", "b", "c"]
    rows = [["x", "1", "long"], ["x", "2", "long"], ["y", "3", "long"]]
    # b is all distinct (score 0), c scores highest: c first, then a; b stays outside
    assert data.fuse(header, rows, [["a", "c"]]) == (["b", "c_a"], [["1", "longx"], ["2", "longx"], ["3", "longy"]])
    with pytest.raises(ValueError, match="no column 'z'"):
        data.fuse(header, rows, [["a", "z"]])


def write_csv(path: Path, header, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


@pytest.fixture
def fake_data(problem, tmp_path):
    """A data folder whose beer.csv is a synthetic beer-like table of 5,000 rows."""
    header, rows = problem["llm_sql_synth"].generate("beer_like", 9, n=5000)
    rows[3][0] = 'quoted, "name"\nwith a newline'
    write_csv(tmp_path / "data" / "llm_sql" / "beer.csv", header, rows)
    return tmp_path / "data", header, rows


def test_real_file_loader(problem, fake_data):
    data = problem["llm_sql_data"]
    folder, header, rows = fake_data
    search = data.split_instances("search", data.data_root(folder))
    assert [t.name for t in search] == ["beer_b0", "movies_like_s0", "bird_like_s0",
                                        "pdmx_like_s0", "products_like_s0"]
    assert search[0].rows == tuple(map(tuple, data.fuse(header, rows[:2000], data.DATASETS[0].merges)[1]))
    holdout = data.split_instances("holdout", data.data_root(folder))
    beer = [t for t in holdout if t.name.startswith("beer")]
    assert [(t.name, len(t.rows)) for t in beer] == [("beer_b1", 2000), ("beer_b2", 1000)]
    with pytest.raises(FileNotFoundError, match="no llm_sql data folder"):
        data.data_root(folder / "missing")
    with pytest.raises(ValueError, match="unknown split"):
        data.split_instances("test")


# --- evaluator ----------------------------------------------------------------------------------

SEARCH_GGR = {"beer_like_s0": 0.629676, "movies_like_s0": 0.670075, "bird_like_s0": 0.568034,
              "pdmx_like_s0": 0.261235, "products_like_s0": 0.25036}


def test_initial_program_search_synthetic(problem):
    result = problem["evaluator"].evaluate(PROBLEM / "initial_program.py")
    m = result.metrics
    assert {k: round(m[f"hit_rate_{k}"], 6) for k in SEARCH_GGR} == SEARCH_GGR
    assert m["mean_hit_rate"] == pytest.approx(0.4758759401475909, abs=1e-12)
    assert m["ggr_mean_hit_rate"] == m["mean_hit_rate"]
    # hit rate and time are reported separately (spec 7.8); the time term is relative to GGR
    # measured in this evaluation (7.7): the same program scores about 0.5 whatever the machine
    assert m["t_ref_s"] > 0 and m["t_cand_s"] > 0
    assert m["speed_term"] == pytest.approx(m["t_ref_s"] / (m["t_ref_s"] + m["t_cand_s"]))
    assert 0.25 < m["speed_term"] < 0.75
    assert m["combined_score"] == pytest.approx(0.95 * m["mean_hit_rate"] + 0.05 * m["speed_term"])
    assert result.artifacts["tables"]["beer_like_s0"] == "synthetic beer_like seed 0"
    assert set(result.artifacts["table_s"]) == set(SEARCH_GGR)
    assert "warnings" not in result.artifacts


def test_baselines_search_synthetic(problem):
    evaluate = problem["evaluator"].evaluate
    identity = evaluate(PROBLEM / "baselines" / "identity.py").metrics
    assert identity["mean_hit_rate"] == pytest.approx(0.03795805345952052, abs=1e-12)
    assert identity["hit_rate_beer_like_s0"] == pytest.approx(0.105168, abs=1e-6)
    fac = evaluate(PROBLEM / "baselines" / "fixed_ascending_cardinality.py").metrics
    assert fac["mean_hit_rate"] == pytest.approx(0.2349411832246852, abs=1e-12)
    assert fac["hit_rate_bird_like_s0"] == pytest.approx(0.338679, abs=1e-6)


def test_holdout_synthetic(problem):
    result = problem["evaluator"].evaluate(PROBLEM / "baselines" / "identity.py", split="holdout")
    m = result.metrics
    assert len(result.artifacts["tables"]) == 15
    assert m["ggr_mean_hit_rate"] == pytest.approx(0.4823533065834742, abs=1e-12)
    assert m["mean_hit_rate"] == pytest.approx(0.03911798889060993, abs=1e-12)
    assert m["hit_rate_products_like_s3"] == pytest.approx(0.018342, abs=1e-6)


def test_adrs_semantics(problem, tmp_path):
    evaluate = problem["evaluator"].evaluate
    m = evaluate(PROBLEM / "initial_program.py", semantics="adrs").metrics
    assert m["runs_successfully"] == 1.0
    assert m["mean_hit_rate"] == pytest.approx(0.4758759401475909, abs=1e-12)
    runtime = m["total_runtime_s"] / 5
    assert m["combined_score"] == pytest.approx(0.95 * m["mean_hit_rate"] + 0.05 * (12 - min(12, runtime)) / 12)
    # ADRS did not validate: constant rows scored nearly 100% (spec 7.1)
    constant = write_program(tmp_path, """
        from llm_sql_api import Algorithm

        class Evolved(Algorithm):
            def reorder(self, df, **kwargs):
                return [list(df.rows[0]) for _ in df.rows], []
    """)
    assert evaluate(constant, semantics="adrs").metrics["mean_hit_rate"] > 0.99  # hardened: rejected
    failing = write_program(tmp_path, """
        from llm_sql_api import Algorithm

        class Evolved(Algorithm):
            def reorder(self, df, **kwargs):
                raise ValueError("boom")
    """, "failing.py")
    result = evaluate(failing, semantics="adrs")
    assert result.metrics == {"combined_score": 0.0, "runs_successfully": 0.0}
    assert result.artifacts["error"] == "table beer_like_s0: reorder raised ValueError: boom"
    with pytest.raises(ValueError, match="unknown semantics"):
        evaluate(PROBLEM / "initial_program.py", semantics="other")


def test_program_layout(problem):
    code = (PROBLEM / "initial_program.py").read_text()
    assert "EVOLVE-BLOCK" not in code  # as in ADRS, the whole file evolves
    assert "class Evolved(Algorithm)" in code
    assert (PROBLEM / "baselines" / "ggr.py").read_text() == code
    config = yaml.safe_load((PROBLEM / "problem.yaml").read_text())
    assert config["name"] == "llm_sql"
    assert (config["metric"], config["direction"]) == ("combined_score", "maximize")
    assert config["splits"] == ["search", "holdout"]


def test_other_return_shapes_are_accepted(problem, tmp_path):
    path = write_program(tmp_path, """
        from llm_sql_api import Algorithm, Table

        class Evolved(Algorithm):
            calls = 0

            def reorder(self, df, **kwargs):
                Evolved.calls += 1
                rows = [list(reversed(r)) for r in df.rows]
                rows.reverse()  # the row order does not matter
                if Evolved.calls % 2:
                    return Table(df.columns, rows)  # a Table, without the ADRS tuple
                import numpy
                return numpy.array(rows, dtype=object), None
    """)
    m = problem["evaluator"].evaluate(path).metrics
    assert m["mean_hit_rate"] > 0


# --- hostile programs (spec 7) ------------------------------------------------------------------

def program(body: str) -> str:
    return "from llm_sql_api import Algorithm\n\n\nclass Evolved(Algorithm):\n" \
           "    def reorder(self, df, **kwargs):\n" + textwrap.indent(textwrap.dedent(body), " " * 8)


INVALID = {  # 7.1: every output row must be a permutation of one input row's units
    "constant_rows": ("return [list(df.rows[0]) for _ in df.rows]", "row 1 is not a reordering"),
    "dropped_cell": ("return [r[1:] for r in df.rows]", "row 0 is not a list of 8 strings"),
    "altered_cell": ("return [[r[0] + 'x'] + r[1:] for r in df.rows]", "row 0 is not a reordering"),
    "duplicated_row": ("return df.rows[:-1] + [df.rows[0]]", "row 1999 is not a reordering"),
    "missing_row": ("return df.rows[:-1]", "1999 rows returned, expected 2000"),
    "split_fused_unit": ("return [r[:-1] + [r[-1][:5], r[-1][5:]] for r in df.rows]",
                         "row 0 is not a list of 8 strings"),
    "moved_boundary": ("return [r[:-2] + [r[-2] + r[-1][:1], r[-1][1:]] for r in df.rows]",
                       "row 0 is not a reordering"),
    "joined_units": ("return [[''.join(r)] + [''] * 7 for r in df.rows]", "row 0 is not a reordering"),
    "not_rows": ("return 42", "the result is not a table of rows"),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_outputs_are_rejected(problem, tmp_path, case):
    body, reason = INVALID[case]
    path = tmp_path / "candidate.py"
    path.write_text(program(body))
    with pytest.raises((ValueError, RuntimeError)) as info:
        problem["evaluator"].evaluate(path)
    message = str(info.value)
    assert message.startswith("table beer_like_s0: ") and reason in message and "\n" not in message


def test_patching_the_metric_changes_nothing(problem, tmp_path):
    # 7.2: the metric runs in the evaluator's process, on the validated strings
    path = write_program(tmp_path, HONEST.replace("    class Evolved", f"""
    import llm_sql_metric, llm_sql_wire, json
    llm_sql_metric.hit_rate = lambda rows: 1.0
    llm_sql_metric.prefix_hits = lambda prompts: (10**9, 1)
    llm_sql_wire.decode = lambda payload: 1.0
    json.loads = lambda *a, **k: 1.0
    MEMO = {list(range(1500))!r}

    class Evolved""", 1))
    result = problem["evaluator"].evaluate(path)
    assert result.metrics["mean_hit_rate"] == pytest.approx(0.2349411832246852, abs=1e-12)
    # a large literal is flagged (memorised orders?), the program still scored
    assert result.artifacts["warnings"] == ["source embeds a literal of 1500 items (memorised orders?)"]


def test_patched_timers_and_import_work_are_counted(problem, tmp_path):
    # 7.3: the clock is outside the program's process and includes its import
    path = write_program(tmp_path, HONEST.replace("    class Evolved", """
    import time
    time.sleep(1.0)  # work at import time
    time.time = time.perf_counter = time.monotonic = lambda: 0.0

    class Evolved""", 1).replace("return [[row", "time.sleep(0.1)\n            return [[row"))
    result = problem["evaluator"].evaluate(path)
    m = result.metrics
    assert result.artifacts["import_s"]["program"] >= 1.0
    assert m["t_cand_s"] >= 1.5
    assert m["mean_hit_rate"] == pytest.approx(0.2349411832246852, abs=1e-12)
    assert m["speed_term"] < 0.5  # slower than GGR: below the initial program's 0.5


def test_forged_messages_are_never_unpickled(problem, tmp_path):
    # 7.4: only JSON crosses; a forged pickle is rejected and never loaded
    marker = tmp_path / "unpickled"
    path = write_program(tmp_path, f"""
        import os, pickle, struct, sys
        from llm_sql_api import Algorithm

        class Bomb:
            def __reduce__(self):
                return (open, ({str(marker)!r}, "w"))

        class Evolved(Algorithm):
            def reorder(self, df, **kwargs):
                payload = pickle.dumps(Bomb())
                for _ in range(5):  # one forged result per table
                    os.write(int(sys.argv[1]), struct.pack(">cI", b"T", len(payload)) + payload)
                os._exit(0)
    """)
    with pytest.raises(RuntimeError, match="malformed message from the program process: payload is not JSON"):
        problem["evaluator"].evaluate(path)
    assert not marker.exists()


@pytest.mark.parametrize("forged,reason", [
    ("b'Z' + bytes(4)", "unknown message kind"),
    ("struct.pack('>cI', b'T', 10**9)", "message of 1000000000 bytes, limit"),
    ("struct.pack('>cI', b'T', 10)", "truncated message"),
])
def test_malformed_messages_are_rejected(problem, tmp_path, forged, reason):
    path = write_program(tmp_path, f"""
        import os, struct, sys
        from llm_sql_api import Algorithm

        class Evolved(Algorithm):
            def reorder(self, df, **kwargs):
                os.write(int(sys.argv[1]), {forged})
                os._exit(0)
    """)
    with pytest.raises(RuntimeError, match=reason):
        problem["evaluator"].evaluate(path)


def test_data_files_are_not_readable(problem, tmp_path, fake_data, monkeypatch):
    # 7.5: no data location in the environment; Python-level access to the data folder refused
    folder = fake_data[0]
    beer = folder / "llm_sql" / "beer.csv"
    report = tmp_path / "report.json"
    path = write_program(tmp_path, HONEST.replace("    class Evolved", f"""
    import json, os, shutil, subprocess

    def attempt(action):
        try:
            action()
            return "read"
        except Exception as exc:
            return type(exc).__name__

    outcome = {{
        "env": os.environ.get("SYSEVOLVE_DATA", "absent"),
        "open": attempt(lambda: open({str(beer)!r}).read()),
        "listdir": attempt(lambda: os.listdir({str(folder)!r})),
        "link": attempt(lambda: os.link({str(beer)!r}, "copy.csv")),
        "copy": attempt(lambda: shutil.copyfile({str(beer)!r}, "copy.csv")),
        "shell": attempt(lambda: subprocess.run(["cat", {str(beer)!r}], check=True)),
        "request": attempt(lambda: open("request.json").read()),
    }}
    json.dump(outcome, open({str(report)!r}, "w"))

    class Evolved""", 1))
    monkeypatch.setenv("SYSEVOLVE_DATA", str(folder))
    m = problem["evaluator"].evaluate(path).metrics
    assert "hit_rate_beer_b0" in m
    outcome = json.loads(report.read_text())
    assert outcome == {"env": "absent", "open": "PermissionError", "listdir": "PermissionError",
                       "link": "PermissionError", "copy": "PermissionError",
                       "shell": "PermissionError", "request": "FileNotFoundError"}


def test_holdout_never_reaches_the_program_during_search(problem, tmp_path):
    # 7.6: the program's process holds the search tables only
    seen = tmp_path / "seen.json"
    path = write_program(tmp_path, HONEST.replace("return [[row", f"""import gc, json, os
            if not os.path.exists({str(seen)!r}):  # scan once, on the first table
                cells = set()
                for obj in gc.get_objects():
                    if isinstance(obj, list):
                        cells.update(x for x in obj if isinstance(x, str))
                json.dump(sorted(cells), open({str(seen)!r}, "w"))
            return [[row""", 1))
    problem["evaluator"].evaluate(path)
    cells = set(json.loads(seen.read_text()))
    data = problem["llm_sql_data"]
    search = {c for t in data.split_instances("search") for r in t.rows for c in r}
    holdout = {c for t in data.split_instances("holdout") for r in t.rows for c in r}
    unique_to_holdout = {c for c in holdout - search if len(c) >= 12}
    assert len(unique_to_holdout) > 10000
    assert not cells & unique_to_holdout
    assert len(cells & search) > 1000  # the search tables were found


def test_failures_have_clear_reasons(problem, tmp_path):
    evaluate = problem["evaluator"].evaluate
    cases = {
        "raises": (program("raise KeyError('boom')"), RuntimeError,
                   "table beer_like_s0: reorder raised KeyError: 'boom'"),
        "exits": (program("raise SystemExit(3)"), RuntimeError,
                  "table beer_like_s0: reorder raised SystemExit: 3"),
        "dies": (program("import os\nos._exit(3)"), RuntimeError,
                 "the program process exited (code 3) before table beer_like_s0 finished"),
        "no_class": ("def reorder(df):\n    return df\n", RuntimeError,
                     "cannot load program: AttributeError"),
        "syntax": ("class Evolved(:\n", RuntimeError, "cannot load program: SyntaxError"),
        "slow": (program("import time\ntime.sleep(5)"), RuntimeError,
                 "timeout during table beer_like_s0: limit 0.5 s for the import plus 0.2 s per table"),
    }
    for name, (code, error, reason) in cases.items():
        path = tmp_path / f"{name}.py"
        path.write_text(code)
        limits = {"import_time_limit_s": 0.5, "table_time_limit_s": 0.2} if name == "slow" else {}
        with pytest.raises(error) as info:
            evaluate(path, **limits)
        assert reason in str(info.value) and "\n" not in str(info.value), name


# --- end to end ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_run_and_eval_cli(tmp_path, capsys, monkeypatch):
    from sysevolve.cli import main

    monkeypatch.delenv("SYSEVOLVE_DATA", raising=False)
    assert main(["run", "llm_sql", "--iterations", "20", "--out", str(tmp_path / "r"), "--seed", "0"]) == 0
    assert (tmp_path / "r" / "best" / "best_program.py").is_file()
    capsys.readouterr()
    assert main(["eval", "llm_sql", str(PROBLEM / "baselines" / "fixed_ascending_cardinality.py")]) == 0
    out = capsys.readouterr().out
    assert "mean_hit_rate" in out and "0.234941" in out and "t_ref_s" in out
