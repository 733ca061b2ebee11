"""wait / submit_and_wait: exact backoff timing, timeouts, failures, 404 grace, progress, bulk waits."""

from __future__ import annotations

import math

import pytest
from client_fakes import FakeOverlord, FakeTime, index_spec

from overlord.client import (
    Backoff,
    Client,
    NotFoundError,
    TaskFailedError,
    TaskLostError,
    WaitPolicy,
    WaitTimeoutError,
)
from overlord.client.models import TaskReport, TaskStatus


def test_backoff_caps_grow_exponentially_up_to_max() -> None:
    b = Backoff(initial=0.5, multiplier=2.0, max_interval=4.0)
    assert [b.cap(n) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert b.cap(10_000) == 4.0


def test_full_jitter_draws_between_zero_and_cap() -> None:
    b = Backoff(initial=1.0, multiplier=2.0, max_interval=8.0)
    assert b.delay(2, lambda: 0.0) == 0.0
    assert b.delay(2, lambda: 0.25) == 1.0
    assert b.delay(2, lambda: 0.999) == pytest.approx(3.996)
    assert Backoff(initial=1.0, jitter=False).delay(1, lambda: 0.0) == 2.0
    assert Backoff(initial=1.0, min_interval=0.2).delay(0, lambda: 0.0) == 0.2


def test_backoff_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        Backoff(multiplier=0.5)
    with pytest.raises(ValueError):
        Backoff(initial=-1)


def test_wait_polls_with_exact_backoff(client: Client, fake: FakeOverlord, ftime: FakeTime) -> None:
    fake.add("t")  # WAITING, PENDING, RUNNING, then SUCCESS on the 4th read
    result = client.wait("t")
    assert result.status.status_code == "SUCCESS" and result.task_id == "t"
    assert ftime.sleeps == [0.25, 0.5, 1.0]  # rng=0.5 of caps 0.5, 1, 2
    assert fake.count("GET", "/t/status") == 4
    assert result.report is not None and result.report.ingestion_state == "COMPLETED"
    assert result.report.build_segments["processed"] == 100


def test_wait_backoff_stops_growing_at_max_interval(client: Client, fake: FakeOverlord, ftime: FakeTime) -> None:
    fake.add("t", steps=["RUNNING"] * 6)
    client.wait("t")
    assert ftime.sleeps == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]  # caps 0.5..4.0, halved


def test_wait_times_out_exactly(client: Client, fake: FakeOverlord, ftime: FakeTime) -> None:
    fake.add("t", steps=["RUNNING"] * 100)
    start = ftime.clock.monotonic()
    with pytest.raises(WaitTimeoutError) as info:
        client.wait("t", timeout=3.0)
    assert ftime.clock.monotonic() - start == pytest.approx(3.0)
    assert ftime.sleeps == [0.25, 0.5, 1.0, 1.25]  # the last pause is cut to the deadline
    assert info.value.task_id == "t" and info.value.last_status is not None
    assert info.value.last_status.state == "RUNNING"
    assert isinstance(info.value, TimeoutError)


def test_wait_uses_policy_timeout_unless_infinite(fake: FakeOverlord, ftime: FakeTime) -> None:
    fake.add("t", steps=["RUNNING"] * 10)
    policy = WaitPolicy(poll=Backoff(initial=1.0, jitter=False, max_interval=1.0), timeout=2.0)
    with (
        Client("http://x", transport=fake.transport, clock=ftime.clock, sleep=ftime.sleep, wait_policy=policy) as c,
        pytest.raises(WaitTimeoutError),
    ):
        c.wait("t")
        assert c.wait("t", timeout=math.inf).status.status_code == "SUCCESS"


def test_failed_task_raises_typed_error_with_report(fake: FakeOverlord, ftime: FakeTime) -> None:
    fake.add("t", steps=[], outcome="FAILED", error_msg="Max parse exceptions[0] exceeded")
    alerts: list[TaskFailedError] = []
    with (
        Client(
            "http://x",
            transport=fake.transport,
            clock=ftime.clock,
            sleep=ftime.sleep,
            on_structural_failure=alerts.append,
        ) as c,
        pytest.raises(TaskFailedError) as info,
    ):
        c.wait("t")
    err = info.value
    assert err.task_id == "t" and err.error_msg == "Max parse exceptions[0] exceeded"
    assert err.report is not None and err.report.error_msg == "Max parse exceptions[0] exceeded"
    assert err.kind == "structural" and not err.transient
    assert alerts == [err]


def test_transient_failure_does_not_call_structural_hook(fake: FakeOverlord, ftime: FakeTime) -> None:
    fake.add("t", steps=[], outcome="FAILED", error_msg="Task failed: worker lost during run")
    alerts: list[TaskFailedError] = []
    with (
        Client("http://x", transport=fake.transport, sleep=ftime.sleep, on_structural_failure=alerts.append) as c,
        pytest.raises(TaskFailedError) as info,
    ):
        c.wait("t")
    assert info.value.transient and alerts == []


def test_hook_errors_do_not_mask_the_failure(fake: FakeOverlord, ftime: FakeTime) -> None:
    fake.add("t", steps=[], outcome="FAILED", error_msg="bad schema")

    def broken(_e: TaskFailedError) -> None:
        raise RuntimeError("alerting down")

    with (
        Client("http://x", transport=fake.transport, sleep=ftime.sleep, on_structural_failure=broken) as c,
        pytest.raises(TaskFailedError),
    ):
        c.wait("t")


def test_404_right_after_submit_is_retried_then_succeeds(client: Client, fake: FakeOverlord) -> None:
    tid = client.submit(index_spec())
    fake.hidden[tid] = 2
    result = client.wait(tid, not_found_grace=2.0)
    assert result.status.status_code == "SUCCESS"
    assert fake.count("GET", "/status") == 6


def test_submit_and_wait_tolerates_brief_404(client: Client, fake: FakeOverlord) -> None:
    spec = index_spec()
    from overlord.client import deterministic_task_id

    fake.hidden[deterministic_task_id(spec)] = 2
    result = client.submit_and_wait(spec)
    assert result.status.status_code == "SUCCESS"


def test_404_outlasting_grace_means_lost(client: Client, fake: FakeOverlord, ftime: FakeTime) -> None:
    fake.add("t")
    fake.hidden["t"] = 100
    with pytest.raises(TaskLostError) as info:
        client.wait("t", not_found_grace=2.0)
    assert info.value.task_id == "t"
    assert sum(ftime.sleeps) >= 2.0


def test_task_vanishing_after_being_seen_is_lost(client: Client, fake: FakeOverlord) -> None:
    fake.add("t")
    original = fake._route

    def forget_after_first(request):  # type: ignore[no-untyped-def]
        response = original(request)
        fake.tasks.pop("t", None)
        return response

    fake.on("GET", "/t/status", forget_after_first)
    with pytest.raises(TaskLostError):
        client.wait("t")


def test_wait_on_unknown_task_is_not_found_at_once(client: Client, ftime: FakeTime) -> None:
    with pytest.raises(NotFoundError):
        client.wait("never")
    assert ftime.sleeps == []


def test_transient_errors_while_polling_are_polled_through(client: Client, fake: FakeOverlord, ftime: FakeTime) -> None:
    fake.add("t", steps=["RUNNING"])
    fake.fail("GET", "/t/status", status=503, times=4)  # outlasts one request's 4 attempts
    assert client.wait("t").status.status_code == "SUCCESS"


def test_missing_final_report_is_awaited_briefly_then_none(client: Client, fake: FakeOverlord, ftime: FakeTime) -> None:
    fake.add("t", payload={"type": "index_parallel", "id": "t"}, steps=[], report_visible=False)
    result = client.wait("t")
    assert result.report is None
    assert sum(ftime.sleeps) == pytest.approx(1.0)  # report_grace


def test_reportless_task_types_spend_no_report_grace(client: Client, fake: FakeOverlord, ftime: FakeTime) -> None:
    fake.add("t", steps=[], report_visible=False)  # a noop never writes a report
    assert client.wait("t").report is None
    assert ftime.sleeps == []


def test_progress_hook_sees_states_and_live_reports(fake: FakeOverlord, ftime: FakeTime) -> None:
    fake.add("t", processed=10)
    seen: list[tuple[str, int | None]] = []

    def on_update(status: TaskStatus, report: TaskReport | None) -> None:
        seen.append((status.state, report.build_segments.get("processed") if report else None))

    policy = WaitPolicy(poll=Backoff(initial=0.5), fetch_live_report=True)
    with Client("http://x", transport=fake.transport, sleep=ftime.sleep, wait_policy=policy) as c:
        c.wait("t", on_update=on_update)
    # The fake's live report grows with each read; the last read finds the task done.
    assert seen == [("WAITING", 10), ("PENDING", 20), ("RUNNING", 10), ("SUCCESS", 10)]


def test_wait_many_uses_bulk_status(client: Client, fake: FakeOverlord) -> None:
    fake.add("ok", steps=["RUNNING"])
    fake.add("bad", steps=[], outcome="FAILED", error_msg="lock revoked")
    results = client.wait_many(["ok", "bad", "ghost"])
    assert list(results) == ["ok", "bad", "ghost"]
    assert results["ok"].status.status_code == "SUCCESS"  # type: ignore[union-attr]
    assert isinstance(results["bad"], TaskFailedError) and results["bad"].transient
    assert isinstance(results["ghost"], TaskLostError)
    assert fake.count("GET", "/status") == 0


def test_wait_many_shares_one_report_grace_window(client: Client, fake: FakeOverlord, ftime: FakeTime) -> None:
    for i in range(5):  # the bulk status carries no type, so these might still get a report
        fake.add(f"t{i}", steps=[], report_visible=False)
    results = client.wait_many([f"t{i}" for i in range(5)])
    assert all(r.report is None for r in results.values())  # type: ignore[union-attr]
    assert sum(ftime.sleeps) == pytest.approx(1.0)  # one report_grace for all, not one each


def test_wait_many_times_out_per_task(client: Client, fake: FakeOverlord) -> None:
    fake.add("slow", steps=["RUNNING"] * 50)
    results = client.wait_many(["slow"], timeout=1.0)
    assert isinstance(results["slow"], WaitTimeoutError)


def test_log_records_carry_the_task_id(client: Client, fake: FakeOverlord, caplog: pytest.LogCaptureFixture) -> None:
    fake.add("t", steps=["RUNNING"], outcome="FAILED", error_msg="lock revoked")
    with caplog.at_level("INFO", logger="overlord.client"), pytest.raises(TaskFailedError):
        client.wait("t")
    records = [r for r in caplog.records if getattr(r, "task_id", None) == "t"]
    actions = [getattr(r, "action", None) for r in records]
    assert "wait" in actions and "finish" in actions
    assert any(getattr(r, "kind", None) == "transient" for r in records)
