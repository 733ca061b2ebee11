"""JSON chunks read with the schema pinned from a split's first chunk give what inference gives.

Randomized inputs mix late type changes (long -> double, long -> string, string -> number,
boolean -> long, objects), columns that come and go, all-null chunks, unparseable lines, bad
timestamps and bad metric values; with pinning on and off, the segment files must be byte-for-byte
equal and the row statistics and saved parse exceptions the same.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow as pa
import pytest

from overlord.clock import ManualClock
from overlord.ingest import formats
from overlord.ingest.formats import JsonParser
from overlord.ingest.pipeline import run_ingestion
from overlord.ingest.spec import InputFormat, validate_index_spec


def _spec(base: Path, rollup: bool, transform: bool) -> object:
    schema: dict = {
        "dataSource": "ds",
        "timestampSpec": {"column": "ts", "format": "iso"},
        "dimensionsSpec": {"useSchemaDiscovery": True},
        "metricsSpec": [{"type": "count", "name": "count"}, {"type": "longSum", "name": "m", "fieldName": "m"}],
        "granularitySpec": {
            "segmentGranularity": "day",
            "queryGranularity": "hour" if rollup else "none",
            "rollup": rollup,
        },
    }
    if transform:
        schema["transformSpec"] = {
            "filter": {"type": "not", "field": {"type": "selector", "dimension": "s", "value": "s3"}}
        }
    payload = {
        "type": "index",
        "spec": {
            "dataSchema": schema,
            "ioConfig": {
                "type": "index",
                "inputSource": {"type": "local", "baseDir": str(base), "filter": "*.json"},
                "inputFormat": {"type": "json"},
            },
            "tuningConfig": {"type": "index", "maxSavedParseExceptions": 1000},
        },
    }
    return validate_index_spec(payload, allowed_dirs=[base])


def _value(rng: random.Random, i: int, change_at: int, before: str, after: str) -> object:
    kind = before if i < change_at else after
    if rng.random() < 0.1:
        return None
    return {
        "long": rng.randint(-5, 5),
        "double": rng.choice([0.5, -1.25, 3.0]),
        "string": f"s{rng.randint(0, 4)}",
        "numtext": str(rng.randint(0, 9)),
        "bool": rng.random() < 0.5,
        "object": {"k": rng.randint(0, 2)},
    }[kind]


KINDS = ["long", "double", "string", "numtext", "bool", "object"]


def _lines(seed: int) -> list[str]:
    rng = random.Random(seed)
    n = rng.randint(50, 400)
    cols = {f"c{j}": (rng.randint(0, n), rng.choice(KINDS), rng.choice(KINDS)) for j in range(rng.randint(1, 5))}
    gone = {name: (rng.randint(0, n), rng.randint(0, n)) for name in cols if rng.random() < 0.4}
    out = []
    for i in range(n):
        r = rng.random()
        if r < 0.02:
            out.append('{"ts": "2015-09-12T00:00:00Z", broken')
            continue
        if r < 0.03:
            out.append("[1, 2]")
            continue
        row: dict = {"ts": "not a time" if r < 0.05 else f"2015-09-{12 + i * 3 // n}T{i % 24:02d}:{i % 60:02d}:00Z"}
        row["s"] = f"s{rng.randint(0, 4)}"
        row["m"] = "abc" if rng.random() < 0.03 else rng.randint(0, 100)
        for name, (change_at, before, after) in cols.items():
            lo, hi = gone.get(name, (0, -1))
            if not lo <= i <= hi:
                row[name] = _value(rng, i, change_at, before, after)
        if rng.random() < 0.2:
            keys = list(row)
            rng.shuffle(keys)
            row = {k: row[k] for k in keys}
        out.append(json.dumps(row))
    return out


def _run(base: Path, out: Path, rollup: bool, transform: bool, chunk_bytes: int) -> tuple[dict, dict, object]:
    res = run_ingestion(
        _spec(base, rollup, transform), out_dir=out, version="v1", clock=ManualClock(), chunk_bytes=chunk_bytes
    )
    files = {s.path: (out / s.path).read_bytes() for s in res.segments}
    descriptors = {s.path: (s.num_rows, s.dimensions, s.metrics, s.shard_spec, s.size) for s in res.segments}
    events = {
        p: [(e.to_dict() if hasattr(e, "to_dict") else e) for e in v] for p, v in (res.unparseable_events or {}).items()
    }
    return files, descriptors, (res.row_stats, events)


@pytest.mark.parametrize("seed", range(30))
def test_pinned_schema_reads_like_inference(seed: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = tmp_path / "in"
    base.mkdir()
    lines = _lines(seed)
    half = len(lines) // 2 if seed % 3 == 0 else len(lines)
    (base / "a.json").write_text("\n".join(lines[:half]) + "\n")
    if half < len(lines):
        (base / "b.json").write_text("\n".join(lines[half:]) + "\n")
    rollup, transform = seed % 2 == 1, seed % 5 == 0
    chunk_bytes = random.Random(seed).choice([300, 700, 2000])
    monkeypatch.setattr(formats, "PIN_SCHEMA", True)
    pinned = _run(base, tmp_path / "pinned", rollup, transform, chunk_bytes)
    monkeypatch.setattr(formats, "PIN_SCHEMA", False)
    inferred = _run(base, tmp_path / "inferred", rollup, transform, chunk_bytes)
    assert pinned[1] == inferred[1]
    assert pinned[2] == inferred[2]
    assert pinned[0] == inferred[0]


def _parse(parser: JsonParser, text: str, first: bool) -> pa.Table:
    return parser.parse(pa.py_buffer(text.encode()), first).table


def test_a_chunk_the_schema_does_not_fit_is_inferred_and_narrows_the_schema() -> None:
    parser = JsonParser(InputFormat(type="json"))
    _parse(parser, '{"a": 1, "b": "x", "c": true, "d": 1.5, "e": {"k": 1}}\n', True)
    assert parser.schema is not None
    assert [(f.name, str(f.type)) for f in parser.schema] == [("a", "int64"), ("b", "string"), ("c", "bool")]
    t = _parse(parser, '{"a": 2.5, "b": "y", "c": false}\n', False)
    assert t.column("a").type == pa.float64() and t.column("a").to_pylist() == [2.5]
    assert [f.name for f in parser.schema] == ["b", "c"]
    t = _parse(parser, '{"b": 7, "a": 3}\n', False)  # b is a number now: inferred, leaves the schema
    assert t.column_names == ["b", "a"] and t.column("b").to_pylist() == [7]
    assert parser.schema is None or [f.name for f in parser.schema] == []
