"""Errors the client raises, rooted in the project's one hierarchy (``overlord.errors``).

Wire errors also inherit the matching server-side class, so ``except overlord.errors.NotFound``
works the same in the service and in a caller of the client.

    OverlordError
    └── ClientError
        ├── TransientError              worth retrying later: the service may recover
        │   ├── ServiceUnavailable      cannot connect / connection dropped, after retries
        │   │   └── CircuitOpenError    the breaker is open; no request was sent
        │   ├── ServerError (5xx)
        │   └── TooManyRequests (429)   also ``errors.QueueFull``
        ├── HTTPStatusError             any non-2xx answer (ServerError and TooManyRequests too)
        │   ├── BadRequest (400)        also ``errors.InvalidInput``
        │   │   └── TaskAlreadyExists   also ``errors.AlreadyExists``
        │   └── NotFoundError (404)     also ``errors.NotFound``
        ├── SpecValidationError         a spec failed local validation; names the field
        ├── SpecMismatchError           the task id exists on the server with a different spec
        ├── TaskLostError               the task vanished (404 outlasted the grace period)
        ├── WaitTimeoutError            the task was not done within the wait timeout
        └── TaskFailedError             the task ended FAILED; carries errorMsg, report, kind
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from overlord import errors as _server

if TYPE_CHECKING:
    from overlord.client.models import TaskReport, TaskStatus


class ClientError(_server.OverlordError):
    """The Overlord client failed."""


class TransientError(ClientError):
    """A failure that may go away by itself; retrying later is reasonable."""


class HTTPStatusError(ClientError):
    """The service answered with an error status."""

    def __init__(
        self,
        message: str | None = None,
        *,
        status_code: int = 0,
        error_code: str | None = None,
        body: Any = None,
        method: str = "",
        path: str = "",
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.druid_error_code = error_code
        self.body = body
        self.method = method
        self.path = path


class ServiceUnavailable(TransientError):
    """Cannot reach the Overlord service."""


class CircuitOpenError(ServiceUnavailable):
    """The circuit breaker is open after repeated failures; not calling the service for now."""

    def __init__(self, message: str | None = None, *, retry_after: float = 0.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ServerError(HTTPStatusError, TransientError):
    """The service failed with a 5xx status."""


class TooManyRequests(HTTPStatusError, TransientError, _server.QueueFull):
    """The service is overloaded or its task queue is full (429)."""


class BadRequest(HTTPStatusError, _server.InvalidInput):
    """The service rejected the request as invalid (400)."""


class TaskAlreadyExists(BadRequest, _server.AlreadyExists):
    """A task with this id already exists."""


class NotFoundError(HTTPStatusError, _server.NotFound):
    """The service does not know this entry (404)."""


class SpecValidationError(ClientError, _server.InvalidSpec):
    """The task spec is invalid."""

    def __init__(self, message: str | None = None, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class SpecMismatchError(TaskAlreadyExists):
    """A task with this id exists but its stored spec differs from the one submitted."""


class TaskLostError(ClientError, _server.TaskNotFound):
    """The task was submitted but the service no longer knows it."""

    def __init__(self, message: str | None = None, *, task_id: str = "") -> None:
        super().__init__(message)
        self.task_id = task_id


class WaitTimeoutError(ClientError, TimeoutError):
    """The task did not finish within the wait timeout."""

    def __init__(self, message: str | None = None, *, task_id: str = "", last_status: TaskStatus | None = None) -> None:
        super().__init__(message)
        self.task_id = task_id
        self.last_status = last_status


class TaskFailedError(ClientError):
    """The task failed."""

    def __init__(
        self,
        message: str | None = None,
        *,
        status: TaskStatus,
        report: TaskReport | None,
        kind: str,
    ) -> None:
        super().__init__(message or f"Task[{status.id}] failed: {status.error_msg or 'no errorMsg'}")
        self.status = status
        self.report = report
        self.kind = kind
        """``"transient"`` or ``"structural"``, from ``classify_failure``."""

    @property
    def task_id(self) -> str:
        return self.status.id

    @property
    def error_msg(self) -> str | None:
        return self.status.error_msg or (self.report.error_msg if self.report else None)

    @property
    def transient(self) -> bool:
        return self.kind == "transient"
