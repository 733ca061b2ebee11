"""Segment files read by DuckDB's parallel scan through deep storage: threads never see each other's bytes."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from overlord.sql.datasource_tables import DeepStorageFiles, SharedSegmentFile
from overlord.storage.deep_storage import FsDeepStorage


@pytest.mark.parametrize("positional", [True, False])
def test_each_thread_keeps_its_own_position(positional: bool) -> None:
    data = bytes(range(256)) * 4
    raw: object = pa.BufferReader(data) if positional else io.BytesIO(data)
    f = SharedSegmentFile(raw)  # type: ignore[arg-type]
    other_done = threading.Event()

    def other() -> None:
        f.seek(100)
        other_done.set()

    f.seek(10)
    t = threading.Thread(target=other)
    t.start()
    other_done.wait(5)
    t.join()
    assert f.read(4) == data[10:14]  # the other thread's seek did not move this one
    assert f.tell() == 14 and f.seek(-2, 2) == len(data) - 2 and f.read() == data[-2:]


def test_duckdb_parallel_scan_through_deep_storage_reads_exact_values(tmp_path: Path) -> None:
    rows = 200_000
    table = pa.table({"s": [f"value-{i:07d}" for i in range(rows)], "n": pa.array(range(rows), pa.int64())})
    local = tmp_path / "seg.parquet"
    pq.write_table(table, local, row_group_size=2_000)  # 100 row groups: scanned by several threads
    storage = FsDeepStorage.from_uri(f"file://{tmp_path / 'deep'}")
    spec = storage.write("ds/seg.parquet", str(local))
    files = DeepStorageFiles(storage)
    files._specs["seg"] = spec
    db = duckdb.connect()
    db.execute("SET threads = 4")
    db.register_filesystem(files)
    for _ in range(3):
        got = db.execute(
            "SELECT count(*), sum(n), sum(length(s)), count(DISTINCT s) FROM read_parquet('overlord://segments/seg.parquet')"
        ).fetchone()
        assert got == (rows, rows * (rows - 1) // 2, rows * 13, rows)
