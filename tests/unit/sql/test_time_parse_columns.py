"""TIME_PARSE over a whole column gives exactly what it gives value by value (the fast path is only a shortcut)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from overlord.sql.functions import parse_timestamp, parse_timestamps


@pytest.mark.parametrize(
    "values",
    [
        ["2015-09-12T00:46:58.771Z", None, "2015-09-12T23:59:59Z", "1999-01-01T00:00:00.5Z"],
        ["2015-09-12T00:46:58.771Z", "2015-09-12 01:00:00", "2015-09-12T01:00:00+02:00", "nope", "2015-09-12"],
        [None, None],
    ],
)
def test_column_parse_equals_row_parse(values: list[str | None]) -> None:
    got = parse_timestamps(pa.array(values, pa.string())).to_pylist()
    assert got == [parse_timestamp(v) for v in values]
