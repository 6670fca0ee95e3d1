"""The selector: islands of programs, MAP-Elites cells, and parent/inspiration sampling.

The archive is a pure in-memory structure. It does no I/O, reads no clock and never touches
the global random state: every random choice comes from the `random.Random` passed to
`sample`. On resume it is rebuilt by replaying the stored programs, in order, through `add`;
the same calls with the same rng give the same selections, migrations and evictions.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal

from sysevolve.config import SelectionConfig
from sysevolve.program import Program

Mode = Literal["exploit", "explore", "weighted"]
Cell = tuple[int, ...]

CODE_LENGTH = "code_length"  # the built-in feature: len(program.code)


@dataclass(frozen=True)
class Selection:
    """What the next proposal starts from: a parent, inspirations, and the target island."""

    parent: Program
    inspirations: tuple[Program, ...]
    island: int
    mode: Mode


def _rank_key(program: Program) -> tuple[float, int]:
    """Sort key: best score first, ties to the older (lower) id."""
    return (-program.score, program.id)  # type: ignore[operator]


class _Island:
    """One island's members (in insertion order) and its MAP-Elites grid."""

    def __init__(self) -> None:
        self.members: dict[int, Program] = {}
        self.grid: dict[Cell, Program] = {}
        self.grid_version = -1  # the feature-range version the grid was built for

    def ranked(self) -> list[Program]:
        return sorted(self.members.values(), key=_rank_key)


class Archive:
    """Programs partitioned into islands, each with a MAP-Elites grid over feature bins."""

    def __init__(self, settings: SelectionConfig | None = None) -> None:
        self.settings = settings or SelectionConfig()
        n = self.settings.num_islands
        self._islands = [_Island() for _ in range(n)]
        self._programs: dict[int, Program] = {}  # every program that is on some island
        self._homes: dict[int, set[int]] = {}  # program id -> islands it is a member of
        self._best: Program | None = None
        # Global [min, max] per feature dimension; None until a value is seen.
        self._ranges: list[list[float] | None] = [None] * len(self.settings.feature_dimensions)
        self._range_version = 0
        self._since_migration = 0
        self._migrations: list[tuple[int, int, int]] = []

    # ----- adding --------------------------------------------------------------------------

    def add(self, program: Program) -> bool:
        """Add an evaluated program to island `program.island % num_islands`.

        Programs that did not evaluate ok (or have a non-finite score), and ids already in
        the archive, are ignored. Returns True if the program is the new global best.
        """
        if not program.evaluated_ok or not math.isfinite(program.score):  # type: ignore[arg-type]
            return False
        if program.id in self._programs:
            return False
        self._update_ranges(program)
        island = program.island % self.settings.num_islands
        self._programs[program.id] = program
        self._homes[program.id] = set()
        self._join(program, island)
        self._since_migration += 1

        is_best = self._best is None or program.score > self._best.score  # type: ignore[operator]
        if is_best:
            self._best = program
        self.maybe_migrate()
        return is_best

    def maybe_migrate(self) -> list[tuple[int, int, int]]:
        """Migrate if `migration_interval` programs were accepted since the last migration.

        Each island's top `migration_rate` fraction of its elites (at least one when the rate
        is positive) is copied to island (i + 1) % num_islands; programs already there are
        skipped. `add` calls this, so a replay reproduces the same migrations. Returns the
        migrations made now as (program_id, from_island, to_island).
        """
        s = self.settings
        if s.migration_interval == 0 or self._since_migration < s.migration_interval:
            return []
        self._since_migration = 0
        if s.num_islands < 2 or s.migration_rate == 0:
            return []
        # Choose all migrants before moving any, so a migrant does not travel twice per round.
        planned = []
        for i, island in enumerate(self._islands):
            elites = self._elites(island.ranked())
            count = max(1, int(s.migration_rate * len(elites)))
            planned += [(p, i, (i + 1) % s.num_islands) for p in elites[:count]]
        moved = []
        for program, src, dst in planned:
            if program.id not in self._islands[dst].members:
                self._join(program, dst)
                moved.append((program.id, src, dst))
        self._migrations += moved
        return moved

    def _join(self, program: Program, island: int) -> None:
        """Make `program` a member of `island`, update its grid and enforce the size cap."""
        isl = self._islands[island]
        isl.members[program.id] = program
        self._homes[program.id].add(island)
        if isl.grid_version == self._range_version:
            self._place(isl.grid, program)
        # A stale grid is rebuilt from the members the next time it is read.
        if len(isl.members) > self.settings.population_size:
            self._evict(island)

    def _evict(self, island: int) -> None:
        """Drop the worst member that is not an elite, the island's best, or a cell occupant."""
        isl = self._islands[island]
        ranked = isl.ranked()
        protected = {p.id for p in self._elites(ranked)}
        protected |= {p.id for p in self._grid(isl).values()}
        protected.add(ranked[0].id)
        for program in reversed(ranked):
            if program.id not in protected:
                del isl.members[program.id]
                homes = self._homes[program.id]
                homes.discard(island)
                if not homes:
                    del self._homes[program.id]
                    del self._programs[program.id]
                return
        # Every member is protected: the island may exceed its cap until that changes.

    # ----- features and cells --------------------------------------------------------------

    def _features(self, program: Program) -> list[float | None]:
        values: list[float | None] = []
        for name in self.settings.feature_dimensions:
            v = len(program.code) if name == CODE_LENGTH else program.metrics.get(name)
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            values.append(float(v) if ok else None)
        return values

    def _update_ranges(self, program: Program) -> None:
        changed = False
        for d, v in enumerate(self._features(program)):
            if v is None:
                continue
            r = self._ranges[d]
            if r is None:
                self._ranges[d] = [v, v]
                changed = True
            elif v < r[0] or v > r[1]:
                r[0], r[1] = min(r[0], v), max(r[1], v)
                changed = True
        if changed:
            self._range_version += 1

    def cell_of(self, program: Program) -> Cell | None:
        """The program's MAP-Elites cell under the current ranges; None if a feature is missing."""
        bins = self.settings.feature_bins
        cell = []
        for v, r in zip(self._features(program), self._ranges):
            if v is None or r is None:
                return None
            lo, hi = r
            idx = 0 if hi <= lo else int((v - lo) / (hi - lo) * bins)
            cell.append(min(max(idx, 0), bins - 1))
        return tuple(cell)

    def _place(self, grid: dict[Cell, Program], program: Program) -> None:
        """Put `program` in its cell if the cell is empty or it beats the occupant."""
        cell = self.cell_of(program)
        if cell is None:
            return
        occupant = grid.get(cell)
        if occupant is None or _rank_key(program) < _rank_key(occupant):
            grid[cell] = program

    def _grid(self, isl: _Island) -> dict[Cell, Program]:
        # Cells move when the global feature range grows, so rebuild lazily from the members.
        if isl.grid_version != self._range_version:
            isl.grid = {}
            for program in isl.members.values():
                self._place(isl.grid, program)
            isl.grid_version = self._range_version
        return isl.grid

    # ----- sampling ------------------------------------------------------------------------

    def sample(self, rng: random.Random, island: int) -> Selection:
        """Choose a parent and inspirations for a child that will live on `island`.

        An empty island samples from the whole archive instead. Raises LookupError if the
        archive is empty.
        """
        s = self.settings
        island %= s.num_islands
        ranked, grid = self._view(island)
        if not ranked:
            raise LookupError("the archive is empty: add an evaluated program first")

        r = rng.random()
        occupants = [grid[c] for c in sorted(grid)]
        if r < s.exploitation_ratio:
            mode: Mode = "exploit"
            parent = rng.choice(self._elites(ranked))
        elif r < s.exploitation_ratio + s.exploration_ratio:
            mode = "explore"
            parent = rng.choice(occupants or ranked)
        else:
            mode = "weighted"
            weights = [1.0 / (rank + 1) for rank in range(len(ranked))]
            parent = rng.choices(ranked, weights=weights)[0]

        top = [p for p in ranked if p.id != parent.id][: s.num_top_inspirations]
        taken = {parent.id} | {p.id for p in top}
        diverse = self._diverse(rng, parent, grid, taken)
        return Selection(parent, tuple(top + diverse), island, mode)

    def _view(self, island: int) -> tuple[list[Program], dict[Cell, Program]]:
        """The ranked population and grid to sample from: the island's, or the global one."""
        isl = self._islands[island]
        if isl.members:
            return isl.ranked(), self._grid(isl)
        grid: dict[Cell, Program] = {}
        for other in self._islands:
            for program in self._grid(other).values():
                self._place(grid, program)
        return sorted(self._programs.values(), key=_rank_key), grid

    def _diverse(
        self, rng: random.Random, parent: Program, grid: dict[Cell, Program], taken: set[int]
    ) -> list[Program]:
        """Occupants of other cells, drawn without replacement with weight = L1 distance.

        Far cells are likelier than near ones; the weighted draw uses one key per candidate,
        rng.random() ** (1 / weight), and keeps the largest keys (Efraimidis-Spirakis).
        """
        k = self.settings.num_diverse_inspirations
        if k == 0:
            return []
        home = self.cell_of(parent)
        keyed = []
        for cell in sorted(grid):
            program = grid[cell]
            if program.id in taken or cell == home:
                continue
            distance = 1 if home is None else sum(abs(a - b) for a, b in zip(cell, home))
            keyed.append((rng.random() ** (1.0 / distance), -program.id, program))
        keyed.sort(key=lambda t: t[:2], reverse=True)
        return [program for _, _, program in keyed[:k]]

    def _elites(self, ranked: list[Program]) -> list[Program]:
        """The top `elite_fraction` of a ranked population, at least one."""
        return ranked[: max(1, int(self.settings.elite_fraction * len(ranked)))]

    # ----- queries -------------------------------------------------------------------------

    def best(self) -> Program | None:
        """The best program added so far (ties go to the earlier one)."""
        return self._best

    def programs(self, island: int | None = None) -> tuple[Program, ...]:
        """Programs currently kept, in insertion order; only `island`'s members if given."""
        if island is None:
            return tuple(self._programs.values())
        return tuple(self._islands[island % self.settings.num_islands].members.values())

    def island_sizes(self) -> tuple[int, ...]:
        """Number of members per island (a migrated program counts on each of its islands)."""
        return tuple(len(isl.members) for isl in self._islands)

    def cells(self, island: int) -> dict[Cell, Program]:
        """The island's MAP-Elites grid, cell -> occupant, in cell order."""
        grid = self._grid(self._islands[island % self.settings.num_islands])
        return {cell: grid[cell] for cell in sorted(grid)}

    def migrations(self) -> tuple[tuple[int, int, int], ...]:
        """Every migration so far, as (program_id, from_island, to_island)."""
        return tuple(self._migrations)

    def __len__(self) -> int:
        return len(self._programs)

    def __contains__(self, program_id: object) -> bool:
        return program_id in self._programs
