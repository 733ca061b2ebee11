"""Ingestion benchmark: ``index_parallel`` tasks against DuckDB on the same 1,000,000 wikiticker rows.

Two cases, each against its own DuckDB anchor on the same files:
  rollup off: index_parallel (queryGranularity none, rollup off) from submit to SUCCESS, once in one
      process (maxNumConcurrentSubTasks 1) and once with two sub-tasks (2), against DuckDB converting
      the files to Parquet partitioned by day;
  rollup on: index_parallel with queryGranularity hour, rollup on (count and longSum of added, deleted,
      delta; every other column a discovered dimension), against DuckDB doing the same GROUP BY into
      Parquet partitioned by day.
The service runs in a subprocess with capacity 3. The machine is shared, so every round runs each
anchor right before the tasks it is compared with, and a ratio is our time over the anchor's time
of the same round; ``--repeat`` rounds (default 2) are run and each ratio's median is printed with
the rounds' values. The CPU ratio (CPU seconds the peons logged as ``CPU seconds[...]``, summed over
a task and its sub-tasks, over DuckDB's CPU seconds for its query) is printed too: on a loaded machine
it moves far less than wall time. Also printed: rows/s and the tasks' peak memory (the peons log their
own ru_maxrss as ``peak RSS bytes[...]``; target < 1 GiB). Goal: every ratio <= 1.0.

The rows are written as two files of 500,000 rows (so two sub-tasks have a split each) under
benchmarks/data/ (git-ignored), once; later runs reuse them.

Usage: python benchmarks/ingest.py [--rows 1000000] [--repeat 2]
"""

from __future__ import annotations

import argparse
import re
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

from _service import processed_rows, running_service  # noqa: E402

from overlord.ingest import wikiticker  # noqa: E402

API = "/druid/indexer/v1"


def make_files(rows: int) -> list[Path]:
    half = rows // 2
    files = []
    for i, n in enumerate((half, rows - half)):
        path = DATA / f"wikiticker-{rows}-{i}.json"
        if not path.exists():
            print(f"generating {path.name} ({n} rows)...", flush=True)
            tmp = path.with_suffix(".tmp")
            wikiticker.write_file(tmp, n, seed=42 + i, gzip_output=False)
            tmp.rename(path)
        files.append(path)
    return files


ROLLUP_METRICS = [
    {"type": "count", "name": "count"},
    {"type": "longSum", "name": "added", "fieldName": "added"},
    {"type": "longSum", "name": "deleted", "fieldName": "deleted"},
    {"type": "longSum", "name": "delta", "fieldName": "delta"},
]


def spec(ds: str, files: list[Path], workers: int, rollup: bool = False) -> dict:
    granularity = {"segmentGranularity": "day", "queryGranularity": "hour" if rollup else "none", "rollup": rollup}
    return {
        "type": "index_parallel",
        "spec": {
            "dataSchema": {
                "dataSource": ds,
                "timestampSpec": {"column": "time", "format": "iso"},
                "dimensionsSpec": {"useSchemaDiscovery": True},
                "granularitySpec": granularity,
                **({"metricsSpec": ROLLUP_METRICS} if rollup else {}),
            },
            "ioConfig": {
                "type": "index_parallel",
                "inputSource": {"type": "local", "files": [str(f) for f in files]},
                "inputFormat": {"type": "json"},
            },
            "tuningConfig": {"type": "index_parallel", "maxNumConcurrentSubTasks": workers},
        },
    }


def resources(client: httpx.Client, task_ids: list[str]) -> tuple[int, float]:
    """(peak RSS over the peons, CPU seconds they used together), from what they logged."""
    peak, cpu = 0, 0.0
    for tid in task_ids:
        log = client.get(f"{API}/task/{tid}/log").text
        for m in re.finditer(r"peak RSS bytes\[(\d+)\]", log):
            peak = max(peak, int(m.group(1)))
        for m in re.finditer(r"CPU seconds\[([\d.]+)\]", log):
            cpu += float(m.group(1))
    return peak, cpu


def run_task(client: httpx.Client, body: dict, report: bool = True) -> tuple[float, int, int, float]:
    """(seconds from submit to SUCCESS, processed rows, peak RSS and CPU seconds of the task and its sub-tasks)."""
    t0 = time.perf_counter()
    r = client.post(f"{API}/task", json=body)
    r.raise_for_status()
    tid = r.json()["task"]
    while True:
        st = client.get(f"{API}/task/{tid}/status").json()["status"]
        if st["statusCode"] != "RUNNING":
            break
        time.sleep(0.02)
    elapsed = time.perf_counter() - t0
    if st["statusCode"] != "SUCCESS":
        raise SystemExit(f"task {tid} failed: {st.get('errorMsg')}")
    if not report:
        return elapsed, 0, 0, 0.0
    report = client.get(f"{API}/task/{tid}/reports").json()
    processed = processed_rows(report)
    subs = [t["id"] for t in client.get(f"{API}/tasks").json() if t.get("groupId") == tid and t["id"] != tid]
    return elapsed, processed, *resources(client, [tid, *subs])


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def duckdb_time(files: list[Path], out: Path, rollup: bool = False) -> tuple[float, float]:
    """DuckDB's own JSON -> Parquet (partitioned by day), or the same rows rolled up by hour."""
    import duckdb

    shutil.rmtree(out, ignore_errors=True)
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    source = f"read_json_auto([{', '.join(repr(str(f)) for f in files)}], format='newline_delimited')"
    day = "CAST(date_trunc('day', CAST(time AS TIMESTAMP)) AS DATE) AS day"
    if rollup:
        metrics = {m.get("fieldName") for m in ROLLUP_METRICS}
        dims = [c for c in con.sql(f"SELECT * FROM {source}").columns if c != "time" and c not in metrics]
        query = (
            f"SELECT date_trunc('hour', CAST(time AS TIMESTAMP)) AS __time, {day}, "
            f"{', '.join(_ident(d) for d in dims)}, count(*) AS count, "
            f"sum(added) AS added, sum(deleted) AS deleted, sum(delta) AS delta FROM {source} GROUP BY ALL"
        )
    else:
        query = f"SELECT *, {day} FROM {source}"
    t0, c0 = time.perf_counter(), _cpu()
    con.execute(f"COPY ({query}) TO '{out}' (FORMAT PARQUET, PARTITION_BY (day))")
    elapsed, cpu = time.perf_counter() - t0, _cpu() - c0
    con.close()
    return elapsed, cpu


CASES = [  # (label, rollup, maxNumConcurrentSubTasks)
    ("rollup off, 1 process ", False, 1),
    ("rollup off, 2 sub-tasks", False, 2),
    ("rollup on,  1 process ", True, 1),
    ("rollup on,  2 sub-tasks", True, 2),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    DATA.mkdir(exist_ok=True)
    files = make_files(args.rows)
    rows = args.rows
    ratios: dict[str, list[float]] = {label: [] for label, _, _ in CASES}
    cpu_ratios: dict[str, list[float]] = {label: [] for label, _, _ in CASES}
    anchors: dict[bool, list[float]] = {False: [], True: []}
    seen: dict[str, tuple[float, int]] = {}
    with (
        tempfile.TemporaryDirectory() as tmp,
        running_service(Path(tmp) / "var", capacity=3, cwd=DATA) as url,
        httpx.Client(base_url=url, timeout=60) as client,
    ):
        # a long-running service is warm: let the fork server finish importing before timing
        run_task(client, {"type": "noop", "runTime": 0}, report=False)
        n = 0
        for rnd in range(args.repeat):
            for rollup in (False, True):
                duck, duck_cpu = duckdb_time(files, Path(tmp) / "duck", rollup)
                anchors[rollup].append(duck)
                for label, r, workers in CASES:
                    if r != rollup:
                        continue
                    n += 1
                    elapsed, processed, rss, cpu = run_task(client, spec(f"bench_{n}", files, workers, rollup))
                    assert processed == rows, f"processed {processed} != {rows}"
                    ratios[label].append(elapsed / duck)
                    cpu_ratios[label].append(cpu / duck_cpu)
                    best = seen.get(label)
                    seen[label] = (min(elapsed, best[0]) if best else elapsed, max(rss, best[1]) if best else rss)
                    print(
                        f"round {rnd + 1} {label}: {elapsed:6.2f} s, DuckDB {duck:6.2f} s, "
                        f"ratio {elapsed / duck:5.2f}x; CPU {cpu:6.2f} s, DuckDB {duck_cpu:6.2f} s, "
                        f"ratio {cpu / duck_cpu:5.2f}x; peak RSS {rss / 2**20:,.0f} MiB",
                        flush=True,
                    )
    print(f"rows: {rows:,} in {len(files)} files ({sum(f.stat().st_size for f in files) / 1e6:.0f} MB)")
    for label, _, _ in CASES:
        best, rss = seen[label]
        values = " ".join(f"{v:.2f}" for v in ratios[label])
        print(
            f"index_parallel, {label}: best {best:6.2f} s {rows / best:10,.0f} rows/s  "
            f"ratio to DuckDB median {statistics.median(ratios[label]):5.2f}x (rounds: {values})  "
            f"CPU ratio median {statistics.median(cpu_ratios[label]):5.2f}x  "
            f"peak RSS {rss / 2**20:,.0f} MiB"
        )
    for rollup, label in ((False, "COPY ... PARTITION_BY day"), (True, "GROUP BY hour ... PARTITION_BY day")):
        best = min(anchors[rollup])
        print(f"DuckDB {label}: best {best:6.2f} s {rows / best:10,.0f} rows/s")


if __name__ == "__main__":
    main()
