"""The facade's state and helpers: one immutable `_State` per instance, bounded flushes, trace-aware
loggers, the header getter for `extract_context`."""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics, trace
from opentelemetry.metrics import (
    Meter,
)
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import Tracer

from cryostorm_run.export.providers import Providers, rt_level

if TYPE_CHECKING:

    pass


_FALLBACK_LOGGER = "cryostorm_run.telemetry"  # the name it had before the facade moved into facade/
_PRIVATE = object()


class _TraceIdFilter(logging.Filter):
    """Adds ``trace_id`` and ``span_id`` (hex, all zeros outside a span) to the facade logger's records,
    for formatters such as ``%(trace_id)s``. A value the caller passed in ``extra`` wins."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = trace.get_current_span().get_span_context()
        if not hasattr(record, "trace_id"):
            record.trace_id = trace.format_trace_id(ctx.trace_id)
        if not hasattr(record, "span_id"):
            record.span_id = trace.format_span_id(ctx.span_id)
        return True


_TRACE_ID_FILTER = _TraceIdFilter()


class _HeaderGetter(Getter[Mapping[str, Any]]):
    """HTTP header names are case-insensitive; many servers hand them over as a plain dict with
    whatever case the client sent (urllib sends ``Traceparent``)."""

    def get(self, carrier: Mapping[str, Any], key: str) -> list[str] | None:
        value = carrier.get(key)
        if value is None:
            lowered = key.lower()
            value = next((v for k, v in carrier.items() if k.lower() == lowered), None)
        if value is None:
            return None
        return [value] if isinstance(value, str) else list(value)

    def keys(self, carrier: Mapping[str, Any]) -> list[str]:
        return list(carrier.keys())


_HEADER_GETTER = _HeaderGetter()


def _trace_aware_logger(name: str) -> logging.Logger:
    logger = logging.getLogger(name)
    if _TRACE_ID_FILTER not in logger.filters:
        logger.addFilter(_TRACE_ID_FILTER)
    return logger


@dataclass(frozen=True)
class _State:
    """Everything one facade instance uses, swapped in one assignment (readers never see half)."""

    initialized: bool = False
    providers: Providers | None = None
    owned: bool = False  # built by the facade (it shuts them down) rather than by the hook
    tracer: Tracer = field(default_factory=trace.NoOpTracer)
    meter: Meter = field(default_factory=lambda: metrics.NoOpMeter(_FALLBACK_LOGGER))
    logger: logging.Logger = field(default_factory=lambda: _trace_aware_logger(_FALLBACK_LOGGER))
    logger_level: int | None = None  # the logger's level before the facade set it; restored by shutdown


def _launcher_providers() -> Providers | None:
    """The providers cryostorm-run's hook installed in this process, if it did.

    Looked up in `sys.modules` rather than imported: `_distro` pulls in the instrumentation
    machinery, and if the hook had run it would already be there.
    """
    distro = sys.modules.get("cryostorm_run.hook.distro")
    configurator = getattr(distro, "CryostormConfigurator", None)
    providers: Providers | None = getattr(configurator, "providers", None)
    if providers is not None and providers.deferred is not None:
        providers.deferred.build_all()  # the hook builds each signal at first use: this is the facade's
    return providers


def _state_for(providers: Providers, *, owned: bool) -> _State:
    rt = providers.runtime
    version = str(rt.resource_attributes.get("service.version", ""))
    # A signal cryostorm leaves to the program (`tracing.enabled=false`, the way out for a program with its
    # own provider): the facade's spans and measurements go where the program's go, through OpenTelemetry's
    # global API (its provider once set, a no-op while none is), not to a no-op of the facade's own.
    tracer: Tracer = (providers.tracer_provider or trace.get_tracer_provider()).get_tracer(
        rt.service_name, version, rt.schema_url)
    meter: Meter = (providers.meter_provider or metrics.get_meter_provider()).get_meter(
        rt.service_name, version, rt.schema_url)
    # Its own logger, a child of the service's: the program's logger of that name (or the root logger, for
    # a service named "root") keeps its level and filters; the facade only ever sets the level of its own.
    logger = _trace_aware_logger(f"{rt.service_name}.telemetry")
    previous = logger.level
    # Records go up to the root logger, where the bridge (_logbridge) exports them: no handler here,
    # so the application's own logging configuration decides what is printed, exactly once.
    logger.setLevel(rt_level(rt))
    return _State(True, providers, owned, tracer, meter, logger, previous)

