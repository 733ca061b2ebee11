"""The sans-IO core: operations are generators that yield effects and never touch a socket.

An operation yields ``Request`` (the driver answers with a ``Response`` or throws ``TransportFailure``
into the generator), ``Sleep`` (the driver sleeps, blocking or with ``await``) and ``Emit`` (a value
for a streaming caller). ``_transport`` holds the two small drivers, sync and async; everything
else (retries, breaker, polling, idempotency) is written once, here and in ``_ops``.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from overlord.client import errors
from overlord.client.backoff import RandomSource, RetryPolicy, WaitPolicy
from overlord.client.breaker import CircuitBreaker
from overlord.clock import SYSTEM_CLOCK, Clock

log = logging.getLogger("overlord.client")
log.addHandler(logging.NullHandler())  # a library stays quiet unless the application configures logging

T = TypeVar("T")

INDEXER = "/druid/indexer/v1"
COORDINATOR = "/druid/coordinator/v1"


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    params: Mapping[str, str | int] | None = None
    json: Any = None


@dataclass(frozen=True)
class Response:
    status_code: int
    content: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.content) if self.content else None

    @property
    def ok(self) -> bool:
        return 200 <= self.status_code < 300


@dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclass(frozen=True)
class Emit:
    value: Any


Effect = Request | Sleep | Emit
Op = Generator[Effect, Any, T]
"""An operation: a generator of effects that returns a ``T``."""


class TransportFailure(Exception):
    """Thrown into an operation by the driver when a request got no answer (internal)."""


StructuralHook = Callable[[errors.TaskFailedError], None]


@dataclass
class Context:
    """What every operation may use: policies, breaker, clock, randomness, hooks."""

    retry: RetryPolicy = field(default_factory=RetryPolicy)
    wait: WaitPolicy = field(default_factory=WaitPolicy)
    breaker: CircuitBreaker | None = None
    clock: Clock = SYSTEM_CLOCK
    rng: RandomSource = random.random
    on_structural_failure: StructuralHook | None = None


def send(ctx: Context, request: Request, *, retry: RetryPolicy | None = None) -> Op[Response]:
    """Send one request, retrying transient failures; returns the last response, or raises.

    A transient status that outlives the retries is returned (the caller maps it to an error);
    a connection failure that outlives them raises ``ServiceUnavailable``.
    """
    policy = retry or ctx.retry
    attempt = 0
    while True:
        if ctx.breaker is not None:
            ctx.breaker.before_call()
        retry_after: float | None = None
        try:
            response: Response = yield request
        except TransportFailure as exc:
            if ctx.breaker is not None:
                ctx.breaker.record_failure()
            if not policy.retry_connect_errors or attempt + 1 >= policy.max_attempts:
                raise errors.ServiceUnavailable(
                    f"Cannot reach the Overlord ({request.method} {request.path}): {exc}"
                ) from exc
            reason = str(exc)
        else:
            transient = policy.retries_status(response.status_code)
            if ctx.breaker is not None:
                if transient or response.status_code >= 500:
                    ctx.breaker.record_failure()
                else:
                    ctx.breaker.record_success()
            if not transient or attempt + 1 >= policy.max_attempts:
                return response
            retry_after = _retry_after(response)
            reason = f"HTTP {response.status_code}"
        delay = policy.delay(attempt, ctx.rng, retry_after)
        log.info(
            "retrying %s %s after %s (attempt %d), sleeping %.3fs",
            request.method,
            request.path,
            reason,
            attempt + 1,
            delay,
            extra={"action": "retry", "path": request.path, "attempt": attempt + 1},
        )
        attempt += 1
        yield Sleep(delay)


def _retry_after(response: Response) -> float | None:
    value = {k.lower(): v for k, v in response.headers.items()}.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def error_for(request: Request, response: Response) -> errors.HTTPStatusError:
    """Map an error answer to the typed error; Druid's body gives the message and error code."""
    body: Any
    try:
        body = response.json()
    except ValueError:
        body = response.text
    code: str | None = None
    message = response.text.strip() or f"HTTP {response.status_code}"
    if isinstance(body, dict):
        code = body.get("errorCode") or body.get("error")
        message = body.get("errorMessage") or body.get("error") or message
    status = response.status_code
    cls: type[errors.HTTPStatusError]
    if status == 404:
        cls = errors.NotFoundError
    elif status == 429:
        cls = errors.TooManyRequests
    elif status >= 500:
        cls = errors.ServerError
    elif status == 400 and code == "entryAlreadyExists":
        cls = errors.TaskAlreadyExists
    elif status == 400:
        cls = errors.BadRequest
    else:
        cls = errors.HTTPStatusError
    return cls(
        f"{request.method} {request.path} -> {status}: {message}",
        status_code=status,
        error_code=code,
        body=body,
        method=request.method,
        path=request.path,
    )


def call(ctx: Context, request: Request, *, retry: RetryPolicy | None = None) -> Op[Response]:
    """``send`` then raise the typed error for any non-2xx answer."""
    response = yield from send(ctx, request, retry=retry)
    if not response.ok:
        raise error_for(request, response)
    return response


def call_json(ctx: Context, request: Request, *, retry: RetryPolicy | None = None) -> Op[Any]:
    response = yield from call(ctx, request, retry=retry)
    try:
        return response.json()
    except ValueError as exc:
        raise errors.HTTPStatusError(
            f"{request.method} {request.path}: the answer is not JSON: {response.text[:200]!r}",
            status_code=response.status_code,
            method=request.method,
            path=request.path,
        ) from exc


def quote(segment: str) -> str:
    """Escape a path segment (task ids contain ':' and may contain '/')."""
    from urllib.parse import quote as _quote

    return _quote(segment, safe="")
