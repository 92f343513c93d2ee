"""What a `Telemetry` instance offers once made: tracer, meter, logger, spans, `traced`, instruments,
log records and context propagation. How an instance is made and ended is `telemetry.py`."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, overload

from opentelemetry import propagate
from opentelemetry.context import Context
from opentelemetry.metrics import (
    CallbackT,
    Counter,
    Histogram,
    Meter,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
    UpDownCounter,
)
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import Link, Span, SpanKind, Tracer
from opentelemetry.util.types import Attributes

from cryostorm_run.facade.state import (
    _HEADER_GETTER,
    _State,
)
from cryostorm_run.facade.traced import trace_callable

if TYPE_CHECKING:

    pass


__all__ = ["TelemetryApi"]

P = ParamSpec("P")
R = TypeVar("R")


# Histogram bucket boundaries by unit, where the SDK's defaults (0, 5, 10, ... 10,000) do not fit.
BOUNDARIES_BY_UNIT: dict[str, list[float]] = {
    "s": [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0],  # semconv HTTP
    "1": [round(0.1 * i, 1) for i in range(21)],  # ratios and factors: 0 to 2
}


class TelemetryApi:
    """The signal methods of `Telemetry`, reading one immutable `_State` (swapped whole by `Telemetry`)."""

    _state: _State

    # -- state -----------------------------------------------------------------------------------

    @property
    def initialized(self) -> bool:
        """True once `from_settings` configured this instance (or it uses the hook's providers)."""
        return self._state.initialized

    @property
    def from_launcher(self) -> bool:
        """True when this instance uses the providers installed by ``cryostorm-run``'s hook."""
        state = self._state
        return state.providers is not None and not state.owned

    @property
    def tracer(self) -> Tracer:
        """The tracer of this service. With cryostorm's tracing off (`tracing.enabled=false`: traces left
        to the program), the global API's: spans go to the program's own `TracerProvider` once it has set
        one. Before initialisation, or with telemetry off altogether (`enabled=false`), a `NoOpTracer`."""
        return self._state.tracer

    @property
    def meter(self) -> Meter:
        """The meter of this service. With cryostorm's metrics off (`metrics.enabled=false`), the global
        API's: measurements go to the program's own `MeterProvider` once it has set one. Before
        initialisation, or with telemetry off altogether (`enabled=false`), a `NoOpMeter`."""
        return self._state.meter

    @property
    def logger(self) -> logging.Logger:
        """A standard `logging.Logger` of its own, ``<service name>.telemetry``, at ``logging.level``.

        Its records carry ``trace_id`` and ``span_id`` attributes (hex) of the active span, and go up
        through the service's logger (its handlers print them, as the program configured) to the root
        logger, where they are exported when logs are enabled. The program's own loggers, the one named
        after the service and the root logger included, keep their levels and filters.

        Example:
            >>> import logging
            >>> from cryostorm_run import Telemetry
            >>> isinstance(Telemetry.get_instance().logger, logging.Logger)
            True
        """
        return self._state.logger

    @property
    def propagator(self) -> TextMapPropagator:
        """The configured propagators as one; OpenTelemetry's global one before initialisation."""
        providers = self._state.providers
        if providers is not None and providers.propagator is not None:
            return providers.propagator
        return propagate.get_global_textmap()

    # -- traces ----------------------------------------------------------------------------------

    def start_as_current_span(
        self,
        name: str,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        context: Context | None = None,
        links: Sequence[Link] | None = None,
        *,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> AbstractContextManager[Span]:
        """Start a span and make it the current one for a ``with`` block.

        An exception leaving the block is recorded on the span, which gets ERROR status, and is
        re-raised. Pass `context` (from `extract_context`) to continue a remote trace.

        Example:
            >>> from cryostorm_run import Telemetry
            >>> with Telemetry.get_instance().start_as_current_span("load", attributes={"rows": 3}) as span:
            ...     span.set_attribute("done", True)
        """
        return self.tracer.start_as_current_span(
            name,
            context=context,
            kind=kind,
            attributes=attributes,
            links=links,
            record_exception=record_exception,
            set_status_on_exception=set_status_on_exception,
        )

    @overload
    def traced(self, func: Callable[P, R], /) -> Callable[P, R]: ...

    @overload
    def traced(
        self,
        func: None = None,
        /,
        *,
        span_name: str | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
    ) -> Callable[[Callable[P, R]], Callable[P, R]]: ...

    def traced(
        self,
        func: Callable[P, R] | None = None,
        /,
        *,
        span_name: str | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
    ) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
        """Decorator: each call is one span, named ``module.qualname`` unless `span_name` is given.

        Works bare or with arguments, on functions, coroutines, generators and async generators
        (for those the span covers the whole iteration). Exceptions are recorded, set ERROR
        status and are re-raised; the signature is preserved.

        Example:
            >>> from cryostorm_run import Telemetry
            >>> telemetry = Telemetry.get_instance()
            >>> @telemetry.traced
            ... def add(a: int, b: int) -> int:
            ...     return a + b
            >>> @telemetry.traced(span_name="fetch", attributes={"source": "cache"})
            ... async def fetch(key: str) -> str:
            ...     return key
            >>> add(1, 2)
            3
        """

        def decorate(target: Callable[P, R]) -> Callable[P, R]:
            return trace_callable(target, lambda: self.tracer, span_name, kind, attributes)

        return decorate if func is None else decorate(func)

    # -- metrics ---------------------------------------------------------------------------------

    def create_counter(self, name: str, unit: str = "", description: str = "") -> Counter:
        """A monotonic counter: ``counter.add(1, {"route": "/users"})``.

        Example:
            >>> from cryostorm_run import Telemetry
            >>> Telemetry.get_instance().create_counter("requests", unit="{request}").add(1)
        """
        return self.meter.create_counter(name, unit=unit, description=description)

    def create_up_down_counter(self, name: str, unit: str = "", description: str = "") -> UpDownCounter:
        """A counter that also goes down (open connections, queue length): ``c.add(-1)``."""
        return self.meter.create_up_down_counter(name, unit=unit, description=description)

    def create_histogram(self, name: str, unit: str = "", description: str = "",
                         boundaries: Sequence[float] | None = None) -> Histogram:
        """A distribution of values (latencies, sizes): ``histogram.record(0.25, {"route": "/"})``.

        Bucket boundaries follow the unit unless `boundaries` are given (passed to the SDK as the
        API's advisory ``explicit_bucket_boundaries_advisory``; a View the program sets still wins):
        seconds (``s``) get the semantic conventions' HTTP duration buckets (5 ms to 10 s), a
        ratio (``1``) 0 to 2 in steps of 0.1; other units the SDK's defaults (0 to 10,000).
        """
        chosen = list(boundaries) if boundaries is not None else BOUNDARIES_BY_UNIT.get(unit)
        if chosen is None:
            return self.meter.create_histogram(name, unit=unit, description=description)
        return self.meter.create_histogram(name, unit=unit, description=description,
                                           explicit_bucket_boundaries_advisory=chosen)

    def create_observable_gauge(
        self, name: str, callbacks: Sequence[CallbackT] | None = None, unit: str = "", description: str = ""
    ) -> ObservableGauge:
        """A value read when metrics are collected: each callback returns `Observation`s.

        Example:
            >>> from opentelemetry.metrics import Observation
            >>> from cryostorm_run import Telemetry
            >>> gauge = Telemetry.get_instance().create_observable_gauge(
            ...     "queue.depth", callbacks=[lambda options: [Observation(7)]]
            ... )
        """
        return self.meter.create_observable_gauge(name, callbacks, unit=unit, description=description)

    def create_observable_counter(
        self, name: str, callbacks: Sequence[CallbackT] | None = None, unit: str = "", description: str = ""
    ) -> ObservableCounter:
        """A monotonic total read when metrics are collected (CPU time, bytes sent so far)."""
        return self.meter.create_observable_counter(name, callbacks, unit=unit, description=description)

    def create_observable_up_down_counter(
        self, name: str, callbacks: Sequence[CallbackT] | None = None, unit: str = "", description: str = ""
    ) -> ObservableUpDownCounter:
        """A total that may go down, read when metrics are collected (memory in use)."""
        return self.meter.create_observable_up_down_counter(name, callbacks, unit=unit, description=description)

    # -- logs ------------------------------------------------------------------------------------

    def log(
        self,
        level: int,
        message: str,
        *args: object,
        extra: Mapping[str, object] | None = None,
        exc_info: Any = None,
    ) -> None:
        """Log through `logger`: ``%``-style `args`, structured `extra` fields, trace ids added.

        Example:
            >>> import logging
            >>> from cryostorm_run import Telemetry
            >>> Telemetry.get_instance().log(logging.INFO, "order %s placed", 42, extra={"stage": "end"})
        """
        # stacklevel=2: the record names the caller's function and line, not this method.
        self.logger.log(level, message, *args, extra=extra, exc_info=exc_info, stacklevel=2)

    # -- context propagation ---------------------------------------------------------------------

    def inject_context(self, carrier: MutableMapping[str, str], context: Context | None = None) -> None:
        """Write the current (or the given) trace context into `carrier`, e.g. outgoing headers.

        Example:
            >>> from cryostorm_run import Telemetry
            >>> headers: dict[str, str] = {}
            >>> Telemetry.get_instance().inject_context(headers)  # adds traceparent inside a span
        """
        self.propagator.inject(carrier, context=context)

    def extract_context(self, carrier: Mapping[str, Any], context: Context | None = None) -> Context:
        """The trace context found in `carrier` (incoming headers; names in any case).

        Pass the result as ``context=`` to `start_as_current_span` to continue the caller's trace.

        Example:
            >>> from cryostorm_run import Telemetry
            >>> ctx = Telemetry.get_instance().extract_context(
            ...     {"Traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
            ... )
        """
        return self.propagator.extract(carrier, context=context, getter=_HEADER_GETTER)
