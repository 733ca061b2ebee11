"""Rollup's group ids: the linear-time ranking must give exactly the lexicographic (sorted) ids."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from overlord.ingest import rollup


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
