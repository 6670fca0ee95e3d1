"""The sandbox's child process: import a problem's evaluator, score one program, report back.

    python -m sysevolve.evaluation.child RESULT_FD REQUEST_PATH

REQUEST_PATH is a JSON file written by the sandbox (read, then deleted). The result goes back
as one JSON document written to RESULT_FD, never through stdout, which belongs to the candidate:

    {"ok": bool, "metrics": {name: float}, "artifacts": {...}, "failure": str | None,
     "stage_reached": int | None}
"""

from __future__ import annotations

import fcntl
import gc
import importlib.util
import json
import math
import numbers
import os
import resource
import sys
from collections.abc import Callable, Mapping
from typing import Any

from sysevolve.evaluation.fitness import fitness, numeric_metrics

CASCADE_STAGES = ("evaluate_stage1", "evaluate_stage2", "evaluate_stage3")
TRACEBACK_LINES = 40
MAX_FAILURE_CHARS = 500
_MAX_DEPTH = 20


class ContractError(Exception):
    """The evaluator broke its contract; the message is the evaluation's failure reason."""


def truncate_middle(text: str, limit: int) -> str:
    """`text` unchanged if at most `limit` characters, else its head and tail with a marker."""
    if len(text) <= limit:
        return text
    head = limit // 2
    tail = limit - head
    omitted = len(text) - head - tail
    return f"{text[:head]}\n[... {omitted} characters truncated ...]\n{text[len(text) - tail:]}"


def json_safe(value: Any, limit: int, depth: int = 0) -> Any:
    """A JSON-serialisable copy of `value`: strings capped at `limit`, odd objects as repr."""
    if value is None or isinstance(value, (bool, str)):
        return truncate_middle(value, limit) if isinstance(value, str) else value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        return number if math.isfinite(number) else repr(number)
    if depth < _MAX_DEPTH:
        if isinstance(value, Mapping):
            return {str(k): json_safe(v, limit, depth + 1) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [json_safe(v, limit, depth + 1) for v in value]
    try:
        text = repr(value)
    except Exception:  # a candidate's __repr__ may do anything
        text = f"<unrepresentable {type(value).__name__}>"
    return truncate_middle(text, limit)


def safe_artifacts(artifacts: Mapping[Any, Any], limit: int) -> dict[str, Any]:
    """JSON-safe artifacts, each capped at roughly `limit` characters of JSON."""
    safe = {}
    for key, value in artifacts.items():
        value = json_safe(value, limit)
        if not isinstance(value, str):
            text = json.dumps(value)
            if len(text) > limit:  # a huge list or dict is kept as truncated JSON text
                value = truncate_middle(text, limit)
        safe[str(key)] = value
    return safe


_VAR_KEYWORDS = 0x08  # inspect.CO_VARKEYWORDS


def accepted_kwargs(fn: Callable[..., Any], offered: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of `offered` that `fn` accepts as keyword arguments."""
    code = getattr(fn, "__code__", None)
    if code is not None and not getattr(fn, "__wrapped__", None):
        # A plain function: read its code object (importing inspect costs every evaluation ~20 ms).
        if code.co_flags & _VAR_KEYWORDS:
            return dict(offered)
        first = code.co_posonlyargcount
        named = set(code.co_varnames[first : code.co_argcount + code.co_kwonlyargcount])
        return {k: v for k, v in offered.items() if k in named}
    import inspect

    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return {}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return dict(offered)
    named = {
        p.name
        for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }
    return {k: v for k, v in offered.items() if k in named}


def split_result(value: Any) -> tuple[dict[Any, Any], dict[Any, Any]]:
    """(metrics, artifacts) of what an evaluator returned: a dict, or an object with .metrics."""
    if isinstance(value, Mapping):
        return dict(value), {}
    metrics = getattr(value, "metrics", None)
    if not isinstance(metrics, Mapping):
        raise ContractError(
            f"evaluator returned {type(value).__name__}, "
            "expected a dict of metrics or an object with .metrics"
        )
    artifacts = getattr(value, "artifacts", None) or {}
    if not isinstance(artifacts, Mapping):
        artifacts = {"artifacts": artifacts}
    return dict(metrics), dict(artifacts)


class _Report:
    """What one evaluation produced so far; filled in as the stages run."""

    def __init__(self) -> None:
        self.raw_metrics: dict[Any, Any] = {}
        self.artifacts: dict[Any, Any] = {}
        self.stage_reached: int | None = None
        self.failure: str | None = None


def _import_evaluator(problem_dir: str) -> Any:
    path = os.path.join(problem_dir, "evaluator.py")
    if not os.path.isfile(path):
        raise ContractError(f"no evaluator.py in {problem_dir}")
    sys.path.insert(0, problem_dir)
    spec = importlib.util.spec_from_file_location("evaluator", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["evaluator"] = module
    spec.loader.exec_module(module)
    return module


def _call(fn: Callable[..., Any], request: dict[str, Any], report: _Report) -> dict[Any, Any]:
    """Run one evaluator function, merge its output into `report`, return its own metrics."""
    split = request["split"]
    kwargs = accepted_kwargs(fn, {**request["evaluator_kwargs"], "split": split})
    if split != "search" and "split" not in kwargs:
        raise ContractError(f"evaluator does not support split={split!r}")
    metrics, artifacts = split_result(fn(request["program_path"], **kwargs))
    report.raw_metrics.update(metrics)
    report.artifacts.update(artifacts)
    return metrics


def _evaluate(request: dict[str, Any], report: _Report) -> None:
    module = _import_evaluator(str(request["problem_dir"]))
    thresholds = request["cascade_thresholds"]
    stages = []
    if thresholds is not None:
        for name in CASCADE_STAGES:  # stages must be consecutive: stage1, stage2, ...
            if not callable(getattr(module, name, None)):
                break
            stages.append(getattr(module, name))
    if not stages:
        if not callable(getattr(module, "evaluate", None)):
            raise ContractError("evaluator.py defines no evaluate(program_path)")
        _call(module.evaluate, request, report)
        return
    for k, stage in enumerate(stages):
        report.stage_reached = k + 1
        metrics = _call(stage, request, report)
        # A stage without a threshold does not gate the next one.
        if k < len(thresholds):
            score = fitness(metrics, request["metric"], request["direction"])
            if score is None or score < thresholds[k]:
                break


def run_evaluation(request: dict[str, Any]) -> dict[str, Any]:
    """Score the request's program with its problem's evaluator; the result document."""
    report = _Report()
    out_of_memory = False
    try:
        _evaluate(request, report)
    except ContractError as exc:
        report.failure = str(exc)
    except MemoryError:
        out_of_memory = True  # handled below, once the traceback (and its memory) is released
    except BaseException as exc:  # SystemExit and KeyboardInterrupt from a candidate count too
        report.failure = _describe_exception(exc)
        import traceback  # only when something failed: it costs every evaluation otherwise

        lines = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        report.artifacts["traceback"] = "\n".join(lines.splitlines()[-TRACEBACK_LINES:])
    if out_of_memory:
        gc.collect()
        mb = request.get("memory_mb")
        report.failure = f"memory limit exceeded ({mb} MB)" if mb else "out of memory (MemoryError)"

    metrics = numeric_metrics(report.raw_metrics)
    non_numeric = {k: v for k, v in report.raw_metrics.items() if str(k) not in metrics}
    if non_numeric:
        report.artifacts["non_numeric_metrics"] = non_numeric
    if report.failure is None and not metrics:
        report.failure = "no numeric metrics returned"
    ok = report.failure is None
    return {
        "ok": ok,
        "metrics": metrics if ok else {},
        "artifacts": safe_artifacts(report.artifacts, request["kept_output_bytes"]),
        "failure": report.failure,
        "stage_reached": report.stage_reached,
    }


def _describe_exception(exc: BaseException) -> str:
    try:
        message = str(exc)
    except Exception:
        message = "<unprintable message>"
    first = message.strip().splitlines()[0] if message.strip() else ""
    text = f"evaluator raised {type(exc).__name__}" + (f": {first}" if first else "")
    return truncate_middle(text, MAX_FAILURE_CHARS)


def _protect_fd(fd: int) -> int:
    """Move the result fd to a high, close-on-exec number so the candidate's children lack it."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, max(3, soft // 2))
    except (OSError, AttributeError):
        moved = os.dup(fd)  # non-inheritable too
    os.close(fd)
    return moved


def _send(fd: int, document: dict[str, Any]) -> None:
    try:
        data = json.dumps(document, allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        data = json.dumps(
            {"ok": False, "metrics": {}, "artifacts": {}, "stage_reached": None,
             "failure": f"internal error: unserialisable result ({exc})"}
        ).encode()
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.close(fd)


def main(argv: list[str]) -> None:
    """Entry point: evaluate, send the result document, and exit without running atexit hooks."""
    result_fd = _protect_fd(int(argv[0]))
    try:
        with open(argv[1]) as handle:
            request = json.load(handle)
        os.unlink(argv[1])
        document = run_evaluation(request)
    except BaseException as exc:  # our own bug: still report something useful
        document = {"ok": False, "metrics": {}, "artifacts": {}, "stage_reached": None,
                    "failure": f"internal error in evaluation child: {exc!r}"}
    try:
        _send(result_fd, document)
    except OSError:
        os._exit(1)  # the candidate closed or broke our channel
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    # Skip atexit hooks and non-daemon threads a candidate may have left behind.
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
