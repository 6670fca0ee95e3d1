"""Evaluator of the eplb problem (spec sections 3 and 7).

Step i of a workload calls the program on a fresh copy of window W_i and scores its placement on
W_{i+1}. Windows come from a reference process forked before the candidate is loaded
(`eplb_reference`): it owns the generator, hands out W_{i+1} only after the calls on W_i, and
times the shipped hierarchical baseline call by call in lockstep with the candidate, so the
speedup compares the two under the same machine load. Every call is timed `timing_repeats`
times around the call plus the conversion of its outputs to owned int64 arrays; a step's time is
its slowest repeat (the repeats see the same input, so a program that caches its last answer
gains nothing); the first call's outputs are validated and scored. Validation and scoring use
private copies of the simulator, so patching the importable modules changes nothing. The
candidate runs in this process: isolation from a deliberately hostile program is the job of the
harness sandbox (see the README).
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import itertools
import math
import os
import re
import sys
import threading
import time
import traceback
from pathlib import Path
from sysevolve.evaluation.result import EvaluationResult
from sysevolve.evaluation.scan import memorised_data_warnings

SEMANTICS = ("hardened", "adrs")
GATE_TOLERANCE = 0.005
SPEED_WEIGHT, SPEED_CLIP = 0.05, (-2.0, 4.0)
WARMUP_SEED = 9_999
MESSAGE_CHARS = 200
MESSAGE_NUMBERS = 8  # more numbers than this in a candidate's error message may be workload data
LITERAL_WARN_LEN = 50
DATA_ENV = "SYSEVOLVE_DATA"
_HERE = Path(__file__).resolve().parent
_BASELINE = _HERE / "baselines" / "hierarchical.py"
_SIBLINGS = ("eplb_sim", "eplb_workloads", "eplb_reference")
_ids = itertools.count()


class _Side:
    """Per-stream, per-step balance and time of one program (the candidate or the baseline)."""

    def __init__(self):
        self.b_gpu, self.b_slot, self.seconds = {}, {}, {}

    def add(self, stream: str, balance: tuple[float, float], seconds: float) -> None:
        self.b_gpu.setdefault(stream, []).append(balance[0])
        self.b_slot.setdefault(stream, []).append(balance[1])
        self.seconds.setdefault(stream, []).append(seconds)

    @staticmethod
    def pooled(per_stream: dict) -> list[float]:
        return [x for values in per_stream.values() for x in values]


def evaluate(program_path, split: str = "search", semantics: str = "hardened", data_dir=None,
             timing_repeats: int = 3, real_holdout: bool = False,
             max_steps: int | None = None) -> EvaluationResult:
    """Scores the program at `program_path` on a split; raises ValueError/RuntimeError if invalid.

    `max_steps` scores only the first steps of each workload (quick checks; None: all).
    """
    if semantics not in SEMANTICS:
        raise ValueError(f"unknown semantics {semantics!r} "
                         f"(expected one of {', '.join(SEMANTICS)})")
    if int(timing_repeats) < 1:
        raise ValueError(f"timing_repeats must be at least 1, got {timing_repeats}")
    if max_steps is not None and int(max_steps) < 1:
        raise ValueError(f"max_steps must be at least 1, got {max_steps}")
    clock = time.perf_counter  # taken before any candidate code runs
    sim, workloads, reference = (_private(name) for name in _SIBLINGS)
    data_file = _data_file(data_dir)
    real = None if data_file is None else workloads.load_real(data_file)
    layout = sim.Layout()
    experts = None if real is None else real.shape[2]
    if experts is not None and (experts % layout.num_groups or experts >= layout.num_replicas):
        raise ValueError(f"{data_file}: windows of {experts} experts do not fit "
                         f"{layout.num_groups} groups and {layout.num_replicas} slots")
    streams = workloads.split_streams(split, real, real_holdout)
    if max_steps is not None:
        streams = [s._replace(steps=min(s.steps, int(max_steps))) for s in streams]
    artifacts = {"split": split, "semantics": semantics,
                 "data": "synthetic" if data_file is None else str(data_file),
                 "streams": {s.name: s.steps for s in streams}}
    if real is not None:
        artifacts["real_holdout"] = bool(real_holdout)
    warnings = literal_warnings(Path(program_path).read_text(encoding="utf-8"))

    if semantics == "adrs":
        metrics = _evaluate_adrs(program_path, streams, sim, layout, clock, artifacts)
    else:
        shape = {} if real is None else {"layers": real.shape[1], "experts": real.shape[2]}
        warmup = next(workloads.synthetic_windows(WARMUP_SEED, windows=1, **shape))
        baseline = _load_module(_BASELINE, f"_eplb_baseline_{next(_ids)}", register=False)
        replies = reference.script(baseline.rebalance_experts, streams, sim, layout,
                                   int(timing_repeats), warmup, clock)
        with reference.Reference(replies) as ref:
            del real, streams, replies  # the windows live in the reference process only
            gc.collect()
            module_name = f"_eplb_candidate_{os.getpid()}_{next(_ids)}"
            threads = threading.active_count()
            try:
                with _problem_hidden():
                    candidate = _load_program(program_path, module_name)
                    with _silenced():
                        cand, base = _lockstep(candidate, ref, sim, layout, int(timing_repeats),
                                               clock, warmup, threads)
            finally:
                sys.modules.pop(module_name, None)
        metrics = _score(cand, base, artifacts, warnings)
        artifacts["timing_repeats"] = int(timing_repeats)
    if warnings:
        artifacts["warnings"] = warnings
    return EvaluationResult(metrics, artifacts)


def _lockstep(fn, ref, sim, layout, repeats: int, clock, warmup,
              threads: int) -> tuple[_Side, _Side]:
    """Runs the candidate step by step, each timed call next to one of the reference's;
    `threads` is the number of threads before the candidate was loaded."""
    cand, base = _Side(), _Side()
    _check_threads(threads, "after loading the program")
    _call(fn, warmup, layout, sim, clock, "warm-up call")  # untimed: first-call costs out
    for name, steps in ref.next():
        current = ref.next()
        for step in range(steps):
            where = f"{name} step {step}"
            placement, mine, theirs = None, [], []
            for _ in range(repeats):
                _check_threads(threads, where)
                # Strict alternation: each side's call follows a wait for the other side's.
                theirs.append(ref.next())
                outputs, took = _call(fn, current, layout, sim, clock, where)
                mine.append(took)
                if placement is None:
                    placement = outputs  # the first call's outputs are scored
            _check_threads(threads, where)
            upcoming, base_balance = ref.next()
            try:
                counts = sim.validate(*placement, current.shape[1])
            except sim.InvalidPlacement as exc:
                raise ValueError(f"{where}: {exc}") from None
            # The slowest repeat: a program that caches its last answer gains nothing.
            cand.add(name, sim.step_balance(placement[0], counts, upcoming, layout.num_gpus),
                     max(mine))
            base.add(name, base_balance, max(theirs))
            current = upcoming
    return cand, base


def _score(cand: _Side, base: _Side, artifacts: dict, warnings: list) -> dict:
    """The hardened metrics of spec 3.5 (plus per-stream balance when there are several)."""
    b_gpu, b_base = _mean(cand.pooled(cand.b_gpu)), _mean(base.pooled(base.b_gpu))
    t_cand, t_base = sum(cand.pooled(cand.seconds)), sum(base.pooled(base.seconds))
    speedup = t_base / max(t_cand, 1e-12)
    gate = b_gpu >= b_base - GATE_TOLERANCE
    speed_term = SPEED_WEIGHT * min(max(math.log2(speedup), SPEED_CLIP[0]), SPEED_CLIP[1])
    metrics = {
        "combined_score": b_gpu + (speed_term if gate or speed_term < 0 else 0.0),
        "b_gpu": b_gpu, "b_slot": _mean(cand.pooled(cand.b_slot)),
        "t_cand": t_cand, "t_base": t_base, "speedup": speedup,
        "b_gpu_baseline": b_base,
    }
    if len(cand.b_gpu) > 1:
        for name in cand.b_gpu:
            metrics[f"b_gpu_{name}"] = _mean(cand.b_gpu[name])
            metrics[f"b_slot_{name}"] = _mean(cand.b_slot[name])
    artifacts["speed_credit"] = bool(gate)
    if not gate and speed_term > 0:
        warnings.append(f"no speed credit: b_gpu {b_gpu:.6f} is more than {GATE_TOLERANCE} below "
                        f"the hierarchical baseline's {b_base:.6f}")
    if b_gpu < b_base:
        warnings.append(f"b_gpu {b_gpu:.6f} on the {artifacts['split']} split is below the "
                        f"hierarchical baseline's {b_base:.6f}")
    return metrics


def _call(fn, window, layout, sim, clock, where: str):
    """One timed call on a fresh copy of `window`: (owned int64 outputs, seconds)."""
    argument = window.copy()
    collecting = gc.isenabled()
    gc.disable()  # as on the reference's side: no collection of others' garbage in the window
    try:
        start = clock()
        outputs = sim.materialise(fn(argument, *layout))
        took = clock() - start
    except sim.InvalidPlacement as exc:
        raise ValueError(f"{where}: {exc}") from None
    except (Exception, SystemExit) as exc:
        source = getattr(getattr(fn, "__code__", None), "co_filename", None)
        raise RuntimeError(
            f"{where}: rebalance_experts raised {_describe(exc, source)}") from None
    finally:
        if collecting:
            gc.enable()
    return outputs, took


def _check_threads(expected: int, where: str) -> None:
    """Background threads would work outside the timed window or slow the reference down."""
    running = threading.active_count()
    if running > expected:
        raise ValueError(f"{where}: the program left {running - expected} thread(s) running after "
                         "rebalance_experts returned; all work must finish inside the call")


def _evaluate_adrs(program_path, streams, sim, layout, clock, artifacts: dict) -> dict:
    """ADRS-compatible scoring (spec 3.6): no validation, per-slot balance, in-process speed."""
    zero = {"combined_score": 0.0, "balancedness_score": 0.0, "speed_score": 0.0, "b_slot": 0.0}
    module_name = f"_eplb_candidate_{os.getpid()}_{next(_ids)}"
    try:
        module = _load_module(program_path, module_name)
        fn = getattr(module, "rebalance_experts", None)
        if not callable(fn):
            artifacts["error"] = "Missing `rebalance_experts` function"
            return zero
        balance, seconds = [], []
        with _silenced():
            for stream in streams:
                windows = stream.windows()
                current = next(windows)
                for _ in range(stream.steps):
                    upcoming, argument = next(windows), current.copy()
                    start = clock()
                    _, log2phy, logcnt = fn(argument, *layout)
                    balance.append(sim.adrs_slot_balance(log2phy, logcnt, upcoming,
                                                         layout.num_replicas))
                    seconds.append(clock() - start)
                    current = upcoming
    except (Exception, SystemExit) as exc:  # ADRS scored any failure as 0
        artifacts["error"] = _describe(exc, str(program_path))
        return zero
    finally:
        sys.modules.pop(module_name, None)
    b_slot, step_s = _mean(balance), _mean(seconds)
    speed = 0.02 / step_s
    return {"combined_score": (b_slot + speed) / 2, "balancedness_score": b_slot,
            "speed_score": speed, "b_slot": b_slot, "mean_step_s": step_s}


def _private(name: str):
    """A copy of a sibling module that is not in sys.modules, so a candidate cannot patch it."""
    return _load_module(_HERE / f"{name}.py", f"_{name}_private_{next(_ids)}", register=False)


def _load_module(path, module_name: str, register: bool = True):
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    if register:
        sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def _load_program(program_path, module_name: str):
    """Imports the candidate under a fresh module name; returns its rebalance_experts."""
    try:
        module = _load_module(program_path, module_name)
    except (Exception, SystemExit) as exc:  # any failure to load is the candidate's
        raise RuntimeError(f"cannot load program: {_describe(exc, str(program_path))}") from None
    fn = getattr(module, "rebalance_experts", None)
    if not callable(fn):
        raise ValueError("program does not define rebalance_experts(weight, num_replicas, "
                         "num_groups, num_nodes, num_gpus)")
    return fn


def _data_file(data_dir) -> Path | None:
    """The real workload file: from data_dir (must exist), else $SYSEVOLVE_DATA if present."""
    relative = Path("eplb") / "expert-load.json"
    if data_dir is not None:
        path = Path(data_dir) / relative
        if not path.is_file():
            raise FileNotFoundError(f"real workload not found at {path}")
        return path
    env = os.environ.get(DATA_ENV)
    if env and (Path(env) / relative).is_file():
        return Path(env) / relative
    return None


@contextlib.contextmanager
def _problem_hidden():
    """Takes the problem folder off sys.path and its modules out of sys.modules while the
    candidate runs, so `import eplb_workloads` cannot regenerate the (public) search windows."""
    saved_path = list(sys.path)
    saved_modules = {name: sys.modules.pop(name) for name in _SIBLINGS if name in sys.modules}
    sys.path[:] = [p for p in sys.path if _resolved(p) != _HERE]
    try:
        yield
    finally:
        sys.path[:] = saved_path
        for name in _SIBLINGS:
            sys.modules.pop(name, None)
        sys.modules.update(saved_modules)


def _resolved(entry: str) -> Path | None:
    try:
        return Path(entry or ".").resolve()
    except (OSError, RuntimeError):
        return None


@contextlib.contextmanager
def _silenced():
    """Discards what the program prints while it runs: feedback must not echo workload data."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved_streams = sys.stdout, sys.stderr
    saved_fds = [os.dup(1), os.dup(2)]
    devnull = open(os.devnull, "w")
    try:
        os.dup2(devnull.fileno(), 1)
        os.dup2(devnull.fileno(), 2)
        sys.stdout = sys.stderr = devnull
        yield
    finally:
        sys.stdout, sys.stderr = saved_streams
        os.dup2(saved_fds[0], 1)
        os.dup2(saved_fds[1], 2)
        for fd in saved_fds:
            os.close(fd)
        devnull.close()


def _describe(exc: BaseException, source: str | None) -> str:
    """`Type: message` and the line of `source` (the program's file) where it was raised; long or
    number-heavy messages are cut or withheld so that no workload data comes back (spec 7.6)."""
    try:
        text = " ".join(str(exc).split())
    except Exception:
        text = ""
    numbers = len(re.findall(r"\d+", text))
    if numbers > MESSAGE_NUMBERS:
        text = f"<message withheld: it lists {numbers} numbers>"
    elif len(text) > MESSAGE_CHARS:
        text = text[:MESSAGE_CHARS] + "..."
    where = ""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == source]
    if frames:
        where = f" (at {Path(source).name} line {frames[-1].lineno})"
    return (f"{type(exc).__name__}: {text}" if text else type(exc).__name__) + where


def _mean(values) -> float:
    values = list(values)
    return float(sum(values) / len(values)) if values else 0.0


def literal_warnings(source: str) -> list[str]:
    """A warning for a literal run of >= {LITERAL_WARN_LEN} integers (memorised placements?)."""
    return memorised_data_warnings(source, LITERAL_WARN_LEN, "placements")
