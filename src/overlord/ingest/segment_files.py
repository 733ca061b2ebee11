"""Segment descriptors and the Parquet segment writer.

Layout under ``out_dir``: ``{dataSource}/{start}_{end}/{version}/{partitionNum}/index.parquet``
where start/end are ISO-8601 UTC instants with the colons removed
(``2015-09-12T000000.000Z_2015-09-13T000000.000Z``) and ``:`` / ``/`` are removed from / replaced
in the version, so paths are safe on every filesystem and sort by time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from overlord.isotime import Interval, format_ms

ETERNITY = Interval(-(2**62), 2**62)


def interval_text(iv: Interval) -> str:
    """Druid's ``start/end`` text; eternity for the ``all`` granularity."""
    if iv == ETERNITY:
        return "-146136543-09-08T08:23:32.096Z/146140482-04-24T15:36:27.903Z"
    return str(iv)


def interval_dir(iv: Interval) -> str:
    if iv == ETERNITY:
        return "eternity"
    return f"{format_ms(iv.start)}_{format_ms(iv.end)}".replace(":", "")


def safe_version(version: str) -> str:
    return version.replace(":", "").replace("/", "_").replace("\\", "_")


def segment_relpath(data_source: str, iv: Interval, version: str, partition_num: int) -> str:
    return f"{data_source}/{interval_dir(iv)}/{safe_version(version)}/{partition_num}/index.parquet"


@dataclass(frozen=True)
class SegmentDescriptor:
    """One written segment file and the metadata a publisher records for it."""

    data_source: str
    interval: Interval
    version: str
    partition_num: int
    path: str  # relative to out_dir
    size: int
    num_rows: int
    dimensions: tuple[str, ...]
    metrics: tuple[str, ...]
    shard_spec: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def identifier(self) -> str:
        iv = interval_text(self.interval).replace("/", "_")
        suffix = f"_{self.partition_num}" if self.partition_num else ""
        return f"{self.data_source}_{iv}_{self.version}{suffix}"

    def to_dict(self, *, load_spec_root: str | None = None) -> dict[str, Any]:
        """Druid's DataSegment JSON (loadSpec points at the file under ``load_spec_root``)."""
        path = os.path.join(load_spec_root, self.path) if load_spec_root else self.path
        return {
            "dataSource": self.data_source,
            "interval": interval_text(self.interval),
            "version": self.version,
            "loadSpec": {"type": "local", "path": path},
            "dimensions": ",".join(self.dimensions),
            "metrics": ",".join(self.metrics),
            "shardSpec": dict(self.shard_spec),
            "binaryVersion": 9,
            "size": self.size,
            "identifier": self.identifier,
            "numRows": self.num_rows,
        }

    def with_shard_spec(self, shard_spec: dict[str, Any]) -> SegmentDescriptor:
        return SegmentDescriptor(
            self.data_source,
            self.interval,
            self.version,
            self.partition_num,
            self.path,
            self.size,
            self.num_rows,
            self.dimensions,
            self.metrics,
            shard_spec,
        )


def finalize_shard_specs(segments: list[SegmentDescriptor]) -> list[SegmentDescriptor]:
    """After merging sub-task outputs: numbered specs get ``partitions`` = segments per interval."""
    per: dict[tuple[str, Interval], int] = {}
    for s in segments:
        if s.shard_spec.get("type") == "numbered":
            per[(s.data_source, s.interval)] = per.get((s.data_source, s.interval), 0) + 1
    out = []
    for s in segments:
        if s.shard_spec.get("type") == "numbered":
            spec = dict(s.shard_spec, partitions=per[(s.data_source, s.interval)])
            s = s.with_shard_spec(spec)
        out.append(s)
    return out


DICT_SAMPLE_ROWS = 8192  # rows of a table that decide which columns skip Parquet dictionaries
DICT_MIN_SAMPLE = 1024  # fewer rows decide nothing: every column keeps its dictionary
DICT_DISTINCT = 0.9  # a sample at least this distinct marks a column as (nearly) unique
DICT_PAGE_LIMIT = 1 << 20  # the writer's dictionary page limit (pyarrow's default), past which it falls back


def _dictionary_wasted(col: pa.ChunkedArray, group_rows: int) -> bool:
    """Whether the writer would give up on this column's dictionary in a row group of ``group_rows``.

    The writer hashes every value into a dictionary and falls back to plain pages once the
    dictionary page passes ``DICT_PAGE_LIMIT``: for nearly unique columns (millisecond times,
    free text) that hashing is wasted, ~17 % of the writer's time on wikiticker rows. A sample
    from the table's start that is nearly all distinct, with its values' bytes extrapolated to a
    row group past the limit, marks such a column; every other column keeps its dictionary.
    """
    sample = col.slice(0, DICT_SAMPLE_ROWS)
    n = len(sample)
    if n < DICT_MIN_SAMPLE or sample.null_count:
        return False
    distinct = pc.count_distinct(sample).as_py() / n
    if distinct < DICT_DISTINCT:
        return False
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        width = sample.nbytes / n  # offsets and characters: about a dictionary entry's bytes
    elif pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_timestamp(col.type):
        width = col.type.bit_width / 8
    else:
        return False
    return distinct * group_rows * width > DICT_PAGE_LIMIT


def parquet_options(schema: pa.Schema, sample: pa.Table | None = None, group_rows: int = 0) -> dict[str, Any]:
    """Writer settings of every segment file: snappy, dictionaries, min/max statistics.

    Statistics are kept for ``__time`` and numeric columns (row-group pruning on time and numbers)
    and left out for string columns: their min/max cost about a fifth of the writer's time and
    prune nothing on dimension values spread over every row group. Files read the same either way.
    With a ``sample`` (the first rows to be written, row groups of ``group_rows``), columns whose
    dictionary the writer would abandon are written plain from the start (``_dictionary_wasted``).
    """
    with_stats = [f.name for f in schema if not (pa.types.is_string(f.type) or pa.types.is_large_string(f.type))]
    options: dict[str, Any] = {"compression": "snappy", "write_statistics": with_stats or False}
    if sample is not None and group_rows > 0:
        plain = {name for name in schema.names if _dictionary_wasted(sample.column(name), group_rows)}
        if plain:
            options["use_dictionary"] = [name for name in schema.names if name not in plain]
    return options


WRITE_GROUP_ROWS = 1 << 20  # ``pq.write_table``'s default row group size (rows)


def write_segment(out_dir: Path, relpath: str, table: pa.Table) -> int:
    """Write atomically (temp file + rename) and return the file size in bytes."""
    target = out_dir / relpath
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    pq.write_table(table, tmp, **parquet_options(table.schema, table, min(table.num_rows, WRITE_GROUP_ROWS)))
    os.replace(tmp, target)
    return target.stat().st_size
