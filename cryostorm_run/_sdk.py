"""Runtime → OpenTelemetry SDK providers. The only place providers are built (hook and facade alike).

`build_providers` touches no global state; `install` sets the globals in one step;
`shutdown` is bounded by the configured timeout so an unreachable collector never
holds the program's exit hostage.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import uuid
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace import sampling as _sampling
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.id_generator import IdGenerator

from cryostorm_run._runtime import Runtime, SignalRuntime
from cryostorm_run._version import __version__


class TelemetrySetupError(RuntimeError):
    """A provider could not be built; the message says what and how to fix it."""


def _ratio(arg: float | None) -> float:
    return 1.0 if arg is None else arg


SAMPLERS: dict[str, Callable[[float | None], _sampling.Sampler]] = {
    "always_on": lambda _: _sampling.ALWAYS_ON,
    "always_off": lambda _: _sampling.ALWAYS_OFF,
    "traceidratio": lambda arg: _sampling.TraceIdRatioBased(_ratio(arg)),
    "parentbased_always_on": lambda _: _sampling.ParentBased(_sampling.ALWAYS_ON),
    "parentbased_always_off": lambda _: _sampling.ParentBased(_sampling.ALWAYS_OFF),
    "parentbased_traceidratio": lambda arg: _sampling.ParentBased(_sampling.TraceIdRatioBased(_ratio(arg))),
}


def _optional(module: str, attr: str, package: str) -> Callable[[], TextMapPropagator]:
    def make() -> TextMapPropagator:
        import importlib

        try:
            cls = getattr(importlib.import_module(module), attr)
        except ImportError:
            raise TelemetrySetupError(
                f"propagator needs the package {package}: pip install {package}"
            ) from None
        propagator: TextMapPropagator = cls()
        return propagator

    return make


def _tracecontext() -> TextMapPropagator:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator()


def _baggage() -> TextMapPropagator:
    from opentelemetry.baggage.propagation import W3CBaggagePropagator

    return W3CBaggagePropagator()


PROPAGATORS: dict[str, Callable[[], TextMapPropagator]] = {
    "tracecontext": _tracecontext,
    "baggage": _baggage,
    "b3": _optional("opentelemetry.propagators.b3", "B3SingleFormat", "opentelemetry-propagator-b3"),
    "b3multi": _optional("opentelemetry.propagators.b3", "B3MultiFormat", "opentelemetry-propagator-b3"),
    "jaeger": _optional("opentelemetry.propagators.jaeger", "JaegerPropagator", "opentelemetry-propagator-jaeger"),
}


def build_propagator(names: Sequence[str]) -> TextMapPropagator:
    from opentelemetry.propagators.composite import CompositePropagator

    unknown = [n for n in names if n not in PROPAGATORS]
    if unknown:
        raise TelemetrySetupError(f"unknown propagator {unknown[0]!r}; allowed: {', '.join(PROPAGATORS)}")
    return CompositePropagator([PROPAGATORS[n]() for n in names])


# -- lazy OTLP exporters ------------------------------------------------------------------------
# The OTLP exporters import grpc/protobuf (~100 ms). They are built on the first export, in the
# processor's worker thread, so a process that exports nothing never pays for them, and a fork
# child builds its own channel instead of sharing the parent's (gRPC channels do not survive fork).

_LAZY: weakref.WeakSet[_Lazy] = weakref.WeakSet()


class _Lazy:
    in_flight = 0  # items handed to export() and not yet answered (for the exit report)
    export_started = 0.0  # monotonic time the current export began (valid while in_flight)
    failed = 0  # items whose export failed for good (the exporter gave up retrying)
    handled = 0  # items handed to export() so far (for exact drop accounting)
    last_ok = True  # the last export succeeded ...
    last_duration_s = 0.0  # ... and took this long: together, "is the collector keeping up?"
    building = False  # the first export is building the real exporter (no collector contact yet)
    direct = False  # the exporter encodes with cryostorm._otlp_encode: spans may be queued pre-encoded

    def __init__(self, factory: Callable[[], Any], retry_budget_s: float = 0.0) -> None:
        self._factory = factory
        self._real: Any = None
        self._lock = threading.Lock()
        # export_config.timeout_millis: how long one batch may keep being retried while the
        # collector is unreachable or overloaded (the SDK exporter itself gives up after ~7 s).
        self.retry_budget_s = retry_budget_s
        self._stop = threading.Event()
        _LAZY.add(self)

    def _get(self) -> Any:
        with self._lock:
            if self._real is None:
                self._real = self._factory()
                if self.direct and getattr(self._real, "cryostorm_direct", False) is not True:
                    self.direct = False  # only if the pinned exporter's internals were not the expected ones
                    logging.getLogger("opentelemetry.cryostorm.export").warning(
                        "the OTLP span exporter could not use cryostorm's encoder; spans already queued "
                        "encoded may fail to export")
            return self._real

    def _reset_after_fork(self) -> None:
        self._lock = threading.Lock()
        self._real = None  # the parent's channel is not ours: drop it without closing it
        self._stop = threading.Event()
        self.__dict__.pop("direct", None)
        self.handled = self.failed = self.in_flight = 0
        self.building = False

    def shutdown(self, *args: Any, **kwargs: Any) -> None:
        self._stop.set()  # a batch being retried stops waiting
        if self._real is not None:
            self._real.shutdown(*args, **kwargs)

    def force_flush(self, timeout_millis: float = 30_000) -> bool:
        return bool(self._real.force_flush(timeout_millis)) if self._real is not None else True

    def _timed(self, batch: Sequence[Any]) -> Any:
        import time

        self.in_flight = len(batch)
        self.handled += len(batch)
        if self._real is None:
            # The first call builds it (imports grpc): not the collector's time. Under a busy
            # producer that import alone can take seconds; the collector counts as keeping up.
            self.building = True
            try:
                exporter = self._get()
            finally:
                self.building = False
        else:
            exporter = self._real
        started = self.export_started = time.monotonic()
        result = None
        try:
            result = exporter.export(batch)
            delay = 1.0
            # A transient failure (collector unreachable, 503/429, UNAVAILABLE) is retried within
            # the budget: a short outage loses nothing. Meanwhile the collector is "not keeping up",
            # so the queue stays capped and the program never waits.
            while (getattr(result, "name", "") != "SUCCESS" and _transient(exporter)
                   and time.monotonic() - started + delay < self.retry_budget_s):
                if self._stop.wait(delay):
                    break
                delay = min(delay * 2, 5.0)
                result = exporter.export(batch)
            return result
        finally:
            self.last_duration_s = time.monotonic() - started
            self.last_ok = getattr(result, "name", "") == "SUCCESS"
            if not self.last_ok:
                self.failed += len(batch)
            self.in_flight = 0


class _ExportState:
    """What the last request of one OTLP exporter ended with (set by the stub/session wrappers)."""

    transient = False  # failed in a way worth retrying: unreachable, UNAVAILABLE, 429/502/503/504


def _transient(exporter: Any) -> bool:
    state = getattr(exporter, "cryostorm_state", None)
    return bool(getattr(state, "transient", False))


def _reset_lazy_after_fork() -> None:
    for lazy in list(_LAZY):
        lazy._reset_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_lazy_after_fork)


class LazySpanExporter(_Lazy, SpanExporter):
    # From the first span on, not only once grpc is imported: spans queued meanwhile would stay
    # ~11 objects each (for long while the collector is down: a batch is retried for seconds).
    direct = True

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        return self._timed(spans)  # type: ignore[no-any-return]



def _grpc_kwargs(sig: SignalRuntime) -> dict[str, Any]:
    import grpc

    kwargs: dict[str, Any] = {
        "endpoint": sig.endpoint,
        "headers": dict(sig.headers) or None,
        "timeout": sig.timeout_s,
        "compression": grpc.Compression.Gzip if sig.compression == "gzip" else grpc.Compression.NoCompression,
        "insecure": sig.insecure,
    }
    if sig.certificate or sig.client_certificate:
        def read(path: str | None) -> bytes | None:
            if path is None:
                return None
            with open(path, "rb") as fh:
                return fh.read()

        kwargs["credentials"] = grpc.ssl_channel_credentials(
            read(sig.certificate), read(sig.client_key), read(sig.client_certificate)
        )
    return {**kwargs, **sig.exporter_args}


def _http_kwargs(sig: SignalRuntime) -> dict[str, Any]:
    from opentelemetry.exporter.otlp.proto.http import Compression

    kwargs: dict[str, Any] = {
        "endpoint": sig.endpoint,
        "headers": dict(sig.headers) or None,
        "timeout": sig.timeout_s,
        "compression": Compression.Gzip if sig.compression == "gzip" else Compression.NoCompression,
        "certificate_file": sig.certificate,
        "client_certificate_file": sig.client_certificate,
        "client_key_file": sig.client_key,
    }
    return {**kwargs, **sig.exporter_args}


def otlp_factory(signal: str, sig: SignalRuntime) -> Callable[[], Any]:
    """A function building the real OTLP exporter of `signal` for the configured transport."""
    modules = {
        ("traces", "grpc"): ("opentelemetry.exporter.otlp.proto.grpc.trace_exporter", "OTLPSpanExporter"),
        ("metrics", "grpc"): ("opentelemetry.exporter.otlp.proto.grpc.metric_exporter", "OTLPMetricExporter"),
        ("logs", "grpc"): ("opentelemetry.exporter.otlp.proto.grpc._log_exporter", "OTLPLogExporter"),
        ("traces", "http/protobuf"): ("opentelemetry.exporter.otlp.proto.http.trace_exporter", "OTLPSpanExporter"),
        ("metrics", "http/protobuf"): ("opentelemetry.exporter.otlp.proto.http.metric_exporter", "OTLPMetricExporter"),
        ("logs", "http/protobuf"): ("opentelemetry.exporter.otlp.proto.http._log_exporter", "OTLPLogExporter"),
    }
    key = (signal, sig.protocol)
    # The OTLP exporter modules import opentelemetry.sdk._logs, whose import starts a thread pool
    # (Resource.create). An exporter may have to be built at exit, when Python 3.12 refuses new
    # threads: import it now (it already is whenever logs are enabled).
    import opentelemetry.sdk._logs  # noqa: F401

    if key not in modules:
        raise TelemetrySetupError(f"unknown OTLP protocol {sig.protocol!r}; allowed: grpc, http/protobuf")

    def make() -> Any:
        import importlib

        module, attr = modules[key]
        state = _ExportState()
        if sig.protocol == "grpc":
            exporter = getattr(importlib.import_module(module), attr)(**_grpc_kwargs(sig))
            _check_grpc_responses(exporter, signal, state)
        else:
            exporter = getattr(importlib.import_module(module), attr)(session=_checked_session(signal, state),
                                                                      **_http_kwargs(sig))
        exporter.cryostorm_state = state
        if signal == "traces":
            from cryostorm_run import _otlp_encode

            exporter.cryostorm_direct = _otlp_encode.install(exporter, sig.protocol)
        return exporter

    return make


# -- partial success ------------------------------------------------------------------------------
# A collector may accept a request yet reject part of it (OTLP partial success). The SDK exporters
# never read the response, so cryostorm does: each rejection is reported on stderr (rate-limited)
# and counted for the exit report.

REJECTED: dict[str, int] = {}
_REJECTED_FIELD = {"traces": "rejected_spans", "metrics": "rejected_data_points", "logs": "rejected_log_records"}
_RESPONSES = {
    "traces": ("opentelemetry.proto.collector.trace.v1.trace_service_pb2", "ExportTraceServiceResponse"),
    "metrics": ("opentelemetry.proto.collector.metrics.v1.metrics_service_pb2", "ExportMetricsServiceResponse"),
    "logs": ("opentelemetry.proto.collector.logs.v1.logs_service_pb2", "ExportLogsServiceResponse"),
}


def report_partial_success(signal: str, response: Any) -> None:
    partial = getattr(response, "partial_success", None)
    if partial is None:
        return
    rejected = int(getattr(partial, _REJECTED_FIELD[signal], 0))
    if rejected or partial.error_message:
        REJECTED[signal] = REJECTED.get(signal, 0) + rejected
        logging.getLogger("opentelemetry.cryostorm.export").warning(
            "the collector rejected %d %s of a batch (partial success): %s",
            rejected, _REJECTED_FIELD[signal].removeprefix("rejected_").replace("_", " "),
            partial.error_message or "no reason given",
        )


# OTLP's retryable gRPC codes (RESOURCE_EXHAUSTED: the collector is overloaded).
_TRANSIENT_CODES = {"CANCELLED", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED", "OUT_OF_RANGE", "UNAVAILABLE",
                    "DATA_LOSS"}
_TRANSIENT_HTTP = {429, 502, 503, 504}


class _CheckedStub:
    def __init__(self, stub: Any, signal: str, state: _ExportState) -> None:
        self._stub = stub
        self._signal = signal
        self._state = state

    def Export(self, *args: Any, **kwargs: Any) -> Any:
        try:
            response = self._stub.Export(*args, **kwargs)
        except Exception as error:  # grpc.RpcError: the exporter decides; we note whether to retry later
            code_of = getattr(error, "code", None)
            code = code_of() if callable(code_of) else None
            self._state.transient = getattr(code, "name", "") in _TRANSIENT_CODES
            raise
        self._state.transient = False
        report_partial_success(self._signal, response)
        return response


def _check_grpc_responses(exporter: Any, signal: str, state: _ExportState) -> None:
    # The exporter rebuilds its stub after UNAVAILABLE, from `_stub`: wrap both (private, guarded).
    stub_factory = getattr(exporter, "_stub", None)
    if stub_factory is None or getattr(exporter, "_client", None) is None:
        return
    exporter._stub = lambda channel: _CheckedStub(stub_factory(channel), signal, state)
    exporter._client = _CheckedStub(exporter._client, signal, state)


def _checked_session(signal: str, state: _ExportState) -> Any:
    import importlib

    import requests

    class Session(requests.Session):
        def request(self, *args: Any, **kwargs: Any) -> Any:
            try:
                response = super().request(*args, **kwargs)
            except requests.RequestException:  # refused, reset, timed out: worth retrying later
                state.transient = True
                raise
            state.transient = response.status_code in _TRANSIENT_HTTP
            return response

    module, name = _RESPONSES[signal]
    response_cls = getattr(importlib.import_module(module), name)

    def on_response(response: Any, *args: Any, **kwargs: Any) -> None:
        if 200 <= response.status_code < 300 and response.content:
            parsed = response_cls()
            try:
                parsed.ParseFromString(response.content)
            except Exception:  # not protobuf (a proxy's page): nothing to report
                return
            report_partial_success(signal, parsed)

    session = Session()
    session.hooks["response"].append(on_response)
    return session


# -- providers -------------------------------------------------------------------------------


@dataclass
class Providers:
    """Everything `build_providers` made; nothing global until `install`."""

    runtime: Runtime
    resource: Resource
    propagator: TextMapPropagator
    tracer_provider: TracerProvider | None = None
    meter_provider: Any = None
    logger_provider: Any = None
    log_handler: logging.Handler | None = None
    exporters: dict[str, str] = field(default_factory=dict)  # signal → "otlp grpc http://..." (no secrets)
    # signal → the exporter (traces, logs) or metric reader (metrics) the provider got. The SDK has
    # no public way back to a MeterProvider's readers; cryostorm_run.testing reads in-memory ones here.
    outputs: dict[str, Any] = field(default_factory=dict)


class _Resource(Resource):
    """A Resource whose hash is computed once.

    The OTLP encoders group spans by resource, hashing it for every span; the SDK's hash
    serialises all attributes to JSON each time (~40 % of the encoding cost of a small span
    here). A resource never changes after construction, so the hash can be kept.
    """

    _cached_hash: int | None = None

    def __hash__(self) -> int:
        if self._cached_hash is None:
            self._cached_hash = super().__hash__()
        return self._cached_hash

    def __eq__(self, other: object) -> bool:
        return super().__eq__(other)

    def merge(self, other: Resource) -> Resource:
        # The SDK merges at fork (`_update_resource`): keep the cached hash in workers too.
        merged = super().merge(other)
        return _Resource(merged.attributes, merged.schema_url)


def _process_identity() -> dict[str, Any]:
    return {"service.instance.id": str(uuid.uuid4()), "process.pid": os.getpid()}


def reidentify_after_fork(p: Providers) -> None:
    """A forked worker is a new instance with its own pid, on every signal.

    Runs after the SDK's own fork handlers (registered later), which have already merged a
    fresh process-dependent resource into each provider: this merge wins, with one identity.
    """
    identity = Resource(_process_identity())
    for provider in (p.tracer_provider, p.meter_provider, p.logger_provider):
        update = getattr(provider, "_update_resource", None)
        if update is not None:
            update(identity)
    p.resource = p.resource.merge(identity)


def build_resource(rt: Runtime) -> Resource:
    attrs: dict[str, Any] = {
        "telemetry.sdk.language": "python",
        "telemetry.sdk.name": "opentelemetry",
        "telemetry.distro.name": "cryostorm-run",
        "telemetry.distro.version": __version__,
        **rt.resource_attributes,
        "service.name": rt.service_name,
        **_process_identity(),
    }
    return _Resource(attrs, rt.schema_url)


def _describe(sig: SignalRuntime) -> str:
    return f"otlp {sig.protocol} {sig.endpoint}" if sig.exporter == "otlp" else sig.exporter


def build_providers(rt: Runtime, *, id_generator: IdGenerator | None = None) -> Providers:
    """Build tracer, meter and logger providers for `rt` without installing them.

    `id_generator` replaces the SDK's random trace and span ids (deterministic ids in tests).
    """
    if rt.sampler not in SAMPLERS:
        raise TelemetrySetupError(f"unknown sampler {rt.sampler!r}; allowed: {', '.join(SAMPLERS)}")
    # concurrent.futures.thread must register its fork handler (which releases its global lock in
    # the child) before the providers register theirs: the SDK's run a thread pool in the child,
    # and handlers run in registration order. Otherwise every os.fork() child deadlocks.
    import concurrent.futures.thread  # noqa: F401
    resource = build_resource(rt)
    providers = Providers(rt, resource, build_propagator(rt.propagators))
    if rt.traces.enabled:
        from cryostorm_run._signals import build_tracer_provider

        sampler = SAMPLERS[rt.sampler](rt.sampler_arg)
        providers.tracer_provider = build_tracer_provider(rt, resource, sampler, id_generator, providers.outputs)
        providers.exporters["traces"] = _describe(rt.traces)
    if rt.metrics.enabled:
        from cryostorm_run._signals import build_meter_provider

        providers.meter_provider = build_meter_provider(rt, resource, providers.outputs)
        providers.exporters["metrics"] = _describe(rt.metrics)
    if rt.logs.enabled:
        from cryostorm_run._signals import build_logger_provider

        providers.logger_provider = build_logger_provider(rt, resource, providers.outputs)
        providers.exporters["logs"] = _describe(rt.logs)
    return providers


def install(p: Providers) -> None:
    """Make `p` the process-wide OpenTelemetry providers (set-once globals)."""
    from opentelemetry import trace

    _install_propagator(p.propagator)
    if p.tracer_provider is not None:
        trace.set_tracer_provider(p.tracer_provider)
    if p.meter_provider is not None:
        from opentelemetry import metrics

        metrics.set_meter_provider(p.meter_provider)
    if p.logger_provider is not None:
        from opentelemetry._logs import set_logger_provider

        from cryostorm_run._logbridge import attach

        set_logger_provider(p.logger_provider)
        p.log_handler = attach(p.logger_provider, rt_level(p.runtime))


def _install_propagator(propagator: TextMapPropagator) -> None:
    """Set the global propagator now if `opentelemetry.propagate` is loaded, else right after its
    import: importing it scans every distribution's entry points (~15 ms), which a process that
    never propagates context should not pay."""

    def set_textmap(module: Any) -> None:
        module.set_global_textmap(propagator)

    if "opentelemetry.propagate" in sys.modules:
        set_textmap(sys.modules["opentelemetry.propagate"])
    else:
        from cryostorm_run._instrument import FINDER

        FINDER.install()
        FINDER.when_imported("opentelemetry.propagate", set_textmap)


def rt_level(rt: Runtime) -> int:
    level = logging.getLevelName(rt.log_level)
    return level if isinstance(level, int) else logging.INFO


def build_exporters_before_exit(p: Providers) -> None:
    """Build the lazy OTLP exporters now if this process has telemetry to send.

    Called from `threading`'s exit hook, which runs when the main thread ends but before the
    interpreter refuses new thread pools and imports that register exit hooks: building an
    exporter later, from `atexit`, fails ("cannot schedule new futures after interpreter
    shutdown"). Nothing is built for a process that produced nothing (`python -c pass` stays cheap).
    """
    import threading

    from cryostorm_run._signals import BATCH_PROCESSORS

    produced = any(getattr(proc, "seen", 0) for proc in list(BATCH_PROCESSORS))
    produced = produced or bool(getattr(p.meter_provider, "_meters", None))
    others_running = any(t.is_alive() and not t.daemon for t in threading.enumerate()
                         if t is not threading.main_thread())
    if produced or others_running:
        for lazy in list(_LAZY):
            try:
                lazy._get()
            except Exception as exc:  # reported once; the exit flush will then report what was lost
                print(f"cryostorm: cannot build the OTLP exporter: {type(exc).__name__}: {exc}", file=sys.stderr)


def loss_report() -> dict[str, dict[str, int]]:
    """Per kind of item: dropped (queue full), still queued, and being exported right now."""
    from cryostorm_run._signals import BATCH_PROCESSORS, dropped, queued

    report: dict[str, dict[str, int]] = {}
    for processor in list(BATCH_PROCESSORS):
        entry = report.setdefault(processor.kind, {"dropped": 0, "failed": 0, "queued": 0, "in_flight": 0})
        entry["dropped"] += dropped(processor)
        entry["queued"] += queued(processor)
        exporter = getattr(getattr(processor, "_batch_processor", None), "_exporter", None)
        entry["in_flight"] += getattr(exporter, "in_flight", 0)
        entry["failed"] += getattr(exporter, "failed", 0)
    return report


def shutdown(p: Providers, timeout_s: float | None = None) -> bool:
    """Flush and shut every provider down within `timeout_s` (default: the configured timeout).

    Returns False when the deadline passed; the rest is abandoned so the program can exit.
    """
    timeout = p.runtime.shutdown_timeout_ms / 1000 if timeout_s is None else timeout_s

    def work() -> None:
        if p.log_handler is not None:
            from cryostorm_run._logbridge import detach

            detach(p.log_handler)
        for provider in (p.tracer_provider, p.logger_provider, p.meter_provider):
            if provider is not None:
                try:
                    provider.shutdown()
                except Exception as exc:  # one broken exporter must not stop the others
                    print(f"cryostorm: telemetry shutdown error: {exc}", file=sys.stderr)

    worker = threading.Thread(target=work, name="cryostorm-shutdown", daemon=True)
    try:
        worker.start()
    except RuntimeError:  # Python 3.12 refuses new threads during interpreter shutdown (atexit)
        return _shutdown_inline(p, timeout)
    worker.join(timeout)
    return not worker.is_alive()


def _shutdown_inline(p: Providers, timeout: float) -> bool:
    """The same shutdown without a thread of our own, bounded through the SDK's own timeouts.

    Batch processors are shut down first with the remaining time: each joins its worker (which
    makes the last export) for at most that long, then tells the exporter to stop retrying.
    """
    import time

    from cryostorm_run._signals import BATCH_PROCESSORS

    deadline = time.monotonic() + timeout

    def remaining_ms() -> int:
        return max(0, int((deadline - time.monotonic()) * 1000))

    if p.log_handler is not None:
        from cryostorm_run._logbridge import detach

        detach(p.log_handler)
    try:
        for processor in list(BATCH_PROCESSORS):
            batch = getattr(processor, "_batch_processor", None)
            if batch is not None:
                batch.shutdown(timeout_millis=remaining_ms())
        if p.meter_provider is not None and remaining_ms() > 0:  # out of time: reported by the caller
            p.meter_provider.shutdown(timeout_millis=remaining_ms())
        for provider in (p.tracer_provider, p.logger_provider):  # their batch processors are done
            if provider is not None:
                provider.shutdown()
    except Exception as exc:  # one broken exporter must not stop the program's exit
        print(f"cryostorm: telemetry shutdown error: {exc}", file=sys.stderr)
    return time.monotonic() < deadline and all(
        not getattr(getattr(proc, "_batch_processor", None), "_worker_thread", None)
        or not proc._batch_processor._worker_thread.is_alive()
        for proc in list(BATCH_PROCESSORS)
    )
