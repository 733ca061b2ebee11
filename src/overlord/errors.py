"""One hierarchy for every error Overlord raises on purpose.

The API layer turns these into Druid- or Elasticsearch-shaped bodies in one place
(``overlord.api.errors``); nothing else formats errors for the wire.

    OverlordError
    ├── InvalidInput            (400)  a request or spec is malformed; names the field
    │   ├── InvalidSpec         (400)  a task spec field is missing or wrong
    │   ├── UnsupportedTaskType (400)  the type is known to Druid but not run here, or unknown
    │   ├── ForbiddenPath       (400)  an input path is outside the allowed directories
    │   └── InvalidGranularity  (400)  not one of Druid's granularities (also a ValueError)
    ├── AlreadyExists           (400)  a task with that id is already stored (Druid answers 400)
    ├── NotFound                (404)
    │   └── TaskNotFound        (404)
    ├── ActionNotPermitted      (403)  a task action reaches beyond what the calling task owns
    ├── QueueFull               (429)  druid.indexer.queue.maxSize reached
    ├── TaskFailure                    raised inside a peon to fail the task with a message
    │   └── ParseExceptionLimit         too many unparseable rows
    ├── LockError                      a lock could not be granted, was revoked or timed out
    ├── MetadataConflict        (409)  a publish's expected data-source metadata is stale; nothing written
    ├── IllegalTransition       (500)  the queue asked a task's state to make a move the state machine forbids
    ├── ConfigError                    a setting is invalid; the service refuses to start
    ├── QueryTimeout            (504)  a SQL query ran past its timeout
    ├── QueryCancelled          (500)  a SQL query was cancelled by id (Druid's CANCELED category)
    └── ObjectStoreError               an S3 request failed; names the bucket and key (also an OSError)
    (and under InvalidInput: SqlError (400) with SqlUnsupported, a feature of Druid SQL not run here)
"""

from __future__ import annotations


class OverlordError(Exception):
    """Overlord failed."""

    http_status: int = 500
    error_code: str = "internalError"
    category: str = "RUNTIME_FAILURE"

    def __init__(self, message: str | None = None, **context: object) -> None:
        self.message = message or (self.__doc__ or type(self).__name__).strip().splitlines()[0]
        self.context = context
        super().__init__(self.message)


class InvalidInput(OverlordError):
    """The request is invalid."""

    http_status = 400
    error_code = "invalidInput"
    category = "INVALID_INPUT"


class InvalidSpec(InvalidInput):
    """The task spec is invalid."""


class UnsupportedTaskType(InvalidInput):
    """This task type is not supported."""


class ForbiddenPath(InvalidInput):
    """The input path is outside the directories this service may read."""


class InvalidGranularity(InvalidInput, ValueError):
    """The granularity is invalid."""


class AlreadyExists(OverlordError):
    """The entry already exists."""

    http_status = 400
    error_code = "entryAlreadyExists"
    category = "INVALID_INPUT"


class NotFound(OverlordError):
    """Not found."""

    http_status = 404
    error_code = "notFound"
    category = "NOT_FOUND"


class TaskNotFound(NotFound):
    """The task does not exist."""


class ActionNotPermitted(OverlordError):
    """A task may act only on its own data source, under its own locks, with files inside deep storage."""

    http_status = 403
    error_code = "forbidden"
    category = "FORBIDDEN"


class QueueFull(OverlordError):
    """The task queue is full (druid.indexer.queue.maxSize); try again later."""

    http_status = 429
    error_code = "capacityExceeded"
    category = "CAPACITY_EXCEEDED"


class TaskFailure(OverlordError):
    """The task failed."""


class ParseExceptionLimit(TaskFailure):
    """Max parse exceptions exceeded, terminating task..."""


class LockError(OverlordError):
    """The task lock could not be acquired."""

    http_status = 409
    error_code = "lockConflict"
    category = "CONFLICT"


class MetadataConflict(OverlordError):
    """The data source's stored metadata does not match the expected start metadata; nothing was published."""

    http_status = 409
    error_code = "metadataConflict"
    category = "CONFLICT"


class IllegalTransition(OverlordError):
    """The task cannot make this state transition.

    Only the queue moves a task between states, never on a caller's say-so, so this is a defect in
    the Overlord (500), not a conflict a client could resolve by retrying.
    """


class ConfigError(OverlordError):
    """The configuration is invalid."""


class Unauthenticated(OverlordError):
    """This endpoint is for a running task only: send its token in the X-Overlord-Task-Token header."""

    http_status = 401
    error_code = "unauthorized"
    category = "UNAUTHORIZED"


class Forbidden(OverlordError):
    """The caller may not act on this task or resource."""

    http_status = 403
    error_code = "forbidden"
    category = "FORBIDDEN"


class StoreUnavailable(OverlordError):
    """The metadata store cannot be written right now; try again shortly."""

    http_status = 503
    error_code = "serviceUnavailable"
    category = "RUNTIME_FAILURE"


class NotLeader(StoreUnavailable):
    """This Overlord is not the leader: it may not write to the metadata store; try the leader."""


class NotRunningYet(OverlordError):
    """The task has not started the work this asks about yet; ask again shortly."""

    http_status = 503
    error_code = "serviceUnavailable"
    category = "RUNTIME_FAILURE"


class SqlError(InvalidInput):
    """The SQL query is invalid."""

    def __init__(self, message: str | None = None, **context: object) -> None:
        super().__init__(message, **{"sourceType": "sql", **context})


class SqlUnsupported(SqlError):
    """This SQL feature is not supported."""


class QueryTimeout(OverlordError):
    """Query did not complete within configured timeout period. You can increase query timeout or tune the
    performance of query."""

    http_status = 504
    error_code = "timeout"
    category = "TIMEOUT"


class QueryCancelled(OverlordError):
    """Query was cancelled."""

    http_status = 500
    error_code = "canceled"
    category = "CANCELED"


class ObjectStoreError(OverlordError, OSError):
    """An object store request failed."""
