"""An in-memory Overlord answering task actions and the task API over ``httpx.MockTransport``.

Just enough of docs/task-actions.md to run the task code in-process: time-chunk locks shared by
groupId with increasing versions, segmentAllocate numbering, publishing with overshadowing, and
sub-tasks run synchronously when submitted.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from overlord.isotime import Interval, format_ms
from overlord.runner.toolbox import REPORT_FILE, FileReportSink, PeonRuntime, TaskToolbox, read_json
from overlord.storage.deep_storage import FsDeepStorage


@dataclass
class FakeOverlord:
    root: Path
    allowed: list[Path]
    locks: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # groupId -> locks
    groups: dict[str, str] = field(default_factory=dict)  # task id -> group id
    segments: list[dict[str, Any]] = field(default_factory=list)  # each with "_used"
    pending: list[dict[str, Any]] = field(default_factory=list)
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)  # sub-task id -> status
    payloads: dict[str, dict[str, Any]] = field(default_factory=dict)
    actions: list[dict[str, Any]] = field(default_factory=list)
    fail_insert: bool = False
    fail_sub_task: str | None = None
    version_ms: int = 1_700_000_000_000

    @property
    def deep(self) -> Path:
        return self.root / "deep"

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def toolbox(self, payload: dict[str, Any]) -> TaskToolbox:
        task_id = payload["id"]
        self.groups.setdefault(task_id, payload.get("groupId") or task_id)
        task_dir = self.root / "tasks" / task_id
        task_dir.mkdir(parents=True, exist_ok=True)
        runtime = PeonRuntime(
            overlord_url="http://overlord.test",
            deep_storage=f"file://{self.deep}",
            allowed_input_dirs=tuple(str(p) for p in self.allowed),
        )
        return TaskToolbox(
            task_id,
            payload,
            task_dir,
            runtime,
            deep_storage=FsDeepStorage.from_uri(runtime.deep_storage),
            reports=FileReportSink(task_dir),
            log=logging.getLogger(f"test.{task_id}"),
        )

    def used(self, ds: str | None = None) -> list[dict[str, Any]]:
        return [s for s in self.segments if s["_used"] and (ds is None or s["dataSource"] == ds)]

    # ---- HTTP ------------------------------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        body = json.loads(request.content) if request.content else None
        if path == "/druid/indexer/v1/action":
            self.actions.append(body["action"])
            return self.action(body["task"], body["action"])
        if path == "/druid/indexer/v1/task" and request.method == "POST":
            return self.submit(body)
        if path == "/druid/indexer/v1/taskStatus":
            return httpx.Response(200, json={i: self.tasks[i] for i in body if i in self.tasks})
        if path.endswith("/reports"):
            task_id = path.split("/")[-2]
            report = read_json(self.root / "tasks" / task_id / REPORT_FILE)
            return httpx.Response(200, json=report) if report else httpx.Response(404, json={"error": "no report"})
        if path.endswith("/shutdown"):
            return httpx.Response(200, json={"task": path.split("/")[-2]})
        return httpx.Response(404, json={"error": f"no route {path}"})

    def submit(self, payload: dict[str, Any]) -> httpx.Response:
        from overlord.tasks.index import run_sub_task

        task_id = payload["id"]
        self.payloads[task_id] = payload
        toolbox = self.toolbox(payload)
        if self.fail_sub_task == task_id:
            self.tasks[task_id] = {"id": task_id, "status": "FAILED", "errorMsg": "boom"}
            return httpx.Response(200, json={"task": task_id})
        try:
            run_sub_task(toolbox)
            self.tasks[task_id] = {"id": task_id, "status": "SUCCESS", "errorMsg": None}
        except Exception as exc:
            self.tasks[task_id] = {"id": task_id, "status": "FAILED", "errorMsg": str(exc)}
        return httpx.Response(200, json={"task": task_id})

    def error(self, status: int, message: str) -> httpx.Response:
        return httpx.Response(status, json={"error": "druidException", "errorMessage": message})

    def action(self, task_id: str, a: dict[str, Any]) -> httpx.Response:
        kind = a["type"]
        group = self.groups.setdefault(task_id, task_id)
        if kind in ("lockAcquire", "lockTryAcquire"):
            return httpx.Response(200, json={"result": self.lock(group, Interval.parse(a["interval"]))})
        if kind == "lockList":
            return httpx.Response(200, json={"result": self.locks.get(group, [])})
        if kind == "segmentAllocate":
            return httpx.Response(200, json={"result": self.allocate(group, a)})
        if kind == "segmentTransactionalInsert":
            if self.fail_insert:
                return self.error(409, "locks were revoked")
            for s in a["segments"]:
                iv = Interval.parse(s["interval"])
                for old in self.used(s["dataSource"]):
                    if Interval.parse(old["interval"]) == iv and old["version"] < s["version"]:
                        old["_used"] = False
                self.segments.append({**s, "_used": True})
            return httpx.Response(200, json={"result": {"success": True, "segments": a["segments"]}})
        if kind == "segmentListUsed":
            ivs = [Interval.parse(i) for i in a["intervals"]]
            out = [
                {k: v for k, v in s.items() if k != "_used"}
                for s in self.used(a["dataSource"])
                if any(Interval.parse(s["interval"]).overlaps(iv) for iv in ivs)
            ]
            return httpx.Response(200, json={"result": out})
        if kind == "retrieveUnusedSegments":
            iv = Interval.parse(a["interval"])
            out = [
                {k: v for k, v in s.items() if k != "_used"}
                for s in self.segments
                if not s["_used"] and s["dataSource"] == a["dataSource"] and iv.contains(Interval.parse(s["interval"]))
            ]
            return httpx.Response(200, json={"result": out})
        if kind == "segmentNuke":
            ids = {s["identifier"] for s in a["segments"]}
            self.segments = [s for s in self.segments if s["identifier"] not in ids]
            return httpx.Response(200, json={"result": None})
        if kind == "markSegmentsAsUnused":
            iv = Interval.parse(a["interval"])
            n = 0
            for s in self.used(a["dataSource"]):
                if iv.contains(Interval.parse(s["interval"])):
                    s["_used"] = False
                    n += 1
            return httpx.Response(200, json={"result": {"numChangedSegments": n}})
        return self.error(400, f"unknown action {kind}")

    def lock(self, group: str, iv: Interval) -> dict[str, Any]:
        for lock in self.locks.get(group, []):
            if Interval.parse(lock["interval"]).contains(iv):
                return lock
        self.version_ms += 1000
        lock = {"granularity": "TIME_CHUNK", "type": "EXCLUSIVE", "groupId": group, "interval": str(iv),
                "version": format_ms(self.version_ms), "priority": 50, "revoked": False}  # fmt: skip
        self.locks.setdefault(group, []).append(lock)
        return lock

    def allocate(self, group: str, a: dict[str, Any]) -> dict[str, Any]:
        from overlord.core import granularity
        from overlord.isotime import parse_instant_ms

        iv = granularity.parse(a["preferredSegmentGranularity"]).bucket(parse_instant_ms(a["timestamp"]))
        for p in self.pending:
            if (p["sequenceName"], p["prev"]) == (a["sequenceName"], a["previousSegmentId"]):
                return p["result"]
        existing = [s for s in self.used(a["dataSource"]) if Interval.parse(s["interval"]) == iv]
        version = max((s["version"] for s in existing), default=None) or self.lock(group, iv)["version"]
        taken = [s["shardSpec"]["partitionNum"] for s in existing if s["version"] == version]
        taken += [p["result"]["shardSpec"]["partitionNum"] for p in self.pending if p["result"]["version"] == version]
        core = max((s["shardSpec"].get("partitions", 0) for s in existing), default=0)
        pn = max(taken, default=-1) + 1
        result = {"dataSource": a["dataSource"], "interval": str(iv), "version": version,
                  "shardSpec": {"type": "numbered", "partitionNum": pn, "partitions": core}}  # fmt: skip
        self.pending.append({"sequenceName": a["sequenceName"], "prev": a["previousSegmentId"], "result": result})
        return result
