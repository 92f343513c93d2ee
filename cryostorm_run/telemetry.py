"""The `Telemetry` facade: manual spans, metrics, logs and context propagation in a few calls.

It shares everything with the launcher's hook: settings become ``OTEL_*`` variables
(`settings_env`), those become a `Runtime` (`runtime_from_env`), and `build_providers` makes
the SDK providers. Under ``cryostorm-run`` the hook has already done all that, and the facade
simply uses the providers the hook installed: no second setup, no duplicate exports.

Example:
    >>> from cryostorm_run import Telemetry, TelemetrySettings
    >>> telemetry = Telemetry.from_settings(TelemetrySettings(exporter_type="none"))
    >>> with telemetry.start_as_current_span("checkout") as span:
    ...     telemetry.create_counter("orders").add(1)
    >>> telemetry.shutdown()
    True
    >>> Telemetry.reset()

Global state: OpenTelemetry lets its global providers be set once per process. The facade
therefore keeps all of its own state in one place (the `Telemetry` class: the instance and its
lock; each instance: one immutable `_State`) and hands out tracers and meters from *its*
providers, never through the globals. `Telemetry.reset()` shuts those providers down and forgets
the instance; the globals keep pointing at the old, shut-down providers. Tests that configure
the facade repeatedly also reset the globals with `cryostorm_run.testing.reset_telemetry()`.
"""

from __future__ import annotations

import atexit
import logging
import sys
import threading
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, ParamSpec, TypeVar, overload

from opentelemetry import metrics, propagate, trace
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
from opentelemetry.propagators.textmap import Getter, TextMapPropagator
from opentelemetry.trace import Link, Span, SpanKind, Tracer
from opentelemetry.util.types import Attributes

from cryostorm_run._envmap import settings_env
from cryostorm_run._runtime import runtime_from_env
from cryostorm_run._sdk import Providers, build_providers, install, rt_level, shutdown
from cryostorm_run._traced import trace_callable

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.id_generator import IdGenerator

    from cryostorm_run._model import TelemetryModel

__all__ = ["Telemetry"]

P = ParamSpec("P")
R = TypeVar("R")

_FALLBACK_LOGGER = "cryostorm_run.telemetry"
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
    distro = sys.modules.get("cryostorm_run._distro")
    configurator = getattr(distro, "CryostormConfigurator", None)
    providers: Providers | None = getattr(configurator, "providers", None)
    return providers


def _state_for(providers: Providers, *, owned: bool) -> _State:
    rt = providers.runtime
    version = rt.resource_attributes.get("service.version", "")
    tracer: Tracer = trace.NoOpTracer()
    if providers.tracer_provider is not None:
        tracer = providers.tracer_provider.get_tracer(rt.service_name, version, rt.schema_url)
    meter: Meter = metrics.NoOpMeter(rt.service_name)
    if providers.meter_provider is not None:
        meter = providers.meter_provider.get_meter(rt.service_name, version, rt.schema_url)
    logger = _trace_aware_logger(rt.service_name)
    previous = logger.level
    # Records go up to the root logger, where the bridge (_logbridge) exports them: no handler here,
    # so the application's own logging configuration decides what is printed, exactly once.
    logger.setLevel(rt_level(rt))
    return _State(True, providers, owned, tracer, meter, logger, previous)


def _bounded(work: Callable[[], None], timeout_s: float) -> bool:
    worker = threading.Thread(target=work, name="cryostorm-flush", daemon=True)
    try:
        worker.start()
    except RuntimeError:
        # Python 3.12 refuses new threads during interpreter shutdown: this is the facade's exit
        # flush of the hook's providers, which the hook's own exit handler flushes (bounded) next.
        return True
    worker.join(timeout_s)
    return not worker.is_alive()


def _flush(providers: Providers, timeout_s: float) -> bool:
    """Export everything buffered without shutting down: the hook owns these providers."""

    def work() -> None:
        for provider in (providers.tracer_provider, providers.logger_provider, providers.meter_provider):
            if provider is not None:
                try:
                    provider.force_flush(int(timeout_s * 1000))
                except Exception as exc:  # one broken exporter must not stop the others
                    print(f"cryostorm: telemetry flush error: {exc}", file=sys.stderr)

    return _bounded(work, timeout_s)


class Telemetry:
    """One process-wide entry point to tracing, metrics, logs and context propagation.

    Create it once with `from_settings`; reach it anywhere with `get_instance`. Methods never
    raise because telemetry is off: a disabled signal gives OpenTelemetry's no-op tracer or meter,
    and before initialisation every method is a no-op (`initialized` is False).

    Example:
        >>> from cryostorm_run import Telemetry, TelemetrySettings
        >>> telemetry = Telemetry.from_settings(TelemetrySettings(exporter_type="none"))
        >>> telemetry is Telemetry.get_instance()
        True
        >>> Telemetry.reset()
    """

    _lock: ClassVar[threading.RLock] = threading.RLock()
    _instance: ClassVar[Telemetry | None] = None

    def __init__(self, *, _token: object = None) -> None:
        if _token is not _PRIVATE:
            raise TypeError("use Telemetry.from_settings(settings) or Telemetry.get_instance()")
        self._state = _State()

    def __repr__(self) -> str:
        state = self._state
        if not state.initialized:
            return "<Telemetry not initialized>"
        service = state.providers.runtime.service_name if state.providers else "disabled"
        return f"<Telemetry service={service!r} from_launcher={self.from_launcher}>"

    # -- life cycle ------------------------------------------------------------------------------

    @classmethod
    def from_settings(cls, settings: TelemetryModel, *, id_generator: IdGenerator | None = None) -> Telemetry:
        """Configure telemetry for this process once and return the process-wide instance.

        Under ``cryostorm-run`` the providers the hook installed are reused and `settings` only
        serve as a fallback; otherwise the SDK is configured from `settings` the same way the hook
        does it. Later calls return the same instance and ignore their arguments (use `reset` to
        start over in tests). Safe to call from many threads at once: one instance, one setup.

        `id_generator` replaces the random trace and span ids (see `cryostorm_run.testing`);
        it is ignored when the hook's providers are reused.

        Raises `TelemetrySetupError` when the settings cannot be honoured, for example a
        propagator whose package is not installed; the instance then stays uninitialised.

        Example:
            >>> from cryostorm_run import Telemetry, TelemetrySettings
            >>> settings = TelemetrySettings(service={"name": "checkout"}, exporter_type="none")
            >>> Telemetry.from_settings(settings).initialized
            True
            >>> Telemetry.reset()
        """
        instance = cls._instance
        if instance is not None and instance._state.initialized:
            return instance
        with cls._lock:
            instance = cls._instance or cls(_token=_PRIVATE)
            if not instance._state.initialized:
                instance._state = cls._configure(settings, id_generator)
                if instance._state.owned:
                    atexit.register(instance._shutdown_at_exit)
            cls._instance = instance
            return instance

    @staticmethod
    def _configure(settings: TelemetryModel, id_generator: IdGenerator | None) -> _State:
        hooked = _launcher_providers()
        if hooked is not None:
            return _state_for(hooked, owned=False)
        if not settings.enabled:
            return _State(initialized=True)
        # The one way from settings to providers, shared with the hook (see the module docstring).
        providers = build_providers(runtime_from_env(settings_env(settings)), id_generator=id_generator)
        install(providers)
        return _state_for(providers, owned=True)

    @classmethod
    def get_instance(cls) -> Telemetry:
        """The process-wide instance; never raises.

        Before `from_settings` this is an uninitialised instance whose methods are no-ops, unless
        the process runs under ``cryostorm-run``, in which case it already uses the hook's
        providers. A later `from_settings` configures this same object, so a module may keep
        ``telemetry = Telemetry.get_instance()`` at import time; its `traced` functions and
        spans start recording once telemetry is set up (instruments created before stay no-ops).

        Example:
            >>> from cryostorm_run import Telemetry
            >>> Telemetry.get_instance().initialized
            False
        """
        instance = cls._instance
        if instance is not None:
            return instance
        with cls._lock:
            if cls._instance is None:
                instance = cls(_token=_PRIVATE)
                hooked = _launcher_providers()
                if hooked is not None:
                    instance._state = _state_for(hooked, owned=False)
                cls._instance = instance
            return cls._instance

    def shutdown(self) -> bool:
        """Export everything still buffered, within ``shutdown_timeout_millis``, and stop.

        Providers the facade built are shut down; the hook's are only flushed (the hook shuts
        them down at exit). Afterwards the instance is uninitialised, its methods are no-ops and
        its logger has its level from before.
        Returns False when the timeout passed first. Calling it again does nothing.

        Example:
            >>> from cryostorm_run import Telemetry, TelemetrySettings
            >>> telemetry = Telemetry.from_settings(TelemetrySettings(exporter_type="none"))
            >>> telemetry.shutdown(), telemetry.initialized
            (True, False)
            >>> Telemetry.reset()
        """
        with self._lock:
            state = self._state
            self._state = _State(logger=state.logger)
            atexit.unregister(self._shutdown_at_exit)
        if state.logger_level is not None:
            state.logger.setLevel(state.logger_level)
        providers = state.providers
        if not state.initialized or providers is None:
            return True
        if state.owned:
            return shutdown(providers)
        return _flush(providers, providers.runtime.shutdown_timeout_ms / 1000)

    def _shutdown_at_exit(self) -> None:
        state = self._state
        if state.providers is not None and not self.shutdown():
            timeout = state.providers.runtime.shutdown_timeout_ms / 1000
            print(
                f"cryostorm: telemetry not fully flushed within {timeout:g} s (shutdown_timeout_millis); "
                "exiting anyway",
                file=sys.stderr,
            )

    @classmethod
    def reset(cls) -> None:
        """Shut the instance down and forget it, for tests: the next call builds a new one.

        The facade's own state is fully reset (including the level it gave its logger).
        OpenTelemetry's global providers are not: they are set-once by design, and keep pointing
        at the shut-down providers, which export nothing more. Tests that configure the facade
        more than once call `cryostorm_run.testing.reset_telemetry()`, which resets both.
        """
        with cls._lock:
            instance, cls._instance = cls._instance, None
        if instance is None:
            return
        instance.shutdown()
        instance._state = _State()

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
        """The tracer of this service; OpenTelemetry's `NoOpTracer` when tracing is off."""
        return self._state.tracer

    @property
    def meter(self) -> Meter:
        """The meter of this service; OpenTelemetry's `NoOpMeter` when metrics are off."""
        return self._state.meter

    @property
    def logger(self) -> logging.Logger:
        """A standard `logging.Logger` named after the service, at ``logging.level``.

        Its records carry ``trace_id`` and ``span_id`` attributes (hex) of the active span, and
        reach the root logger, where they are exported when logs are enabled.

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
        return providers.propagator if providers is not None else propagate.get_global_textmap()

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

    def create_histogram(self, name: str, unit: str = "", description: str = "") -> Histogram:
        """A distribution of values (latencies, sizes): ``histogram.record(0.25, {"route": "/"})``."""
        return self.meter.create_histogram(name, unit=unit, description=description)

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
