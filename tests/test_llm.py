"""The LLM proposer end to end, through real HTTP to the fake OpenAI-compatible server."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections import Counter

import pytest
import yaml

from conftest import FIXTURES, resume_loop, run_loop
from fake_llm import FakeLLM
from sysevolve.config import ConfigError
from sysevolve.runs import create_run, summary
from sysevolve.store import Store

SECRET = "sk-test-DO-NOT-LEAK-4f9a2c"
PRICE_IN, PRICE_OUT = 2.0, 8.0  # USD per million tokens


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.setenv("FAKE_LLM_KEY", SECRET)
    with FakeLLM() as server:
        yield server


def llm(fake, *names, **extra):
    """An llm config section pointing every model at the fake server."""
    models = [{"name": n, "api_base": fake.base_url, "api_key": "${FAKE_LLM_KEY}", "price_in": PRICE_IN,
               "price_out": PRICE_OUT} for n in (names or ("fake-model",))]
    return {"models": models, "retry_base_s": 0.01, "retry_max_s": 0.05, **extra}


def calls(out) -> list[dict]:
    with sqlite3.connect(out / "run.db") as db:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute("SELECT * FROM llm_calls ORDER BY id")]


def info(out) -> dict:
    store = Store(out / "run.db")
    try:
        return summary(store)
    finally:
        store.close()


def test_llm_run_improves_toy_problem(tmp_path, fake, toy_problem):
    out = tmp_path / "run"
    run_loop(toy_problem, out, llm=llm(fake), run={"iterations": 30}, seed=1)
    result = info(out)
    assert result["iterations"] == 30
    assert result["best_score"] > result["initial_score"]
    assert fake.served["improve"] >= 30
    stored = calls(out)
    assert {c["outcome"] for c in stored} == {"ok"}
    # each proposal's prompt holds its parent program first
    first_user = json.loads(stored[0]["messages"])[1]["content"]
    assert "def guess" in first_user


@pytest.mark.slow
def test_llm_run_improves_txn_scheduling(tmp_path, fake, monkeypatch):
    monkeypatch.delenv("SYSEVOLVE_DATA", raising=False)
    out = tmp_path / "run"
    run_loop("txn_scheduling", out, llm=llm(fake), run={"iterations": 60}, seed=0)
    result = info(out)
    assert result["best_score"] > result["initial_score"]


def test_faults_are_handled_and_counted_by_cause(tmp_path, fake, toy_problem):
    # Faults are served in this order, one per HTTP request; each call may retry once.
    fake.fail("500", times=2)  # call 1: both attempts fail
    fake.fail("timeout", times=2, delay_s=3)  # call 2: both attempts time out (client: 1 s)
    fake.fail("malformed_json")  # call 3: garbled, not retried
    fake.fail("empty_choices")  # call 4: empty, not retried
    fake.fail("truncated")  # call 5: cut at max_tokens
    fake.fail("429", retry_after=0.3)  # call 6: retried after Retry-After, then answered...
    fake.behaviour("fake-model", "script")
    fake.script("fake-model", ["I would rather not change anything today."])  # ...with no edit
    out = tmp_path / "run"
    run_loop(toy_problem, out, llm=llm(fake, timeout=1.0, retries=1, set_aside_s=0.1),
             run={"iterations": 12}, proposals={"concurrency": 1, "repair": False},
             evaluation={"workers": 1})
    stored = calls(out)
    assert [(c["outcome"], c["attempts"]) for c in stored[:6]] == [
        ("server_error", 2), ("timeout", 2), ("bad_response", 1), ("empty_answer", 1),
        ("truncated", 1), ("no_edit", 2),
    ]
    assert stored[5]["latency_s"] >= 0.3  # Retry-After was honoured
    assert {c["outcome"] for c in stored[6:]} == {"ok"}
    result = info(out)
    assert result["iterations"] == 12
    assert result["proposal_failures"] == 6
    failed = result["models"][0]["failed_calls"]
    assert failed == {"server_error": 1, "timeout": 1, "bad_response": 1, "empty_answer": 1,
                      "truncated": 1, "no_edit": 1}


def test_search_that_matches_nothing_is_rejected_then_repaired(tmp_path, fake, toy_problem):
    fake.behaviour("fake-model", "bad_search")
    out = tmp_path / "run"
    run_loop(toy_problem, out, llm=llm(fake), run={"iterations": 3},
             proposals={"concurrency": 1, "repair": False})
    result = info(out)
    assert result["invalid_edits"] == 3
    store = Store(out / "run.db")
    try:
        rejected = [p for p in store.programs() if p.status == "invalid_edit"]
    finally:
        store.close()
    assert all("matches nothing" in p.failure for p in rejected)

    fake.behaviour("fake-model", "improve")
    fake.script("fake-model", ["<<<<<<< SEARCH\nnot in the program\n=======\nx = 2\n>>>>>>> REPLACE\n"])
    out2 = tmp_path / "run2"
    run_loop(toy_problem, out2, llm=llm(fake), run={"iterations": 1}, proposals={"repair": True})
    stored = calls(out2)
    assert [c["outcome"] for c in stored] == ["edit_rejected", "ok"]
    assert "matches nothing" in json.loads(stored[1]["messages"])[-1]["content"]
    assert info(out2)["invalid_edits"] == 0


def test_cost_budget_stops_the_run_and_costs_add_up(tmp_path, fake, toy_problem):
    out = tmp_path / "run"
    _, reason = run_loop(toy_problem, out, llm=llm(fake), run={"iterations": 1000},
                         budget={"max_cost_usd": 0.002}, proposals={"concurrency": 2})
    assert "cost budget" in reason
    stored = calls(out)
    total = sum(c["cost_usd"] for c in stored)
    assert total >= 0.002
    assert len(stored) < 1000
    tokens_in, tokens_out = fake.usage_by_model()["fake-model"]
    assert total == pytest.approx((tokens_in * PRICE_IN + tokens_out * PRICE_OUT) / 1e6)
    assert info(out)["cost_usd"] == pytest.approx(total)


def test_token_and_proposal_budgets(tmp_path, fake, toy_problem):
    _, reason = run_loop(toy_problem, tmp_path / "a", llm=llm(fake), run={"iterations": 1000},
                         budget={"max_tokens": 3000})
    assert "token budget" in reason
    _, reason = run_loop(toy_problem, tmp_path / "b", llm=llm(fake), run={"iterations": 1000},
                         budget={"max_proposals": 4})
    assert "proposal budget" in reason
    assert info(tmp_path / "b")["iterations"] == 4


def test_model_weights_are_respected(tmp_path, fake, toy_problem):
    section = llm(fake, "heavy", "light")
    section["models"][0]["weight"], section["models"][1]["weight"] = 0.8, 0.2
    out = tmp_path / "run"
    run_loop(toy_problem, out, llm=section, run={"iterations": 100})
    share = Counter(c["model"] for c in calls(out))
    assert 0.65 <= share["heavy"] / 100 <= 0.92  # binomial(100, 0.8): 3+ standard deviations


def test_bandit_shifts_to_the_improving_model_and_survives_resume(tmp_path, fake, toy_problem):
    from sysevolve.runs import open_run

    fake.behaviour("useless", "noop")
    section = llm(fake, "useless", "useful", selection="ucb")
    out = tmp_path / "run"
    live, _ = run_loop(toy_problem, out, llm=section, run={"iterations": 40}, proposals={"repair": False})
    share = Counter(c["model"] for c in calls(out))
    assert share["useful"] > 2 * share["useless"]

    def learned(ensemble):
        return {name: (r.pulls, r.improvements, round(r.cost_usd, 12)) for name, r in ensemble.records.items()}

    reopened = open_run(out)
    try:
        reopened.engine._rebuild()
        assert learned(reopened.engine.proposer.ensemble) == learned(live.engine.proposer.ensemble)
    finally:
        reopened.close()
    resume_loop(out, iterations=60)
    after = Counter(c["model"] for c in calls(out))
    assert after["useful"] > 2 * after["useless"]


def test_api_key_never_stored_or_given_to_candidates(tmp_path, fake, toy_problem, monkeypatch):
    folder = tmp_path / "leaky"
    shutil.copytree(toy_problem, folder)
    (folder / "evaluator.py").write_text(
        "import os, json\n"
        "def evaluate(program_path):\n"
        "    env = json.dumps(dict(os.environ))\n"
        "    return {'combined_score': 0.5, 'saw_key': float('sk-test' in env)}\n"
    )
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    out = tmp_path / "run"
    run_loop(folder, out, llm=llm(fake), run={"iterations": 4})
    assert all(r.headers.get("authorization") == f"Bearer {SECRET}" for r in fake.requests)
    for path in out.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    store = Store(out / "run.db")
    try:
        assert all(p.metrics.get("saw_key") == 0.0 for p in store.programs() if p.status == "ok")
    finally:
        store.close()


def test_literal_key_is_used_but_never_stored(tmp_path, fake, toy_problem, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    section = llm(fake)
    section["models"][0]["api_key"] = SECRET
    out = tmp_path / "run"
    run_loop(toy_problem, out, llm=section, run={"iterations": 2})
    assert fake.requests[-1].headers["authorization"] == f"Bearer {SECRET}"
    assert SECRET.encode() not in (out / "run.db").read_bytes()
    with pytest.raises(ConfigError, match="never stored"):
        resume_loop(out, iterations=3)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-personal")
    with pytest.raises(ConfigError, match="never stored"):
        resume_loop(out, iterations=3)  # OpenAI's key is never sent to another endpoint


def test_openevolve_example_runs_against_the_fake_server(tmp_path, fake, monkeypatch):
    folder = tmp_path / "example"
    shutil.copytree(FIXTURES / "openevolve_example", folder)
    config = yaml.safe_load((folder / "config.yaml").read_text())
    config["llm"]["api_base"] = fake.base_url  # the only change: where the models live
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    out = tmp_path / "run"
    run, reason = run_loop(folder, out)
    assert "budget" in reason
    served = {r.model for r in fake.requests}
    assert served <= {"gemini-2.0-flash-lite", "gemini-2.0-flash"}
    assert info(out)["iterations"] == 10
    assert info(out)["best_score"] >= info(out)["initial_score"]


def test_outage_stops_the_run_and_it_stays_resumable(tmp_path, fake, toy_problem):
    fake.fail("500", times=10_000)
    out = tmp_path / "run"
    _, reason = run_loop(toy_problem, out, run={"iterations": 50},
                         llm=llm(fake, retries=0, max_outage_s=1.0, set_aside_after=2, set_aside_s=0.2))
    assert "unavailable" in reason and "every model has failed" in reason
    assert info(out)["iterations"] < 50
    fake.clear_faults()
    _, reason = resume_loop(out)
    assert "budget" in reason
    assert info(out)["iterations"] == 50


def test_status_shows_cost_and_models(tmp_path, fake, toy_problem, capsys):
    from sysevolve.cli import main

    out = tmp_path / "run"
    run_loop(toy_problem, out, llm=llm(fake, "alpha", "beta"), run={"iterations": 6})
    capsys.readouterr()
    assert main(["status", str(out), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["tokens"] > 0 and data["cost_usd"] > 0
    assert {m["model"] for m in data["models"]} <= {"alpha", "beta"}
    assert sum(m["proposals"] for m in data["models"]) == 6
    assert main(["status", str(out)]) == 0
    text = capsys.readouterr().out
    assert "models" in text and ("alpha" in text or "beta" in text)


def test_a_failing_model_is_set_aside_and_the_others_carry_on(tmp_path, fake, toy_problem):
    fake.fail("500", times=10_000, model="broken")
    out = tmp_path / "run"
    _, reason = run_loop(toy_problem, out, run={"iterations": 20},
                         llm=llm(fake, "broken", "fine", retries=0, set_aside_after=2, set_aside_s=60))
    assert "budget" in reason
    by_model = Counter(c["model"] for c in calls(out))
    assert by_model["broken"] <= 3  # benched after 2 failures in a row (one more may be in flight)
    assert by_model["fine"] >= 17
    assert info(out)["iterations"] == 20


def test_ucb_does_not_send_every_concurrent_proposal_to_one_model(tmp_path, fake, toy_problem):
    out = tmp_path / "run"
    run_loop(toy_problem, out, llm=llm(fake, "m1", "m2", selection="ucb"), run={"iterations": 6},
             proposals={"concurrency": 6}, evaluation={"workers": 1})
    first = [c["model"] for c in calls(out)]
    assert set(first) == {"m1", "m2"}
    assert max(Counter(first).values()) <= 4


def test_slow_evaluations_are_not_an_outage(tmp_path, fake, toy_problem):
    folder = tmp_path / "slow"
    shutil.copytree(toy_problem, folder)
    evaluator = (folder / "evaluator.py").read_text()
    (folder / "evaluator.py").write_text(evaluator.replace("    x = float", "    import time; time.sleep(0.8)\n    x = float"))
    out = tmp_path / "run"
    _, reason = run_loop(folder, out, llm=llm(fake, max_outage_s=0.5), run={"iterations": 3},
                         proposals={"concurrency": 1}, evaluation={"workers": 1})
    assert "budget" in reason


def test_calls_of_a_cancelled_proposal_are_stored(tmp_path, fake, toy_problem):
    fake.set_latency(1.0)
    fake.behaviour("fake-model", "bad_search")  # the first answer is rejected: a repair turn follows
    out = tmp_path / "run"
    _, reason = run_loop(toy_problem, out, llm=llm(fake), run={"iterations": 1, "max_wall_s": 1.6},
                         proposals={"concurrency": 1})
    assert "wall-clock" in reason
    stored = calls(out)
    assert [c["outcome"] for c in stored] == ["edit_rejected"]  # the repair call was cut off
    store = Store(out / "run.db")
    try:
        (program,) = [p for p in store.programs() if p.iteration == 1]
    finally:
        store.close()
    assert program.status == "proposal_failed" and "cancelled" in program.failure


def test_cost_budget_needs_prices(tmp_path, fake, toy_problem):
    section = llm(fake, "unpriced-model")
    del section["models"][0]["price_in"], section["models"][0]["price_out"]
    with pytest.raises(ConfigError, match="needs a price"):
        create_run(toy_problem, out_dir=tmp_path / "run",
                   overrides={"llm": section, "budget": {"max_cost_usd": 1.0}})
    assert not (tmp_path / "run").exists()  # nothing half-made is left behind


def test_broken_template_override_fails_at_start(tmp_path, fake, toy_problem):
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "user.j2").write_text("{{ parnt.code }}\n")
    with pytest.raises(ConfigError, match="parnt"):
        create_run(toy_problem, out_dir=tmp_path / "run",
                   overrides={"llm": llm(fake), "prompt": {"template_dir": str(templates)}})
    assert not (tmp_path / "run").exists()


def test_offline_flag_never_calls_a_model(tmp_path, fake, toy_problem, capsys):
    from sysevolve.cli import main

    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"llm": llm(fake)}))
    out = tmp_path / "run"
    assert main(["run", str(toy_problem), "--config", str(config), "--iterations", "3",
                 "--out", str(out), "--offline"]) == 0
    assert fake.requests == []
    assert "offline proposer" in capsys.readouterr().out
