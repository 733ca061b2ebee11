"""SQL benchmark, part (a): a GROUP BY over the 1,000,000-row data source through ``POST /druid/v2/sql``
against DuckDB reading the very same segment Parquet files directly (the reference).

The rows are ingested once per run with ``index_parallel`` (files under benchmarks/data/, shared with
benchmarks/ingest.py). Each query runs ``--repeat`` times after one warm-up; the best time of each
side is printed with the ratio (target <= 1.2x). Our side includes HTTP, parsing, the Druid-to-DuckDB
rewrite, reading the timeline and the JSON answer; the reference is the bare DuckDB query.

Part (b) (SQL-based ingestion against index_parallel and DuckDB) belongs to the SQL-based ingestion
work and is added with it.

Usage: python benchmarks/sql.py [--rows 1000000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

from _service import running_service  # noqa: E402
from ingest import DATA, make_files, run_task, spec  # noqa: E402

DS = "bench_sql"
QUERIES = {
    "GROUP BY channel": 'SELECT channel, COUNT(*) AS n, SUM(added) AS added FROM "{t}" GROUP BY 1 ORDER BY 1',
    "GROUP BY hour": "SELECT date_trunc('hour', __time) AS h, COUNT(*) AS n FROM \"{t}\" GROUP BY 1 ORDER BY 1",
}


def best(fn, repeat: int) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    fn()
    times, answer = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        answer = fn()
        times.append(time.perf_counter() - t0)
    return min(times), answer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    DATA.mkdir(exist_ok=True)
    files = make_files(args.rows)
    import duckdb

    with (
        tempfile.TemporaryDirectory() as tmp,
        running_service(Path(tmp) / "var", capacity=3, cwd=DATA) as url,
        httpx.Client(base_url=url, timeout=300) as client,
    ):
        run_task(client, spec(DS, files, 2), report=False)
        segs = client.get(f"/druid/coordinator/v1/metadata/datasources/{DS}/segments", params={"full": ""}).json()
        paths = [s["loadSpec"]["path"] for s in segs]
        con = duckdb.connect()
        con.execute(f'CREATE VIEW "{DS}" AS SELECT * FROM read_parquet({paths!r})')
        print(f"rows: {args.rows:,} in {len(paths)} segment files")
        for label, template in QUERIES.items():
            query = template.format(t=DS)

            def ours(q: str = query) -> object:
                r = client.post("/druid/v2/sql", json={"query": q, "resultFormat": "array"})
                if r.status_code != 200:
                    raise SystemExit(f"/druid/v2/sql answered {r.status_code}: {r.text}")
                return r.json()

            def reference(q: str = query) -> object:
                return con.execute(q).fetchall()

            t_ours, a_ours = best(ours, args.repeat)
            t_ref, a_ref = best(reference, args.repeat)
            assert len(a_ours) == len(a_ref), (len(a_ours), len(a_ref))  # type: ignore[arg-type]
            print(
                f"{label:18s}: /druid/v2/sql {t_ours * 1000:8.1f} ms   DuckDB on the Parquet files "
                f"{t_ref * 1000:8.1f} ms   ratio {t_ours / t_ref:5.2f}x"
            )
        con.close()


if __name__ == "__main__":
    main()
