"""Ingestion benchmark: an ``index_parallel`` task against DuckDB on the same 1,000,000 wikiticker rows.

In one run, on this machine:
  (a) an index_parallel task from submit to SUCCESS, once in one process (maxNumConcurrentSubTasks 1)
      and once with two sub-tasks (2), on a service started in a subprocess with capacity 3;
  (b) DuckDB converting the same files to Parquet partitioned by day (the reference).
Prints rows/s for each, the ratio of our time to DuckDB's (target <= 1.5) and the tasks' peak
memory (the peons log their own ru_maxrss as ``peak RSS bytes[...]``; target < 1 GiB).

The rows are written as two files of 500,000 rows (so two sub-tasks have a split each) under
benchmarks/data/ (git-ignored), once; later runs reuse them.

Usage: python benchmarks/ingest.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import re
import shutil
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


def spec(ds: str, files: list[Path], workers: int) -> dict:
    return {
        "type": "index_parallel",
        "spec": {
            "dataSchema": {
                "dataSource": ds,
                "timestampSpec": {"column": "time", "format": "iso"},
                "dimensionsSpec": {"useSchemaDiscovery": True},
                "granularitySpec": {"segmentGranularity": "day", "queryGranularity": "none", "rollup": False},
            },
            "ioConfig": {
                "type": "index_parallel",
                "inputSource": {"type": "local", "files": [str(f) for f in files]},
                "inputFormat": {"type": "json"},
            },
            "tuningConfig": {"type": "index_parallel", "maxNumConcurrentSubTasks": workers},
        },
    }


def peak_rss(client: httpx.Client, task_ids: list[str]) -> int:
    peak = 0
    for tid in task_ids:
        log = client.get(f"{API}/task/{tid}/log").text
        for m in re.finditer(r"peak RSS bytes\[(\d+)\]", log):
            peak = max(peak, int(m.group(1)))
    return peak


def run_task(client: httpx.Client, body: dict, report: bool = True) -> tuple[float, int, int]:
    """(seconds from submit to SUCCESS, processed rows, peak RSS over the task and its sub-tasks)."""
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
        return elapsed, 0, 0
    report = client.get(f"{API}/task/{tid}/reports").json()
    processed = processed_rows(report)
    subs = [t["id"] for t in client.get(f"{API}/tasks").json() if t.get("groupId") == tid and t["id"] != tid]
    return elapsed, processed, peak_rss(client, [tid, *subs])


def duckdb_time(files: list[Path], out: Path) -> float:
    import duckdb

    shutil.rmtree(out, ignore_errors=True)
    con = duckdb.connect()
    names = ", ".join(f"'{f}'" for f in files)
    t0 = time.perf_counter()
    con.execute(
        f"COPY (SELECT *, CAST(date_trunc('day', CAST(time AS TIMESTAMP)) AS DATE) AS day "
        f"FROM read_json_auto([{names}], format='newline_delimited')) "
        f"TO '{out}' (FORMAT PARQUET, PARTITION_BY (day))"
    )
    elapsed = time.perf_counter() - t0
    con.close()
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    args = ap.parse_args()
    DATA.mkdir(exist_ok=True)
    files = make_files(args.rows)
    with tempfile.TemporaryDirectory() as tmp:
        results = {}
        with (
            running_service(Path(tmp) / "var", capacity=3, cwd=DATA) as url,
            httpx.Client(base_url=url, timeout=60) as client,
        ):
            # a long-running service is warm: let the fork server finish importing before timing
            run_task(client, {"type": "noop", "runTime": 0}, report=False)
            for workers in (1, 2):
                results[workers] = run_task(client, spec(f"bench_{workers}", files, workers))
        duck = duckdb_time(files, Path(tmp) / "duck")
    rows = args.rows
    print(f"rows: {rows:,} in {len(files)} files ({sum(f.stat().st_size for f in files) / 1e6:.0f} MB)")
    for workers, (elapsed, processed, rss) in results.items():
        label = "index_parallel, 1 process " if workers == 1 else "index_parallel, 2 sub-tasks"
        print(
            f"{label}: {elapsed:6.2f} s  {processed / elapsed:12,.0f} rows/s  "
            f"ratio to DuckDB {elapsed / duck:5.2f}x  peak RSS {rss / 2**20:,.0f} MiB"
        )
        assert processed == rows, f"processed {processed} != {rows}"
    print(f"DuckDB COPY ... PARTITION_BY day  : {duck:6.2f} s  {rows / duck:12,.0f} rows/s")


if __name__ == "__main__":
    main()
