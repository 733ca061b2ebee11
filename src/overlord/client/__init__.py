"""Python client for the Overlord (Druid's Tasks API): submit, poll, wait, reconcile.

``Client`` blocks, ``AsyncClient`` awaits; both share one sans-IO implementation. Submission is
idempotent (deterministic task ids), waits back off with full jitter, transient failures are
retried under a ``RetryPolicy`` behind a ``CircuitBreaker``, and specs are validated locally.
"""

from overlord.client import errors
from overlord.client.backoff import NO_RETRY, Backoff, RetryPolicy, WaitPolicy
from overlord.client.breaker import BreakerState, CircuitBreaker
from overlord.client.classify import (
    Classification,
    classify_failure,
    explain_failure,
    suggest_max_num_concurrent_sub_tasks,
)
from overlord.client.client import DEFAULT_URL, AsyncClient, Client, default_url
from overlord.client.errors import (
    CircuitOpenError,
    ClientError,
    NotFoundError,
    ServiceUnavailable,
    SpecMismatchError,
    SpecValidationError,
    TaskAlreadyExists,
    TaskFailedError,
    TaskLostError,
    TransientError,
    WaitTimeoutError,
)
from overlord.client.idempotency import deterministic_task_id, is_same_spec, spec_hash
from overlord.client.models import (
    DataSegment,
    RunnerState,
    Submission,
    TaskLocation,
    TaskReport,
    TaskState,
    TaskStatus,
    WaitResult,
    WorkerInfo,
)
from overlord.client.reconcile import AsyncReconciler, ReconcileResult, ThreadReconciler
from overlord.client.specs import (
    CompactTask,
    DataSchema,
    DimensionsSpec,
    IndexParallelTask,
    IngestionSpec,
    IoConfig,
    KillTask,
    parse_spec,
    to_druid,
)

__all__ = [
    "DEFAULT_URL",
    "NO_RETRY",
    "AsyncClient",
    "AsyncReconciler",
    "Backoff",
    "BreakerState",
    "CircuitBreaker",
    "CircuitOpenError",
    "Classification",
    "Client",
    "ClientError",
    "CompactTask",
    "DataSchema",
    "DataSegment",
    "DimensionsSpec",
    "IndexParallelTask",
    "IngestionSpec",
    "IoConfig",
    "KillTask",
    "NotFoundError",
    "ReconcileResult",
    "RetryPolicy",
    "RunnerState",
    "ServiceUnavailable",
    "SpecMismatchError",
    "SpecValidationError",
    "Submission",
    "TaskAlreadyExists",
    "TaskFailedError",
    "TaskLocation",
    "TaskLostError",
    "TaskReport",
    "TaskState",
    "TaskStatus",
    "ThreadReconciler",
    "TransientError",
    "WaitPolicy",
    "WaitResult",
    "WaitTimeoutError",
    "WorkerInfo",
    "classify_failure",
    "default_url",
    "deterministic_task_id",
    "errors",
    "explain_failure",
    "is_same_spec",
    "parse_spec",
    "spec_hash",
    "suggest_max_num_concurrent_sub_tasks",
    "to_druid",
]
