"""The fake OpenAI-compatible server, exercised through the real `openai` SDK."""

from __future__ import annotations

import ast
import asyncio
import re
import time

import openai
import pytest
from fake_llm import FakeLLM

from sysevolve.proposals.edits import EditError, apply_rewrite, apply_search_replace, parse_blocks
from sysevolve.proposals.regions import find_regions, line_in_regions

API_KEY = "sk-test-fake-llm-0123456789"

# "    x = 1.0" is in the evolve block and twice outside it, so SEARCH text needs enough context.
PROGRAM = '''\
"""Fixed header: 0.5 and a < b here must never change."""
import math

x = 1.0


# EVOLVE-BLOCK-START
def score(a, b):
    x = 1.0
    y = 2
    if a < b:
        return max(a, b) * x
    return min(a, b) + y
# EVOLVE-BLOCK-END


def run():
    x = 1.0
    return score(1, 2) + math.sqrt(x)
'''

NO_MARKERS = '''\
def guess(a):
    if a > 3:
        return min(a, 10) * 0.5
    return a + 1
'''

DIFF_RULES = "Answer with SEARCH/REPLACE blocks:\n<<<<<<< SEARCH\nold\n=======\nnew\n>>>>>>> REPLACE"


def messages(program: str = PROGRAM, diff: bool = True) -> list[dict]:
    system = DIFF_RULES if diff else "Answer with the whole improved program in a python fence."
    user = f"Improve this program.\n```python\n{program}```\nIts score is 0.3.\n```python\nprint(1)\n```"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def ask(client: openai.OpenAI, model: str = "fake-a", **kwargs) -> openai.types.chat.ChatCompletion:
    return client.chat.completions.create(model=model, messages=messages(**kwargs))


def fixed_lines(code: str) -> list[str]:
    regions = find_regions(code)
    return [line for i, line in enumerate(code.splitlines()) if not line_in_regions(regions, i)]


@pytest.fixture
def fake():
    with FakeLLM() as server:
        yield server


@pytest.fixture
def client(fake):
    with openai.OpenAI(base_url=fake.base_url, api_key=API_KEY, max_retries=0, timeout=5) as sdk:
        yield sdk


# --- behaviours ---------------------------------------------------------------------------------


@pytest.mark.parametrize("program", [PROGRAM, NO_MARKERS], ids=["markers", "no_markers"])
def test_improve_in_diff_mode_edits_only_the_evolve_block(fake, client, program):
    answers = set()
    for _ in range(25):
        text = ask(client, program=program).choices[0].message.content
        answers.add(text)
        (block,) = parse_blocks(text)
        assert program.count(block.search) == 1
        child = apply_search_replace(program, text)
        assert child != program
        assert fixed_lines(child) == fixed_lines(program)
        ast.parse(child)
    assert len(answers) > 5  # answers vary from call to call
    assert fake.served == {"improve": 25}


def test_improve_in_rewrite_mode_returns_the_whole_program(client):
    text = ask(client, diff=False).choices[0].message.content
    assert "<<<<<<< SEARCH" not in text
    code = re.search(r"```python\n(.*?)```", text, re.DOTALL).group(1)
    assert code.startswith('"""Fixed header') and "# EVOLVE-BLOCK-END" in code
    assert code != PROGRAM and fixed_lines(code) == fixed_lines(PROGRAM)
    assert apply_rewrite(PROGRAM, code) == code


def test_improve_repeats_given_the_same_requests():
    def answers() -> list[str]:
        with FakeLLM() as server, openai.OpenAI(base_url=server.base_url, api_key=API_KEY) as sdk:
            return [ask(sdk, diff=i % 2 == 0).choices[0].message.content for i in range(6)]

    assert answers() == answers()


def test_bad_behaviours(fake, client):
    fake.behaviour("noop", "noop")
    fake.behaviour("quiet", "no_edit")
    fake.behaviour("wrong", "bad_search")
    noop = ask(client, "noop").choices[0].message.content
    assert apply_search_replace(PROGRAM, noop) == PROGRAM
    quiet = ask(client, "quiet").choices[0].message.content
    assert parse_blocks(quiet) == [] and "```" not in quiet and quiet.strip()
    wrong = ask(client, "wrong").choices[0].message.content
    with pytest.raises(EditError, match="matches nothing"):
        apply_search_replace(PROGRAM, wrong)
    assert fake.served == {"noop": 1, "no_edit": 1, "bad_search": 1}
    with pytest.raises(ValueError):
        fake.behaviour("x", "clever")


def test_script_answers_in_order_then_improves(fake, client):
    fake.script("fake-a", ["first", "second"])
    assert [ask(client).choices[0].message.content for _ in range(2)] == ["first", "second"]
    assert apply_search_replace(PROGRAM, ask(client).choices[0].message.content) != PROGRAM
    assert fake.served == {"script": 2, "improve": 1}


# --- accounting ---------------------------------------------------------------------------------


def test_usage_by_model_matches_what_the_sdk_parsed(fake, client):
    fake.fail("500", model="fake-b")  # not a success: never counted
    fake.fail("empty_content", model="fake-a")
    fake.fail("truncated", model="fake-b")
    seen: dict[str, tuple[int, int]] = {}
    for model in ["fake-a", "fake-b"] * 3:
        try:
            usage = ask(client, model).usage
        except openai.InternalServerError:
            continue
        p, c = seen.get(model, (0, 0))
        seen[model] = (p + usage.prompt_tokens, c + usage.completion_tokens)
        assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert fake.usage_by_model() == seen
    words = sum(len(m["content"].split()) for m in messages())
    assert seen["fake-a"][0] == 3 * words and seen["fake-b"][0] == 2 * words


def test_requests_are_recorded_with_the_authorization_header(fake, client):
    ask(client, "fake-b")
    (request,) = fake.requests
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.model == "fake-b" and request.body["messages"] == messages()


def test_models_endpoint_and_unknown_models():
    with FakeLLM(models=["a", "b"]) as server, openai.OpenAI(
        base_url=server.base_url, api_key=API_KEY, max_retries=0
    ) as sdk:
        assert [m.id for m in sdk.models.list()] == ["a", "b"]
        with pytest.raises(openai.NotFoundError):
            ask(sdk, "c")


# --- faults -------------------------------------------------------------------------------------


@pytest.mark.parametrize("params, header", [({}, "0.1"), ({"retry_after": 2}, "2")])
def test_429_carries_retry_after(fake, client, params, header):
    fake.fail("429", **params)
    with pytest.raises(openai.RateLimitError) as caught:
        ask(client)
    assert caught.value.status_code == 429
    assert caught.value.response.headers["retry-after"] == header
    ask(client)  # the fault was used up
    assert fake.served == {"429": 1, "improve": 1}


@pytest.mark.parametrize("kind", ["500", "503"])
def test_server_errors(fake, client, kind):
    fake.fail(kind)
    with pytest.raises(openai.InternalServerError) as caught:
        ask(client)
    assert caught.value.status_code == int(kind)


def test_timeout_is_a_timeout_and_is_not_billed(fake):
    fake.fail("timeout", delay_s=0.6)
    with openai.OpenAI(base_url=fake.base_url, api_key=API_KEY, max_retries=0, timeout=0.2) as sdk:
        with pytest.raises(openai.APITimeoutError):
            ask(sdk)
        time.sleep(0.6)  # the server wakes, sees the client gone, sends nothing
        assert fake.usage_by_model() == {}
        assert ask(sdk).choices[0].message.content
    assert fake.served == {"timeout": 1, "improve": 1}


def test_slow_answer_within_the_client_timeout_arrives(fake, client):
    fake.fail("timeout", delay_s=0.1)
    assert ask(client).choices[0].finish_reason == "stop"


def test_disconnect_is_a_connection_error(fake, client):
    fake.fail("disconnect")
    with pytest.raises(openai.APIConnectionError) as caught:
        ask(client)
    assert not isinstance(caught.value, openai.APITimeoutError)


def test_malformed_json_raises(fake, client):
    fake.fail("malformed_json")
    with pytest.raises(ValueError):  # the SDK lets json's JSONDecodeError through
        ask(client)
    assert fake.usage_by_model() == {}


def test_degenerate_answers(fake, client):
    fake.fail("empty_choices")
    fake.fail("empty_content")
    fake.fail("truncated")
    assert ask(client).choices == []
    empty = ask(client).choices[0]
    assert empty.message.content == "" and empty.finish_reason == "stop"
    truncated = ask(client).choices[0]
    full = ask(client).choices[0]
    assert truncated.finish_reason == "length" and full.finish_reason == "stop"
    assert 0 < len(truncated.message.content) < len(full.message.content)
    assert fake.served == {"empty_choices": 1, "empty_content": 1, "truncated": 1, "improve": 1}


def test_faults_are_consumed_in_order_and_per_model(fake, client):
    fake.fail("500", times=2, model="fake-a")
    fake.fail("429")
    with pytest.raises(openai.RateLimitError):
        ask(client, "fake-b")  # the model-specific fault does not apply to fake-b
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            ask(client, "fake-a")
    ask(client, "fake-a")
    assert fake.served == {"429": 1, "500": 2, "improve": 1}
    with pytest.raises(ValueError):
        fake.fail("gremlins")


# --- lifecycle and throughput -------------------------------------------------------------------


def test_latency_overlaps_concurrent_requests():
    async def burst(url: str) -> float:
        async with openai.AsyncOpenAI(base_url=url, api_key=API_KEY, max_retries=0) as sdk:
            start = time.perf_counter()
            await asyncio.gather(*(
                sdk.chat.completions.create(model="fake-a", messages=messages()) for _ in range(8)
            ))
            return time.perf_counter() - start

    fake = FakeLLM(latency_s=0.05)
    fake.start()
    try:
        fake.set_latency(0.3)
        elapsed = asyncio.run(burst(fake.base_url))
    finally:
        fake.stop()
    assert 0.3 <= elapsed < 1.5  # served side by side, not one after another (2.4 s)
    assert fake.served == {"improve": 8}
    with pytest.raises(RuntimeError):
        fake.base_url
