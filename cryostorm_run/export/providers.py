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
    meter_provider: Any = None  # a LazyMeterProvider (export/lazymeter.py); `.sdk_provider`: the SDK's
    logger_provider: Any = None
    log_handler: logging.Handler | None = None
    exporters: dict[str, str] = field(default_factory=dict)  # signal → "otlp grpc http://..." (no secrets)
    # signal → the exporter (traces, logs) or metric reader (metrics) the provider got. The SDK has
    # no public way back to a MeterProvider's readers; cryostorm_run.testing reads in-memory ones here.
    outputs: dict[str, Any] = field(default_factory=dict)


class _Resource(Resource):
    """A Resource that knows which process it describes, and hashes once per process.

    Fork: a worker is a new instance with its own pid. Its attributes carry this process's
    identity (`service.instance.id`, `process.pid`), looked up through the public `attributes`
    property, so every provider's resource follows a fork on every SDK release without reaching
    into the providers. Hash: the OTLP encoders group spans by resource, hashing it for every
    span; the SDK's hash serialises all attributes to JSON each time (~40 % of the encoding cost of
    a small span here), so it is kept for the life of the process.
    """

    _cryostorm_pid = -1
    _cryostorm_attributes: dict[str, Any] | None = None
    _cryostorm_hash: int | None = None

    @property
    def attributes(self) -> Any:
        pid = os.getpid()
        if self._cryostorm_pid != pid or self._cryostorm_attributes is None:
            current = dict(super().attributes)
            current.update(_process_identity())
            self._cryostorm_attributes, self._cryostorm_hash, self._cryostorm_pid = current, None, pid
        return self._cryostorm_attributes

    def __hash__(self) -> int:
        attributes = self.attributes  # refreshes the cache after a fork
        if self._cryostorm_hash is None:
            import json

            self._cryostorm_hash = hash((json.dumps(attributes, sort_keys=True, default=str), self.schema_url))
        return self._cryostorm_hash

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Resource):
            return NotImplemented
        return dict(self.attributes) == dict(other.attributes) and self.schema_url == other.schema_url

    def merge(self, other: Resource) -> Resource:
        merged = super().merge(other)  # the SDK merges at fork on some releases: stay a _Resource
        return _Resource(merged.attributes, merged.schema_url)


_IDENTITY: tuple[int, dict[str, Any]] = (-1, {})


def _process_identity() -> dict[str, Any]:
    """This process's identity, one per pid: the same on every signal's resource."""
    global _IDENTITY
    pid = os.getpid()
    if _IDENTITY[0] != pid:
        _IDENTITY = (pid, {"service.instance.id": str(uuid.uuid4()), "process.pid": pid})
    return _IDENTITY[1]


def reidentify_after_fork(p: Providers) -> None:
    """A forked worker is a new instance with its own pid, on every signal (see `_Resource`)."""
    _process_identity()
    p.resource.attributes  # noqa: B018  # computed now, in the child, not on the first export


# platform.machine() → the semantic conventions' host.arch values
_HOST_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "i386": "x86", "i686": "x86",
              "x86": "x86", "ppc64le": "ppc64", "ppc64": "ppc64", "ppc": "ppc32", "s390x": "s390x", "armv7l": "arm32"}


def _cheap_detected() -> dict[str, Any]:
    """What semantic conventions describe and costs nothing to know: the SDK, the runtime, the host."""
    import platform
    import socket

    from opentelemetry.sdk.version import __version__ as sdk_version

    implementation = sys.implementation
    return {
        "telemetry.sdk.language": "python",
        "telemetry.sdk.name": "opentelemetry",
        "telemetry.sdk.version": sdk_version,
        "process.runtime.name": implementation.name,
        "process.runtime.version": ".".join(str(v) for v in implementation.version[:3]),
        "process.runtime.description": sys.version,
        "process.executable.path": sys.executable,
        "host.name": socket.gethostname(),
        "host.arch": _HOST_ARCH.get(platform.machine().lower(), platform.machine().lower() or "unknown"),
    }


def build_resource(rt: Runtime) -> Resource:
    attrs: dict[str, Any] = {
        **_cheap_detected(),
        "telemetry.distro.name": "cryostorm-run",
        "telemetry.distro.version": __version__,
        **rt.resource_attributes,
        "service.name": rt.service_name,
        **_process_identity(),
    }
    return _Resource(attrs, rt.schema_url)


def _describe(sig: SignalRuntime) -> str:
    return f"otlp {sig.protocol} {sig.endpoint}" if sig.exporter == "otlp" else sig.exporter


def build_providers(rt: Runtime, *, id_generator: IdGenerator | None = None, lazy_metrics: bool = False) -> Providers:
    """Build tracer, meter and logger providers for `rt` without installing them.

    `id_generator` replaces the SDK's random trace and span ids (deterministic ids in tests).
    `lazy_metrics`: the SDK's MeterProvider is built on the first `get_meter()` (the hook's choice:
    most processes of a program never record a metric); see export/lazymeter.py.
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

        providers.meter_provider = build_meter_provider(rt, resource, providers.outputs, lazy=lazy_metrics)
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

    from cryostorm_run.export.batch import BATCH_QUEUES

    produced = any(batch.seen for batch in list(BATCH_QUEUES))
    produced = produced or bool(getattr(p.meter_provider, "used", False))
    others_running = any(t.is_alive() and not t.daemon for t in threading.enumerate()
                         if t is not threading.main_thread())
    if produced or others_running:
        for lazy in list(_LAZY):
            try:
                lazy._get()
            except Exception as exc:  # reported once; the exit flush will then report what was lost
                print(f"cryostorm: cannot build the OTLP exporter: {type(exc).__name__}: {exc}", file=sys.stderr)


def loss_report() -> dict[str, dict[str, int]]:
    """Per kind of item: dropped (queue full or shed), failed, still queued, being exported right now."""
    from cryostorm_run.export.batch import BATCH_QUEUES

    report: dict[str, dict[str, int]] = {}
    for batch in list(BATCH_QUEUES):
        entry = report.setdefault(batch.kind, {"dropped": 0, "failed": 0, "queued": 0, "in_flight": 0})
        entry["dropped"] += batch.dropped
        entry["queued"] += len(batch.queue)
        entry["in_flight"] += batch.in_flight
        entry["failed"] += batch.failed
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
    try:
        worker.join(timeout)
    except KeyboardInterrupt:  # a second Ctrl-C while flushing: stop waiting, the caller reports the rest
        return False
    return not worker.is_alive()


def _shutdown_inline(p: Providers, timeout: float) -> bool:
    """The same shutdown without a thread of our own, bounded through the queues' own deadlines.

    Batch queues are shut down first with the remaining time: each joins its worker (which makes
    the last export) or drains in this thread for at most that long.
    """
    import time

    from cryostorm_run.export.batch import BATCH_QUEUES

    deadline = time.monotonic() + timeout

    def remaining_ms() -> int:
        return max(0, int((deadline - time.monotonic()) * 1000))

    if p.log_handler is not None:
        from cryostorm_run.export.logbridge import detach

        detach(p.log_handler)
    try:
        for batch in list(BATCH_QUEUES):
            batch.shutdown(timeout_millis=remaining_ms())
        if p.meter_provider is not None and remaining_ms() > 0:  # out of time: reported by the caller
            p.meter_provider.shutdown(timeout_millis=remaining_ms())
        for provider in (p.tracer_provider, p.logger_provider):  # their batch queues are done
            if provider is not None:
                provider.shutdown()
    except Exception as exc:  # one broken exporter must not stop the program's exit
        print(f"cryostorm: telemetry shutdown error: {exc}", file=sys.stderr)
    return time.monotonic() < deadline and all(batch.stopped for batch in list(BATCH_QUEUES))
