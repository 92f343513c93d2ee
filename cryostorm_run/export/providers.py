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
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.id_generator import IdGenerator

from cryostorm_run._version import __version__
from cryostorm_run.common.runtime import Runtime, SignalRuntime
from cryostorm_run.export.errors import TelemetrySetupError
from cryostorm_run.export.otlp import _LAZY
from cryostorm_run.export.sampling import SAMPLERS, build_propagator

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
        from cryostorm_run.export.signals import build_tracer_provider

        sampler = SAMPLERS[rt.sampler](rt.sampler_arg)
        providers.tracer_provider = build_tracer_provider(rt, resource, sampler, id_generator, providers.outputs)
        providers.exporters["traces"] = _describe(rt.traces)
    if rt.metrics.enabled:
        from cryostorm_run.export.signals import build_meter_provider

        providers.meter_provider = build_meter_provider(rt, resource, providers.outputs)
        providers.exporters["metrics"] = _describe(rt.metrics)
    if rt.logs.enabled:
        from cryostorm_run.export.signals import build_logger_provider

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

        from cryostorm_run.export.logbridge import attach

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
        from cryostorm_run.hook.instrument import FINDER

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

    from cryostorm_run.export.signals import BATCH_PROCESSORS

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
    from cryostorm_run.export.signals import BATCH_PROCESSORS, dropped, queued

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
            from cryostorm_run.export.logbridge import detach

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

    from cryostorm_run.export.signals import BATCH_PROCESSORS

    deadline = time.monotonic() + timeout

    def remaining_ms() -> int:
        return max(0, int((deadline - time.monotonic()) * 1000))

    if p.log_handler is not None:
        from cryostorm_run.export.logbridge import detach

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
