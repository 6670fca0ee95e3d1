"""The live progress bar of a run: iterations, best score, proposal rate, failures."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from sysevolve.engine import RunStats


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


class ProgressBar:
    """A rich progress bar fed with the engine's RunStats."""

    def __init__(self, total: int, done: int, console: Console | None = None):
        """`done`: iterations already settled when this session of the run started."""
        self._progress = Progress(
            BarColumn(bar_width=16),
            MofNCompleteColumn(),
            TextColumn("best [green]{task.fields[best]}[/]"),
            TextColumn("{task.fields[rate]} prop/s"),
            TextColumn("[red]{task.fields[failures]}[/] failed"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self._task = self._progress.add_task(
            "run", total=total, completed=done, best="-", rate="0.00", failures=0
        )
        self._settled_at_start: int | None = None
        self._started = time.monotonic()

    def __enter__(self) -> "ProgressBar":
        self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.stop()

    def update(self, stats: RunStats) -> None:
        if self._settled_at_start is None:
            self._settled_at_start = stats.settled
        elapsed = max(time.monotonic() - self._started, 1e-9)
        rate = (stats.settled - self._settled_at_start) / elapsed
        self._progress.update(
            self._task,
            completed=stats.settled,
            best=_score(stats.best_score),
            rate=f"{rate:.2f}",
            failures=stats.failures,
        )
