"""One evaluation of one candidate program in an isolated child process.

The child (`python -m sysevolve.evaluation.child`) runs in a fresh scratch directory, in its own
process group, under resource limits, with secrets scrubbed from its environment. Its stdout and
stderr are captured (capped) as artifacts; its result comes back as one JSON document on a
dedicated pipe, so nothing a candidate prints can change its score. Whatever the candidate does,
`evaluate_in_sandbox` returns an outcome; it raises only on errors of our own.
"""

from __future__ import annotations

import asyncio
import atexit
import ctypes
import json
import math
import os
import resource
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sysevolve
from sysevolve.evaluation.fitness import fitness, numeric_metrics

CHILD_MODULE = "sysevolve.evaluation.child"
SCRATCH_PREFIX = "sysevolve-eval-"
REQUEST_FILE = ".sysevolve-request.json"
SECRET_WORDS = ("KEY", "TOKEN", "SECRET", "PASSWORD")
SECRET_PREFIXES = ("AWS_", "OPENAI_", "ANTHROPIC_", "GEMINI_", "GOOGLE_APPLICATION")
MAX_RESULT_BYTES = 64_000_000
DRAIN_S = 1.0  # how long to wait for pipes to close once the child is gone
_PACKAGE_ROOT = str(Path(sysevolve.__file__).resolve().parent.parent)


ROOT_PREFIX = "sysevolve-"
_root: str | None = None


def scratch_root() -> str:
    """This process's folder for scratch directories, `<tmp>/sysevolve-<pid>`.

    An engine killed with SIGKILL cannot remove its scratch directories; the first evaluation
    of any later engine removes the folders of engines that are no longer running.
    """
    global _root
    if _root is None or not os.path.isdir(_root):
        tmp = tempfile.gettempdir()
        for name in os.listdir(tmp):
            pid = name[len(ROOT_PREFIX):]
            if name.startswith(ROOT_PREFIX) and pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(os.path.join(tmp, name), ignore_errors=True)
        _root = os.path.join(tmp, f"{ROOT_PREFIX}{os.getpid()}")
        os.makedirs(_root, exist_ok=True)
        atexit.register(shutil.rmtree, _root, True)
    return _root


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits of one evaluation."""

    timeout_s: float = 60.0  # wall clock, whole evaluation
    memory_mb: int | None = 2048  # RLIMIT_AS
    cpu_s: int | None = None  # RLIMIT_CPU; None -> ceil(timeout_s) + 5
    max_output_bytes: int = 10_000_000  # stdout + stderr; beyond this the child is killed
    kept_output_bytes: int = 20_000  # kept of stdout / stderr (head and tail) and each artifact
    max_file_bytes: int = 100_000_000  # RLIMIT_FSIZE
    max_open_files: int = 256  # RLIMIT_NOFILE

    @property
    def cpu_limit_s(self) -> int:
        """The CPU-time limit in seconds, derived from the timeout unless set."""
        return self.cpu_s if self.cpu_s is not None else math.ceil(self.timeout_s) + 5


@dataclass(frozen=True)
class EvaluationRequest:
    """What to evaluate: a program's code against the evaluator in `problem_dir`."""

    problem_dir: Path
    program_code: str
    program_filename: str = "program.py"
    split: str = "search"
    # Stage k+1 runs only if stage k's fitness >= thresholds[k]; None: no cascade, use evaluate().
    cascade_thresholds: tuple[float, ...] | None = None
    evaluator_kwargs: dict[str, Any] = field(default_factory=dict)  # passed only if accepted
    metric: str = "combined_score"
    direction: str = "maximize"
    env: dict[str, str] | None = None  # set in the child after scrubbing


@dataclass(frozen=True)
class EvaluationOutcome:
    """The result of one evaluation; `failure` says why when not `ok`."""

    ok: bool
    metrics: dict[str, float]
    score: float | None
    artifacts: dict[str, Any]
    failure: str | None
    duration_s: float


def is_secret_name(name: str) -> bool:
    """True for environment variable names that may hold credentials."""
    upper = name.upper()
    return any(word in upper for word in SECRET_WORDS) or upper.startswith(SECRET_PREFIXES)


def child_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The parent's environment without secrets, set up to run the child module."""
    env = {name: value for name, value in os.environ.items() if not is_secret_name(name)}
    env["PYTHONPATH"] = _PACKAGE_ROOT  # replaces, so the engine's own path does not leak
    env["PYTHONHASHSEED"] = "0"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTHONUNBUFFERED"] = "1"  # output printed before a crash or kill is not lost
    env.update(extra or {})
    return env


async def evaluate_in_sandbox(
    request: EvaluationRequest, limits: SandboxLimits = SandboxLimits()
) -> EvaluationOutcome:
    """Evaluate `request.program_code` in a fresh, limited child process."""
    if Path(request.program_filename).name != request.program_filename:
        raise ValueError(f"program_filename must be a file name: {request.program_filename!r}")
    started = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX, dir=scratch_root()))
    try:
        run = _ChildRun(limits)
        returncode = await run.execute(_prepare(request, limits, scratch), scratch, request.env)
        ok, metrics, artifacts, failure = _interpret(run, returncode)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    score = fitness(metrics, request.metric, request.direction) if ok else None
    return EvaluationOutcome(ok, metrics, score, artifacts, failure, time.monotonic() - started)


def _prepare(request: EvaluationRequest, limits: SandboxLimits, scratch: Path) -> Path:
    """Write the program and the child's request file into `scratch`; the request file's path."""
    program_path = scratch / request.program_filename
    program_path.write_text(request.program_code)
    (scratch / "tmp").mkdir()
    child_request = {
        "problem_dir": str(Path(request.problem_dir).resolve()),
        "program_path": str(program_path),
        "split": request.split,
        "cascade_thresholds": (
            None if request.cascade_thresholds is None else list(request.cascade_thresholds)
        ),
        "evaluator_kwargs": dict(request.evaluator_kwargs),
        "metric": request.metric,
        "direction": request.direction,
        "kept_output_bytes": limits.kept_output_bytes,
        "memory_mb": limits.memory_mb,
    }
    path = scratch / REQUEST_FILE
    path.write_text(json.dumps(child_request))
    return path


# prctl(PR_SET_PDEATHSIG): the kernel kills the child if the engine dies, even by SIGKILL,
# so a killed run leaves no evaluation running. Loaded here, never between fork and exec.
_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def _apply_limits(limits: SandboxLimits) -> None:
    """Set the child's rlimits and parent-death signal; runs between fork and exec."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

    def cap(which: int, soft: int, hard: int) -> None:
        _, current_hard = resource.getrlimit(which)
        if current_hard != resource.RLIM_INFINITY:  # we may lower a hard limit, never raise it
            soft, hard = min(soft, current_hard), min(hard, current_hard)
        resource.setrlimit(which, (soft, hard))

    if limits.memory_mb is not None:
        memory = limits.memory_mb * 1024 * 1024
        cap(resource.RLIMIT_AS, memory, memory)
    cpu = limits.cpu_limit_s
    cap(resource.RLIMIT_CPU, cpu, cpu + 1)  # SIGXCPU at the soft limit, SIGKILL a second later
    cap(resource.RLIMIT_FSIZE, limits.max_file_bytes, limits.max_file_bytes)
    cap(resource.RLIMIT_NOFILE, limits.max_open_files, limits.max_open_files)
    cap(resource.RLIMIT_CORE, 0, 0)


class _StreamCapture:
    """Keeps the head and the tail of an output stream, counting what falls in between."""

    def __init__(self, keep: int):
        self._head_cap = keep // 2
        self._tail_cap = keep - self._head_cap
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        room = self._head_cap - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        self.tail += data
        if len(self.tail) > self._tail_cap:
            del self.tail[: len(self.tail) - self._tail_cap]

    def text(self) -> str:
        omitted = self.total - len(self.head) - len(self.tail)
        if omitted == 0:
            return (self.head + self.tail).decode(errors="replace")
        head, tail = self.head.decode(errors="replace"), self.tail.decode(errors="replace")
        return f"{head}\n[... {omitted} bytes truncated ...]\n{tail}"


class _PipeReader(asyncio.Protocol):
    """Feeds everything read from a pipe to a callback; `closed` resolves at end of file."""

    def __init__(self, on_data: Callable[[bytes], None]):
        self._on_data = on_data
        self.closed = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self._on_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class _ChildRun:
    """One child process: its captured output, its result document, and why it was killed."""

    def __init__(self, limits: SandboxLimits):
        self.limits = limits
        self.stdout = _StreamCapture(limits.kept_output_bytes)
        self.stderr = _StreamCapture(limits.kept_output_bytes)
        self.result = bytearray()
        self.result_overflow = False
        self.timed_out = False
        self.output_exceeded = False
        self._pgid: int | None = None

    def kill_group(self) -> None:
        """SIGKILL the child's whole process group (the child and anything it spawned)."""
        if self._pgid is None:
            return
        try:
            os.killpg(self._pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass  # the group is already gone

    def _on_output(self, capture: _StreamCapture, data: bytes) -> None:
        capture.feed(data)
        if self.stdout.total + self.stderr.total > self.limits.max_output_bytes:
            if not self.output_exceeded:
                self.output_exceeded = True
                self.kill_group()

    def _on_result(self, data: bytes) -> None:
        if len(self.result) + len(data) > MAX_RESULT_BYTES:
            self.result_overflow = True
        else:
            self.result += data

    async def execute(
        self, request_path: Path, scratch: Path, extra_env: Mapping[str, str] | None
    ) -> int:
        """Run the child to completion or until killed; its return code."""
        loop = asyncio.get_running_loop()
        env = child_environment({"TMPDIR": str(scratch / "tmp"), **(extra_env or {})})
        write_ends: list[int] = []
        transports: list[asyncio.BaseTransport] = []
        readers: list[_PipeReader] = []
        proc = None
        try:
            for on_data in (
                lambda d: self._on_output(self.stdout, d),
                lambda d: self._on_output(self.stderr, d),
                self._on_result,
            ):
                read_end, write_end = os.pipe()
                write_ends.append(write_end)
                pipe = os.fdopen(read_end, "rb", buffering=0)
                try:
                    transport, reader = await loop.connect_read_pipe(
                        lambda on_data=on_data: _PipeReader(on_data), pipe
                    )
                except BaseException:
                    pipe.close()
                    raise
                transports.append(transport)
                readers.append(reader)
            out_w, err_w, result_w = write_ends
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", CHILD_MODULE, str(result_w), str(request_path),
                stdin=asyncio.subprocess.DEVNULL, stdout=out_w, stderr=err_w,
                pass_fds=(result_w,), cwd=scratch, env=env,
                start_new_session=True, preexec_fn=lambda: _apply_limits(self.limits),
            )
            self._pgid = proc.pid  # a new session: the child leads its own process group
            while write_ends:  # only the child may hold the write ends, or EOF never comes
                os.close(write_ends.pop())
            try:
                returncode = await asyncio.wait_for(proc.wait(), self.limits.timeout_s)
            except asyncio.TimeoutError:
                self.timed_out = True
                self.kill_group()
                returncode = await proc.wait()
            self.kill_group()  # grandchildren the candidate left behind
            # A grandchild that escaped the group may keep a pipe open; do not wait for it.
            await asyncio.wait([r.closed for r in readers], timeout=DRAIN_S)
            return returncode
        finally:
            if proc is not None and proc.returncode is None:  # cancelled while running
                self.kill_group()
                await proc.wait()  # prompt after SIGKILL; reaps the child
            for transport in transports:
                transport.close()
            for fd in write_ends:
                os.close(fd)


def _interpret(
    run: _ChildRun, returncode: int
) -> tuple[bool, dict[str, float], dict[str, Any], str | None]:
    """(ok, metrics, artifacts, failure) from what the child did and sent."""
    limits = run.limits
    artifacts: dict[str, Any] = {}
    metrics: dict[str, float] = {}
    failure: str | None = None
    if run.timed_out:
        failure = f"timeout after {float(limits.timeout_s)} s (killed)"
    elif run.output_exceeded:
        failure = f"output limit exceeded ({limits.max_output_bytes} bytes)"
    elif returncode < 0:
        failure = _signal_failure(-returncode, limits)
    elif returncode > 0 or not run.result:
        failure = _crash_failure(returncode, run.stderr.text(), limits)
    else:
        document = None if run.result_overflow else _parse_result(bytes(run.result))
        if document is None:
            failure = "malformed result from evaluation child"
        else:
            artifacts.update(document["artifacts"])
            if document["stage_reached"] is not None:
                artifacts["stage_reached"] = document["stage_reached"]
            failure = document["failure"]
            if document["ok"]:
                metrics = numeric_metrics(document["metrics"])
                if not metrics:
                    failure = "no numeric metrics returned"
    artifacts["stdout"] = run.stdout.text()
    artifacts["stderr"] = run.stderr.text()
    ok = failure is None
    return ok, metrics if ok else {}, artifacts, failure


def _parse_result(data: bytes) -> dict[str, Any] | None:
    """The child's result document, or None when it is not one."""
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, ValueError):
        return None
    if not (
        isinstance(document, dict)
        and isinstance(document.get("ok"), bool)
        and isinstance(document.get("metrics"), dict)
        and isinstance(document.get("artifacts"), dict)
        and (document.get("failure") is None or isinstance(document["failure"], str))
        and (document.get("stage_reached") is None or isinstance(document["stage_reached"], int))
        and (document["ok"] or document.get("failure"))
    ):
        return None
    return {
        "ok": document["ok"],
        "metrics": document["metrics"],
        "artifacts": document["artifacts"],
        "failure": None if document["ok"] else document["failure"],
        "stage_reached": document.get("stage_reached"),
    }


def _signal_failure(signum: int, limits: SandboxLimits) -> str:
    try:
        name = signal.Signals(signum).name
    except ValueError:
        name = f"signal {signum}"
    reason = {
        "SIGXCPU": f"CPU time limit {limits.cpu_limit_s} s",
        "SIGKILL": "likely memory",  # our own kills are reported as timeouts or output limits
        "SIGXFSZ": f"file size limit {limits.max_file_bytes} bytes",
    }.get(name)
    return f"killed by signal {name}" + (f" ({reason})" if reason else "")


def _crash_failure(returncode: int, stderr: str, limits: SandboxLimits) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    if last.startswith("MemoryError") and limits.memory_mb is not None:
        return f"memory limit exceeded ({limits.memory_mb} MB)"
    detail = "no result" if returncode == 0 and not last else last[:200]
    return f"crashed: exit code {returncode}" + (f" ({detail})" if detail else "")
