"""Runtime → OpenTelemetry SDK providers. The only place providers are built (hook and facade alike).

`build_providers` touches no global state; `install` sets the globals in one step;
`shutdown` is bounded by the configured timeout so an unreachable collector never
holds the program's exit hostage.
"""

from __future__ import annotations

import sys
import threading

from cryostorm_run.common.ownthreads import start
from cryostorm_run.common.runtime import Runtime, SignalRuntime

TYPE_CHECKING = False  # not typing's: the hook keeps typing out of every process
if TYPE_CHECKING:
    import logging
    from typing import Any

    from opentelemetry.propagators.textmap import TextMapPropagator
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.id_generator import IdGenerator

# -- providers -------------------------------------------------------------------------------


class Providers:
    """Everything `build_providers` made; nothing global until `install`.

    In the hook, what has been built so far: each signal's provider is built when the program first
    uses it (`deferred`, export/deferred.py), so a field may still be None for an enabled signal.
    """

    def __init__(self, runtime: Runtime, resource: Resource | None = None,
                 propagator: TextMapPropagator | None = None) -> None:
        self.runtime = runtime
        self.resource = resource  # built with the first provider
        self.propagator = propagator
        self.tracer_provider: TracerProvider | None = None
        self.meter_provider: Any = None  # a LazyMeterProvider (export/lazymeter.py); `.sdk_provider`: the SDK's
        self.logger_provider: Any = None
        self.log_handler: logging.Handler | None = None
        # signal → "otlp grpc http://..." (no secrets), for every enabled signal
        self.exporters = {name: _describe(sig) for name, sig in (("traces", runtime.traces),
                          ("metrics", runtime.metrics), ("logs", runtime.logs)) if sig.enabled}
        # signal → the exporter (traces, logs) or metric reader (metrics) the provider got. The SDK has
        # no public way back to a MeterProvider's readers; cryostorm_run.testing reads in-memory ones here.
        self.outputs: dict[str, Any] = {}
        self.deferred: Any = None  # the hook's: builds each signal at its first use (export/deferred.py)
        self.stopping = ""  # the signal `shutdown` is flushing now ("" once all are done), for the exit message

    def built(self) -> bool:
        """Whether any provider exists in this process (so there may be telemetry to flush)."""
        return any(p is not None for p in (self.tracer_provider, self.meter_provider, self.logger_provider))


def reidentify_after_fork(p: Providers) -> None:
    """A forked worker is a new instance with its own pid, on every signal (see export/resource.py)."""
    if p.resource is not None:  # nothing built yet: the resource will be built in this process, as it
        p.resource.attributes  # noqa: B018  # computed now, in the child, not on the first export


def build_resource(rt: Runtime) -> Any:
    from cryostorm_run.export.resource import build_resource as build

    return build(rt)


def _describe(sig: SignalRuntime) -> str:
    first = f"otlp {sig.protocol} {sig.endpoint}" if sig.exporter == "otlp" else sig.exporter
    return "+".join((first, *sig.also))


def build_providers(rt: Runtime, *, id_generator: IdGenerator | None = None, lazy_metrics: bool = False) -> Providers:
    """Build tracer, meter and logger providers for `rt` without installing them.

    `id_generator` replaces the SDK's random trace and span ids (deterministic ids in tests).
    `lazy_metrics`: the SDK's MeterProvider is built on the first `get_meter()`; see export/lazymeter.py.
    """
    from cryostorm_run.export.sampling import build_propagator

    check_sampler(rt)
    providers = Providers(rt, None, build_propagator(rt.propagators))
    if rt.traces.enabled:
        build_traces(providers, id_generator)
    if rt.metrics.enabled:
        build_metrics(providers, lazy_metrics)
    if rt.logs.enabled:
        build_logs(providers)
    return providers


def check_sampler(rt: Runtime) -> None:
    from cryostorm_run.export.errors import TelemetrySetupError
    from cryostorm_run.export.sampling import SAMPLERS

    if rt.sampler not in SAMPLERS:
        raise TelemetrySetupError(f"unknown sampler {rt.sampler!r}; allowed: {', '.join(SAMPLERS)}")


def resource_of(p: Providers) -> Resource:
    """The resource of `p`, built now if no provider was built yet."""
    # concurrent.futures.thread must register its fork handler (which releases its global lock in
    # the child) before the providers register theirs: the SDK's run a thread pool in the child,
    # and handlers run in registration order. Otherwise every os.fork() child deadlocks.
    import concurrent.futures.thread  # noqa: F401

    if p.resource is None:
        p.resource = build_resource(p.runtime)
    return p.resource


def build_traces(p: Providers, id_generator: IdGenerator | None = None) -> TracerProvider:
    from cryostorm_run.export.sampling import SAMPLERS
    from cryostorm_run.export.signals import build_tracer_provider

    rt = p.runtime
    sampler = SAMPLERS[rt.sampler](rt.sampler_arg)
    p.tracer_provider = build_tracer_provider(rt, resource_of(p), sampler, id_generator, p.outputs)
    return p.tracer_provider


def build_metrics(p: Providers, lazy: bool) -> Any:
    """A LazyMeterProvider; with `lazy`, the SDK's is built at the first meter."""
    from cryostorm_run.export.signals import build_meter_provider

    p.meter_provider = build_meter_provider(p.runtime, resource_of(p), p.outputs, lazy=lazy)
    return p.meter_provider


def build_logs(p: Providers) -> Any:
    from cryostorm_run.export.signals import build_logger_provider

    p.logger_provider = build_logger_provider(p.runtime, resource_of(p), p.outputs)
    return p.logger_provider


def install(p: Providers) -> None:
    """Make `p` the process-wide OpenTelemetry providers (set-once globals)."""
    from opentelemetry import trace

    if p.propagator is not None:
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
    import logging

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

    from cryostorm_run.export.batch import BATCH_QUEUES
    from cryostorm_run.export.otlp import _LAZY

    produced = any(batch.seen for batch in list(BATCH_QUEUES))
    produced = produced or bool(getattr(p.meter_provider, "used", False))
    others_running = any(t.is_alive() and not t.daemon for t in threading.enumerate()
                         if t is not threading.main_thread())
    if produced or others_running:
        for lazy in list(_LAZY):
            try:
                lazy._get()
            except Exception as exc:  # reported once; the exit flush will then report what was lost
                from cryostorm_run.common.shown import scrubbed

                print(f"cryostorm: {scrubbed(f'cannot build the OTLP exporter: {type(exc).__name__}: {exc}')}",
                      file=sys.stderr)


def loss_report() -> dict[str, dict[str, int]]:
    """Per kind of item: dropped (queue full or shed), failed, still queued, being exported right now, and of
    those how many go to a collector that answers (`under_way`: they may yet arrive)."""
    from cryostorm_run.export.batch import BATCH_QUEUES

    report: dict[str, dict[str, int]] = {}
    for batch in list(BATCH_QUEUES):
        entry = report.setdefault(batch.label, {"dropped": 0, "failed": 0, "queued": 0, "in_flight": 0, "under_way": 0,
                                                "late": 0, "refused": 0})
        refused = min(batch.in_flight, getattr(batch.exporter, "refused_in_flight", 0))
        entry["refused"] += refused
        entry["dropped"] += batch.dropped - batch.late  # late: ended after the exit's shutdown, its own reason
        entry["late"] += batch.late
        entry["queued"] += len(batch.queue)
        entry["in_flight"] += batch.in_flight
        # Not while the exporter is still being built (grpc imported): nothing has been sent yet.
        # Nor those a refusal sent to wait for a retry (a 503 with Retry-After) while other exports succeed.
        entry["under_way"] += batch.in_flight - refused if (
            batch.in_flight and batch.keeping_up() and not getattr(batch.exporter, "building", False)) else 0
        entry["failed"] += batch.failed
    return report


def shutdown(p: Providers, timeout_s: float | None = None) -> bool:
    """Flush and shut every provider down within `timeout_s` (default: the configured timeout).

    Returns False when the deadline passed; the rest is abandoned so the program can exit.
    """
    timeout = p.runtime.shutdown_timeout_ms / 1000 if timeout_s is None else timeout_s

    def work() -> None:
        _give_up_on_long_outages(timeout)
        if p.log_handler is not None:
            from cryostorm_run.export.logbridge import detach

            detach(p.log_handler)
        for batch in open_before:  # the signals' other exporters (a console copy) flush now, not after the first's
            if batch.copy_to:
                batch.close_soon()
        for name, provider in (("traces", p.tracer_provider), ("logs", p.logger_provider),
                               ("metrics", p.meter_provider)):
            if provider is not None:
                p.stopping = name
                try:
                    provider.shutdown()
                except Exception as exc:  # one broken exporter must not stop the others
                    from cryostorm_run.common.shown import scrubbed

                    print(f"cryostorm: {scrubbed(f'telemetry shutdown error: {exc}')}", file=sys.stderr)
        p.stopping = ""

    from cryostorm_run.export.batch import BATCH_QUEUES

    open_before = [batch for batch in list(BATCH_QUEUES) if not batch.closed]  # `p`'s among them (and any other's)
    worker = threading.Thread(target=work, name="cryostorm-shutdown", daemon=True)
    try:
        start(worker)
    except RuntimeError:  # Python 3.12 refuses new threads during interpreter shutdown (atexit)
        try:
            return _shutdown_inline(p, timeout)
        except KeyboardInterrupt:  # a second Ctrl-C while flushing, as below
            return False
    try:
        worker.join(timeout)
    except KeyboardInterrupt:  # a second Ctrl-C while flushing: stop waiting, the caller reports the rest
        return False
    # A queue's own shutdown ends at its export timeout (export_config.timeout_millis, which may be shorter
    # than the exit's): its export then still under way is not flushed, though the providers are shut down.
    # `p`'s queues are those this shutdown closed (another Providers' in the process, a test's, are not its).
    return not worker.is_alive() and all(batch.stopped for batch in open_before if batch.closed)


def flush(p: Providers, timeout_s: float) -> bool:
    """Export everything buffered now, without shutting anything down (the providers stay in use): True when
    done within `timeout_s`."""

    def work() -> None:
        for provider in (p.tracer_provider, p.logger_provider, p.meter_provider):
            if provider is not None:
                try:
                    provider.force_flush(int(timeout_s * 1000))
                except Exception as exc:  # one broken exporter must not stop the others
                    from cryostorm_run.common.shown import scrubbed

                    print(f"cryostorm: {scrubbed(f'telemetry flush error: {exc}')}", file=sys.stderr)

    worker = threading.Thread(target=work, name="cryostorm-flush", daemon=True)
    try:
        start(worker)
    except RuntimeError:
        # Python 3.12 refuses new threads during interpreter shutdown: the hook's own exit handler
        # flushes (bounded) next.
        return True
    worker.join(timeout_s)
    return not worker.is_alive()


def _give_up_on_long_outages(budget_s: float) -> None:
    """Exporters whose collector has been down for longer than the whole exit budget do not hold the exit
    (export/outage.py). No OTLP exporter loaded: none."""
    otlp = sys.modules.get("cryostorm_run.export.otlp")
    if otlp is not None:
        import contextlib

        from cryostorm_run.export.outage import give_up_on_long_outages

        with contextlib.suppress(Exception):  # never in the way of the flush itself
            give_up_on_long_outages(budget_s, list(getattr(otlp, "_LAZY", ())))


def _metrics_not_delivered() -> bool:
    """The OTLP metrics exporter's last export (the one the shutdown made) failed, or is unanswered: the
    reader gives up on it at its deadline and the exporter's shutdown cancels it, without a word."""
    otlp = sys.modules.get("cryostorm_run.export.otlp")  # not loaded: no OTLP metrics exporter
    return any(lazy.fault_target[0] == "metrics" and not lazy.gave_up_at_exit and (lazy.in_flight or not lazy.last_ok)
               for lazy in list(getattr(otlp, "_LAZY", ())))


def _shutdown_inline(p: Providers, timeout: float) -> bool:
    """The same shutdown without a thread of our own, bounded through the queues' own deadlines.

    Batch queues are shut down first, each within its export timeout and the remaining time: each joins
    its worker (which makes the last export) or drains in this thread for at most that long.
    """
    import time

    from cryostorm_run.export.batch import BATCH_QUEUES

    deadline = time.monotonic() + timeout
    _give_up_on_long_outages(timeout)

    def remaining_ms() -> int:
        return max(0, int((deadline - time.monotonic()) * 1000))

    if p.log_handler is not None:
        from cryostorm_run.export.logbridge import detach

        detach(p.log_handler)
    try:
        # Each within its export timeout, as the providers' shutdown gives it; the copies (a console) first.
        # Out of time, a queue is left as it is (its items reported as not confirmed delivered): shut down with
        # none, its export would start and fail at once against its exporter, shut down under it.
        for batch in sorted(BATCH_QUEUES, key=lambda batch: not batch.copy_to):
            left = min(remaining_ms(), int(batch.export_timeout_s * 1000))
            if left > 0:
                batch.shutdown(timeout_millis=left)
            else:
                batch.abandon()
        if p.meter_provider is not None:
            p.stopping = "metrics"
            if remaining_ms() > 0:  # out of time: reported by the caller
                p.meter_provider.shutdown(timeout_millis=remaining_ms())
                if remaining_ms() == 0 or _metrics_not_delivered():  # reported by the caller
                    return False
                p.stopping = ""
        for provider in (p.tracer_provider, p.logger_provider):  # their batch queues are done
            if provider is not None:
                provider.shutdown()
    except Exception as exc:  # one broken exporter must not stop the program's exit
        from cryostorm_run.common.shown import scrubbed

        print(f"cryostorm: {scrubbed(f'telemetry shutdown error: {exc}')}", file=sys.stderr)
    return time.monotonic() < deadline and all(batch.stopped for batch in list(BATCH_QUEUES))
