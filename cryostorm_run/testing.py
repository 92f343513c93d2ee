"""Deterministic, in-memory telemetry for your own tests.

Enable the pytest plugin in your top-level ``conftest.py``::

    pytest_plugins = ["cryostorm_run.testing"]

and use the ``capture_telemetry`` fixture. It configures the process-wide `Telemetry` with
in-memory exporters, simple (synchronous) processors and sequential ids (trace and span ids
1, 2, 3, ...), and resets everything afterwards::

    def test_checkout_is_traced(capture_telemetry):
        telemetry = capture_telemetry.telemetry  # the same as Telemetry.get_instance()
        with telemetry.start_as_current_span("checkout"):
            telemetry.log(logging.INFO, "paid")
        assert [span.name for span in capture_telemetry.spans()] == ["checkout"]
        assert capture_telemetry.logs()[0].log_record.body == "paid"

Without pytest, `captured_telemetry()` is the same as a context manager.

Example:
    >>> import logging
    >>> from cryostorm_run.testing import captured_telemetry
    >>> with captured_telemetry() as capture:
    ...     with capture.telemetry.start_as_current_span("job"):
    ...         capture.telemetry.create_counter("jobs").add(1)
    ...     [(s.name, s.context.trace_id, s.context.span_id) for s in capture.spans()]
    ...     [m.name for m in capture.metrics()]
    [('job', 1, 1)]
    ['jobs']
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, Metric
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator

from cryostorm_run.facade.telemetry import Telemetry

if TYPE_CHECKING:
    from cryostorm_run.settings import TelemetrySettings

__all__ = [
    "SequentialIdGenerator",
    "TelemetryCapture",
    "capture_settings",
    "capture_telemetry_fixture",
    "captured_telemetry",
    "reset_opentelemetry_globals",
    "reset_telemetry",
]


class SequentialIdGenerator(IdGenerator):
    """Trace ids and span ids 1, 2, 3, ... (each counted separately): ids a test can spell out.

    Example:
        >>> ids = SequentialIdGenerator()
        >>> ids.generate_trace_id(), ids.generate_span_id(), ids.generate_span_id()
        (1, 1, 2)
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._trace_ids = itertools.count(1)
        self._span_ids = itertools.count(1)

    def generate_trace_id(self) -> int:
        with self._lock:
            return next(self._trace_ids)

    def generate_span_id(self) -> int:
        with self._lock:
            return next(self._span_ids)

    def is_trace_id_random(self) -> bool:
        return False


@dataclass(frozen=True)
class TelemetryCapture:
    """What `capture_telemetry` yields: the configured facade and what it recorded so far."""

    telemetry: Telemetry
    span_exporter: InMemorySpanExporter
    metric_reader: InMemoryMetricReader
    log_exporter: InMemoryLogRecordExporter

    @classmethod
    def of(cls, telemetry: Telemetry) -> TelemetryCapture:
        """Read what `telemetry`, already configured with in-memory exporters, records.

        Raises RuntimeError naming the signals that are not exported in memory.
        """
        providers = telemetry._state.providers
        outputs = providers.outputs if providers is not None else {}
        expected = {"traces": InMemorySpanExporter, "metrics": InMemoryMetricReader, "logs": InMemoryLogRecordExporter}
        wrong = [signal for signal, kind in expected.items() if not isinstance(outputs.get(signal), kind)]
        if wrong:
            hint = " (is the test process running under cryostorm-run?)" if telemetry.from_launcher else ""
            raise RuntimeError(
                f"capture needs the in_memory exporter for {', '.join(wrong)}{hint}; "
                "use cryostorm_run.testing.capture_settings()"
            )
        return cls(telemetry, outputs["traces"], outputs["metrics"], outputs["logs"])

    def spans(self) -> list[ReadableSpan]:
        """Finished spans, in the order they ended."""
        return list(self.span_exporter.get_finished_spans())

    def metrics(self) -> list[Metric]:
        """Every metric collected now (cumulative), across scopes; see `metric` for one by name."""
        data = self.metric_reader.get_metrics_data()
        if data is None:
            return []
        return [
            metric
            for resource_metrics in data.resource_metrics
            for scope_metrics in resource_metrics.scope_metrics
            for metric in scope_metrics.metrics
        ]

    def metric(self, name: str) -> Metric:
        """The collected metric called `name`; KeyError listing the names seen otherwise."""
        found = {metric.name: metric for metric in self.metrics()}
        if name not in found:
            raise KeyError(f"no metric {name!r}; collected: {', '.join(sorted(found)) or 'none'}")
        return found[name]

    def logs(self) -> list[ReadableLogRecord]:
        """Exported log records, oldest first (``.log_record.body``, ``.log_record.trace_id``, ...)."""
        return list(self.log_exporter.get_finished_logs())

    def clear(self) -> None:
        """Forget the spans and logs captured so far (metrics are cumulative and stay)."""
        self.span_exporter.clear()
        self.log_exporter.clear()


def capture_settings(service_name: str = "test-service") -> TelemetrySettings:
    """In-memory exporters, simple processors, DEBUG logs, no console echo: what the fixture uses.

    Example:
        >>> capture_settings().exporter_type.value
        'in_memory'
    """
    from cryostorm_run.settings import TelemetrySettings

    return TelemetrySettings(
        exporter_type="in_memory",
        # Not "development": there, log records are also echoed to the console.
        service={"name": service_name, "environment": "production"},
        tracing={"processor_type": "simple"},
        logging={"processor_type": "simple", "level": "DEBUG"},
    )


_CANNOT_RESET = ("cannot reset OpenTelemetry's global providers with this opentelemetry-api ({}); run each "
                 "test that configures telemetry in its own process")


def reset_opentelemetry_globals() -> None:
    """Forget OpenTelemetry's set-once global providers and propagator. For tests only.

    It has to set OpenTelemetry's private globals (the API offers no reset); listed in the README
    ("Private attributes"). They are checked first: with an API that no longer has one of them, a
    RuntimeError says so and nothing is changed. Tracers obtained earlier through
    `opentelemetry.trace.get_tracer` keep the provider they already resolved to.
    """
    from opentelemetry import propagate, trace
    from opentelemetry.baggage.propagation import W3CBaggagePropagator
    from opentelemetry.propagators.composite import CompositePropagator
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    try:
        from opentelemetry._logs import _internal as logs_internal
        from opentelemetry.metrics import _internal as metrics_internal
        from opentelemetry.util._once import Once
    except ImportError as exc:
        raise RuntimeError(_CANNOT_RESET.format(f"{exc.name or exc} cannot be imported")) from None
    wanted = ((trace, ("_TRACER_PROVIDER_SET_ONCE", "_TRACER_PROVIDER")),
              (metrics_internal, ("_METER_PROVIDER_SET_ONCE", "_METER_PROVIDER", "_PROXY_METER_PROVIDER",
                                  "_ProxyMeterProvider")),
              (logs_internal, ("_LOGGER_PROVIDER_SET_ONCE", "_LOGGER_PROVIDER", "_PROXY_LOGGER_PROVIDER",
                               "ProxyLoggerProvider")))
    missing = [f"{module.__name__}.{name}" for module, names in wanted for name in names if not hasattr(module, name)]
    if missing:
        raise RuntimeError(_CANNOT_RESET.format(f"{', '.join(missing)} missing"))

    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None
    metrics_internal._METER_PROVIDER_SET_ONCE = Once()
    metrics_internal._METER_PROVIDER = None
    metrics_internal._PROXY_METER_PROVIDER = metrics_internal._ProxyMeterProvider()
    logs_internal._LOGGER_PROVIDER_SET_ONCE = Once()
    logs_internal._LOGGER_PROVIDER = None
    logs_internal._PROXY_LOGGER_PROVIDER = logs_internal.ProxyLoggerProvider()
    propagate.set_global_textmap(CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()]))


def reset_telemetry() -> None:
    """`Telemetry.reset()` plus `reset_opentelemetry_globals()`: a process as if never configured."""
    Telemetry.reset()
    reset_opentelemetry_globals()


@contextmanager
def captured_telemetry(settings: TelemetrySettings | None = None) -> Iterator[TelemetryCapture]:
    """Configure the facade for capture (`capture_settings` by default), yield, then reset it all.

    `settings` must use the ``in_memory`` exporter for all three signals.
    """
    reset_telemetry()
    try:
        telemetry = Telemetry.from_settings(settings or capture_settings(), id_generator=SequentialIdGenerator())
        yield TelemetryCapture.of(telemetry)
    finally:
        reset_telemetry()


@pytest.fixture(name="capture_telemetry")
def capture_telemetry_fixture() -> Iterator[TelemetryCapture]:
    """Fixture ``capture_telemetry``: in-memory spans, metrics and logs with sequential ids; reset afterwards.

    Import it under this name into a conftest if you prefer that to ``pytest_plugins``.
    """
    with captured_telemetry() as capture:
        yield capture
