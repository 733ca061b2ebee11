"""CPU seconds (process rusage, not wall) to parse newline-delimited JSON chunks into Arrow, per reader.

Measures the candidates for replacing pyarrow's JSON reader in ``overlord.ingest.formats``
(issue 11): the file is cut into the same 8 MiB line-aligned buffers the pipeline reads, and
each reader turns every buffer into an Arrow table. Readers run interleaved, round after
round, so machine load hits them alike; the load average is printed with every round.

    python benchmarks/json_parse_cpu.py --file /tmp/w500k.json --rounds 3
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.json as pajson

from overlord.ingest.formats import JsonParser
from overlord.ingest.sources import iter_buffers
from overlord.ingest.spec import InputFormat

_BLOCK = 4 << 20


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def read_pyarrow(buf: pa.Buffer) -> pa.Table:
    return pajson.read_json(buf, read_options=pajson.ReadOptions(block_size=_BLOCK))


def read_pyarrow_1t(buf: pa.Buffer) -> pa.Table:
    return pajson.read_json(buf, read_options=pajson.ReadOptions(block_size=_BLOCK, use_threads=False))


def read_pyarrow_16m(buf: pa.Buffer) -> pa.Table:
    return pajson.read_json(buf, read_options=pajson.ReadOptions(block_size=16 << 20, use_threads=False))


_PARSER = JsonParser(InputFormat(type="json"))


def read_current(buf: pa.Buffer) -> pa.Table:
    return _PARSER.parse(buf, False).table


def read_polars(buf: pa.Buffer) -> pa.Table:
    import polars as pl  # optional: pip install polars msgspec pysimdjson to run every reader

    return pl.read_ndjson(io.BytesIO(memoryview(buf)), infer_schema_length=None).to_arrow()


def read_orjson(buf: pa.Buffer) -> pa.Table:
    import orjson

    rows = [orjson.loads(ln) for ln in buf.to_pybytes().split(b"\n") if ln]
    return pa.Table.from_pylist(rows)


def read_msgspec(buf: pa.Buffer) -> pa.Table:
    import msgspec

    dec = msgspec.json.Decoder()
    rows = dec.decode_lines(buf.to_pybytes())
    return pa.Table.from_pylist(rows)


def read_simdjson(buf: pa.Buffer) -> pa.Table:
    import simdjson

    p = simdjson.Parser()
    rows = [p.parse(ln).as_dict() for ln in buf.to_pybytes().split(b"\n") if ln]
    return pa.Table.from_pylist(rows)


READERS: dict[str, Callable[[pa.Buffer], pa.Table]] = {
    "pyarrow (current call)": read_pyarrow,
    "JsonParser.parse (current path)": read_current,
    "pyarrow use_threads=False": read_pyarrow_1t,
    "pyarrow 16 MiB block, 1 thread": read_pyarrow_16m,
    "polars read_ndjson -> arrow": read_polars,
    "orjson lines -> from_pylist": read_orjson,
    "msgspec decode_lines -> from_pylist": read_msgspec,
    "pysimdjson lines -> from_pylist": read_simdjson,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--file", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", nargs="*", default=None, help="substrings of reader names to keep")
    args = ap.parse_args()
    with args.file.open("rb") as f:
        bufs = list(iter_buffers(f))
    readers = {k: v for k, v in READERS.items() if not args.only or any(s in k for s in args.only)}
    cpu: dict[str, list[float]] = {k: [] for k in readers}
    wall: dict[str, list[float]] = {k: [] for k in readers}
    for r in range(args.rounds):
        for name, fn in readers.items():
            c0, w0 = _cpu(), time.perf_counter()
            n = sum(fn(b).num_rows for b in bufs)
            c1, w1 = _cpu(), time.perf_counter()
            cpu[name].append(c1 - c0)
            wall[name].append(w1 - w0)
            load = os.getloadavg()[0]
            print(f"round {r} {name:40s} rows {n} cpu {c1 - c0:6.2f} s wall {w1 - w0:6.2f} s load {load:.2f}")
    print("median over rounds:")
    for name in readers:
        c, w = statistics.median(cpu[name]), statistics.median(wall[name])
        print(f"  {name:40s} cpu {c:6.2f} s (min {min(cpu[name]):.2f}) wall {w:6.2f} s")


if __name__ == "__main__":
    main()
