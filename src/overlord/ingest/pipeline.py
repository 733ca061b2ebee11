"""``run_ingestion``: read input, build rows, roll up, and write Parquet segments per time chunk.

Input is streamed chunk by chunk (a background thread reads and parses the next chunk while
this one is processed). Typed rows are kept per time chunk in Arrow form and spilled to
temporary Parquet files past ``spill_bytes``; each time chunk is rolled up and written at the
end, so rollup is exact across the whole input. Nothing is published here: the caller records
the returned descriptors. On failure every file this run wrote is removed.
"""

from __future__ import annotations

import logging
import math
import queue
import shutil
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from overlord.clock import Clock
from overlord.errors import OverlordError
from overlord.ingest import columns, rollup, rollup_off_writer, rowstats, segment_files
from overlord.ingest.arrow_pool import use_ingest_pool
from overlord.ingest.formats import RawBatch, make_parser
from overlord.ingest.rollup_off_writer import ChunkStreams
from overlord.ingest.rows import TIME, RowProcessor
from overlord.ingest.rowstats import (
    BUILD_SEGMENTS,
    DETERMINE_PARTITIONS,
    IngestionState,
    ParseExceptionHandler,
    ParseExceptionReport,
    RowMeters,
    RowStats,
)
from overlord.ingest.segment_files import ETERNITY, SegmentDescriptor
from overlord.ingest.sources import CHUNK_BYTES, InputSplit, checked_splits, iter_buffers, list_input_splits, open_split
from overlord.ingest.spec import DynamicPartitions, HashedPartitions, IndexSpec
from overlord.isotime import Interval

_LOG = logging.getLogger(__name__)
SPILL_BYTES = 384 << 20
PARSE_THREADS = 2  # chunks parsed side by side (each parse may also use Arrow's thread pool)
PARSE_AHEAD = 3  # parsed or parsing chunks kept ahead of the one being processed
STREAM_WRITES = True  # rollup off + dynamic partitions: write as rows arrive (tests turn it off to compare)


@dataclass
class Progress:
    """Live state handed to ``on_progress``: enough to answer /rowStats and live reports."""

    state: IngestionState = IngestionState.NOT_STARTED
    meters: dict[str, RowMeters] = field(default_factory=dict)
    events: dict[str, list[ParseExceptionReport]] | None = None
    segments_written: int = 0

    def row_stats(self) -> dict[str, Any]:
        return rowstats.row_stats_payload(self.meters)

    def unparseable_events(self) -> dict[str, Any]:
        return rowstats.unparseable_events_payload(self.events)

    def live_report(self, task_id: str, error_msg: str | None = None) -> dict[str, Any]:
        return rowstats.live_report(task_id, self.state, self.meters, self.events, error_msg)

    def totals(self) -> dict[str, RowStats]:
        return {p: self.meters[p].totals if p in self.meters else RowStats() for p in rowstats.PHASES}


@dataclass(frozen=True)
class IngestionResult:
    segments: list[SegmentDescriptor]
    row_stats: dict[str, RowStats]
    unparseable_events: dict[str, list[ParseExceptionReport]] | None
    state: IngestionState = IngestionState.COMPLETED

    def completion_report(
        self, task_id: str, task_context: dict[str, Any] | None = None, error_msg: str | None = None
    ) -> dict[str, Any]:
        return rowstats.completion_report(
            task_id, self.state, self.row_stats, self.unparseable_events, error_msg, task_context
        )


_END = object()


def _prefetch(it: Iterator[Any], depth: int) -> Iterator[Any]:
    """Run ``it`` on a worker thread up to ``depth`` items ahead of the caller."""
    q: queue.Queue[Any] = queue.Queue(depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def feed() -> None:
        try:
            for item in it:
                if not put((item, None)):
                    return
            put((_END, None))
        except BaseException as exc:  # handed to the caller
            put((_END, exc))

    worker = threading.Thread(target=feed, name="ingest-read", daemon=True)
    worker.start()
    try:
        while True:
            item, exc = q.get()
            if exc is not None:
                raise exc
            if item is _END:
                return
            yield item
    finally:
        stop.set()
        worker.join()
        close = getattr(it, "close", None)
        if close is not None:
            close()


def _chunks(
    spec: IndexSpec, splits: list[InputSplit], chunk_bytes: int, log: logging.Logger
) -> Iterator[tuple[Any, pa.Buffer, bool]]:
    for split in splits:
        log.info("Reading input %s", split.name)
        parser = make_parser(spec.io_config.input_format)
        with open_split(split) as stream:
            first = True
            for chunk in iter_buffers(stream, chunk_bytes):
                yield parser, chunk, first
                first = False


def _batches(spec: IndexSpec, splits: list[InputSplit], chunk_bytes: int, log: logging.Logger) -> Iterator[RawBatch]:
    """Parsed chunks in input order: one thread reads, ``PARSE_THREADS`` parse chunks side by side.

    A file's first chunk is parsed before any later one is submitted (CSV/TSV headers set the
    parser's columns); after that a parser is stateless, so chunks parse in parallel. Each batch
    is handed on as soon as it is parsed (a slow input never holds back what was read already).
    """
    with ThreadPoolExecutor(PARSE_THREADS, thread_name_prefix="ingest-parse") as pool:

        def submit() -> Iterator[Future[RawBatch]]:
            for parser, chunk, first in _chunks(spec, splits, chunk_bytes, log):
                fut = pool.submit(parser.parse, chunk, first)
                if first:
                    wait([fut])
                yield fut

        for fut in _prefetch(submit(), PARSE_AHEAD):
            yield fut.result()


class _Run:
    def __init__(
        self,
        spec: IndexSpec,
        out_dir: Path,
        version: str,
        clock: Clock,
        on_progress: Callable[[Progress], None] | None,
        log: logging.Logger,
        partition_offset: int,
        store_empty_columns: bool,
        chunk_bytes: int,
        spill_bytes: int,
    ) -> None:
        self.spec, self.out_dir, self.version, self.clock = spec, out_dir, version, clock
        self.on_progress, self.log, self.offset = on_progress, log, partition_offset
        self.store_empty, self.chunk_bytes, self.spill_bytes = store_empty_columns, chunk_bytes, spill_bytes
        saving = spec.tuning.max_saved_parse_exceptions > 0
        self.progress = Progress(events={DETERMINE_PARTITIONS: [], BUILD_SEGMENTS: []} if saving else None)
        self.written: list[Path] = []
        self.tmp_dir = out_dir / f".tmp-ingest-{segment_files.safe_version(version)}-{id(self)}"
        self.spills: dict[int, list[Path]] = {}
        self.memory: dict[int, list[pa.Table]] = {}
        self.mem_bytes = 0
        self.streams: ChunkStreams | None = None

    def _state(self, state: IngestionState) -> None:
        self.progress.state = state
        self.log.info("Ingestion state: %s", state.value, extra={"ingestionState": state.value})
        self._notify()

    def _notify(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self.progress)

    def _phase(self, phase: str) -> RowProcessor:
        meters = RowMeters(self.clock)
        self.progress.meters[phase] = meters
        t = self.spec.tuning
        handler = ParseExceptionHandler(
            meters, self.clock, t.max_parse_exceptions, t.max_saved_parse_exceptions, t.log_parse_exceptions, self.log
        )
        if self.progress.events is not None:
            handler.saved = self.progress.events[phase]
        return RowProcessor(self.spec, meters, handler)

    def _bucket_of(self, ms: np.ndarray) -> np.ndarray:
        gran = self.spec.granularity_spec.segment
        if gran.is_all:
            return np.zeros(len(ms), dtype=np.int64)
        return gran.truncate_array(ms)

    def bucket_interval(self, start: int) -> Interval:
        gran = self.spec.granularity_spec.segment
        if gran.is_all:
            ivs = self.spec.intervals
            return Interval(min(i.start for i in ivs), max(i.end for i in ivs)) if ivs else ETERNITY
        return gran.bucket(start)

    def _split_buckets(self, table: pa.Table) -> Iterator[tuple[int, pa.Table]]:
        ms = table.column(TIME).to_numpy()
        buckets = self._bucket_of(ms)
        first = int(buckets[0])
        if (buckets == first).all():
            yield first, table
            return
        for b in np.unique(buckets):
            yield int(b), table.filter(pa.array(buckets == b))

    # ---- DETERMINE_PARTITIONS ---------------------------------------------------------------

    def determine(self, splits: list[InputSplit]) -> dict[int, int]:
        """First pass for hashed partitioning without numShards: shards per time chunk."""
        proc = self._phase(DETERMINE_PARTITIONS)
        self._state(IngestionState.DETERMINE_PARTITIONS)
        parts = self.spec.tuning.partitions
        if not isinstance(parts, HashedPartitions) or parts.num_shards is not None:
            return {}
        distinct: dict[int, list[np.ndarray]] = {}
        for batch in _batches(self.spec, splits, self.chunk_bytes, self.log):
            typed = proc.process(batch)
            self._notify()
            if typed is None:
                continue
            for b, t in self._split_buckets(typed):
                keys = [TIME, *[d for d in proc.dimension_names if d in t.column_names]]
                h = rollup.row_hashes(t, keys)
                distinct.setdefault(b, []).append(np.unique(h) if self.spec.granularity_spec.rollup else h)
        target = parts.target_rows_per_segment or 5_000_000
        out = {}
        for b, hs in distinct.items():
            cat = np.concatenate(hs)
            rows = len(np.unique(cat)) if self.spec.granularity_spec.rollup else len(cat)
            out[b] = max(1, math.ceil(rows / target))
        self.log.info(
            "Determined shards per interval: %s", {str(self.bucket_interval(b)): n for b, n in sorted(out.items())}
        )
        return out

    # ---- BUILD_SEGMENTS ---------------------------------------------------------------------

    def build(self, splits: list[InputSplit], shards: dict[int, int]) -> list[SegmentDescriptor]:
        proc = self._phase(BUILD_SEGMENTS)
        self._state(IngestionState.BUILD_SEGMENTS)
        if (
            STREAM_WRITES
            and not self.spec.granularity_spec.rollup
            and not isinstance(self.spec.tuning.partitions, HashedPartitions)
        ):
            return self._build_streaming(proc, splits)
        for batch in _batches(self.spec, splits, self.chunk_bytes, self.log):
            typed = proc.process(batch)
            self._notify()
            if typed is None:
                continue
            for b, t in self._split_buckets(typed):
                self.memory.setdefault(b, []).append(t)
                self.mem_bytes += t.nbytes
            if self.mem_bytes > self.spill_bytes:
                self._spill(proc)
        kinds = _final_kinds(proc)
        out: list[SegmentDescriptor] = []
        for b in sorted(set(self.memory) | set(self.spills)):
            out.extend(self._finish_bucket(b, kinds, shards.get(b)))
            self.progress.segments_written = len(out)
            self._notify()
        return out

    def _build_streaming(self, proc: RowProcessor, splits: list[InputSplit]) -> list[SegmentDescriptor]:
        """Rollup off, dynamic partitions: write partitions as rows arrive (see ``rollup_off_writer``)."""
        partitions = self.spec.tuning.partitions
        assert isinstance(partitions, DynamicPartitions), "the rollup-off writer serves dynamic partitioning only"
        streams = ChunkStreams(self.tmp_dir, partitions.max_rows_per_segment)
        self.streams = streams
        for batch in _batches(self.spec, splits, self.chunk_bytes, self.log):
            typed = proc.process(batch)
            self._notify()
            if typed is None:
                continue
            kinds = _final_kinds(proc)
            dims = list(kinds)
            for b, t in self._split_buckets(typed):
                streams.add(b, rollup_off_writer.normalize(t, kinds, columns.ARROW_TYPES), dims)
        streams.flush_all()
        kinds = _final_kinds(proc)
        metrics = tuple(m.name for m in self.spec.metrics)
        out: list[SegmentDescriptor] = []
        for b in sorted(streams.buckets):
            dims = list(kinds)
            if not self.store_empty:
                dims = [d for d in dims if d in streams.non_null(b)]
            keep = {d: kinds[d] for d in dims}

            def convert(table: pa.Table, keep: dict[str, str] = keep) -> pa.Table:
                return self._unify(table, keep)

            iv = self.bucket_interval(b)
            parts = streams.partitions(b)
            for i, part in enumerate(parts):
                pn = self.offset + i
                rel = segment_files.segment_relpath(self.spec.data_source, iv, self.version, pn)
                self.written.append(self.out_dir / rel)
                size = rollup_off_writer.finish_partition(part, self.out_dir / rel, convert)
                self.log.info("Wrote segment %s (%d rows, %d bytes)", rel, part.rows, size)
                spec = {"type": "numbered", "partitionNum": pn, "partitions": len(parts) if self.offset == 0 else 0}
                out.append(
                    SegmentDescriptor(
                        self.spec.data_source, iv, self.version, pn, rel, size, part.rows, tuple(dims), metrics, spec
                    )
                )
            self.progress.segments_written = len(out)
            self._notify()
        return out

    def _spill(self, proc: RowProcessor) -> None:
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        for b, tables in self.memory.items():
            table = _concat(tables)
            if self.spec.granularity_spec.rollup:
                table = rollup.rollup(table, [c for c in table.column_names if c in proc.discovered], self.spec.metrics)
            path = self.tmp_dir / f"{b}-{len(self.spills.get(b, []))}.parquet"
            pq.write_table(table, path, compression="none", write_statistics=False)  # read back whole
            self.spills.setdefault(b, []).append(path)
        self.log.info("Spilled %d bytes of rows to disk", self.mem_bytes)
        self.memory.clear()
        self.mem_bytes = 0

    def _unify(self, table: pa.Table, kinds: dict[str, str]) -> pa.Table:
        n = table.num_rows
        cols: dict[str, pa.Array | pa.ChunkedArray] = {TIME: table.column(TIME)}
        for name, kind in kinds.items():
            if name not in table.column_names:
                cols[name] = pa.nulls(n, columns.ARROW_TYPES[kind])
                continue
            col = table.column(name)
            want = columns.ARROW_TYPES[kind]
            if col.type != want:
                col = columns.to_string(col) if want == pa.string() else col.cast(want)
            cols[name] = col
        for m in self.spec.metrics:
            cols[m.name] = table.column(m.name)
        return pa.table(cols)

    def _finish_bucket(self, b: int, kinds: dict[str, str], shards: int | None) -> list[SegmentDescriptor]:
        tables = [pq.read_table(p) for p in self.spills.pop(b, [])] + self.memory.pop(b, [])
        table = _concat([self._unify(t, kinds) for t in tables])
        dims = list(kinds)
        if self.spec.granularity_spec.rollup:
            table = rollup.rollup(table, dims, self.spec.metrics)
        table = rollup_off_writer.sorted_by_time(table)
        if not self.store_empty:
            empty = [d for d in dims if table.column(d).null_count == table.num_rows]
            table = table.drop_columns(empty)
            dims = [d for d in dims if d not in empty]
        table = table.set_column(0, TIME, table.column(TIME).cast(pa.timestamp("ms", tz="UTC")))
        iv = self.bucket_interval(b)
        parts = self.spec.tuning.partitions
        metrics = tuple(m.name for m in self.spec.metrics)
        out: list[SegmentDescriptor] = []
        if isinstance(parts, HashedPartitions):
            n = parts.num_shards or shards or 1
            pdims = list(parts.partition_dimensions) or [TIME, *dims]
            shard = rollup.shard_of(rollup.row_hashes(table, pdims), n)
            for s in range(n):
                part = table.filter(pa.array(shard == s))
                if part.num_rows == 0:
                    continue
                spec = {
                    "type": "hashed",
                    "partitionNum": self.offset + s,
                    "partitions": n,
                    "bucketId": s,
                    "numBuckets": n,
                    "partitionDimensions": list(parts.partition_dimensions),
                }
                out.append(self._write(iv, self.offset + s, part, dims, metrics, spec))
        else:
            size = parts.max_rows_per_segment
            count = max(1, math.ceil(table.num_rows / size))
            for i in range(count):
                pn = self.offset + i
                spec = {"type": "numbered", "partitionNum": pn, "partitions": count if self.offset == 0 else 0}
                out.append(self._write(iv, pn, table.slice(i * size, size), dims, metrics, spec))
        return out

    def _write(
        self,
        iv: Interval,
        pn: int,
        table: pa.Table,
        dims: list[str],
        metrics: tuple[str, ...],
        shard_spec: dict[str, Any],
    ) -> SegmentDescriptor:
        rel = segment_files.segment_relpath(self.spec.data_source, iv, self.version, pn)
        self.written.append(self.out_dir / rel)
        size = segment_files.write_segment(self.out_dir, rel, table)
        self.log.info("Wrote segment %s (%d rows, %d bytes)", rel, table.num_rows, size)
        return SegmentDescriptor(
            self.spec.data_source, iv, self.version, pn, rel, size, table.num_rows, tuple(dims), metrics, shard_spec
        )

    def cleanup(self, failed: bool) -> None:
        if self.streams is not None:
            self.streams.close()
        shutil.rmtree(self.tmp_dir, ignore_errors=True)
        if failed:
            for p in self.written:
                p.unlink(missing_ok=True)
                p.with_name(p.name + ".tmp").unlink(missing_ok=True)


def _final_kinds(proc: RowProcessor) -> dict[str, str]:
    """Discovered dimensions and their types; a dimension only ever seen null is a string."""
    return {name: (k if k != "null" else "string") for name, k in proc.discovered.items()}


def _concat(tables: list[pa.Table]) -> pa.Table:
    if len(tables) == 1:
        return tables[0]
    return pa.concat_tables(tables, promote_options="permissive")


def run_ingestion(
    spec: IndexSpec,
    *,
    out_dir: Path,
    version: str,
    clock: Clock,
    files: list[InputSplit] | list[Path] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    log: logging.Logger | None = None,
    partition_offset: int = 0,
    store_empty_columns: bool = True,
    chunk_bytes: int = CHUNK_BYTES,
    spill_bytes: int = SPILL_BYTES,
) -> IngestionResult:
    """Ingest the spec's input (or just ``files``, for a sub-task) into segments under ``out_dir``.

    ``on_progress`` sees NOT_STARTED -> DETERMINE_PARTITIONS -> BUILD_SEGMENTS -> COMPLETED and is
    called after every chunk. Raises ParseExceptionLimit (and other OverlordErrors) with
    ``exc.context["row_stats"]`` / ``["unparseable_events"]`` / ``["ingestion_state"]`` filled in.
    """
    log = log or _LOG
    use_ingest_pool()
    out_dir = Path(out_dir)
    if files is None:
        splits = list_input_splits(spec)
    else:
        splits = checked_splits(
            [f if isinstance(f, InputSplit) else InputSplit(path=Path(f)) for f in files], spec.allowed_dirs
        )
    run = _Run(
        spec, out_dir, version, clock, on_progress, log, partition_offset, store_empty_columns, chunk_bytes, spill_bytes
    )
    run._notify()
    failed = True
    try:
        shards = run.determine(splits)
        segs = run.build(splits, shards)
        failed = False
    except OverlordError as exc:
        exc.context.setdefault("row_stats", run.progress.totals())
        exc.context.setdefault("unparseable_events", run.progress.events)
        exc.context.setdefault("ingestion_state", run.progress.state)
        raise
    finally:
        run.cleanup(failed)
    run._state(IngestionState.COMPLETED)
    log.info(
        "Ingestion done: %d segments, row stats %s",
        len(segs),
        {p: s.to_dict() for p, s in run.progress.totals().items()},
    )
    return IngestionResult(segs, run.progress.totals(), run.progress.events)
