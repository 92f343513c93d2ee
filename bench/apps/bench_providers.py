"""The per-request measure's providers (bench/perrequest.py), one set per variant; not part of cryostorm-run.

- `fastapi-floor`: providers that are configured (so FastAPI's native telemetry runs its whole request path:
  context, propagation, attributes, the send wrapper) but whose tracer and meter are the API's no-op ones.
  What FastAPI's telemetry costs on its own: no implementation of the API can go under it.
- `light-bound`: a deliberately minimal implementation of the API's span and synchronous instruments in pure
  Python, for measurement only: a span keeps its context, attributes, status and events and is appended to a
  bounded queue when it ends; a counter or histogram aggregates under a lock into a dict keyed by its
  attribute set. It does none of what a faithful implementation must also do (sampling, span limits,
  attribute validation, exemplars, encoding and export), so it is a lower bound on the cost of a span and
  metric path of cryostorm's own, not a design.
- `sdk-floor-traces`: the SDK's `TracerProvider` with a span processor that does nothing; metrics unset.
- `sdk-floor`: that and the SDK's `MeterProvider` with an in-memory reader never read.
- `sdk-export`: the SDK's `BatchSpanProcessor` + OTLP gRPC span exporter and a periodic reader with the
  OTLP gRPC metric exporter, as a hand-written setup has them.
"""

from __future__ import annotations

import bisect
import collections
import random
import threading
import time
from typing import Any

from opentelemetry import metrics, trace

ENDED: collections.deque[Any] = collections.deque(maxlen=2048)  # light-bound's ended spans (an exporter's queue)


class _LightSpan(trace.Span):
    def __init__(self, name: str, context: trace.SpanContext, parent: trace.SpanContext | None, kind: Any,
                 attributes: Any, start_time: int | None) -> None:
        self.name, self.context, self.parent, self.kind = name, context, parent, kind
        self.attributes = dict(attributes) if attributes else {}
        self.start_time = start_time or time.time_ns()
        self.end_time: int | None = None
        self.status: Any = None
        self.events: list[Any] = []

    def get_span_context(self) -> trace.SpanContext:
        return self.context

    def set_attributes(self, attributes: Any) -> None:
        self.attributes.update(attributes)

    def set_attribute(self, key: str, value: Any) -> None:
        self.attributes[key] = value

    def add_event(self, name: str, attributes: Any = None, timestamp: int | None = None) -> None:
        self.events.append((name, attributes, timestamp or time.time_ns()))

    def update_name(self, name: str) -> None:
        self.name = name

    def is_recording(self) -> bool:
        return self.end_time is None

    def set_status(self, status: Any, description: str | None = None) -> None:
        self.status = (status, description)

    def record_exception(self, exception: BaseException, attributes: Any = None, timestamp: int | None = None,
                         escaped: bool = False) -> None:
        self.add_event("exception", {"exception.type": type(exception).__name__}, timestamp)

    def end(self, end_time: int | None = None) -> None:
        if self.end_time is None:
            self.end_time = end_time or time.time_ns()
            ENDED.append(self)


class _LightTracer(trace.Tracer):
    def start_span(self, name: str, context: Any = None, kind: Any = trace.SpanKind.INTERNAL, attributes: Any = None,
                   links: Any = None, start_time: int | None = None, record_exception: bool = True,
                   set_status_on_exception: bool = True) -> trace.Span:
        parent = trace.get_current_span(context).get_span_context()
        trace_id = parent.trace_id if parent.is_valid else random.getrandbits(128)
        own = trace.SpanContext(trace_id, random.getrandbits(64), False, trace.TraceFlags(trace.TraceFlags.SAMPLED))
        return _LightSpan(name, own, parent if parent.is_valid else None, kind, attributes, start_time)

    def start_as_current_span(self, name: str, context: Any = None, kind: Any = trace.SpanKind.INTERNAL,
                              attributes: Any = None, links: Any = None, start_time: int | None = None,
                              record_exception: bool = True, set_status_on_exception: bool = True,
                              end_on_exit: bool = True) -> Any:
        span = self.start_span(name, context, kind, attributes, links, start_time)
        return trace.use_span(span, end_on_exit=end_on_exit, record_exception=record_exception,
                              set_status_on_exception=set_status_on_exception)


class _LightTracerProvider(trace.TracerProvider):
    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        return _LightTracer()


def _key(attributes: Any) -> frozenset[Any]:
    return frozenset(attributes.items()) if attributes else frozenset()


class _LightSum(metrics.UpDownCounter, metrics.Counter):
    def __init__(self) -> None:
        self.values: dict[frozenset[Any], float] = {}
        self.lock = threading.Lock()

    def add(self, amount: float, attributes: Any = None, context: Any = None) -> None:
        key = _key(attributes)
        with self.lock:
            self.values[key] = self.values.get(key, 0) + amount


class _LightHistogram(metrics.Histogram):
    def __init__(self, boundaries: Any) -> None:
        self.boundaries = tuple(boundaries or (0, 5, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500, 5000, 7500,
                                               10000))
        self.points: dict[frozenset[Any], list[Any]] = {}
        self.lock = threading.Lock()

    def record(self, amount: float, attributes: Any = None, context: Any = None) -> None:
        key = _key(attributes)
        index = bisect.bisect_left(self.boundaries, amount)
        with self.lock:
            point = self.points.get(key)
            if point is None:
                point = self.points[key] = [[0] * (len(self.boundaries) + 1), 0, 0.0, amount, amount]
            point[0][index] += 1
            point[1] += 1
            point[2] += amount
            point[3] = min(point[3], amount)
            point[4] = max(point[4], amount)


class _LightMeter(metrics.NoOpMeter):
    def create_counter(self, name: str, unit: str = "", description: str = "") -> Any:
        return _LightSum()

    def create_up_down_counter(self, name: str, unit: str = "", description: str = "") -> Any:
        return _LightSum()

    def create_histogram(self, name: str, unit: str = "", description: str = "", *,
                         explicit_bucket_boundaries_advisory: Any = None) -> Any:
        return _LightHistogram(explicit_bucket_boundaries_advisory)


class _LightMeterProvider(metrics.MeterProvider):
    def get_meter(self, name: str, *args: Any, **kwargs: Any) -> metrics.Meter:
        return _LightMeter(name)


class _NoOpTracerProvider(trace.TracerProvider):  # not the API's class: FastAPI steps aside for that one
    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        return trace.NoOpTracer()


class _NoOpMeterProvider(metrics.MeterProvider):
    def get_meter(self, name: str, *args: Any, **kwargs: Any) -> metrics.Meter:
        return metrics.NoOpMeter(name)


def install(variant: str, endpoint: str = "") -> None:
    """Set the global providers of `variant` (nothing for `bare` and `cryostorm*`: the hook sets cryostorm's)."""
    if variant == "fastapi-floor":
        trace.set_tracer_provider(_NoOpTracerProvider())
        metrics.set_meter_provider(_NoOpMeterProvider())
    elif variant == "light-bound":
        trace.set_tracer_provider(_LightTracerProvider())
        metrics.set_meter_provider(_LightMeterProvider())
    elif variant.startswith("sdk-"):
        _install_sdk(variant, endpoint)


def _install_sdk(variant: str, endpoint: str) -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

    resource = Resource.create({"service.name": "bench"})
    tracer_provider, readers = TracerProvider(resource=resource), []
    if variant.startswith("sdk-floor"):
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader

        tracer_provider.add_span_processor(SpanProcessor())
        readers.append(InMemoryMetricReader())
    if variant == "sdk-export":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True)))
        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=endpoint, insecure=True)))
    trace.set_tracer_provider(tracer_provider)
    if variant != "sdk-floor-traces":
        metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=readers))


def one_server_span_per_request(variant: str) -> None:
    """One SERVER span per request in every variant, in-process and in the server mode (call it before the
    bench app builds its `FastAPI()`): FastAPI's operation spans off unless the app sets them (cryostorm-run's
    default); a FastAPI without native telemetry gets the contrib instrumentation (receive/send spans off) as
    under cryostorm-run, except in `bare` (no telemetry) and the `cryostorm*` variants (its hook does it)."""
    import inspect

    import fastapi.applications

    original = fastapi.applications.FastAPI.__init__
    if "telemetry" not in inspect.signature(original).parameters:
        if variant != "bare" and not variant.startswith("cryostorm"):
            from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

            FastAPIInstrumentor().instrument(exclude_spans=["receive", "send"])
        return

    def __init__(self: Any, *args: Any, telemetry: Any = None, **kwargs: Any) -> None:
        config = dict(telemetry) if telemetry is not None else {}
        config.setdefault("operation_spans", False)
        original(self, *args, telemetry=config, **kwargs)

    fastapi.applications.FastAPI.__init__ = __init__  # type: ignore[method-assign]
