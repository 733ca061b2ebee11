"""The peon's side of the task-action protocol (docs/task-actions.md).

A running task never touches the metadata store: it posts actions to the Overlord at
``runtime["overlordUrl"]``, so the same task code works when the peon runs elsewhere. The client
is synchronous (task code is plain blocking Python) and rides out an unreachable or restarting
Overlord (connection errors, 502/503/504) for ``retry_for_s`` (three minutes by default) with capped
exponential backoff, because an Overlord restart or failover must not fail a task. With several
Overlords, a follower answers 307 to the leader (followed), and an Overlord that went away is
replaced by the others the runtime names (``FailoverTransport``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import httpx

from overlord.errors import LockError, TaskFailure

ACTION_PATH = "/druid/indexer/v1/action"
RETRY_STATUSES = frozenset({502, 503, 504})  # the Overlord is restarting, failing over or busy
TOKEN_HEADER = "X-Overlord-Task-Token"  # the calling task's secret; the Overlord stores only its hash
_LOG = logging.getLogger(__name__)
logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per action would drown the task log


def error_message(response: httpx.Response) -> str:
    """The server's ``errorMessage`` (Druid error body), or the raw text when there is none."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip() or f"HTTP {response.status_code}"
    if isinstance(body, dict):
        for key in ("errorMessage", "error", "message"):
            if isinstance(body.get(key), str) and (key != "error" or body[key] != "druidException"):
                return str(body[key])
    return response.text.strip() or f"HTTP {response.status_code}"


class FailoverTransport(httpx.BaseTransport):
    """Sends a request to its own URL's Overlord, else to the first of the others that answers, and keeps
    going to that one: the leader that launched a peon may be gone (kill -9, failover), and any
    other Overlord either leads now or redirects to the one that does."""

    def __init__(self, urls: Iterable[str], inner: httpx.BaseTransport | None = None) -> None:
        urls = list(urls)
        # plain http never uses TLS; skipping the CA bundle saves 20-50 ms of every peon's start
        self._inner = inner or httpx.HTTPTransport(verify=not all(u.startswith("http://") for u in urls))
        self._others = [httpx.URL(u) for u in dict.fromkeys(urls)]
        self._instead: dict[tuple[str, str, int | None], httpx.URL] = {}

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        origin = (url.scheme, url.host, url.port)
        instead = self._instead.get(origin)
        candidates = [instead] if instead is not None else []
        candidates += [url, *self._others]
        seen: set[tuple[str, str, int | None]] = set()
        failure: httpx.TransportError | None = None
        for target in candidates:
            key = (target.scheme, target.host, target.port)
            if key in seen:
                continue
            seen.add(key)
            request.url = url.copy_with(scheme=target.scheme, host=target.host, port=target.port)
            try:
                response = self._inner.handle_request(request)
            except httpx.ConnectError as exc:
                failure = exc
                continue
            if key != origin:
                self._instead[origin] = target
            else:
                self._instead.pop(origin, None)
            return response
        assert failure is not None
        raise failure

    def close(self) -> None:
        self._inner.close()


def failover_transport(url: str, others: Iterable[str]) -> httpx.BaseTransport | None:
    """A ``FailoverTransport`` when there are other Overlords to fall back to, else httpx's default."""
    others = [u for u in others if u != url]
    return FailoverTransport([url, *others]) if others else None


class ActionClient:
    """Posts task actions for one task; typed helpers return the action's ``result``.

    ``transport`` (or the class-wide ``default_transport``) lets tests answer actions in memory
    with an ``httpx.MockTransport``.
    """

    default_transport: httpx.BaseTransport | None = None

    def __init__(
        self,
        base_url: str,
        task_id: str,
        *,
        timeout_s: float = 330.0,
        retry_for_s: float = 180.0,
        backoff_s: float = 0.2,
        max_backoff_s: float = 5.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        token: str = "",
        fallback_urls: Iterable[str] = (),
    ) -> None:
        self.task_id = task_id
        self.retry_for_s = retry_for_s
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._sleep = sleep
        self._monotonic = monotonic
        self._base_url = base_url
        self._client_args: dict[str, Any] = {
            "timeout": timeout_s,
            "transport": transport or self.default_transport,
            "headers": {TOKEN_HEADER: token} if token else {},
            "fallback_urls": list(fallback_urls),
        }
        self._http: httpx.Client | None = None

    @property
    def http(self) -> httpx.Client:
        """The HTTP client, built on first use: a task that never calls the Overlord (a noop run by the
        local runner, which reads its status from a file) skips the ~5 ms an httpx client costs a peon."""
        if self._http is None:
            args, url = self._client_args, self._base_url
            self._http = httpx.Client(
                base_url=url,
                timeout=args["timeout"],
                transport=args["transport"] or failover_transport(url, args["fallback_urls"]),
                headers=args["headers"],
                follow_redirects=True,  # a follower Overlord answers 307 to the leader
                # plain http never uses TLS; skipping the CA bundle saves 20-50 ms of every peon's start
                verify=not url.startswith("http://"),
            )
        return self._http

    @classmethod
    def for_toolbox(cls, toolbox: Any, **kwargs: Any) -> ActionClient:
        url = toolbox.runtime.overlord_url
        if not url:
            raise TaskFailure("runtime.overlordUrl is not set: this task needs the Overlord for task actions")
        return cls(url, toolbox.task_id, token=toolbox.runtime.task_token, fallback_urls=toolbox.runtime.overlord_urls,
                   **kwargs)  # fmt: skip

    def close(self) -> None:
        if self._http is not None:
            self._http.close()

    def __enter__(self) -> ActionClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- transport ------------------------------------------------------------------------------

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One HTTP call to the Overlord, retried while it is unreachable or unavailable (not on answers)."""
        attempt = 0
        deadline = self._monotonic() + self.retry_for_s
        while True:
            try:
                response = self.http.request(method, path, **kwargs)
                if response.status_code not in RETRY_STATUSES:
                    return response
                problem = f"HTTP {response.status_code}: {error_message(response)}"
            except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
                problem = str(exc) or type(exc).__name__
            attempt += 1
            delay = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
            if self._monotonic() + delay > deadline:
                raise TaskFailure(f"Overlord unreachable at {self.http.base_url} for {self.retry_for_s:g}s: {problem}")
            _LOG.warning("%s %s failed (%s); retry %d in %.1fs", method, path, problem, attempt, delay)
            self._sleep(delay)

    def submit(self, action: dict[str, Any]) -> Any:
        """Run one action; LockError for 409, TaskFailure for other errors, with the server's message."""
        r = self.request("POST", ACTION_PATH, json={"task": self.task_id, "action": action})
        if r.status_code == 200:
            return r.json().get("result")
        msg = f"Task action [{action.get('type')}] failed: {error_message(r)}"
        if r.status_code == 409:
            raise LockError(msg, task_id=self.task_id, status=r.status_code)
        raise TaskFailure(msg, task_id=self.task_id, status=r.status_code)

    # ---- locks ----------------------------------------------------------------------------------

    @staticmethod
    def _lock_action(kind: str, interval: str, lock_type: str, granularity: str, **extra: Any) -> dict[str, Any]:
        action: dict[str, Any] = {"type": kind, "interval": interval, "lockType": lock_type}
        action["granularity"] = granularity
        action.update({k: v for k, v in extra.items() if v is not None})
        return action

    def lock_acquire(
        self,
        interval: str,
        *,
        lock_type: str = "EXCLUSIVE",
        granularity: str = "timeChunk",
        partition_id: int | None = None,
        timeout_ms: int | None = None,
    ) -> dict[str, Any]:
        lock = self.submit(
            self._lock_action(
                "lockAcquire", interval, lock_type, granularity, partitionId=partition_id, timeoutMs=timeout_ms
            )
        )
        if not isinstance(lock, dict):
            raise LockError(f"Could not acquire lock on interval[{interval}]", task_id=self.task_id)
        return lock

    def lock_try_acquire(
        self, interval: str, *, lock_type: str = "EXCLUSIVE", granularity: str = "timeChunk"
    ) -> dict[str, Any] | None:
        return self.submit(self._lock_action("lockTryAcquire", interval, lock_type, granularity))  # type: ignore[no-any-return]

    def lock_release(self, interval: str) -> None:
        self.submit({"type": "lockRelease", "interval": interval})

    def lock_list(self) -> list[dict[str, Any]]:
        return list(self.submit({"type": "lockList"}) or [])

    # ---- segments -------------------------------------------------------------------------------

    def segment_allocate(
        self,
        *,
        data_source: str,
        timestamp: str,
        query_granularity: Any,
        preferred_segment_granularity: Any,
        sequence_name: str,
        previous_segment_id: str | None,
        lock_granularity: str = "TIME_CHUNK",
        task_lock_type: str = "EXCLUSIVE",
    ) -> dict[str, Any] | None:
        """A pending segment id ``{"dataSource","interval","version","shardSpec"}`` or None."""
        return self.submit(  # type: ignore[no-any-return]
            {
                "type": "segmentAllocate",
                "dataSource": data_source,
                "timestamp": timestamp,
                "queryGranularity": query_granularity,
                "preferredSegmentGranularity": preferred_segment_granularity,
                "sequenceName": sequence_name,
                "previousSegmentId": previous_segment_id,
                "lockGranularity": lock_granularity,
                "taskLockType": task_lock_type,
            }
        )

    def segment_transactional_insert(
        self, segments: list[dict[str, Any]], segments_to_be_dropped: Iterable[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        action: dict[str, Any] = {"type": "segmentTransactionalInsert", "segments": segments}
        if segments_to_be_dropped:
            action["segmentsToBeDropped"] = list(segments_to_be_dropped)
        result = self.submit(action)
        if not isinstance(result, dict) or not result.get("success"):
            raise TaskFailure(f"Failed to publish segments: {result!r}", task_id=self.task_id)
        return result

    def segment_list_used(self, data_source: str, intervals: list[str]) -> list[dict[str, Any]]:
        return list(self.submit({"type": "segmentListUsed", "dataSource": data_source, "intervals": intervals}) or [])

    def retrieve_unused_segments(self, data_source: str, interval: str) -> list[dict[str, Any]]:
        result = self.submit({"type": "retrieveUnusedSegments", "dataSource": data_source, "interval": interval})
        return list(result or [])

    def segment_nuke(self, segments: list[dict[str, Any]]) -> None:
        self.submit({"type": "segmentNuke", "segments": segments})

    def mark_segments_unused(self, data_source: str, interval: str) -> int:
        result = self.submit({"type": "markSegmentsAsUnused", "dataSource": data_source, "interval": interval})
        return int((result or {}).get("numChangedSegments", 0))
