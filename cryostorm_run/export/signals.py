"""One builder per signal, each choosing its exporter from a registry keyed by the exporter name."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import Sampler

from cryostorm_run.common.runtime import Runtime, SignalRuntime
from cryostorm_run.export.batch import KEEP_WHILE_FAILING, BatchQueue
from cryostorm_run.export.errors import TelemetrySetupError, exporting
from cryostorm_run.export.lazymeter import LazyMeterProvider
from cryostorm_run.export.otlp import LazySpanExporter, _Lazy, otlp_factory
from cryostorm_run.export.processors import log_batch_processor, span_batch_processor


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


def _known(signal: str, sig: SignalRuntime, registry: dict[str, Any]) -> None:
    unknown = next((name for name in sig.exporters if name not in registry), None)
    if unknown is not None:
        raise _unknown(signal, unknown, registry)


# -- traces --------------------------------------------------------------------------------------


def _json_spans(_: SignalRuntime) -> Any:
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter

    return ConsoleSpanExporter(out=STDERR)  # type: ignore[arg-type]


def _console_spans(sig: SignalRuntime) -> Any:
    from cryostorm_run.export.compact import ByTerminal
    from cryostorm_run.export.pretty import PrettySpanExporter

    # On a terminal, the readable tree; JSON for machines (a pipe, a file, a container log)
    return ByTerminal(PrettySpanExporter(), _json_spans(sig))


def _memory_spans(_: SignalRuntime) -> Any:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    return InMemorySpanExporter()


def _pretty_spans(_: SignalRuntime) -> Any:
    from cryostorm_run.export.pretty import PrettySpanExporter

    return PrettySpanExporter()  # writes to sys.stderr, looked up at write time like STDERR


SPAN_EXPORTERS: dict[str, Callable[[SignalRuntime], Any]] = {
    "console": _console_spans,
    "pretty": _pretty_spans,
    "console_json": _json_spans,  # the SDK's JSON documents, terminal or not
    "otlp": lambda sig: LazySpanExporter(sig, sig.batch.export_timeout_ms / 1000, sig.batch.max_in_flight),
    "in_memory": _memory_spans,
}


def span_processor(sig: SignalRuntime, exporter: Any, copy_to: str = "") -> SpanProcessor:
    """`copy_to`: the exporter's name when it is another one of the signal's (its queue's reports name it)."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    if sig.processor == "simple":
        return SimpleSpanProcessor(exporter)
    from cryostorm_run.export.otlp_encode import preencode

    b = sig.batch
    # Spans queued as encoded bytes cost the program little (no objects for the GC to walk): the whole
    # queue is kept through an outage. Other items keep 1/KEEP_WHILE_FAILING of it while it fails.
    direct = getattr(exporter, "direct", False)
    keep = 1 if direct else KEEP_WHILE_FAILING
    # Several exports in flight need an exporter that takes them at once: cryostorm's own OTLP transport.
    queue = BatchQueue(exporter, "spans", max_queue_size=b.max_queue_size, schedule_delay_ms=b.schedule_delay_ms,
                       max_export_batch_size=b.max_export_batch_size, export_timeout_ms=b.export_timeout_ms,
                       max_block_s=b.max_block_ms / 1000, keep_while_failing=keep,
                       max_in_flight=b.max_in_flight if direct else 1, copy_to=copy_to)
    processor: SpanProcessor = span_batch_processor(queue, preencode)
    return processor


def _sdk_internal_metrics() -> dict[str, Any]:
    """The SDK's own span metrics (`otel.sdk.span.started`/`.live`) only when asked for.

    SDK 1.44+ records them only with OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED=true; 1.40 always did,
    into the global meter provider (so every program exported them, and each span start paid for two
    counter updates). The same rule on every line: unless asked for, they go to a no-op meter provider.
    """
    if os.environ.get("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", "").strip().lower() == "true":
        return {}
    from opentelemetry.metrics import NoOpMeterProvider

    return {"meter_provider": NoOpMeterProvider()}


def build_tracer_provider(
    rt: Runtime,
    resource: Resource,
    sampler: Sampler,
    id_generator: IdGenerator | None = None,
    outputs: dict[str, Any] | None = None,
) -> TracerProvider:
    """`id_generator`: the SDK's random one when None. `outputs`: receives the (first) exporter under
    "traces". Each of the signal's exporters gets its own processor and queue, as in the SDK."""
    sig = rt.traces
    _known("traces", sig, SPAN_EXPORTERS)
    provider = TracerProvider(resource=resource, sampler=sampler, id_generator=id_generator, shutdown_on_exit=False,
                              **_sdk_internal_metrics())
    for n, name in enumerate(sig.exporters):  # the first's queue reports as "spans", the others' name theirs
        exporter = SPAN_EXPORTERS[name](sig)
        provider.add_span_processor(span_processor(sig, exporter, copy_to=name if n else ""))
        if outputs is not None and not n:
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
            import time

            from opentelemetry.sdk.metrics.export import MetricExportResult

            if self.gave_up_at_exit:  # a long outage at exit (export/outage.py)
                self.last_ok = False
                return MetricExportResult.FAILURE
            started, result = time.monotonic(), None
            try:
                with exporting(*self.fault_target):
                    result = self._get().export(metrics_data, timeout_millis=timeout_millis, **kwargs)
                return result
            finally:
                self.note_outcome(result is MetricExportResult.SUCCESS, started)

    return LazyMetricExporter()


def _periodic(rt: Runtime, exporter: Any) -> Any:
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    from cryostorm_run.common.ownthreads import leaving_signals_to_the_program, quiet_at_fork

    reader = leaving_signals_to_the_program(lambda: PeriodicExportingMetricReader(  # its thread, and in a fork
        exporter, export_interval_millis=rt.metric_interval_ms, export_timeout_millis=rt.metric_timeout_ms))
    quiet_at_fork()  # after the reader's own fork handler, which restarts its thread in the child
    return _fork_safe(reader)


def _fork_safe(reader: Any) -> Any:
    """The SDK's periodic reader restarts its thread in a forked child but keeps its `_export_lock`: a
    child forked while the parent was exporting (billiard respawns pool children from a supervisor
    thread at any moment) inherits it held and never exports a metric; its exit flush then waits out
    shutdown_timeout_millis. The child gets a fresh lock. Feature-detected (README, "Private
    attributes"); without that attribute, the SDK's own behaviour."""
    import threading
    import weakref

    if not hasattr(os, "register_at_fork") or not isinstance(getattr(reader, "_export_lock", None),
                                                              type(threading.Lock())):
        return reader
    ref = weakref.ref(reader)

    def renew() -> None:
        alive = ref()
        if alive is not None:
            alive._export_lock = threading.Lock()

    os.register_at_fork(after_in_child=renew)
    return reader


def _json_metrics() -> Any:
    from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

    return ConsoleMetricExporter(out=STDERR)  # type: ignore[arg-type]


def _console_metrics(rt: Runtime) -> Any:
    from cryostorm_run.export.compact import ByTerminal

    return _periodic(rt, ByTerminal(_compact_metrics(), _json_metrics()))


def _compact_metrics() -> Any:
    from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

    from cryostorm_run.export.compact import metric_lines

    return ConsoleMetricExporter(out=STDERR, formatter=metric_lines)  # type: ignore[arg-type]


def _pretty_metrics(rt: Runtime) -> Any:
    return _periodic(rt, _compact_metrics())


def _otlp_metrics(rt: Runtime) -> Any:
    # The real exporter knows the temporality preference and the default histogram aggregation
    # (passed through to the program); the lazy one has the OTLP defaults only.
    if (os.environ.get("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "cumulative").strip().lower()
            != "cumulative" or os.environ.get("OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION", "").strip()):
        return _periodic(rt, otlp_factory("metrics", rt.metrics)())
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
            "pip install opentelemetry-exporter-prometheus"
        ) from None
    start_http_server(port=rt.prometheus_port, addr=rt.prometheus_host)
    return PrometheusMetricReader()


METRIC_READERS: dict[str, Callable[[Runtime], Any]] = {
    "console": _console_metrics,
    "pretty": _pretty_metrics,  # one line per metric point
    "console_json": lambda rt: _periodic(rt, _json_metrics()),
    "otlp": _otlp_metrics,
    "in_memory": _memory_metrics,
    "prometheus": _prometheus_metrics,
}


def sdk_meter_provider(rt: Runtime, resource: Resource, outputs: dict[str, Any] | None = None) -> Any:
    """The SDK's MeterProvider with a reader per configured exporter. `outputs`: receives the first reader
    under "metrics"."""
    from opentelemetry.sdk.metrics import MeterProvider

    _known("metrics", rt.metrics, METRIC_READERS)
    readers = [METRIC_READERS[name](rt) for name in rt.metrics.exporters]
    if outputs is not None:
        outputs["metrics"] = readers[0]
    # The others first: the provider shuts its readers down in this order at exit, and a console copy then
    # does not wait behind an OTLP export to a collector that is down.
    return MeterProvider(resource=resource, metric_readers=readers[::-1], shutdown_on_exit=False)


def build_meter_provider(rt: Runtime, resource: Resource, outputs: dict[str, Any] | None = None, *,
                         lazy: bool = False) -> LazyMeterProvider:
    """`outputs`: receives the metric reader under "metrics" (once the SDK's provider is built).

    `lazy`: the SDK's MeterProvider is built on the first `get_meter()` (export/lazymeter.py), except
    for the Prometheus exporter, whose scrape endpoint comes up at start-up. Otherwise it is built now,
    and a configuration it cannot be built with raises here.
    """
    _known("metrics", rt.metrics, METRIC_READERS)
    provider = LazyMeterProvider(lambda: sdk_meter_provider(rt, resource, outputs))
    if not lazy or "prometheus" in rt.metrics.exporters:
        provider.sdk_provider  # noqa: B018  # built now: its errors are setup errors
    return provider


# -- logs ----------------------------------------------------------------------------------------


def _json_logs(_: SignalRuntime) -> Any:
    from opentelemetry.sdk._logs.export import ConsoleLogRecordExporter

    return ConsoleLogRecordExporter(out=STDERR)  # type: ignore[arg-type]


def _console_logs(sig: SignalRuntime) -> Any:
    from cryostorm_run.export.compact import ByTerminal

    return ByTerminal(_compact_logs(sig), _json_logs(sig))


def _compact_logs(_: SignalRuntime) -> Any:
    from opentelemetry.sdk._logs.export import ConsoleLogRecordExporter

    from cryostorm_run.export.compact import log_line

    return ConsoleLogRecordExporter(out=STDERR, formatter=log_line)  # type: ignore[arg-type]


def _lazy_log_exporter(sig: SignalRuntime) -> Any:
    from opentelemetry.sdk._logs import export as export_module
    from opentelemetry.sdk._logs.export import LogRecordExporter

    class LazyLogExporter(_Lazy, LogRecordExporter):
        FAILURE = getattr(export_module, "LogExportResult", None) and export_module.LogExportResult.FAILURE

        def export(self, batch: Sequence[Any]) -> Any:
            return self._timed(batch)

    return LazyLogExporter(otlp_factory("logs", sig), retry_budget_s=sig.batch.export_timeout_ms / 1000)


def _memory_logs(_: SignalRuntime) -> Any:
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter

    return InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]


LOG_EXPORTERS: dict[str, Callable[[SignalRuntime], Any]] = {
    "console": _console_logs,
    "pretty": _compact_logs,  # one line per log record
    "console_json": _json_logs,
    "otlp": _lazy_log_exporter,
    "in_memory": _memory_logs,
}


def log_processor(sig: SignalRuntime, exporter: Any, copy_to: str = "") -> Any:
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor

    if sig.processor == "simple":
        return SimpleLogRecordProcessor(exporter)
    b = sig.batch
    queue = BatchQueue(exporter, "log records", max_queue_size=b.max_queue_size,
                       schedule_delay_ms=b.schedule_delay_ms, max_export_batch_size=b.max_export_batch_size,
                       export_timeout_ms=b.export_timeout_ms, max_block_s=b.max_block_ms / 1000, copy_to=copy_to)
    return log_batch_processor(queue)


def build_logger_provider(rt: Runtime, resource: Resource, outputs: dict[str, Any] | None = None) -> Any:
    """`outputs`: receives the (first) exporter under "logs" (not the console echo)."""
    from opentelemetry.sdk._logs import LoggerProvider

    sig = rt.logs
    _known("logs", sig, LOG_EXPORTERS)
    provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
    for n, name in enumerate(sig.exporters):
        exporter = LOG_EXPORTERS[name](sig)
        provider.add_log_record_processor(log_processor(sig, exporter, copy_to=name if n else ""))
        if outputs is not None and not n:
            outputs["logs"] = exporter
    if rt.log_echo and not {"console", "pretty", "console_json"} & set(sig.exporters):  # already on stderr
        # logging.console_echo: each exported record also as one line on stderr (seed 3.10 did this in
        # every development run, as JSON: 434 stderr lines for three Flask requests, errors twice).
        from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor

        provider.add_log_record_processor(SimpleLogRecordProcessor(_compact_logs(sig)))
    return provider
