"""Every endpoint method, through the blocking client (the async one runs the same operations)."""

from __future__ import annotations

import asyncio

import pytest
from client_fakes import FakeOverlord, FakeTime, index_spec, make_async_client

from overlord.client import Client, NotFoundError, errors


def test_submit_sends_spec_with_deterministic_id(client: Client, fake: FakeOverlord) -> None:
    tid = client.submit(index_spec())
    assert tid.startswith("index_parallel_wiki_") and len(tid.rsplit("_", 1)[1]) == 16
    assert fake.tasks[tid].payload["id"] == tid
    assert fake.tasks[tid].payload["spec"]["dataSchema"]["dataSource"] == "wiki"


def test_status_parses_druid_shape(client: Client, fake: FakeOverlord) -> None:
    fake.add("t1", {"type": "noop", "dataSource": "ds"})
    st = client.status("t1")
    assert (st.id, st.status_code, st.runner_status_code, st.state) == ("t1", "RUNNING", "WAITING", "WAITING")
    assert st.duration == -1 and st.location is not None and st.location.port == 8100
    assert st.data_source == "ds" and not st.is_terminal


def test_status_unknown_is_not_found_with_druid_message(client: Client) -> None:
    with pytest.raises(NotFoundError) as info:
        client.status("nope")
    assert info.value.status_code == 404 and info.value.druid_error_code == "notFound"
    assert "Cannot find any task" in str(info.value)
    assert isinstance(info.value, errors._server.NotFound)


def test_bulk_statuses_leave_out_unknown_and_skip_empty(client: Client, fake: FakeOverlord) -> None:
    fake.add("a", steps=[])
    fake.add("b")
    got = client.statuses(["a", "b", "zzz"])
    assert set(got) == {"a", "b"}
    assert got["a"].status_code == "SUCCESS" and got["a"].duration == 1234
    assert got["b"].status_code == "RUNNING"
    before = len(fake.requests)
    assert client.statuses([]) == {}
    assert len(fake.requests) == before


def test_tasks_filters_become_query_params(client: Client, fake: FakeOverlord) -> None:
    fake.add("a", {"type": "index_parallel", "dataSource": "x"}, steps=[])
    fake.add("b", {"type": "kill", "dataSource": "y"})
    assert [t.id for t in client.tasks()] == ["a", "b"]
    assert [t.id for t in client.tasks(state="complete")] == ["a"]
    assert [t.id for t in client.tasks(state="waiting", datasource="y")] == ["b"]
    assert [t.id for t in client.tasks(type="index_parallel")] == ["a"]
    seen: list[str] = []
    fake.on("GET", "/tasks", lambda r: seen.append(str(r.url.query, "ascii")) or None)  # type: ignore[func-returns-value]
    client.tasks(state="complete", max=5, created_time_interval="2024-01-01/2024-01-02")
    assert seen == ["state=complete&createdTimeInterval=2024-01-01_2024-01-02&max=5"]


def test_state_lists(client: Client, fake: FakeOverlord) -> None:
    fake.add("w")
    fake.add("p", position=1)
    fake.add("r", position=2)
    fake.add("c", steps=[])
    assert [t.id for t in client.waiting_tasks()] == ["w"]
    assert [t.id for t in client.pending_tasks()] == ["p"]
    assert [t.id for t in client.running_tasks()] == ["r"]
    assert [t.id for t in client.complete_tasks()] == ["c"]
    client.complete_tasks(n=3)
    assert fake.requests[-1] == ("GET", "/druid/indexer/v1/completeTasks")


def test_payload_log_report(client: Client, fake: FakeOverlord) -> None:
    task = fake.add("t", {"type": "noop", "id": "t", "x": 1})
    assert client.payload("t") == {"type": "noop", "id": "t", "x": 1}
    with pytest.raises(NotFoundError):
        client.log("t")
    task.log = b"line1\nline2\n"
    assert client.log("t") == "line1\nline2\n"
    assert client.log("t", offset=6) == "line2\n"
    assert client.log("t", offset=-3) == "e2\n"
    rep = client.report("t")
    assert rep.ingestion_state == "BUILD_SEGMENTS" and rep.build_segments["processed"] == 0
    task.report_visible = False
    with pytest.raises(NotFoundError):
        client.report("t")


def test_task_ids_are_escaped_in_paths(client: Client, fake: FakeOverlord) -> None:
    fake.add("index_x_2024-01-01T00:00:00.000Z")
    assert client.status("index_x_2024-01-01T00:00:00.000Z").id == "index_x_2024-01-01T00:00:00.000Z"


def test_shutdown_and_shutdown_all(client: Client, fake: FakeOverlord) -> None:
    fake.add("t", {"type": "noop", "dataSource": "ds"})
    assert client.shutdown("t") == "t"
    assert client.status("t").status_code == "FAILED"
    fake.add("u", {"type": "noop", "dataSource": "ds"})
    assert client.shutdown_all("ds") == "ds"
    with pytest.raises(NotFoundError):
        client.shutdown_all("ds")


def test_pending_segments_workers_leader_health(client: Client, fake: FakeOverlord) -> None:
    fake.pending_segments["ds"] = 3
    assert client.delete_pending_segments("ds") == 3
    assert client.delete_pending_segments("ds") == 0
    fake.workers = [
        {
            "worker": {"scheme": "http", "host": "h:8091", "ip": "h", "capacity": 4, "version": "0", "category": "_"},
            "currCapacityUsed": 1,
            "currParallelIndexCapacityUsed": 0,
            "availabilityGroups": [],
            "runningTasks": ["t"],
            "lastCompletedTaskTime": None,
            "blacklistedUntil": None,
        }
    ]
    (w,) = client.workers()
    assert w.worker.capacity == 4 and w.free_capacity == 3 and w.running_tasks == ["t"]
    assert client.suggest_max_num_concurrent_sub_tasks() == 2
    assert client.leader() == "http://localhost:8090"
    assert client.is_leader() is True
    assert client.health() is True


def test_datasources_and_segments(client: Client, fake: FakeOverlord) -> None:
    seg = {
        "dataSource": "wiki",
        "interval": "2015-09-12T00:00:00.000Z/2015-09-13T00:00:00.000Z",
        "version": "v1",
        "loadSpec": {"type": "local", "path": "/x"},
        "dimensions": "page,user",
        "metrics": "count",
        "shardSpec": {"type": "numbered", "partitionNum": 0, "partitions": 1},
        "binaryVersion": 9,
        "size": 4096,
        "identifier": "wiki_2015-09-12_v1",
    }
    fake.segments["wiki"] = [seg]
    assert client.datasources() == ["wiki"]
    (s,) = client.segments("wiki")
    assert (s.data_source, s.size, s.shard_spec["type"]) == ("wiki", 4096, "numbered")
    assert s.to_wire()["loadSpec"] == {"type": "local", "path": "/x"}
    with pytest.raises(NotFoundError):
        client.segments("nope")


def test_async_client_covers_the_same_endpoints(fake: FakeOverlord, ftime: FakeTime) -> None:
    fake.add("t", {"type": "noop", "dataSource": "ds"}, log=b"hello")
    fake.pending_segments["ds"] = 1

    async def main() -> None:
        async with make_async_client(fake, ftime) as ac:
            assert (await ac.status("t")).id == "t"
            assert set(await ac.statuses(["t"])) == {"t"}
            assert [t.id for t in await ac.tasks()] == ["t"]
            assert await ac.payload("t") == {"type": "noop", "dataSource": "ds"}
            assert await ac.log("t") == "hello"
            assert (await ac.report("t")).ingestion_state == "BUILD_SEGMENTS"
            assert await ac.delete_pending_segments("ds") == 1
            assert await ac.health() is True
            assert await ac.shutdown("t") == "t"
            with pytest.raises(NotFoundError):
                await ac.status("missing")

    asyncio.run(main())


def test_methods_keep_names_and_docs(client: Client) -> None:
    assert client.status.__name__ == "status"
    assert "status" in (client.status.__doc__ or "")
    assert "Idempotent" in (Client.submit.__doc__ or "")
