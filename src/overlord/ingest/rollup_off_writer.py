"""Segment writer for rollup-off, dynamically partitioned ingestion.

Without rollup and with ``dynamic`` partitioning nothing needs the whole time chunk: rows go
into the current partition of their time chunk until it holds ``maxRowsPerSegment`` rows, then
the next partition starts. Each partition is written through an open ``ParquetWriter`` as rows
arrive, so memory stays bounded by a few row groups whatever the input size.

Row order: partitions are filled in arrival order (partition 0 holds the first rows read), and
rows are sorted by ``__time`` (stably) within each written row group. A segment file is globally
sorted by ``__time`` whenever its input arrived in time order.

Schema: a partition's rows are written with the column types their chunk produced, every column
discovered so far present (absent or all-null columns as nulls of the current type). While the
schema does not change one file is written; when it changes (a new column, a widened type) the
partition continues in a new piece. ``finish`` renames a single piece whose schema is already the
final one into place and otherwise rewrites the pieces row group by row group through
``convert`` (the same unification the buffered path applies), so the result matches it.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from overlord.ingest import segment_files
from overlord.ingest.rows import TIME

ROW_GROUP_ROWS = 1 << 18  # rows buffered per partition before a row group is written
PENDING_BYTES = 128 << 20  # all partitions' buffered rows together
MAX_OPEN_WRITERS = 32  # open files; past this the least recently used writer is closed
TIME_TYPE = pa.timestamp("ms", tz="UTC")


@dataclass
class _Piece:
    path: Path
    schema: pa.Schema
    rows: int = 0


@dataclass
class Partition:
    pieces: list[_Piece] = field(default_factory=list)
    rows: int = 0  # rows assigned, buffered or written


class _Bucket:
    def __init__(self) -> None:
        self.parts: list[Partition] = []
        self.pending: list[pa.Table] = []
        self.pending_rows = 0
        self.pending_bytes = 0
        self.writer: pq.ParquetWriter | None = None
        self.non_null: set[str] = set()


def sorted_by_time(table: pa.Table) -> pa.Table:
    """Rows stably sorted by ``__time`` (int64 millis).

    NumPy's stable sort merges the sorted runs input files come in (Arrow's sort does not exploit
    them); both keep equal times in input order, so the result is the same.
    """
    times = table.column(TIME).to_numpy()
    if len(times) > 1 and not (times[1:] >= times[:-1]).all():
        table = table.take(pa.array(np.argsort(times, kind="stable")))
    return table


class ChunkStreams:
    """Per time chunk: partitions being filled and written while rows stream in."""

    def __init__(self, tmp_dir: Path, max_rows: int) -> None:
        self.tmp_dir = tmp_dir
        self.max_rows = max_rows
        self.buckets: dict[int, _Bucket] = {}
        self.open: OrderedDict[int, None] = OrderedDict()
        self.pending_bytes = 0
        self.files = 0

    def add(self, b: int, table: pa.Table, dims: list[str]) -> None:
        """Append typed rows (``__time`` int64) of time chunk ``b``; ``dims`` tells empty-column tracking."""
        bk = self.buckets.get(b)
        if bk is None:
            bk = self.buckets[b] = _Bucket()
        n = table.num_rows
        for d in dims:
            if d not in bk.non_null and d in table.column_names and table.column(d).null_count < n:
                bk.non_null.add(d)
        while table.num_rows:
            if not bk.parts or bk.parts[-1].rows >= self.max_rows:
                bk.parts.append(Partition())
            part = bk.parts[-1]
            take = min(self.max_rows - part.rows, table.num_rows)
            head = table if take == table.num_rows else table.slice(0, take)
            table = table.slice(take)
            part.rows += take
            bk.pending.append(head)
            bk.pending_rows += take
            nbytes = head.nbytes
            bk.pending_bytes += nbytes
            self.pending_bytes += nbytes
            if part.rows >= self.max_rows:
                self._flush(b, bk)
                self._close(b, bk)
            elif bk.pending_rows >= ROW_GROUP_ROWS:
                self._flush(b, bk)
        if self.pending_bytes > PENDING_BYTES:
            for key, other in sorted(self.buckets.items(), key=lambda kv: -kv[1].pending_bytes):
                if self.pending_bytes <= PENDING_BYTES // 2:
                    break
                self._flush(key, other)

    def _flush(self, b: int, bk: _Bucket) -> None:
        """Write the bucket's buffered rows: one row group per run of tables with one schema."""
        pending, bk.pending = bk.pending, []
        self.pending_bytes -= bk.pending_bytes
        bk.pending_rows = bk.pending_bytes = 0
        i = 0
        while i < len(pending):
            j = i + 1
            while j < len(pending) and pending[j].schema.equals(pending[i].schema):
                j += 1
            group = pending[i:j]
            i = j
            table = group[0] if len(group) == 1 else pa.concat_tables(group)  # chunked: no copy
            table = sorted_by_time(table)
            table = table.set_column(0, TIME, table.column(TIME).cast(TIME_TYPE))
            piece = bk.parts[-1].pieces[-1] if bk.writer is not None else None
            if piece is None or not piece.schema.equals(table.schema):
                self._close(b, bk)
                path = self.tmp_dir / f"{b}-{len(bk.parts) - 1}-{self.files}.parquet"
                self.files += 1
                self.tmp_dir.mkdir(parents=True, exist_ok=True)
                piece = _Piece(path, table.schema)
                bk.parts[-1].pieces.append(piece)
                options = segment_files.parquet_options(table.schema, table, max(table.num_rows, ROW_GROUP_ROWS))
                bk.writer = pq.ParquetWriter(path, table.schema, **options)
                self.open[b] = None
                while len(self.open) > MAX_OPEN_WRITERS:
                    old = next(iter(self.open))
                    self._close(old, self.buckets[old])
            self.open.move_to_end(b)
            assert bk.writer is not None, "the writer was opened above"
            bk.writer.write_table(table, row_group_size=max(1, table.num_rows))
            piece.rows += table.num_rows

    def _close(self, b: int, bk: _Bucket) -> None:
        if bk.writer is not None:
            bk.writer.close()
            bk.writer = None
            self.open.pop(b, None)

    def flush_all(self) -> None:
        for b, bk in self.buckets.items():
            self._flush(b, bk)
            self._close(b, bk)

    def close(self) -> None:
        """Close open files without finishing (on failure)."""
        for b, bk in self.buckets.items():
            try:
                self._close(b, bk)
            except Exception:  # best effort on the failure path
                bk.writer = None

    def non_null(self, b: int) -> set[str]:
        return self.buckets[b].non_null

    def partitions(self, b: int) -> list[Partition]:
        return self.buckets[b].parts


def finish_partition(part: Partition, target: Path, convert: Callable[[pa.Table], pa.Table]) -> int:
    """Move or rewrite a partition's pieces into ``target`` (atomically); return its size."""
    target.parent.mkdir(parents=True, exist_ok=True)
    final = convert(part.pieces[0].schema.empty_table()).schema
    if len(part.pieces) == 1 and part.pieces[0].schema.equals(final):
        os.replace(part.pieces[0].path, target)
        return target.stat().st_size
    tmp = target.with_name(target.name + ".tmp")
    writer: pq.ParquetWriter | None = None
    try:
        for piece in part.pieces:
            pf = pq.ParquetFile(piece.path)
            for i in range(pf.num_row_groups):
                table = convert(pf.read_row_group(i))
                if writer is None:  # opened on the first rows, which decide the dictionaries
                    options = segment_files.parquet_options(final, table, max(table.num_rows, ROW_GROUP_ROWS))
                    writer = pq.ParquetWriter(tmp, final, **options)
                writer.write_table(table, row_group_size=max(1, table.num_rows))
            pf.close()
            piece.path.unlink()
        if writer is None:
            writer = pq.ParquetWriter(tmp, final, **segment_files.parquet_options(final))
    finally:
        if writer is not None:
            writer.close()
    os.replace(tmp, target)
    return target.stat().st_size


def normalize(table: pa.Table, kinds: dict[str, str], arrow_types: dict[str, pa.DataType]) -> pa.Table:
    """Every discovered column present, in discovery order; all-null columns get the current type.

    Non-null columns keep the type their chunk produced, so the final conversion sees the same
    values the buffered path would.
    """
    n = table.num_rows
    cols: dict[str, pa.Array | pa.ChunkedArray] = {TIME: table.column(TIME)}
    names = set(table.column_names)
    for name, kind in kinds.items():
        want = arrow_types[kind]
        if name not in names:
            cols[name] = pa.nulls(n, want)
            continue
        col = table.column(name)
        if col.type != want and col.null_count == n:
            col = pa.nulls(n, want)
        cols[name] = col
    for name in table.column_names:
        if name not in cols:
            cols[name] = table.column(name)
    return pa.table(cols)
