"""Tests for the selector: islands, MAP-Elites cells, sampling, migration, determinism."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from sysevolve.archive import Archive, Selection
from sysevolve.config import ConfigError, SelectionConfig, build_config
from sysevolve.program import Program


def prog(pid: int, score: float | None, *, island: int = 0, length: int = 10, **kw) -> Program:
    """An evaluated program whose code has exactly `length` characters."""
    status = kw.pop("status", "ok" if score is not None else "failed")
    return Program(id=pid, code="x" * length, island=island, status=status, score=score, **kw)


def settings(**kw) -> SelectionConfig:
    base = dict(num_islands=1, migration_interval=0)
    base.update(kw)
    return SelectionConfig(**base)


# ----- settings ------------------------------------------------------------------------------


def test_default_settings_are_valid_and_lists_become_tuples():
    assert SelectionConfig().num_islands == 4
    s = SelectionConfig(feature_dimensions=["code_length", "latency"])
    assert s.feature_dimensions == ("code_length", "latency")
    hash(s)


@pytest.mark.parametrize(
    "kw, key",
    [
        (dict(num_islands=0), "selection.num_islands"),
        (dict(exploitation_ratio=0.8, exploration_ratio=0.3), "exploitation_ratio + exploration_ratio"),
        (dict(exploitation_ratio=-0.1), "selection.exploitation_ratio"),
        (dict(elite_fraction=0.0), "selection.elite_fraction"),
        (dict(feature_bins=0), "selection.feature_bins"),
        (dict(feature_dimensions=("a", "a")), "feature_dimensions has duplicates"),
        (dict(migration_rate=2.0), "selection.migration_rate"),
        (dict(migration_interval=-1), "selection.migration_interval"),
        (dict(population_size=0), "selection.population_size"),
        (dict(num_top_inspirations=-1), "selection.num_top_inspirations"),
    ],
)
def test_settings_validation(kw, key):
    with pytest.raises(ConfigError) as err:
        build_config([("test", {"selection": kw})])
    assert key in str(err.value)
    assert "\n" not in str(err.value)


def test_ratios_summing_to_one_are_accepted():
    SelectionConfig(exploitation_ratio=0.7, exploration_ratio=0.3)
    SelectionConfig(exploitation_ratio=1.0, exploration_ratio=0.0)


# ----- add and best --------------------------------------------------------------------------


def test_add_returns_true_only_for_a_new_best():
    a = Archive(settings())
    assert a.best() is None
    assert a.add(prog(1, 1.0)) is True
    assert a.add(prog(2, 0.5)) is False
    assert a.add(prog(3, 1.0)) is False  # a tie is not a new best; the earlier one stays
    assert a.add(prog(4, 2.0)) is True
    assert a.best().id == 4
    assert len(a) == 4
    assert [p.id for p in a.programs()] == [1, 2, 3, 4]


def test_failed_and_unscored_programs_are_ignored():
    a = Archive(settings())
    assert a.add(prog(1, None, status="failed")) is False
    assert a.add(prog(2, None, status="invalid_edit")) is False
    assert a.add(prog(3, 5.0, status="pending")) is False
    assert a.add(prog(4, float("nan"))) is False
    assert len(a) == 0 and a.best() is None
    with pytest.raises(LookupError):
        a.sample(random.Random(0), 0)


def test_duplicate_id_is_ignored():
    a = Archive(settings())
    a.add(prog(1, 1.0))
    assert a.add(prog(1, 9.0)) is False
    assert a.best().score == 1.0 and len(a) == 1


def test_programs_go_to_their_island():
    a = Archive(settings(num_islands=3))
    a.add(prog(1, 1.0, island=0))
    a.add(prog(2, 1.0, island=2))
    a.add(prog(3, 1.0, island=5))  # wraps to island 2
    assert a.island_sizes() == (1, 0, 2)
    assert [p.id for p in a.programs(2)] == [2, 3]


# ----- MAP-Elites cells ----------------------------------------------------------------------


def test_cell_keeps_the_higher_score():
    a = Archive(settings(feature_bins=10))
    a.add(prog(1, 1.0, length=0))
    a.add(prog(2, 1.0, length=100))  # fixes the range to [0, 100]
    a.add(prog(3, 0.5, length=55))
    assert a.cells(0)[(5,)].id == 3
    a.add(prog(4, 0.9, length=51))
    assert a.cells(0)[(5,)].id == 4
    a.add(prog(5, 0.9, length=58))  # equal score does not displace the occupant
    a.add(prog(6, 0.1, length=52))
    assert a.cells(0)[(5,)].id == 4
    assert sorted(a.cells(0)) == [(0,), (5,), (9,)]


def test_cells_are_rebuilt_when_the_range_grows():
    a = Archive(settings(feature_bins=2))
    a.add(prog(1, 1.0, length=0))
    a.add(prog(2, 2.0, length=10))
    assert {c: p.id for c, p in a.cells(0).items()} == {(0,): 1, (1,): 2}
    a.add(prog(3, 0.5, length=100))  # range [0, 100]: 0 and 10 now share bin 0
    assert {c: p.id for c, p in a.cells(0).items()} == {(0,): 2, (1,): 3}


def test_custom_metric_as_feature_dimension():
    s = settings(feature_dimensions=("code_length", "latency"), feature_bins=4)
    a = Archive(s)
    a.add(prog(1, 1.0, length=10, metrics={"latency": 0.0}))
    a.add(prog(2, 1.0, length=50, metrics={"latency": 8.0}))
    a.add(prog(3, 1.0, length=10, metrics={"latency": 5.0}))
    a.add(prog(4, 9.0, length=10))  # no latency metric: kept, but in no cell
    assert a.cell_of(a.programs()[2]) == (0, 2)
    assert a.cell_of(a.programs()[3]) is None
    assert {c: p.id for c, p in a.cells(0).items()} == {(0, 0): 1, (0, 2): 3, (3, 3): 2}
    assert a.best().id == 4


# ----- sampling ------------------------------------------------------------------------------


def filled(s: SelectionConfig, n: int = 40, island: int = 0) -> Archive:
    a = Archive(s)
    for i in range(n):
        a.add(prog(i, float(i % 13) + i / 100, island=island, length=10 + 7 * i))
    return a


def test_exploit_only_returns_elites():
    s = settings(exploitation_ratio=1.0, exploration_ratio=0.0, elite_fraction=0.1)
    a = filled(s)
    elites = {p.id for p in sorted(a.programs(), key=lambda p: -p.score)[:4]}
    rng = random.Random(1)
    picks = [a.sample(rng, 0) for _ in range(200)]
    assert {sel.mode for sel in picks} == {"exploit"}
    assert {sel.parent.id for sel in picks} == elites


def test_elite_set_has_at_least_one_program():
    s = settings(exploitation_ratio=1.0, exploration_ratio=0.0, elite_fraction=0.01)
    a = filled(s, n=5)
    rng = random.Random(0)
    assert {a.sample(rng, 0).parent.id for _ in range(50)} == {a.best().id}


def test_explore_only_returns_cell_occupants():
    s = settings(exploitation_ratio=0.0, exploration_ratio=1.0, feature_bins=5)
    a = filled(s)
    occupants = {p.id for p in a.cells(0).values()}
    rng = random.Random(2)
    picks = {a.sample(rng, 0).parent.id for _ in range(300)}
    assert picks == occupants


def test_weighted_favours_better_ranks_but_reaches_others():
    s = settings(exploitation_ratio=0.0, exploration_ratio=0.0)
    a = filled(s, n=10)
    rng = random.Random(3)
    counts = Counter(a.sample(rng, 0).parent.id for _ in range(3000))
    ranked = [p.id for p in sorted(a.programs(), key=lambda p: (-p.score, p.id))]
    assert counts[ranked[0]] > counts[ranked[1]] > counts[ranked[5]]
    assert len(counts) == 10
    # Weight 1/(r+1): the best is picked with probability 1 / H(10) ~ 0.341.
    assert abs(counts[ranked[0]] / 3000 - 0.341) < 0.04


def test_modes_follow_the_configured_ratios():
    s = settings(exploitation_ratio=0.5, exploration_ratio=0.3)
    a = filled(s)
    rng = random.Random(4)
    counts = Counter(a.sample(rng, 0).mode for _ in range(4000))
    assert abs(counts["exploit"] / 4000 - 0.5) < 0.04
    assert abs(counts["explore"] / 4000 - 0.3) < 0.04
    assert abs(counts["weighted"] / 4000 - 0.2) < 0.04


def test_inspirations_are_unique_and_never_the_parent():
    s = settings(num_top_inspirations=3, num_diverse_inspirations=3, feature_bins=10)
    a = filled(s)
    rng = random.Random(5)
    for _ in range(300):
        sel = a.sample(rng, 0)
        assert isinstance(sel, Selection) and sel.island == 0
        ids = [p.id for p in sel.inspirations]
        assert sel.parent.id not in ids
        assert len(ids) == len(set(ids)) == 6


def test_inspirations_are_top_programs_then_other_cells():
    s = settings(
        exploitation_ratio=1.0, exploration_ratio=0.0, elite_fraction=0.01,
        num_top_inspirations=2, num_diverse_inspirations=2, feature_bins=5,
    )
    a = filled(s)
    ranked = sorted(a.programs(), key=lambda p: (-p.score, p.id))
    sel = a.sample(random.Random(6), 0)
    assert sel.parent.id == ranked[0].id
    assert [p.id for p in sel.inspirations[:2]] == [ranked[1].id, ranked[2].id]
    parent_cell = a.cell_of(sel.parent)
    diverse = sel.inspirations[2:]
    assert len(diverse) == 2
    cells = [a.cell_of(p) for p in diverse]
    assert parent_cell not in cells and len(set(cells)) == 2
    assert all(a.cells(0)[c].id == p.id for c, p in zip(cells, diverse))


def test_few_programs_give_fewer_inspirations():
    a = Archive(settings())
    a.add(prog(1, 1.0))
    sel = a.sample(random.Random(0), 0)
    assert sel.parent.id == 1 and sel.inspirations == ()
    a.add(prog(2, 2.0, length=30))
    sel = a.sample(random.Random(0), 0)
    assert len(sel.inspirations) == 1 and sel.inspirations[0].id != sel.parent.id


def test_empty_island_falls_back_to_the_global_population():
    a = Archive(settings(num_islands=3))
    a.add(prog(1, 1.0, island=0))
    a.add(prog(2, 3.0, island=2, length=40))
    rng = random.Random(7)
    picks = [a.sample(rng, 1) for _ in range(100)]
    assert {sel.island for sel in picks} == {1}
    assert {sel.parent.id for sel in picks} == {1, 2}


# ----- migration -----------------------------------------------------------------------------


def test_migration_copies_elites_to_the_next_island_at_the_interval():
    s = SelectionConfig(
        num_islands=3, migration_interval=6, migration_rate=0.5, elite_fraction=0.5
    )
    a = Archive(s)
    for i in range(5):
        a.add(prog(i, float(i), island=i % 3))
    assert a.migrations() == () and a.island_sizes() == (2, 2, 1)
    a.add(prog(5, 5.0, island=2))  # 6th program: migration happens inside add
    # Island 0 holds {0, 3}, 1 holds {1, 4}, 2 holds {2, 5}: each sends its best one.
    assert a.migrations() == ((3, 0, 1), (4, 1, 2), (5, 2, 0))
    assert a.island_sizes() == (3, 3, 3)
    assert 5 in {p.id for p in a.programs(0)}
    assert len(a) == 6  # a migrant is the same program, not a copy
    assert a.programs(0)[-1] is a.programs(2)[1]
    assert a.maybe_migrate() == []  # not due again until 6 more programs


def test_migration_skips_programs_already_on_the_target_island():
    s = SelectionConfig(num_islands=2, migration_interval=2, migration_rate=1.0)
    a = Archive(s)
    a.add(prog(1, 9.0, island=0))
    a.add(prog(2, 1.0, island=1))
    assert a.migrations() == ((1, 0, 1), (2, 1, 0))
    a.add(prog(3, 0.0, island=0))
    a.add(prog(4, 0.0, island=1))
    # Both islands now have 1 as their only elite; it is already on both.
    assert a.migrations()[2:] == ()


def test_migration_disabled_with_interval_zero():
    a = Archive(SelectionConfig(num_islands=2, migration_interval=0))
    for i in range(50):
        a.add(prog(i, float(i), island=i % 2))
    assert a.migrations() == () and a.island_sizes() == (25, 25)


# ----- population cap ------------------------------------------------------------------------


def test_population_cap_drops_the_worst_unprotected_program():
    s = settings(population_size=4, feature_bins=1, elite_fraction=0.25)
    a = Archive(s)
    for pid, score in [(1, 5.0), (2, 1.0), (3, 3.0), (4, 2.0)]:
        a.add(prog(pid, score))
    a.add(prog(5, 4.0))
    # One cell (bins=1) occupied by the best; 2 is the worst of the rest.
    assert sorted(p.id for p in a.programs()) == [1, 3, 4, 5]
    a.add(prog(6, 0.5))
    assert sorted(p.id for p in a.programs()) == [1, 3, 4, 5]  # a new worst is dropped at once
    assert a.island_sizes() == (4,) and 6 not in a


def test_population_cap_keeps_cell_occupants():
    s = settings(population_size=3, feature_bins=10, elite_fraction=0.1)
    a = Archive(s)
    a.add(prog(1, 9.0, length=0))
    a.add(prog(2, 0.1, length=100))  # sole occupant of the top cell, and the worst
    a.add(prog(3, 5.0, length=2))
    a.add(prog(4, 4.0, length=3))  # same cell as 1 and 3: the worst unprotected
    ids = sorted(p.id for p in a.programs())
    assert ids == [1, 2, 3]


def test_population_may_exceed_cap_when_everything_is_protected():
    s = settings(population_size=1, feature_bins=10)
    a = Archive(s)
    a.add(prog(1, 1.0, length=0))
    a.add(prog(2, 2.0, length=100))
    assert a.island_sizes() == (2,)


def test_evicted_migrant_stays_on_its_other_island():
    s = SelectionConfig(
        num_islands=2, migration_interval=2, migration_rate=1.0, population_size=2,
        feature_dimensions=(),  # a single cell, held by the island's best
    )
    a = Archive(s)
    a.add(prog(1, 5.0, island=0))
    a.add(prog(2, 9.0, island=1))  # migration: 1 -> island 1, 2 -> island 0
    assert a.island_sizes() == (2, 2)
    a.add(prog(3, 7.0, island=1))  # island 1 is over its cap: migrant 1 is its worst
    assert [p.id for p in a.programs(1)] == [2, 3]
    assert [p.id for p in a.programs(0)] == [1, 2]
    assert 1 in a and len(a) == 3


# ----- determinism ---------------------------------------------------------------------------


def run_sequence(seed: int) -> list[tuple]:
    s = SelectionConfig(num_islands=3, migration_interval=7, population_size=15, feature_bins=4)
    a = Archive(s)
    data_rng = random.Random(99)
    rng = random.Random(seed)
    trace = []
    for pid in range(120):
        island = pid % 3
        score = round(data_rng.uniform(0, 10), 1)
        a.add(prog(pid, score, island=island, length=data_rng.randint(1, 400)))
        sel = a.sample(rng, island)
        trace.append((sel.parent.id, tuple(p.id for p in sel.inspirations), sel.mode))
    trace.append(a.island_sizes())
    trace.append(a.migrations())
    return trace


def test_same_calls_and_seed_give_the_same_selections():
    assert run_sequence(1) == run_sequence(1)
    assert run_sequence(1) != run_sequence(2)


def test_replay_then_sample_matches_the_original_archive():
    s = SelectionConfig(num_islands=2, migration_interval=5, population_size=8)
    original = Archive(s)
    stored = []
    for pid in range(40):
        p = prog(pid, float((pid * 37) % 11), island=pid % 2, length=5 + (pid * 13) % 90)
        stored.append(p)
        original.add(p)
    replayed = Archive(s)
    for p in stored:
        replayed.add(p)
    r1, r2 = random.Random(5), random.Random(5)
    for i in range(50):
        x, y = original.sample(r1, i % 2), replayed.sample(r2, i % 2)
        assert (x.parent.id, [p.id for p in x.inspirations], x.mode) == (
            y.parent.id, [p.id for p in y.inspirations], y.mode
        )
    assert original.island_sizes() == replayed.island_sizes()


def test_sampling_does_not_touch_the_global_random_state():
    a = filled(settings())
    random.seed(123)
    expected = random.random()
    random.seed(123)
    for _ in range(20):
        a.sample(random.Random(0), 0)
    assert random.random() == expected
