"""Workloads of the eplb problem: the synthetic generator (the default) and the real-file loader.

A workload is a sequence of windows W_0 .. W_{T-1}, each an int64 [layers, experts] matrix of
token counts. Step i calls the program on W_i and scores the placement on W_{i+1} (spec 3.1).
Windows are produced lazily, so a window does not exist before the calls on the one before it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np

LAYERS, EXPERTS, WINDOWS = 58, 256, 24
TOKENS, SIGMA, RHO = 2**20, 1.0, 0.9
SEARCH_SEED, HOLDOUT_SEEDS = 0, (1, 2)
RECORDS_PER_WINDOW = 100
REAL_FILE = Path("eplb") / "expert-load.json"
SPLITS = ("search", "holdout")


class Stream(NamedTuple):
    """A named window sequence; `windows()` starts a fresh lazy iterator of `steps + 1` windows."""

    name: str
    steps: int
    windows: Callable[[], Iterator[np.ndarray]]


def synthetic_windows(seed: int, layers: int = LAYERS, experts: int = EXPERTS,
                      windows: int = WINDOWS, tokens: int = TOKENS, sigma: float = SIGMA,
                      rho: float = RHO) -> Iterator[np.ndarray]:
    """Yields the windows of spec 4.2: AR(1) per-layer log-popularity, multinomial counts."""
    rng = np.random.default_rng(seed)
    z = sigma * rng.normal(size=(layers, experts))
    for w in range(windows):
        if w > 0:
            z = rho * z + np.sqrt(1 - rho**2) * sigma * rng.normal(size=(layers, experts))
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        yield rng.multinomial(tokens, p).astype(np.int64)


def load_real(path: Path, cache_dir: Path | None = None) -> np.ndarray:
    """The windows [T, layers, experts] of an `expert-load.json` file (spec 4.1).

    Parsing takes seconds, so the result is cached as .npy under `cache_dir` (default
    ~/.cache/sysevolve/eplb), keyed by the file's path, size and modification time.
    """
    path = Path(path)
    cache = _cache_file(path, cache_dir)
    if cache.is_file():
        try:
            return np.load(cache)
        except (OSError, ValueError):
            pass  # a damaged cache is rebuilt
    windows = parse_real(path)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_suffix(f".{os.getpid()}.tmp")
        with open(partial, "wb") as f:
            np.save(f, windows)
        os.replace(partial, cache)
    except OSError:
        pass  # no writable cache: parse again next time
    return windows


def parse_real(path: Path, per_window: int = RECORDS_PER_WINDOW) -> np.ndarray:
    """Sums of consecutive blocks of `per_window` records (the last may be shorter).

    Records are decoded one at a time: the whole document as Python lists would need gigabytes.
    """
    text = Path(path).read_text(encoding="utf-8")
    key = re.search(r'"load_history"\s*:\s*\[', text)
    if key is None:
        raise ValueError(f"{path}: no \"load_history\" list")
    decoder, separator = json.JSONDecoder(), re.compile(r"[\s,]*")
    pos, windows, acc, n = key.end(), [], None, 0
    while True:
        pos = separator.match(text, pos).end()
        if pos >= len(text) or text[pos] == "]":
            break
        record, pos = decoder.raw_decode(text, pos)
        load = np.asarray(record["logical_expert_load"], dtype=np.int64)
        if load.ndim != 2 or (acc is not None and load.shape != acc.shape) or (load < 0).any():
            raise ValueError(f"{path}: record {len(windows) * per_window + n} has a bad "
                             f"logical_expert_load (shape {load.shape})")
        acc = load if acc is None else acc + load
        n += 1
        if n == per_window:
            windows.append(acc)
            acc, n = None, 0
    if acc is not None:
        windows.append(acc)
    if len(windows) < 2:
        raise ValueError(f"{path}: {len(windows)} window(s); at least 2 are needed")
    return np.stack(windows)


def _cache_file(path: Path, cache_dir: Path | None) -> Path:
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    if cache_dir is None:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        cache_dir = Path(base) / "sysevolve" / "eplb"
    return Path(cache_dir) / f"windows-{digest}.npy"


def _copies(windows: np.ndarray) -> Iterator[np.ndarray]:
    for window in windows:
        yield np.array(window)


def split_streams(split: str, real: np.ndarray | None = None,
                  real_holdout: bool = False) -> list[Stream]:
    """The window streams of a split (spec 4.3).

    search: synthetic seed 0, or the real windows when given (their first three quarters if
    `real_holdout`); holdout: synthetic seeds 1 and 2, plus the real last quarter if `real_holdout`.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} (expected one of {', '.join(SPLITS)})")
    cut = None if real is None else len(real) - (len(real) // 4 if real_holdout else 0)
    if split == "search":
        if real is None:
            return [Stream(f"seed{SEARCH_SEED}", WINDOWS - 1,
                           lambda: synthetic_windows(SEARCH_SEED))]
        return [Stream("real", cut - 1, lambda: _copies(real[:cut]))]
    streams = [Stream(f"seed{s}", WINDOWS - 1, lambda s=s: synthetic_windows(s))
               for s in HOLDOUT_SEEDS]
    if real is not None and real_holdout and len(real) - cut >= 2:
        streams.append(Stream("real_holdout", len(real) - cut - 1, lambda: _copies(real[cut:])))
    return streams
