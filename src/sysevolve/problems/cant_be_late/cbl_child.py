"""The policy process: loads the candidate and answers the simulator one tick at a time.

    python -s cbl_child.py READ_FD WRITE_FD PROGRAM_PATH

Started by `cbl_runner.PolicyProcess`; the protocol is described there. This process holds one
policy instance per run and nothing else: no trace, no price, no cost. Every tick it receives the
observations of all runs still active and returns one action code per run, so the number of
round trips is the number of ticks, not of decisions.
"""

import importlib.util
import os
import random
import struct
import sys
import types

import cbl_api

del sys.path[0]  # the problem folder: the candidate may import cbl_api (loaded), nothing else

HEADER = struct.Struct("<IB")
TICK = struct.Struct("<Iid")
INIT = struct.Struct("<Id")
ClusterType = cbl_api.ClusterType
TYPES = (ClusterType.NONE, ClusterType.SPOT, ClusterType.ON_DEMAND)
NAMES = {"NONE": 0, "SPOT": 1, "ON_DEMAND": 2}
BOOLS = (False, True)


class Failure(Exception):
    """A one-line reason the evaluation is invalid."""


def _one_line(exc: BaseException) -> str:
    try:
        text = " ".join(str(exc).split())
    except Exception:
        text = ""
    return f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__


def _install_adrs_aliases() -> None:
    """ADRS programs import from sky_spot; point those modules at the shim."""
    names = ("sky_spot", "sky_spot.strategies", "sky_spot.strategies.strategy", "sky_spot.utils")
    modules = {name: types.ModuleType(name) for name in names}
    modules["sky_spot"].strategies = modules["sky_spot.strategies"]
    modules["sky_spot"].utils = modules["sky_spot.utils"]
    modules["sky_spot.strategies"].strategy = modules["sky_spot.strategies.strategy"]
    modules["sky_spot.strategies.strategy"].Strategy = cbl_api.Strategy
    modules["sky_spot.utils"].ClusterType = ClusterType
    for name, module in modules.items():
        sys.modules.setdefault(name, module)


class _Hidden:
    """Refuses to import the framework, whose problem modules can generate or load the traces."""

    NAMES = ("sysevolve", "evaluator", "cbl_sim", "cbl_traces", "cbl_runner", "cbl_policies")

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in self.NAMES:
            raise ImportError(f"{name} is not available to a policy")
        return None


def load_strategy(path: str) -> type:
    """The one Strategy subclass the program defines (the most derived one)."""
    try:
        spec = importlib.util.spec_from_file_location("candidate_policy", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules["candidate_policy"] = module
        spec.loader.exec_module(module)
    except BaseException as exc:
        raise Failure(f"cannot load program: {_one_line(exc)}") from None
    found = [v for v in vars(module).values()
             if isinstance(v, type) and issubclass(v, cbl_api.Strategy)
             and v is not cbl_api.Strategy and v.__module__ == module.__name__]
    leaves = [c for c in found if not any(o is not c and issubclass(o, c) for o in found)]
    if not leaves:
        raise Failure("program defines no subclass of Strategy")
    if len(leaves) > 1:
        names = ", ".join(sorted(c.__name__ for c in leaves))
        raise Failure(f"program defines several Strategy subclasses ({names}); keep one")
    return leaves[0]


def make_policies(cls: type, payload: bytes) -> tuple[list, list, float]:
    """One fresh instance per run, reset with its task; (instances, tasks, gap)."""
    n, gap = INIT.unpack_from(payload)
    view = memoryview(payload)[INIT.size:]
    columns = [view[8 * n * c: 8 * n * (c + 1)].cast("d").tolist() for c in range(3)]
    tasks = [cbl_api.Task(*row) for row in zip(*columns)]
    # One parser for all runs (building one costs more than a tick); "resolve" lets every
    # instance's _from_args add the same options again.
    parser = cbl_api.ArgsParser(prog=cls.__name__, add_help=False, conflict_handler="resolve")
    policies = []
    for i, task in enumerate(tasks):
        try:
            if hasattr(cls, "_from_args"):
                policy = cls._from_args(parser)
            else:
                policy = cls()
            if not isinstance(policy, cbl_api.Strategy):
                raise TypeError(f"created a {type(policy).__name__}, not a Strategy")
            policy.reset(cbl_api.Env(0, 0.0, gap, ClusterType.NONE), task)
        except BaseException as exc:
            raise Failure(f"run {i}: creating the policy raised {_one_line(exc)}") from None
        policies.append(policy)
    return policies, tasks, gap


def decide(policies: list, tasks: list, gap: float, payload: bytes) -> bytes:
    """One action code per active run for this tick's observations."""
    n, tick, elapsed = TICK.unpack_from(payload)
    view = memoryview(payload)
    o = TICK.size
    work = view[o: o + 8 * n].cast("d").tolist()
    pending = view[o + 8 * n: o + 16 * n].cast("d").tolist()
    o += 16 * n
    ids = view[o: o + 4 * n].cast("i")
    o += 4 * n
    spot, last, current = payload[o: o + n], payload[o + n: o + 2 * n], payload[o + 2 * n: o + 3 * n]
    none_, spot_, od_ = TYPES
    # Views are immutable tuples, so runs at the same tick can share the three possible ones.
    envs = [cbl_api.Env(tick, elapsed, gap, kind) for kind in TYPES]
    out = bytearray(n)
    i = -1
    try:
        for j, i in enumerate(ids.tolist()):
            p = policies[i]
            p.task_duration, p.deadline, p.restart_overhead = tasks[i]
            p.env = envs[current[j]]
            p.task_done_time = [work[j]]
            p.remaining_restart_overhead = pending[j]
            p.task_done = False
            action = p._step(TYPES[last[j]], BOOLS[spot[j]])
            if action is spot_:
                out[j] = 1
            elif action is od_:
                out[j] = 2
            elif action is none_:
                pass
            elif type(action) is str and action in NAMES:
                out[j] = NAMES[action]
            else:
                raise Failure(f"run {i}, tick {tick}: invalid action {_short_repr(action)} (expected "
                              "ClusterType.NONE, ClusterType.SPOT or ClusterType.ON_DEMAND)")
    except Failure:
        raise
    except BaseException as exc:
        raise Failure(f"run {i}, tick {tick}: _step raised {_one_line(exc)}") from None
    return bytes(out)


def _short_repr(value) -> str:
    try:
        text = repr(value)
    except BaseException:
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 60 else text[:57] + "..."


def _read_exact(fd: int, n: int) -> bytes:
    chunks = []
    while n:
        chunk = os.read(fd, n)
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _send(fd: int, kind: bytes, payload: bytes) -> None:
    data = memoryview(HEADER.pack(len(payload), kind[0]) + payload)
    while data:
        data = data[os.write(fd, data):]


def serve(rfd: int, wfd: int, program: str) -> None:
    """Answer frames until the harness says quit or closes the channel."""
    _install_adrs_aliases()
    sys.meta_path.insert(0, _Hidden())
    random.seed(0)  # same program, same split, same score, even for a policy that draws
    cls = load_strategy(program)
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed(0)
    policies, tasks, gap = [], [], 0.0
    while True:
        size, kind = HEADER.unpack(_read_exact(rfd, HEADER.size))
        payload = _read_exact(rfd, size)
        if kind == ord("O"):
            _send(wfd, b"A", decide(policies, tasks, gap, payload))
        elif kind == ord("I"):
            policies, tasks, gap = make_policies(cls, payload)
            _send(wfd, b"R", b"")
        else:
            return


def main(argv: list) -> None:
    rfd, wfd, program = int(argv[1]), int(argv[2]), argv[3]
    try:
        serve(rfd, wfd, program)
    except EOFError:
        pass
    except BaseException as exc:
        message = str(exc) if isinstance(exc, Failure) else f"policy process: {_one_line(exc)}"
        try:
            _send(wfd, b"E", message.encode("utf-8", "replace"))
        except OSError:
            pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass
    os._exit(0)  # skip the candidate's atexit hooks and threads


if __name__ == "__main__":
    main(sys.argv)
