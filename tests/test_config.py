"""Configuration errors are one line and name the key."""

from __future__ import annotations

import pytest

from conftest import FIXTURES
from sysevolve.cli import main
from sysevolve.config import ConfigError, build_config


def test_misspelled_key_names_the_key_and_suggests():
    with pytest.raises(ConfigError) as info:
        build_config([("my.yaml", {"selection": {"num_island": 3}})])
    message = str(info.value)
    assert "\n" not in message
    assert "selection.num_island" in message and "num_islands" in message
    assert message.startswith("my.yaml")


def test_wrong_type_names_the_key():
    with pytest.raises(ConfigError) as info:
        build_config([("my.yaml", {"run": {"iterations": "many"}})])
    assert "run.iterations" in str(info.value) and "\n" not in str(info.value)


def test_later_layers_override_earlier():
    config, _ = build_config([("a", {"run": {"iterations": 5}, "seed": 1}), ("b", {"seed": 2})])
    assert (config.run.iterations, config.seed) == (5, 2)


def test_openevolve_keys_translate():
    config, ignored = build_config([("oe", {
        "max_iterations": 7, "random_seed": 9,
        "database": {"num_islands": 2, "feature_dimensions": ["complexity", "score_x"]},
        "evaluator": {"timeout": 12, "parallel_evaluations": 3},
        "checkpoint_interval": 10,
    })])
    assert config.run.iterations == 7 and config.seed == 9
    assert config.selection.feature_dimensions == ("code_length", "score_x")
    assert config.evaluation.timeout_s == 12 and config.evaluation.workers == 3
    assert ignored == ["checkpoint_interval"]


def test_cli_reports_bad_config_in_one_line(tmp_path, capsys, toy_problem):
    bad = tmp_path / "bad.yaml"
    bad.write_text("evaluation:\n  timeout_s: fast\n")
    code = main(["run", str(toy_problem), "--config", str(bad), "--out", str(tmp_path / "r")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert "evaluation.timeout_s" in err
    assert len(err.splitlines()) == 1


def test_cli_stops_when_initial_program_fails(tmp_path, capsys):
    code = main(["run", str(FIXTURES / "broken_initial"), "--out", str(tmp_path / "r"),
                 "--iterations", "5"])
    assert code == 1
    assert "ZeroDivisionError" in capsys.readouterr().err


def test_unknown_problem_is_a_clear_error(capsys):
    assert main(["eval", "no_such_problem", "x.py"]) == 2
    assert "no problem 'no_such_problem'" in capsys.readouterr().err


def test_misspelled_openevolve_key_is_an_error():
    with pytest.raises(ConfigError) as info:
        build_config([("config.yaml", {"database": {"num_islandz": 3}})])
    assert "database.num_islandz" in str(info.value) and "num_islands" in str(info.value)


def test_bad_openevolve_value_names_the_openevolve_key():
    with pytest.raises(ConfigError) as info:
        build_config([("config.yaml", {"evaluator": {"timeout": -1}})])
    assert "evaluator.timeout" in str(info.value) and "\n" not in str(info.value)


def test_problem_folder_errors_are_one_line(tmp_path):
    from sysevolve.problem import ProblemError, load_problem

    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "initial_program.py").write_text("x = 1\n")
    with pytest.raises(ProblemError, match="missing evaluator.py"):
        load_problem(folder)
    (folder / "evaluator.py").write_text("def evaluate(path):\n    return {'combined_score': 1}\n")
    (folder / "problem.yaml").write_text("nmae: typo\n")
    with pytest.raises(ProblemError) as info:
        load_problem(folder)
    assert "unknown key 'nmae'" in str(info.value) and "\n" not in str(info.value)
    (folder / "problem.yaml").write_text("direction: upwards\n")
    with pytest.raises(ProblemError, match="bad value for 'direction'"):
        load_problem(folder)


def test_evaluator_kwargs_reach_the_evaluator(tmp_path):
    import asyncio

    from sysevolve.evaluation.harness import Harness
    from sysevolve.problem import load_problem

    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "initial_program.py").write_text("x = 1\n")
    (folder / "evaluator.py").write_text(
        "def evaluate(program_path, factor=1.0):\n    return {'combined_score': factor}\n")
    (folder / "problem.yaml").write_text("evaluator_kwargs: {factor: 2.0}\n")
    problem = load_problem(folder)
    config, _ = build_config([("c", {"evaluation": {"evaluator_kwargs": {"factor": 3.0}}})])
    assert asyncio.run(Harness(problem, config.evaluation).evaluate("x = 1\n")).score == 3.0
    default, _ = build_config([])
    assert asyncio.run(Harness(problem, default.evaluation).evaluate("x = 1\n")).score == 2.0


def test_openevolve_llm_section_translates():
    config, ignored = build_config([("config.yaml", {
        "llm": {
            "api_base": "http://127.0.0.1:9/v1", "api_key": "${SOME_KEY}", "temperature": 0.5,
            "top_p": 0.9, "max_tokens": 2048, "timeout": 30, "retries": 2, "retry_delay": 3,
            "models": [{"name": "a", "weight": 0.7, "reasoning_effort": "high"},
                       {"name": "b", "weight": 0.3, "api_base": "http://127.0.0.1:8/v1",
                        "api_key": "${OTHER}", "random_seed": 1}],
            "evaluator_models": [{"name": "judge"}],
        },
        "prompt": {"system_message": "be brief", "num_top_programs": 4, "include_artifacts": False},
        "diff_based_evolution": False,
    })])
    llm = config.llm
    assert [m.name for m in llm.models] == ["a", "b"] and llm.models[0].weight == 0.7
    assert llm.models[0].extra_body == {"reasoning_effort": "high"}
    assert (llm.api_base, llm.api_key, llm.retries, llm.retry_base_s) == ("http://127.0.0.1:9/v1", "${SOME_KEY}", 2, 3)
    assert llm.models[1].api_base == "http://127.0.0.1:8/v1"
    assert config.prompt.system_message == "be brief" and config.prompt.max_artifact_chars == 0
    assert config.selection.num_top_inspirations == 4
    assert config.proposals.mode == "rewrite"
    assert "llm.evaluator_models" in ignored and "llm.models[1].random_seed" in ignored
