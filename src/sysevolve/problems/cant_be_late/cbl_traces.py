"""Spot availability traces: the synthetic generator, the real-archive loader, the splits' grids.

A base trace covers 1,781 ticks of 10 minutes for one environment (1 = spot unavailable); a run
sees a 554-tick window of it. The real archive (never part of this repository) is read with
`tarfile` and the parsed base traces and window offsets are cached outside the repository.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import random
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ENVIRONMENTS = ("us-west-2a_k80_1", "us-west-2b_k80_1", "us-west-2a_v100_1", "us-west-2b_v100_1")
# Mean lengths (ticks) of available and unavailable runs, fitted to the real base traces.
PROFILES = {
    "us-west-2a_k80_1": (39.5, 2.0),
    "us-west-2b_k80_1": (10.2, 30.3),
    "us-west-2a_v100_1": (13.7, 6.3),
    "us-west-2b_v100_1": (11.8, 8.0),
}
BASE_TICKS = 1781
WINDOW_TICKS = 554
WINDOW_FILES = 300
SEARCH_WINDOWS = 30
DURATION_H = 48.0
DEADLINES_H = (52.0, 70.0, 92.0)
OVERHEADS_H = (0.02, 0.2, 0.4)
SPLITS = ("search", "holdout", "all")
SYNTHETIC_SEEDS = {"search": (0,), "holdout": (1,), "all": (0, 1)}

ARCHIVE = Path("cant_be_late") / "real_traces.tar.gz"
ARCHIVE_SHA256 = "26813d4c6dbe0b60e3d0ff7dc264427a665736c6199aa48a8f0c8aba0437d503"
WINDOW_DIR = "real/ddl=search+task=48+overhead=0.02/real/{env}/traces/random_start/"
BASE_FILE = "real/ping_based/{env}.json"
CACHE_VERSION = 1


@dataclass(frozen=True)
class Traces:
    """Base traces per environment and the start offsets of its window files (file i -> offset)."""

    bases: dict[str, np.ndarray]
    offsets: dict[str, tuple[int, ...]]


@dataclass(frozen=True)
class Grid:
    """The runs of an evaluation: one row per run, times in seconds."""

    traces: np.ndarray  # (runs, WINDOW_TICKS) uint8
    duration: np.ndarray
    deadline: np.ndarray
    overhead: np.ndarray
    env: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.duration)

    def scenario(self, i: int) -> str:
        """'<env> T=<h>h d=<h>h', the scenario of run i."""
        return f"{self.env[i]} T={self.deadline[i] / 3600:g}h d={self.overhead[i] / 3600:g}h"


# --- synthetic ------------------------------------------------------------------------------------

def synthetic(seed: int) -> Traces:
    """Four Markov-chain base traces and 30 shared window offsets, drawn as spec 4.2 says."""
    rng = random.Random(seed)
    bases = {}
    for env in ENVIRONMENTS:
        up, down = PROFILES[env]
        available = rng.random() < up / (up + down)
        data = [0 if available else 1]
        for _ in range(BASE_TICKS - 1):
            u = rng.random()
            available = (u >= 1 / up) if available else (u < 1 / down)
            data.append(0 if available else 1)
        bases[env] = np.array(data, dtype=np.uint8)
    offsets = tuple(rng.randint(0, BASE_TICKS - WINDOW_TICKS) for _ in range(SEARCH_WINDOWS))
    return Traces(bases, {env: offsets for env in ENVIRONMENTS})


# --- real -----------------------------------------------------------------------------------------

def load_real(archive: Path, cache_dir: Path | None = None) -> Traces:
    """The four base traces and 300 window offsets per environment from the ADRS archive."""
    archive = Path(archive)
    digest = archive_digest(archive)
    cache = (cache_dir or default_cache_dir()) / f"real_{digest[:16]}_v{CACHE_VERSION}.npz"
    try:
        with np.load(cache) as saved:
            return Traces({e: saved[f"base_{e}"] for e in ENVIRONMENTS},
                          {e: tuple(int(x) for x in saved[f"offsets_{e}"]) for e in ENVIRONMENTS})
    except Exception:  # missing or unreadable: parse again
        pass
    traces = _parse_archive(archive)
    arrays = {f"base_{e}": traces.bases[e] for e in ENVIRONMENTS}
    arrays.update({f"offsets_{e}": np.array(traces.offsets[e]) for e in ENVIRONMENTS})
    try:  # a cache that cannot be written (read-only home) only costs time
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, cache)
    except OSError:
        pass
    return traces


def default_cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "sysevolve" / "cant_be_late"


@functools.lru_cache(maxsize=4)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def archive_digest(archive: Path) -> str:
    """SHA-256 of the archive (computed once per file version and process)."""
    st = Path(archive).stat()
    return _digest(str(Path(archive).resolve()), st.st_size, st.st_mtime_ns)


def archive_warnings(archive: Path) -> list[str]:
    """A warning when the archive is not the published one."""
    digest = archive_digest(archive)
    return [] if digest == ARCHIVE_SHA256 else [
        f"{archive}: SHA-256 {digest[:12]}... differs from the published archive's; "
        "scores may not be comparable"]


def _parse_archive(archive: Path) -> Traces:
    base_names = {BASE_FILE.format(env=e): e for e in ENVIRONMENTS}
    window_re = {e: re.compile(re.escape(WINDOW_DIR.format(env=e)) + r"(\d+)\.json") for e in ENVIRONMENTS}
    bases, windows = {}, {e: {} for e in ENVIRONMENTS}
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            if not member.isfile() or not member.name.endswith(".json"):
                continue
            env = base_names.get(member.name)
            if env is not None:
                bases[env] = np.array(_json(tar, member)["data"], dtype=np.uint8)
                continue
            for env, pattern in window_re.items():
                match = pattern.fullmatch(member.name)
                if match:
                    doc = _json(tar, member)
                    windows[env][int(match.group(1))] = (int(doc["metadata"]["start_time"]), doc["data"])
                    break
    offsets = {}
    for env in ENVIRONMENTS:
        if env not in bases or len(bases[env]) != BASE_TICKS:
            raise ValueError(f"{archive}: base trace of {env} missing or not {BASE_TICKS} ticks")
        if sorted(windows[env]) != list(range(WINDOW_FILES)):
            raise ValueError(f"{archive}: {env} does not have window files 0..{WINDOW_FILES - 1}")
        for i, (start, data) in windows[env].items():
            if not np.array_equal(bases[env][start: start + WINDOW_TICKS], np.array(data, dtype=np.uint8)):
                raise ValueError(f"{archive}: window {i} of {env} is not its base trace at {start}")
        offsets[env] = tuple(windows[env][i][0] for i in range(WINDOW_FILES))
    return Traces(bases, offsets)


def _json(tar: tarfile.TarFile, member: tarfile.TarInfo):
    return json.load(io.TextIOWrapper(tar.extractfile(member), encoding="utf-8"))


def search_files() -> list[int]:
    """The 30 window files of the ADRS grid: evenly spaced positions in lexicographic order."""
    names = sorted(f"{i}.json" for i in range(WINDOW_FILES))
    picked, last = [], -1
    for j in range(SEARCH_WINDOWS):
        pos = min(max(round(j * (WINDOW_FILES - 1) / (SEARCH_WINDOWS - 1)), last + 1), WINDOW_FILES - 1)
        picked.append(int(names[pos][: -len(".json")]))
        last = pos
    return picked


def holdout_files() -> list[int]:
    """The other 270 window files, in lexicographic order as ADRS lists them."""
    chosen = set(search_files())
    listed = [int(n[: -len(".json")]) for n in sorted(f"{i}.json" for i in range(WINDOW_FILES))]
    return [f for f in listed if f not in chosen]


# --- grids ----------------------------------------------------------------------------------------

def build_grid(windows: dict[str, list[np.ndarray]], deadlines_h=DEADLINES_H,
               overheads_h=OVERHEADS_H, duration_h: float = DURATION_H) -> Grid:
    """Every (environment, deadline, overhead, window) combination, in that nesting order."""
    rows, D, T, d, envs = [], [], [], [], []
    for env, traces in windows.items():
        for deadline in deadlines_h:
            for overhead in overheads_h:
                rows += traces
                D += [duration_h * 3600] * len(traces)
                T += [deadline * 3600] * len(traces)
                d += [overhead * 3600] * len(traces)
                envs += [env] * len(traces)
    return Grid(np.array(rows, dtype=np.uint8), np.array(D), np.array(T), np.array(d), tuple(envs))


def windows_of(traces: Traces, files, limit: int | None = None) -> dict[str, list[np.ndarray]]:
    """env -> window traces of the given window files (the first `limit` of them)."""
    files = list(files)[:limit]
    return {env: [traces.bases[env][traces.offsets[env][f]: traces.offsets[env][f] + WINDOW_TICKS]
                  for f in files] for env in ENVIRONMENTS}


def real_archive(data_dir) -> Path | None:
    """The archive under `data_dir` (which must hold it) or $SYSEVOLVE_DATA (if it does), else None."""
    if data_dir is not None:
        path = Path(data_dir) / ARCHIVE
        if not path.is_file():
            raise FileNotFoundError(f"real trace archive not found at {path}")
        return path
    env = os.environ.get("SYSEVOLVE_DATA")
    if env and (Path(env) / ARCHIVE).is_file():
        return Path(env) / ARCHIVE
    return None


def split_grid(split: str, data_dir=None, limit: int | None = None) -> tuple[Grid, str]:
    """(grid, data source) of a split; `limit` keeps the first windows per environment."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} (known: {', '.join(SPLITS)})")
    archive = real_archive(data_dir)
    if archive is not None:
        traces = load_real(archive)
        files = {"search": search_files(), "holdout": holdout_files(),
                 "all": search_files() + holdout_files()}[split]
        return build_grid(windows_of(traces, files, limit)), str(archive)
    windows: dict[str, list] = {env: [] for env in ENVIRONMENTS}
    for seed in SYNTHETIC_SEEDS[split]:
        for env, wins in windows_of(synthetic(seed), range(SEARCH_WINDOWS)).items():
            windows[env] += wins
    if limit is not None:
        windows = {env: wins[:limit] for env, wins in windows.items()}
    return build_grid(windows), f"synthetic (seeds {', '.join(map(str, SYNTHETIC_SEEDS[split]))})"
