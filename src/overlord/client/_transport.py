"""The two drivers that run sans-IO operations over httpx, and the descriptors that make them methods.

This is the only code that differs between ``Client`` and ``AsyncClient``: how a request is sent
and how a pause is taken. Everything else runs unchanged under both.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, overload

import httpx

from overlord.client._protocol import Context, Emit, Op, Request, Response, Sleep, TransportFailure

P = ParamSpec("P")
T = TypeVar("T")


def _build(http: httpx.Client | httpx.AsyncClient, request: Request) -> httpx.Request:
    params = {k: str(v) for k, v in (request.params or {}).items()}
    return http.build_request(request.method, request.path, params=params, json=request.json)


def _response(raw: httpx.Response) -> Response:
    return Response(status_code=raw.status_code, content=raw.content, headers=dict(raw.headers))


def _step(op: Op[Any], value: Any, failure: BaseException | None) -> Any:
    return op.throw(failure) if failure is not None else op.send(value)


def drive_sync(op: Op[T], http: httpx.Client, sleep: Callable[[float], None]) -> Generator[Any, None, T]:
    """Run ``op``; yields emitted values; the operation's result is the generator's return value."""
    value: Any = None
    failure: BaseException | None = None
    try:
        while True:
            try:
                effect = _step(op, value, failure)
            except StopIteration as stop:
                result: T = stop.value
                return result
            value, failure = None, None
            if isinstance(effect, Request):
                try:
                    value = _response(http.send(_build(http, effect)))
                except httpx.TransportError as exc:
                    failure = TransportFailure(f"{type(exc).__name__}: {exc}")
            elif isinstance(effect, Sleep):
                sleep(effect.seconds)
            elif isinstance(effect, Emit):
                yield effect.value
    finally:
        op.close()


def run_sync(op: Op[T], http: httpx.Client, sleep: Callable[[float], None]) -> T:
    """Run a non-streaming ``op`` to its result."""
    gen = drive_sync(op, http, sleep)
    try:
        next(gen)
    except StopIteration as stop:
        result: T = stop.value
        return result
    gen.close()
    raise TypeError("this operation streams; use its streaming method")


async def _execute(http: httpx.AsyncClient, effect: Request) -> tuple[Any, BaseException | None]:
    try:
        return _response(await http.send(_build(http, effect))), None
    except httpx.TransportError as exc:
        return None, TransportFailure(f"{type(exc).__name__}: {exc}")


async def run_async(op: Op[T], http: httpx.AsyncClient, sleep: Callable[[float], Awaitable[None]]) -> T:
    """Run a non-streaming ``op`` on the event loop."""
    value: Any = None
    failure: BaseException | None = None
    while True:
        try:
            effect = _step(op, value, failure)
        except StopIteration as stop:
            result: T = stop.value
            return result
        value, failure = None, None
        if isinstance(effect, Request):
            value, failure = await _execute(http, effect)
        elif isinstance(effect, Sleep):
            await sleep(effect.seconds)
        else:
            op.close()
            raise TypeError("this operation streams; use its streaming method")


async def stream_async(
    op: Op[Any], http: httpx.AsyncClient, sleep: Callable[[float], Awaitable[None]]
) -> AsyncIterator[Any]:
    """Run a streaming ``op`` on the event loop, yielding what it emits."""
    value: Any = None
    failure: BaseException | None = None
    try:
        while True:
            try:
                effect = _step(op, value, failure)
            except StopIteration:
                return
            value, failure = None, None
            if isinstance(effect, Request):
                value, failure = await _execute(http, effect)
            elif isinstance(effect, Sleep):
                await sleep(effect.seconds)
            else:
                yield effect.value
    finally:
        op.close()


OpFn = Callable[Concatenate[Context, P], Op[T]]


def _named(fn: Callable[..., Any], op: Callable[..., Any]) -> Callable[..., Any]:
    fn.__name__ = op.__name__
    fn.__qualname__ = op.__name__
    fn.__doc__ = op.__doc__
    return fn


class SyncMethod(Generic[P, T]):
    """Turns ``op(ctx, *args)`` into a blocking ``client.op(*args)``."""

    def __init__(self, op: OpFn[P, T]) -> None:
        self.op = op
        self.__doc__ = op.__doc__

    @overload
    def __get__(self, obj: None, owner: type) -> SyncMethod[P, T]: ...
    @overload
    def __get__(self, obj: object, owner: type) -> Callable[P, T]: ...
    def __get__(self, obj: Any, owner: type) -> Any:
        if obj is None:
            return self
        op = self.op

        def method(*args: P.args, **kwargs: P.kwargs) -> T:
            return run_sync(op(obj._ctx, *args, **kwargs), obj._http, obj._sleep)

        return _named(method, op)


class AsyncMethod(Generic[P, T]):
    """Turns ``op(ctx, *args)`` into ``await client.op(*args)``."""

    def __init__(self, op: OpFn[P, T]) -> None:
        self.op = op
        self.__doc__ = op.__doc__

    @overload
    def __get__(self, obj: None, owner: type) -> AsyncMethod[P, T]: ...
    @overload
    def __get__(self, obj: object, owner: type) -> Callable[P, Awaitable[T]]: ...
    def __get__(self, obj: Any, owner: type) -> Any:
        if obj is None:
            return self
        op = self.op

        async def method(*args: P.args, **kwargs: P.kwargs) -> T:
            return await run_async(op(obj._ctx, *args, **kwargs), obj._http, obj._sleep)

        return _named(method, op)


class SyncStreamMethod(Generic[P]):
    """Turns a streaming ``op(ctx, *args)`` into ``for chunk in client.op(*args)``."""

    def __init__(self, op: OpFn[P, None]) -> None:
        self.op = op
        self.__doc__ = op.__doc__

    @overload
    def __get__(self, obj: None, owner: type) -> SyncStreamMethod[P]: ...
    @overload
    def __get__(self, obj: object, owner: type) -> Callable[P, Iterator[str]]: ...
    def __get__(self, obj: Any, owner: type) -> Any:
        if obj is None:
            return self
        op = self.op

        def method(*args: P.args, **kwargs: P.kwargs) -> Iterator[str]:
            return drive_sync(op(obj._ctx, *args, **kwargs), obj._http, obj._sleep)

        return _named(method, op)


class AsyncStreamMethod(Generic[P]):
    """Turns a streaming ``op(ctx, *args)`` into ``async for chunk in client.op(*args)``."""

    def __init__(self, op: OpFn[P, None]) -> None:
        self.op = op
        self.__doc__ = op.__doc__

    @overload
    def __get__(self, obj: None, owner: type) -> AsyncStreamMethod[P]: ...
    @overload
    def __get__(self, obj: object, owner: type) -> Callable[P, AsyncIterator[str]]: ...
    def __get__(self, obj: Any, owner: type) -> Any:
        if obj is None:
            return self
        op = self.op

        def method(*args: P.args, **kwargs: P.kwargs) -> AsyncIterator[str]:
            return stream_async(op(obj._ctx, *args, **kwargs), obj._http, obj._sleep)

        return _named(method, op)
