"""Rollup's group ids: the linear-time ranking must give exactly the lexicographic (sorted) ids."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from overlord.ingest import rollup
from overlord.ingest.spec import MetricSpec


def _reference(table: pa.Table, keys: list[str]) -> tuple[np.ndarray, int]:
    """Rank of each row's (time, dim codes...) tuple among the distinct tuples, by sorting."""
    codes = []
    for name in keys:
        arr = table.column(name).combine_chunks()
        if pa.types.is_string(arr.type):
            codes.append(arr.dictionary_encode(null_encoding="encode").indices.to_numpy().astype(np.int64))
        else:
            codes.append(np.unique(arr.to_numpy(), return_inverse=True)[1].reshape(-1))
    _, inv = np.unique(np.stack(codes, axis=1), axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    return inv, int(inv.max()) + 1 if len(inv) else 0


@pytest.mark.parametrize("ahead", [False, True], ids=["inline", "coded-ahead"])
@pytest.mark.parametrize("seed", range(40))
def test_group_ids_match_sorted_ranks(seed: int, ahead: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Also with the columns coded on worker threads ahead of the ranking (large tables do that)."""
    monkeypatch.setattr(rollup, "CODE_AHEAD_ROWS", 0 if ahead else 1 << 62)
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 3000))
    cols: dict[str, pa.Array] = {"__time": pa.array(rng.integers(0, int(rng.integers(1, 30)), n) * 3_600_000)}
    for j in range(int(rng.integers(0, 5))):
        kind = j % 4 if seed % 2 else int(rng.integers(0, 4))
        if kind == 0:  # small-range longs: ranked by a presence table
            cols[f"d{j}"] = pa.array(rng.integers(-5, int(rng.integers(1, 3000)), n))
        elif kind == 1:
            values = rng.integers(0, int(rng.integers(1, 80)), n)
            cols[f"d{j}"] = pa.array([None if v == 0 else f"s{v}" for v in values])
        elif kind == 2:
            cols[f"d{j}"] = pa.array(rng.integers(0, 10, n) / 3.0)
        else:  # wide-range longs: ranked by sorting
            cols[f"d{j}"] = pa.array(rng.integers(-(2**40), 2**40, n))
    table = pa.table(cols)
    gid, g = rollup.group_ids(table, list(cols))
    want, want_g = _reference(table, list(cols))
    assert g == want_g
    assert np.array_equal(gid, want)


def test_group_ids_stop_early_when_every_row_is_distinct() -> None:
    table = pa.table({"__time": pa.array([3, 1, 2]), "d": pa.array(["a", "a", "a"])})
    gid, g = rollup.group_ids(table, ["__time", "d"])
    assert g == 3
    assert gid.tolist() == [2, 0, 1]


def _random_rollup_input(seed: int) -> pa.Table:
    """Raw rows (count 1) that roll up a lot, a little or not at all, with the awkward values:
    nulls next to empty strings, -0.0 next to 0.0, NaNs."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 2000))
    spread = int(rng.choice([1, 3, 50, 10**9]))
    cols: dict[str, pa.Array] = {"__time": pa.array(rng.integers(0, 4, n) * 3_600_000)}
    for j in range(int(rng.integers(1, 5))):
        v = rng.integers(0, spread, n)
        kind = int(rng.integers(0, 3))
        if kind == 0:
            cols[f"d{j}"] = pa.array([None if x % 7 == 1 else ("" if x % 7 == 2 else f"s{x}") for x in v])
        elif kind == 1:
            cols[f"d{j}"] = pa.array(v - spread // 2)
        else:
            f = (v % 5).astype(np.float64)
            f[f == 3] = -0.0
            f[f == 4] = np.nan
            cols[f"d{j}"] = pa.array(f)
    cols["count"] = pa.array(np.ones(n, dtype=np.int64))
    cols["added"] = pa.array(rng.integers(0, 100, n))
    return pa.table(cols)


@pytest.mark.parametrize("seed", range(40))
def test_rollup_with_the_hash_check_matches_group_ids_alone(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The distinct-rows check may only skip work: output rows and their order are the same."""
    table = _random_rollup_input(seed)
    dims = [c for c in table.column_names if c.startswith("d")]
    metrics = (MetricSpec("count", "count", None), MetricSpec("longSum", "added", "added"))
    monkeypatch.setattr(rollup, "UNIQUE_CHECK_ROWS", 1 << 62)
    want = rollup.rollup(table, dims, metrics)
    monkeypatch.setattr(rollup, "UNIQUE_CHECK_ROWS", 0)
    got = rollup.rollup(table, dims, metrics)
    assert got.schema == want.schema
    assert repr(got.to_pylist()) == repr(want.to_pylist())  # repr: NaN equals NaN, -0.0 differs from 0.0
    _, g = rollup.group_ids(table, ["__time", *dims])
    if rollup.rows_distinct(table, ["__time", *dims]):
        assert g == table.num_rows


def test_rows_distinct_proves_only_what_holds() -> None:
    t = pa.table(
        {
            "__time": pa.array([1, 1, 1, 1]),
            "s": pa.array(["a", "", None, "a"]),
            "x": pa.array([0.0, 0.0, 0.0, -0.0]),
            "n": pa.array([5, 5, 5, 6]),
        }
    )
    assert rollup.rows_distinct(t, ["__time", "s", "n"])
    assert not rollup.rows_distinct(t, ["__time", "s"])  # rows 0 and 3 share (1, "a")
    # -0.0 and 0.0 group together in group_ids; floats are not hashed, so no proof from "x"
    assert not rollup.rows_distinct(t, ["__time", "s", "x"])
    assert rollup.group_ids(t, ["__time", "s", "x"])[1] == 3
    assert not rollup.rows_distinct(t, ["x"])
    assert rollup.rows_distinct(t.slice(0, 1), ["__time"])
