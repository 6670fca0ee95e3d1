"""The tables of each split: real CSV blocks when supplied, synthetic profiles otherwise (spec 4).

A table reaches the candidate as *units*: the columns outside any merge group in table order,
then one fused column per merge group (cells concatenated without separator, members ranked by
GGR's column score, descending, ties by table order), as the ADRS harness's GGR fused them.
"""

from __future__ import annotations

import csv
import functools
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import llm_sql_synth

BLOCK_ROWS = 2000
DATA_ENV = "SYSEVOLVE_DATA"
SUBDIR = "llm_sql"


@dataclass(frozen=True)
class Dataset:
    """One ADRS dataset: its file name, merge groups and synthetic stand-in."""

    name: str
    filename: str
    merges: tuple[tuple[str, ...], ...]
    profile: str


DATASETS = (
    Dataset("beer", "beer.csv", (("beer/beerId", "beer/name"),), "beer_like"),
    Dataset("movies", "movies.csv", (("movieinfo", "movietitle", "rottentomatoeslink"),),
            "movies_like"),
    Dataset("bird", "BIRD.csv", (("PostId", "Body"),), "bird_like"),
    Dataset("pdmx", "PDMX.csv", (("path", "metadata"), ("hasmetadata", "isofficial",
            "isuserpublisher", "isdraft", "hasannotations", "subsetall")), "pdmx_like"),
    Dataset("products", "products.csv", (("product_title", "parent_asin"),), "products_like"),
)
SPLITS = {
    # split -> (real blocks of beer, of the other files; synthetic seeds)
    "search": ((0,), (0,), (0,)),
    "holdout": (tuple(range(1, 14)), (1, 2, 3), (1, 2, 3)),
}


@dataclass(frozen=True)
class Instance:
    """One table as the harness sees it: units, rows of strings, and where it came from."""

    name: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    source: str


def column_score(cells) -> float:
    """GGR's column score: avg_len**2 * (rows / distinct - 1), 0 if every cell is distinct."""
    n = len(cells)
    distinct = len(set(cells))
    if n == 0 or distinct == n:
        return 0.0
    avg_len = sum(map(len, cells)) / n
    return avg_len * avg_len * (n / distinct - 1)


def fuse(header, rows, merges) -> tuple[list[str], list[list[str]]]:
    """(unit names, unit rows) of a table whose merge groups become one column each."""
    index = {name: j for j, name in enumerate(header)}
    for group in merges:
        missing = [c for c in group if c not in index]
        if missing:
            raise ValueError(f"merge group {list(group)}: no column {missing[0]!r} in the table")
    grouped = {c for group in merges for c in group}
    plain = [j for j, name in enumerate(header) if name not in grouped]
    fused = []
    for group in merges:
        members = sorted((index[c] for c in group),
                         key=lambda j: -column_score([row[j] for row in rows]))  # stable: ties by table order
        fused.append(members)
    names = [header[j] for j in plain] + ["_".join(header[j] for j in m) for m in fused]
    units = [[row[j] for j in plain] + ["".join(row[j] for j in m) for m in fused] for row in rows]
    return names, units


def read_csv(path: Path, max_rows: int | None = None) -> tuple[list[str], list[list[str]]]:
    """(header, rows) as raw text (spec 3.1: an empty field is ""); at most max_rows rows."""
    csv.field_size_limit(sys.maxsize)
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = []
        for row in reader:
            if max_rows is not None and len(rows) >= max_rows:
                break
            if len(row) != len(header):
                raise ValueError(f"{path}: row {len(rows) + 1} has {len(row)} fields, "
                                 f"expected {len(header)}")
            rows.append(row)
    return header, rows


def data_root(data_dir=None) -> Path | None:
    """The folder of real files: data_dir/llm_sql (must exist), else $SYSEVOLVE_DATA/llm_sql."""
    if data_dir is not None:
        root = Path(data_dir) / SUBDIR
        if not root.is_dir():
            raise FileNotFoundError(f"no llm_sql data folder at {root}")
        return root
    env = os.environ.get(DATA_ENV)
    if env and (Path(env) / SUBDIR).is_dir():
        return Path(env) / SUBDIR
    return None


def split_instances(split: str, root: Path | None = None) -> list[Instance]:
    """The tables of `split`: real blocks for each dataset file under `root`, else synthetic."""
    return list(_split_instances(split, None if root is None else Path(root).resolve()))


@functools.lru_cache(maxsize=8)  # instances are immutable; repeated evaluations in one process
def _split_instances(split: str, root: Path | None) -> tuple[Instance, ...]:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} (known: {', '.join(SPLITS)})")
    beer_blocks, other_blocks, seeds = SPLITS[split]
    instances = []
    for ds in DATASETS:
        path = None if root is None else root / ds.filename
        if path is not None and path.is_file():
            blocks = beer_blocks if ds.name == "beer" else other_blocks
            instances.extend(real_instances(ds, path, blocks))
        else:
            for seed in seeds:
                header, rows = llm_sql_synth.generate(ds.profile, seed)
                names, units = fuse(header, rows, ds.merges)
                instances.append(Instance(f"{ds.profile}_s{seed}", tuple(names),
                                          tuple(map(tuple, units)), f"synthetic {ds.profile} seed {seed}"))
    return tuple(instances)


def real_instances(ds: Dataset, path: Path, blocks) -> list[Instance]:
    """Contiguous 2,000-row blocks of a real file (the last one may be short; empty ones skipped)."""
    header, rows = read_csv(path, BLOCK_ROWS * (max(blocks) + 1))
    out = []
    for b in blocks:
        block = rows[BLOCK_ROWS * b: BLOCK_ROWS * (b + 1)]
        if block:
            names, units = fuse(header, block, ds.merges)
            out.append(Instance(f"{ds.name}_b{b}", tuple(names), tuple(map(tuple, units)),
                                f"{ds.filename} rows {BLOCK_ROWS * b}-{BLOCK_ROWS * b + len(block) - 1}"))
    return out
