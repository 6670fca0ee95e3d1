"""Runs programs on a list of tables, each in a process of its own, timed from outside.

The tables reach the program process in a file it reads and deletes before it reports ready,
so delivery is outside the clock. The clock starts when the evaluator says "go" and stops
when the last table's rows have arrived: it covers importing the program (work done at import
is counted), every `reorder` call and the conversion of the outputs, and nothing the program
does to its own timers or modules can change it (spec 3.4 and 7.3).
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import llm_sql_wire as wire

HERE = Path(__file__).resolve().parent
RUNNER = HERE / "llm_sql_runner.py"
MODULE_FILE = "llm_sql_candidate.py"
START_LIMIT_S = 60.0  # interpreter start, numpy import and reading the tables
ERROR_BYTES = 64_000
PRELOAD = ("numpy",)  # imported before the clock starts when the program's source names them
SECRET_WORDS = ("KEY", "TOKEN", "SECRET", "PASSWORD")
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
_PR_SET_PDEATHSIG = 1


class ProgramFailure(RuntimeError):
    """A program failed to produce its tables; the message is one line. `program` is its
    position in the list given to Programs."""

    program: int | None = None


@dataclass(frozen=True)
class ProgramRun:
    """What a program returned for each table, and the evaluator's measurements."""

    outputs: list  # per table: the decoded JSON the program sent (validated by the caller)
    import_s: float  # from "go" to the program imported
    table_s: list[float]  # per table: from the previous message to its rows
    total_s: float  # from "go" to the last table's rows


def program_env(pythonpath: list[Path]) -> dict[str, str]:
    """The program process's environment: no data location, no credentials."""
    env = {k: v for k, v in os.environ.items()
           if k != "SYSEVOLVE_DATA" and not any(w in k.upper() for w in SECRET_WORDS)}
    env["PYTHONPATH"] = os.pathsep.join(map(str, pythonpath))
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTHONHASHSEED"] = "0"  # set iteration order, and so a program's result, reproducible
    return env


def _die_with_parent() -> None:
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def request_bytes(instances, kwargs: dict, denied_roots=()) -> bytes:
    """The request file of a program process: the tables, the reorder arguments, denied folders."""
    tables = [{"name": t.name, "columns": list(t.columns), "rows": [list(r) for r in t.rows]}
              for t in instances]
    return json.dumps({"tables": tables, "kwargs": kwargs,
                       "denied_roots": [str(r) for r in denied_roots]},
                      ensure_ascii=False).encode()


class ProgramProcess:
    """A program process: started early, then given its tables, then run once."""

    def __init__(self, program_path):
        self.scratch = Path(tempfile.mkdtemp(prefix="sysevolve-llm-sql-"))
        self.proc = None
        self.names, self.caps = [], []
        self.read_fd, write_fd = os.pipe()
        try:
            shutil.copyfile(program_path, self.scratch / MODULE_FILE)
            source = (self.scratch / MODULE_FILE).read_bytes()
            preload = [name for name in PRELOAD if name.encode() in source]
            self.proc = subprocess.Popen(
                [sys.executable, str(RUNNER), str(write_fd), *preload],
                stdin=subprocess.PIPE, cwd=self.scratch, env=program_env([self.scratch, HERE]),
                pass_fds=(write_fd,), preexec_fn=_die_with_parent)
        except BaseException:
            self.close()
            raise
        finally:
            os.close(write_fd)
        self.reader = wire.Reader(self.read_fd)

    def deliver(self, request: bytes, instances) -> None:
        """Hands the process its request file (see request_bytes) for these instances."""
        self.names = [t.name for t in instances]
        # JSON escapes a character in at most 6 bytes; a row adds brackets, quotes and commas.
        self.caps = [6 * sum(len(c) for r in t.rows for c in r)
                     + 4 * len(t.rows) * (len(t.columns) + 1) + ERROR_BYTES for t in instances]
        path = self.scratch / "request.json"
        path.write_bytes(request)
        try:
            self.proc.stdin.write(str(path).encode() + b"\n")
            self.proc.stdin.flush()
        except OSError:
            raise RuntimeError("program process exited before it got its tables") from None

    def wait_ready(self) -> None:
        """Returns once the process has read its tables; RuntimeError if it did not start."""
        try:
            message = self.reader.next(time.perf_counter() + START_LIMIT_S, ERROR_BYTES)
        except (TimeoutError, wire.ProtocolError) as exc:
            raise RuntimeError(f"program process did not start: {type(exc).__name__} {exc}") from None
        if message is None or message[0] != wire.READY:
            raise RuntimeError(f"program process did not start (exit code {_exit_code(self.proc)})")

    def run(self, import_limit_s: float = 10.0, table_limit_s: float = 10.0) -> ProgramRun:
        """Imports the program and runs it on every table; raises ProgramFailure."""
        began = time.perf_counter()
        try:
            self.proc.stdin.write(b"g")
            self.proc.stdin.flush()
        except OSError:
            raise RuntimeError("program process exited before it was started") from None
        deadline = began + import_limit_s + table_limit_s * len(self.names)
        messages = []  # (kind, payload, arrival)
        for step in range(len(self.names) + 1):
            where = "the import" if step == 0 else f"table {self.names[step - 1]}"
            try:
                message = self.reader.next(deadline, self.caps[step - 1] if step else ERROR_BYTES)
            except TimeoutError:
                raise ProgramFailure(
                    f"timeout during {where}: limit {import_limit_s:g} s for the import plus "
                    f"{table_limit_s:g} s per table") from None
            except wire.ProtocolError as exc:
                raise ProgramFailure(f"malformed message from the program process: {exc}") from None
            if message is None:
                raise ProgramFailure(f"the program process exited (code {_exit_code(self.proc)}) "
                                     f"before {where} finished")
            if message[0] == wire.ERROR:
                raise ProgramFailure(_error_text(message[1]))
            if message[0] != (wire.IMPORTED if step == 0 else wire.TABLE):
                raise ProgramFailure(f"unexpected message {message[0]!r} from the program process")
            messages.append(message)
        arrivals = [m[2] for m in messages]
        try:
            outputs = [wire.decode(m[1]) for m in messages[1:]]
        except wire.ProtocolError as exc:
            raise ProgramFailure(f"malformed message from the program process: {exc}") from None
        return ProgramRun(outputs, arrivals[0] - began,
                          [b - a for a, b in zip(arrivals, arrivals[1:])], arrivals[-1] - began)

    def close(self) -> None:
        """Ends the process (a moment to exit, then SIGKILL) and removes its scratch folder."""
        if self.read_fd is not None:
            os.close(self.read_fd)
            self.read_fd = None
        if self.proc is not None:
            _stop(self.proc)
            self.proc = None
        shutil.rmtree(self.scratch, ignore_errors=True)


class Programs:
    """Programs to run on the same tables, each in its own process (a context manager).

    The processes start at once, so interpreter start-up overlaps with preparing the tables;
    they read their tables together; then each is timed alone while the others wait, blocked,
    before importing anything of their program."""

    def __init__(self, program_paths):
        self.processes = []
        try:
            for path in program_paths:
                self.processes.append(ProgramProcess(path))
        except BaseException:
            self.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def run(self, instances, kwargs: dict, denied_roots=(), limits=None) -> list[ProgramRun]:
        """One ProgramRun per program, in order; raises ProgramFailure for a failed program.

        limits: per program, None or (import limit, limit per table) in seconds."""
        limits = limits or [None] * len(self.processes)
        request = request_bytes(instances, kwargs, denied_roots)
        for process in self.processes:
            process.deliver(request, instances)
        for process in self.processes:
            process.wait_ready()
        runs = []
        for k, (process, limit) in enumerate(zip(self.processes, limits)):
            try:
                runs.append(process.run(*(limit or ())))
            except ProgramFailure as exc:
                exc.program = k
                raise
            process.close()
        return runs

    def close(self) -> None:
        for process in self.processes:
            process.close()


def _error_text(payload: bytes) -> str:
    try:
        text = wire.decode(payload)["error"]
    except (wire.ProtocolError, TypeError, KeyError):
        return "malformed error message from the program process"
    if not isinstance(text, str):
        return "malformed error message from the program process"
    text = " ".join(text.split())
    return text if len(text) <= 500 else text[:497] + "..."


def _exit_code(proc) -> int | None:
    try:
        return proc.wait(timeout=2)
    except subprocess.TimeoutExpired:
        return None


def _stop(proc) -> None:
    """Ends the process: it has sent everything it owes, or failed."""
    try:
        proc.stdin.close()
    except OSError:
        pass
    proc.kill()
    proc.wait()
