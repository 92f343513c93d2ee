"""One builder per signal, each choosing its exporter from a registry keyed by the exporter name."""

from __future__ import annotations

import contextlib
import os
import sys
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import Sampler

from cryostorm_run.common.runtime import Runtime, SignalRuntime
from cryostorm_run.export.errors import TelemetrySetupError
from cryostorm_run.export.otlp import LazySpanExporter, _Lazy, otlp_factory


class _Stderr:
    """Console exporters write here: stdout belongs to the program, and `sys.stderr` is looked up
    at write time so a later redirection (pytest capture, a supervisor) is respected."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


STDERR = _Stderr()


def _unknown(signal: str, name: str, registry: dict[str, Any]) -> TelemetrySetupError:
    return TelemetrySetupError(f"unknown {signal} exporter {name!r}; allowed: {', '.join(sorted(registry))}, none")


# -- traces --------------------------------------------------------------------------------------


def _console_spans(_: SignalRuntime) -> Any:
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter

    return ConsoleSpanExporter(out=STDERR)  # type: ignore[arg-type]


def _memory_spans(_: SignalRuntime) -> Any:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    return InMemorySpanExporter()


def _pretty_spans(_: SignalRuntime) -> Any:
    from cryostorm_run.export.pretty import PrettySpanExporter

    return PrettySpanExporter()  # writes to sys.stderr, looked up at write time like STDERR


SPAN_EXPORTERS: dict[str, Callable[[SignalRuntime], Any]] = {
    "console": _console_spans,
    "pretty": _pretty_spans,
    "otlp": lambda sig: LazySpanExporter(otlp_factory("traces", sig), sig.batch.export_timeout_ms / 1000),
    "in_memory": _memory_spans,
}


# Batch processors of this process, for the exit report (what was dropped, what is still queued).
BATCH_PROCESSORS: weakref.WeakSet[Any] = weakref.WeakSet()


def _queue_full(processor: Any) -> bool:
    queue = getattr(getattr(processor, "_batch_processor", None), "_queue", None)
    return queue is not None and queue.maxlen is not None and len(queue) >= queue.maxlen


# A collector that answers a batch within this is "keeping up": a full queue is a burst, worth a
# short wait. A slow or failing one never makes the program wait (its latency comes first).
FAST_EXPORT_S = 0.25


# While the collector is failing or slow, at most this share of max_queue_size stays queued: a
# queue of 16k spans the collector cannot take only costs the program memory and garbage-
# collection pauses (measured: p99 x2.5 with a full 16k queue, unchanged with 2k).
KEEP_WHILE_FAILING = 8


def keeping_up(processor: Any) -> bool:
    """Is the collector answering, and fast? (Unknown exporters, e.g. console: yes.)"""
    import time

    exporter = getattr(getattr(processor, "_batch_processor", None), "_exporter", None)
    if getattr(exporter, "building", False):
        return True  # importing grpc for the first export: nothing known about the collector yet
    if not getattr(exporter, "last_ok", True) or getattr(exporter, "last_duration_s", 0.0) > FAST_EXPORT_S:
        return False
    # An export still running past the threshold (a refused gRPC export retries for seconds).
    return not (getattr(exporter, "in_flight", 0)
                and time.monotonic() - getattr(exporter, "export_started", 0.0) > FAST_EXPORT_S)


def wait_for_room(processor: Any, max_block_s: float) -> bool:
    """Backpressure for bursts: True once the queue has room, False if it stays full."""
    if max_block_s <= 0 or not keeping_up(processor):
        return False
    import time

    deadline = time.monotonic() + max_block_s
    while _queue_full(processor):
        if time.monotonic() >= deadline or not keeping_up(processor):
            return False
        time.sleep(0.0005)  # releases the GIL: the exporter thread drains the queue meanwhile
    return True


def shed_while_failing(processor: Any, queue: Any) -> bool:
    """True when this item should be dropped because the collector is not keeping up."""
    return bool(queue.maxlen) and len(queue) >= queue.maxlen // KEEP_WHILE_FAILING and not keeping_up(processor)


def dropped(processor: Any) -> int:
    """Items this processor lost to a full queue or shed while the collector was not keeping up.

    Exact when the exporter counts what it was handed (cryostorm's OTLP exporters): whatever
    entered the SDK's queue and was neither handed over nor is still queued was pushed out.
    """
    exporter = getattr(getattr(processor, "_batch_processor", None), "_exporter", None)
    handled = getattr(exporter, "handled", None)
    if handled is None:
        return int(processor.shed + processor.overflow_estimate)
    return int(processor.shed + max(0, processor.entered - handled - queued(processor)))


def _reset_counts_after_fork() -> None:
    # The child starts with an empty queue (the SDK clears it): count from zero too.
    for processor in list(BATCH_PROCESSORS):
        processor.seen = processor.entered = processor.shed = processor.overflow_estimate = 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_counts_after_fork)


def queued(processor: Any) -> int:
    queue = getattr(getattr(processor, "_batch_processor", None), "_queue", None)
    return len(queue) if queue is not None else 0


def _counting_span_processor() -> type:
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from cryostorm_run.export.otlp_encode import preencode

    class CountingBatchSpanProcessor(BatchSpanProcessor):
        """Counts the spans the SDK drops when its queue is full (it only logs the first one)."""

        kind = "spans"
        seen = entered = shed = overflow_estimate = 0
        max_block_s = 0.0

        def on_end(self, span: Any) -> None:
            # Hot path (every span): one length check unless the queue is (nearly) full.
            self.seen += 1
            if span.context is None or not span.context.trace_flags.sampled:
                return
            queue = self._batch_processor._queue  # cleared, never replaced, after fork
            if len(queue) >= (queue.maxlen or 0) // KEEP_WHILE_FAILING:
                if shed_while_failing(self, queue):
                    self.shed += 1
                    return
                if len(queue) >= (queue.maxlen or 0) and not wait_for_room(self, self.max_block_s):
                    self.overflow_estimate += 1
            self.entered += 1
            if getattr(self._batch_processor._exporter, "direct", False):
                # Queued as bytes; on an encoding error, as is (the exporter's fallback reports it).
                with contextlib.suppress(Exception):
                    span = preencode(span)
            self._batch_processor.emit(span)  # BatchSpanProcessor.on_end, its sampled check done above

    return CountingBatchSpanProcessor


def span_processor(sig: SignalRuntime, exporter: Any) -> SpanProcessor:
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    if sig.processor == "simple":
        return SimpleSpanProcessor(exporter)
    b = sig.batch
    processor: SpanProcessor = _counting_span_processor()(
        exporter,
        max_queue_size=b.max_queue_size,
        schedule_delay_millis=b.schedule_delay_ms,
        max_export_batch_size=b.max_export_batch_size,
        export_timeout_millis=b.export_timeout_ms,
        **sig.processor_args,
    )
    processor.max_block_s = b.max_block_ms / 1000  # type: ignore[attr-defined]
    BATCH_PROCESSORS.add(processor)
    return processor


def build_tracer_provider(
    rt: Runtime,
    resource: Resource,
    sampler: Sampler,
    id_generator: IdGenerator | None = None,
    outputs: dict[str, Any] | None = None,
) -> TracerProvider:
    """`id_generator`: the SDK's random one when None. `outputs`: receives the exporter under "traces"."""
    sig = rt.traces
    if sig.exporter not in SPAN_EXPORTERS:
        raise _unknown("traces", sig.exporter, SPAN_EXPORTERS)
    provider = TracerProvider(resource=resource, sampler=sampler, id_generator=id_generator, shutdown_on_exit=False)
    exporter = SPAN_EXPORTERS[sig.exporter](sig)
    provider.add_span_processor(span_processor(sig, exporter))
    if outputs is not None:
        outputs["traces"] = exporter
    return provider


# -- metrics -------------------------------------------------------------------------------------


def _lazy_metric_exporter(sig: SignalRuntime) -> Any:
    from opentelemetry.sdk.metrics.export import MetricExporter

    class LazyMetricExporter(_Lazy, MetricExporter):
        # Cumulative temporality and default aggregation: what the OTLP exporter prefers by default.
        def __init__(self) -> None:
            _Lazy.__init__(self, otlp_factory("metrics", sig))
            MetricExporter.__init__(self)

        def export(self, metrics_data: Any, timeout_millis: float = 10_000, **kwargs: Any) -> Any:
            return self._get().export(metrics_data, timeout_millis=timeout_millis, **kwargs)

    return LazyMetricExporter()


def _periodic(rt: Runtime, exporter: Any) -> Any:
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    return PeriodicExportingMetricReader(
        exporter, export_interval_millis=rt.metric_interval_ms, export_timeout_millis=rt.metric_timeout_ms
    )


def _console_metrics(rt: Runtime) -> Any:
    from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

    return _periodic(rt, ConsoleMetricExporter(out=STDERR))  # type: ignore[arg-type]


def _otlp_metrics(rt: Runtime) -> Any:
    import os

    if os.environ.get("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "cumulative").lower() != "cumulative":
        return _periodic(rt, otlp_factory("metrics", rt.metrics)())  # the real exporter knows the preference
    return _periodic(rt, _lazy_metric_exporter(rt.metrics))


def _memory_metrics(_: Runtime) -> Any:
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    return InMemoryMetricReader()


def _prometheus_metrics(rt: Runtime) -> Any:
    try:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import start_http_server
    except ImportError:
        raise TelemetrySetupError(
            "metrics exporter 'prometheus' needs opentelemetry-exporter-prometheus: "
            "pip install opentelemetry-exporter-prometheus==0.66b2"
        ) from None
    start_http_server(port=rt.prometheus_port, addr=rt.prometheus_host)
    return PrometheusMetricReader()


METRIC_READERS: dict[str, Callable[[Runtime], Any]] = {
    "console": _console_metrics,
    "pretty": _console_metrics,  # no tree to draw for metrics: the JSON console exporter
    "otlp": _otlp_metrics,
    "in_memory": _memory_metrics,
    "prometheus": _prometheus_metrics,
}


def build_meter_provider(rt: Runtime, resource: Resource, outputs: dict[str, Any] | None = None) -> Any:
    """`outputs`: receives the metric reader under "metrics"."""
    from opentelemetry.sdk.metrics import MeterProvider

    if rt.metrics.exporter not in METRIC_READERS:
        raise _unknown("metrics", rt.metrics.exporter, METRIC_READERS)
    reader = METRIC_READERS[rt.metrics.exporter](rt)
    if outputs is not None:
        outputs["metrics"] = reader
    return MeterProvider(resource=resource, metric_readers=[reader], shutdown_on_exit=False)


# -- logs ----------------------------------------------------------------------------------------


def _console_logs(_: SignalRuntime) -> Any:
    from opentelemetry.sdk._logs.export import ConsoleLogRecordExporter

    return ConsoleLogRecordExporter(out=STDERR)  # type: ignore[arg-type]


def _lazy_log_exporter(sig: SignalRuntime) -> Any:
    from opentelemetry.sdk._logs.export import LogRecordExporter

    class LazyLogExporter(_Lazy, LogRecordExporter):
        def export(self, batch: Sequence[Any]) -> Any:
            return self._timed(batch)

    return LazyLogExporter(otlp_factory("logs", sig), retry_budget_s=sig.batch.export_timeout_ms / 1000)


def _memory_logs(_: SignalRuntime) -> Any:
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter

    return InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]


LOG_EXPORTERS: dict[str, Callable[[SignalRuntime], Any]] = {
    "console": _console_logs,
    "pretty": _console_logs,  # log records stay the JSON console exporter's
    "otlp": _lazy_log_exporter,
    "in_memory": _memory_logs,
}


def _counting_log_processor() -> type:
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

    class CountingBatchLogRecordProcessor(BatchLogRecordProcessor):
        kind = "log records"
        seen = entered = shed = overflow_estimate = 0
        max_block_s = 0.0

        def on_emit(self, log_record: Any) -> None:
            self.seen += 1
            queue = self._batch_processor._queue
            if shed_while_failing(self, queue):
                self.shed += 1
                return
            if _queue_full(self) and not wait_for_room(self, self.max_block_s):
                self.overflow_estimate += 1
            self.entered += 1
            super().on_emit(log_record)

    return CountingBatchLogRecordProcessor


def log_processor(sig: SignalRuntime, exporter: Any) -> Any:
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor

    if sig.processor == "simple":
        return SimpleLogRecordProcessor(exporter)
    b = sig.batch
    processor = _counting_log_processor()(
        exporter,
        schedule_delay_millis=b.schedule_delay_ms,
        max_export_batch_size=b.max_export_batch_size,
        export_timeout_millis=b.export_timeout_ms,
        max_queue_size=b.max_queue_size,
        **sig.processor_args,
    )
    processor.max_block_s = b.max_block_ms / 1000
    BATCH_PROCESSORS.add(processor)
    return processor


def build_logger_provider(rt: Runtime, resource: Resource, outputs: dict[str, Any] | None = None) -> Any:
    """`outputs`: receives the exporter under "logs" (not the development console echo)."""
    from opentelemetry.sdk._logs import LoggerProvider

    sig = rt.logs
    if sig.exporter not in LOG_EXPORTERS:
        raise _unknown("logs", sig.exporter, LOG_EXPORTERS)
    provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
    exporter = LOG_EXPORTERS[sig.exporter](sig)
    provider.add_log_record_processor(log_processor(sig, exporter))
    if outputs is not None:
        outputs["logs"] = exporter
    if rt.environment == "development" and sig.exporter not in ("console", "pretty"):
        # Seed 3.10: in development, log records are also echoed to the console.
        from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor

        provider.add_log_record_processor(SimpleLogRecordProcessor(_console_logs(sig)))
    return provider
