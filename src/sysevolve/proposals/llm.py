"""Calling one model of the ensemble through the `openai` SDK's async client.

Any OpenAI-compatible endpoint works: OpenAI, Gemini's and Anthropic's OpenAI-compatible
endpoints, OpenRouter, vLLM, Ollama, llama.cpp. The SDK's own retries are off: this module
retries 429s, 5xx, timeouts and connection errors itself, with exponential backoff and jitter,
honouring Retry-After, inside a hard deadline per call, so that every attempt and its cause
can be counted.
"""

from __future__ import annotations

import asyncio
import email.utils
import os
import random
import re
import time
from dataclasses import dataclass, field
from typing import Any

import openai

from sysevolve.config import REDACTED, ConfigError, LLMConfig, ModelConfig
from sysevolve.proposals import pricing
from sysevolve.proposals.base import one_line

DEFAULT_API_BASE = "https://api.openai.com/v1"
DEFAULT_MODEL_ENV = "SYSEVOLVE_MODEL"
DEFAULT_MODEL = "gpt-4o-mini"
_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class Model:
    """A model with every setting resolved; `api_key` is the secret itself, never stored."""

    name: str
    weight: float
    api_base: str
    api_key: str = field(repr=False)
    temperature: float | None
    top_p: float | None
    max_tokens: int | None
    timeout: float
    extra_body: dict[str, Any]
    price_in: float | None
    price_out: float | None

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        if self.price_in is None or self.price_out is None:
            return 0.0
        return pricing.cost_usd(input_tokens, output_tokens, self.price_in, self.price_out)


@dataclass(frozen=True)
class Completion:
    """A model's answer and the tokens it was billed for."""

    text: str
    input_tokens: int
    output_tokens: int
    attempts: int


class CallFailed(Exception):
    """A call that produced no usable answer; `cause` names why, for counting."""

    def __init__(self, cause: str, message: str, attempts: int, input_tokens: int = 0,
                 output_tokens: int = 0, response: str = ""):
        super().__init__(message)
        self.cause = cause
        self.attempts = attempts
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens
        self.response = response


def expand_secret(value: str, where: str, environ: dict[str, str]) -> str:
    """`value` with ${VAR} references replaced from the environment."""

    def lookup(match: re.Match) -> str:
        name = match.group(1)
        if name not in environ:
            raise ConfigError(f"{where}: environment variable {name} is not set")
        return environ[name]

    return _ENV_REFERENCE.sub(lookup, value)


def configured_models(settings: LLMConfig, environ: dict[str, str] | None = None) -> list[ModelConfig]:
    """The ensemble's models; without any, one default model when OPENAI_* is set, else none."""
    environ = os.environ if environ is None else environ
    if settings.models:
        return list(settings.models)
    if environ.get("OPENAI_API_KEY") or environ.get("OPENAI_BASE_URL"):
        return [ModelConfig(name=environ.get(DEFAULT_MODEL_ENV, DEFAULT_MODEL))]
    return []


def _api_key(model: ModelConfig, settings: LLMConfig, configured_base: str | None, where: str,
             environ: dict[str, str]) -> str:
    """The key for one model: its own, else the section's, else OPENAI_API_KEY (as the openai
    SDK and OpenEvolve do). A literal key that was not stored is never replaced by
    OPENAI_API_KEY for another provider's endpoint."""
    for key in (model.api_key, settings.api_key):
        if key == REDACTED:
            if configured_base is None and environ.get("OPENAI_API_KEY"):
                return environ["OPENAI_API_KEY"]
            raise ConfigError(f"{where}: its api_key was written literally in the config, and literal "
                              "keys are never stored; reference an environment variable as ${VAR} instead")
        if key:
            return expand_secret(key, where, environ)
    return environ.get("OPENAI_API_KEY", "")


def resolve_models(settings: LLMConfig, environ: dict[str, str] | None = None) -> list[Model]:
    """Every configured model with the section's defaults and the environment applied."""
    environ = dict(os.environ if environ is None else environ)
    configs = configured_models(settings, environ)
    names = [m.name for m in configs]
    if len(set(names)) != len(names):
        raise ConfigError(f"llm.models: model names must be unique, got {names}")
    models = []
    for index, m in enumerate(configs):
        where = f"llm.models[{index}] ({m.name})"
        configured_base = m.api_base or settings.api_base
        known = pricing.lookup(m.name) or (None, None)
        models.append(Model(
            name=m.name,
            weight=m.weight,
            api_base=configured_base or environ.get("OPENAI_BASE_URL") or DEFAULT_API_BASE,
            # Local servers need no key, but the SDK insists on one.
            api_key=_api_key(m, settings, configured_base, where, environ) or "no-key",
            temperature=m.temperature if m.temperature is not None else settings.temperature,
            top_p=m.top_p if m.top_p is not None else settings.top_p,
            max_tokens=m.max_tokens or settings.max_tokens,
            timeout=m.timeout or settings.timeout,
            extra_body={**settings.extra_body, **m.extra_body},
            price_in=m.price_in if m.price_in is not None else known[0],
            price_out=m.price_out if m.price_out is not None else known[1],
        ))
    return models


def _retry_after(error: openai.APIStatusError) -> float | None:
    """Seconds the server asks us to wait: retry-after-ms, retry-after seconds or HTTP date."""
    if error.response is None:
        return None
    headers = error.response.headers
    try:
        if headers.get("retry-after-ms") is not None:
            return float(headers["retry-after-ms"]) / 1000
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return float(value)
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _classify(error: Exception) -> tuple[str, bool]:
    """(cause, worth retrying) for an exception raised by the SDK."""
    if isinstance(error, openai.RateLimitError):
        return "rate_limited", True
    if isinstance(error, openai.APITimeoutError):  # a subclass of APIConnectionError: first
        return "timeout", True
    if isinstance(error, openai.APIConnectionError):
        return "connection_error", True
    if isinstance(error, openai.APIStatusError):
        if error.status_code >= 500:
            return "server_error", True
        return f"http_{error.status_code}", False
    return "bad_response", False


def make_clients(models: list[Model], settings: LLMConfig) -> dict[str, "ModelClient"]:
    """A ModelClient per model name, with one SDK client per endpoint (base URL and key)."""
    endpoints: dict[tuple[str, str], openai.AsyncOpenAI] = {}
    clients = {}
    for model in models:
        key = (model.api_base, model.api_key)
        if key not in endpoints:
            endpoints[key] = openai.AsyncOpenAI(base_url=model.api_base, api_key=model.api_key,
                                                max_retries=0)
        clients[model.name] = ModelClient(model, settings, endpoints[key])
    return clients


class ModelClient:
    """Calls one model through its endpoint's SDK client."""

    def __init__(self, model: Model, settings: LLMConfig, client: openai.AsyncOpenAI,
                 jitter: random.Random | None = None):
        self.model = model
        self.settings = settings
        self.endpoint = client
        self._jitter = jitter or random.Random()  # jitter delays retries; it touches no result

    async def complete(self, messages: list[dict]) -> Completion:
        """The model's answer to `messages`, or CallFailed once retries or the deadline run out.

        A call that hits the deadline is counted under the cause of its last failed attempt
        (or "deadline" when the first attempt was still waiting).
        """
        progress = {"attempts": 0, "cause": "deadline", "error": ""}
        deadline = self.settings.call_deadline_s
        try:
            return await asyncio.wait_for(self._with_retries(messages, progress, deadline), deadline)
        except asyncio.TimeoutError:
            last = f" (last failure: {progress['error']})" if progress["error"] else ""
            raise CallFailed(progress["cause"], f"no answer within the {deadline:g} s deadline per "
                             f"call{last}", progress["attempts"]) from None

    async def _with_retries(self, messages: list[dict], progress: dict, deadline: float) -> Completion:
        s = self.settings
        started = asyncio.get_running_loop().time()
        while True:
            progress["attempts"] += 1
            attempts = progress["attempts"]
            try:
                response = await self._request(messages)
            except Exception as error:  # noqa: BLE001 - every failure is classified and counted
                cause, retry = _classify(error)
                message = one_line(error)
                progress.update(cause=cause, error=message)
                if not retry or attempts > s.retries:
                    raise CallFailed(cause, message, attempts) from None
                delay = min(s.retry_max_s, s.retry_base_s * 2 ** (attempts - 1))
                delay *= 0.5 + self._jitter.random()  # spread retries of concurrent callers
                if isinstance(error, openai.APIStatusError):
                    delay = max(delay, _retry_after(error) or 0.0)
                if asyncio.get_running_loop().time() - started + delay >= deadline:
                    raise CallFailed(cause, f"{message} (retry in {delay:.1f} s would pass the "
                                     f"{deadline:g} s deadline)", attempts) from None
                await asyncio.sleep(delay)
                continue
            return _answer(response, attempts)

    async def _request(self, messages: list[dict]):
        m = self.model
        options: dict[str, Any] = {}
        if m.temperature is not None:
            options["temperature"] = m.temperature
        if m.top_p is not None:
            options["top_p"] = m.top_p
        if m.max_tokens is not None:
            options["max_tokens"] = m.max_tokens
        if m.extra_body:
            options["extra_body"] = m.extra_body
        return await self.endpoint.chat.completions.create(
            model=m.name, messages=messages, timeout=m.timeout, **options
        )


def _answer(response: Any, attempts: int) -> Completion:
    """The text of a chat completion, or CallFailed naming what is wrong with it."""
    usage = getattr(response, "usage", None)
    tokens_in = int(getattr(usage, "prompt_tokens", 0) or 0)
    tokens_out = int(getattr(usage, "completion_tokens", 0) or 0)
    choices = getattr(response, "choices", None)
    if not choices:
        raise CallFailed("empty_answer", "the response has no choices", attempts, tokens_in, tokens_out)
    choice = choices[0]
    text = (choice.message.content if choice.message is not None else None) or ""
    if choice.finish_reason == "length":
        raise CallFailed("truncated", "the answer was cut at max_tokens", attempts, tokens_in,
                         tokens_out, text)
    if not text.strip():
        raise CallFailed("empty_answer", "the answer is empty", attempts, tokens_in, tokens_out)
    return Completion(text, tokens_in, tokens_out, attempts)

