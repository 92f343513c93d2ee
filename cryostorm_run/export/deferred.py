"""The hook's providers, each built when the program first uses its signal (issue #17).

The hook used to import the OpenTelemetry SDK and build every provider at start-up: ~60 ms in every
Python process of the program (each worker, each `subprocess`, each spawn child), most of which never
emit anything. Now it imports no OpenTelemetry module at start-up. Each piece is set up when the
program reaches it, and is then what it was before:

| when the program imports | what is set up |
|---|---|
| `logging` | the SDK-diagnostics handler on the `opentelemetry` logger, the trace-id record factory, |
| | and the log bridge, whose provider is built at the first record it exports (hook/bootstrap.py) |
| `opentelemetry.trace` | its `get_tracer_provider` and `set_tracer_provider` build and install the SDK's |
| | TracerProvider on their first call (`get_tracer` goes through the first) |
| `opentelemetry._logs` | the same for `get_logger_provider`, `set_logger_provider` and `get_logger` |
| `opentelemetry.metrics` | the LazyMeterProvider (the SDK's is built at the first meter, export/lazymeter.py) |
| `opentelemetry.propagate` | the configured propagators, set as the global one |

So the program sees the same providers as before: `trace.get_tracer_provider()` is the SDK's
TracerProvider (an `isinstance` check holds; `add_span_processor` works), and its own
`set_tracer_provider` is refused as before, because ours is built first. Instrumentations ask for a
tracer when their library is imported, so a server has its providers before it serves anything.

Nothing is built inside an import the build needs: the callbacks above only wrap functions or build
API objects; the SDK is imported when a wrapped function is *called*. A build that fails is said once
on stderr and leaves that signal off in this process; the program runs on.
"""

from __future__ import annotations

import functools
import os
import threading

from cryostorm_run.common.runtime import Runtime
from cryostorm_run.export.providers import Providers

TYPE_CHECKING = False  # not typing's: the hook keeps typing out of every process
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

# The names export/signals.py and export/sampling.py know, checked at start-up without importing them (and
# so the SDK): an environment written by hand that names an unknown one is told at once, as when everything
# was built at start-up. tests/test_deferred.py keeps them equal to those registries.
EXPORTERS = {"traces": ("console", "console_json", "in_memory", "otlp", "pretty"),
             "metrics": ("console", "console_json", "in_memory", "otlp", "pretty", "prometheus"),
             "logs": ("console", "console_json", "in_memory", "otlp", "pretty")}
SAMPLERS = ("always_on", "always_off", "traceidratio", "parentbased_always_on", "parentbased_always_off",
            "parentbased_traceidratio")
PROPAGATORS = ("tracecontext", "baggage", "b3", "b3multi", "jaeger")


def check(rt: Runtime) -> None:
    """Raise TelemetrySetupError, with the message building would give, for a name nothing knows."""
    problem = next((f"unknown {signal} exporter {name!r}; allowed: {', '.join(names)}, none"
                    for signal, names in EXPORTERS.items() for name in rt.signal(signal).exporters
                    if name not in names), None)
    if problem is None and rt.traces.enabled and rt.sampler not in SAMPLERS:
        problem = f"unknown sampler {rt.sampler!r}; allowed: {', '.join(SAMPLERS)}"
    unknown = [name for name in rt.propagators if name not in PROPAGATORS]
    if problem is None and unknown:
        problem = f"unknown propagator {unknown[0]!r}; allowed: {', '.join(PROPAGATORS)}"
    if problem is not None:
        from cryostorm_run.export.errors import TelemetrySetupError

        raise TelemetrySetupError(problem)


class Deferred:
    """Builds `providers`' signals at their first use (see the module docstring)."""

    def __init__(self, providers: Providers, warn: Callable[[str], None],
                 on_first_build: Callable[[], None] = lambda: None,
                 freeze_if: Callable[[], bool] = lambda: False) -> None:
        self.providers = providers
        self._warn = warn
        self._on_first_build = on_first_build
        self._freeze_if = freeze_if
        self._first_done = False
        self._lock = threading.RLock()
        self._building: dict[str, int] = {}  # signal → the thread building it now
        self._failed: set[str] = set()
        self._set_tracer_provider: Callable[[Any], None] | None = None  # the API's own, unwrapped
        self._set_logger_provider: Callable[[Any], None] | None = None
        providers.deferred = self
        # A fork while another thread was building leaves the lock held in the child for good.
        os.register_at_fork(after_in_child=self._after_fork_in_child)

    def _after_fork_in_child(self) -> None:
        self._lock, self._building = threading.RLock(), {}

    # -- building ---------------------------------------------------------------------------------

    def _build(self, signal: str, build: Callable[[], Any]) -> None:
        if signal in self._failed or self._building.get(signal) == threading.get_ident():
            return  # failed before, or asked for by its own build (that caller gets the API's default)
        with self._lock:
            if signal in self._failed or self._building.get(signal) is not None:
                return
            self._building[signal] = threading.get_ident()
            first = not self._first_done
            # Loaded already: hook/bootstrap.py loads it when logging is imported, which the API does first.
            from cryostorm_run.export.forkgate import exporter_build

            try:
                # A fork waits until the build's imports are done (export/forkgate.py): a child forked while
                # another thread imported the SDK would wait for that module's import lock for good.
                with exporter_build():
                    if first:
                        self._first_done = True
                        self._on_first_build()
                    build()
                    if first and self._freeze_if():
                        _freeze()
            except Exception as exc:  # never break the program: say it once, that signal stays off
                self._failed.add(signal)
                self._warn(f"{signal} disabled in this process: {type(exc).__name__}: {exc}")
            finally:
                del self._building[signal]

    def traces(self) -> None:
        """Build and install the TracerProvider, once."""
        p = self.providers
        if p.tracer_provider is None and p.runtime.traces.enabled:
            self._build("traces", self._build_traces)

    def _build_traces(self) -> None:
        from cryostorm_run.export.providers import build_traces

        if self.providers.tracer_provider is None:
            provider = build_traces(self.providers)
            if self._set_tracer_provider is None:  # built before the program imported the API
                import opentelemetry.trace  # noqa: F401  (its import wraps it: patch_trace)
            if self._set_tracer_provider is not None:
                self._set_tracer_provider(provider)

    def logs(self) -> Any:
        """The SDK's LoggerProvider (built and installed now if it was not yet), or None if it cannot be."""
        p = self.providers
        if p.logger_provider is None and p.runtime.logs.enabled:
            self._build("logs", self._build_logs)
        return p.logger_provider

    def _build_logs(self) -> None:
        from cryostorm_run.export.providers import build_logs

        if self.providers.logger_provider is None:
            provider = build_logs(self.providers)
            if self._set_logger_provider is None:
                import opentelemetry._logs  # noqa: F401  (its import wraps it: patch_logs)
            if self._set_logger_provider is not None:
                self._set_logger_provider(provider)

    def meter_provider(self) -> Any:
        """The LazyMeterProvider (installed now if the program has not imported the metrics API yet)."""
        if self.providers.meter_provider is None and self.providers.runtime.metrics.enabled:
            import opentelemetry.metrics  # noqa: F401  (its import installs it: patch_metrics)
        return self.providers.meter_provider

    def build_all(self) -> None:
        """Everything enabled, now (the facade reuses the hook's providers and needs them built)."""
        import opentelemetry.propagate  # noqa: F401  (its import sets the propagator)

        self.traces()
        self.meter_provider()
        self.logs()

    # -- what the program's imports trigger -----------------------------------------------------------

    def watch(self, when_imported: Callable[[str, Callable[[Any], None]], None]) -> None:
        """Register the import callbacks (see the module docstring); none of them runs the SDK's imports."""
        rt = self.providers.runtime
        when_imported("opentelemetry.propagate", self._propagate)
        if rt.traces.enabled:
            when_imported("opentelemetry.trace", self._patch_trace)
        if rt.logs.enabled:
            when_imported("opentelemetry._logs", self._patch_logs)
        if rt.metrics.enabled:
            if "prometheus" in rt.metrics.exporters:  # its scrape endpoint comes up at start-up
                self._build("metrics", self._build_metrics)
                return
            else:
                when_imported("opentelemetry.metrics", lambda module: self._build("metrics", self._build_metrics))

    def _build_metrics(self) -> None:
        """The LazyMeterProvider, installed. Called right after `opentelemetry.metrics` is imported, maybe
        inside the SDK's own imports: nothing of the SDK is imported before the first meter."""
        from opentelemetry import metrics

        from cryostorm_run.export.lazymeter import LazyMeterProvider
        from cryostorm_run.export.providers import resource_of

        p = self.providers
        if p.meter_provider is None:

            def build() -> Any:
                from cryostorm_run.export.signals import sdk_meter_provider

                return sdk_meter_provider(p.runtime, resource_of(p), p.outputs)

            provider = LazyMeterProvider(build)
            if "prometheus" in p.runtime.metrics.exporters:
                provider.sdk_provider  # noqa: B018  # its scrape endpoint comes up at start-up
            p.meter_provider = provider
            metrics.set_meter_provider(provider)

    def _propagate(self, module: Any) -> None:
        from cryostorm_run.export.sampling import build_propagator

        try:
            self.providers.propagator = propagator = build_propagator(self.providers.runtime.propagators)
        except Exception as exc:
            self._warn(f"propagators not set in this process: {type(exc).__name__}: {exc}")
            return
        module.set_global_textmap(propagator)

    def _patch_trace(self, module: Any) -> None:
        # get_tracer goes through get_tracer_provider; the program's own set_tracer_provider finds ours
        # built first, as when it was installed at start-up, so the API refuses it
        done = self._settled("traces")
        group: list[tuple[str, Any, Any]] = []  # (name, wrapper, original)
        self._set_tracer_provider = _call_first(module, "set_tracer_provider", self.traces, done, group)
        _call_first(module, "get_tracer_provider", self.traces, done, group)

    def _patch_logs(self, module: Any) -> None:
        done = self._settled("logs")
        group: list[tuple[str, Any, Any]] = []
        self._set_logger_provider = _call_first(module, "set_logger_provider", self.logs, done, group)
        _call_first(module, "get_logger_provider", self.logs, done, group)
        _call_first(module, "get_logger", self.logs, done, group)  # its own lookup skips the wrapped one

    def _settled(self, signal: str) -> Callable[[], bool]:
        """Whether `signal` is built and installed (or failed for good): its wrappers are then no longer needed."""
        field = "tracer_provider" if signal == "traces" else "logger_provider"
        return lambda: getattr(self.providers, field) is not None or signal in self._failed


def _call_first(module: Any, name: str, first: Callable[[], Any], done: Callable[[], bool],
                group: list[tuple[str, Any, Any]]) -> Callable[..., Any]:
    """Replace `module.name` with a wrapper that calls `first()`, then the original; return the original.

    Once `done()` (the signal built and installed), the module gets back its own functions, every one in
    `group` (a signal's wrappers): the program's calls (FastAPI asks for the global providers on every
    request) no longer pass through cryostorm. A reference taken while wrapped keeps the wrapper, which
    then only calls `first()` (a no-op).
    """
    original: Callable[..., Any] = getattr(module, name)

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        first()
        if done():
            for each, wrapped, unwrapped in group:
                if getattr(module, each, None) is wrapped:
                    setattr(module, each, unwrapped)
        return original(*args, **kwargs)

    setattr(module, name, wrapper)
    group.append((name, wrapper, original))
    return original


def _freeze() -> None:
    """What exists now is left out of later full collections (see the README, "Garbage-collection pauses").

    Called after the first build when it happened while the program imported a library (an instrumentation
    activating: a server importing its framework), which is start-up in all but name: the SDK's modules and
    objects (~10k) are frozen as when the hook built them at start-up, with the program's import-time objects
    (a FastAPI app: ~45k; a full collection paused it ~25 ms under load, ~12 ms frozen). A full collection
    runs first (once, ~30 ms for such an app), so garbage cycles already unreachable are freed, not kept.
    """
    import gc

    gc.collect()
    gc.freeze()


class BridgeProvider:
    """What the log bridge sends records to: the SDK's LoggerProvider, built at the first record."""

    def __init__(self, deferred: Deferred) -> None:
        self._deferred = deferred

    def get_logger(self, name: str) -> Any:
        provider = self._deferred.logs()
        return provider.get_logger(name) if provider is not None else _DISCARD


class _Discard:
    """Logs could not be built in this process (said once on stderr): records go nowhere."""

    def emit(self, record: Any) -> None:
        pass


_DISCARD = _Discard()
