"""The program process: imports a reorder program and runs it on tables (spec 2.2 and 7).

    python llm_sql_runner.py RESULT_FD [MODULE_TO_PRELOAD ...]

The process starts (and preloads numpy if the program uses it, so that no program pays for
importing it) while the evaluator prepares the tables; it then reads the path of a request file
from stdin, reads and deletes that file and reports READY; nothing of the program has run yet.
On a byte on stdin ("go") it imports the program (module `llm_sql_candidate`, on sys.path) and
calls `Evolved().reorder` on each table in turn, sending every result as lists of strings, so
the evaluator's clock (from "go" to the last result) covers the import, every call and the
conversion of the outputs.
"""

from __future__ import annotations

import importlib
import json
import os
import sys

import llm_sql_wire as wire
from llm_sql_api import Table

MODULE = "llm_sql_candidate"
DENIED_EVENTS = ("open", "os.listdir", "os.scandir", "os.link", "os.rename", "shutil.copyfile",
                 "shutil.copytree", "os.chdir")
SPAWN_EVENTS = ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn")


def deny_paths(roots) -> None:
    """An audit hook refusing Python-level access to files under `roots` (the data folders).

    Audit hooks cannot be removed; a program that shells out or calls libc directly is not
    stopped (that needs the sandbox's file-system isolation)."""
    roots = [os.path.realpath(r) for r in roots]
    if not roots:
        return

    def inside(path) -> bool:
        if not isinstance(path, (str, bytes, os.PathLike)):
            return False
        try:
            real = os.path.realpath(os.fsdecode(path))
        except (TypeError, ValueError, OSError):
            return False
        return any(real == r or real.startswith(r + os.sep) for r in roots)

    def words(args):
        for arg in args:
            if isinstance(arg, (list, tuple)):
                yield from (a for a in arg if isinstance(a, (str, bytes)))
            elif isinstance(arg, (str, bytes)):
                yield arg

    def hook(event, args):
        if event in DENIED_EVENTS and args and inside(args[0]):
            raise PermissionError(f"{event}: the data folder is not readable by programs")
        if event in SPAWN_EVENTS and any(r in os.fsdecode(w) for w in words(args) for r in roots):
            raise PermissionError(f"{event}: the data folder is not readable by programs")

    sys.addaudithook(hook)


def as_rows(result) -> list[list[str]]:
    """The rows of what reorder returned: a Table, rows, a DataFrame or an array, alone or
    first in a tuple; non-string cells become str(cell)."""
    if isinstance(result, tuple) and result:
        result = result[0]
    if isinstance(result, Table):
        result = result.rows
    elif hasattr(result, "columns") and hasattr(result, "values"):  # a pandas DataFrame
        result = result.values.tolist()
    elif hasattr(result, "tolist"):  # a numpy array
        result = result.tolist()
    return [[cell if type(cell) is str else str(cell) for cell in row] for row in result]


def main(result_fd: int, preload) -> None:
    for name in preload:  # modules the program imports, loaded before the clock starts
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    request_path = sys.stdin.buffer.readline().decode().strip()
    if not request_path:
        return  # the evaluator went away
    with open(request_path, encoding="utf-8") as f:
        request = json.load(f)
    os.unlink(request_path)
    tables = request["tables"]
    kwargs = request["kwargs"]
    deny_paths(request["denied_roots"])
    wire.send(result_fd, wire.READY, {})
    if not sys.stdin.buffer.read(1):
        return  # the evaluator went away
    try:
        module = importlib.import_module(MODULE)
        evolved = getattr(module, "Evolved")
    except BaseException as exc:  # anything the program does at import is its own failure
        wire.send(result_fd, wire.ERROR, {"error": f"cannot load program: {one_line(exc)}"})
        return
    wire.send(result_fd, wire.IMPORTED, {})
    for table in tables:
        try:
            result = evolved().reorder(Table(table["columns"], table["rows"]), **kwargs)
        except BaseException as exc:
            wire.send(result_fd, wire.ERROR,
                      {"error": f"table {table['name']}: reorder raised {one_line(exc)}"})
            return
        try:
            rows = as_rows(result)
        except BaseException as exc:
            wire.send(result_fd, wire.ERROR, {"error": f"table {table['name']}: the result is not "
                                                       f"a table of rows ({one_line(exc)})"})
            return
        wire.send(result_fd, wire.TABLE, rows)


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2:])
    sys.stdout.flush()
    os._exit(0)  # no atexit hooks or lingering non-daemon threads of the program
