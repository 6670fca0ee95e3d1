"""Shared test helpers: fixture problem folders and running the loop in-process."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import sys
from pathlib import Path

import pytest

from sysevolve.runs import create_run, open_run

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


async def _drive(run):
    await run.engine.prepare(run.problem.initial_code())
    return await run.engine.run()


def run_loop(problem, out_dir: Path, **overrides):
    """Create a run of `problem` in `out_dir` with config `overrides` and run it to the end."""
    run = create_run(problem, overrides=overrides, out_dir=out_dir)
    try:
        reason = asyncio.run(_drive(run))
        return run, reason
    finally:
        run.close()


def resume_loop(out_dir: Path, iterations: int | None = None):
    run = open_run(out_dir, iterations=iterations)
    try:
        return run, asyncio.run(_drive(run))
    finally:
        run.close()


@pytest.fixture
def toy_problem() -> Path:
    return FIXTURES / "toy"


@contextlib.contextmanager
def problem_modules(folder: Path, names: tuple[str, ...]):
    """A problem folder's modules, freshly imported with the folder on sys.path (as the
    evaluation child sees them); removed again afterwards, since hostile tests patch them."""
    for name in names:
        sys.modules.pop(name, None)
    sys.path.insert(0, str(folder))
    try:
        yield {name: importlib.import_module(name) for name in names}
    finally:
        sys.path.remove(str(folder))
        for name in names:
            sys.modules.pop(name, None)
