"""Timeline visibility: the reference's overshadow examples, partial overlap, completeness, minor versions."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from overlord.core.data_segment import DataSegment, ShardSpec
from overlord.core.timeline import VersionedIntervalTimeline, _evaluate
from overlord.isotime import Interval, parse_instant_ms

H = 3_600_000
DS = "wiki"


def iv(a: int, b: int) -> Interval:
    return Interval(a * H, b * H)


def seg(a: int, b: int, version: str, part: int = 0, partitions: int = 0) -> DataSegment:
    return DataSegment(DS, iv(a, b), version, ShardSpec.numbered(part, partitions))


def over(a: int, b: int, version: str, pid: int, root: tuple[int, int], minor: int, size: int) -> DataSegment:
    return DataSegment(DS, iv(a, b), version, ShardSpec.overwrite(pid, root[0], root[1], minor, size))


def test_reference_example_higher_major_overshadows_higher_minor() -> None:
    day = Interval(parse_instant_ms("2019-01-01"), parse_instant_ms("2019-01-02"))
    old = DataSegment(DS, day, "2018-01-01T00:00:00.000Z", ShardSpec.overwrite(32768, 0, 1, 1, 1))
    old_root = DataSegment(DS, day, "2018-01-01T00:00:00.000Z", ShardSpec.numbered(0, 1))
    new = DataSegment(DS, day, "2019-01-01T00:00:00.000Z", ShardSpec.numbered(0, 1))
    tl = VersionedIntervalTimeline([old_root, old, new])
    assert tl.visible_segments(day) == {new}
    assert tl.find_overshadowed() == {old, old_root}


def test_reference_example_same_major_higher_minor_overshadows() -> None:
    day = Interval(parse_instant_ms("2019-01-01"), parse_instant_ms("2019-01-02"))
    v = "2019-01-01T00:00:00.000Z"
    minor0 = DataSegment(DS, day, v, ShardSpec.numbered(0, 1))
    minor1 = DataSegment(DS, day, v, ShardSpec.overwrite(32768, 0, 1, 1, 1))
    tl = VersionedIntervalTimeline([minor0, minor1])
    assert tl.visible_segments(day) == {minor1}
    assert tl.find_overshadowed() == {minor0}


def test_higher_version_partial_overlap_hides_only_its_part() -> None:
    day = seg(0, 24, "v1")
    hour = seg(5, 6, "v2")
    tl = VersionedIntervalTimeline([day, hour])
    pieces = [(h.interval, h.version) for h in tl.lookup(iv(0, 24))]
    assert pieces == [(iv(0, 5), "v1"), (iv(5, 6), "v2"), (iv(6, 24), "v1")]
    assert tl.find_overshadowed() == set()
    assert tl.visible_segments(iv(5, 6)) == {hour}
    assert tl.lookup(iv(2, 3))[0].true_interval == iv(0, 24)


def test_fully_covered_by_higher_versions_is_overshadowed() -> None:
    day = seg(0, 2, "v1")
    a, b = seg(0, 1, "v2"), seg(1, 2, "v3")
    tl = VersionedIntervalTimeline([day, a, b])
    assert tl.find_overshadowed() == {day}
    assert tl.visible_segments() == {a, b}
    tl.remove(b)
    assert tl.find_overshadowed() == set()
    assert tl.visible_segments() == {a, day}


def test_incomplete_partition_set_is_invisible_and_hides_nothing() -> None:
    old = seg(0, 1, "v1", 0, 1)
    p0 = seg(0, 1, "v2", 0, 3)
    p2 = seg(0, 1, "v2", 2, 3)
    tl = VersionedIntervalTimeline([old, p0, p2])
    assert tl.visible_segments(iv(0, 1)) == {old}
    assert tl.find_overshadowed() == set()
    p1 = seg(0, 1, "v2", 1, 3)
    tl.add(p1)
    assert tl.visible_segments(iv(0, 1)) == {p0, p1, p2}
    assert tl.find_overshadowed() == {old}


def test_appended_partitions_beyond_core_do_not_affect_completeness() -> None:
    core = seg(0, 1, "v1", 0, 1)
    extra = seg(0, 1, "v1", 5, 1)
    tl = VersionedIntervalTimeline([extra])
    assert tl.visible_segments() == set()  # core partition 0 is missing
    tl.add(core)
    assert tl.visible_segments() == {core, extra}


def test_atomic_update_group_visible_only_when_complete() -> None:
    r0, r1 = seg(0, 1, "v", 0, 2), seg(0, 1, "v", 1, 2)
    o1 = over(0, 1, "v", 32768, (0, 2), 1, 2)
    tl = VersionedIntervalTimeline([r0, r1, o1])
    assert tl.visible_segments() == {r0, r1}
    o2 = over(0, 1, "v", 32769, (0, 2), 1, 2)
    tl.add(o2)
    assert tl.visible_segments() == {o1, o2}
    assert tl.find_overshadowed() == {r0, r1}


def test_overwrite_of_some_partitions_keeps_the_others() -> None:
    r0, r1, r2 = (seg(0, 1, "v", p, 3) for p in range(3))
    o = over(0, 1, "v", 32768, (0, 2), 1, 1)
    tl = VersionedIntervalTimeline([r0, r1, r2, o])
    assert tl.visible_segments() == {o, r2}
    assert tl.find_overshadowed() == {r0, r1}


def test_equal_versions_overlapping_first_added_wins() -> None:
    a, b = seg(0, 2, "v"), seg(1, 3, "v")
    tl = VersionedIntervalTimeline([a, b])
    assert [(h.interval, h.true_interval) for h in tl.lookup(iv(0, 3))] == [
        (iv(0, 2), iv(0, 2)),
        (iv(2, 3), iv(1, 3)),
    ]


def test_add_is_idempotent_and_contains() -> None:
    s = seg(0, 1, "v")
    tl = VersionedIntervalTimeline()
    assert tl.add(s) and not tl.add(s)
    assert s in tl and len(tl) == 1
    assert tl.remove(s) and not tl.remove(s)
    assert tl.lookup(iv(0, 1)) == [] and len(tl) == 0


# --- property: the timeline equals a brute-force evaluation over a grid of hours -------------------

GRID = 8


@st.composite
def publish_sequences(draw: st.DrawFn) -> list[tuple[bool, DataSegment]]:
    """Random sets of (interval, major version), each with root and overwrite partitions; random order,
    with some removals. Each version is used with one interval only, so there are no equal-version ties."""
    n_sets = draw(st.integers(1, 6))
    versions = draw(st.lists(st.integers(0, 50), min_size=n_sets, max_size=n_sets, unique=True))
    pool: list[DataSegment] = []
    for v in versions:
        a = draw(st.integers(0, GRID - 1))
        b = draw(st.integers(a + 1, GRID))
        version = f"v{v:03d}"
        core = draw(st.integers(0, 3))
        for p in draw(st.sets(st.integers(0, 4), max_size=5)):
            pool.append(seg(a, b, version, p, core))
        for minor in draw(st.sets(st.integers(1, 3), max_size=2)):
            ra = draw(st.integers(0, 2))
            rb = draw(st.integers(ra + 1, 4))
            size = draw(st.integers(1, 2))
            present = draw(st.integers(1, size))
            for k in range(present):
                pool.append(over(a, b, version, 32768 + minor * 10 + k, (ra, rb), minor, size))
    ops: list[tuple[bool, DataSegment]] = [(True, s) for s in draw(st.permutations(pool))]
    for s in draw(st.lists(st.sampled_from(pool), max_size=3)) if pool else []:
        ops.append((False, s))
    return ops


def brute_force(segments: set[DataSegment]) -> tuple[set[DataSegment], set[DataSegment], dict[int, str]]:
    sets: dict[tuple[Interval, str], list[DataSegment]] = {}
    for s in segments:
        sets.setdefault((s.interval, s.version), []).append(s)
    evaluated = {k: _evaluate_naive(v) for k, v in sets.items()}
    winner_at: dict[int, tuple[Interval, str]] = {}
    for cell in range(GRID):
        cands = [k for k, (complete, _, _) in evaluated.items() if complete and k[0].contains(iv(cell, cell + 1))]
        if cands:
            winner_at[cell] = max(cands, key=lambda k: k[1])
    visible = {s for k in winner_at.values() for s in evaluated[k][1]}
    over_set: set[DataSegment] = set()
    for k, (complete, _vis, hidden) in evaluated.items():
        if complete and k not in winner_at.values():
            over_set.update(sets[k])
        else:
            over_set.update(hidden)
    return visible, over_set, {c: k[1] for c, k in winner_at.items()}


def _evaluate_naive(segs: list[DataSegment]) -> tuple[bool, set[DataSegment], set[DataSegment]]:
    """Same rules as the module docstring, written the slow and obvious way."""

    def group(s: DataSegment) -> tuple[int, int, int]:
        r = s.shard_spec.root_range
        return (r[0], r[1], s.minor_version)

    def group_complete(g: tuple[int, int, int]) -> bool:
        members = [s for s in segs if group(s) == g]
        need = members[0].shard_spec.atomic_update_group_size if members[0].shard_spec.is_overwrite else 1
        return len(members) >= need

    def hidden(s: DataSegment) -> bool:
        g = group(s)
        return any(
            group_complete(group(o)) and group(o)[2] > g[2] and group(o)[0] <= g[0] and g[1] <= group(o)[1]
            for o in segs
        )

    hidden_set = {s for s in segs if hidden(s)}
    visible = {s for s in segs if s not in hidden_set and group_complete(group(s))}
    core = max([s.shard_spec.core_partitions for s in segs] + [0])
    for root in range(core):
        if not any(group(s)[0] <= root < group(s)[1] for s in visible):
            return False, visible, hidden_set
    return bool(visible), visible, hidden_set


@settings(max_examples=300, deadline=None)
@given(publish_sequences(), st.integers(0, GRID - 1), st.integers(1, GRID))
def test_visible_set_matches_brute_force(ops: list[tuple[bool, DataSegment]], qa: int, qlen: int) -> None:
    tl = VersionedIntervalTimeline()
    present: set[DataSegment] = set()
    for add, s in ops:
        if add:
            tl.add(s)
            present.add(s)
        else:
            tl.remove(s)
            present.discard(s)
    visible, overshadowed, winners = brute_force(present)
    assert tl.visible_segments() == visible
    assert tl.find_overshadowed() == overshadowed
    query = iv(qa, min(qa + qlen, GRID))
    cells = range(qa, min(qa + qlen, GRID))
    got = tl.lookup(query)
    for cell in cells:
        pieces = [h for h in got if h.interval.contains(iv(cell, cell + 1))]
        assert [h.version for h in pieces] == ([winners[cell]] if cell in winners else [])
    assert all(query.contains(h.interval) for h in got)


def test_evaluate_matches_naive_on_example() -> None:
    segs = [seg(0, 1, "v", 0, 2), over(0, 1, "v", 32768, (0, 1), 1, 1)]
    assert _evaluate(segs)[0] is False
    assert _evaluate_naive(segs)[0] is False
