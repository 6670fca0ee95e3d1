"""The evaluator's side of the policy process: the candidate runs in a process of its own.

`PolicyProcess` starts `cbl_child.py` in a fresh interpreter (no fork, so nothing of the
evaluator's memory, traces included, is in it) and talks to it over two dedicated pipes, never
stdin or stdout (which belong to the candidate's prints). Frames are a little-endian header
(payload length: uint32, kind: one ASCII byte) and a payload:

    harness -> policy   I  runs: uint32, gap: float64, then duration, deadline, overhead
                           (float64[runs] each, seconds)
                        O  active: uint32, tick: int32, elapsed: float64, then work_done and
                           pending overhead (float64[active] each), run ids (int32[active]),
                           has_spot, last type, current type (uint8[active] each)
                        Q  quit
    policy -> harness   R  ready (policies created);  A  one action code per active run
                           (uint8[active]: 0 NONE, 1 SPOT, 2 ON_DEMAND);  E  failure (UTF-8)

Everything the child sends is untrusted: sizes and codes are checked, a wait is bounded by the
evaluation's deadline, and a malformed frame makes the evaluation invalid. Run ids on the wire are
local to the child; `PolicyPool` splits large evaluations into contiguous blocks of runs, one
child each, that think in parallel.
"""

from __future__ import annotations

import os
import re
import select
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HEADER = struct.Struct("<IB")
TICK = struct.Struct("<Iid")
INIT = struct.Struct("<Id")
CHILD = Path(__file__).resolve().parent / "cbl_child.py"
MAX_ERROR_BYTES = 4096
QUIT_WAIT_S = 1.0
HIDDEN_ENV = ("SYSEVOLVE_DATA",)  # where the real traces (holdout included) live


class PolicyError(RuntimeError):
    """The policy failed; `run` is the run it failed on, when known."""

    def __init__(self, message: str, run: int | None = None):
        super().__init__(message)
        self.run = run


class PolicyTimeout(PolicyError):
    """The policy did not answer before the evaluation's deadline."""


class PolicyProcess:
    """A candidate policy in a child process; call it with a tick's batch to get its actions."""

    def __init__(self, program_path, timeout_s: float, first_run: int = 0):
        self.first_run = first_run  # global index of the child's run 0
        self.timeout_s = timeout_s
        self.deadline = time.monotonic() + timeout_s
        self.tick = None
        self._pending = np.zeros(0, dtype=int)
        to_child_r, self._w = os.pipe()
        self._r, from_child_w = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-s", str(CHILD), str(to_child_r), str(from_child_w),
                 str(Path(program_path).resolve())],
                stdin=subprocess.DEVNULL, pass_fds=(to_child_r, from_child_w), env=_child_env())
        except BaseException:
            for fd in (self._w, self._r):
                os.close(fd)
            raise
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        os.set_blocking(self._w, False)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(graceful=exc_type is None)

    def close(self, graceful: bool = True) -> None:
        """Stop the child and release the pipes; `graceful` first lets it flush its output."""
        if graceful and self.proc.poll() is None:
            try:
                os.write(self._w, HEADER.pack(0, ord("Q")))
                self.proc.wait(timeout=QUIT_WAIT_S)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for fd in (self._w, self._r):
            try:
                os.close(fd)
            except OSError:
                pass

    def start(self, duration, deadline, overhead, gap: float) -> None:
        """Create one policy instance per run in the child; returns when they exist."""
        self.begin(duration, deadline, overhead, gap)
        self.ready()

    def begin(self, duration, deadline, overhead, gap: float) -> None:
        """Asks the child to create its policy instances (`ready` waits for them)."""
        n = len(duration)
        columns = [np.ascontiguousarray(a, dtype="<f8").tobytes() for a in (duration, deadline, overhead)]
        self._send(b"I", INIT.pack(n, gap) + b"".join(columns))

    def ready(self) -> None:
        self._receive(b"R", 0)

    def __call__(self, batch) -> np.ndarray:
        """The action codes (uint8) of the active runs of `batch` (a cbl_sim.Batch)."""
        self.send(batch)
        return self.receive()

    def send(self, batch) -> None:
        """Sends a tick's observations; `receive` returns the answer (do other work between)."""
        self.tick, self._pending = batch.tick, batch.ids
        self._send(b"O", b"".join((
            TICK.pack(len(batch.ids), batch.tick, batch.elapsed),
            np.ascontiguousarray(batch.work_done, dtype="<f8").tobytes(),
            np.ascontiguousarray(batch.pending, dtype="<f8").tobytes(),
            np.ascontiguousarray(batch.ids - self.first_run, dtype="<i4").tobytes(),
            np.ascontiguousarray(batch.has_spot, dtype=np.uint8).tobytes(),
            np.ascontiguousarray(batch.last, dtype=np.uint8).tobytes(),
            np.ascontiguousarray(batch.current, dtype=np.uint8).tobytes(),
        )))

    def receive(self) -> np.ndarray:
        """The action codes (uint8) answering the last `send`."""
        ids = self._pending
        codes = np.frombuffer(self._receive(b"A", len(ids)), dtype=np.uint8)
        if codes.size and codes.max() > 2:
            j = int(np.argmax(codes > 2))
            raise PolicyError(f"tick {self.tick}: invalid action code {codes[j]} from the policy "
                              "process", run=int(ids[j]))
        return codes

    # --- framing ------------------------------------------------------------------------------

    def _send(self, kind: bytes, payload: bytes) -> None:
        data = memoryview(HEADER.pack(len(payload), kind[0]) + payload)
        while data:
            self._wait(self._w, writable=True)
            try:
                data = data[os.write(self._w, data):]
            except BlockingIOError:
                continue
            except BrokenPipeError:
                self._receive(b"-", 0)  # the child's last words explain why; raises
                raise PolicyError(self._exit_reason()) from None

    def _receive(self, kind: bytes, size: int) -> bytes:
        got_size, got_kind = HEADER.unpack(self._read(HEADER.size))
        if got_kind == ord("E"):
            message = self._read(min(got_size, MAX_ERROR_BYTES)).decode("utf-8", "replace")
            raise _failure(message, self.first_run)
        if got_kind != kind[0] or got_size != size:
            raise PolicyError(f"{self._where()}: malformed message from the policy process "
                              f"(kind {got_kind}, {got_size} bytes; expected {kind.decode()!r}, "
                              f"{size} bytes)")
        return self._read(size)

    def _read(self, n: int) -> bytes:
        chunks = []
        while n:
            self._wait(self._r, writable=False)
            chunk = os.read(self._r, n)
            if not chunk:
                raise PolicyError(self._exit_reason())
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def _wait(self, fd: int, writable: bool) -> None:
        remaining = self.deadline - time.monotonic()
        ready = select.select([], [fd], [], max(remaining, 0))[1] if writable else \
            select.select([fd], [], [], max(remaining, 0))[0]
        if not ready:
            raise PolicyTimeout(f"{self._where()}: timeout: the policy took longer than "
                                f"{self.timeout_s:g} s (policy_timeout_s)")

    def _where(self) -> str:
        return "loading the program" if self.tick is None else f"tick {self.tick}"

    def _exit_reason(self) -> str:
        try:
            code = self.proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            code = None
        how = "closed its channel" if code is None else f"exited with code {code}"
        return f"{self._where()}: the policy process {how} without an answer"


def _failure(message: str, first_run: int) -> PolicyError:
    """A PolicyError from the child's message; a leading 'run N' (local) becomes the global run."""
    message = " ".join(message.split())[:500]
    match = re.match(r"run (\d+)(?=[,:])", message)
    if match is None:
        return PolicyError(message)
    run = int(match.group(1)) + first_run
    return PolicyError(f"run {run}{message[match.end():]}", run=run)


class PolicyPool:
    """The candidate in `shards` processes, each owning a contiguous block of the runs.

    Same interface as one PolicyProcess (start, send, receive); the processes answer a tick in
    parallel. Each holds its own module state, so the shard count is fixed by the caller.
    """

    def __init__(self, program_path, timeout_s: float, runs: int, shards: int = 1):
        shards = max(1, min(shards, runs))
        self.bounds = [runs * s // shards for s in range(shards + 1)]
        self.procs: list[PolicyProcess] = []
        try:
            for lo in self.bounds[:-1]:
                self.procs.append(PolicyProcess(program_path, timeout_s, first_run=lo))
        except BaseException:
            self.close(graceful=False)
            raise
        self._asked: list[PolicyProcess] = []

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(graceful=exc_type is None)

    def close(self, graceful: bool = True) -> None:
        for proc in self.procs:
            proc.close(graceful)

    def start(self, duration, deadline, overhead, gap: float) -> None:
        for proc, lo, hi in zip(self.procs, self.bounds, self.bounds[1:]):
            proc.begin(duration[lo:hi], deadline[lo:hi], overhead[lo:hi], gap)
        for proc in self.procs:
            proc.ready()

    def send(self, batch) -> None:
        cuts = np.searchsorted(batch.ids, self.bounds)  # ids ascend
        self._asked = []
        for proc, a, b in zip(self.procs, cuts, cuts[1:]):
            if b > a:
                proc.send(batch.part(slice(int(a), int(b))))
                self._asked.append(proc)

    def receive(self) -> np.ndarray:
        answers = [proc.receive() for proc in self._asked]
        return np.concatenate(answers) if answers else np.zeros(0, dtype=np.uint8)


def _child_env() -> dict[str, str]:
    """The evaluator's environment without the data location and Python overrides."""
    env = {k: v for k, v in os.environ.items()
           if k not in HIDDEN_ENV and not k.startswith("PYTHON")}
    env["PYTHONHASHSEED"] = "0"  # deterministic set and dict-of-str orders for the candidate
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env
