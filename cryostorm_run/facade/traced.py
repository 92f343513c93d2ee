"""The `traced` decorator's machinery: one wrapper per kind of callable, chosen at decoration time.

A span around a plain function or a coroutine is a `with` block. A generator is different: it
runs in slices, between which the *caller's* code runs. Its span therefore lasts from the first
`next()` to the generator's end, but is made current only while the generator's own body runs,
so the caller never sees it as the active span and no context token is ever detached in a
context other than the one it was attached in (the async generator case).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from typing import Any, ParamSpec, TypeVar, cast

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.util.types import Attributes

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


def default_span_name(func: Callable[..., Any]) -> str:
    """``module.qualname``, e.g. ``app.orders.OrderService.place``."""
    return f"{func.__module__}.{func.__qualname__}"


def trace_callable(
    func: Callable[P, R],
    get_tracer: Callable[[], Tracer],
    span_name: str | None,
    kind: SpanKind,
    attributes: Attributes,
) -> Callable[P, R]:
    """Wrap `func` so each call (or each whole iteration, for generators) is one span.

    `get_tracer` is called on every call, so a function decorated before telemetry is set up
    is traced once it is.
    """
    name = span_name or default_span_name(func)
    wrapper: Callable[..., Any]
    if inspect.isasyncgenfunction(func):
        wrapper = _async_generator_wrapper(func, get_tracer, name, kind, attributes)
    elif inspect.iscoroutinefunction(func):
        wrapper = _coroutine_wrapper(func, get_tracer, name, kind, attributes)
    elif inspect.isgeneratorfunction(func):
        wrapper = _generator_wrapper(func, get_tracer, name, kind, attributes)
    else:
        wrapper = _function_wrapper(func, get_tracer, name, kind, attributes)
    return cast("Callable[P, R]", functools.wraps(func)(wrapper))


def _function_wrapper(
    func: Callable[..., Any], get_tracer: Callable[[], Tracer], name: str, kind: SpanKind, attributes: Attributes
) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with get_tracer().start_as_current_span(name, kind=kind, attributes=attributes):
            return func(*args, **kwargs)

    return wrapper


def _coroutine_wrapper(
    func: Callable[..., Awaitable[Any]],
    get_tracer: Callable[[], Tracer],
    name: str,
    kind: SpanKind,
    attributes: Attributes,
) -> Callable[..., Awaitable[Any]]:
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        with get_tracer().start_as_current_span(name, kind=kind, attributes=attributes):
            return await func(*args, **kwargs)

    return wrapper


def _record_error(span: Span, exc: Exception) -> None:
    # The same as OpenTelemetry's `use_span`: only Exception subclasses are errors; GeneratorExit
    # (a consumer stopping early) and KeyboardInterrupt are not.
    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))


def _in_span(span: Span, step: Callable[[], T]) -> T:
    """Run one slice of a generator body with `span` as the current span."""
    token = otel_context.attach(trace.set_span_in_context(span))
    try:
        return step()
    finally:
        otel_context.detach(token)


async def _in_span_async(span: Span, step: Callable[[], Awaitable[T]]) -> T:
    token = otel_context.attach(trace.set_span_in_context(span))
    try:
        return await step()
    finally:
        otel_context.detach(token)


def _generator_wrapper(
    func: Callable[..., Generator[Any, Any, Any]],
    get_tracer: Callable[[], Tracer],
    name: str,
    kind: SpanKind,
    attributes: Attributes,
) -> Callable[..., Generator[Any, Any, Any]]:
    def wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        span = get_tracer().start_span(name, kind=kind, attributes=attributes)
        try:
            inner = _in_span(span, lambda: func(*args, **kwargs))
            value = _in_span(span, lambda: next(inner))
            while True:  # forward send() and throw() like `yield from`, one slice at a time
                try:
                    sent = yield value
                except GeneratorExit:
                    _in_span(span, inner.close)
                    raise
                except BaseException as exc:  # thrown in by the consumer: the body decides
                    value = _in_span(span, functools.partial(inner.throw, exc))
                else:
                    value = _in_span(span, functools.partial(inner.send, sent))
        except StopIteration as stop:
            return stop.value
        except Exception as exc:
            _record_error(span, exc)
            raise
        finally:
            span.end()

    return wrapper


def _async_generator_wrapper(
    func: Callable[..., AsyncGenerator[Any, Any]],
    get_tracer: Callable[[], Tracer],
    name: str,
    kind: SpanKind,
    attributes: Attributes,
) -> Callable[..., AsyncGenerator[Any, Any]]:
    async def wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
        span = get_tracer().start_span(name, kind=kind, attributes=attributes)
        try:
            inner = _in_span(span, lambda: func(*args, **kwargs))
            value = await _in_span_async(span, inner.__anext__)
            while True:  # forward asend() and athrow(), one slice at a time
                try:
                    sent = yield value
                except GeneratorExit:
                    await _in_span_async(span, inner.aclose)
                    raise
                except BaseException as exc:
                    value = await _in_span_async(span, functools.partial(inner.athrow, exc))
                else:
                    value = await _in_span_async(span, functools.partial(inner.asend, sent))
        except StopAsyncIteration:
            return
        except Exception as exc:
            _record_error(span, exc)
            raise
        finally:
            span.end()

    return wrapper
