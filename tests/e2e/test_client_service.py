"""The blocking ``Client`` against a real ``overlord start``: every method, waits, retries, idempotency.

One service (2 slots) serves the whole module: each test uses its own data source so that listings
and derived task ids never collide, and leaves no task running behind it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.conftest import ServiceProcess, free_port

from overlord.client import (
    Backoff,
    Client,
    DataSchema,
    DimensionsSpec,
    IndexParallelTask,
    IngestionSpec,
    IoConfig,
    NotFoundError,
    RetryPolicy,
    ServiceUnavailable,
    SpecMismatchError,
    SpecValidationError,
    TaskFailedError,
    WaitPolicy,
    WaitTimeoutError,
    deterministic_task_id,
    to_druid,
)
from overlord.client.errors import BadRequest
from overlord.client.specs import GranularitySpec, InlineInputSource, JsonInputFormat, TimestampSpec, TuningConfig
from overlord.clock import ManualClock

API = "/druid/indexer/v1"
FAST_WAIT = WaitPolicy(
    poll=Backoff(initial=0.02, multiplier=2.0, max_interval=0.2, min_interval=0.01),
    timeout=30.0,
    not_found_grace=2.0,
    report_grace=0.5,
)
FAST_RETRY = RetryPolicy(max_attempts=4, backoff=Backoff(initial=0.01, max_interval=0.05))
FAST_LOG = Backoff(initial=0.05, multiplier=1.0, max_interval=0.05, jitter=False)


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    root: Path = tmp_path_factory.mktemp("client-e2e")
    service = ServiceProcess(data_dir=root / "var", capacity=2).start()
    yield service
    service.stop()


@pytest.fixture
def client(svc: ServiceProcess) -> Iterator[Client]:
    with Client(svc.url, wait_policy=FAST_WAIT, retry=FAST_RETRY) as c:
        yield c


@pytest.fixture
def ds() -> str:
    """A data source of this test's own: derived ids and listings stay apart from other tests'."""
    return f"ds_{uuid.uuid4().hex[:10]}"


def noop(ds: str, **fields: object) -> dict[str, object]:
    return {"type": "noop", "dataSource": ds, "runTime": 0, **fields}


def wait_state(client: Client, task_id: str, state: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while client.status(task_id).state != state:
        assert time.monotonic() < deadline, f"{task_id} never reached {state}"
        time.sleep(0.02)


# --- single endpoints -------------------------------------------------------------------------


def test_submit_status_payload_statuses_and_wait(client: Client, ds: str) -> None:
    spec = noop(ds, runTime=300, logLines=2)
    task_id = client.submit(spec)
    assert task_id == deterministic_task_id({**spec}) and task_id.startswith(f"noop_{ds}_")
    first = client.status(task_id)
    assert first.id == task_id and first.type == "noop" and first.data_source == ds
    assert first.state in ("WAITING", "PENDING", "RUNNING") and not first.is_terminal

    stored = client.payload(task_id)
    assert stored["id"] == task_id and stored["dataSource"] == ds and stored["runTime"] == 300

    result = client.wait(task_id)
    assert result.task_id == task_id
    assert result.status.status_code == "SUCCESS" and result.status.duration >= 300
    assert result.report is None  # a noop writes no report

    found = client.statuses([task_id, "no-such-task"])
    assert list(found) == [task_id]
    assert found[task_id].status_code == "SUCCESS"
    assert client.statuses([]) == {}


def test_listings_with_filters_pending_workers_and_shutdowns(client: Client, ds: str) -> None:
    assert client.suggest_max_num_concurrent_sub_tasks(reserve=0) == 2  # idle: both slots free
    done = client.submit(noop(ds, logLines=0))
    client.wait(done)
    long_a = client.submit(noop(ds, runTime=30_000, logLines=1))
    long_b = client.submit(noop(ds, runTime=30_000, logLines=2))
    wait_state(client, long_a, "RUNNING")
    wait_state(client, long_b, "RUNNING")
    queued = client.submit(noop(ds, runTime=30_000, logLines=3))
    wait_state(client, queued, "PENDING")
    try:
        assert {t.id for t in client.tasks(datasource=ds)} == {done, long_a, long_b, queued}
        assert {t.id for t in client.tasks(state="running", datasource=ds)} == {long_a, long_b}
        assert [t.id for t in client.tasks(state="pending", datasource=ds)] == [queued]
        assert [t.id for t in client.tasks(state="complete", datasource=ds)] == [done]
        assert client.tasks(state="waiting", datasource=ds) == []
        assert [t.id for t in client.tasks(datasource=ds, type="noop", state="complete", max=1)] == [done]
        assert client.tasks(datasource=ds, type="index_parallel") == []
        window = client.tasks(datasource=ds, state="complete", created_time_interval="2000-01-01/2999-01-01")
        assert [t.id for t in window] == [done]
        assert client.tasks(datasource=ds, state="complete", created_time_interval="2000-01-01/2000-01-02") == []

        assert {t.id for t in client.running_tasks()} >= {long_a, long_b}
        assert queued in {t.id for t in client.pending_tasks()}
        assert all(t.state == "WAITING" for t in client.waiting_tasks())
        assert done in {t.id for t in client.complete_tasks()}
        assert len(client.complete_tasks(n=1)) == 1

        (worker,) = client.workers()
        assert worker.worker.capacity == 2 and worker.curr_capacity_used == 2
        assert set(worker.running_tasks) == {long_a, long_b} and worker.free_capacity == 0
        assert client.suggest_max_num_concurrent_sub_tasks() == 1  # never below one

        assert client.shutdown(long_a) == long_a
        with pytest.raises(TaskFailedError) as failed:
            client.wait(long_a)
        assert failed.value.error_msg == "Shutdown request from user"
        assert failed.value.kind == "transient"
    finally:
        assert client.shutdown_all(ds) == ds
    for task_id in (long_b, queued):
        with pytest.raises(TaskFailedError, match="Shutdown request from user"):
            client.wait(task_id)
    with pytest.raises(NotFoundError):  # nothing active is left: Druid answers 404
        client.shutdown_all(ds)


def test_unknown_task_is_a_typed_not_found(client: Client) -> None:
    for call in (client.status, client.payload, client.log, client.report, client.shutdown):
        with pytest.raises(NotFoundError) as exc:
            call("no-such-task")
        assert exc.value.status_code == 404


def test_log_whole_from_offset_and_tail(client: Client, ds: str) -> None:
    task_id = client.submit(noop(ds, logLines=3))
    client.wait(task_id)
    full = client.log(task_id)
    assert "log line 3 of 3" in full and f"Task[{task_id}] finished with status[SUCCESS]" in full
    assert client.log(task_id, offset=10) == full[10:]
    assert client.log(task_id, offset=-25) == full[-25:]


def test_follow_log_streams_until_the_task_ends(client: Client, ds: str) -> None:
    task_id = client.submit(noop(ds, runTime=600, logLines=2))
    chunks = list(client.follow_log(task_id, poll=FAST_LOG))
    text = "".join(chunks)
    assert len(chunks) >= 2  # the lines came while the task ran, then the last one after it ended
    assert "finished with status[SUCCESS]" not in chunks[0]  # streamed while the task ran
    assert "log line 2 of 2" in text and "finished with status[SUCCESS]" in chunks[-1]
    assert text == client.log(task_id)
    tail = "".join(client.follow_log(task_id, offset=-30, poll=FAST_LOG))
    assert tail == text[-30:]


def test_report_of_a_noop_is_not_found(client: Client, ds: str) -> None:
    task_id = client.submit(noop(ds))
    client.wait(task_id)
    with pytest.raises(NotFoundError, match="No task reports"):
        client.report(task_id)


def test_pending_segments_leader_and_health(client: Client, svc: ServiceProcess, ds: str) -> None:
    assert client.delete_pending_segments(ds) == 0
    assert client.leader() == svc.url
    assert client.is_leader() is True
    assert client.health() is True


def test_datasources_and_segments(client: Client, ds: str) -> None:
    names = client.datasources()
    assert isinstance(names, list) and ds not in names
    with pytest.raises(NotFoundError):
        client.segments(ds)  # Druid answers 404 for a data source without segments


# --- submit_and_wait, classification and hooks ------------------------------------------------


def test_submit_and_wait_success_is_fast_for_a_reportless_task(client: Client, ds: str) -> None:
    started = time.monotonic()
    result = client.submit_and_wait(noop(ds))
    assert result.status.status_code == "SUCCESS" and result.report is None
    assert time.monotonic() - started < 3.0  # no report grace spent on a noop


@pytest.mark.parametrize(
    ("message", "kind", "structural_calls"),
    [
        ("Max parse exceptions [0] exceeded", "structural", 1),
        ("Worker lost: peon process died", "transient", 0),
    ],
)
def test_submit_and_wait_failure_carries_error_msg_and_classification(
    svc: ServiceProcess, ds: str, message: str, kind: str, structural_calls: int
) -> None:
    hooked: list[TaskFailedError] = []
    client = Client(svc.url, wait_policy=FAST_WAIT, on_structural_failure=hooked.append)
    with client, pytest.raises(TaskFailedError) as failed:
        client.submit_and_wait(noop(ds, fail=message))
    error = failed.value
    assert error.error_msg == message and error.status.status_code == "FAILED"
    assert error.kind == kind and error.transient is (kind == "transient")
    assert error.task_id.startswith(f"noop_{ds}_")
    assert len(hooked) == structural_calls
    # a deliberate rerun gets a new, still deterministic id
    with Client(svc.url, wait_policy=FAST_WAIT) as client, pytest.raises(TaskFailedError) as rerun:
        client.submit_and_wait(noop(ds, fail=message), attempt=1)
    assert rerun.value.task_id == f"{error.task_id}_a1"


# --- timing with an injected clock and sleep --------------------------------------------------


def test_poll_backoff_schedule_with_injected_clock_and_sleep(svc: ServiceProcess, ds: str) -> None:
    """Full jitter with a fixed draw: cap(n) = min(0.8, 0.1 * 2**n), delay = cap * 0.5."""
    clock = ManualClock()
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:  # no real sleeping: the clock moves instead
        sleeps.append(seconds)
        clock.advance(seconds)

    policy = WaitPolicy(poll=Backoff(initial=0.1, multiplier=2.0, max_interval=0.8), timeout=2.0)
    with Client(svc.url, wait_policy=policy, clock=clock, sleep=sleep, rng=lambda: 0.5) as client:
        task_id = client.submit(noop(ds, runTime=30_000))
        try:
            with pytest.raises(WaitTimeoutError) as timed_out:
                client.wait(task_id)
        finally:
            client.shutdown(task_id)
    assert timed_out.value.task_id == task_id and timed_out.value.last_status is not None
    expected = [0.05, 0.1, 0.2, 0.4, 0.4, 0.4, 0.4]
    assert sleeps[: len(expected)] == pytest.approx(expected)
    assert sum(sleeps) == pytest.approx(2.0)  # the last pause is cut to the deadline
    assert sleeps[-1] == pytest.approx(2.0 - sum(expected))


def test_connection_retries_follow_the_policy_then_raise(ds: str) -> None:
    sleeps: list[float] = []
    retry = RetryPolicy(max_attempts=4, backoff=Backoff(initial=0.1, multiplier=3.0, max_interval=0.5, jitter=False))
    client = Client(f"http://127.0.0.1:{free_port()}", retry=retry, breaker=False, sleep=sleeps.append)
    with client, pytest.raises(ServiceUnavailable, match="Cannot reach the Overlord"):
        client.submit(noop(ds))
    assert sleeps == pytest.approx([0.1, 0.3, 0.5])


def test_a_4xx_answer_is_not_retried(svc: ServiceProcess, ds: str) -> None:
    sleeps: list[float] = []
    with Client(svc.url, sleep=sleeps.append) as client, pytest.raises(BadRequest, match="runTime"):
        client.submit(noop(ds, runTime=-1), validate=False)
    assert sleeps == []


# --- idempotent submission --------------------------------------------------------------------


class DropFirstSubmitAnswer(httpx.HTTPTransport):
    """Forwards every request; the first task POST reaches the server, then its answer is lost."""

    def __init__(self) -> None:
        super().__init__()
        self.dropped = 0
        self.posts = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if request.method == "POST" and request.url.path == f"{API}/task":
            self.posts += 1
            if not self.dropped:
                self.dropped += 1
                response.read()
                response.close()
                raise httpx.ReadError("connection reset after the server accepted the task", request=request)
        return response


def test_resubmission_after_a_dropped_answer_attaches_to_the_same_task(svc: ServiceProcess, ds: str) -> None:
    transport = DropFirstSubmitAnswer()
    with Client(svc.url, retry=FAST_RETRY, wait_policy=FAST_WAIT, transport=transport) as client:
        spec = noop(ds, runTime=100)
        task_id = client.submit(spec)
        assert transport.dropped == 1 and transport.posts == 2  # the retry was answered "already exists"
        assert task_id == deterministic_task_id(spec)
        assert client.wait(task_id).status.status_code == "SUCCESS"
        assert client.submit(spec) == task_id  # a later resubmission attaches too
    listed = svc.http.get(f"{API}/tasks", params={"datasource": ds}).json()
    assert [t["id"] for t in listed] == [task_id]


def test_resubmission_with_a_chosen_id_compares_the_stored_spec(svc: ServiceProcess, ds: str) -> None:
    transport = DropFirstSubmitAnswer()
    chosen = f"my-task-{ds}"
    with Client(svc.url, retry=FAST_RETRY, wait_policy=FAST_WAIT, transport=transport) as client:
        assert client.submit(noop(ds, runTime=100), task_id=chosen) == chosen
        assert transport.posts == 2
        with pytest.raises(SpecMismatchError, match="different spec"):
            client.submit(noop(ds, runTime=999), task_id=chosen)
        client.wait(chosen)
    listed = svc.http.get(f"{API}/tasks", params={"datasource": ds}).json()
    assert [t["id"] for t in listed] == [chosen]


# --- ingestion: reports, segments and typed specs ---------------------------------------------

ROWS = '{"ts":"2015-09-12T01:00:00Z","page":"a"}\n{"ts":"2015-09-12T02:00:00Z","page":"b"}\n{"ts":"bad","page":"c"}'


def index_model(ds: str, *, max_parse_exceptions: int | None = None) -> IndexParallelTask:
    return IndexParallelTask(
        spec=IngestionSpec(
            data_schema=DataSchema(
                data_source=ds,
                timestamp_spec=TimestampSpec(column="ts", format="auto"),
                dimensions_spec=DimensionsSpec(dimensions=["page"]),
                granularity_spec=GranularitySpec(segment_granularity="day", intervals=["2015-09-12/2015-09-13"]),
            ),
            io_config=IoConfig(input_source=InlineInputSource(data=ROWS), input_format=JsonInputFormat()),
            tuning_config=TuningConfig(max_parse_exceptions=max_parse_exceptions)
            if max_parse_exceptions is not None
            else None,
        )
    )


def test_ingestion_report_and_published_segments(client: Client, ds: str) -> None:
    spec = index_model(ds)
    result = client.submit_and_wait(spec)
    assert result.status.status_code == "SUCCESS" and result.status.type == "index_parallel"
    assert result.task_id == deterministic_task_id(to_druid(spec))
    report = result.report
    assert report is not None and report.ingestion_state == "COMPLETED" and report.error_msg is None
    assert report.build_segments["processed"] == 2 and report.build_segments["unparseable"] == 1
    assert client.report(result.task_id) == report
    assert client.submit(spec) == result.task_id  # the same ingestion again attaches, writes nothing new

    assert ds in client.datasources()
    (segment,) = client.segments(ds)
    assert segment.data_source == ds and segment.interval == "2015-09-12T00:00:00.000Z/2015-09-13T00:00:00.000Z"
    assert segment.dimensions in ("page", ["page"]) and segment.size > 0
    assert segment.shard_spec.get("partitionNum") == 0
    listed = client.tasks(datasource=ds)
    assert [t.id for t in listed] == [result.task_id]


def test_ingestion_failure_is_structural_with_the_report(svc: ServiceProcess, ds: str) -> None:
    hooked: list[TaskFailedError] = []
    client = Client(svc.url, wait_policy=FAST_WAIT, on_structural_failure=hooked.append)
    with client, pytest.raises(TaskFailedError) as failed:
        client.submit_and_wait(index_model(ds, max_parse_exceptions=0))
    error = failed.value
    assert error.error_msg == "Max parse exceptions[0] exceeded"
    assert error.kind == "structural" and hooked == [error]
    assert error.report is not None and error.report.error_msg == error.error_msg
    assert error.report.build_segments["unparseable"] == 1


def test_spec_errors_are_caught_before_sending(client: Client, ds: str) -> None:
    bad = to_druid(index_model(ds))
    bad["spec"]["dataSchema"]["granularitySpec"]["intervals"] = ["not-an-interval"]
    with pytest.raises(SpecValidationError) as exc:
        client.submit(bad)
    assert exc.value.field and "intervals" in exc.value.field
    assert client.tasks(datasource=ds) == []  # nothing reached the service
