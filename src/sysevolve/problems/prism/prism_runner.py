"""Runs a candidate's compute_model_placement in a forked process of its own.

The evaluator (parent) never imports candidate code. A forked child loads the program, calls it
on fresh Model objects for each instance and sends back, one JSON line per instance, the
placement converted to names and plain numbers. The parent enforces the time limits by killing
the child, so a runaway call cannot outlive its limit, and whatever the candidate patches or
mutates stays in the child. Every line from the child is untrusted and validated by the parent.
"""

from __future__ import annotations

import ctypes
import json
import math
import numbers
import os
import random
import resource
import select
import signal
import sys
import time
from dataclasses import dataclass

from prism_instances import Instance, Model

ENTRY = "compute_model_placement"
_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
MAX_MESSAGE_BYTES = 4_000_000  # one instance's placement is a few kB


@dataclass
class Outcome:
    """One instance: the encoded placement, or why there is none."""

    encoded: dict | None = None
    error: str | None = None
    wall_s: float = 0.0


class LoadError(RuntimeError):
    """The program cannot be loaded or has no compute_model_placement."""


def run_program(program_path, instances: list[Instance], *, seed: int, instance_timeout_s: float,
                total_timeout_s: float, keep_going: bool) -> list[Outcome]:
    """Outcomes in instance order. Without keep_going, stops after the first failed instance."""
    deadline = time.monotonic() + total_timeout_s
    outcomes: list[Outcome] = []
    while len(outcomes) < len(instances):
        start = len(outcomes)
        if start and time.monotonic() >= deadline:  # keep_going after the evaluation limit
            outcomes.extend(Outcome(error="timeout: the evaluation limit was reached")
                            for _ in instances[start:])
            break
        batch = _run_child(program_path, instances, start, seed, instance_timeout_s, deadline,
                           keep_going)
        outcomes.extend(batch)
        if batch and batch[-1].error is not None and not keep_going:
            break
        # A killed or crashed child leaves instances behind: a fresh child takes the rest.
    return outcomes


def _run_child(program_path, instances, start, seed, instance_timeout_s, deadline, keep_going):
    read_fd, write_fd = os.pipe()
    for stream in (sys.stdout, sys.stderr):  # else the child would repeat buffered output
        stream.flush()
    pid = os.fork()
    if pid == 0:  # the candidate's process: never returns
        os.close(read_fd)
        _child_main(str(program_path), instances[start:], seed, write_fd)
    os.close(write_fd)
    outcomes: list[Outcome] = []
    try:
        lines = _Lines(read_fd)
        ready = lines.next(deadline)
        if ready in (None, "timeout", "oversized"):
            why = {None: "exited", "timeout": "timed out", "oversized": "flooded its pipe"}[ready]
            raise LoadError(f"the program's process {why} while loading it")
        message = _parse(ready)
        if "load_error" in message:
            raise LoadError(str(message["load_error"]))
        if message.get("ready") is not True:
            raise LoadError("malformed start message from the program's process")
        for k in range(start, len(instances)):
            began = time.monotonic()
            line = lines.next(min(deadline, began + instance_timeout_s))
            wall = time.monotonic() - began
            if line is None:
                outcomes.append(Outcome(error="the program's process exited during the call",
                                        wall_s=wall))
                return outcomes
            if line == "timeout":
                limit = "evaluation" if time.monotonic() >= deadline else "instance"
                outcomes.append(Outcome(error=f"timeout: the call ran past the {limit} limit "
                                              "and was killed", wall_s=wall))
                return outcomes
            if line == "oversized":
                outcomes.append(Outcome(error="the program's process sent an oversized message",
                                        wall_s=wall))
                return outcomes
            message = _parse(line)
            if message.get("i") != k - start:
                outcome = Outcome(error="malformed message from the program's process", wall_s=wall)
            elif "failure" in message:
                outcome = Outcome(error=str(message["failure"])[:400], wall_s=wall)
            elif "error" in message:
                error = str(message["error"])[:400]
                outcome = Outcome(error=f"compute_model_placement raised {error}", wall_s=wall)
            else:
                outcome = Outcome(encoded=_checked(message.get("result")), wall_s=wall)
                if outcome.encoded is None:
                    outcome.error = "malformed result message from the program's process"
            outcomes.append(outcome)
            if outcome.error is not None and not keep_going:
                return outcomes
        return outcomes
    finally:
        os.close(read_fd)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)


class _Lines:
    """Newline-terminated messages from a pipe, with deadlines and a size cap."""

    def __init__(self, fd: int):
        self.fd, self.buffer = fd, b""
        self.poller = select.poll()
        self.poller.register(fd, select.POLLIN)

    def next(self, until: float):
        """The next line (str), None at end of file, "timeout" or "oversized"."""
        while b"\n" not in self.buffer:
            left = until - time.monotonic()
            if left <= 0 or not self.poller.poll(max(1, int(left * 1000))):
                if time.monotonic() >= until:
                    return "timeout"
                continue
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                return None
            self.buffer += chunk
            if len(self.buffer) > MAX_MESSAGE_BYTES:
                return "oversized"
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode("utf-8", "replace")


def _parse(line: str) -> dict:
    try:
        message = json.loads(line)
    except ValueError:
        return {}
    return message if isinstance(message, dict) else {}


def _checked(result):
    """The encoded placement if it has the shape _encode produces, else None."""
    if not isinstance(result, dict) or not isinstance(result.get("type"), str):
        return None
    gpus = result.get("gpus", [])
    if not isinstance(gpus, list):
        return None
    for entry in gpus:
        if not (isinstance(entry, list) and len(entry) == 3 and isinstance(entry[1], str)
                and (entry[2] is None or isinstance(entry[2], list))):
            return None
        if type(entry[0]) not in (int, str):
            return None
        for item in entry[2] or ():
            if not (isinstance(item, list) and len(item) == 5
                    and all(v is None or type(v) is str for v in item[:2])
                    and all(v is None or _is_number(v) for v in item[2:])):
                return None
    return {"type": result["type"], "gpus": gpus}


def _is_number(v) -> bool:
    return type(v) is int or (type(v) is float and math.isfinite(v))


# --- the child --------------------------------------------------------------------------------

def _child_main(program_path: str, instances: list[Instance], seed: int, fd: int) -> None:
    try:
        if _LIBC is not None:  # die with the evaluator, however it dies
            _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        _close_other_fds(fd)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        try:
            fn, model_class = _load(program_path)
        except BaseException as exc:  # noqa: BLE001 - everything the program does is reported
            _send(fd, {"load_error": _one_line(exc)})
            return
        _send(fd, {"ready": True})
        for k, inst in enumerate(instances):
            random.seed(seed)
            if "numpy" in sys.modules:  # imported by the program: seed its global generator too
                sys.modules["numpy"].random.seed(seed)
            try:
                models = inst.models(model_class)
            except BaseException as exc:  # noqa: BLE001
                _send(fd, {"i": k, "failure": f"cannot build models with the program's Model "
                                              f"class: {_one_line(exc)}"})
                continue
            try:
                given = {id(m): inst.names[j] for j, m in enumerate(models)}
                result = fn(inst.gpu_num, models)
                message = {"i": k, "result": _encode(result, given)}
            except BaseException as exc:  # noqa: BLE001
                message = {"i": k, "error": _one_line(exc)}
            _send(fd, message)
    except BaseException:  # noqa: BLE001 - the parent sees the missing lines
        pass
    finally:
        for stream in (sys.stdout, sys.stderr):  # what the program printed
            try:
                stream.flush()
            except BaseException:  # noqa: BLE001
                pass
        os._exit(0)


def _close_other_fds(keep: int) -> None:
    """Closes inherited descriptors (the harness's result pipe among them) but stdio and `keep`."""
    top = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    top = 65536 if top == resource.RLIM_INFINITY or top > 65536 else top
    os.closerange(3, keep)
    os.closerange(keep + 1, top)


def _load(program_path: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location("_prism_candidate", program_path)
    if spec is None:
        raise LoadError(f"cannot load {program_path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["_prism_candidate"] = module
    spec.loader.exec_module(module)
    fn = getattr(module, ENTRY, None)
    if not callable(fn):
        raise LoadError(f"program does not define {ENTRY}(gpu_num, models)")
    model_class = getattr(module, "Model", None)
    return fn, model_class if isinstance(model_class, type) else Model


def _encode(result, given: dict) -> dict:
    """The placement as names and plain numbers; the parent validates everything."""
    if not isinstance(result, dict):
        return {"type": type(result).__name__}
    gpus = []
    for key, value in dict.items(result):
        key_out = key if type(key) is int else f"<{type(key).__name__} {_short_repr(key)}>"
        items = None
        if isinstance(value, (list, tuple)):
            items = [[given.get(id(m)), _attr(m, "model_name", str), _attr(m, "model_size"),
                      _attr(m, "req_rate"), _attr(m, "slo")] for m in value]
        gpus.append([key_out, type(value).__name__, items])
    return {"type": "dict", "gpus": gpus}


def _attr(obj, name: str, kind=None):
    value = getattr(obj, name, None)
    if kind is str:
        return value if type(value) is str else None
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Integral):  # numpy integers too
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        return value if math.isfinite(value) else None
    return None


def _short_repr(value) -> str:
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001
        text = "?"
    return text if len(text) <= 40 else text[:37] + "..."


def _send(fd: int, message: dict) -> None:
    data = (json.dumps(message) + "\n").encode()
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _one_line(exc: BaseException) -> str:
    try:
        text = " ".join(str(exc).split())
    except Exception:  # noqa: BLE001
        text = ""
    text = text if len(text) <= 300 else text[:297] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
