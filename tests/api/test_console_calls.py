"""Every HTTP call Druid's web console makes without SQL, as the console makes it, with the fields it reads.

The console probes ``POST /druid/v2/sql``; when that answers 404/405 and ``/druid/coordinator/v1/isLeader`` and
``/druid/indexer/v1/isLeader`` answer, it runs in its "Coordinator/Overlord" mode and draws every view from the
calls below. Each entry names the console source file (under ``web-console/src/``) it was read from. ``fields``
are dotted paths the console reads in the JSON answer; ``[]`` stands for "each element of the list" (an empty list
passes only when the entry allows it, see ``nonempty``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from overlord.tasks.action_client import TOKEN_HEADER

from .inprocess import InProcess, inprocess_service
from .test_task_actions_api import DAY, segment

pytestmark = pytest.mark.anyio

C = "/druid/coordinator/v1"
O = "/druid/indexer/v1"  # noqa: E741 (the Overlord's prefix, as short as the Coordinator's)
AUTHOR = {"X-Druid-Author": "console", "X-Druid-Comment": "from the console test"}


@dataclass(frozen=True)
class Call:
    method: str
    path: str  # {ds}, {task}, {segment}, {interval} are filled in from the fixture
    source: str  # console file the call was read from
    fields: tuple[str, ...] = ()
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    nonempty: bool = True  # a list answer must hold at least one element to check fields on
    text: bool = False  # the console reads the body as text (logs)


# Reads: every view and card of the Coordinator/Overlord mode, in the order the console loads them.
READS: list[Call] = [
    # helpers/capabilities.ts: status works, the Coordinator and the Overlord are here (SQL probed separately)
    Call("GET", "/status?capabilities", "helpers/capabilities.ts"),
    Call("GET", f"{C}/isLeader?capabilities", "helpers/capabilities.ts"),
    Call("GET", f"{O}/isLeader?capabilities", "helpers/capabilities.ts"),
    # helpers/capacity.ts (maxTaskSlots) and views/services-view (worker detail)
    Call(
        "GET",
        f"{O}/workers",
        "helpers/capacity.ts",
        (
            "[].currCapacityUsed",
            "[].worker.capacity",
            "[].worker.host",
            "[].worker.version",
            "[].worker.category",
            "[].runningTasks",
            "[].availabilityGroups",
            "[].lastCompletedTaskTime",
            "[].blacklistedUntil",
        ),
    ),
    # views/home-view/status-card/status-card.tsx and dialogs/status-dialog/status-dialog.tsx
    Call("GET", "/status", "views/home-view/status-card/status-card.tsx", ("version", "modules")),
    # views/home-view/datasources-card/datasources-card.tsx (a list of names)
    Call("GET", f"{C}/datasources", "views/home-view/datasources-card/datasources-card.tsx", ("[]",)),
    # views/home-view/segments-card/segments-card.tsx and views/datasources-view/datasources-view.tsx
    Call("GET", f"{C}/loadstatus?simple", "views/home-view/segments-card/segments-card.tsx", ("{ds}",)),
    Call(
        "GET",
        f"{C}/datasources?simple",
        "views/home-view/segments-card/segments-card.tsx",
        ("[].name", "[].properties.segments.count", "[].properties.segments.size"),
    ),
    # views/home-view/supervisors-card/supervisors-card.tsx (reads [].spec.suspended of each supervisor)
    Call("GET", f"{O}/supervisor?full", "views/home-view/supervisors-card/supervisors-card.tsx", nonempty=False),
    # views/home-view/tasks-card/tasks-card.tsx and views/tasks-view/tasks-view.tsx (parseTasks)
    Call(
        "GET",
        f"{O}/tasks",
        "views/tasks-view/tasks-view.tsx",
        (
            "[].id",
            "[].groupId",
            "[].type",
            "[].createdTime",
            "[].dataSource",
            "[].duration",
            "[].errorMsg",
            "[].location.host",
            "[].location.port",
            "[].statusCode",
            "[].runnerStatusCode",
        ),
    ),
    # older views/home-view/tasks-card/tasks-card.tsx: four listings, completeTasks filtered on [].status
    Call("GET", f"{O}/completeTasks", "views/home-view/tasks-card/tasks-card.tsx (older)", ("[].status",)),
    Call("GET", f"{O}/runningTasks", "views/home-view/tasks-card/tasks-card.tsx (older)", ("[].id",)),
    Call("GET", f"{O}/pendingTasks", "views/home-view/tasks-card/tasks-card.tsx (older)", ("[].id",)),
    Call("GET", f"{O}/waitingTasks", "views/home-view/tasks-card/tasks-card.tsx (older)", nonempty=False),
    # views/home-view/services-card/services-card.tsx and views/services-view/services-view.tsx
    Call(
        "GET",
        f"{C}/servers?simple",
        "views/services-view/services-view.tsx",
        ("[].host", "[].type", "[].tier", "[].currSize", "[].maxSize"),
    ),
    Call("GET", f"{C}/loadqueue?simple", "views/services-view/services-view.tsx (Detail column)"),
    Call(
        "GET",
        f"{C}/config",
        "views/services-view/services-view.tsx (Detail column)",
        ("decommissioningNodes", "turboLoadingNodes"),
    ),
    # views/home-view/lookups-card/lookups-card.tsx and views/lookups-view/lookups-view.tsx
    Call("GET", f"{C}/lookups/status", "views/home-view/lookups-card/lookups-card.tsx"),
    Call("GET", f"{C}/lookups/config?discover=true", "views/lookups-view/lookups-view.tsx", nonempty=False),
    Call("GET", f"{C}/lookups/config/all", "views/lookups-view/lookups-view.tsx"),
    # views/datasources-view/datasources-view.tsx (no-SQL branch and its auxiliary queries)
    Call(
        "GET", f"{O}/tasks?state=running", "views/datasources-view/datasources-view.tsx", ("[].dataSource", "[].type")
    ),
    Call("GET", f"{C}/metadata/datasources?includeUnused", "views/datasources-view/datasources-view.tsx", ("[]",)),
    Call("GET", f"{C}/rules", "views/datasources-view/datasources-view.tsx", ("_default",)),
    Call(
        "GET",
        f"{O}/compaction/config/datasources",
        "views/datasources-view/datasources-view.tsx",
        ("compactionConfigs",),
    ),
    Call("GET", f"{O}/compaction/status/datasources", "views/datasources-view/datasources-view.tsx", ("latestStatus",)),
    # the same two in consoles before the compaction API moved to the Overlord
    Call(
        "GET",
        f"{C}/config/compaction",
        "views/datasources-view/datasources-view.tsx (older)",
        ("compactionConfigs", "compactionTaskSlotRatio", "maxCompactionTaskSlots"),
    ),
    Call("GET", f"{C}/compaction/status", "views/datasources-view/datasources-view.tsx (older)", ("latestStatus",)),
    # dialogs/retention-dialog/retention-dialog.tsx
    Call("GET", f"{C}/rules/{{ds}}/history?count=200", "dialogs/retention-dialog/retention-dialog.tsx", nonempty=False),
    # dialogs/compaction-config-dialog (history) and compaction-dynamic-config-dialog
    Call(
        "GET",
        f"{O}/compaction/config/datasources/{{ds}}/history?count=20",
        "dialogs/compaction-config-dialog/compaction-config-dialog.tsx",
        nonempty=False,
    ),
    Call(
        "GET",
        f"{O}/compaction/config/cluster",
        "dialogs/compaction-dynamic-config-dialog/compaction-dynamic-config-dialog.tsx",
        ("compactionTaskSlotRatio", "maxCompactionTaskSlots"),
    ),
    # views/segments-view/segments-view.tsx (no-SQL branch), the segment timeline, the segment detail dialog
    Call("GET", f"{C}/metadata/datasources", "views/segments-view/segments-view.tsx", ("[]",)),
    Call(
        "GET",
        f"{C}/metadata/segments?includeOvershadowedStatus&includeRealtimeSegments",
        "views/segments-view/segments-view.tsx",
        (
            "[].identifier",
            "[].dataSource",
            "[].interval",
            "[].version",
            "[].shardSpec.partitionNum",
            "[].size",
            "[].overshadowed",
        ),
    ),
    Call(
        "GET",
        f"{C}/datasources/{{ds}}?full",
        "views/segments-view/segments-view.tsx (older)",
        ("segments.[].identifier", "segments.[].interval", "segments.[].shardSpec", "segments.[].size"),
    ),
    Call(
        "GET",
        f"{C}/metadata/datasources/{{ds}}/segments/{{segment}}",
        "dialogs/segments-table-action-dialog/segment-table-action-dialog.tsx",
        ("identifier", "interval"),
    ),
    # dialogs/task-table-action-dialog/task-table-action-dialog.tsx: status, payload, reports, log tail
    Call(
        "GET",
        f"{O}/task/{{task}}/status",
        "dialogs/task-table-action-dialog/task-table-action-dialog.tsx",
        ("status.id", "status.statusCode"),
    ),
    Call(
        "GET", f"{O}/task/{{task}}", "dialogs/task-table-action-dialog/task-table-action-dialog.tsx", ("payload.type",)
    ),
    Call(
        "GET",
        f"{O}/task/{{task}}/reports",
        "dialogs/task-table-action-dialog/task-table-action-dialog.tsx",
        ("ingestionStatsAndErrors.payload",),
    ),
    Call("GET", f"{O}/task/{{running}}/log?offset=-16000", "components/show-log/show-log.tsx", text=True),
    # dialogs/overlord-dynamic-config-dialog and coordinator-dynamic-config-dialog
    Call(
        "GET",
        f"{O}/worker",
        "dialogs/overlord-dynamic-config-dialog/overlord-dynamic-config-dialog.tsx",
        ("selectStrategy",),
    ),
    Call(
        "GET",
        f"{O}/worker/history?count=100",
        "dialogs/overlord-dynamic-config-dialog/overlord-dynamic-config-dialog.tsx",
        nonempty=False,
    ),
    Call(
        "GET",
        f"{C}/config/history?count=100",
        "dialogs/coordinator-dynamic-config-dialog/coordinator-dynamic-config-dialog.tsx",
        nonempty=False,
    ),
    # dialogs/doctor-dialog/doctor-checks.tsx
    Call("GET", "/status/properties", "dialogs/doctor-dialog/doctor-checks.tsx"),
]

# Writes the console's dialogs send, in an order that leaves the data source as it was.
WRITES: list[Call] = [
    Call(
        "POST",
        f"{C}/rules/{{ds}}",
        "views/datasources-view/datasources-view.tsx (saveRules)",
        body=[{"type": "loadForever", "tieredReplicants": {"_default_tier": 2}}],
        headers=AUTHOR,
    ),
    Call(
        "POST",
        f"{O}/compaction/config/datasources/{{ds}}",
        "views/datasources-view/datasources-view.tsx (saveCompaction)",
        body={"dataSource": "{ds}", "skipOffsetFromLatest": "P1D"},
    ),
    Call(
        "DELETE",
        f"{O}/compaction/config/datasources/{{ds}}",
        "views/datasources-view/datasources-view.tsx (deleteCompaction)",
    ),
    Call(
        "POST",
        f"{O}/compaction/config/cluster",
        "dialogs/compaction-dynamic-config-dialog/compaction-dynamic-config-dialog.tsx",
        body={"compactionTaskSlotRatio": 0.5, "maxCompactionTaskSlots": 4},
    ),
    Call(
        "POST",
        f"{C}/config/compaction/taskslots?ratio=0.1&max=2147483647",
        "dialogs/compaction-dynamic-config-dialog/compaction-dynamic-config-dialog.tsx (older)",
        body={},
    ),
    Call(
        "POST",
        f"{O}/datasources/{{ds}}/markUnused",
        "views/datasources-view/datasources-view.tsx",
        ("numChangedSegments",),
        body={"interval": DAY},
    ),
    Call(
        "POST",
        f"{O}/datasources/{{ds}}/markUsed",
        "views/datasources-view/datasources-view.tsx",
        ("numChangedSegments",),
        body={"interval": DAY},
    ),
    Call(
        "DELETE",
        f"{O}/datasources/{{ds}}",
        "views/datasources-view/datasources-view.tsx",
        ("numChangedSegments",),
        body=None,
    ),
    Call(
        "POST",
        f"{O}/datasources/{{ds}}",
        "views/datasources-view/datasources-view.tsx",
        ("numChangedSegments",),
        body={},
    ),
    Call(
        "DELETE",
        f"{O}/datasources/{{ds}}/segments/{{segment}}",
        "views/segments-view/segments-view.tsx",
        ("segmentStateChanged",),
    ),
    Call(
        "POST",
        f"{C}/datasources/{{ds}}/segments/{{segment}}",
        "views/segments-view/segments-view.tsx (older)",
        ("segmentStateChanged",),
    ),
    Call(
        "POST",
        f"{O}/worker",
        "dialogs/overlord-dynamic-config-dialog/overlord-dynamic-config-dialog.tsx",
        body={"selectStrategy": {"type": "fillCapacity"}, "autoScaler": None},
        headers=AUTHOR,
    ),
    Call(
        "POST",
        f"{C}/config",
        "dialogs/coordinator-dynamic-config-dialog/coordinator-dynamic-config-dialog.tsx",
        body={"maxSegmentsToMove": 5, "decommissioningNodes": []},
        headers=AUTHOR,
    ),
    Call("POST", f"{O}/task/{{running}}/shutdown", "views/tasks-view/tasks-view.tsx (kill)", ("task",), body={}),
]


def dig(value: Any, path: str) -> list[Any]:
    """The values at a dotted path; ``[]`` fans out over a list's elements."""
    values = [value]
    for part in path.split("."):
        nxt: list[Any] = []
        for v in values:
            if part == "[]":
                assert isinstance(v, list), f"{path}: {part} on {type(v).__name__}"
                nxt.extend(v)
            else:
                assert isinstance(v, dict) and part in v, f"{path}: no {part!r} in {v!r:.300}"
                nxt.append(v[part])
        values = nxt
    return values


@dataclass
class Fixture:
    o: InProcess
    names: dict[str, str]

    def fill(self, text: str) -> str:
        return text.format(**self.names)

    def fill_body(self, body: Any) -> Any:
        if isinstance(body, str):
            return self.fill(body)
        if isinstance(body, dict):
            return {k: self.fill_body(v) for k, v in body.items()}
        if isinstance(body, list):
            return [self.fill_body(v) for v in body]
        return body

    async def call(self, c: Call) -> Any:
        kwargs: dict[str, Any] = {"headers": c.headers}
        if c.body is not None:
            kwargs["json"] = self.fill_body(c.body)
        r = await self.o.http.request(c.method, self.fill(c.path), **kwargs)
        assert r.status_code == 200, f"{c.method} {c.path} ({c.source}): {r.status_code} {r.text[:300]}"
        if c.text:
            return r.text
        if not r.content and not c.fields:
            return None  # Druid answers some writes with an empty 200
        body = r.json()
        for path in c.fields:
            found = dig(body, self.fill(path))
            assert found or not c.nonempty, f"{c.method} {c.path} ({c.source}): nothing at {path}"
        if c.nonempty and not c.fields and isinstance(body, list):
            assert body, f"{c.method} {c.path} ({c.source}): empty list"
        return body


def token(o: InProcess, task_id: str) -> dict[str, str]:
    return {TOKEN_HEADER: o.token(task_id)}


async def console_fixture(o: InProcess) -> Fixture:
    """One ingested data source (two segments), a successful, a failed, a running and a pending task."""
    deep = o.service.settings.deep_storage_dir.resolve()
    ingest = await o.holder()
    await o.act(ingest, {"type": "lockAcquire", "interval": DAY})
    version = (await o.act(ingest, {"type": "lockList"}))[0]["version"]
    segs = [segment("wiki", DAY, version, p, deep, partitions=2) for p in (0, 1)]
    await o.act(ingest, {"type": "segmentTransactionalInsert", "segments": segs})
    report = {"ingestionStatsAndErrors": {"type": "ingestionStatsAndErrors", "taskId": ingest, "payload": {
        "ingestionState": "COMPLETED", "rowStats": {}, "unparseableEvents": {}, "errorMsg": None}}}  # fmt: skip
    r = await o.http.post(f"{O}/peon/{ingest}/reports", json=report, headers=token(o, ingest))
    assert r.status_code == 200, r.text
    o.runner.finish(ingest)
    await o.status(ingest)
    failed = await o.holder()
    o.runner.finish(failed, success=False, error="boom")
    await o.status(failed)
    running = await o.holder()
    o.runner.running[running].log.extend(b"INFO running\n")
    await o.submit({"type": "noop", "dataSource": "wiki"})  # pending: capacity is 1
    listed = (await o.http.get(f"{C}/metadata/segments")).json()
    names = {"ds": "wiki", "task": ingest, "running": running, "segment": listed[0]["identifier"],
             "interval": DAY.replace("/", "_")}  # fmt: skip
    return Fixture(o, names)


async def failed_calls(fx: Fixture, calls: list[Call]) -> str:
    """Every call made, and what each failed on (one line each), so one run shows all the gaps."""
    failures = []
    for c in calls:
        try:
            await fx.call(c)
        except AssertionError as e:
            failures.append(str(e))
    return "\n".join(failures)


async def test_console_reads_answer_with_the_fields_the_console_reads(tmp_path: Path) -> None:
    async with inprocess_service(tmp_path, capacity=1) as o:
        fx = await console_fixture(o)
        failures = await failed_calls(fx, READS)
        assert not failures, failures


async def test_console_writes_are_accepted_and_seen_by_the_reads(tmp_path: Path) -> None:
    async with inprocess_service(tmp_path, capacity=1) as o:
        fx = await console_fixture(o)
        failures = await failed_calls(fx, WRITES)
        assert not failures, failures
        rules = (await o.http.get(f"{C}/rules")).json()
        assert rules["wiki"] == [{"type": "loadForever", "tieredReplicants": {"_default_tier": 2}}]
        (record,) = (await o.http.get(f"{C}/rules/wiki/history?count=200")).json()
        assert record["auditInfo"]["author"] == "console"
        cluster = (await o.http.get(f"{O}/compaction/config/cluster")).json()
        assert (cluster["compactionTaskSlotRatio"], cluster["maxCompactionTaskSlots"]) == (0.1, 2147483647)
        assert (await o.http.get(f"{C}/config")).json()["maxSegmentsToMove"] == 5
        assert len((await o.http.get(f"{C}/config/history?count=100")).json()) == 1
        assert (await o.http.get(f"{O}/worker")).json()["selectStrategy"] == {"type": "fillCapacity"}
        simple = (await o.http.get(f"{C}/datasources?simple")).json()
        assert simple[0]["properties"]["segments"]["count"] == 2  # every segment back in use


async def test_the_console_enters_its_full_mode(tmp_path: Path) -> None:
    """helpers/capabilities.ts: SQL answers, so the console believes it talks to a Router and needs the
    management proxy (/proxy/enabled) for its Coordinator and Overlord views, and the MSQ task engine."""
    async with inprocess_service(tmp_path) as o:
        probe = {"query": "SELECT 1337", "context": {"timeout": 15000}}
        r = await o.http.post("/druid/v2/sql?capabilities", json=probe)
        assert r.status_code == 200 and r.json() == [{"EXPR$0": 1337}]
        assert (await o.http.get("/proxy/enabled?capabilities")).status_code == 200
        assert (await o.http.get("/druid/v2/sql/task/enabled?capabilities")).json() == {"enabled": True}
        for prefix, path in (("/proxy/overlord", f"{O}/tasks"), ("/proxy/coordinator", f"{C}/isLeader")):
            direct, proxied = await o.http.get(path), await o.http.get(prefix + path)
            assert (proxied.status_code, proxied.json()) == (direct.status_code, direct.json())


async def test_console_refusals_name_the_field(tmp_path: Path) -> None:
    async with inprocess_service(tmp_path) as o:
        r = await o.http.post(f"{C}/rules/wiki", json={"type": "loadForever"})
        assert r.status_code == 400 and "rules" in r.json()["message"]
        r = await o.http.post(f"{C}/rules/wiki", json=[{"type": "loadSometimes"}])
        assert r.status_code == 400 and "type" in r.json()["message"]
        r = await o.http.post(f"{C}/config", json={"maxSegmentsToMove": "many"})
        assert r.status_code == 400 and "maxSegmentsToMove" in r.json()["message"]
        r = await o.http.post(f"{O}/compaction/config/cluster", json={"compactionTaskSlotRatio": 2})
        assert r.status_code == 400 and "compactionTaskSlotRatio" in r.json()["message"]
        r = await o.http.post(f"{C}/config/compaction/taskslots?ratio=x")
        assert r.status_code == 400 and "ratio" in r.json()["message"]
        r = await o.http.post(f"{C}/lookups/config", json={})
        assert r.status_code == 400 and "lookups" in r.json()["message"].lower()
