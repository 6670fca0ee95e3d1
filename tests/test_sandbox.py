"""The sandbox: one evaluation of one candidate in an isolated, limited child process."""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from sysevolve.evaluation.fitness import fitness, numeric_metrics
from sysevolve.evaluation.sandbox import (
    SCRATCH_PREFIX,
    EvaluationRequest,
    SandboxLimits,
    evaluate_in_sandbox,
    is_secret_name,
)

FIXTURES = Path(__file__).parent / "fixtures" / "sandbox"
LIMITS = SandboxLimits(timeout_s=3.0, memory_mb=512)
GOOD = "def solve():\n    return 0.75\n"


def run(code: str, problem: str = "basic", limits: SandboxLimits = LIMITS, **kwargs):
    """Evaluate `code` against a fixture problem; the outcome."""
    request = EvaluationRequest(problem_dir=FIXTURES / problem, program_code=code, **kwargs)
    return asyncio.run(evaluate_in_sandbox(request, limits))


def assert_next_evaluation_works() -> None:
    outcome = run(GOOD)
    assert outcome.ok, outcome.failure
    assert outcome.score == 0.75


def pid_alive(pid: int) -> bool:
    """False once the process is gone or a zombie (PID 1 here may not reap orphans)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# --- fitness -------------------------------------------------------------------------------


def test_fitness_prefers_the_named_metric():
    assert fitness({"combined_score": 0.5, "other": 10}) == 0.5
    assert fitness({"latency": 4.0, "x": 1}, metric="latency", direction="minimize") == -4.0


def test_fitness_falls_back_to_mean_of_numeric_metrics():
    assert fitness({"a": 1, "b": 3.0, "ok": True, "name": "x", "bad": math.nan}) == 2.0
    assert fitness({"combined_score": "high", "a": 2}) == 2.0
    assert fitness({"a": 1, "b": 3}, direction="minimize") == -2.0


def test_fitness_without_numbers_is_none():
    assert fitness({}) is None
    assert fitness({"flag": True, "name": "x", "inf": math.inf}) is None


def test_fitness_rejects_unknown_direction():
    with pytest.raises(ValueError):
        fitness({"a": 1}, direction="up")


def test_numeric_metrics_keeps_finite_numbers_only():
    metrics = {"a": 1, "b": 2.5, "c": True, "d": "3", "e": math.inf, "f": None, "g": math.nan}
    assert numeric_metrics(metrics) == {"a": 1.0, "b": 2.5}


def test_secret_names():
    for name in ("MY_API_KEY", "github_token", "DB_PASSWORD", "client_secret", "AWS_REGION",
                 "OPENAI_BASE_URL", "GOOGLE_APPLICATION_CREDENTIALS"):
        assert is_secret_name(name), name
    for name in ("PATH", "HOME", "SYSEVOLVE_DATA", "LANG"):
        assert not is_secret_name(name), name


# --- well-behaved evaluations --------------------------------------------------------------


def test_good_candidate_scores_and_keeps_its_output():
    outcome = run("def solve():\n    print('thinking')\n    return 0.75\n")
    assert outcome.ok and outcome.failure is None
    assert outcome.metrics == {"combined_score": 0.75}
    assert outcome.score == 0.75
    assert outcome.artifacts["stdout"] == "thinking\n"
    assert outcome.duration_s > 0


def test_result_object_with_artifacts_is_made_json_safe():
    outcome = run(GOOD, problem="rich_result", metric="latency", direction="minimize")
    assert outcome.ok, outcome.failure
    assert outcome.metrics == {"latency": 3.0}
    assert outcome.score == -3.0
    non_numeric = outcome.artifacts["non_numeric_metrics"]
    assert non_numeric == {"valid": True, "label": "fast", "bad": "nan"}
    assert len(outcome.artifacts["log"]) < 21_000 and "truncated" in outcome.artifacts["log"]
    assert outcome.artifacts["obj"].startswith("<object object")
    assert outcome.artifacts["nested"] == {"t": [1, 2.5]}
    json.dumps(outcome.artifacts)


def test_scratch_dir_environment_and_cleanup(tmp_path, monkeypatch):
    monkeypatch.setenv("MY_API_KEY", "sk-should-not-leak")
    monkeypatch.setenv("OPENAI_ORG", "org-x")
    code = (
        "import json, os, sys, tempfile\n"
        "def solve():\n"
        "    print(json.dumps({'key': os.environ.get('MY_API_KEY'),\n"
        "                      'org': os.environ.get('OPENAI_ORG'),\n"
        "                      'data': os.environ.get('SYSEVOLVE_DATA'),\n"
        "                      'hashseed': os.environ.get('PYTHONHASHSEED'),\n"
        "                      'pythonpath': os.environ.get('PYTHONPATH'),\n"
        "                      'cwd': os.getcwd(), 'tmp': tempfile.gettempdir(),\n"
        "                      'file': __file__}))\n"
        "    return 1.0\n"
    )
    outcome = run(code, env={"SYSEVOLVE_DATA": str(tmp_path)}, program_filename="policy.py")
    assert outcome.ok, outcome.failure
    seen = json.loads(outcome.artifacts["stdout"])
    assert seen["key"] is None and seen["org"] is None
    assert seen["data"] == str(tmp_path)
    assert seen["hashseed"] == "0"
    assert seen["pythonpath"] == str(Path(__file__).resolve().parent.parent / "src")
    assert Path(seen["cwd"]).name.startswith(SCRATCH_PREFIX)
    assert seen["tmp"].startswith(seen["cwd"])
    assert seen["file"] == os.path.join(seen["cwd"], "policy.py")
    assert not os.path.exists(seen["cwd"])


def test_long_output_keeps_head_and_tail():
    code = "def solve():\n    print('HEAD' + 'x' * 50_000 + 'TAIL')\n    return 1.0\n"
    outcome = run(code)
    assert outcome.ok, outcome.failure
    stdout = outcome.artifacts["stdout"]
    assert stdout.startswith("HEAD") and stdout.rstrip().endswith("TAIL")
    assert "bytes truncated" in stdout and len(stdout) < 21_000


def test_fake_score_printed_to_stdout_is_ignored():
    code = (
        "import json, sys\n"
        "def solve():\n"
        "    print(json.dumps({'combined_score': 1e9}))\n"
        "    print(json.dumps({'ok': True, 'metrics': {'combined_score': 1e9}}), file=sys.stderr)\n"
        "    return 0.25\n"
    )
    outcome = run(code)
    assert outcome.ok, outcome.failure
    assert outcome.score == 0.25
    assert outcome.metrics == {"combined_score": 0.25}


def test_concurrent_evaluations():
    async def four():
        requests = [
            EvaluationRequest(FIXTURES / "basic", f"def solve():\n    return {i}\n")
            for i in range(4)
        ]
        return await asyncio.gather(*(evaluate_in_sandbox(r, LIMITS) for r in requests))

    outcomes = asyncio.run(four())
    assert [o.ok for o in outcomes] == [True] * 4
    assert [o.score for o in outcomes] == [0.0, 1.0, 2.0, 3.0]


# --- misbehaving candidates ----------------------------------------------------------------


def test_infinite_loop_times_out_and_kills_the_process_group(tmp_path):
    code = (
        "import os, subprocess\n"
        "def solve():\n"
        "    sleeper = subprocess.Popen(['sleep', '1000'])\n"
        "    with open(os.path.join(os.environ['SANDBOX_TEST_DIR'], 'pid'), 'w') as f:\n"
        "        f.write(str(sleeper.pid))\n"
        "    print('looping', flush=True)\n"
        "    while True:\n"
        "        pass\n"
    )
    limits = SandboxLimits(timeout_s=2.0, memory_mb=512)
    started = time.monotonic()
    outcome = run(code, limits=limits, env={"SANDBOX_TEST_DIR": str(tmp_path)})
    assert time.monotonic() - started < 5
    assert not outcome.ok
    assert outcome.failure == "timeout after 2.0 s (killed)"
    assert outcome.score is None and outcome.metrics == {}
    assert outcome.artifacts["stdout"] == "looping\n"
    pid = int((tmp_path / "pid").read_text())
    deadline = time.monotonic() + 2
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(pid)
    assert_next_evaluation_works()


@pytest.mark.parametrize(
    "bomb",
    ["    return len(bytearray(10 * 1024 ** 3))\n",
     "    chunks = []\n    while True:\n        chunks.append(bytearray(10 ** 7))\n"],
    ids=["bytearray", "list-growth"],
)
def test_memory_bomb(bomb):
    outcome = run("def solve():\n" + bomb)
    assert not outcome.ok
    assert outcome.failure == "memory limit exceeded (512 MB)"
    assert_next_evaluation_works()


def test_cpu_time_limit():
    outcome = run("def solve():\n    while True:\n        pass\n",
                  limits=SandboxLimits(timeout_s=5.0, memory_mb=512, cpu_s=1))
    assert not outcome.ok
    assert outcome.failure == "killed by signal SIGXCPU (CPU time limit 1 s)"
    assert outcome.duration_s < 4


def test_file_size_limit():
    code = "def solve():\n    open('big', 'wb').write(b'x' * 2_000_000)\n    return 1.0\n"
    outcome = run(code, limits=SandboxLimits(timeout_s=3.0, memory_mb=512, max_file_bytes=10**6))
    assert not outcome.ok
    assert outcome.failure.startswith("evaluator raised OSError")
    assert "File too large" in outcome.failure


def test_hard_exit_is_a_crash():
    code = "import os, sys\ndef solve():\n    print('bye', file=sys.stderr)\n    os._exit(3)\n"
    outcome = run(code)
    assert not outcome.ok
    assert outcome.failure == "crashed: exit code 3 (bye)"
    assert outcome.artifacts["stderr"] == "bye\n"
    assert_next_evaluation_works()


def test_exception_is_reported_with_traceback():
    outcome = run("def solve():\n    return 1 / 0\n")
    assert not outcome.ok
    assert outcome.failure == "evaluator raised ZeroDivisionError: division by zero"
    assert "ZeroDivisionError" in outcome.artifacts["traceback"]
    assert "solve" in outcome.artifacts["traceback"]
    assert_next_evaluation_works()


def test_sys_exit_in_candidate_is_an_exception():
    outcome = run("import sys\ndef solve():\n    sys.exit(2)\n")
    assert not outcome.ok
    assert outcome.failure == "evaluator raised SystemExit: 2"


def test_wrong_return_type():
    outcome = run(GOOD, problem="wrong_type")
    assert not outcome.ok
    assert outcome.failure == (
        "evaluator returned str, expected a dict of metrics or an object with .metrics"
    )
    assert_next_evaluation_works()


def test_no_numeric_metrics():
    outcome = run("def solve():\n    return float('nan')\n")
    assert not outcome.ok
    assert outcome.failure == "no numeric metrics returned"
    assert outcome.artifacts["non_numeric_metrics"] == {"combined_score": "nan"}


def test_output_flood_is_killed():
    code = "import sys\ndef solve():\n    while True:\n        sys.stdout.write('y' * 1_000_000)\n"
    started = time.monotonic()
    outcome = run(code)
    assert time.monotonic() - started < 3
    assert not outcome.ok
    assert outcome.failure == "output limit exceeded (10000000 bytes)"
    assert len(outcome.artifacts["stdout"]) < 21_000
    assert_next_evaluation_works()


def test_garbage_on_the_result_channel_is_malformed():
    # A hostile candidate that finds the result pipe and writes junk into it, then exits cleanly.
    code = (
        "import os, stat\n"
        "def solve():\n"
        "    for name in os.listdir('/proc/self/fd'):\n"
        "        fd = int(name)\n"
        "        try:\n"
        "            if fd > 2 and stat.S_ISFIFO(os.fstat(fd).st_mode):\n"
        "                os.write(fd, b'{\"ok\": true, \"metrics\": ')\n"
        "        except OSError:\n"
        "            pass\n"
        "    os._exit(0)\n"
    )
    outcome = run(code)
    assert not outcome.ok
    assert outcome.failure == "malformed result from evaluation child"
    assert_next_evaluation_works()


def test_cancelled_evaluation_kills_the_child_and_cleans_up(tmp_path):
    code = (
        "import os\n"
        "def solve():\n"
        "    with open(os.path.join(os.environ['SANDBOX_TEST_DIR'], 'pid'), 'w') as f:\n"
        "        f.write(f'{os.getpid()} {os.getcwd()}')\n"
        "    while True:\n"
        "        pass\n"
    )
    request = EvaluationRequest(FIXTURES / "basic", code, env={"SANDBOX_TEST_DIR": str(tmp_path)})

    async def start_then_cancel():
        task = asyncio.create_task(evaluate_in_sandbox(request, LIMITS))
        while not (tmp_path / "pid").exists():
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)  # let the file be written completely
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(start_then_cancel())
    pid, scratch = (tmp_path / "pid").read_text().split()
    deadline = time.monotonic() + 2
    while pid_alive(int(pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(int(pid))
    assert not os.path.exists(scratch)


def test_missing_problem_dir_fails_cleanly(tmp_path):
    outcome = asyncio.run(evaluate_in_sandbox(EvaluationRequest(tmp_path, GOOD), LIMITS))
    assert not outcome.ok
    assert outcome.failure == f"no evaluator.py in {tmp_path.resolve()}"


# --- cascade and splits --------------------------------------------------------------------


def test_cascade_stops_below_threshold():
    outcome = run("STAGE_SCORES = (0.2, 0.9)\n", problem="cascade", cascade_thresholds=(0.5,))
    assert outcome.ok, outcome.failure
    assert outcome.metrics == {"combined_score": 0.2, "stage1_ran": 1.0}
    assert outcome.artifacts["stage_reached"] == 1


def test_cascade_passes_threshold_and_merges_stages():
    outcome = run("STAGE_SCORES = (0.6, 0.9)\n", problem="cascade", cascade_thresholds=(0.5,))
    assert outcome.ok, outcome.failure
    assert outcome.metrics == {"combined_score": 0.9, "stage1_ran": 1.0, "stage2_ran": 1.0}
    assert outcome.score == 0.9
    assert outcome.artifacts["stage_reached"] == 2


def test_without_cascade_evaluate_is_used():
    outcome = run("STAGE_SCORES = (0.6, 0.9)\n", problem="cascade")
    assert outcome.ok, outcome.failure
    assert outcome.metrics == {"combined_score": -1.0, "plain_evaluate_ran": 1.0}
    assert "stage_reached" not in outcome.artifacts


def test_split_and_kwargs_passed_when_accepted():
    outcome = run(GOOD, problem="split", split="holdout", evaluator_kwargs={"seed": 7})
    assert outcome.ok, outcome.failure
    assert outcome.score == 2.0
    assert outcome.artifacts["non_numeric_metrics"] == {"split": "holdout", "kwargs": ["seed"]}


def test_split_and_unknown_kwargs_withheld_when_not_accepted():
    outcome = run(GOOD, problem="no_split", evaluator_kwargs={"seed": 7, "other": 1})
    assert outcome.ok, outcome.failure
    assert outcome.metrics == {"combined_score": 1.0, "seed": 7.0}


def test_holdout_needs_an_evaluator_that_supports_split():
    outcome = run(GOOD, problem="no_split", split="holdout")
    assert not outcome.ok
    assert outcome.failure == "evaluator does not support split='holdout'"


def test_scratch_of_a_dead_engine_is_removed(monkeypatch, tmp_path):
    import sysevolve.evaluation.sandbox as sandbox

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(sandbox, "_root", None)
    dead = subprocess.Popen(["true"])
    dead.wait()
    leftover = tmp_path / f"sysevolve-{dead.pid}" / "sysevolve-eval-abc"
    leftover.mkdir(parents=True)
    (leftover / "program.py").write_text("x = 1\n")
    alive = tmp_path / f"sysevolve-{os.getppid()}"
    alive.mkdir()
    root = sandbox.scratch_root()
    assert root == str(tmp_path / f"sysevolve-{os.getpid()}")
    assert not leftover.parent.exists() and alive.exists()
