"""What a model call costs: USD per million input and output tokens.

A small table of common models, as listed by their providers in 2025-2026; a model's
`price_in` / `price_out` in the config always wins. Prices change: check them before a budget
matters, and set them in the config for any model not listed here.
"""

from __future__ import annotations

import re

# name -> (USD per million input tokens, USD per million output tokens)
PRICES: dict[str, tuple[float, float]] = {
    "gpt-5": (1.25, 10.0),
    "gpt-5-mini": (0.25, 2.0),
    "gpt-5-nano": (0.05, 0.40),
    "gpt-4.1": (2.0, 8.0),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4o": (2.50, 10.0),
    "gpt-4o-mini": (0.15, 0.60),
    "o3": (2.0, 8.0),
    "o4-mini": (1.10, 4.40),
    "gemini-2.5-pro": (1.25, 10.0),
    "gemini-2.5-flash": (0.30, 2.50),
    "gemini-2.5-flash-lite": (0.10, 0.40),
    "gemini-2.0-flash": (0.10, 0.40),
    "gemini-2.0-flash-lite": (0.075, 0.30),
    "claude-opus-4": (15.0, 75.0),
    "claude-sonnet-4": (3.0, 15.0),
    "claude-3-5-haiku": (0.80, 4.0),
    "deepseek-chat": (0.27, 1.10),
    "deepseek-reasoner": (0.55, 2.19),
}


_VERSION_SUFFIX = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8}|\d{4}|latest)$")


def lookup(name: str) -> tuple[float, float] | None:
    """Prices for `name`, tolerating a provider prefix ("openai/gpt-4o") and a date or
    "-latest" suffix ("gpt-4o-mini-2024-07-18"); "o3-pro" is not "o3" and stays unknown."""
    base = _VERSION_SUFFIX.sub("", name.rsplit("/", 1)[-1].lower())
    return PRICES.get(base)


def cost_usd(input_tokens: int, output_tokens: int, price_in: float, price_out: float) -> float:
    return (input_tokens * price_in + output_tokens * price_out) / 1_000_000
