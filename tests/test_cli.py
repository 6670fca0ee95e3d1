"""The command line, end to end, in-process."""

from __future__ import annotations

import json

import pytest

from conftest import SHARED_DATA
from sysevolve.cli import build_parser, main
from sysevolve.problem import builtin_problems

TXN = builtin_problems()["txn_scheduling"]


def _json_out(capsys) -> dict:
    return json.loads(capsys.readouterr().out)


def test_help_lists_every_command():
    help_text = build_parser().format_help()
    for command in ("run", "resume", "status", "best", "eval", "problems"):
        assert command in help_text


def test_problems_lists_builtins(capsys):
    assert main(["problems"]) == 0
    assert "txn_scheduling" in capsys.readouterr().out


def test_eval_scores_like_the_loop(capsys, monkeypatch):
    monkeypatch.delenv("SYSEVOLVE_DATA", raising=False)
    assert main(["eval", "txn_scheduling", str(TXN / "initial_program.py"), "--json"]) == 0
    result = _json_out(capsys)
    assert result["ok"] and result["metrics"]["total_makespan"] == 443
    assert result["score"] == pytest.approx(1e6 / 444)


def test_eval_baseline_prints_metrics(capsys, monkeypatch):
    monkeypatch.delenv("SYSEVOLVE_DATA", raising=False)
    assert main(["eval", "txn_scheduling", str(TXN / "baselines" / "smf_full.py")]) == 0
    out = capsys.readouterr().out
    assert "total_makespan" in out and "369" in out


def test_eval_holdout_split(capsys, monkeypatch):
    monkeypatch.delenv("SYSEVOLVE_DATA", raising=False)
    args = ["eval", "txn_scheduling", str(TXN / "initial_program.py"), "--split", "holdout", "--json"]
    assert main(args) == 0
    assert _json_out(capsys)["metrics"]["total_makespan"] == 1305


def test_eval_with_real_data(capsys):
    if not (SHARED_DATA / "txn_scheduling" / "workloads.json").exists():
        pytest.skip(f"real workloads not found under {SHARED_DATA}; skipping")
    args = ["eval", "txn_scheduling", str(TXN / "initial_program.py"), "--data", str(SHARED_DATA), "--json"]
    assert main(args) == 0
    assert _json_out(capsys)["metrics"]["total_makespan"] == 368


def test_eval_of_a_failing_program_says_why(tmp_path, capsys):
    bad = tmp_path / "bad.py"
    bad.write_text("def get_best_schedule(workload, num_seqs):\n    return [0]\n")
    assert main(["eval", "txn_scheduling", str(bad)]) == 1
    assert "expected 100" in capsys.readouterr().err


def test_run_status_best(tmp_path, capsys, toy_problem):
    out = tmp_path / "run"
    assert main(["run", str(toy_problem), "--iterations", "12", "--out", str(out), "--seed", "2"]) == 0
    capsys.readouterr()
    assert main(["status", str(out), "--json"]) == 0
    info = _json_out(capsys)
    for key in ("iterations", "best_score", "initial_score", "programs", "failed", "invalid_edits"):
        assert key in info
    assert info["iterations"] == 12 and info["programs"] == 13
    assert main(["best", str(out)]) == 0
    assert "def guess" in capsys.readouterr().out
    assert main(["best", str(out), "--diff"]) == 0
    diff = capsys.readouterr().out
    assert diff.startswith("---") or "initial program" in diff
    assert main(["run", str(toy_problem), "--out", str(out)]) == 2  # never overwrite a run
    assert "sysevolve resume" in capsys.readouterr().err


@pytest.mark.slow
def test_offline_run_improves_txn_scheduling(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SYSEVOLVE_DATA", raising=False)
    out = tmp_path / "txn"
    assert main(["run", "txn_scheduling", "--iterations", "80", "--seed", "0", "--out", str(out)]) == 0
    capsys.readouterr()
    main(["status", str(out), "--json"])
    info = _json_out(capsys)
    assert info["iterations"] == 80
    assert info["best_score"] > info["initial_score"]
