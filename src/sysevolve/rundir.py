"""The run directory: `run.db` (everything) and `best/` (the current best program)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from sysevolve.program import Program

DB_NAME = "run.db"
BEST_DIR = "best"
BEST_PROGRAM = "best_program.py"
BEST_INFO = "best_program_info.json"


def db_path(run_dir: Path) -> Path:
    return Path(run_dir) / DB_NAME


def is_run_dir(path: Path) -> bool:
    return db_path(path).is_file()


def _write_atomically(path: Path, text: str) -> None:
    """Readers never see a half-written file, even if the run is killed mid-write."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


class BestProgramFolder:
    """Keeps `best/` in step with the best program found so far."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / BEST_DIR

    def write(self, program: Program) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        _write_atomically(self.path / BEST_PROGRAM, program.code)
        info = {
            "id": program.id,
            "iteration": program.iteration,
            "parent_id": program.parent_id,
            "score": program.score,
            "metrics": program.metrics,
            "warnings": program.artifacts.get("warnings", []),
        }
        _write_atomically(self.path / BEST_INFO, json.dumps(info, indent=2) + "\n")
