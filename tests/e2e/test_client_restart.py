"""Reconciliation, a wait in flight and the circuit breaker across a real kill -9 and restart."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from tests.conftest import ServiceProcess, process_exited, wait_exited

from overlord.client import (
    Backoff,
    BreakerState,
    CircuitBreaker,
    Client,
    ReconcileResult,
    RetryPolicy,
    ServiceUnavailable,
    WaitPolicy,
)

FAST_WAIT = WaitPolicy(poll=Backoff(initial=0.02, max_interval=0.2, min_interval=0.01), timeout=30.0)
FAST_RETRY = RetryPolicy(max_attempts=2, backoff=Backoff(initial=0.01, max_interval=0.02))


def wait_state(client: Client, task_id: str, state: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while client.status(task_id).state != state:
        assert time.monotonic() < deadline, f"{task_id} never reached {state}"
        time.sleep(0.02)


def test_reconcile_after_kill9_and_restart(service_factory) -> None:  # type: ignore[no-untyped-def]
    # a peon gives up reporting to a dead Overlord after 300 ms (its status file stays): `quick` can end
    svc: ServiceProcess = service_factory(capacity=2, extra_env={"overlord_peon_actionRetryPeriod": "300"}).start()
    ds = f"rc_{uuid.uuid4().hex[:8]}"
    breaker = CircuitBreaker(failure_threshold=2, reset_timeout=0.2)
    client = Client(svc.url, wait_policy=FAST_WAIT, retry=FAST_RETRY, breaker=breaker)
    with client:
        old = client.submit({"type": "noop", "dataSource": ds, "runTime": 0})
        client.wait(old)
        quick = client.submit({"type": "noop", "dataSource": ds, "runTime": 2000})
        survivor = client.submit({"type": "noop", "dataSource": ds, "runTime": 30_000})
        wait_state(client, quick, "RUNNING")
        quick_pid = svc.peon_pid(quick)
        wait_state(client, survivor, "RUNNING")
        orphan = svc.submit({"type": "noop", "dataSource": ds, "runTime": 30_000, "logLines": 5})  # not ours
        # What the orchestrator believes: it never saw `quick` start, and a submit of `ghost` was lost.
        believed = {old: "SUCCESS", quick: "RUNNING", survivor: "PENDING", "ghost-task": "RUNNING"}

        outcome: dict[str, object] = {}

        def waiter() -> None:  # a wait for `quick`, in flight while the service dies and comes back
            try:
                outcome["result"] = client.wait(quick)
            except Exception as exc:  # reported below
                outcome["error"] = exc

        waiting = threading.Thread(target=waiter)
        waiting.start()
        results: list[ReconcileResult] = []
        reconciler = client.reconciler(lambda: believed, results.append, interval=0.05, datasource=ds)
        reconciler.start()
        try:
            deadline = time.monotonic() + 10
            while not results:
                assert time.monotonic() < deadline
                time.sleep(0.02)

            svc.kill9()
            assert not process_exited(quick_pid), "`quick` ended before the crash: lengthen its runTime"
            wait_exited(quick_pid)  # `quick` ends while the service is down; its peon survived the crash
            with pytest.raises(ServiceUnavailable):
                client.status(old)
            assert breaker.state in (BreakerState.OPEN, BreakerState.HALF_OPEN)
            seen_before_restart = len(results)
            svc.start()

            deadline = time.monotonic() + 15
            while len(results) <= seen_before_restart or quick not in results[-1].finished:
                assert time.monotonic() < deadline, results[-1:]
                time.sleep(0.05)
        finally:
            reconciler.stop()
            waiting.join(20)
        assert "error" not in outcome, outcome
        assert outcome["result"].status.status_code == "SUCCESS"  # type: ignore[attr-defined]
        assert reconciler._thread is None  # the loop outlived the failed rounds and stopped cleanly

        result = client.reconcile(believed, datasource=ds)
        assert set(result.finished) == {quick} and result.finished[quick].status_code == "SUCCESS"
        assert result.disappeared == ["ghost-task"]
        assert set(result.orphaned) == {orphan}
        assert set(result.changed) == {survivor} and result.changed[survivor].state == "RUNNING"
        assert result.unchanged == [old]
        assert not result.clean
        assert breaker.state is BreakerState.CLOSED

        # the orchestrator adopts the orphan, learns the rest: the next round is clean
        believed = {survivor: "RUNNING", orphan: client.status(orphan).state}
        assert client.reconcile(believed, datasource=ds).clean
        client.shutdown_all(ds)
        for task_id in (survivor, orphan):
            assert client.status(task_id).state in ("RUNNING", "FAILED")
