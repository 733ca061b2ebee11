"""Turn a parsed chunk into typed, filtered, timestamped rows and count every row exactly once.

Order follows Druid: structure -> timestamp (unparseable) -> transforms -> filter and intervals
(thrownAway) -> column types (processedWithError, value nulled) -> processed. Parse exceptions
are replayed in input order so saved events and the maxParseExceptions cut-off match Druid.
"""

from __future__ import annotations

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from overlord.ingest import columns, timestamps
from overlord.ingest.filters import table_getter
from overlord.ingest.formats import RawBatch, _column, java_map
from overlord.ingest.rowstats import ParseExceptionHandler, RowMeters
from overlord.ingest.spec import IndexSpec

TIME = "__time"


class RowProcessor:
    """Stateful per phase: remembers discovered dimensions (name -> type) in first-seen order."""

    def __init__(self, spec: IndexSpec, meters: RowMeters, handler: ParseExceptionHandler) -> None:
        self.spec = spec
        self.meters = meters
        self.handler = handler
        self.discovered: dict[str, str] = {}
        ds = spec.dimensions_spec
        self.excluded = {spec.timestamp_spec.column, TIME, *ds.exclusions}
        for m in spec.metrics:
            self.excluded.add(m.name)
            if m.field_name:
                self.excluded.add(m.field_name)
        self.explicit = list(ds.dimensions) if not ds.discover or ds.dimensions else []
        for d in self.explicit:
            self.discovered[d.name] = d.type if d.type != "auto" else "null"

    @property
    def dimension_names(self) -> list[str]:
        return list(self.discovered)

    def _event(self, table: pa.Table, batch: RawBatch, i: int, raw_i: int) -> str:
        return java_map(self._row_dict(table, i, batch.raw(raw_i)))

    def _row_dict(self, table: pa.Table, i: int, raw: str | None = None) -> dict[str, object]:
        """The input row for messages: the JSON object as written when there is one."""
        if raw and self.spec.io_config.input_format.type == "json":
            try:
                value = orjson.loads(raw)
                if isinstance(value, dict):
                    return value
            except orjson.JSONDecodeError:
                pass
        return table.slice(i, 1).to_pylist()[0]

    def process(self, batch: RawBatch) -> pa.Table | None:
        """Typed rows (``__time`` int64 truncated to queryGranularity, dims, metrics) or None."""
        spec = self.spec
        self.meters.add(processed_bytes=batch.nbytes)
        events: list[tuple[int, str, str | None, str]] = [(p, "unparseable", raw, msg) for p, raw, msg in batch.bad]
        table = batch.table
        n = table.num_rows
        if n == 0:
            self._flush(events)
            return None
        ts = spec.timestamp_spec
        raw_ts = table.column(ts.column) if ts.column in table.column_names else pa.nulls(n)
        ms, bad = timestamps.parse_column(raw_ts, ts.format)
        if ts.missing_value is not None:
            missing = raw_ts.is_null().to_numpy(zero_copy_only=False)
            if missing.any():
                ms = pc.if_else(pa.array(missing), pa.scalar(ts.missing_value, pa.int64()), ms)
                bad = bad & ~missing
        positions = batch.line_no if batch.line_no is not None else np.arange(n, dtype=np.int64)
        if bad.any():
            for i in np.nonzero(bad)[0]:
                value = raw_ts[int(i)].as_py()
                event = java_map(self._row_dict(table, int(i), batch.raw(int(i))))
                events.append(
                    (
                        int(positions[i]),
                        "unparseable",
                        batch.raw(int(i)),
                        f"Timestamp[{'null' if value is None else value}] is unparseable! Event: {event}",
                    )
                )
            good = np.nonzero(~bad)[0]
            table, ms, positions = table.take(good), ms.take(pa.array(good)), positions[good]
            raw_idx = good
        else:
            raw_idx = np.arange(n)
        n = table.num_rows
        extra = self._transform(table, ms) if spec.transform_spec.transforms else {}
        if TIME in extra:
            new_ms, err = columns.to_long(extra.pop(TIME))
            nulls = new_ms.is_null().to_numpy(zero_copy_only=False) | err
            if nulls.any():
                for i in np.nonzero(nulls)[0]:
                    events.append(
                        (
                            int(positions[i]),
                            "unparseable",
                            batch.raw(int(raw_idx[i])),
                            "Timestamp[null] is unparseable! Event: "
                            + self._event(table, batch, int(i), int(raw_idx[i])),
                        )
                    )
                ok = np.nonzero(~nulls)[0]
                table, new_ms, positions, raw_idx = (
                    table.take(ok),
                    new_ms.take(pa.array(ok)),
                    positions[ok],
                    raw_idx[ok],
                )
                extra = {k: v.take(pa.array(ok)) for k, v in extra.items()}
            ms = new_ms
            n = table.num_rows
        keep = np.ones(n, dtype=bool)
        ms_np = ms.to_numpy(zero_copy_only=False).astype(np.int64)
        if spec.transform_spec.filter is not None:
            keep &= spec.transform_spec.filter.mask(table_getter(table, {**extra, TIME: ms}), n)
        if spec.intervals:
            in_iv = np.zeros(n, dtype=bool)
            for iv in spec.intervals:
                in_iv |= (ms_np >= iv.start) & (ms_np < iv.end)
            keep &= in_iv
        thrown = int(n - keep.sum())
        if thrown:
            idx = np.nonzero(keep)[0]
            sel = pa.array(idx)
            table, positions, raw_idx, ms_np = table.take(sel), positions[idx], raw_idx[idx], ms_np[idx]
            extra = {k: v.take(sel) for k, v in extra.items()}
        n = table.num_rows
        out, errors, err_cols = self._typed(table, extra, n)
        out[TIME] = pa.array(spec.granularity_spec.query.truncate_array(ms_np), pa.int64())
        n_err = 0
        if errors is not None and errors.any():
            for i in np.nonzero(errors)[0]:
                n_err += 1
                bad_vals = [
                    f"Unable to parse value[{table.column(src)[int(i)].as_py()}] for field[{name}]"
                    for name, src, mask in err_cols
                    if mask[i]
                ]
                msg = (
                    f"Found unparseable columns in row: [{self._event(table, batch, int(i), int(raw_idx[i]))}], "
                    f"exceptions: [{','.join(bad_vals)}]"
                )
                events.append((int(positions[i]), "processedWithError", batch.raw(int(raw_idx[i])), msg))
        self._flush(events)
        self.meters.add(processed=n - n_err, thrown_away=thrown)
        if n == 0:
            return None
        names = [TIME, *[d for d in self.discovered if d in out], *[m.name for m in spec.metrics]]
        return pa.table({k: out[k] for k in names})

    def _flush(self, events: list[tuple[int, str, str | None, str]]) -> None:
        events.sort(key=lambda e: e[0])
        for _pos, kind, raw, msg in events:
            self.handler.handle(kind, raw, msg)

    def _transform(self, table: pa.Table, ms: pa.Array) -> dict[str, pa.Array]:
        """Evaluate expression transforms row by row on the original input values."""
        transforms = self.spec.transform_spec.transforms
        needed = set().union(*(t.expression.identifiers for t in transforms))
        n = table.num_rows
        cols = {
            k: (ms.to_pylist() if k == TIME else table.column(k).to_pylist() if k in table.column_names else [None] * n)
            for k in needed
        }
        results: dict[str, list[object]] = {t.name: [] for t in transforms}
        keys = list(cols)
        for i in range(n):
            row = {k: cols[k][i] for k in keys}
            for t in transforms:
                results[t.name].append(t.expression(row))
        return {name: _column(vals) for name, vals in results.items()}

    def _typed(
        self, table: pa.Table, extra: dict[str, pa.Array], n: int
    ) -> tuple[dict[str, pa.Array], np.ndarray | None, list[tuple[str, str, np.ndarray]]]:
        spec = self.spec
        out: dict[str, pa.Array] = {}
        errors: np.ndarray | None = None
        err_cols: list[tuple[str, str, np.ndarray]] = []
        present = set(table.column_names)

        def source(name: str) -> pa.Array:
            if name in extra:
                return extra[name]
            if name in present:
                return table.column(name)
            return pa.nulls(n, pa.string())

        def add(name: str, src_name: str, kind: str) -> None:
            nonlocal errors
            arr, err = columns.convert(source(src_name), kind)
            out[name] = arr
            if err.any():
                errors = err if errors is None else (errors | err)
                if src_name in present:
                    err_cols.append((name, src_name, err))

        if self.explicit:
            for d in self.explicit:
                kind = self._discover(d.name, source(d.name)) if d.type == "auto" else d.type
                add(d.name, d.name, kind)
        else:
            for name in [*table.column_names, *extra]:
                if name in self.excluded or name in out:
                    continue
                src = source(name)
                if spec.dimensions_spec.use_schema_discovery:
                    kind = self._discover(name, src)
                else:
                    kind = self.discovered.setdefault(name, "string")
                add(name, name, kind)
        for m in spec.metrics:
            if m.type == "count":
                out[m.name] = pa.array(np.ones(n, dtype=np.int64))
            else:
                add(m.name, m.field_name or m.name, m.value_type)
        return out, errors, err_cols

    def _discover(self, name: str, src: pa.Array) -> str:
        """Schema discovery: a column's type widens as new chunks show other value types."""
        if src.null_count == len(src):
            self.discovered.setdefault(name, "null")
            return "string"
        kind = columns.discover_kind(src)
        prev = self.discovered.get(name)
        self.discovered[name] = columns.widen(prev, kind) if prev else kind
        return kind
