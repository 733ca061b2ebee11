"""SQL-based ingestion benchmark (issue 12, part b): INSERT ... FROM TABLE(EXTERN(...)) on the 1M-row
wikiticker files against native ``index_parallel`` and DuckDB's own JSON -> Parquet.

In one run, on this machine (a service in a subprocess with capacity 3):
  (a) ``POST /druid/v2/sql/task`` with ``maxNumTasks`` 3 (a controller and two query_workers, one
      per file), from submit to SUCCESS;
  (b) ``index_parallel`` with two sub-tasks on the same files (benchmarks/ingest.py's spec);
  (c) DuckDB converting the same files to Parquet partitioned by day (the reference).
Prints rows/s and the ratio of each to DuckDB (goal for SQL-based ingestion: <= 1.2x).

The files are benchmarks/ingest.py's (two files of rows/2 under benchmarks/data/, made once).

Usage: python benchmarks/sql_ingest.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

from _service import processed_rows, running_service  # noqa: E402
from ingest import DATA, duckdb_time, make_files, peak_rss, run_task, spec  # noqa: E402

API = "/druid/indexer/v1"
STRINGS = [
    "channel",
    "cityName",
    "comment",
    "countryIsoCode",
    "countryName",
    "isAnonymous",
    "isMinor",
    "isNew",
    "isRobot",
    "isUnpatrolled",
    "metroCode",
    "namespace",
    "page",
    "regionIsoCode",
    "regionName",
    "user",
]
LONGS = ("delta", "added", "deleted")


def insert_sql(ds: str, files: list[Path]) -> str:
    signature = [{"name": "time", "type": "string"}]
    signature += [{"name": c, "type": "string"} for c in STRINGS] + [{"name": c, "type": "long"} for c in LONGS]

    def lit(v: object) -> str:
        return "'" + json.dumps(v).replace("'", "''") + "'"

    source = {"type": "local", "files": [str(f) for f in files]}
    columns = ", ".join(f'"{c}"' for c in (*STRINGS, *LONGS))
    return (
        f'INSERT INTO {ds} SELECT TIME_PARSE("time") AS __time, {columns} '
        f"FROM TABLE(EXTERN({lit(source)}, {lit({'type': 'json'})}, {lit(signature)})) PARTITIONED BY DAY"
    )


def run_sql(client: httpx.Client, sql: str, max_num_tasks: int) -> tuple[float, int, int]:
    """(seconds from submit to SUCCESS, processed rows, peak RSS over the controller and its workers)."""
    t0 = time.perf_counter()
    r = client.post("/druid/v2/sql/task", json={"query": sql, "context": {"maxNumTasks": max_num_tasks}})
    if r.status_code != 202:
        raise SystemExit(f"submit failed: {r.status_code} {r.text}")
    tid = r.json()["taskId"]
    while True:
        st = client.get(f"{API}/task/{tid}/status").json()["status"]
        if st["statusCode"] != "RUNNING":
            break
        time.sleep(0.02)
    elapsed = time.perf_counter() - t0
    if st["statusCode"] != "SUCCESS":
        raise SystemExit(f"task {tid} failed: {st.get('errorMsg')}")
    report = client.get(f"{API}/task/{tid}/reports").json()
    processed = processed_rows(report)
    workers = [
        t["id"] for t in client.get(f"{API}/tasks", params={"type": "query_worker"}).json() if t["groupId"] == tid
    ]
    return elapsed, processed, peak_rss(client, [tid, *workers])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    args = ap.parse_args()
    DATA.mkdir(exist_ok=True)
    files = make_files(args.rows)
    with tempfile.TemporaryDirectory() as tmp:
        with (
            running_service(Path(tmp) / "var", capacity=3, cwd=DATA) as url,
            httpx.Client(base_url=url, timeout=60) as client,
        ):
            run_task(client, {"type": "noop", "runTime": 0}, report=False)  # warm the fork server
            sql_s, sql_rows, sql_rss = run_sql(client, insert_sql("bench_sql", files), max_num_tasks=3)
            native_s, native_rows, native_rss = run_task(client, spec("bench_native", files, 2))
        duck = duckdb_time(files, Path(tmp) / "duck")
    rows = args.rows
    print(f"rows: {rows:,} in {len(files)} files ({sum(f.stat().st_size for f in files) / 1e6:.0f} MB)")
    for label, elapsed, processed, rss in (
        ("SQL INSERT, 2 query_workers     ", sql_s, sql_rows, sql_rss),
        ("index_parallel, 2 sub-tasks     ", native_s, native_rows, native_rss),
    ):
        print(
            f"{label}: {elapsed:6.2f} s  {processed / elapsed:12,.0f} rows/s  ratio to DuckDB {elapsed / duck:5.2f}x"
            f"  peak RSS {rss / 2**20:,.0f} MiB"
        )
        assert processed == rows, f"processed {processed} != {rows}"
    print(f"DuckDB COPY ... PARTITION_BY day : {duck:6.2f} s  {rows / duck:12,.0f} rows/s")


if __name__ == "__main__":
    main()
