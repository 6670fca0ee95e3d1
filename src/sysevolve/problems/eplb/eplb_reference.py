"""The reference side of an evaluation: a process that owns the workload and times the baseline.

`Reference` forks before the candidate is loaded. The forked process generates (or loads) the
windows, hands the candidate's side one window at a time (W_{i+1} only once the calls on W_i
are done) and runs the baseline with the same timing protocol, call by call in lockstep with
the candidate: load on the machine drifts, and timing both sides alternately cancels the drift.
The candidate cannot reach the generator's state or the future windows, and patching numpy or
any module in its own process cannot slow or change the reference.
"""

from __future__ import annotations

import ctypes
import gc
import os
import pickle
import signal
import struct
import warnings

_LENGTH = struct.Struct("<Q")
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters


class ReferenceFailed(RuntimeError):
    """The reference process failed or went away; the message is one line."""


def script(fn, streams, sim, layout, repeats: int, warmup, clock):
    """The reference's replies, one per request, in the order the candidate's side asks for them:

    the stream list [(name, steps)]; then per stream its first window, and per step `repeats`
    timings of the baseline on the current window followed by (next window, (b_gpu, b_slot) of
    the baseline's first placement on it).
    """
    sim.materialise(fn(warmup.copy(), *layout))  # untimed warm-up, as on the candidate's side
    yield [(s.name, s.steps) for s in streams]
    for stream in streams:
        windows = stream.windows()
        current = next(windows)
        yield current
        for _ in range(stream.steps):
            placement = None
            for _ in range(repeats):
                argument = current.copy()
                gc.disable()
                start = clock()
                outputs = sim.materialise(fn(argument, *layout))
                took = clock() - start
                gc.enable()
                yield took
                if placement is None:
                    placement = outputs
            upcoming = next(windows)
            counts = sim.validate(*placement, current.shape[1])
            yield upcoming, sim.step_balance(placement[0], counts, upcoming, layout.num_gpus)
            current = upcoming


class Reference:
    """A forked process serving `replies` (an iterator) one per `next()` call of the parent."""

    def __init__(self, replies):
        child_reads, parent_writes = os.pipe()
        parent_reads, child_writes = os.pipe()
        steady_allocator()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # fork with idle BLAS threads
            pid = os.fork()
        if pid == 0:  # the reference process: never returns
            os.close(parent_writes)
            os.close(parent_reads)
            _serve(child_reads, child_writes, replies)
        os.close(child_reads)
        os.close(child_writes)
        self._pid, self._out, self._in = pid, parent_writes, parent_reads

    def next(self):
        """The reference's next reply."""
        try:
            os.write(self._out, b".")
            size = _LENGTH.unpack(_read(self._in, _LENGTH.size))[0]
            ok, reply = pickle.loads(_read(self._in, size))
        except (OSError, EOFError, pickle.UnpicklingError) as exc:
            raise ReferenceFailed(
                f"the reference process went away ({type(exc).__name__})") from None
        if not ok:
            raise ReferenceFailed(f"the reference process failed: {reply}")
        return reply

    def close(self) -> None:
        """Stops the reference process (idempotent)."""
        if self._pid is None:
            return
        for fd in (self._out, self._in):
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            os.kill(self._pid, signal.SIGKILL)
            os.waitpid(self._pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        self._pid = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def steady_allocator() -> None:
    """Pins glibc's malloc thresholds (both processes inherit them across the fork).

    By default, whether a multi-megabyte array (a placement's log2phy) gets fresh pages, and so
    page faults, on every call depends on the process's allocation history, which differs
    between the two sides: identical programs then timed up to 40% apart.
    """
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)  # the largest allowed: arrays from the heap
        libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30)  # and the heap is not handed back
    except (OSError, AttributeError):  # not glibc: nothing to pin
        pass


def _serve(requests: int, replies_fd: int, replies) -> None:
    """Computes and sends the next reply for each request byte (only then, so the two sides
    never run at the same time) as (True, reply), or (False, message) after a failure; exits at
    the end of the input, of the replies, or after a failure."""
    replies = iter(replies)
    try:
        while os.read(requests, 1):
            try:
                reply = next(replies)
            except StopIteration:
                break
            except BaseException as exc:
                text = " ".join(str(exc).split())[:300]
                _write(replies_fd, pickle.dumps((False, f"{type(exc).__name__}: {text}")))
                break
            _write(replies_fd, pickle.dumps((True, reply), protocol=pickle.HIGHEST_PROTOCOL))
    finally:
        os._exit(0)


def _write(fd: int, payload: bytes) -> None:
    view = memoryview(_LENGTH.pack(len(payload)) + payload)
    while view:
        view = view[os.write(fd, view):]


def _read(fd: int, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)
