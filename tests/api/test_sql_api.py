"""POST /druid/v2/sql and DELETE /druid/v2/sql/{id} in process: formats, headers, parameters, errors,
system tables, visible segments only, cancel and timeout, and the web console's own queries."""

from __future__ import annotations

import asyncio
import csv
import io
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from overlord.core.data_segment import DataSegment, ShardSpec
from overlord.isotime import Interval, parse_instant_ms
from overlord.service import Service
from tests.api.inprocess import InProcess, inprocess_service

pytestmark = pytest.mark.anyio
SQL = "/druid/v2/sql"
CONSOLE = Path(__file__).parent / "sql_console"
DAY = 86_400_000


def publish(
    svc: Service, tmp: Path, ds: str, day: str, version: str, rows: list[tuple[str, str, int]], length_ms: int = DAY
) -> DataSegment:
    """Write a segment file (``__time`` ms, page, added) into deep storage and publish it."""
    start = parse_instant_ms(day)
    table = pa.table(
        {
            "__time": pa.array([parse_instant_ms(t) for t, _, _ in rows], pa.int64()),
            "page": [p for _, p, _ in rows],
            "added": pa.array([a for _, _, a in rows], pa.int64()),
        }
    )
    local = tmp / f"{ds}-{day}-{version}.parquet"
    pq.write_table(table, local)
    spec = svc.deep_storage.write(f"{ds}/{day}/{version}/0/index.parquet", str(local))
    iv = Interval(start, start + length_ms)
    seg = DataSegment(ds, iv, version, ShardSpec(), spec, ("page",), ("added",), size=local.stat().st_size)
    svc.segments.publish([seg], [], svc.clock.now_ms())
    return seg


@pytest.fixture
async def op(tmp_path: Path) -> Any:
    async with inprocess_service(tmp_path) as op:
        svc = op.service
        publish(
            svc,
            tmp_path,
            "wiki",
            "2016-06-27",
            "v1",
            [("2016-06-27T01:00:00Z", "A", 10), ("2016-06-27T02:00:00Z", "B", 5)],
        )
        publish(svc, tmp_path, "wiki", "2016-06-28", "v1", [("2016-06-28T01:00:00Z", "A", 7)])
        yield op


async def sql(op: InProcess, body: dict[str, Any] | str, status: int = 200) -> Any:
    if isinstance(body, str):
        r = await op.http.post(SQL, content=body, headers={"Content-Type": "text/plain"})
    else:
        r = await op.http.post(SQL, json=body)
    assert r.status_code == status, r.text
    return r


async def test_select_1337_is_the_console_probe(op: InProcess) -> None:
    r = await sql(op, {"query": (CONSOLE / "capabilities.sql").read_text()})
    assert r.json() == [{"EXPR$0": 1337}]
    assert r.headers["X-Druid-SQL-Query-Id"]


async def test_counts_read_the_visible_segments(op: InProcess) -> None:
    r = await sql(op, {"query": "SELECT COUNT(*) AS c, SUM(added) AS s FROM wikiticker_missing"}, 400)
    assert r.json()["errorCode"] == "invalidInput" and "wikiticker_missing" in r.json()["errorMessage"]
    r = await sql(op, {"query": "SELECT COUNT(*) AS c, SUM(added) AS s FROM wiki"})
    assert r.content == b'[{"c":3,"s":22}]'  # SUM of a BIGINT is a BIGINT, as in Druid
    r = await sql(op, {"query": 'SELECT page, SUM(added) AS s FROM druid."wiki" GROUP BY page ORDER BY page'})
    assert r.json() == [{"page": "A", "s": 17}, {"page": "B", "s": 5}]


async def test_a_newer_version_overshadows_and_the_old_one_is_never_read(op: InProcess, tmp_path: Path) -> None:
    publish(op.service, tmp_path, "wiki", "2016-06-27", "v2", [("2016-06-27T05:00:00Z", "C", 100)])
    r = await sql(op, {"query": "SELECT COUNT(*) AS c, SUM(added) AS s FROM wiki"})
    assert r.json() == [{"c": 2, "s": 107}]
    r = await sql(
        op, {"query": "SELECT version, is_overshadowed, is_active, num_rows FROM sys.segments ORDER BY start, version"}
    )
    # Publishing marked the overshadowed segment unused: sys.segments lists used segments only.
    assert r.json() == [
        {"version": "v2", "is_overshadowed": 0, "is_active": 1, "num_rows": 1},
        {"version": "v1", "is_overshadowed": 0, "is_active": 1, "num_rows": 1},
    ]


async def test_a_partly_overshadowed_segment_is_read_only_where_visible(op: InProcess, tmp_path: Path) -> None:
    # A newer version over one hour of the first day: v1's day stays used, visible outside that hour.
    rows = [("2016-06-27T01:30:00Z", "C", 1000)]
    publish(op.service, tmp_path, "wiki", "2016-06-27T01:00:00Z", "v2", rows, length_ms=3_600_000)
    assert len(op.service.segments.used_segments("wiki")) == 3
    r = await sql(op, {"query": "SELECT page, added FROM wiki ORDER BY __time"})
    # v1's 01:00 row (A, 10) is hidden by v2's hour; its 02:00 row (B, 5) is still visible.
    assert r.json() == [{"page": "C", "added": 1000}, {"page": "B", "added": 5}, {"page": "A", "added": 7}]


async def test_time_filter_reads_only_overlapping_segments(op: InProcess, tmp_path: Path) -> None:
    # Break the first day's file: a query confined to the second day must not open it.
    seg = op.service.segments.used_segments(
        "wiki", Interval(parse_instant_ms("2016-06-27"), parse_instant_ms("2016-06-27T12:00:00Z"))
    )[0]
    Path(seg.load_spec["path"]).write_bytes(b"not parquet")
    q = "SELECT COUNT(*) AS c FROM wiki WHERE __time >= TIMESTAMP '2016-06-28 00:00:00' AND __time < '2016-06-29'"
    assert (await sql(op, {"query": q})).json() == [{"c": 1}]
    q = (
        "SELECT TIME_FLOOR(__time, 'PT1H') AS h, COUNT(*) AS c FROM wiki "
        "WHERE TIME_IN_INTERVAL(__time, '2016-06-28/2016-06-29') GROUP BY 1"
    )
    assert (await sql(op, {"query": q})).json() == [{"h": "2016-06-28T01:00:00.000Z", "c": 1}]


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("object", b'[{"page":"A","c":2},{"page":"B","c":1}]'),
        ("array", b'[["A",2],["B",1]]'),
        ("objectLines", b'{"page":"A","c":2}\n{"page":"B","c":1}\n\n'),
        ("arrayLines", b'["A",2]\n["B",1]\n\n'),
        ("csv", b"A,2\nB,1\n\n"),
    ],
)
async def test_result_formats(op: InProcess, fmt: str, expected: bytes) -> None:
    q = "SELECT page, COUNT(*) AS c FROM wiki GROUP BY page ORDER BY page"
    r = await sql(op, {"query": q, "resultFormat": fmt})
    assert r.content == expected
    assert "X-Druid-SQL-Header-Included" not in r.headers


async def test_headers_with_types(op: InProcess) -> None:
    q = "SELECT __time, page, added, 1.5 AS d FROM wiki ORDER BY __time LIMIT 1"
    body = {"query": q, "resultFormat": "array", "header": True, "typesHeader": True, "sqlTypesHeader": True}
    r = await sql(op, body)
    assert r.headers["X-Druid-SQL-Header-Included"] == "yes"
    assert r.json() == [
        ["__time", "page", "added", "d"],
        ["LONG", "STRING", "LONG", "DOUBLE"],
        ["TIMESTAMP", "VARCHAR", "BIGINT", "DOUBLE"],
        ["2016-06-27T01:00:00.000Z", "A", 10, 1.5],
    ]
    r = await sql(op, {**body, "resultFormat": "object"})
    assert r.json()[0]["page"] == {"type": "STRING", "sqlType": "VARCHAR"}
    r = await sql(op, {"query": q, "resultFormat": "csv", "header": True})
    assert list(csv.reader(io.StringIO(r.text)))[:2] == [
        ["__time", "page", "added", "d"],
        ["2016-06-27T01:00:00.000Z", "A", "10", "1.5"],
    ]
    r = await sql(op, {"query": q, "resultFormat": "object", "header": True})
    assert r.json()[0] == {"__time": None, "page": None, "added": None, "d": None}


async def test_text_plain_body_and_parameters(op: InProcess) -> None:
    r = await sql(op, "SELECT COUNT(*) AS c FROM wiki")
    assert r.json() == [{"c": 3}]
    form = {"Content-Type": "application/x-www-form-urlencoded"}  # curl --data-urlencode
    r = await op.http.post(SQL, content=b"SELECT%20COUNT(*)%20AS%20c%20FROM%20wiki", headers=form)
    assert r.status_code == 200 and r.json() == [{"c": 3}]
    r = await op.http.post(SQL, json={"query": "SELECT 1 AS one", "typesHeader": True})
    assert r.json() == [{"one": 1}]  # types need header: ignored without it
    body = {
        "query": "SELECT COUNT(*) AS c FROM wiki WHERE page = ? AND added > ?",
        "parameters": [{"type": "VARCHAR", "value": "A"}, {"type": "BIGINT", "value": 8}],
    }
    assert (await sql(op, body)).json() == [{"c": 1}]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"query": "SELECT FROM WHERE"}, None),
        ({"query": "SELECT nope FROM wiki"}, None),
        ({"query": "SELECT LOOKUP(page, 'x') FROM wiki"}, None),
        ({"query": "INSERT INTO wiki SELECT * FROM wiki"}, None),
        ({"query": ""}, "query"),
        ({"query": "SELECT 1", "resultFormat": "xml"}, "resultFormat"),
        ({"query": "SELECT 1", "header": "yes"}, "header"),
        ({"query": "SELECT 1", "context": {"timeout": "soon"}}, None),
        ({"query": "SELECT ?", "parameters": []}, "parameters"),
        ({"query": "SELECT * FROM sys.nope"}, None),
    ],
)
async def test_bad_requests_are_400_in_druids_shape(op: InProcess, body: dict[str, Any], field: str | None) -> None:
    r = await sql(op, body, 400)
    err = r.json()
    assert (
        err["error"] == "druidException" and err["errorCode"] == "invalidInput" and err["category"] == "INVALID_INPUT"
    )
    assert err["errorMessage"]
    if field is not None:
        assert err["context"].get("field") == field


async def test_ingestion_on_the_query_api_points_to_the_task_api(op: InProcess) -> None:
    q = "REPLACE INTO wiki OVERWRITE ALL SELECT * FROM wiki PARTITIONED BY DAY"
    err = (await sql(op, {"query": q}, 400)).json()
    assert "/druid/v2/sql/task" in err["errorMessage"]


async def test_syntax_error_names_line_and_column(op: InProcess) -> None:
    err = (await sql(op, {"query": "SELECT page\nFROM wiki WHERE"}, 400)).json()
    assert err["context"]["sourceType"] == "sql" and "line" in err["context"]


SLOW = "SELECT COUNT(*) AS c FROM range(1000000000) a(x), range(1000) b(y) WHERE x * y % 7 = 3"


async def test_cancel_by_query_id_stops_it(op: InProcess) -> None:
    body = {"query": SLOW, "context": {"sqlQueryId": "q-cancel-me"}}
    running = asyncio.create_task(op.http.post(SQL, json=body))
    for _ in range(200):
        if op.service.sql.is_running("q-cancel-me"):
            break
        await asyncio.sleep(0.02)
    r = await op.http.delete(f"{SQL}/q-cancel-me")
    assert r.status_code == 202
    answer = await asyncio.wait_for(running, 20)
    assert answer.status_code == 500 and answer.json()["category"] == "CANCELED"
    assert (await op.http.delete(f"{SQL}/q-cancel-me")).status_code == 404
    # The task API kept answering while it ran, and the engine takes the next query.
    assert (await sql(op, {"query": "SELECT 1 AS one"})).json() == [{"one": 1}]


async def test_timeout_is_504(op: InProcess) -> None:
    r = await op.http.post(SQL, json={"query": SLOW, "context": {"timeout": 200}})
    assert r.status_code == 504 and r.json()["errorCode"] == "timeout"


async def test_sys_tasks_agrees_with_the_tasks_api(op: InProcess) -> None:
    held = await op.holder("wiki")
    done = await op.holder("other")
    op.runner.finish(done, success=False, error="boom")
    for _ in range(100):
        if (await op.status(done))["status"] == "FAILED":
            break
        await asyncio.sleep(0.02)
    listed = {t["id"]: t for t in (await op.http.get("/druid/indexer/v1/tasks")).json()}
    rows = (await sql(op, {"query": "SELECT * FROM sys.tasks"})).json()
    assert {r["task_id"] for r in rows} == set(listed)
    for r in rows:
        t = listed[r["task_id"]]
        assert (r["status"], r["runner_status"], r["datasource"], r["type"]) == (
            t["statusCode"],
            t["runnerStatusCode"],
            t["dataSource"],
            t["type"],
        )
        assert r["created_time"] == t["createdTime"] and r["error_msg"] == t["errorMsg"]
    by_id = {r["task_id"]: r for r in rows}
    assert by_id[held]["status"] == "RUNNING" and by_id[done]["error_msg"] == "boom"


@pytest.mark.parametrize(
    "name", ["tasks_view", "datasources_view", "segments_view", "services_view", "servers_with_segments", "columns"]
)
async def test_console_queries_answer(op: InProcess, name: str) -> None:
    await op.holder("wiki")
    rows = (await sql(op, {"query": (CONSOLE / f"{name}.sql").read_text()})).json()
    assert rows
    if name == "datasources_view":
        assert rows == [
            {
                "datasource": "wiki",
                "num_segments": 2,
                "num_available_segments": 2,
                "num_segments_to_load": 0,
                "num_segments_to_drop": 0,
                "replicated_size": rows[0]["size"],
                "size": rows[0]["size"],
                "avg_segment_size": rows[0]["size"] // 2,
                "num_rows": 3,
            }
        ]
    if name == "columns":
        assert [(r["TABLE_NAME"], r["COLUMN_NAME"], r["DATA_TYPE"]) for r in rows] == [
            ("wiki", "__time", "TIMESTAMP"),
            ("wiki", "page", "VARCHAR"),
            ("wiki", "added", "BIGINT"),
        ]
    if name == "tasks_view":
        assert rows[0]["status"] == "RUNNING"
    if name == "segments_view":
        assert [(r["start"], r["time_span"], r["is_active"]) for r in rows] == [
            ("2016-06-28T00:00:00.000Z", "Day", 1),
            ("2016-06-27T00:00:00.000Z", "Day", 1),
        ]
        assert rows[1]["num_rows"] == 2 and rows[1]["avg_row_size"] == rows[1]["size"] // 2
    if name == "services_view":
        assert [r["service_type"] for r in rows] == ["coordinator", "overlord", "broker", "historical"]
        assert rows[0]["is_leader"] == 1 and rows[3]["curr_size"] > 0


async def test_information_schema_and_sys_tables(op: InProcess) -> None:
    rows = (
        await sql(op, {"query": "SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_TYPE FROM INFORMATION_SCHEMA.TABLES"})
    ).json()
    assert {"TABLE_SCHEMA": "druid", "TABLE_NAME": "wiki", "TABLE_TYPE": "TABLE"} in rows
    assert {"TABLE_SCHEMA": "sys", "TABLE_NAME": "tasks", "TABLE_TYPE": "SYSTEM_TABLE"} in rows
    names = (await sql(op, {"query": "SELECT SCHEMA_NAME FROM INFORMATION_SCHEMA.SCHEMATA"})).json()
    assert {"SCHEMA_NAME": "druid"} in names
    assert (await sql(op, {"query": "SELECT COUNT(*) AS c FROM sys.supervisors"})).json() == [{"c": 0}]
    served = (await sql(op, {"query": "SELECT COUNT(*) AS c FROM sys.server_segments"})).json()
    assert served == [{"c": 2}]
    servers = (await sql(op, {"query": "SELECT server_type, is_leader FROM sys.servers ORDER BY 1"})).json()
    assert [s["server_type"] for s in servers] == ["broker", "coordinator", "historical", "overlord"]


async def test_row_limit(tmp_path: Path) -> None:
    async with inprocess_service(tmp_path, sql_max_rows=5) as op:
        r = await sql(op, {"query": "SELECT * FROM range(10)"}, 400)
        assert "5 rows" in r.json()["errorMessage"]
        assert (await sql(op, {"query": "SELECT * FROM range(5)"})).json()
